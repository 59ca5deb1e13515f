r"""Bansal, Kavis & Sanghavi (2024): Fisher subspace and population InfoNCE/CLIP on Gaussian mixtures.

Objects of "Understanding Contrastive Learning via Gaussian Mixture Models" (arXiv 2411.03517; the
statements are from the authors' slides, seed 004):

* the Fisher subspace :math:`S_F = \mathrm{span}\{\bar\Sigma^{-1}\mu_1,\dots,\bar\Sigma^{-1}\mu_K\}`,
  :math:`\bar\Sigma = \sum_k w_k\Sigma_k` (:func:`fisher_subspace`) and the spectral baseline, the
  top-:math:`r` eigenvectors of :math:`\mathbb E[xx^\top]` (:func:`spectral_subspace`);
* the augmentation-pair distribution with bias :math:`\delta` (:func:`sample_augmentation_pairs`);
* the population InfoNCE loss of the linear map :math:`f(x) = A^\top x`, :math:`A\in\mathbb R^{d\times r}`,

  .. math::
      \mathcal L(A) = -\mathbb E_{(x,\hat x)\sim\hat F}\big[(A^\top x)^\top(A^\top\hat x)\big]
        + \mathbb E_{x\sim F}\log\mathbb E_{y\sim F}\exp\big((A^\top x)^\top(A^\top y)\big)

  (:func:`population_pair_info_nce`), and the population CLIP loss of paired mixtures
  (:func:`population_clip_loss`).

Both losses depend on the maps only through :math:`M = AA^\top` (InfoNCE) and
:math:`N = A_VA_T^\top` (CLIP), in which they are strictly convex (the book's lemma):
:func:`population_info_nce_m` and :func:`population_clip_loss_n` are these forms, and
:func:`small_delta_leading_term` is the first-order term :math:`M_1` of
:math:`M^*(\delta) = \delta M_1 + O(\delta^2)`. The closed forms the chapter checks symbolically
(:func:`attraction_term`, :func:`mixture_log_mgf`, :func:`between_class_scatter`,
:func:`small_delta_gradient`, :func:`centred_small_delta_term`) accept SymPy objects as well as
tensors. The solvers (Newton over the PSD cone, the KKT certificate, CLIP's Newton) are in
:mod:`clkit.population_solvers`; fitting linear maps to samples in :mod:`clkit.infonce_training`.

Both population losses reduce to closed forms plus one Gaussian integral of dimension
:math:`K-1` per component, computed by tensor Gauss–Hermite quadrature
(:func:`clkit.gauss_hermite_grid`, see :func:`expected_log_sum_exp`); the reduction is the book's
derivation (chapter "InfoNCE learns the Fisher subspace").
"""

from __future__ import annotations

import torch

from ._validation import check_finite, check_matrix, check_positive_definite, check_probability_vector, check_shape
from .device import as_tensor
from .mixtures import GaussianMixture
from .quadrature import _hermite_tensor_rule_torch
from .subspaces import orthonormal_basis
from .symbolic import is_symbolic

__all__ = [
    "fisher_subspace",
    "spectral_subspace",
    "sample_augmentation_pairs",
    "attraction_term",
    "mixture_log_mgf",
    "between_class_scatter",
    "mixture_moments",
    "small_delta_gradient",
    "centred_small_delta_term",
    "small_delta_leading_term",
    "small_delta_lyapunov_term",
    "small_delta_exceptional",
    "kkt_slack_identity",
    "expected_log_sum_exp",
    "population_info_nce_m",
    "population_pair_info_nce",
    "pair_info_nce_integrand",
    "population_clip_loss_n",
    "population_clip_loss",
]


def _check_delta(delta: float) -> float:
    try:
        value = float(delta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"delta must be a real number in [0, 1], got {delta!r}") from err
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"delta must be in [0, 1], got {value}")
    return value


def _check_n_quadrature(n_quadrature: int) -> int:
    if isinstance(n_quadrature, bool) or not isinstance(n_quadrature, int) or n_quadrature < 1:
        raise ValueError(f"n_quadrature must be a positive int, got {n_quadrature!r}")
    return n_quadrature


def fisher_subspace(
    weights: torch.Tensor,
    means: torch.Tensor,
    cov: torch.Tensor,
    *,
    centered: bool = False,
    rtol: float | None = None,
) -> torch.Tensor:
    r"""Orthonormal basis of the Fisher subspace :math:`S_F` of a Gaussian mixture, shape ``(d, rank)``.

    .. math:: S_F = \mathrm{span}\{\bar\Sigma^{-1}\mu_1,\dots,\bar\Sigma^{-1}\mu_K\},
              \qquad \bar\Sigma = \sum_k w_k\Sigma_k

    (Bansal, Kavis & Sanghavi 2024, "Fisher subspace" slide). With ``centered=True`` the means are
    replaced by :math:`\mu_k - \bar\mu`, :math:`\bar\mu = \sum_k w_k\mu_k`: the span of the
    classical (LDA) discriminant directions, of dimension at most :math:`K-1`. The dimension is the
    numerical rank (see :func:`clkit.numerical_rank`), so coincident means give a smaller basis.

    Args:
        weights: ``(K,)`` mixing weights on the simplex.
        means: ``(K, d)`` component means.
        cov: ``(d, d)`` shared covariance :math:`\Sigma`, or ``(K, d, d)`` covariances :math:`\Sigma_k`.
        centered: use centred means (see above).
        rtol: rank threshold passed to :func:`clkit.orthonormal_basis`.

    Raises:
        ValueError: naming the argument, for wrong shapes, weights off the simplex, a covariance that
            is not symmetric positive definite, or all-zero (centred) means.

    Returns:
        ``(d, rank)`` orthonormal basis, ``rank`` the numerical rank of the directions.
    """
    means = as_tensor(means)
    check_matrix("means", means)
    k, d = means.shape
    weights = as_tensor(weights, dtype=means.dtype, device=means.device)
    check_shape("weights", weights, (k,))
    check_probability_vector("weights", weights)
    cov = as_tensor(cov, dtype=means.dtype, device=means.device)
    if cov.dim() == 3:
        check_shape("cov", cov, (k, d, d))
        check_positive_definite("cov", cov)
        cov = torch.einsum("k,kij->ij", weights, cov)
    else:
        check_shape("cov", cov, (d, d))
        check_positive_definite("cov", cov)
    centers = means - weights @ means if centered else means
    directions = torch.linalg.solve(cov, centers.T)  # (d, K): columns Sigma^{-1} mu_k
    basis = orthonormal_basis(directions, rtol)
    if basis.shape[1] == 0:
        raise ValueError("means must not all vanish (after centring, if centered=True): S_F would be {0}")
    return basis


def spectral_subspace(mixture: GaussianMixture, r: int) -> torch.Tensor:
    r"""The spectral baseline: top-``r`` eigenvectors of :math:`\mathbb E[xx^\top] = \sum_k w_k(\Sigma_k + \mu_k\mu_k^\top)`.

    Equivalently :math:`\arg\max_{A^\top A = I_r}\operatorname{Tr}[A^\top\mathbb E(xx^\top)A]`
    (Bansal et al. 2024, "spectral methods" slide). Returns a ``(d, r)`` orthonormal basis, ordered
    by decreasing eigenvalue.

    Raises:
        ValueError: if ``r`` is not an int in ``[1, d]``.

    Args:
        mixture: a :class:`clkit.GaussianMixture` (any covariances).
        r: number of eigenvectors.
    """
    if isinstance(r, bool) or not isinstance(r, int) or not (1 <= r <= mixture.dim):
        raise ValueError(f"r must be an int in [1, {mixture.dim}], got {r!r}")
    second = torch.einsum("k,kij->ij", mixture.weights, mixture.covariances)
    second = second + torch.einsum("k,ki,kj->ij", mixture.weights, mixture.means, mixture.means)
    _, vectors = torch.linalg.eigh(second)
    return vectors.flip(1)[:, :r]


def sample_augmentation_pairs(
    mixture: GaussianMixture, n: int, delta: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``n`` i.i.d. pairs from the augmentation distribution with bias :math:`\delta`.

    .. math::
        \hat F = \delta\sum_k w_k\,\mathcal N(\mu_k,\Sigma_k)\times\mathcal N(\mu_k,\Sigma_k)
          + (1-\delta)\,F\times F

    (Bansal et al. 2024, "Augmentations in GMMs" slide): with probability :math:`\delta` both points
    come from the same component, otherwise they are independent draws of :math:`F`. The two points
    are conditionally independent given their components.

    Returns:
        ``(x, x_hat, labels, labels_hat)`` with ``x, x_hat`` of shape ``(n, d)`` and the component
        labels of shape ``(n,)``.

    Raises:
        ValueError: if ``delta`` is not in ``[0, 1]`` or ``n`` is not a positive int.

    Args:
        mixture: the data mixture :math:`F`.
        n: number of pairs (positive int).
        delta: bias :math:`\delta\in[0,1]`.
        generator: the only source of randomness.
    """
    delta = _check_delta(delta)
    labels = mixture.sample_components(n, generator)
    fresh = mixture.sample_components(n, generator)
    same = torch.rand(n, dtype=mixture.dtype, device=mixture.device, generator=generator) < delta
    labels_hat = torch.where(same, labels, fresh)
    x = mixture.sample_given(labels, generator)
    x_hat = mixture.sample_given(labels_hat, generator)
    return x, x_hat, labels, labels_hat


def _shared_sigma(mixture: GaussianMixture, name: str) -> torch.Tensor:
    if not mixture.shared_covariance:
        raise ValueError(f"{name} must have a shared covariance (the setting of Bansal et al.)")
    return mixture.covariances[0]


def _symbolic(*values) -> bool:
    """SymPy input? (:func:`clkit.is_symbolic` does not recognise SymPy matrices, which are not ``Basic``.)"""
    if is_symbolic(*values):
        return True
    return any(type(v).__module__.startswith("sympy") for v in values)


def _outer(u, v):
    """``u v^T`` for two torch vectors or two SymPy column vectors."""
    if _symbolic(u, v):
        return u @ v.T
    return torch.outer(u, v)


def _bilinear(u, m, v):
    """``u^T M v`` for torch vectors or SymPy column vectors (a scalar either way)."""
    if _symbolic(u, m, v):
        return (u.T @ m @ v)[0, 0]
    return u @ m @ v


def _weighted_sum(weights, items):
    total = None
    for w, item in zip(weights, items):
        total = w * item if total is None else total + w * item
    return total


def attraction_term(m, weights, means, delta):
    r"""The attraction term :math:`\mathbb E_{(x,\hat x)\sim\hat F}[x^\top M\hat x]` of the population InfoNCE loss.

    .. math::
        \mathbb E[x^\top M\hat x] = \delta\sum_k w_k\,\mu_k^\top M\mu_k + (1-\delta)\,\bar\mu^\top M\bar\mu,
        \qquad \bar\mu = \sum_k w_k\mu_k,

    because given the components :math:`k, k'` of the pair the two points are independent, and
    :math:`k' = k` with probability :math:`\delta`, :math:`k'` an independent draw otherwise (the
    book's derivation, chapter "InfoNCE learns the Fisher subspace", eq. ``eq-fisher-closed-form``).

    Accepts torch tensors (``m`` ``(d, d)``, ``weights`` ``(K,)``, ``means`` ``(K, d)``) or SymPy
    objects (``m`` a SymPy matrix, ``weights`` a sequence of K expressions, ``means`` a sequence
    of K SymPy column vectors), so that the chapter can prove the formula symbolically.

    Args:
        m: ``(d, d)`` matrix :math:`M` (torch or SymPy).
        weights: ``(K,)`` mixing weights (or K expressions).
        means: ``(K, d)`` means (or K column vectors).
        delta: bias :math:`\delta` (number or expression).

    Returns:
        A scalar tensor, or a SymPy expression.

    Raises:
        RuntimeError: (from torch) for shapes that do not multiply; no validation (SymPy input).
    """
    if isinstance(means, torch.Tensor) and isinstance(m, torch.Tensor):
        mean = weights @ means  # vectorised torch path, the same formula
        same = weights @ ((means @ m) * means).sum(1)
        return delta * same + (1 - delta) * (mean @ m @ mean)
    means = list(means)
    weights = list(weights)
    mean = _weighted_sum(weights, means)
    same = _weighted_sum(weights, [_bilinear(mu, m, mu) for mu in means])
    return delta * same + (1 - delta) * _bilinear(mean, m, mean)


def mixture_log_mgf(u, weights, means, sigma):
    r"""Log moment-generating function of a shared-covariance Gaussian mixture.

    .. math::
        \log\mathbb E_{y\sim\sum_k w_k\mathcal N(\mu_k,\Sigma)} e^{u^\top y}
          = \tfrac12 u^\top\Sigma u + \log\sum_k w_k e^{u^\top\mu_k}

    (the Gaussian moment-generating function, averaged over the components). Torch: ``u`` of
    shape ``(..., d)``, ``weights`` ``(K,)``, ``means`` ``(K, d)``, ``sigma`` ``(d, d)``; returns
    shape ``(...)``. SymPy: ``u`` a column vector, ``weights`` and ``means`` sequences of K
    expressions and column vectors, ``sigma`` a matrix; returns an expression.

    Args:
        u: ``(..., d)`` arguments (or a SymPy column vector).
        weights, means, sigma: the mixture's weights, means and shared covariance.

    Returns:
        ``(...)`` values, or a SymPy expression.

    Raises:
        RuntimeError: (from torch) for shapes that do not multiply; no validation (SymPy input).
    """
    if _symbolic(u, sigma, *list(means), *list(weights)):
        import sympy

        return sympy.Rational(1, 2) * _bilinear(u, sigma, u) + sympy.log(
            _weighted_sum(list(weights), [sympy.exp((u.T @ mu)[0, 0]) for mu in means])
        )
    return 0.5 * ((u @ sigma) * u).sum(-1) + torch.logsumexp(torch.log(weights) + u @ means.T, dim=-1)


def between_class_scatter(weights, means):
    r"""Between-class scatter :math:`B_c = \sum_k w_k(\mu_k-\bar\mu)(\mu_k-\bar\mu)^\top`, :math:`\bar\mu = \sum_k w_k\mu_k`.

    Torch (``(K,)`` weights, ``(K, d)`` means; returns ``(d, d)``) or SymPy (sequences of K
    expressions and K column vectors; returns a matrix).

    Args:
        weights: ``(K,)`` mixing weights (or K expressions).
        means: ``(K, d)`` means (or K column vectors).

    Returns:
        ``(d, d)`` tensor, or a SymPy matrix.

    Raises:
        RuntimeError: (from torch) for shapes that do not multiply; no validation (SymPy input).
    """
    if isinstance(means, torch.Tensor) and isinstance(weights, torch.Tensor):
        centred = means - weights @ means  # vectorised torch path, the same formula
        return (weights[:, None] * centred).T @ centred
    means = list(means)
    weights = list(weights)
    mean = _weighted_sum(weights, means)
    return _weighted_sum(weights, [_outer(mu - mean, mu - mean) for mu in means])


def small_delta_gradient(n, sigma_tot, s2, b_c):
    r"""Gradient of the small-:math:`\delta` quadratic :math:`q(N) = -\operatorname{tr}(NB_c) + \tfrac12\operatorname{tr}(N\Sigma_{\mathrm{tot}}NS_2)`.

    .. math:: \nabla q(N) = \tfrac12\big(\Sigma_{\mathrm{tot}}NS_2 + S_2N\Sigma_{\mathrm{tot}}\big) - B_c

    over symmetric :math:`N` (the book's small-:math:`\delta` theorem: :math:`M^*(\delta)/\delta`
    tends to the minimiser :math:`M_1` of :math:`q` on the PSD cone). Torch or SymPy matrices.

    Args:
        n: ``(d, d)`` symmetric :math:`N`; sigma_tot: :math:`\Sigma_{\mathrm{tot}}`; s2: :math:`S_2`;
        b_c: :math:`B_c` (all ``(d, d)`` tensors or SymPy matrices).

    Returns:
        ``(d, d)`` :math:`\nabla q(N)`.

    Raises:
        RuntimeError: (from torch) for shapes that do not multiply; no validation (SymPy input).
    """
    return (sigma_tot @ n @ s2 + s2 @ n @ sigma_tot) / 2 - b_c


def centred_small_delta_term(sigma_tot, b_c):
    r""":math:`M_1 = \Sigma_{\mathrm{tot}}^{-1}B_c\Sigma_{\mathrm{tot}}^{-1}`: the root of :func:`small_delta_gradient` when :math:`S_2 = \Sigma_{\mathrm{tot}}` (centred means).

    Torch or SymPy matrices.

    Args:
        sigma_tot: ``(d, d)`` :math:`\Sigma_{\mathrm{tot}}` (positive definite); b_c: ``(d, d)`` :math:`B_c`.

    Returns:
        ``(d, d)`` :math:`M_1`.

    Raises:
        torch.linalg.LinAlgError: if ``sigma_tot`` is singular.
    """
    if _symbolic(sigma_tot, b_c):
        inverse = sigma_tot.inv()
        return inverse @ b_c @ inverse
    return torch.linalg.solve(sigma_tot, torch.linalg.solve(sigma_tot, b_c).T)


def mixture_moments(mixture: GaussianMixture) -> dict[str, torch.Tensor]:
    r"""The moments of a shared-covariance mixture that the population losses use.

    Returns ``sigma`` (:math:`\Sigma`), ``mean`` (:math:`\bar\mu`), ``b_c`` (:func:`between_class_scatter`),
    ``sigma_tot`` (:math:`\Sigma_{\mathrm{tot}} = \Sigma + B_c`, the covariance of :math:`x`) and
    ``s2`` (:math:`S_2 = \mathbb E[xx^\top] = \Sigma_{\mathrm{tot}} + \bar\mu\bar\mu^\top`).

    Args:
        mixture: a shared-covariance :class:`clkit.GaussianMixture`.

    Raises:
        ValueError: if the mixture has no shared covariance.
    """
    sigma = _shared_sigma(mixture, "mixture")
    b_c = between_class_scatter(mixture.weights, mixture.means)
    mean = mixture.weights @ mixture.means
    sigma_tot = sigma + b_c
    return {"sigma": sigma, "mean": mean, "b_c": b_c, "sigma_tot": sigma_tot,
            "s2": sigma_tot + torch.outer(mean, mean)}


def small_delta_leading_term(mixture: GaussianMixture) -> torch.Tensor:
    r"""The symmetric root :math:`M_1` of :func:`small_delta_gradient`: :math:`\Sigma_{\mathrm{tot}}M_1S_2 + S_2M_1\Sigma_{\mathrm{tot}} = 2B_c`.

    Solved as the linear system :math:`(S_2\otimes\Sigma_{\mathrm{tot}} + \Sigma_{\mathrm{tot}}\otimes S_2)\,\mathrm{vec}\,M_1
    = 2\,\mathrm{vec}\,B_c` (positive definite, so the root is unique). The root is always positive
    semi-definite (:func:`small_delta_lyapunov_term`, the same root by a Lyapunov solve), hence the
    minimiser of the small-:math:`\delta` quadratic on the PSD cone, and
    :math:`M^*(\delta) = \delta M_1 + O(\delta^2)` (the book's theorem); for centred means it equals
    :func:`centred_small_delta_term`. Returns ``(d, d)``.

    Args:
        mixture: a shared-covariance :class:`clkit.GaussianMixture`.

    Raises:
        ValueError: if the mixture has no shared covariance.
    """
    mom = mixture_moments(mixture)
    d = mixture.dim
    system = torch.kron(mom["s2"], mom["sigma_tot"]) + torch.kron(mom["sigma_tot"], mom["s2"])
    m1 = torch.linalg.solve(system, 2 * mom["b_c"].T.reshape(-1)).reshape(d, d).T
    return 0.5 * (m1 + m1.T)



def _sym_sqrt_inverse(t: torch.Tensor) -> torch.Tensor:
    evals, evecs = torch.linalg.eigh(t)
    return (evecs / evals.sqrt()) @ evecs.T


def small_delta_lyapunov_term(mixture: GaussianMixture) -> torch.Tensor:
    r"""The root :math:`M_1` of eq. ``eq-fisher-m1`` by its Lyapunov form (the review's reduction, the book's proof).

    With :math:`T = \Sigma_{\mathrm{tot}}`, :math:`c = T^{-1/2}\bar\mu`, :math:`X = I + cc^\top\succ0`
    and :math:`N = T^{1/2}M_1T^{1/2}`, eq. ``eq-fisher-m1``
    (:math:`TM_1S_2 + S_2M_1T = 2B_c`, :math:`S_2 = T + \bar\mu\bar\mu^\top`) reads

    .. math:: XN + NX = 2\,T^{-1/2}B_cT^{-1/2},

    a Lyapunov equation with a stable (positive definite) :math:`X`, so
    :math:`N = \int_0^\infty e^{-Xt}\,2T^{-1/2}B_cT^{-1/2}e^{-Xt}\,dt\succeq0`. Solved by
    ``scipy.linalg.solve_continuous_lyapunov`` (Bartels–Stewart); :func:`small_delta_leading_term`
    solves the same equation as a Kronecker system.

    Args:
        mixture: a shared-covariance :class:`clkit.GaussianMixture`.

    Returns:
        ``(d, d)`` symmetric :math:`M_1 = T^{-1/2}NT^{-1/2}` (on the mixture's dtype and device).

    Raises:
        ValueError: if the mixture has no shared covariance.
    """
    import scipy.linalg

    mom = mixture_moments(mixture)
    t_inv_half = _sym_sqrt_inverse(mom["sigma_tot"])
    c = t_inv_half @ mom["mean"]
    x = torch.eye(mixture.dim, dtype=c.dtype, device=c.device) + torch.outer(c, c)
    rhs = 2 * t_inv_half @ mom["b_c"] @ t_inv_half
    n = torch.as_tensor(scipy.linalg.solve_continuous_lyapunov(x.cpu().numpy(), rhs.cpu().numpy()),
                        dtype=c.dtype, device=c.device)
    m1 = t_inv_half @ n @ t_inv_half
    return 0.5 * (m1 + m1.T)


def small_delta_exceptional(weights: torch.Tensor, means: torch.Tensor, cov: torch.Tensor, *,
                            rtol: float = 1e-9) -> bool:
    r"""Is the mixture on the exceptional set where :math:`\operatorname{rank}M_1 = \dim S_F - 1`?

    The set (the book's theorem on :math:`M_1`): :math:`\bar\mu\ne0` and
    :math:`\bar\mu^\top\Sigma^{-1}(\mu_k-\bar\mu) = 0` for every :math:`k`. Off it
    :math:`\operatorname{rank}M_1 = \dim S_F`. Tested in whitened form, relative to the sizes:
    :math:`\max_k|\bar\mu^\top\Sigma^{-1}(\mu_k-\bar\mu)| \le` ``rtol``
    :math:`\cdot\|\Sigma^{-1/2}\bar\mu\|\max_k\|\Sigma^{-1/2}(\mu_k-\bar\mu)\|`, and
    :math:`\|\Sigma^{-1/2}\bar\mu\|>` ``rtol`` :math:`\cdot\max_k\|\Sigma^{-1/2}\mu_k\|`.

    Args:
        weights: ``(K,)`` mixing weights; means: ``(K, d)``; cov: ``(d, d)`` shared :math:`\Sigma`.
        rtol: relative tolerance of both tests.

    Returns:
        ``True`` on the exceptional set.

    Raises:
        ValueError: naming the argument, for wrong shapes or a covariance that is not positive definite.
    """
    check_matrix("means", means)
    k, d = means.shape
    check_shape("weights", weights, (k,))
    check_shape("cov", cov, (d, d))
    check_positive_definite("cov", cov)
    w_inv_half = _sym_sqrt_inverse(cov)
    mean = w_inv_half @ (weights @ means)
    centred = (means - weights @ means) @ w_inv_half
    size_mean = float(mean.norm())
    if size_mean <= rtol * float((means @ w_inv_half).norm(dim=1).max()):
        return False
    inner = (centred @ mean).abs().max()
    return bool(inner <= rtol * size_mean * float(centred.norm(dim=1).max()))


def kkt_slack_identity(m: torch.Tensor, mixture: GaussianMixture, delta: float, e: torch.Tensor,
                       n_quadrature: int = 40) -> torch.Tensor:
    r"""The KKT slack :math:`e^\top\nabla\mathcal L(M)e` along a direction with :math:`M\Sigma e = 0`, in closed form.

    .. math::
        e^\top\nabla\mathcal L(M)e = a^\top(C - \delta W)a - (1-\delta)(w^\top a)^2,\qquad
        a_k = \mu_k^\top e,\quad W = \operatorname{diag}(w),\quad C_{jk} = w_j\,\mathbb E_j[p_k(x)],

    with :math:`p_k(x) = w_ke^{x^\top M\mu_k}/\sum_lw_le^{x^\top M\mu_l}` and :math:`\mathbb E_j` over
    :math:`x\sim\mathcal N(\mu_j,\Sigma)` (the review's identity, proved in the book). The
    quadratic term of :func:`population_info_nce_m` contributes :math:`e^\top\Sigma MS_2e = 0`, and
    :math:`x^\top e` given the component is independent of :math:`Mx` (covariance
    :math:`M\Sigma e = 0`), so the log-sum-exp term gives :math:`\sum_{jk}C_{jk}a_ja_k`. When all
    :math:`a_k` are equal the slack is exactly :math:`0`. :math:`\mathbb E_j[p_k]` by the
    quadrature of :func:`expected_log_sum_exp`.

    Args:
        m: ``(d, d)`` symmetric PSD :math:`M`.
        mixture: shared-covariance mixture.
        delta: bias :math:`\delta\in[0,1]`.
        e: ``(d,)`` direction (the identity needs :math:`M\Sigma e = 0`; not checked).
        n_quadrature: Gauss–Hermite points per dimension.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: naming the argument, for wrong shapes or ``delta`` outside ``[0, 1]``.
    """
    d = mixture.dim
    check_shape("m", m, (d, d))
    check_shape("e", e, (d,))
    delta = _check_delta(delta)
    n_quadrature = _check_n_quadrature(n_quadrature)
    w, mu = mixture.weights, mixture.means
    sigma = _shared_sigma(mixture, "mixture")
    a = mu @ e
    if mixture.n_components == 1:
        c = w[:, None]
    else:
        t, node_weights = _quadrature_points(mu @ m @ mu.T, mu @ m @ sigma @ m @ mu.T, n_quadrature)
        p = torch.softmax(_phi_logits(w, t), dim=-1)  # (J, P, K)
        c = w[:, None] * torch.einsum("p,jpk->jk", node_weights, p)
    return a @ (c - delta * torch.diag(w)) @ a - (1 - delta) * (w @ a) ** 2


def _quadrature_points(g: torch.Tensor, h: torch.Tensor, n_quadrature: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``t`` (K, P, K-1) and weights (P,) of :func:`expected_log_sum_exp`'s tensor rule (K > 1).

    ``t = c_j + L xi`` with ``c_j = G[1:, j] - G[0, j]`` and ``L L^T = D H D^T + jitter`` (the
    relative jitter 1e-14 keeps the Cholesky factor defined when ``D H D^T`` is singular).
    """
    k = g.shape[0]
    h = 0.5 * (h + h.T)
    cov = h[1:, 1:] - h[1:, :1] - h[:1, 1:] + h[0, 0]
    jitter = 1e-14 * (torch.diagonal(cov).mean().detach().abs() + torch.finfo(cov.dtype).tiny)
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(k - 1, dtype=cov.dtype, device=cov.device))
    nodes, node_weights = _hermite_tensor_rule_torch(k - 1, n_quadrature, g.dtype, g.device)
    centres = (g[1:] - g[:1]).T  # (K, K-1): row j the mean of t given component j
    return centres.unsqueeze(1) + (nodes @ chol.T).unsqueeze(0), node_weights


def expected_log_sum_exp(
    weights: torch.Tensor, g: torch.Tensor, h: torch.Tensor, n_quadrature: int = 40
) -> torch.Tensor:
    r"""The log-partition part of both population losses, by one Gauss–Hermite rule per component.

    .. math::
        \varphi(G, H) = \sum_j w_j\,\mathbb E_{s\sim\mathcal N(G_{:,j},\,H)}\log\sum_k w_k e^{s_k}.

    For InfoNCE in :math:`M = AA^\top`, :math:`s_k = x^\top M\mu_k` with :math:`x` from component
    :math:`j`, so :math:`G = \mu M\mu^\top` and :math:`H = \mu M\Sigma M\mu^\top` (rows of
    :math:`\mu` the means). :math:`s_1` is pulled out (mean :math:`\sum_j w_jG_{1j}`); the rest
    depends on :math:`t = (s_k - s_1)_{k\ge2}\sim\mathcal N(G_{2:,j} - G_{1,j},\,DHD^\top)`,
    :math:`D = [-\mathbf 1, I_{K-1}]`, a :math:`(K-1)`-dimensional integral taken with an
    ``n_quadrature``-point tensor rule (:func:`gauss_hermite_grid`). A relative jitter of
    :math:`10^{-14}` on :math:`DHD^\top` keeps its Cholesky factor defined when it is singular.
    Only the symmetric part of ``h`` is used. Differentiable (twice) in ``g`` and ``h``.

    Args:
        weights: ``(K,)`` mixing weights.
        g: ``(K, K)`` means, column ``j`` the mean of :math:`s` given component ``j``.
        h: ``(K, K)`` covariance of :math:`s` given the component (positive semi-definite).
        n_quadrature: Gauss–Hermite points per dimension.

    Raises:
        ValueError: naming the argument, for inconsistent shapes or non-finite input.

    Returns:
        A scalar tensor :math:`\varphi(G, H)`.
    """
    check_shape("weights", weights, (None,))
    k = weights.shape[0]
    check_shape("g", g, (k, k))
    check_shape("h", h, (k, k))
    for name, t in (("weights", weights), ("g", g), ("h", h)):
        check_finite(name, t)
    n_quadrature = _check_n_quadrature(n_quadrature)
    return _phi_value(weights, g, h, n_quadrature)


def _phi_logits(weights: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Logits ``log w + (0, t)`` (J, P, K) of the categorical distribution at the nodes ``t`` (J, P, K-1)."""
    log_w = torch.log(weights)
    return torch.cat([log_w[0].expand(t.shape[0], t.shape[1], 1), log_w[1:] + t], dim=-1)


def _phi_value(weights: torch.Tensor, g: torch.Tensor, h: torch.Tensor, n_quadrature: int) -> torch.Tensor:
    """:func:`expected_log_sum_exp` without the argument checks (the solvers' inner loops)."""
    linear = weights @ g[0]
    if weights.shape[0] == 1:
        return linear
    t, node_weights = _quadrature_points(g, h, n_quadrature)
    return linear + weights @ (torch.logsumexp(_phi_logits(weights, t), dim=-1) @ node_weights)


def _info_nce_pieces(m: torch.Tensor, mixture: GaussianMixture, delta: float, mom: dict | None = None):
    mom = mixture_moments(mixture) if mom is None else mom
    sigma, mu = mom["sigma"], mixture.means
    smooth = -attraction_term(m, mixture.weights, mu, delta) + 0.5 * torch.trace(m @ sigma @ m @ mom["s2"])
    return smooth, mu @ m @ mu.T, mu @ m @ sigma @ m @ mu.T


def population_info_nce_m(
    m: torch.Tensor, mixture: GaussianMixture, delta: float, n_quadrature: int = 40
) -> torch.Tensor:
    r"""Population InfoNCE loss as a function of :math:`M = AA^\top` (the book's convex form).

    .. math::
        \mathcal L(M) = -\operatorname{tr}(MB_\delta) + \tfrac12\operatorname{tr}(M\Sigma MS_2)
          + \mathbb E_{x\sim F}\log\sum_k w_k e^{x^\top M\mu_k},

    with :math:`\operatorname{tr}(MB_\delta)` the :func:`attraction_term` and :math:`S_2 = \mathbb E[xx^\top]`:
    the log of :math:`\mathbb E_ye^{u^\top y}` (:func:`mixture_log_mgf`) at :math:`u = Mx`, averaged
    over :math:`x`. Convex in :math:`M` (linear + strongly convex quadratic + an average of
    log-sum-exps of linear functions); the last term is :func:`expected_log_sum_exp`.

    Args:
        m: ``(d, d)`` symmetric matrix.
        mixture: shared-covariance :class:`clkit.GaussianMixture`.
        delta: bias :math:`\delta\in[0,1]`.
        n_quadrature: Gauss–Hermite points per dimension (the integral has dimension :math:`K-1`).

    Raises:
        ValueError: naming the argument, for a wrong shape, a mixture without shared covariance,
            ``delta`` outside ``[0, 1]``.

    Returns:
        A scalar tensor, differentiable in ``m``.
    """
    check_shape("m", m, (mixture.dim, mixture.dim))
    check_finite("m", m)
    delta = _check_delta(delta)
    smooth, g, h = _info_nce_pieces(m, mixture, delta)
    return smooth + expected_log_sum_exp(mixture.weights, g, h, n_quadrature)


def population_pair_info_nce(
    a: torch.Tensor, mixture: GaussianMixture, delta: float, n_quadrature: int = 40
) -> torch.Tensor:
    r"""Population InfoNCE loss of :math:`f(x) = A^\top x` on the augmentation pairs of bias :math:`\delta`.

    .. math::
        \mathcal L(A) = -\mathbb E_{(x,\hat x)\sim\hat F}\big[x^\top AA^\top\hat x\big]
            + \mathbb E_{x\sim F}\log\mathbb E_{y\sim F}e^{x^\top AA^\top y}

    (Bansal et al. 2024, InfoNCE slide, with the map written :math:`A^\top x` so that
    :math:`A\in\mathbb R^{d\times r}`). It depends on :math:`A` only through :math:`M = AA^\top`:
    this is :func:`population_info_nce_m` at :math:`M = AA^\top`.

    Raises:
        ValueError: naming the argument, for a wrong shape of ``a``, a mixture without shared
            covariance, ``delta`` outside ``[0, 1]``.

    Args:
        a: ``(d, r)`` map :math:`A`.
        mixture, delta, n_quadrature: as in :func:`population_info_nce_m`.

    Returns:
        A scalar tensor, differentiable in ``a``.
    """
    check_shape("a", a, (mixture.dim, None))
    check_finite("a", a)
    return population_info_nce_m(a @ a.T, mixture, delta, n_quadrature)


def pair_info_nce_integrand(
    a: torch.Tensor, mixture: GaussianMixture, x: torch.Tensor, x_hat: torch.Tensor
) -> torch.Tensor:
    r"""Per-pair values whose mean is :math:`\mathcal L(A)` (inner expectation over :math:`y` exact).

    .. math:: \ell(x,\hat x) = -x^\top AA^\top\hat x + \log\mathbb E_ye^{u^\top y},\qquad u = AA^\top x,

    with :func:`mixture_log_mgf`, so that :math:`\mathbb E_{(x,\hat x)\sim\hat F}\,\ell = ` :func:`population_pair_info_nce`.
    Used to check the quadrature by Monte Carlo. ``x, x_hat``: ``(n, d)``; returns ``(n,)``.

    Raises:
        ValueError: for inconsistent shapes or a mixture without shared covariance.

    Args:
        a: ``(d, r)`` map :math:`A`; mixture: shared-covariance mixture :math:`F`;
        x, x_hat: ``(n, d)`` pairs.

    Returns:
        ``(n,)`` values :math:`\ell(x_i,\hat x_i)`.
    """
    d = mixture.dim
    check_shape("a", a, (d, None))
    check_shape("x", x, (None, d))
    check_shape("x_hat", x_hat, tuple(x.shape))
    sigma = _shared_sigma(mixture, "mixture")
    z, z_hat = x @ a, x_hat @ a
    return -(z * z_hat).sum(1) + mixture_log_mgf(z @ a.T, mixture.weights, mixture.means, sigma)


def _check_clip_pair(mixture_v: GaussianMixture, mixture_t: GaussianMixture) -> None:
    if mixture_v.n_components != mixture_t.n_components or not torch.allclose(mixture_v.weights, mixture_t.weights):
        raise ValueError("mixture_t must have the same weights as mixture_v (paired components)")


def population_clip_loss_n(
    n: torch.Tensor, mixture_v: GaussianMixture, mixture_t: GaussianMixture, n_quadrature: int = 40
) -> torch.Tensor:
    r"""Population CLIP loss as a function of :math:`N = A_VA_T^\top\in\mathbb R^{d_V\times d_T}` (convex).

    .. math::
        \mathcal L_{\mathrm{clip}}(N) = -2\sum_kw_k\mu_{V,k}^\top N\mu_{T,k}
          + \mathbb E_{x_V}\log\mathbb E_{y_T}e^{x_V^\top Ny_T} + \mathbb E_{x_T}\log\mathbb E_{y_V}e^{x_T^\top N^\top y_V},

    each log-partition term being :func:`mixture_log_mgf` at :math:`u = N^\top x_V` (resp.
    :math:`Nx_T`) averaged by closed forms and :func:`expected_log_sum_exp`.

    Raises:
        ValueError: naming the argument, for wrong shapes, different weights, or a mixture
            without shared covariance.

    Args:
        n: ``(d_V, d_T)`` matrix :math:`N`.
        mixture_v, mixture_t: paired shared-covariance mixtures (same weights).
        n_quadrature: Gauss–Hermite points per dimension.

    Returns:
        A scalar tensor, differentiable in ``n``.
    """
    check_shape("n", n, (mixture_v.dim, mixture_t.dim))
    check_finite("n", n)
    _check_clip_pair(mixture_v, mixture_t)
    w = mixture_v.weights
    mom_v, mom_t = mixture_moments(mixture_v), mixture_moments(mixture_t)
    mu_v, mu_t = mixture_v.means, mixture_t.means
    positive = w @ ((mu_v @ n) * mu_t).sum(1)
    v_to_t = (0.5 * torch.trace(n @ mom_t["sigma"] @ n.T @ mom_v["s2"])
              + expected_log_sum_exp(w, mu_t @ n.T @ mu_v.T, mu_t @ n.T @ mom_v["sigma"] @ n @ mu_t.T, n_quadrature))
    t_to_v = (0.5 * torch.trace(n.T @ mom_v["sigma"] @ n @ mom_t["s2"])
              + expected_log_sum_exp(w, mu_v @ n @ mu_t.T, mu_v @ n @ mom_t["sigma"] @ n.T @ mu_v.T, n_quadrature))
    return -2 * positive + v_to_t + t_to_v


def population_clip_loss(
    a_v: torch.Tensor,
    a_t: torch.Tensor,
    mixture_v: GaussianMixture,
    mixture_t: GaussianMixture,
    n_quadrature: int = 40,
) -> torch.Tensor:
    r"""Population CLIP loss of the paired mixture :math:`\hat F = \sum_k w_k\,\mathcal N(\mu_{V,k},\Sigma_V)\times\mathcal N(\mu_{T,k},\Sigma_T)`.

    .. math::
        \mathcal L_{\mathrm{clip}}(A_V, A_T) =
          -\mathbb E\log\frac{e^{x_V^\top A_VA_T^\top x_T}}{\mathbb E_{y}e^{x_V^\top A_VA_T^\top y_T}}
          -\mathbb E\log\frac{e^{x_T^\top A_TA_V^\top x_V}}{\mathbb E_{y}e^{x_T^\top A_TA_V^\top y_V}}

    (Bansal et al. 2024, CLIP slide and Theorem 5.2, with :math:`f_V(x) = A_V^\top x`,
    :math:`f_T(x) = A_T^\top x`): :func:`population_clip_loss_n` at :math:`N = A_VA_T^\top`.

    Raises:
        ValueError: naming the argument, for wrong shapes, different weights or ranks, or a mixture
            without shared covariance.

    Args:
        a_v: ``(d_V, r)``, a_t: ``(d_T, r)`` maps.
        mixture_v, mixture_t, n_quadrature: as in :func:`population_clip_loss_n`.

    Returns:
        A scalar tensor, differentiable in both maps.
    """
    check_shape("a_v", a_v, (mixture_v.dim, None))
    check_shape("a_t", a_t, (mixture_t.dim, a_v.shape[1]))
    check_finite("a_v", a_v)
    check_finite("a_t", a_t)
    return population_clip_loss_n(a_v @ a_t.T, mixture_v, mixture_t, n_quadrature)
