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

Both population losses reduce to closed forms plus one Gaussian integral of dimension
:math:`K-1` per component, computed by tensor Gauss–Hermite quadrature (see
:func:`expected_log_mgf`); the reduction is the book's derivation (chapter "InfoNCE learns the
Fisher subspace").
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable

import numpy as np
import scipy.optimize
import torch

from ._validation import check_finite, check_positive, check_matrix, check_positive_definite, check_probability_vector, check_shape
from .device import as_tensor
from .losses import pair_info_nce
from .mixtures import GaussianMixture
from .progress_bars import progress
from .subspaces import orthonormal_basis

__all__ = [
    "fisher_subspace",
    "spectral_subspace",
    "sample_augmentation_pairs",
    "gauss_hermite_grid",
    "expected_log_mgf",
    "population_pair_info_nce",
    "pair_info_nce_integrand",
    "population_clip_loss",
    "minimize_population_loss",
    "train_pair_info_nce_minibatch",
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
    nodes, weights = _hermite_tensor_rule(dim, n)
    return torch.tensor(nodes, dtype=dtype, device=device), torch.tensor(weights, dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _hermite_tensor_rule(dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Cached: the optimisers evaluate the same rule thousands of times.
    xi, varpi = np.polynomial.hermite.hermgauss(n)
    nodes = np.array(list(itertools.product(xi, repeat=dim))) * math.sqrt(2.0)
    weights = np.prod(np.array(list(itertools.product(varpi, repeat=dim))), axis=1) / math.pi ** (dim / 2)
    return nodes, weights


def expected_log_mgf(
    weights: torch.Tensor,
    centers: torch.Tensor,
    cov: torch.Tensor,
    quad: torch.Tensor,
    nu: torch.Tensor,
    n_quadrature: int = 40,
) -> torch.Tensor:
    r"""The outer expectation of both population losses, by closed forms plus Gauss–Hermite.

    .. math::
        \Phi = \mathbb E_{z\sim\sum_j w_j\mathcal N(m_j, C)}\Big[\tfrac12 z^\top Q z
           + \log\sum_k w_k e^{z^\top\nu_k}\Big].

    The quadratic term is :math:`\tfrac12\sum_j w_j(\operatorname{tr}(QC) + m_j^\top Q m_j)`. In the
    log-sum-exp, :math:`z^\top\nu_1` is pulled out (its mean is :math:`\sum_j w_j m_j^\top\nu_1`);
    what remains depends on :math:`z` only through :math:`t = D^\top z\in\mathbb R^{K-1}`,
    :math:`D = [\nu_2-\nu_1,\dots,\nu_K-\nu_1]`, which under component :math:`j` is
    :math:`\mathcal N(D^\top m_j, D^\top C D)`; that :math:`(K-1)`-dimensional expectation is taken
    with an ``n_quadrature``-point tensor Gauss–Hermite rule per component
    (:func:`gauss_hermite_grid`). A relative jitter of :math:`10^{-13}` on :math:`D^\top CD` keeps
    its Cholesky factor defined when the :math:`\nu_k` are affinely dependent.

    Args:
        weights: ``(K,)`` mixing weights :math:`w` (used for both the outer mixture and the log-sum-exp).
        centers: ``(K, r)`` means :math:`m_j` of :math:`z` given component :math:`j`.
        cov: ``(r, r)`` covariance :math:`C` of :math:`z` given its component.
        quad: ``(r, r)`` symmetric matrix :math:`Q`.
        nu: ``(K, r)`` vectors :math:`\nu_k`.
        n_quadrature: Gauss–Hermite points per dimension.

    Returns:
        A differentiable scalar tensor.

    Raises:
        ValueError: naming the argument, for inconsistent shapes or non-finite input.
    """
    check_shape("centers", centers, (None, None))
    k, r = centers.shape
    check_shape("weights", weights, (k,))
    check_shape("cov", cov, (r, r))
    check_shape("quad", quad, (r, r))
    check_shape("nu", nu, (k, r))
    for name, t in (("weights", weights), ("centers", centers), ("cov", cov), ("quad", quad), ("nu", nu)):
        check_finite(name, t)
    n_quadrature = _check_n_quadrature(n_quadrature)
    quadratic = 0.5 * (torch.trace(quad @ cov) + weights @ torch.einsum("ji,il,jl->j", centers, quad, centers))
    linear = weights @ (centers @ nu[0])
    if k == 1:
        return quadratic + linear
    diff = (nu[1:] - nu[0]).T  # (r, K-1)
    gram = diff.T @ cov @ diff
    jitter = 1e-13 * (torch.diagonal(gram).mean().detach() + torch.finfo(gram.dtype).tiny)
    chol = torch.linalg.cholesky(gram + jitter * torch.eye(k - 1, dtype=gram.dtype, device=gram.device))
    nodes, node_weights = gauss_hermite_grid(k - 1, n_quadrature, dtype=centers.dtype, device=centers.device)
    t = (centers @ diff).unsqueeze(1) + (nodes @ chol.T).unsqueeze(0)  # (K, P, K-1)
    log_w = torch.log(weights)
    logits = torch.cat([log_w[0].expand(t.shape[0], t.shape[1], 1), log_w[1:] + t], dim=-1)
    lse = torch.logsumexp(logits, dim=-1)  # (K, P)
    return quadratic + linear + weights @ (lse @ node_weights)


def _shared_sigma(mixture: GaussianMixture, name: str) -> torch.Tensor:
    if not mixture.shared_covariance:
        raise ValueError(f"{name} must have a shared covariance (the setting of Bansal et al.)")
    return mixture.covariances[0]


def population_pair_info_nce(
    a: torch.Tensor, mixture: GaussianMixture, delta: float, n_quadrature: int = 40
) -> torch.Tensor:
    r"""Population InfoNCE loss of :math:`f(x) = A^\top x` on the augmentation pairs of bias :math:`\delta`.

    .. math::
        \mathcal L(A) = -\mathbb E_{(x,\hat x)\sim\hat F}\big[x^\top AA^\top\hat x\big]
            + \mathbb E_{x\sim F}\log\mathbb E_{y\sim F}e^{x^\top AA^\top y}

    (Bansal et al. 2024, InfoNCE slide, with the map written :math:`A^\top x` so that
    :math:`A\in\mathbb R^{d\times r}`). For a shared covariance :math:`\Sigma`, with
    :math:`\nu_k = A^\top\mu_k` and :math:`C = A^\top\Sigma A`,

    .. math::
        \mathbb E[x^\top AA^\top\hat x] = \delta\sum_k w_k\|\nu_k\|^2 + (1-\delta)\|\textstyle\sum_k w_k\nu_k\|^2,
        \qquad
        \log\mathbb E_y e^{u^\top y} = \tfrac12 u^\top\Sigma u + \log\sum_k w_k e^{u^\top\mu_k},

    and with :math:`u = AA^\top x`, :math:`z = A^\top x` the outer expectation is
    :func:`expected_log_mgf` with :math:`m_j = \nu_j`, :math:`Q = C`.

    Args:
        a: ``(d, r)`` matrix :math:`A`.
        mixture: shared-covariance :class:`clkit.GaussianMixture` :math:`F`.
        delta: bias :math:`\delta\in[0,1]` of the augmentation distribution.
        n_quadrature: Gauss–Hermite points per dimension (the integral has dimension :math:`K-1`).

    Returns:
        A scalar tensor, differentiable in ``a``.

    Raises:
        ValueError: naming the argument, for a wrong shape of ``a``, a mixture without shared
            covariance, ``delta`` outside ``[0, 1]``.
    """
    check_shape("a", a, (mixture.dim, None))
    check_finite("a", a)
    delta = _check_delta(delta)
    sigma = _shared_sigma(mixture, "mixture")
    w = mixture.weights
    nu = mixture.means @ a  # (K, r)
    c = a.T @ sigma @ a
    nu_bar = w @ nu
    positive = delta * (w @ nu.pow(2).sum(1)) + (1 - delta) * nu_bar.pow(2).sum()
    return -positive + expected_log_mgf(w, nu, c, c, nu, n_quadrature)


def pair_info_nce_integrand(
    a: torch.Tensor, mixture: GaussianMixture, x: torch.Tensor, x_hat: torch.Tensor
) -> torch.Tensor:
    r"""Per-pair values whose mean is :math:`\mathcal L(A)` (inner expectation over :math:`y` exact).

    .. math:: \ell(x,\hat x) = -x^\top AA^\top\hat x + \tfrac12 u^\top\Sigma u + \log\sum_k w_k e^{u^\top\mu_k},
              \qquad u = AA^\top x,

    so that :math:`\mathbb E_{(x,\hat x)\sim\hat F}\,\ell = ` :func:`population_pair_info_nce`. Used to
    check the quadrature by Monte Carlo. ``x, x_hat``: ``(n, d)``; returns ``(n,)``.

    Raises:
        ValueError: for inconsistent shapes or a mixture without shared covariance.
    """
    d = mixture.dim
    check_shape("a", a, (d, None))
    check_shape("x", x, (None, d))
    check_shape("x_hat", x_hat, tuple(x.shape))
    sigma = _shared_sigma(mixture, "mixture")
    z, z_hat = x @ a, x_hat @ a
    u = z @ a.T
    log_mgf = 0.5 * ((u @ sigma) * u).sum(1) + torch.logsumexp(torch.log(mixture.weights) + u @ mixture.means.T, dim=1)
    return -(z * z_hat).sum(1) + log_mgf


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
    :math:`f_T(x) = A_T^\top x`). With :math:`\nu_{V,k} = A_V^\top\mu_{V,k}`,
    :math:`C_V = A_V^\top\Sigma_VA_V` (and likewise for T), the positive term is
    :math:`-2\sum_k w_k\nu_{V,k}^\top\nu_{T,k}` and each log-partition term is
    :func:`expected_log_mgf` with :math:`(m, C, Q, \nu) = (\nu_V, C_V, C_T, \nu_T)` and
    :math:`(\nu_T, C_T, C_V, \nu_V)`.

    Args:
        a_v, a_t: ``(d_V, r)`` and ``(d_T, r)`` matrices.
        mixture_v, mixture_t: shared-covariance mixtures with the same weights.
        n_quadrature: Gauss–Hermite points per dimension.

    Raises:
        ValueError: naming the argument, for wrong shapes, different weights or ranks, or a mixture
            without shared covariance.
    """
    check_shape("a_v", a_v, (mixture_v.dim, None))
    check_shape("a_t", a_t, (mixture_t.dim, a_v.shape[1]))
    check_finite("a_v", a_v)
    check_finite("a_t", a_t)
    if mixture_v.n_components != mixture_t.n_components or not torch.allclose(mixture_v.weights, mixture_t.weights):
        raise ValueError("mixture_t must have the same weights as mixture_v (paired components)")
    sigma_v, sigma_t = _shared_sigma(mixture_v, "mixture_v"), _shared_sigma(mixture_t, "mixture_t")
    w = mixture_v.weights
    nu_v, nu_t = mixture_v.means @ a_v, mixture_t.means @ a_t
    c_v, c_t = a_v.T @ sigma_v @ a_v, a_t.T @ sigma_t @ a_t
    positive = w @ (nu_v * nu_t).sum(1)
    return (
        -2 * positive
        + expected_log_mgf(w, nu_v, c_v, c_t, nu_t, n_quadrature)
        + expected_log_mgf(w, nu_t, c_t, c_v, nu_v, n_quadrature)
    )


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
    # out: importing torch.optim pulls in torch._dynamo, about a second on a 2-core machine.
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
