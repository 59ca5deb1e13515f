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
:func:`population_info_nce_m` and :func:`population_clip_loss_n` are these forms,
:func:`minimize_info_nce_psd` minimises the first over the PSD cone by Newton's method (interior
point, then Newton on the face of the minimiser) with the KKT certificate
:func:`psd_kkt_certificate`, :func:`minimize_clip_n` the second by damped Newton, and
:func:`small_delta_leading_term` is the first-order term :math:`M_1` of
:math:`M^*(\delta) = \delta M_1 + O(\delta^2)`. The closed forms the chapter checks symbolically
(:func:`attraction_term`, :func:`mixture_log_mgf`, :func:`between_class_scatter`,
:func:`small_delta_gradient`, :func:`centred_small_delta_term`) accept SymPy objects as well as
tensors.

Both population losses reduce to closed forms plus one Gaussian integral of dimension
:math:`K-1` per component, computed by tensor Gauss–Hermite quadrature (see
:func:`expected_log_sum_exp`); the reduction is the book's derivation (chapter "InfoNCE learns the
Fisher subspace").
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ._validation import check_finite, check_positive, check_matrix, check_positive_definite, check_probability_vector, check_shape
from .device import as_tensor
from .losses import pair_info_nce
from .mixtures import GaussianMixture
from .progress_bars import progress
from .subspaces import orthonormal_basis
from .symbolic import is_symbolic

__all__ = [
    "fisher_subspace",
    "spectral_subspace",
    "sample_augmentation_pairs",
    "gauss_hermite_grid",
    "attraction_term",
    "mixture_log_mgf",
    "between_class_scatter",
    "mixture_moments",
    "small_delta_gradient",
    "centred_small_delta_term",
    "small_delta_leading_term",
    "expected_log_sum_exp",
    "population_info_nce_m",
    "population_pair_info_nce",
    "pair_info_nce_integrand",
    "population_clip_loss_n",
    "population_clip_loss",
    "PSDMinimiser",
    "minimize_info_nce_psd",
    "psd_kkt_certificate",
    "minimize_clip_n",
    "minimize_population_loss",
    "train_pair_info_nce_minibatch",
    "train_pair_info_nce_minibatch_batched",
    "minimize_pair_info_nce_rank_one",
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
    """
    delta = _check_delta(delta)
    labels = mixture.sample_components(n, generator)
    fresh = mixture.sample_components(n, generator)
    same = torch.rand(n, dtype=mixture.dtype, device=mixture.device, generator=generator) < delta
    labels_hat = torch.where(same, labels, fresh)
    x = mixture.sample_given(labels, generator)
    x_hat = mixture.sample_given(labels_hat, generator)
    return x, x_hat, labels, labels_hat


def gauss_hermite_grid(
    dim: int, n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Tensor Gauss–Hermite rule for :math:`\mathbb E f(\eta)`, :math:`\eta\sim\mathcal N(0, I_{\text{dim}})`.

    .. math:: \mathbb E f(\eta) \approx \sum_p \omega_p f(\eta_p),\qquad
              \eta_p = \sqrt2\,(\xi_{i_1},\dots,\xi_{i_{\text{dim}}}),\quad
              \omega_p = \pi^{-\text{dim}/2}\prod_j \varpi_{i_j},

    with :math:`(\xi_i, \varpi_i)` the ``n``-point rule for :math:`\int e^{-\xi^2}g(\xi)\,d\xi`
    (``numpy.polynomial.hermite.hermgauss``). Exact for polynomials of degree :math:`\le 2n-1` in
    each coordinate. Returns ``(nodes, weights)`` of shapes ``(n**dim, dim)`` and ``(n**dim,)``;
    for ``dim = 0`` one node with weight 1.

    Raises:
        ValueError: if ``dim`` is negative or ``n`` not positive.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
        raise ValueError(f"dim must be a non-negative int, got {dim!r}")
    n = _check_n_quadrature(n)
    if dim == 0:
        return torch.zeros(1, 0, dtype=dtype, device=device), torch.ones(1, dtype=dtype, device=device)
    nodes, weights = _hermite_tensor_rule_torch(dim, n, dtype, torch.device(device) if device is not None else None)
    return nodes.clone(), weights.clone()


@functools.lru_cache(maxsize=32)
def _hermite_tensor_rule_torch(dim: int, n: int, dtype: torch.dtype,
                               device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    # The rule as tensors, cached per dtype and device: the solvers use it hundreds of times per
    # solve (never modified in place; gauss_hermite_grid hands out copies).
    nodes, weights = _hermite_tensor_rule(dim, n)
    return torch.tensor(nodes, dtype=dtype, device=device), torch.tensor(weights, dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _hermite_tensor_rule(dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Cached: the optimisers evaluate the same rule thousands of times.
    xi, varpi = np.polynomial.hermite.hermgauss(n)
    nodes = np.array(list(itertools.product(xi, repeat=dim))) * math.sqrt(2.0)
    weights = np.prod(np.array(list(itertools.product(varpi, repeat=dim))), axis=1) / math.pi ** (dim / 2)
    return nodes, weights


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
    """
    return (sigma_tot @ n @ s2 + s2 @ n @ sigma_tot) / 2 - b_c


def centred_small_delta_term(sigma_tot, b_c):
    r""":math:`M_1 = \Sigma_{\mathrm{tot}}^{-1}B_c\Sigma_{\mathrm{tot}}^{-1}`: the root of :func:`small_delta_gradient` when :math:`S_2 = \Sigma_{\mathrm{tot}}` (centred means).

    Torch or SymPy matrices.
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
    = 2\,\mathrm{vec}\,B_c` (positive definite, so the root is unique). When :math:`M_1\succeq0`
    it is the minimiser of the small-:math:`\delta` quadratic on the PSD cone and
    :math:`M^*(\delta) = \delta M_1 + O(\delta^2)` (the book's theorem); for centred means it equals
    :func:`centred_small_delta_term`. Returns ``(d, d)``.
    """
    mom = mixture_moments(mixture)
    d = mixture.dim
    system = torch.kron(mom["s2"], mom["sigma_tot"]) + torch.kron(mom["sigma_tot"], mom["s2"])
    m1 = torch.linalg.solve(system, 2 * mom["b_c"].T.reshape(-1)).reshape(d, d).T
    return 0.5 * (m1 + m1.T)


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
    """
    check_shape("a_v", a_v, (mixture_v.dim, None))
    check_shape("a_t", a_t, (mixture_t.dim, a_v.shape[1]))
    check_finite("a_v", a_v)
    check_finite("a_t", a_t)
    return population_clip_loss_n(a_v @ a_t.T, mixture_v, mixture_t, n_quadrature)


# --------------------------------------------------------------------------------------------
# Second-order methods in M (PSD cone) and N (unconstrained)
# --------------------------------------------------------------------------------------------


def _log_sum_exp_cumulants(weights: torch.Tensor, t: torch.Tensor, node_weights: torch.Tensor):
    """Quadrature averages of the derivatives 1-4 of l(t) = log(w_1 + sum_{k>=2} w_k e^{t_k}).

    ``t``: (J, P, K-1) nodes of J Gaussians, ``node_weights``: (P,). l is the cumulant-generating
    function of the one-hot vector X (categories 2..K) under p = softmax(log w + (0, t)), so its
    n-th derivative at a node is the n-th cumulant of X under p there. Returns the node averages
    (J, K-1), (J, K-1, K-1), (J, K-1, K-1, K-1), (J, K-1, K-1, K-1, K-1). Batched products only.
    """
    return _cumulants_from_probabilities(torch.softmax(_phi_logits(weights, t), dim=-1), node_weights)


def _cumulants_from_probabilities(p_all: torch.Tensor, node_weights: torch.Tensor):
    """:func:`_log_sum_exp_cumulants` from the categorical probabilities ``p_all`` (J, P, K) at the nodes."""
    j, n_nodes, k = p_all.shape
    k1 = k - 1
    p = p_all[..., 1:]
    onehot = torch.cat([torch.zeros(1, k1, dtype=p.dtype, device=p.device),
                        torch.eye(k1, dtype=p.dtype, device=p.device)])  # (K, K-1)
    y = onehot - p.unsqueeze(-2)  # (J, P, K, K-1): X - p for each category
    yy = (y.unsqueeze(-1) * y.unsqueeze(-2)).reshape(j, n_nodes, k, k1 * k1)
    wp = (node_weights[:, None] * p_all).reshape(j, n_nodes * k, 1)  # quadrature x category weights
    y_flat = y.reshape(j, n_nodes * k, k1)
    yy_flat = yy.reshape(j, n_nodes * k, k1 * k1)
    e1 = node_weights @ p  # (J, K-1)
    c2 = (p_all.unsqueeze(-2) @ yy).squeeze(-2)  # per-node covariance, flattened (J, P, (K-1)^2)
    e2 = node_weights @ c2
    wyy = (wp * yy_flat).transpose(1, 2)
    e3 = wyy @ y_flat  # (J, (K-1)^2, K-1)
    m4 = wyy @ yy_flat  # (J, (K-1)^2, (K-1)^2)
    c2c2 = (node_weights[None, :, None] * c2).transpose(1, 2) @ c2  # E[c2 (x) c2], pairing (ab)(de)
    c2c2 = c2c2.reshape(j, k1, k1, k1, k1)
    e4 = m4.reshape(j, k1, k1, k1, k1) - c2c2 - c2c2.permute(0, 1, 3, 2, 4) - c2c2.permute(0, 1, 3, 4, 2)
    return e1, e2.reshape(j, k1, k1), e3.reshape(j, k1, k1, k1), e4


def _phi_cumulants(weights, g, h, n_quadrature):
    """Node averages of the cumulants 1-4 of expected_log_sum_exp's integrand, per component (K > 1).

    The same nodes as :func:`expected_log_sum_exp` (:func:`_quadrature_points`). Returns
    ``(e1, e2, e3, e4)`` as in :func:`_log_sum_exp_cumulants`.
    """
    return _log_sum_exp_cumulants(weights, *_quadrature_points(g, h, n_quadrature))


def _phi_directional(weights, g, h, n_quadrature, dg, dh, d2h, cumulants=None):
    """Gradient pairing and Hessian Gram matrix of expected_log_sum_exp along directions.

    ``dg``, ``dh``: (q, K, K) first derivatives of G and H along q directions; ``d2h``: a function
    (i, j) -> second derivative of H, given as the (q, q, K, K) tensor. Gaussian expectations of
    l(c + L xi) differentiate by Price's theorem: d/dc -> E l', d/dS -> E l''/2, and so on.
    ``cumulants``: :func:`_phi_cumulants` at (g, h), if already computed.
    """
    e1, e2, e3, e4 = _phi_cumulants(weights, g, h, n_quadrature) if cumulants is None else cumulants
    dc = (dg[:, 1:, :] - dg[:, :1, :]).transpose(1, 2)  # (q, K(j), K-1)

    def to_s(x):  # K x K symmetric perturbation of H -> (K-1) x (K-1) perturbation of S
        x = 0.5 * (x + x.transpose(-1, -2))
        return x[..., 1:, 1:] - x[..., 1:, :1] - x[..., :1, 1:] + x[..., :1, :1]

    ds = to_s(dh)  # (q, K-1, K-1)
    grad = (weights @ dg[:, 0, :].T) + torch.einsum("j,qja,ja->q", weights, dc, e1)
    e2_bar = torch.einsum("j,jab->ab", weights, e2)
    grad = grad + 0.5 * torch.einsum("qab,ab->q", ds, e2_bar)
    hess = torch.einsum("j,pja,jab,qjb->pq", weights, dc, e2, dc)
    cross = 0.5 * torch.einsum("j,pja,jabd,qbd->pq", weights, dc, e3, ds)
    hess = hess + cross + cross.T
    hess = hess + 0.25 * torch.einsum("pab,abde,qde->pq", ds, torch.einsum("j,jabde->abde", weights, e4), ds)
    hess = hess + 0.5 * torch.einsum("pqab,ab->pq", to_s(d2h), e2_bar)
    return grad, hess


def _symmetric_basis(d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Orthonormal basis (p, d, d) of symmetric d x d matrices, p = d(d+1)/2."""
    rows, cols = torch.triu_indices(d, d, device=device)
    basis = torch.zeros(rows.numel(), d, d, dtype=dtype, device=device)
    idx = torch.arange(rows.numel(), device=device)
    scale = torch.where(rows == cols, 1.0, 1.0 / math.sqrt(2.0)).to(dtype)
    basis[idx, rows, cols] = scale
    basis[idx, cols, rows] = scale
    return basis


def _info_nce_derivatives(m: torch.Tensor, mixture: GaussianMixture, delta: float, n_quadrature: int,
                          directions: torch.Tensor | None, mom: dict | None = None):
    """Value, gradient Z (d, d) and, for symmetric ``directions`` (q, d, d), the Hessian Gram matrix (q, q).

    Analytic: the smooth part is linear plus quadratic in M; G = mu M mu^T is linear and
    H = mu M Sigma M mu^T quadratic in M, and the derivatives of expected_log_sum_exp in (G, H)
    are Gaussian expectations of the cumulants of a categorical distribution (Price's theorem).
    The gradient, by hand (the tests compare it with autograd): with the attraction matrix
    B = delta sum_k w_k mu_k mu_k^T + (1 - delta) mu_bar mu_bar^T,

        Z = -B + (Sigma M S2 + S2 M Sigma)/2 + mu^T Gamma_G mu + Q M Sigma + Sigma M Q,

    Gamma_G = d phi/dG (row 0: w_j (1 - sum_a E l'_a), rows a+1: w_j E l'_a, per column j),
    Q = mu^T D^T (sum_j w_j E l''_j / 2) D mu with D = [-1, I] (d phi/dH through DHD^T).

    The Hessian along E_p, E_q, with nu = D mu (rows mu_k - mu_1, k >= 2): the quadratic parts
    give tr(E_p Sigma E_q (S2 + 2Q)), symmetrised (2Q from the second derivative of H); phi's
    cumulants pair the first derivatives of the mean and covariance of its Gaussian,
    c_q = mu E_q nu^T (row j: component j) and s_q = nu E_q Sigma M nu^T + its transpose:
    sum_j w_j [c_p E2_j c_q + (c_p E3_j s_q + c_q E3_j s_p) / 2] + s_p (sum_j w_j E4_j) s_q / 4,
    with En_j the node average of the n-th cumulant. One node set serves the value and all
    cumulants; every contraction is a product of flattened matrices.
    """
    mom = mixture_moments(mixture) if mom is None else mom
    sigma, s2, mu, w = mom["sigma"], mom["s2"], mixture.means, mixture.weights
    k = mixture.n_components
    m = m.detach()
    smooth, g, h = _info_nce_pieces(m, mixture, delta, mom)
    mean = mom["mean"]
    sms = sigma @ m @ s2
    z = -(delta * (mu.T * w) @ mu + (1 - delta) * torch.outer(mean, mean)) + 0.5 * (sms + sms.T)
    gamma_g = torch.zeros(k, k, dtype=m.dtype, device=m.device)
    gamma_g[0] = w
    q_mat = None
    if k > 1:
        t, node_weights = _quadrature_points(g, h, n_quadrature)
        logits = _phi_logits(w, t)
        lse = torch.logsumexp(logits, dim=-1)
        value = smooth + w @ g[0] + w @ (lse @ node_weights)
        e1, e2, e3, e4 = _cumulants_from_probabilities(torch.exp(logits - lse.unsqueeze(-1)), node_weights)
        gamma_g[0] = w * (1 - e1.sum(-1))
        gamma_g[1:] = (w.unsqueeze(-1) * e1).T
        nu = mu[1:] - mu[:1]  # D mu
        e2_bar = (w @ e2.reshape(k, -1)).reshape(k - 1, k - 1)
        q_mat = 0.5 * (nu.T @ e2_bar @ nu)
        qms = q_mat @ m @ sigma
        z = z + qms + qms.T
    else:
        value = smooth + w @ g[0]
    z = z + mu.T @ gamma_g @ mu
    z = 0.5 * (z + z.T)
    if directions is None:
        return float(value), z, None
    e = directions
    n_dirs, d = e.shape[0], e.shape[1]
    # tr(E_p Sigma E_q S), S = S2 (+ 2Q): entries of E_p Sigma against those of (E_q S)^T
    outer = s2 if q_mat is None else s2 + 2 * q_mat
    quad = (e @ sigma).reshape(n_dirs, d * d) @ (e @ outer).transpose(1, 2).reshape(n_dirs, d * d).T
    hess = 0.5 * (quad + quad.T)
    if k > 1:
        k1 = k - 1
        dc = (mu @ e @ nu.T).reshape(n_dirs, k * k1)  # c_q, flattened (component j, a)
        x = (nu @ e) @ (sigma @ m @ nu.T)  # (q, K-1, K-1)
        ds = (x + x.transpose(1, 2)).reshape(n_dirs, k1 * k1)  # s_q, flattened
        hess = hess + dc @ torch.block_diag(*(w[:, None, None] * e2)) @ dc.T
        cross = 0.5 * (dc @ (w[:, None, None] * e3.reshape(k, k1, k1 * k1)).reshape(k * k1, k1 * k1)) @ ds.T
        hess = hess + cross + cross.T
        e4_bar = (w @ e4.reshape(k, -1)).reshape(k1 * k1, k1 * k1)
        hess = hess + 0.25 * (ds @ e4_bar @ ds.T)
    return float(value), z, 0.5 * (hess + hess.T)


@dataclass(frozen=True)
class PSDMinimiser:
    r"""Result of :func:`minimize_info_nce_psd`: the minimiser :math:`M^* = A^*A^{*\top}` and its certificate.

    ``a`` is the ``(d, rank)`` factor (``a @ a.T`` is :math:`M^*`); ``value`` the loss there;
    ``gradient`` the symmetric gradient :math:`Z = \nabla\mathcal L(M^*)`; ``barrier_eigenvalues``
    the eigenvalues of the last interior-point iterate (descending) from which the rank was read;
    ``newton_history`` the largest gradient entry of the factor after each face-Newton step.
    """

    a: torch.Tensor
    value: float
    gradient: torch.Tensor
    rank: int
    barrier_eigenvalues: torch.Tensor
    interior_newton_steps: int
    newton_history: tuple[float, ...]

    @property
    def m(self) -> torch.Tensor:
        return self.a @ self.a.T


def _face_newton(loss_and_derivs, value_of, a0: torch.Tensor, max_steps: int, gtol: float, rcond: float):
    """Newton on the factor A (d, m) of a fixed-rank M = A A^T, pseudo-inverse for the O(m) gauge.

    Saddle-free (|eigenvalues| of the Hessian) with a backtracking line search on the loss, so every
    accepted step is a descent step; near the minimiser full steps are taken (quadratic convergence).
    Stops below ``gtol`` or after three steps without progress, where progress within ``1000 gtol``
    of zero (the round-off floor) means halving the best gradient so far.
    """
    d, m = a0.shape
    a = a0.clone()
    eye_m = torch.eye(m, dtype=a.dtype, device=a.device)
    units = torch.eye(d * m, dtype=a.dtype, device=a.device).reshape(d * m, d, m)
    history: list[float] = []
    best = None
    progress_score, progress_step = math.inf, 0
    for _ in range(max_steps + 1):
        dirs = units @ a.T  # dA_i A^T, (dm, d, d)
        dirs = dirs + dirs.transpose(1, 2)
        value, z, hess_m = loss_and_derivs(a @ a.T, dirs)
        grad = (2 * z @ a).reshape(-1)
        score = float(grad.abs().max())
        if best is None or score < best[0]:
            best = (score, a.clone(), value, z)
        history.append(score)
        if score < gtol or len(history) > max_steps:
            break
        # progress: any decrease, but within 1000 gtol of 0 (round-off) only a halving counts
        if score < (0.5 if progress_score < 1e3 * gtol else 1.0) * progress_score:
            progress_score, progress_step = score, len(history) - 1
        if len(history) - 1 - progress_step >= 3:  # three steps without progress: round-off
            break
        hess = hess_m + 2 * torch.kron(z, eye_m)
        evals, evecs = torch.linalg.eigh(0.5 * (hess + hess.T))
        # |eigenvalues| (saddle-free Newton): a descent direction even near a saddle of the
        # factorised problem (a column at zero along a direction of negative curvature).
        keep = evals.abs() > rcond * evals.abs().max()
        step = (evecs[:, keep] @ ((evecs[:, keep].T @ grad) / evals[keep].abs())).reshape(d, m)
        s, slack = 1.0, 64 * torch.finfo(a.dtype).eps * max(1.0, abs(value))
        while s > 1e-6 and not value_of(a - s * step) <= value + slack:
            s *= 0.5
        a = a - s * step
    return best, history


def minimize_info_nce_psd(
    mixture: GaussianMixture,
    delta: float,
    n_quadrature: int = 40,
    *,
    barriers: tuple[float, ...] = (1e-2, 1e-4, 1e-6, 1e-8),
    rank_ratio: float = 3.0,
    newton_steps: int = 12,
    gtol: float = 1e-15,
    rcond: float = 1e-11,
    escape_tol: float = 1e-10,
) -> PSDMinimiser:
    r"""Minimise the convex :func:`population_info_nce_m` over the PSD cone, then factor the minimiser.

    1. *Interior point.* Damped Newton (backtracking line search that keeps :math:`M\succ0`) on
       :math:`\mathcal L(M) - t\log\det M` over symmetric :math:`M`, for each barrier weight
       :math:`t` in ``barriers`` (decreasing), warm-started by a predictor step along the tangent
       :math:`dM/dt` of the central path (kept when positive definite and better for the new
       weight). Exact Hessians: analytic for the
       closed-form parts; the log-sum-exp term differentiates by Price's theorem (Gaussian
       expectations of the cumulants of a categorical distribution), so no autograd Hessian is
       needed. At the barrier's minimiser an eigenvalue of :math:`M` in a direction the optimum
       uses stays of order one as :math:`t\to0`, one in a direction where the loss rises to first
       order is of order :math:`t`, and one where it rises only to second order is of order
       :math:`\sqrt t`. The rank of :math:`M^*` is read off as the number of eigenvalues that
       shrink by less than ``rank_ratio`` between the last two barrier weights.
    2. *Newton on the face.* With that rank :math:`m`, Newton on the factor :math:`A\in\mathbb R^{d\times m}`
       of :math:`M = AA^\top` (the face of the cone through :math:`M^*`, locally non-degenerate up
       to the rotations :math:`A\mapsto AQ`, dropped by a pseudo-inverse with ``rcond``) converges
       quadratically to round-off (largest gradient entry below ``gtol``, or no progress for three
       steps). The iterate with the smallest gradient is returned.

    Optimality is *not* assumed: check it with :func:`psd_kkt_certificate`.

    Raises:
        ValueError: for ``delta`` outside ``[0, 1]``, barriers that are not positive and
            decreasing (at least two), or non-positive tolerances.
    """
    delta = _check_delta(delta)
    if len(barriers) < 2 or any(b <= 0 for b in barriers) or any(b1 <= b2 for b1, b2 in zip(barriers, barriers[1:])):
        raise ValueError(f"barriers must be at least two positive, decreasing weights, got {barriers!r}")
    for name, value in (("gtol", gtol), ("rcond", rcond)):
        check_positive(name, value)
    if not rank_ratio > 1:
        raise ValueError(f"rank_ratio must be > 1, got {rank_ratio}")
    d, dtype, device = mixture.dim, mixture.dtype, mixture.device
    basis = _symmetric_basis(d, dtype, device)

    moments = mixture_moments(mixture)  # once per solve: every evaluation below reuses them

    def derivs(m_mat: torch.Tensor, dirs: torch.Tensor | None):
        return _info_nce_derivatives(m_mat, mixture, delta, n_quadrature, dirs, moments)

    def value_only(m_mat: torch.Tensor) -> float:
        smooth, g, h = _info_nce_pieces(m_mat, mixture, delta, moments)
        return float(smooth + _phi_value(mixture.weights, g, h, n_quadrature))

    def barrier_value(m_mat: torch.Tensor, t: float) -> float:
        chol, info = torch.linalg.cholesky_ex(m_mat)
        if int(info) != 0:
            return math.inf
        return value_only(m_mat) - 2 * t * float(torch.log(torch.diagonal(chol)).sum())

    # Natural scales from the small-delta term M_1 (M* ~ delta M_1, L(M*) ~ -delta^2 tr(M_1 B_c) / 2):
    # the start is of the size of M*, the barrier weights are relative to the size of the loss.
    m1 = small_delta_leading_term(mixture)
    mom = mixture_moments(mixture)
    size = max(delta, 1e-3)
    loss_scale = size**2 * abs(float(torch.trace(m1 @ mom["b_c"])))
    m = (size * abs(float(torch.trace(m1))) / d) * torch.eye(d, dtype=dtype, device=device)
    steps = 0
    spectra = []
    basis_flat = basis.reshape(basis.shape[0], d * d)
    tangent = None  # (t, dM/dt) on the central path at the previous barrier weight
    for t in (b * loss_scale for b in barriers):
        if tangent is not None:
            # predictor: follow the tangent of the central path to the new weight (an eigenvalue of
            # order t lands on its new size), kept only if positive definite and better for the
            # new barrier objective; Newton (the corrector) then starts there
            candidate = m + (t - tangent[0]) * tangent[1]
            if int(torch.linalg.cholesky_ex(candidate)[1]) == 0 and barrier_value(candidate, t) < barrier_value(m, t):
                m = 0.5 * (candidate + candidate.T)
        for _ in range(40):
            value, z, hess = derivs(m, basis)
            chol = torch.linalg.cholesky(m)
            m_inv = torch.cholesky_inverse(chol)
            grad = basis_flat @ (z - t * m_inv).reshape(-1)
            # tr(M^-1 E_p M^-1 E_q): the Hessian of -log det M
            inv_e = (m_inv @ basis).reshape(basis.shape[0], d * d)
            inv_e_t = (m_inv @ basis).transpose(1, 2).reshape(basis.shape[0], d * d)
            hess = hess + t * (inv_e @ inv_e_t.T)
            # at the centre grad L(M) = t M^-1, so (Hess L + t Hess(-log det)) dM/dt = M^-1
            tangent = (t, (torch.linalg.solve(hess, basis_flat @ m_inv.reshape(-1)) @ basis_flat).reshape(d, d))
            step = -torch.linalg.solve(hess, grad)
            decrement = float(-(grad @ step))
            if decrement < 1e-20 * max(1.0, abs(value)):
                break
            direction = (step @ basis_flat).reshape(d, d)
            # the barrier objective at m (= barrier_value(m, t), without evaluating the loss again)
            f0, s = value - 2 * t * float(torch.log(torch.diagonal(chol)).sum()), 1.0
            # Armijo up to the round-off of the loss (as in the face Newton below): once the
            # decrement is at round-off, the full Newton step is taken and the stage ends, instead
            # of halving the step until the test passes on noise
            slack = 64 * torch.finfo(dtype).eps * max(1.0, abs(f0))
            while s > 1e-12 and not barrier_value(m + s * direction, t) <= f0 - 0.25 * s * decrement + slack:
                s *= 0.5
            if s <= 1e-12:  # no acceptable step: solved to round-off
                break
            m = m + s * direction
            m = 0.5 * (m + m.T)
            steps += 1
            if s == 1.0 and decrement < 1e-10 * max(1.0, abs(value)):  # quadratic phase: one more step suffices
                break
        spectra.append(torch.linalg.eigh(m))
    (evals_prev, _), (evals, evecs) = spectra[-2], spectra[-1]
    evals, evecs, evals_prev = evals.flip(0), evecs.flip(1), evals_prev.flip(0)
    rank = int((evals_prev / evals < rank_ratio).sum())
    a = evecs[:, :rank] * evals[:rank].sqrt()
    history: list[float] = []
    scale = float(mixture.weights @ mixture.means.pow(2).sum(1))  # tr(sum_k w_k mu_k mu_k^T) >= |grad L(0)|
    while True:
        (score, a, value, z), part = _face_newton(derivs, lambda a_: value_only(a_ @ a_.T), a, newton_steps,
                                                  gtol, rcond)
        history.extend(part)
        lam, vecs = torch.linalg.eigh(z)
        if float(lam[0]) >= -escape_tol * scale or a.shape[1] >= d:
            break
        # Z has a negative eigenvalue: the rank read from the barrier path was too small (a used
        # eigenvalue below the barrier's resolution). Add that direction at its 1-D Newton size.
        v = vecs[:, :1]
        _, _, curvature = derivs(a @ a.T, (v @ v.T).unsqueeze(0))
        size = -float(lam[0]) / float(curvature[0, 0])
        a = torch.cat([a, math.sqrt(size) * v], dim=1)
    return PSDMinimiser(a, value, z, a.shape[1], evals, steps, tuple(history))


def psd_kkt_certificate(gradient: torch.Tensor, a: torch.Tensor) -> dict[str, float]:
    r"""KKT quantities of a candidate minimiser :math:`M = AA^\top` of a convex function on the PSD cone.

    With :math:`Z = \nabla\mathcal L(M)` (symmetric), :math:`M` is optimal iff :math:`Z\succeq0` and
    :math:`ZM = 0`; for a convex :math:`\mathcal L` and any :math:`M'\succeq0`,
    :math:`\mathcal L(M')\ge\mathcal L(M) + \lambda_{\min}(Z)\operatorname{tr}M' - \langle Z, M\rangle`.
    Returns ``min_eig`` (:math:`\lambda_{\min}(Z)`), ``complementarity``
    (:math:`\|ZM\|_F/\|M\|_F`), ``inner`` (:math:`|\langle Z, M\rangle|`) and ``slack``, the smallest
    eigenvalue of :math:`Z` on :math:`\mathrm{Col}(M)^\perp` (positive: strict complementarity).
    """
    check_matrix("gradient", gradient)
    check_matrix("a", a)
    z = 0.5 * (gradient + gradient.T)
    m = a @ a.T
    q, _ = torch.linalg.qr(a, mode="complete")
    rest = q[:, a.shape[1]:]
    slack = float(torch.linalg.eigvalsh(rest.T @ z @ rest)[0]) if rest.shape[1] else math.inf
    return {
        "min_eig": float(torch.linalg.eigvalsh(z)[0]),
        "complementarity": float((z @ m).norm() / m.norm()),
        "inner": float((z * m).sum().abs()),
        "slack": slack,
    }


def _clip_derivatives(n: torch.Tensor, mixture_v: GaussianMixture, mixture_t: GaussianMixture, n_quadrature: int):
    """Value, gradient (d_V, d_T) and Hessian (d_V d_T, d_V d_T) of :func:`population_clip_loss_n`, by hand.

    Along the unit directions E_q = e_a e_b^T (q = a d_T + b, the order of ``n.reshape(-1)``):
    the quadratic parts 1/2 tr(N S_T N^T S2_V) and 1/2 tr(N^T S_V N S2_T) have gradients
    S2_V N S_T and S_V N S2_T and constant Hessians; each log-partition term is
    expected_log_sum_exp of (G, H) with G linear and H quadratic in N (v -> t: G = mu_T N^T mu_V^T,
    H = mu_T N^T S_V N mu_T^T; t -> v with N^T and the roles swapped), differentiated by Price's
    theorem as in :func:`_phi_directional`. The tests compare it with autograd.
    """
    w = mixture_v.weights
    k = w.shape[0]
    mom_v, mom_t = mixture_moments(mixture_v), mixture_moments(mixture_t)
    mu_v, mu_t = mixture_v.means, mixture_t.means
    dv, dt = n.shape
    q = dv * dt
    units = torch.eye(q, dtype=n.dtype, device=n.device).reshape(q, dv, dt)
    value = float(population_clip_loss_n(n, mixture_v, mixture_t, n_quadrature))
    grad = -2 * (mu_v.T * w) @ mu_t
    hess = torch.zeros(q, q, dtype=n.dtype, device=n.device)
    for mat, sig_in, s2_in, sig_out, s2_out, mu_in, mu_out in (
        (n, mom_t["sigma"], mom_t["s2"], mom_v["sigma"], mom_v["s2"], mu_t, mu_v),  # v -> t
        (n.T, mom_v["sigma"], mom_v["s2"], mom_t["sigma"], mom_t["s2"], mu_v, mu_t),  # t -> v
    ):
        # this direction's variable X (N or N^T) and its unit directions
        e = units if mat is n else units.transpose(1, 2)
        # 1/2 tr(X sig_in X^T s2_out): gradient s2_out X sig_in, Hessian tr(E_p sig_in E_q^T s2_out)
        g_quad = s2_out @ mat @ sig_in
        grad = grad + (g_quad if mat is n else g_quad.T)
        quad = torch.einsum("pab,bc,qdc,da->pq", e, sig_in, e, s2_out)
        hess = hess + 0.5 * (quad + quad.T)
        # phi(G, H), G = mu_in X^T mu_out^T, H = mu_in X^T sig_out X mu_in^T
        g = mu_in @ mat.T @ mu_out.T
        h = mu_in @ mat.T @ sig_out @ mat @ mu_in.T
        dg = torch.einsum("ka,qba,jb->qkj", mu_in, e, mu_out)
        x = e.transpose(1, 2) @ sig_out @ mat  # E^T sig_out X
        dh = mu_in @ (x + x.transpose(1, 2)) @ mu_in.T
        if k == 1:
            grad = grad + (dg[:, 0, :] @ w).reshape(dv, dt)
            continue
        y = torch.einsum("pba,bc,qcd->pqad", e, sig_out, e)  # E_p^T sig_out E_q
        d2h = torch.einsum("ka,pqab,jb->pqkj", mu_in, y + y.transpose(0, 1), mu_in)
        g_phi, h_phi = _phi_directional(w, g, h, n_quadrature, dg, dh, d2h)
        grad = grad + g_phi.reshape(dv, dt)
        hess = hess + h_phi
    return value, grad, 0.5 * (hess + hess.T)


def minimize_clip_n(
    mixture_v: GaussianMixture,
    mixture_t: GaussianMixture,
    n_quadrature: int = 40,
    *,
    max_steps: int = 60,
    gtol: float = 1e-14,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    r"""Minimise the convex :func:`population_clip_loss_n` over :math:`N\in\mathbb R^{d_V\times d_T}` by damped Newton.

    Unconstrained (no cone), strictly convex: Newton with a backtracking line search from a small
    multiple of :math:`\sum_kw_k\mu_{V,k}\mu_{T,k}^\top` converges quadratically. Gradient and Hessian by hand
    (Price's theorem, :func:`_clip_derivatives`; the tests compare them with autograd). Returns ``(n, gradient, history)``
    with the largest gradient entry after each step; stops below ``gtol`` or after three steps
    without progress (round-off).
    """
    check_positive("gtol", gtol)
    dv, dt = mixture_v.dim, mixture_t.dim

    def f(flat: torch.Tensor) -> torch.Tensor:
        return population_clip_loss_n(flat.reshape(dv, dt), mixture_v, mixture_t, n_quadrature)

    # Start on the attraction direction sum_k w_k mu_Vk mu_Tk^T (N = 0 would make the covariance of
    # the log-sum-exp arguments vanish, where its Cholesky factor is not differentiable).
    start = torch.einsum("k,ki,kj->ij", mixture_v.weights, mixture_v.means, mixture_t.means)
    x = (0.1 * start / start.norm()).reshape(-1)
    history: list[float] = []
    best = None
    for _ in range(max_steps):
        f0, grad, hess = _clip_derivatives(x.reshape(dv, dt), mixture_v, mixture_t, n_quadrature)
        grad = grad.reshape(-1)
        score = float(grad.abs().max())
        history.append(score)
        if best is None or score < best[0]:
            best = (score, x.clone(), grad)
        if score < gtol or len(history) - 1 - history.index(min(history)) >= 3:
            break
        step = -torch.linalg.solve(hess, grad)
        s, slope = 1.0, float(grad @ step)
        slack = 64 * torch.finfo(x.dtype).eps * max(1.0, abs(f0))  # round-off of the loss itself
        while s > 1e-10 and float(f(x + s * step)) > f0 + 0.25 * s * slope + slack:
            s *= 0.5
        x = x + s * step
    return best[1].reshape(dv, dt), best[2].reshape(dv, dt), history


def minimize_population_loss(
    loss: Callable[..., torch.Tensor],
    initial: tuple[torch.Tensor, ...],
    *,
    gtol: float = 1e-11,
    max_iter: int = 20_000,
    newton_steps: int = 0,
    newton_gtol: float = 1e-14,
    rcond: float = 1e-10,
) -> tuple[tuple[torch.Tensor, ...], scipy.optimize.OptimizeResult]:
    r"""Minimise a smooth loss of one or more matrices: L-BFGS (scipy), then optional Newton steps.

    ``loss(*matrices)`` must return a differentiable scalar tensor. The matrices are flattened into
    one float64 vector; L-BFGS stops when the largest gradient entry is below ``gtol`` (scipy's
    ``pgtol``) or the relative decrease stalls at round-off (``ftol`` = machine epsilon).

    Why Newton: the population losses depend on :math:`A` only through :math:`AA^\top`, so a
    column direction that the minimiser does not use is penalised only at fourth order, and
    first-order methods approach zero there like :math:`\|g\|^{1/3}`. Each Newton step
    :math:`v \leftarrow v - H^{+}g` (autograd Hessian; pseudo-inverse keeping eigenvalues above
    ``rcond`` times the largest, which drops the flat directions of the invariance
    :math:`A\mapsto AQ`) shrinks such a direction by the factor :math:`2/3`. Up to ``newton_steps`` steps are taken
    (stopping once the largest gradient entry is below ``newton_gtol``, or after eight steps without
    progress, the round-off floor) and the iterate with the smallest
    largest gradient entry is returned (``result.newton_steps`` is its
    index, 0 for the L-BFGS point; ``result.newton_history`` the largest gradient entry after each step).

    Returns:
        ``(minimisers, result)``: tensors shaped like ``initial`` and scipy's ``OptimizeResult``
        (``result.jac`` holds the final gradient, ``result.fun`` the final loss, ``result.nit`` the
        L-BFGS iterations).

    Raises:
        ValueError: if ``initial`` is empty or holds non-finite tensors, ``gtol`` or ``rcond`` is not
            positive, or ``newton_steps`` is negative.
    """
    if not initial:
        raise ValueError("initial must hold at least one tensor")
    for i, t in enumerate(initial):
        check_finite(f"initial[{i}]", t)
    if not (gtol > 0):
        raise ValueError(f"gtol must be > 0, got {gtol}")
    if not (newton_gtol > 0):
        raise ValueError(f"newton_gtol must be > 0, got {newton_gtol}")
    if not (rcond > 0):
        raise ValueError(f"rcond must be > 0, got {rcond}")
    if isinstance(newton_steps, bool) or not isinstance(newton_steps, int) or newton_steps < 0:
        raise ValueError(f"newton_steps must be a non-negative int, got {newton_steps!r}")
    shapes = [t.shape for t in initial]
    sizes = [t.numel() for t in initial]
    dtype, device = initial[0].dtype, initial[0].device

    def unpack(vector: np.ndarray) -> list[torch.Tensor]:
        flat = torch.as_tensor(vector, dtype=dtype, device=device)
        return [p.reshape(s).requires_grad_(True) for p, s in zip(flat.split(sizes), shapes)]

    def value_and_grad(vector: np.ndarray) -> tuple[float, np.ndarray]:
        params = unpack(vector)
        value = loss(*params)
        grads = torch.autograd.grad(value, params)
        return float(value.detach()), torch.cat([g.reshape(-1) for g in grads]).detach().cpu().numpy().astype(np.float64)

    x0 = torch.cat([t.detach().reshape(-1) for t in initial]).cpu().numpy().astype(np.float64)
    import scipy.optimize  # here, not at import: 0.3 s saved in chapters that never call it

    result = scipy.optimize.minimize(
        value_and_grad,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": gtol, "ftol": float(np.finfo(np.float64).eps), "maxiter": max_iter, "maxcor": 30},
    )
    x, grad = result.x, np.asarray(result.jac, dtype=np.float64)
    best, kept, history = (x, grad, float(result.fun)), 0, []
    for _ in range(newton_steps):
        flat = torch.as_tensor(x, dtype=dtype, device=device)
        hess = torch.autograd.functional.hessian(
            lambda v: loss(*[p.reshape(s) for p, s in zip(v.split(sizes), shapes)]), flat
        )
        evals, evecs = torch.linalg.eigh(0.5 * (hess + hess.T))
        keep = evals > rcond * evals.abs().max()
        g = torch.as_tensor(grad, dtype=dtype, device=device)
        step = evecs[:, keep] @ ((evecs[:, keep].T @ g) / evals[keep])
        x = x - step.cpu().numpy()
        value, grad = value_and_grad(x)
        history.append(float(np.abs(grad).max()))
        if history[-1] < np.abs(best[1]).max():
            best, kept = (x, grad, value), len(history)
        elif len(history) - kept >= 8:  # eight steps without progress: at the round-off floor
            break
        if np.abs(best[1]).max() < newton_gtol:
            break
    x, grad = best[0], best[1]
    result.fun = best[2]
    result.x, result.jac, result.newton_steps, result.newton_history = x, grad, kept, history
    final = tuple(p.detach() for p in unpack(x))
    return final, result


def train_pair_info_nce_minibatch(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    a0: torch.Tensor,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    generator: torch.Generator,
    optimizer: str = "adam",
    drop_last: bool = False,
    show_progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Minibatch training of the linear map :math:`f(x) = A^\top x` with the pair InfoNCE loss.

    Each epoch draws a random permutation of the ``n`` training pairs (from ``generator``) and
    cuts it into minibatches :math:`B` of ``batch_size`` pairs (the last, smaller one is kept if
    it holds at least two pairs and ``drop_last`` is false, skipped otherwise). On each minibatch one step of Adam (or plain SGD) is taken on

    .. math::
        \mathcal L_B(A) = -\frac1{|B|}\sum_{i\in B}\log
          \frac{e^{x_i^\top AA^\top\hat x_i}}{\frac1{|B|-1}\sum_{j\in B,\,j\ne i}e^{x_i^\top AA^\top\hat x_j}}

    (:func:`clkit.pair_info_nce` on the batch: the in-batch, sample version of the population
    InfoNCE loss of Bansal, Kavis & Sanghavi 2024, InfoNCE slide). With gradient :math:`g_t` at
    step :math:`t = 1,\dots,T` the updates are SGD, :math:`A_t = A_{t-1} - \eta_t g_t`, or Adam
    (Kingma & Ba 2015, Algorithm 1, :math:`\beta_1 = 0.9`, :math:`\beta_2 = 0.999`,
    :math:`\epsilon = 10^{-8}`): :math:`m_t = \beta_1m_{t-1} + (1-\beta_1)g_t`,
    :math:`v_t = \beta_2v_{t-1} + (1-\beta_2)g_t^{2}`,
    :math:`A_t = A_{t-1} - \eta_t\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)` with
    :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)` (entrywise). The
    learning rate :math:`\eta_t = \eta_0(1 - (t-1)/T)` decays linearly from ``lr`` towards ``0``,
    so the iterates settle instead of fluctuating at a level set by the step size. Note that :math:`\mathbb E_B\mathcal L_B` is *not* the full-batch
    loss :math:`\mathcal L_{[n]}` (the log of an in-batch mean is biased by :math:`O(1/|B|)`), so
    the iterates approach the full-batch minimiser only up to that bias.

    Args:
        x, x_hat: ``(n, d)`` training pairs, ``n >= 2``.
        a0: ``(d, r)`` initial :math:`A` (its dtype and device are used throughout).
        batch_size: pairs per minibatch, an int in ``[2, n]``.
        epochs: passes over the data, a positive int.
        lr: initial learning rate, ``> 0``.
        generator: the only source of randomness (the permutations); on the device of ``x``.
        optimizer: ``"adam"`` or ``"sgd"``.
        drop_last: skip the incomplete last minibatch of each epoch, so every step sees exactly
            ``batch_size`` pairs.
        show_progress: passed (negated) to :func:`clkit.progress` as ``disable``; ``None`` lets
            tqdm decide.

    Returns:
        ``(a, trajectory)``: the final ``(d, r)`` matrix and the ``(epochs + 1, d, r)`` iterates at
        the start and after each epoch (detached).

    Raises:
        ValueError: naming the argument, for inconsistent shapes, non-finite inputs, a batch size
            outside ``[2, n]``, non-positive ``epochs`` or ``lr``, or an unknown ``optimizer``.
    """
    check_shape("x", x, (None, None))
    n, d = x.shape
    check_shape("x_hat", x_hat, (n, d))
    check_shape("a0", a0, (d, None))
    for name, t in (("x", x), ("x_hat", x_hat), ("a0", a0)):
        check_finite(name, t)
    if n < 2:
        raise ValueError(f"x must hold at least two pairs, got {n}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not (2 <= batch_size <= n):
        raise ValueError(f"batch_size must be an int in [2, {n}], got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    lr = check_positive("lr", lr)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    x = x.to(dtype=a0.dtype, device=a0.device)
    x_hat = x_hat.to(dtype=a0.dtype, device=a0.device)
    a = a0.detach().clone()
    # Adam's moment estimates (Kingma & Ba 2015, Algorithm 1, default betas and epsilon), written
    # out: importing torch.optim is cheap, but constructing torch.optim.Adam loads torch._dynamo,
    # about a second on a 2-core machine.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m, v = torch.zeros_like(a), torch.zeros_like(a)
    starts = [s for s in range(0, n, batch_size) if n - s >= (batch_size if drop_last else 2)]
    total_steps = epochs * len(starts)
    step = 0
    trajectory = [a.clone()]
    disable = None if show_progress is None else not show_progress
    for _ in progress(range(epochs), desc="minibatch InfoNCE", disable=disable):
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
        for s in starts:
            idx = order[s : s + batch_size]
            a_var = a.requires_grad_(True)
            (grad,) = torch.autograd.grad(pair_info_nce(x[idx] @ a_var, x_hat[idx] @ a_var), a_var)
            a = a.detach()
            rate = lr * (1.0 - step / total_steps)
            step += 1
            if optimizer == "sgd":
                a = a - rate * grad
            else:
                m = beta1 * m + (1 - beta1) * grad
                v = beta2 * v + (1 - beta2) * grad * grad
                m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
                a = a - rate * m_hat / (v_hat.sqrt() + eps)
        trajectory.append(a.clone())
    return a, torch.stack(trajectory)


def _batched_pair_info_nce_gradient(x: torch.Tensor, x_hat: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    r"""Gradient in :math:`A` of :func:`clkit.pair_info_nce` (temperature 1) of ``(x_s @ a_s, x_hat_s @ a_s)`` for each of S batches, by hand: ``(S, d, r)``.

    With :math:`z_i = A^\top x_i`, :math:`\hat z_j = A^\top\hat x_j` and :math:`P` the softmax of
    row :math:`i` of :math:`z_i^\top\hat z_j` over :math:`j\ne i`, the loss
    :math:`\frac1B\sum_i[\log\sum_{j\ne i}e^{z_i^\top\hat z_j} - z_i^\top\hat z_i]` (up to a constant)
    has :math:`\partial/\partial Z = (P\hat Z - \hat Z)/B`, :math:`\partial/\partial\hat Z = (P^\top Z - Z)/B`,
    so the gradient is :math:`X^\top\partial_Z + \hat X^\top\partial_{\hat Z}`. (The tests compare the
    training it drives with the autograd-driven :func:`train_pair_info_nce_minibatch`.)
    """
    z, z_hat = x @ a, x_hat @ a
    n = z.shape[1]
    logits = z @ z_hat.transpose(1, 2)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    p = torch.softmax(logits.masked_fill(eye, -math.inf), dim=-1)
    d_z = (p @ z_hat - z_hat) / n
    d_z_hat = (p.transpose(1, 2) @ z - z) / n
    return x.transpose(1, 2) @ d_z + x_hat.transpose(1, 2) @ d_z_hat


def train_pair_info_nce_minibatch_batched(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    a0: torch.Tensor,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    generators: list[torch.Generator],
    drop_last: bool = False,
    show_progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`train_pair_info_nce_minibatch` (Adam) for S independent training sets at once.

    ``x, x_hat``: ``(S, n, d)``, ``a0``: ``(S, d, r)``, ``generators``: S generators, generator
    ``s`` drawing the epoch permutations of set ``s`` exactly as the unbatched function would. The
    S problems share nothing: each step is Adam on :math:`\sum_s\mathcal L_{B_s}(A_s)`, whose
    gradient in :math:`A_s` is that of :math:`\mathcal L_{B_s}(A_s)` alone (computed by hand,
    :func:`_batched_pair_info_nce_gradient`), and Adam acts entrywise, so every set follows the
    unbatched iterates (up to round-off) at the cost of one batched step.
    Returns ``(a, trajectory)`` of shapes ``(S, d, r)`` and ``(S, epochs + 1, d, r)``.

    Raises:
        ValueError: naming the argument, for inconsistent shapes, non-finite inputs, a batch size
            outside ``[2, n]``, non-positive ``epochs`` or ``lr``, or a wrong number of generators.
    """
    check_shape("x", x, (None, None, None))
    s_count, n, d = x.shape
    check_shape("x_hat", x_hat, (s_count, n, d))
    check_shape("a0", a0, (s_count, d, None))
    for name, t in (("x", x), ("x_hat", x_hat), ("a0", a0)):
        check_finite(name, t)
    if len(generators) != s_count:
        raise ValueError(f"generators must hold {s_count} generators, got {len(generators)}")
    if n < 2:
        raise ValueError(f"x must hold at least two pairs per set, got {n}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not (2 <= batch_size <= n):
        raise ValueError(f"batch_size must be an int in [2, {n}], got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    lr = check_positive("lr", lr)
    x = x.to(dtype=a0.dtype, device=a0.device)
    x_hat = x_hat.to(dtype=a0.dtype, device=a0.device)
    a = a0.detach().clone()
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # Kingma & Ba 2015, Algorithm 1
    m, v = torch.zeros_like(a), torch.zeros_like(a)
    starts = [s for s in range(0, n, batch_size) if n - s >= (batch_size if drop_last else 2)]
    total_steps = epochs * len(starts)
    step = 0
    trajectory = [a.clone()]
    rows = torch.arange(s_count, device=x.device)[:, None]
    disable = None if show_progress is None else not show_progress
    for _ in progress(range(epochs), desc="minibatch InfoNCE (batched)", disable=disable):
        order = torch.stack([torch.randperm(n, generator=g, device=g.device) for g in generators]).to(x.device)
        for s in starts:
            idx = order[:, s : s + batch_size]
            # the gradient of each set's minibatch loss, by hand (no autograd graph per step)
            grad = _batched_pair_info_nce_gradient(x[rows, idx], x_hat[rows, idx], a)
            rate = lr * (1.0 - step / total_steps)
            step += 1
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
            a = a - rate * m_hat / (v_hat.sqrt() + eps)
        trajectory.append(a.clone())
    return a, torch.stack(trajectory, dim=1)


def _rank_one_softmax(z: torch.Tensor, zh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row softmax over ``j != i`` of the rank-one logits ``z_i zh_j`` and its log-normaliser.

    ``z, zh``: ``(S, n)``. Returns ``(P, lse)`` with ``P`` ``(S, n, n)`` (zero diagonal) and
    ``lse_i = log sum_{j != i} exp(z_i zh_j)``. The row maximum over ``j != i`` is known without
    forming the logits (``z_i`` times the largest or smallest ``zh_j``, ``j != i``, from the top
    two and bottom two of ``zh``), so the matrix is formed once, shifted, by one ``baddbmm`` and
    exponentiated in place: five passes over ``n^2`` entries instead of about fifteen.
    """
    n = z.shape[-1]
    rows = torch.arange(n, device=z.device)
    top, bottom = zh.topk(2, dim=-1), zh.topk(2, dim=-1, largest=False)
    hi = torch.where(rows == top.indices[..., :1], top.values[..., 1:], top.values[..., :1])
    lo = torch.where(rows == bottom.indices[..., :1], bottom.values[..., 1:], bottom.values[..., :1])
    shift = torch.where(z >= 0, z * hi, z * lo)  # max_{j != i} z_i zh_j
    p = torch.baddbmm(-shift.unsqueeze(-1), z.unsqueeze(-1), zh.unsqueeze(-2)).exp_()
    p.diagonal(dim1=-2, dim2=-1).zero_()
    total = p.sum(-1)  # >= 1: the row maximum contributes exp(0)
    p.div_(total.unsqueeze(-1))
    return p, shift + total.log()


def _rank_one_pair_value(z: torch.Tensor, zh: torch.Tensor) -> torch.Tensor:
    """:func:`clkit.pair_info_nce` of the rank-one codes ``z, zh`` ``(S, n)`` of S sets: ``(S,)``."""
    _, lse = _rank_one_softmax(z, zh)
    return (lse - math.log(z.shape[-1] - 1) - z * zh).mean(-1)


def _rank_one_pair_derivatives(x: torch.Tensor, x_hat: torch.Tensor, a: torch.Tensor):
    """Value (S,), gradient (S, d) and Hessian (S, d, d) of the pair InfoNCE of f(x) = a^T x, a in R^d.

    With z = Xa, z^ = X^a, S_ij = z_i z^_j and P_ij the softmax of row i over j != i:
    grad = (X^T(P z^ - z^) + X^^T(P^T z - z))/n and, with u_ij = z_i x^_j + z^_j x_i,
    Hess = (1/n) sum_i [sum_j P_ij(x_i x^_j^T + x^_j x_i^T + u_ij u_ij^T) - u_i u_i^T
    - x_i x^_i^T - x^_i x_i^T], u_i = sum_j P_ij u_ij.
    Every sum over j is one product of P with a thin matrix: P [X^, z^ X^, z^, z^^2] and
    P^T [z, z^2] are the only passes over P (``cross`` = sum_ij P_ij (1 + z_i z^_j) x_i x^_j^T
    = X^T (P X^) + (zX)^T (P (z^X^))).
    """
    n, d = x.shape[1], x.shape[2]
    z = (x @ a.unsqueeze(-1)).squeeze(-1)
    zh = (x_hat @ a.unsqueeze(-1)).squeeze(-1)
    p, lse = _rank_one_softmax(z, zh)
    value = (lse - math.log(n - 1) - z * zh).mean(-1)
    right = p @ torch.cat([x_hat, x_hat * zh.unsqueeze(-1), zh.unsqueeze(-1), (zh * zh).unsqueeze(-1)], -1)
    p_xh, p_zxh, p_zh, p_zh2 = right[..., :d], right[..., d:2 * d], right[..., 2 * d], right[..., 2 * d + 1]
    left = p.transpose(1, 2) @ torch.stack([z, z * z], -1)
    pt_z, pt_z2 = left[..., 0], left[..., 1]
    xt = x.transpose(1, 2)
    xht = x_hat.transpose(1, 2)
    grad = ((xt @ (p_zh - zh).unsqueeze(-1)) + (xht @ (pt_z - z).unsqueeze(-1))).squeeze(-1) / n
    cross = xt @ p_xh + (xt * z.unsqueeze(1)) @ p_zxh
    t3 = (xht * pt_z2.unsqueeze(1)) @ x_hat + (xt * p_zh2.unsqueeze(1)) @ x
    u = z.unsqueeze(-1) * p_xh + p_zh.unsqueeze(-1) * x
    own = xt @ x_hat
    hess = (cross + cross.transpose(1, 2) + t3 - u.transpose(1, 2) @ u - own - own.transpose(1, 2)) / n
    return value, grad, 0.5 * (hess + hess.transpose(1, 2))


def minimize_pair_info_nce_rank_one(
    x: torch.Tensor, x_hat: torch.Tensor, a0: torch.Tensor, *, gtol: float = 1e-13, max_steps: int = 100
) -> tuple[torch.Tensor, torch.Tensor, int]:
    r"""Full-batch minimiser of :func:`clkit.pair_info_nce` for :math:`f(x) = a^\top x`, :math:`a\in\mathbb R^d`, S sets at once.

    Saddle-free Newton (exact analytic gradient and Hessian of the rank-one pair InfoNCE, see the
    source; :math:`|`eigenvalues:math:`|` of the Hessian, so each step descends even near the
    saddle :math:`a = 0`) with a backtracking Armijo line search per set; near a minimiser full
    steps converge quadratically. ``x, x_hat``: ``(S, n, d)``; ``a0``: ``(S, d, 1)``. Stops when
    every set's largest gradient entry is below ``gtol``, after ``max_steps`` steps, or after three
    steps in which neither the loss nor the gradient decreased (round-off). Optimality is not assumed: check the gradient of the
    returned point independently. Returns ``(a, gradient, steps)`` with ``a`` ``(S, d, 1)``.

    Raises:
        ValueError: naming the argument, for inconsistent shapes or ``a0`` with more than one column.
    """
    check_shape("x", x, (None, None, None))
    s_count, n, d = x.shape
    check_shape("x_hat", x_hat, (s_count, n, d))
    check_shape("a0", a0, (s_count, d, 1))
    check_positive("gtol", gtol)
    a = a0[..., 0].detach().clone()
    best_score, stall, steps, progressed = math.inf, 0, 0, True
    value, grad, hess = _rank_one_pair_derivatives(x, x_hat, a)
    for steps in range(1, max_steps + 1):
        score = float(grad.abs().max())
        if score < gtol:
            break
        stall = 0 if score < best_score or progressed else stall + 1
        best_score = min(best_score, score)
        if stall >= 3:
            break
        evals, evecs = torch.linalg.eigh(hess)
        evals = evals.abs().clamp_min(1e-12 * float(evals.abs().max()))
        step = (evecs @ ((evecs.transpose(1, 2) @ grad.unsqueeze(-1)) / evals.unsqueeze(-1))).squeeze(-1)
        slope = (grad * step).sum(-1)
        s = torch.ones(s_count, dtype=a.dtype, device=a.device)
        slack = 64 * torch.finfo(a.dtype).eps * value.abs().clamp_min(1.0)
        for _ in range(40):
            trial = a - s.unsqueeze(-1) * step
            v_trial = _rank_one_pair_value((x @ trial.unsqueeze(-1)).squeeze(-1),
                                           (x_hat @ trial.unsqueeze(-1)).squeeze(-1))
            ok = v_trial <= value - 0.25 * s * slope + slack
            if bool(ok.all()):
                break
            s = torch.where(ok, s, 0.5 * s)
        a = a - s.unsqueeze(-1) * step
        previous = value
        value, grad, hess = _rank_one_pair_derivatives(x, x_hat, a)
        progressed = bool((value < previous - slack).any())
    return a.unsqueeze(-1), grad, steps
