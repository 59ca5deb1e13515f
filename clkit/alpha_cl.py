r"""Tian (2022, 2023): α-CL contrastive covariance, the one-layer objective and its local roughness.

Sources. The contrastive covariance, the energy :math:`\mathcal E_\alpha=\tfrac12\operatorname{tr}
\mathbb C_\alpha[f_\theta]`, the α-CL update with stop-gradient α, the gated data
:math:`\tilde x^w = x\,h'(w^\top x)`, :math:`A(w)=\mathbb C_\alpha[\tilde x^w]`, the Gaussian
pairwise importance and the local roughness :math:`\rho(w)` are those of Y. Tian, "Understanding
the role of nonlinearity in training dynamics of contrastive learning" (ICLR 2023, arXiv 2206.01342;
its Meta-AI poster, seed 003) and "Understanding deep contrastive learning via coordinate-wise
optimization" (NeurIPS 2022). The latent-pattern data model, its closed-form population
:math:`A(w)`, the eigengap :math:`\lambda_{\rm gap}` and the roughness *bound* are the book's
reconstruction (the paper's own statements were not available): see chapter ``04_alpha_cl``.

Activations are homogeneous, :math:`h(x) = h'(x)\,x`: ``"linear"`` (:math:`h(x)=x`) and ``"relu"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ._validation import (
    check_finite,
    check_matrix,
    check_positive,
    check_probability_vector,
    check_shape,
)
from .device import as_tensor
from .symbolic import is_symbolic

__all__ = [
    "contrastive_covariance",
    "uniform_alpha_expected_covariance",
    "one_layer_matrix",
    "one_layer_objective",
    "gaussian_alpha",
    "alpha_cl_energy",
    "info_nce_distance",
    "info_nce_alpha",
    "info_nce_alpha_from_distances",
    "LatentPatternModel",
    "alpha_cl_dynamics",
    "tangent_bases",
    "eigengap",
    "local_roughness_batch",
    "flow_jacobian",
    "linearised_flow_matrix",
    "find_critical_points",
    "relu_gaussian_moments",
    "pattern_population_matrix",
]

# The homogeneous activations h(x) = h'(x) x supported by the one-layer functions.
_ACTIVATIONS: tuple[str, ...] = ("linear", "relu")


def _check_activation(activation: str) -> str:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return activation


def _activation(activation: str, u: torch.Tensor) -> torch.Tensor:
    return u if activation == "linear" else torch.relu(u)


def _activation_derivative(activation: str, u: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(u) if activation == "linear" else (u > 0).to(u.dtype)


def _check_pair(x: torch.Tensor, x_pos: torch.Tensor) -> None:
    check_matrix("x", x)
    check_shape("x_pos", x_pos, tuple(x.shape))
    check_finite("x_pos", x_pos)


def _check_batch_pair(x: torch.Tensor, x_pos: torch.Tensor) -> None:
    """``(N, d)`` or a batch ``(B, N, d)`` of views, finite, with matching shapes."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ValueError(f"x must be a tensor of shape (N, d) or (B, N, d), got {getattr(x, 'shape', type(x))}")
    check_finite("x", x)
    check_shape("x_pos", x_pos, tuple(x.shape))
    check_finite("x_pos", x_pos)


def _check_weight(name: str, w: torch.Tensor, d: int) -> None:
    check_shape(name, w, (d,))
    check_finite(name, w)
    if float(w.detach().norm()) == 0.0:
        raise ValueError(f"{name} must be non-zero")


def contrastive_covariance(x: torch.Tensor, x_pos: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r"""The contrastive covariance :math:`\mathbb C_\alpha[x]` of Tian (ICLR 2023; poster, seed 003).

    .. math::
        \mathbb C_\alpha[x] = \frac{1}{2N^2}\sum_{i,j=1}^{N}\alpha_{ij}\Big[(x[i]-x[j])(x[i]-x[j])^\top
            - (x[i]-x[i'])(x[i]-x[i'])^\top\Big],

    over *all* ordered pairs, :math:`i=j` included (its first term vanishes, its second does not).
    Expanding the squares gives the vectorised form used here, with row sums :math:`r = \alpha 1`,
    column sums :math:`c = \alpha^\top 1` and :math:`D = X - X'`:
    :math:`\big[X^\top(\operatorname{diag}(r+c)-\alpha-\alpha^\top)X - D^\top\operatorname{diag}(r)D\big]/(2N^2)`.

    Args:
        x: ``(N, d)`` rows :math:`x[i]`, or a batch ``(B, N, d)`` of independent batches.
        x_pos: their positives (augmented views) :math:`x[i']`, same shape.
        alpha: ``(N, N)`` pairwise importances :math:`\alpha_{ij}` (any real weights), or ``(B, N, N)``.

    Returns:
        ``(d, d)`` symmetric matrix (``(B, d, d)`` for a batch), differentiable in all three inputs.

    Raises:
        ValueError: naming the argument, for shapes that do not match or non-finite entries.
    """
    _check_batch_pair(x, x_pos)
    n = x.shape[-2]
    if not isinstance(alpha, torch.Tensor) or alpha.shape[-2:] != (n, n) or alpha.dim() > x.dim() or (
        alpha.dim() == 3 and alpha.shape[0] != x.shape[0]
    ):
        raise ValueError(f"alpha must have shape ({n}, {n}) or (B, {n}, {n}), got {tuple(getattr(alpha, 'shape', ()))}")
    check_finite("alpha", alpha)
    alpha = alpha.to(dtype=x.dtype)
    rows, cols = alpha.sum(-1), alpha.sum(-2)
    laplacian = torch.diag_embed(rows + cols) - alpha - alpha.transpose(-1, -2)
    d = x - x_pos
    xt = x.transpose(-1, -2)
    return (xt @ laplacian @ x - (d * rows[..., None]).transpose(-1, -2) @ d) / (2 * n * n)


def uniform_alpha_expected_covariance(v_conditional_mean, v_total, n):
    r"""Exact mean of :math:`\mathbb C_\alpha[x]` for uniform α on ``n`` i.i.d. pairs (the book's lemma):

    .. math:: \mathbb E\,\mathbb C_{\mathbf 1}[x] = \mathbb V_{x_0}\big[\mathbb E[x\mid x_0]\big] - \frac1N\,\mathbb V[x],

    valid when the two views are conditionally independent and identically distributed given
    :math:`x_0`. Accepts tensors, floats or SymPy expressions (for the chapter's symbolic proof).

    Args:
        v_conditional_mean: :math:`\mathbb V[\mathbb E[x\mid x_0]]` (matrix or scalar).
        v_total: :math:`\mathbb V[x]` (same shape).
        n: batch size :math:`N\ge 1` (an int or a SymPy symbol).

    Raises:
        ValueError: for a numeric ``n < 1``.
    """
    if not is_symbolic(n) and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int, got {n!r}")
    return v_conditional_mean - v_total / n


def _gated_data(x: torch.Tensor, w: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    r"""Gated data :math:`\tilde x^w[i] = x[i]\,h'(w^\top x[i])` (Tian 2023, one-layer section).

    Args:
        x: ``(N, d)`` data (or a batch ``(B, N, d)``); w: ``(d,)`` weight; activation: ``"linear"``
            or ``"relu"`` (:math:`h'(u)=\mathbb 1[u>0]`).

    Returns:
        Same shape as ``x``. For a homogeneous :math:`h`, :math:`h(w^\top x) = w^\top\tilde x^w`.

    Raises:
        ValueError: for bad shapes, non-finite input, a zero ``w`` or an unknown activation.
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ValueError(f"x must be a tensor of shape (N, d) or (B, N, d), got {getattr(x, 'shape', type(x))}")
    check_finite("x", x)
    _check_weight("w", w, x.shape[-1])
    _check_activation(activation)
    return x * _activation_derivative(activation, x @ w)[..., None]


def one_layer_matrix(
    x: torch.Tensor, x_pos: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor, activation: str = "relu"
) -> torch.Tensor:
    r""":math:`A(w) = \mathbb C_\alpha[\tilde x^w]`, each view gated by its own pre-activation.

    For a homogeneous activation :math:`\mathbb C_\alpha[h(w^\top x)] = w^\top A(w) w`, and with
    α held fixed (stop-gradient) :math:`\nabla_w\,\tfrac12\mathbb C_\alpha[h(w^\top x)] = A(w)w`.

    Args:
        x, x_pos: ``(N, d)`` views (or batches ``(B, N, d)``); w: ``(d,)``; alpha: ``(N, N)``
            (or ``(B, N, N)``); activation: ``"linear"``/``"relu"``.

    Returns:
        ``(d, d)`` (``(B, d, d)`` for a batch).

    Raises:
        ValueError: as :func:`contrastive_covariance`, and for a zero ``w`` or an unknown activation.
    """
    _check_batch_pair(x, x_pos)
    return contrastive_covariance(_gated_data(x, w, activation), _gated_data(x_pos, w, activation), alpha)


def one_layer_objective(
    x: torch.Tensor, x_pos: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor, activation: str = "relu"
) -> torch.Tensor:
    r"""The one-node objective :math:`w^\top A(w) w = \mathbb C_\alpha[h(w^\top x)]`.

    Arguments and errors as :func:`one_layer_matrix`. Returns a scalar tensor (``(B,)`` for a batch).
    """
    return w @ one_layer_matrix(x, x_pos, w, alpha, activation) @ w


def gaussian_alpha(x0: torch.Tensor, w: torch.Tensor, tau: float, activation: str = "relu") -> torch.Tensor:
    r"""Gaussian pairwise importance of seed 003 on the un-augmented data :math:`x_0`:

    .. math:: \alpha_{ij} = \exp\Big(-\frac{\big(h(w^\top x_0[i]) - h(w^\top x_0[j])\big)^2}{2\tau}\Big).

    Args:
        x0: ``(N, d)`` (or a batch ``(B, N, d)``); w: ``(d,)``; tau: :math:`\tau>0`;
            activation: ``"linear"``/``"relu"``.

    Returns:
        ``(N, N)`` (``(B, N, N)``) symmetric, ones on the diagonal.

    Raises:
        ValueError: for bad shapes, non-finite input, ``tau <= 0`` or an unknown activation.
    """
    if not isinstance(x0, torch.Tensor) or x0.dim() not in (2, 3):
        raise ValueError(f"x0 must be a tensor of shape (N, d) or (B, N, d), got {getattr(x0, 'shape', type(x0))}")
    check_finite("x0", x0)
    _check_weight("w", w, x0.shape[-1])
    tau = check_positive("tau", tau)
    _check_activation(activation)
    f = _activation(activation, x0 @ w)
    return torch.exp(-(f[..., :, None] - f[..., None, :]).pow(2) / (2 * tau))


def alpha_cl_energy(f: torch.Tensor, f_pos: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r"""α-CL energy :math:`\mathcal E_\alpha = \tfrac12\operatorname{tr}\mathbb C_\alpha[f]` (seed 003).

    Equal to :math:`\frac{1}{2N^2}\sum_{i,j}\alpha_{ij}(d_{ij}^2 - d_i^2)` with the half squared
    distances :math:`d_{ij}^2=\tfrac12\|f[i]-f[j]\|^2`, :math:`d_i^2=\tfrac12\|f[i]-f[i']\|^2`.

    Args:
        f, f_pos: ``(N, K)`` outputs of the two views; alpha: ``(N, N)``.

    Returns:
        A scalar tensor, differentiable in ``f``, ``f_pos`` (and ``alpha``: detach it for α-CL).
    """
    return 0.5 * torch.trace(contrastive_covariance(f, f_pos, alpha))


def _half_squared_distances(f: torch.Tensor, f_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d_pos = 0.5 * (f - f_pos).pow(2).sum(1)
    sq = f.pow(2).sum(1)
    # Gram form: (N, N) memory, where broadcasting the differences would take (N, N, K).
    d_neg = (0.5 * (sq[:, None] + sq[None, :]) - f @ f.T).clamp_min(0.0)
    return d_pos, d_neg


def _check_tau_eps(tau: float, eps: float) -> float:
    tau = check_positive("tau", tau)
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return tau


def _info_nce_logits(d_pos: torch.Tensor, d_neg: torch.Tensor, tau: float, eps: float) -> torch.Tensor:
    """``(N, N + [eps > 0])`` logits: ``-d_ij/tau`` off the diagonal, ``-inf`` on it, and the
    positive's ``log eps - d_i/tau`` as a last column when ``eps > 0``."""
    n = d_pos.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=d_neg.device)
    logits = torch.where(off, -d_neg / tau, torch.full_like(d_neg, -math.inf))
    if eps > 0:
        logits = torch.cat([logits, (math.log(eps) - d_pos / tau)[:, None]], dim=1)
    return logits


def info_nce_distance(f: torch.Tensor, f_pos: torch.Tensor, tau: float, eps: float = 1.0) -> torch.Tensor:
    r"""InfoNCE in the distance form of α-CL (Tian 2022; poster of seed 003):

    .. math::
        \mathcal L_{nce} = -\tau\sum_{i=1}^N\log\frac{e^{-d_i^2/\tau}}
            {\epsilon\,e^{-d_i^2/\tau}+\sum_{j\ne i}e^{-d_{ij}^2/\tau}},
        \qquad d_i^2=\tfrac12\|f[i]-f[i']\|^2,\ d_{ij}^2=\tfrac12\|f[i]-f[j]\|^2 .

    With :math:`\epsilon=1` and unit-norm rows, :math:`d^2 = 1-\cos`, and this is :math:`\tau` times
    the sum over anchors of InfoNCE with cosine similarity and the other anchors as negatives.

    Args:
        f, f_pos: ``(N, K)`` outputs of the two views; tau: :math:`\tau>0`; eps: :math:`\epsilon\ge 0`.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: for mismatched shapes, non-finite input, ``tau <= 0`` or a bad ``eps``.
    """
    _check_pair(f, f_pos)
    tau = _check_tau_eps(tau, eps)
    d_pos, d_neg = _half_squared_distances(f, f_pos)
    return (d_pos + tau * torch.logsumexp(_info_nce_logits(d_pos, d_neg, tau, eps), dim=1)).sum()


def info_nce_alpha_from_distances(d_pos, d_neg, tau, eps=1.0):
    r"""The α that makes InfoNCE an α-CL, from the half squared distances (chapter ``04_alpha_cl``):

    .. math::
        \alpha_{ij} = 2N^2\,\frac{e^{-d_{ij}^2/\tau}}{\epsilon e^{-d_i^2/\tau}+\sum_{k\ne i}e^{-d_{ik}^2/\tau}}
        \ (j\ne i),\qquad \alpha_{ii}=0 .

    Accepts tensors (``d_pos`` ``(N,)``, ``d_neg`` ``(N, N)``; computed stably by a softmax) or SymPy
    objects (``d_pos`` a length-N sequence, ``d_neg`` an N x N ``sympy.Matrix``; symbols allowed for
    ``tau`` and ``eps``), so that the chapter's symbolic proof and its numeric checks use one formula.

    Returns:
        ``(N, N)`` tensor or ``sympy.Matrix``.

    Raises:
        ValueError: for mismatched shapes, ``tau <= 0`` or ``eps < 0`` (numeric input).
    """
    if is_symbolic(tau, eps, *list(d_pos), *list(d_neg)):
        import sympy

        n = len(d_pos)
        if tuple(sympy.Matrix(d_neg).shape) != (n, n):
            raise ValueError(f"d_neg must be {n} x {n}")
        d_neg = sympy.Matrix(d_neg)
        out = sympy.zeros(n, n)
        for i in range(n):
            z_i = eps * sympy.exp(-d_pos[i] / tau) + sum(sympy.exp(-d_neg[i, k] / tau) for k in range(n) if k != i)
            for j in range(n):
                if j != i:
                    out[i, j] = 2 * n * n * sympy.exp(-d_neg[i, j] / tau) / z_i
        return out
    check_shape("d_pos", d_pos, (None,))
    check_shape("d_neg", d_neg, (d_pos.shape[0], d_pos.shape[0]))
    tau = _check_tau_eps(tau, eps)
    n = d_pos.shape[0]
    return (2 * n * n) * torch.softmax(_info_nce_logits(d_pos, d_neg, tau, eps), dim=1)[:, :n]


def info_nce_alpha(f: torch.Tensor, f_pos: torch.Tensor, tau: float, eps: float = 1.0) -> torch.Tensor:
    r"""The pairwise importance that makes InfoNCE an α-CL (book's derivation, chapter ``04_alpha_cl``):

    :func:`info_nce_alpha_from_distances` of :math:`d_i^2=\tfrac12\|f[i]-f[i']\|^2`,
    :math:`d_{ij}^2=\tfrac12\|f[i]-f[j]\|^2`, so that
    :math:`\nabla_\theta\mathcal L_{nce} = -\nabla_\theta\mathcal E_{\mathrm{sg}(\alpha)}`.
    The result is detached (stop-gradient). Arguments and errors as :func:`info_nce_distance`.

    Returns:
        ``(N, N)``, row-normalised Gaussian weights scaled by :math:`2N^2`.
    """
    _check_pair(f, f_pos)
    _check_tau_eps(tau, eps)
    d_pos, d_neg = _half_squared_distances(f.detach(), f_pos.detach())
    return info_nce_alpha_from_distances(d_pos, d_neg, tau, eps)


def tangent_bases(w: torch.Tensor) -> torch.Tensor:
    r"""Orthonormal bases :math:`E_k` ``(K, d, d-1)`` of the tangent spaces :math:`w_k^\perp` of the
    unit sphere, one per row of ``w`` ``(K, d)``: the last :math:`d-1` columns of the QR factor of
    :math:`[\hat w_k, I_d]`.

    Raises:
        ValueError: for a ``w`` that is not a finite matrix with non-zero rows.
    """
    check_matrix("w", w)
    norms = w.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("w must have non-zero rows")
    d = w.shape[1]
    eye = torch.eye(d, dtype=w.dtype, device=w.device).expand(w.shape[0], d, d)
    q, _ = torch.linalg.qr(torch.cat([(w / norms)[:, :, None], eye], 2))
    return q[:, :, 1:d]


def _tangent_basis(w_hat: torch.Tensor) -> torch.Tensor:
    return tangent_bases(w_hat[None])[0]


def eigengap(a: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    r"""Rayleigh quotient :math:`\lambda_* = \hat w^\top A\hat w` and eigengap at a critical point.

    :math:`\lambda_{\rm gap}(w) = \lambda_* - \lambda_{\max}(E^\top\operatorname{sym}(A)E)`, with
    :math:`E` an orthonormal basis of :math:`w^\perp`: at an eigenvector ``w`` of a symmetric ``A``
    this is :math:`\lambda_*` minus the largest *other* eigenvalue (the book's definition, chapter
    ``04_alpha_cl``; negative when ``w`` is not the top eigenvector).

    Args:
        a: ``(d, d)``; w: ``(d,)`` (normalised here).

    Returns:
        ``(lambda_star, lambda_gap)`` as floats.

    Raises:
        ValueError: for a non-square or non-finite ``a``, or a zero or mis-shaped ``w``.
    """
    check_matrix("a", a)
    _check_weight("w", w, a.shape[0])
    w_hat = w / w.norm()
    basis = _tangent_basis(w_hat)
    lam = float(w_hat @ a @ w_hat)
    others = torch.linalg.eigvalsh(basis.T @ (0.5 * (a + a.T)) @ basis)
    return lam, lam - float(others.max())


def local_roughness_batch(
    matrices_fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor, step: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Local roughness :math:`\rho(w)` (Tian 2023, poster of seed 003) at each row of ``w``.

    :math:`\rho(w)` is the smallest constant with
    :math:`\|(A(v)-A(w))w\|_2 \le \rho(w)\|v-w\|_2 + O(\|v-w\|_2^2)` for unit :math:`v\to w`, i.e.
    the operator norm of the derivative :math:`B` of :math:`v\mapsto A(v)w` along the sphere.
    Column :math:`j` of :math:`B` is the central difference
    :math:`\big(A(v_+)-A(v_-)\big)w/(2\delta)`, :math:`v_\pm = (w\pm\delta e_j)/\|w\pm\delta e_j\|`,
    over the tangent basis :math:`e_j` of :func:`tangent_bases` (truncation error
    :math:`O(\delta^2)`, round-off :math:`O(\epsilon_{\rm mach}/\delta)`); all :math:`2K(d-1)`
    matrices in one call of ``matrices_fn``.

    Args:
        matrices_fn: ``(M, d) -> (M, d, d)``, the matrices :math:`A(v_m)` of unit rows ``v``.
        w: ``(K, d)`` points (normalised here).
        step: :math:`\delta>0`.

    Returns:
        ``(rho, B)``: ``(K,)`` and ``(K, d, d-1)`` (columns along :func:`tangent_bases`).

    Raises:
        ValueError: for a bad ``w`` or ``step <= 0``.
    """
    check_matrix("w", w)
    step = check_positive("step", step)
    basis = tangent_bases(w)  # (K, d, d-1); validates the rows
    w_hat = w / w.norm(dim=1, keepdim=True)
    k, d = w_hat.shape
    shifts = step * basis.transpose(1, 2)  # (K, d-1, d)
    v = torch.cat([w_hat[:, None, :] + shifts, w_hat[:, None, :] - shifts], 1).reshape(-1, d)
    a = matrices_fn(v / v.norm(dim=1, keepdim=True)).reshape(k, 2, d - 1, d, d)
    b = torch.einsum("kcij,kj->kic", a[:, 0] - a[:, 1], w_hat) / (2 * step)
    return torch.linalg.matrix_norm(b, ord=2), b


def alpha_cl_dynamics(
    matrices_fn: Callable[[torch.Tensor], torch.Tensor],
    w0: torch.Tensor,
    lr: float,
    steps: int,
) -> torch.Tensor:
    r"""α-CL dynamics of one-layer nodes on the unit sphere (the seed-003 update with sg(α)):

    .. math:: w \leftarrow \frac{w + \eta\,(I-ww^\top)A(w)w}{\|w + \eta\,(I-ww^\top)A(w)w\|},

    projected gradient ascent of :math:`\tfrac12 w^\top A(w)w` with α frozen inside each step
    (:math:`\nabla_w\tfrac12\mathbb C_{\mathrm{sg}(\alpha)}[h(w^\top x)] = A(w)w`). Near a critical
    point the step multiplies tangent errors by :math:`1+\eta(\lambda_j-\lambda_*)`, so
    :math:`\eta(\lambda_*-\lambda_{\min}) < 2` is needed for the iteration to settle.

    Args:
        matrices_fn: ``(K, d) -> (K, d, d)``, the matrices :math:`A(w_k)` of a batch of nodes.
        w0: ``(K, d)`` starting points (normalised here); lr: :math:`\eta>0`; steps: ``>= 1``.

    Returns:
        ``(K, d)`` unit-norm nodes after ``steps`` updates.

    Raises:
        ValueError: for bad shapes, ``lr <= 0`` or ``steps < 1``.
    """
    check_matrix("w0", w0)
    lr = check_positive("lr", lr)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    w = w0 / w0.norm(dim=1, keepdim=True)
    for _ in range(steps):
        w = w + lr * _sphere_flow(matrices_fn, w)
        w = w / w.norm(dim=1, keepdim=True)
    return w


def _sphere_flow(matrices_fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    r"""The α-CL flow :math:`F(w) = (I-\hat w\hat w^\top)A(\hat w)\hat w`, :math:`\hat w=w/\|w\|`,
    ``(K, d) -> (K, d)``; differentiable in ``w``. Its zeros are the critical points
    :math:`A(w_*)w_*=\lambda_*w_*`."""
    w_hat = w / w.norm(dim=1, keepdim=True)
    g = torch.einsum("kij,kj->ki", matrices_fn(w_hat), w_hat)
    return g - (g * w_hat).sum(1, keepdim=True) * w_hat


def flow_jacobian(matrices_fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    r"""Jacobian of the α-CL flow :math:`F(w)=(I-\hat w\hat w^\top)A(\hat w)\hat w` in tangent
    coordinates, :math:`E_k^\top\,\partial F/\partial w\,(w_k)\,E_k` (:math:`E_k` =
    :func:`tangent_bases`), by ``torch.autograd.functional.jacobian`` (the rows of ``w`` are
    independent, so the Jacobian of :math:`\sum_k F(w_k)` holds every row's). At a critical
    point its eigenvalues decide linear stability (all real parts < 0: stable).

    Args:
        matrices_fn: ``(K, d) -> (K, d, d)``, differentiable; w: ``(K, d)`` (normalised here).

    Returns:
        ``(K, d-1, d-1)``.

    Raises:
        ValueError: for a ``w`` that is not a finite matrix with non-zero rows.
    """
    basis = tangent_bases(w)
    w_hat = (w / w.norm(dim=1, keepdim=True)).detach()
    jac = torch.autograd.functional.jacobian(
        lambda v: _sphere_flow(matrices_fn, v).sum(0), w_hat, vectorize=True)  # (d, K, d)
    return basis.transpose(1, 2) @ jac.permute(1, 0, 2) @ basis


def linearised_flow_matrix(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r"""The book's linearisation of the α-CL flow at a critical point (Lemma ``lem-linearised-flow``
    of chapter ``04_alpha_cl``):

    .. math:: J = E^\top A(w_*)E + E^\top B_E - \lambda_* I,\qquad \lambda_* = w_*^\top A(w_*)w_*,

    with :math:`E` the tangent basis of :func:`tangent_bases` at ``w`` and :math:`B_E` the
    derivative of :math:`v\mapsto A(v)w_*` along :math:`E` (the ``B`` of
    :func:`local_roughness_batch`).

    Args:
        a: ``(d, d)``; b: ``(d, d-1)``; w: ``(d,)`` (normalised here).

    Returns:
        ``(d-1, d-1)``.

    Raises:
        ValueError: for shapes that do not match, non-finite entries or a zero ``w``.
    """
    check_matrix("a", a)
    _check_weight("w", w, a.shape[0])
    check_shape("b", b, (a.shape[0], a.shape[0] - 1))
    w_hat = w / w.norm()
    basis = _tangent_basis(w_hat)
    lam = w_hat @ a @ w_hat
    eye = torch.eye(a.shape[0] - 1, dtype=a.dtype, device=a.device)
    return basis.T @ a @ basis + basis.T @ b - lam * eye


def find_critical_points(
    matrices_fn: Callable[[torch.Tensor], torch.Tensor],
    starts: torch.Tensor,
    *,
    tol: float = 1e-11,
    max_iter: int = 60,
    max_step: float = 0.3,
    merge: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Zeros of the α-CL flow :math:`F(w)=(I-ww^\top)A(w)w` on the unit sphere by Newton's method.

    From each start, Newton steps in tangent coordinates,
    :math:`\xi = -J_E^{+}E^\top F(w)`, :math:`w\leftarrow(w+E\xi)/\|w+E\xi\|`, with :math:`E` =
    :func:`tangent_bases`, :math:`J_E` the tangent Jacobian of :math:`F` by autograd
    (:func:`flow_jacobian`) and :math:`\|\xi\|` capped at ``max_step``. This is not
    :func:`clkit.optim.damped_newton`, which minimises an objective with Armijo backtracking:
    for Gaussian α the flow is not a gradient field (α depends on :math:`w`), and even for
    uniform α the critical points wanted include saddles and minima, so this is root finding
    of :math:`F`, with a step cap instead of a line search. Newton converges to maxima, saddles
    and minima alike. Starts whose residual :math:`\|F\|` ends below ``tol``
    are kept, and points closer than ``merge`` to one kept earlier are dropped.

    Args:
        matrices_fn: ``(K, d) -> (K, d, d)``, the matrices :math:`A(w_k)` of unit rows.
        starts: ``(K, d)`` starting points (normalised here).
        tol: residual below which a point counts as critical; max_iter: Newton steps at most;
        max_step: cap on :math:`\|\xi\|`; merge: distance below which two points are one.

    Returns:
        ``(points, residuals)``: ``(M, d)`` unit vectors and their :math:`\|F\|`, ``(M,)``.

    Raises:
        ValueError: for bad shapes or non-positive ``tol``/``max_step``/``merge``.
    """
    check_matrix("starts", starts)
    tol, max_step, merge = check_positive("tol", tol), check_positive("max_step", max_step), check_positive("merge", merge)
    w = (starts / starts.norm(dim=1, keepdim=True)).detach()
    active = torch.arange(w.shape[0], device=w.device)
    for _ in range(max_iter):
        f = _sphere_flow(matrices_fn, w[active]).detach()
        moving = f.norm(dim=1) >= tol
        active, f = active[moving], f[moving]  # converged points stop; the rest keep iterating
        if active.numel() == 0:
            break
        v = w[active]
        basis = tangent_bases(v)
        rhs = basis.transpose(1, 2) @ f[:, :, None]
        jacobian = flow_jacobian(matrices_fn, v)  # tangent coordinates along ``basis``
        xi = -(torch.linalg.pinv(jacobian, rtol=1e-13) @ rhs)[:, :, 0]
        length = xi.norm(dim=1, keepdim=True)
        xi = xi * torch.clamp(max_step / length.clamp_min(1e-300), max=1.0)
        v = v + (basis @ xi[:, :, None])[:, :, 0]
        w[active] = v / v.norm(dim=1, keepdim=True)
    res = _sphere_flow(matrices_fn, w).detach().norm(dim=1)
    keep = torch.nonzero(res < tol).flatten().tolist()
    points: list[torch.Tensor] = []
    residuals: list[torch.Tensor] = []
    for k in keep:
        if all(float((w[k] - p).norm()) > merge for p in points):
            points.append(w[k])
            residuals.append(res[k])
    if not points:
        return w.new_zeros(0, w.shape[1]), w.new_zeros(0)
    return torch.stack(points), torch.stack(residuals)


def _std_normal_pdf(a: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class LatentPatternModel:
    r"""Latent-pattern data with Gaussian augmentation (the book's model, a reconstruction).

    A latent pattern :math:`k\sim\mathrm{Categorical}(p)` gives the un-augmented point
    :math:`x_0=\mu_k`; its two views are :math:`x, x' \overset{iid}{\sim}\mathcal N(\mu_k,\sigma^2 I_d)`.

    For a unit :math:`w` and :math:`a_k = w^\top\mu_k/\sigma`, the gated views have the conditional
    moments (ReLU; linear: :math:`m_k=\mu_k`, :math:`S_k=\sigma^2 I`)

    .. math::
        m_k(w) = \Phi(a_k)\mu_k + \sigma\varphi(a_k)w,\quad
        S_k(w) = \Phi(a_k)(\mu_k\mu_k^\top+\sigma^2 I) + \sigma\varphi(a_k)(\mu_k w^\top + w\mu_k^\top)
                 - \sigma^2 a_k\varphi(a_k) ww^\top - m_k m_k^\top,

    and the population :math:`A(w)` for a pattern kernel :math:`\alpha_{ij}=\kappa_{k_ik_j}(w)`
    (:math:`\kappa\equiv1` uniform; :math:`\kappa_{kl}=e^{-(h(w^\top\mu_k)-h(w^\top\mu_l))^2/2\tau}` Gaussian) is

    .. math:: A(w) = \tfrac12\sum_{k,l}p_kp_l\,\kappa_{kl}\,(m_k-m_l)(m_k-m_l)^\top .

    Args:
        patterns: ``(G, d)`` pattern vectors :math:`\mu_k`.
        probs: ``(G,)`` pattern probabilities.
        sigma: augmentation noise :math:`\sigma>0`.

    Raises:
        ValueError: naming the argument, for bad shapes, probabilities off the simplex, ``sigma <= 0``.
    """

    patterns: torch.Tensor
    probs: torch.Tensor
    sigma: float

    def __post_init__(self) -> None:
        patterns = as_tensor(self.patterns)
        check_matrix("patterns", patterns)
        probs = as_tensor(self.probs, dtype=patterns.dtype, device=patterns.device)
        check_shape("probs", probs, (patterns.shape[0],))
        check_probability_vector("probs", probs)
        object.__setattr__(self, "patterns", patterns)
        object.__setattr__(self, "probs", probs)
        object.__setattr__(self, "sigma", check_positive("sigma", self.sigma))

    @property
    def dim(self) -> int:
        return self.patterns.shape[1]

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` draws ``(labels, x, x_pos)``: ``labels`` ``(n,)`` and two views ``(n, d)`` each."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        labels = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        mu = self.patterns[labels]
        shape, kw = mu.shape, {"dtype": mu.dtype, "device": mu.device, "generator": generator}
        return labels, mu + self.sigma * torch.randn(shape, **kw), mu + self.sigma * torch.randn(shape, **kw)

    def _unit(self, w: torch.Tensor) -> torch.Tensor:
        check_shape("w", w, (self.dim,))
        _check_weight("w", w, self.dim)
        return w / w.norm()

    def _units(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` ``(d,)`` or rows ``(K, d)``, finite and non-zero, normalised."""
        if isinstance(w, torch.Tensor) and w.dim() == 1:
            return self._unit(w)
        check_shape("w", w, (None, self.dim))
        check_finite("w", w)
        norms = w.norm(dim=-1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("w must have non-zero rows")
        return w / norms

    def gated_means(self, w: torch.Tensor, activation: str = "relu") -> torch.Tensor:
        r"""Conditional means :math:`m_k(w)=\mathbb E[\tilde x^w\mid k]` of the gated views (Lemma
        ``lem-population-a`` of chapter ``04_alpha_cl``): ReLU
        :math:`m_k = \Phi(a_k)\mu_k + \sigma\varphi(a_k)\hat w`, :math:`a_k = \hat w^\top\mu_k/\sigma`;
        linear :math:`m_k=\mu_k`.

        Args:
            w: ``(d,)`` or ``K`` rows ``(K, d)`` (normalised here); activation: ``"linear"``/``"relu"``.

        Returns:
            ``(G, d)``, or ``(K, G, d)``.

        Raises:
            ValueError: for a zero, non-finite or mis-shaped ``w``, or an unknown activation.
        """
        _check_activation(activation)
        w = self._units(w)
        mu, s = self.patterns, self.sigma
        if activation == "linear":
            return mu.expand(*w.shape[:-1], *mu.shape).clone()
        a = w @ mu.T / s  # (..., G)
        return torch.special.ndtr(a)[..., None] * mu + s * _std_normal_pdf(a)[..., None] * w[..., None, :]

    def gated_moments(self, w: torch.Tensor, activation: str = "relu") -> tuple[torch.Tensor, torch.Tensor]:
        r"""Conditional mean :math:`m_k` (:meth:`gated_means`) and covariance of :math:`\tilde x^w`
        given the pattern: ReLU

        .. math::
            S_k = \Phi(a_k)(\mu_k\mu_k^\top+\sigma^2 I) + \sigma\varphi(a_k)(\mu_k\hat w^\top
                  + \hat w\mu_k^\top) - \sigma^2 a_k\varphi(a_k)\hat w\hat w^\top - m_k m_k^\top,

        linear :math:`S_k=\sigma^2 I`. Arguments and errors as :meth:`gated_means`.

        Returns:
            ``(m, S)``: ``(G, d)`` and ``(G, d, d)``, or ``(K, G, d)`` and ``(K, G, d, d)``.
        """
        m = self.gated_means(w, activation)
        w = self._units(w)
        mu, s = self.patterns, self.sigma
        eye = torch.eye(self.dim, dtype=mu.dtype, device=mu.device)
        if activation == "linear":
            return m, (s * s) * eye.expand(*m.shape, self.dim).clone()
        a = w @ mu.T / s  # (..., G)
        cdf, pdf = torch.special.ndtr(a), _std_normal_pdf(a)
        w_row = w[..., None, :]  # (..., 1, d)
        outer_mu = mu[:, :, None] * mu[:, None, :]
        cross = mu[:, :, None] * w_row[..., None, :] + w_row[..., :, None] * mu[:, None, :]
        outer_w = (w[..., :, None] * w[..., None, :])[..., None, :, :]
        second = (cdf[..., None, None] * (outer_mu + s * s * eye) + s * pdf[..., None, None] * cross
                  - (s * s) * (a * pdf)[..., None, None] * outer_w)
        return m, second - m[..., :, None] * m[..., None, :]

    def kernel(self, w: torch.Tensor, activation: str = "relu", tau: float | None = None) -> torch.Tensor:
        r"""Pattern kernel :math:`\kappa_{kl}(w)`: ones (uniform α, ``tau=None``) or the Gaussian α on
        :math:`x_0=\mu_k`, :math:`\exp\big(-(h(\hat w^\top\mu_k)-h(\hat w^\top\mu_l))^2/2\tau\big)`.

        Args:
            w: ``(d,)`` or ``(K, d)``; activation: ``"linear"``/``"relu"``; tau: ``None`` or :math:`\tau>0`.

        Returns:
            ``(G, G)``, or ``(K, G, G)``.

        Raises:
            ValueError: for a bad ``w``, activation or ``tau``.
        """
        _check_activation(activation)
        w = self._units(w)
        g = self.patterns.shape[0]
        if tau is None:
            return torch.ones(*w.shape[:-1], g, g, dtype=w.dtype, device=w.device)
        tau = check_positive("tau", tau)
        f = _activation(activation, w @ self.patterns.T)
        return torch.exp(-(f[..., :, None] - f[..., None, :]).pow(2) / (2 * tau))

    def population_matrix(self, w: torch.Tensor, activation: str = "relu", tau: float | None = None) -> torch.Tensor:
        r"""Population :math:`A(w)=\tfrac12\sum_{k,l}p_kp_l\kappa_{kl}(w)(m_k-m_l)(m_k-m_l)^\top`
        (Lemma ``lem-population-a`` of chapter ``04_alpha_cl``), :math:`m_k` = :meth:`gated_means`,
        :math:`\kappa` = :meth:`kernel`.

        Args:
            w: ``(d,)`` or ``K`` rows ``(K, d)`` (normalised here); activation; tau: as :meth:`kernel`.

        Returns:
            ``(d, d)``, or ``(K, d, d)``.

        Raises:
            ValueError: for a bad ``w``, activation or ``tau``.
        """
        m = self.gated_means(w, activation)
        weights = self.probs[:, None] * self.probs[None, :] * self.kernel(w, activation, tau)
        diff = m[..., :, None, :] - m[..., None, :, :]
        return 0.5 * torch.einsum("...kl,...kli,...klj->...ij", weights, diff, diff)

    def gate_jacobians(self, w: torch.Tensor, activation: str = "relu") -> torch.Tensor:
        r"""Derivatives of the gated means along the sphere, :math:`dm_k = J_k\,u` for a tangent
        :math:`u\perp w` (proof of Lemma ``lem-rho-bound`` of chapter ``04_alpha_cl``): ReLU

        .. math:: J_k = \varphi(a_k)\Big(\frac{P\mu_k\mu_k^\top P}{\sigma} + \sigma P\Big),
            \qquad P = I-\hat w\hat w^\top,\ a_k=\hat w^\top\mu_k/\sigma,

        symmetric positive semi-definite with :math:`\hat w^\top J_k = 0`; linear: :math:`J_k=0`.

        Args:
            w: ``(d,)`` or ``(K, d)`` (normalised here); activation: ``"linear"``/``"relu"``.

        Returns:
            ``(G, d, d)``, or ``(K, G, d, d)``.

        Raises:
            ValueError: for a bad ``w`` or activation.
        """
        _check_activation(activation)
        w = self._units(w)
        mu, s = self.patterns, self.sigma
        eye = torch.eye(self.dim, dtype=mu.dtype, device=mu.device)
        proj = eye - w[..., :, None] * w[..., None, :]  # (..., d, d)
        if activation == "linear":
            return torch.zeros(*w.shape[:-1], mu.shape[0], self.dim, self.dim, dtype=mu.dtype, device=mu.device)
        pm = torch.einsum("...ij,kj->...ki", proj, mu)  # (..., G, d): P mu_k
        pdf = _std_normal_pdf(w @ mu.T / s)  # (..., G)
        return pdf[..., None, None] * (pm[..., :, None] * pm[..., None, :] / s + s * proj[..., None, :, :])

    def uniform_roughness_matrix(self, w: torch.Tensor, activation: str = "relu") -> torch.Tensor:
        r"""For uniform α, the derivative :math:`B` of :math:`v\mapsto A(v)\hat w` along the sphere at
        :math:`\hat w` (its :math:`B_E = BE`; Proposition ``prop-uniform-b`` of chapter ``04_alpha_cl``):

        .. math:: B = \sum_k p_k\,(g_k-\bar g)\,J_k,\qquad g_k = \hat w^\top m_k
            = \mathbb E[h(\hat w^\top x)\mid k],\quad \bar g=\sum_k p_kg_k,

        with :math:`J_k` from :meth:`gate_jacobians`; symmetric, and :math:`\|B\| = \rho(\hat w)`
        on tangent vectors.

        Args:
            w: ``(d,)`` or ``(K, d)`` (normalised here); activation: ``"linear"``/``"relu"``.

        Returns:
            ``(d, d)``, or ``(K, d, d)``.

        Raises:
            ValueError: for a bad ``w`` or activation.
        """
        weights = self.uniform_gate_weights(w, activation)
        return torch.einsum("...k,...kij->...ij", weights, self.gate_jacobians(w, activation))

    def uniform_gate_weights(self, w: torch.Tensor, activation: str = "relu") -> torch.Tensor:
        r"""The weights :math:`p_k(g_k-\bar g)` of :meth:`uniform_roughness_matrix`, ``(G,)`` or
        ``(K, G)``: :math:`g_k = \hat w^\top m_k`, :math:`\bar g = \sum_k p_k g_k`. Arguments and errors
        as :meth:`gated_means`."""
        g = (self.gated_means(w, activation) * self._units(w)[..., None, :]).sum(-1)  # (..., G)
        return self.probs * (g - (g * self.probs).sum(-1, keepdim=True))

    def expected_empirical_matrix(
        self, w: torch.Tensor, n: int, activation: str = "relu", tau: float | None = None
    ) -> torch.Tensor:
        r"""Exact mean of the empirical :math:`A(w)` on ``n`` i.i.d. pairs, α from the pattern kernel:

        .. math:: \mathbb E[\hat A_N(w)] = (1-\tfrac1N)A(w) - \tfrac1N\sum_k p_k S_k(w)

        (the :math:`i=j` terms keep their negative second part; Lemma ``lem-population-a``).

        Args:
            w: ``(d,)``; n: :math:`N\ge1`; activation, tau: as :meth:`population_matrix`.

        Returns:
            ``(d, d)``.

        Raises:
            ValueError: for ``n < 1`` and as :meth:`population_matrix`.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        _, cov = self.gated_moments(self._unit(w), activation)
        within = torch.einsum("k,kij->ij", self.probs, cov)
        return (1 - 1 / n) * self.population_matrix(w, activation, tau) - within / n

    def roughness_bound_terms(
        self, w: torch.Tensor, activation: str = "relu", tau: float | None = None
    ) -> torch.Tensor:
        r"""The two parts of :meth:`roughness_bound`, the gate term and the kernel (:math:`\tau`) term,

        .. math::
            R_{\rm gate} = \sum_{k,l}p_kp_l\kappa_{kl}|c_{kl}|\gamma_k,\qquad
            R_\tau = \sum_{k,l}p_kp_l\kappa_{kl}|c_{kl}|\frac{|\Delta_{kl}|}{2\tau}
                \|P(h'_k\mu_k-h'_l\mu_l)\|\,\|m_k-m_l\|

        (:math:`R_\tau = 0` for uniform α).

        Args:
            w: ``(d,)`` or ``(K, d)``; activation, tau: as :meth:`population_matrix`.

        Returns:
            ``(2,)``, or ``(K, 2)``: ``[..., 0]`` the gate term, ``[..., 1]`` the kernel term.

        Raises:
            ValueError: as :meth:`population_matrix`.
        """
        _check_activation(activation)
        w = self._units(w)
        mu, s = self.patterns, self.sigma
        m = self.gated_means(w, activation)  # (..., G, d)
        pre = w @ mu.T  # (..., G)
        proj = mu - pre[..., None] * w[..., None, :]
        if activation == "linear":
            gamma = torch.zeros_like(pre)
        else:
            gamma = _std_normal_pdf(pre / s) * (proj.norm(dim=-1).pow(2) / s + s)
        diff = m[..., :, None, :] - m[..., None, :, :]  # (..., G, G, d)
        c = (diff * w[..., None, None, :]).sum(dim=-1).abs()
        weights = self.probs[:, None] * self.probs[None, :] * self.kernel(w, activation, tau)
        gate = (weights * c * gamma[..., :, None]).sum(dim=(-1, -2))
        if tau is None:
            return torch.stack([gate, torch.zeros_like(gate)], dim=-1)
        f, fprime = _activation(activation, pre), _activation_derivative(activation, pre)
        delta = (f[..., :, None] - f[..., None, :]).abs()
        gated_proj = fprime[..., None] * proj
        dk = (gated_proj[..., :, None, :] - gated_proj[..., None, :, :]).norm(dim=-1)
        kernel = (weights * c * delta / (2 * tau) * dk * diff.norm(dim=-1)).sum(dim=(-1, -2))
        return torch.stack([gate, kernel], dim=-1)

    def roughness_bound(self, w: torch.Tensor, activation: str = "relu", tau: float | None = None) -> torch.Tensor:
        r"""The book's upper bound on :math:`\rho(w)` (Lemma ``lem-rho-bound`` of chapter ``04_alpha_cl``).

        With :math:`c_{kl}=(m_k-m_l)^\top w`, :math:`P = I-ww^\top`, and for ReLU
        :math:`\gamma_k=\varphi(a_k)\big(\|P\mu_k\|^2/\sigma+\sigma\big)`
        (linear: :math:`\gamma_k=0`),

        .. math::
            R(w)=\sum_{k,l}p_kp_l\kappa_{kl}|c_{kl}|\Big[\gamma_k
              + \frac{|\Delta_{kl}|}{2\tau}\,\|P(h'_k\mu_k-h'_l\mu_l)\|\,\|m_k-m_l\|\Big],

        :math:`\Delta_{kl}=h(w^\top\mu_k)-h(w^\top\mu_l)`, :math:`h'_k = h'(w^\top\mu_k)`; the
        bracket's second term is absent for uniform α. Valid where no :math:`w^\top\mu_k` is 0 (ReLU).

        Args:
            w: ``(d,)`` or ``(K, d)``; activation, tau: as :meth:`population_matrix`.

        Returns:
            A scalar tensor, or ``(K,)``: the sum of :meth:`roughness_bound_terms`.

        Raises:
            ValueError: as :meth:`population_matrix`.
        """
        return self.roughness_bound_terms(w, activation, tau).sum(dim=-1)


def _left_tail_factors(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""For :math:`x\ge0`: :math:`t_1=1-xR(x)` and :math:`t_2=(x^2+1)R(x)-x`, with the Mills ratio
    :math:`R(x)=\Phi(-x)/\varphi(x)=\sqrt{\pi/2}\,\operatorname{erfcx}(x/\sqrt2)`, without the
    cancellation of these differences at large :math:`x`.

    Up to :math:`x_0` (10 in float64, 6 otherwise) the erfcx form, whose relative error grows like
    :math:`x^4\epsilon` (measured against mpmath: below 1e-12 in float64, 1e-4 in float32);
    beyond it the asymptotic series :math:`t_1=-\sum_{k\ge1}c_kx^{-2k}`,
    :math:`t_2=\sum_{k\ge2}(c_k+c_{k-1})x^{1-2k}`, :math:`c_k=(-1)^k(2k-1)!!` (from
    :math:`R(x)\sim x^{-1}\sum_k c_kx^{-2k}`), truncated before its terms grow (40 terms at
    :math:`x\ge10`, 17 at :math:`x\ge6`: relative truncation error below 1e-15 and 1e-5).
    """
    x0, n_terms = (10.0, 40) if x.dtype == torch.float64 else (6.0, 17)
    near = x.clamp(max=x0)  # both branches stay finite (no NaN gradients through torch.where)
    mills = math.sqrt(math.pi / 2) * torch.special.erfcx(near / math.sqrt(2))
    t1_near, t2_near = 1 - near * mills, (near * near + 1) * mills - near
    far = x.clamp(min=x0)
    inv2 = 1 / (far * far)
    term = -inv2  # c_k x^{-2k} at k = 1, then by c_k = -(2k - 1) c_{k-1}
    t1_far, t2_far = -term, torch.zeros_like(far)
    for k in range(2, n_terms + 1):
        previous, term = term, -(2 * k - 1) * term * inv2
        t1_far = t1_far - term
        t2_far = t2_far + (term + previous * inv2) * far
    far_side = x > x0
    return torch.where(far_side, t1_far, t1_near), torch.where(far_side, t2_far, t2_near)


def relu_gaussian_moments(mean: torch.Tensor, std: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""First two moments of :math:`\mathrm{relu}(u)` for :math:`u\sim\mathcal N(a, s^2)`, elementwise:

    .. math::
        \mathbb E\,\mathrm{relu}(u) = a\,\Phi(z) + s\,\varphi(z),\qquad
        \mathbb E\,\mathrm{relu}(u)^2 = (a^2+s^2)\,\Phi(z) + a\,s\,\varphi(z),\qquad z=a/s

    (the rectified-Gaussian moments; the ReLU case of :meth:`LatentPatternModel.gated_moments`
    projected on :math:`w`). Chapter ``07_real_data`` uses them for the exact mean of the
    uniform-α contrastive covariance of a one-layer ReLU network under Gaussian augmentation.

    For :math:`z<0` both sums cancel (each term is about :math:`s\varphi(z)`, the moments are
    :math:`s\varphi(z)/z^2` and :math:`2s^2\varphi(z)/|z|^3`), so there they are computed as
    :math:`s\,\varphi(z)\,t_1(|z|)` and :math:`s^2\varphi(z)\,t_2(|z|)` with
    :math:`t_1=1-xR(x)`, :math:`t_2=(x^2+1)R(x)-x`, :math:`R` the Mills ratio, by erfcx and, in the
    far tail, by their asymptotic series. Relative error against a 40-digit reference, in
    float64 on :math:`-37\le z\le0`: at most :math:`6\cdot10^{-14}` for the first moment and
    :math:`3\cdot10^{-12}` for the second (largest near :math:`z=-9.6`); below
    :math:`z\approx-37.5` :math:`\varphi(z)` is subnormal (digits are lost) and both moments are 0 below
    :math:`z\approx-38.4`. In float32 the relative error is up to about :math:`10^{-5}` (first)
    and :math:`2\cdot10^{-4}` (second; the cancellation is inherent), and both moments underflow
    to 0 already below :math:`z\approx-14`. The results are
    clamped to :math:`m_2\ge m_1^2\ge0` (a variance is never negative after round-off).

    Args:
        mean: tensor of means :math:`a` (any shape).
        std: standard deviations :math:`s>0`, a float or a tensor broadcastable with ``mean``.

    Returns:
        ``(first, second)``, each of the broadcast shape, in ``mean``'s dtype and on its device.

    Raises:
        ValueError: for a non-tensor or non-finite ``mean``, or a ``std`` that is not finite and > 0.
    """
    if not isinstance(mean, torch.Tensor):
        raise ValueError(f"mean must be a tensor, got {type(mean)}")
    check_finite("mean", mean)
    s = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise ValueError(f"std must be finite and > 0, got {std!r}")
    z = mean / s
    pdf = _std_normal_pdf(z)
    t1, t2 = _left_tail_factors((-z).clamp(min=0))
    left = z < 0
    right_z = z.clamp(min=0)  # the direct formulas, used where nothing cancels
    cdf = torch.special.ndtr(right_z)
    first = torch.where(left, s * pdf * t1, s * (right_z * cdf + pdf))
    second = torch.where(left, s * s * pdf * t2,
                         s * s * ((right_z * right_z + 1) * cdf + right_z * pdf))
    first = first.clamp(min=0)
    return first, torch.maximum(second, first * first)


def pattern_population_matrix(
    means: torch.Tensor, probs: torch.Tensor, kernel: torch.Tensor | None = None
) -> torch.Tensor:
    r"""The population :math:`A=\tfrac12\sum_{k,l}p_kp_l\kappa_{kl}(m_k-m_l)(m_k-m_l)^\top` of
    Lemma ``lem-population-a`` (chapter ``04_alpha_cl``) from given conditional means, in the
    Laplacian form that needs no :math:`G\times G\times d` tensor:

    .. math:: A = M^\top\big(\operatorname{diag}(\Omega 1)-\Omega\big)M,\qquad
        \Omega = \operatorname{sym}\big((pp^\top)\circ\kappa\big),

    which for uniform α (``kernel=None``) is the :math:`p`-weighted covariance of the rows of
    :math:`M`, computed in :math:`O(Gd^2)`. Chapter ``07_real_data`` uses it with one "pattern"
    per training image (the empirical measure standing in for the data law), where
    :meth:`LatentPatternModel.population_matrix` would need :math:`G^2d` memory.

    Args:
        means: ``(..., G, d)`` conditional means :math:`m_k` (e.g. :meth:`LatentPatternModel.gated_means`).
        probs: ``(G,)`` probabilities :math:`p_k` (non-negative, summing to 1).
        kernel: ``None`` (uniform α) or ``(..., G, G)`` weights :math:`\kappa_{kl}` (symmetrised here).

    Returns:
        ``(..., d, d)`` symmetric positive semi-definite for a non-negative kernel.

    Raises:
        ValueError: naming the argument, for shapes that do not match, non-finite entries or
            ``probs`` off the simplex.
    """
    if not isinstance(means, torch.Tensor) or means.dim() < 2:
        raise ValueError(f"means must be a tensor of shape (..., G, d), got {getattr(means, 'shape', type(means))}")
    check_finite("means", means)
    g = means.shape[-2]
    check_shape("probs", probs, (g,))
    check_probability_vector("probs", probs)
    probs = probs.to(means.dtype)
    if kernel is None:
        centred = means - torch.einsum("k,...kd->...d", probs, means)[..., None, :]
        return (centred * probs[:, None]).transpose(-1, -2) @ centred
    if not isinstance(kernel, torch.Tensor) or kernel.shape[-2:] != (g, g):
        raise ValueError(f"kernel must have shape (..., {g}, {g}), got {tuple(getattr(kernel, 'shape', ()))}")
    check_finite("kernel", kernel)
    kernel = kernel.to(means.dtype)
    # M^T diag(Omega 1) M - M^T Omega M with Omega = sym(diag(p) kappa diag(p)), without
    # forming Omega: its row sums are p (kappa p + kappa^T p) / 2 and M^T Omega M is the
    # symmetric part of (p M)^T kappa (p M)
    degree = 0.5 * probs * (kernel @ probs + probs @ kernel)
    weighted = means * probs[:, None]
    cross = weighted.transpose(-1, -2) @ (kernel @ weighted)
    return ((means * degree[..., None]).transpose(-1, -2) @ means
            - 0.5 * (cross + cross.transpose(-1, -2)))
