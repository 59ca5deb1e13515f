"""Zhao et al. (2023), ArCL: the alignment counter-example and the augmentation-robust loss.

The model of Example 1 of :cite:`zhao2023arcl` (stated on W. Huang's slides, Dec 2023): inputs
:math:`X=(X_1,X_2)\\sim\\mathcal N(0,I_2)`, label :math:`Y=\\mathbb 1(X_1\\ge 0)`, augmentations
:math:`A_\\theta(x)=(x_1,\\theta x_2)`. Representations are linear and one-dimensional,
:math:`f_w(x)=w_1x_1+w_2x_2`; the *domain* :math:`\\mathcal D_c` is the law of :math:`(A_c X, Y)` for
one fixed augmentation strength :math:`c`. Everything here is exact (closed forms, Owen's
:math:`T` function, Gauss–Legendre quadrature, Newton on exact risks) except
:func:`fit_logistic_heads_on_sample`, which fits heads on a finite sample; the chapter
``05_arcl`` checks it by simulation and by independent routes (the logistic risk both as a
two-dimensional integral and, conditioning on the feature, as a one-dimensional one).
"""

from __future__ import annotations

import functools
from typing import Callable
import math
import numpy as np
import torch
from scipy.special import ndtr, owens_t

from ._validation import check_finite, check_nonnegative, check_positive, check_shape
from .device import DEFAULT_DTYPE, default_device
from .optim import damped_newton
from .symbolic import is_symbolic

__all__ = [
    "sample_example_data",
    "augment",
    "counterexample_weights",
    "linear_representation",
    "alignment_loss",
    "ar_loss",
    "ar_first_moment",
    "expected_squared_range",
    "head_risk",
    "optimal_risk",
    "domain_risk",
    "logistic_domain_risk",
    "fit_logistic_heads",
    "logistic_risk_by_conditioning",
    "optimal_logistic_heads",
    "fit_logistic_heads_on_sample",
    "conjecture_ratio",
    "conjecture_ratio_limit",
    "conjecture_ratio_corner",
]


def _check_weights(weights: torch.Tensor) -> torch.Tensor:
    check_shape("weights", weights, (2,))
    return check_finite("weights", weights)


def sample_example_data(
    n: int, generator: torch.Generator, *, dtype: torch.dtype = DEFAULT_DTYPE
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Draw ``n`` pairs of Example 1: :math:`X\sim\mathcal N(0,I_2)`, :math:`Y=\mathbb 1(X_1\ge0)`.

    Source: Zhao et al. (2023), Example 1. Returns ``x`` of shape ``(n, 2)`` and ``y`` of shape
    ``(n,)`` (``torch.long``), on the generator's device. Raises ``ValueError`` unless ``n`` is a
    positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    x = torch.randn(n, 2, dtype=dtype, device=generator.device, generator=generator)
    return x, (x[:, 0] >= 0).long()


def augment(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    r"""The augmentation :math:`A_\theta(x) = (x_1, \theta x_2)` of Example 1 (Zhao et al., 2023).

    ``x`` has shape ``(..., 2)``; ``theta`` is a scalar or a tensor broadcastable to ``x.shape[:-1]``
    (one strength per input). Returns a tensor of the broadcast shape ``(..., 2)``. Raises
    ``ValueError`` if the last dimension of ``x`` is not 2 or ``theta`` is not finite.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != 2:
        raise ValueError(f"x must be a tensor of shape (..., 2), got {getattr(x, 'shape', type(x))}")
    theta = torch.as_tensor(theta, dtype=x.dtype, device=x.device)
    check_finite("theta", theta)
    x1, x2 = torch.broadcast_tensors(x[..., 0], theta * x[..., 1])
    return torch.stack([x1, x2], dim=-1)


def counterexample_weights(
    epsilon: float, *, dtype: torch.dtype = DEFAULT_DTYPE, device: torch.device | str | None = None
) -> torch.Tensor:
    r"""Weights of the counter-example representation :math:`f_\varepsilon(x)=x_1+\tfrac{\sqrt\varepsilon}{2}x_2`.

    Source: Zhao et al. (2023), proof of Example 1. Returns :math:`w=(1,\sqrt\varepsilon/2)`, shape
    ``(2,)``, on ``device`` (default: :func:`clkit.default_device`). Raises ``ValueError`` naming
    ``epsilon`` unless :math:`\varepsilon>0` is finite.
    """
    eps = check_positive("epsilon", epsilon)
    device = device if device is not None else default_device()
    return torch.tensor([1.0, math.sqrt(eps) / 2.0], dtype=dtype, device=device)


def linear_representation(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""The one-dimensional representation :math:`f_w(x) = w_1 x_1 + w_2 x_2`.

    ``x`` has shape ``(..., 2)``, ``weights`` shape ``(2,)``; returns shape ``(...)``. Raises
    ``ValueError`` for other shapes.
    """
    _check_weights(weights)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != 2:
        raise ValueError(f"x must be a tensor of shape (..., 2), got {getattr(x, 'shape', type(x))}")
    return x @ weights.to(dtype=x.dtype, device=x.device)


def alignment_loss(weights: torch.Tensor, theta_variance: float = 1.0) -> torch.Tensor:
    r"""Exact alignment loss of :math:`f_w` under i.i.d. strengths :math:`\theta_1,\theta_2\sim\pi`.

    .. math::
        \mathcal L_{\mathrm{align}}(f_w) = \mathbb E_X\mathbb E_{\theta_1,\theta_2}
        \big(f_w(A_{\theta_1}X)-f_w(A_{\theta_2}X)\big)^2
        = w_2^2\,\mathbb E X_2^2\,\mathbb E(\theta_1-\theta_2)^2 = 2\,w_2^2\operatorname{Var}_\pi(\theta).

    Source: Zhao et al. (2023), proof of Example 1 (there :math:`\pi=\mathcal N(0,1)`, so
    :math:`\operatorname{Var}_\pi\theta=1` and :math:`\mathcal L_{\mathrm{align}}(f_\varepsilon)=\varepsilon/2`).
    Returns a 0-d tensor. Raises ``ValueError`` for bad ``weights`` or a negative ``theta_variance``.
    ``weights`` may also be a pair of SymPy expressions (and ``theta_variance`` a SymPy
    expression): the same formula is then returned as a SymPy expression, so that the chapter's
    symbolic check runs through this code.
    """
    if not isinstance(weights, torch.Tensor) and is_symbolic(*weights, theta_variance):
        return 2 * theta_variance * weights[1] ** 2
    _check_weights(weights)
    var = check_nonnegative("theta_variance", theta_variance)
    return 2.0 * var * weights[1] ** 2


def _theta_range(theta_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in theta_range)
    except (TypeError, ValueError) as err:
        raise ValueError(f"theta_range must be a pair (low, high), got {theta_range!r}") from err
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"theta_range must satisfy low <= high, got {theta_range!r}")
    return lo, hi


def ar_loss(weights: torch.Tensor, theta_range: tuple[float, float]) -> torch.Tensor:
    r"""Exact augmentation-robust loss of :math:`f_w` over the family :math:`\{A_\theta:\theta\in[\theta_-,\theta_+]\}`.

    .. math::
        \mathcal L_{AR}(f_w) = \mathbb E_X \sup_{\theta_1,\theta_2}\big(f_w(A_{\theta_1}X)-f_w(A_{\theta_2}X)\big)^2
        = w_2^2\,(\theta_+-\theta_-)^2\,\mathbb E X_2^2 = (\theta_+-\theta_-)^2 w_2^2 .

    Source: the definition of :math:`\mathcal L_{AR}` in Zhao et al. (2023) (slides: "Augmentation-Robust
    Loss"). An unbounded family (an infinite end, e.g. the support of :math:`\mathcal N(0,1)`) gives
    :math:`+\infty` unless :math:`w_2=0`. Returns a 0-d tensor. Raises ``ValueError`` for bad
    ``weights`` or a ``theta_range`` that is not a pair with low <= high.
    """
    _check_weights(weights)
    lo, hi = _theta_range(theta_range)
    if weights[1] == 0:
        return torch.zeros((), dtype=weights.dtype, device=weights.device)
    return (hi - lo) ** 2 * weights[1] ** 2


def ar_first_moment(weights: torch.Tensor, theta_range: tuple[float, float]) -> torch.Tensor:
    r"""First-moment version :math:`\mathbb E_X\sup_{\theta_1,\theta_2}|f_w(A_{\theta_1}X)-f_w(A_{\theta_2}X)|`.

    .. math::
        \mathbb E_X\sup_{\theta_1,\theta_2}|f_w(A_{\theta_1}X)-f_w(A_{\theta_2}X)| = (\theta_+-\theta_-)\,|w_2|\,\sqrt{2/\pi}
        \;\le\; \sqrt{\mathcal L_{AR}(f_w)} \quad\text{(Jensen)} .

    This is the quantity a Lipschitz-loss argument produces (book's reconstruction of Theorem 2 of
    Zhao et al., 2023; see chapter ``05_arcl``). Returns a 0-d tensor; raises like :func:`ar_loss`.
    """
    _check_weights(weights)
    lo, hi = _theta_range(theta_range)
    if weights[1] == 0:
        return torch.zeros((), dtype=weights.dtype, device=weights.device)
    return (hi - lo) * weights[1].abs() * math.sqrt(2.0 / math.pi)


def _composite_gauss_legendre(edges: np.ndarray, n_per_panel: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of Gauss–Legendre with ``n_per_panel`` nodes on each panel ``[edges[i], edges[i+1]]``."""
    x, w = np.polynomial.legendre.leggauss(n_per_panel)
    lo, hi = edges[:-1, None], edges[1:, None]
    return ((hi - lo) * (x + 1.0) / 2.0 + lo).ravel(), ((hi - lo) * w / 2.0).ravel()


@functools.lru_cache(maxsize=4)
def _range_grid(n_per_panel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""The part of :func:`expected_squared_range` that does not depend on ``m``.

    Returns the ``r`` weights times :math:`2r`, :math:`\log(\Phi(x+r)-\Phi(x))` on the ``(r, x)``
    grid (``-inf`` where the difference underflows to 0) and the ``x`` weights times
    :math:`\varphi(x)`, as read-only arrays (a caller cannot corrupt the cache).
    """
    x, wx = _composite_gauss_legendre(np.linspace(-9.0, 9.0, 37), n_per_panel)
    r, wr = _composite_gauss_legendre(np.linspace(0.0, 14.0, 29), n_per_panel)
    inside = np.clip(ndtr(x[None, :] + r[:, None]) - ndtr(x[None, :]), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        log_inside = np.log(inside)
    density_w = np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi) * wx
    out = (2.0 * r * wr, log_inside, density_w)
    for a in out:
        a.flags.writeable = False
    return out


def expected_squared_range(m: int, *, n_per_panel: int = 16) -> float:
    r"""Expected squared range :math:`\mathbb E\,(\max_i\theta_i-\min_i\theta_i)^2` of ``m`` i.i.d. :math:`\mathcal N(0,1)`.

    .. math::
        \mathbb E R_m^2 = \int_0^\infty 2r\,\mathbb P(R_m>r)\,dr,\qquad
        \mathbb P(R_m\le r) = m\int_{\mathbb R}\varphi(x)\,\big(\Phi(x+r)-\Phi(x)\big)^{m-1}dx

    (the minimum sits at :math:`x`, the other ``m - 1`` draws in :math:`[x, x+r]`). This is the
    growth of the sampled :math:`\widehat{\mathcal L}_{AR}` of Zhao et al. (2023) with ``m``
    strengths :math:`\theta\sim\mathcal N(0,1)` per input: for :math:`f_w`,
    :math:`\mathbb E\widehat{\mathcal L}_{AR}(f_w)=w_2^2\,\mathbb E R_m^2` (chapter ``05_arcl``). It grows like
    :math:`8\log m` as :math:`m\to\infty`. Composite Gauss–Legendre on panels of width 1/2
    (:math:`x\in[-9,9]`, :math:`r\in[0,14]`; the neglected mass is below :math:`10^{-18}`). The
    grid and :math:`\log(\Phi(x+r)-\Phi(x))` do not depend on ``m``: they are computed once per
    ``n_per_panel``, so that a call costs one exponential per node (0.004 s instead of 0.02 s).
    Raises ``ValueError`` unless ``m`` is a positive int.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m <= 0:
        raise ValueError(f"m must be a positive int, got {m!r}")
    if m == 1:
        return 0.0
    two_r_wr, log_inside, density_w = _range_grid(n_per_panel)
    cdf = m * (np.exp((m - 1) * log_inside) @ density_w)
    return float(two_r_wr @ (1.0 - cdf))


def _orthant_below(k: np.ndarray, a_coef: np.ndarray, s_abs: np.ndarray) -> np.ndarray:
    r""":math:`\mathbb P(X_1<0,\ Z<k\sigma)` for :math:`Z=aX_1+sX_2`, :math:`\sigma^2=a^2+s^2`, via Owen's T.

    With :math:`\rho=a/\sigma`, :math:`\Phi_2(0,k;\rho)=\tfrac12\Phi(k)+T\big(k,\rho/\sqrt{1-\rho^2}\big)`
    (Owen, 1956), and :math:`\rho/\sqrt{1-\rho^2}=a/|s|`.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(s_abs > 0, a_coef / np.where(s_abs > 0, s_abs, 1.0), np.sign(a_coef) * np.inf)
    return 0.5 * ndtr(k) + owens_t(k, slope)


def head_risk(
    weights: torch.Tensor, c: torch.Tensor | float, h: torch.Tensor | float, b: torch.Tensor | float
) -> torch.Tensor:
    r"""Exact 0-1 risk of the linear head :math:`x\mapsto\mathbb 1\big(h f_w(x)+b\ge0\big)` on the domain :math:`\mathcal D_c`.

    On :math:`\mathcal D_c` the feature is :math:`Z=f_w(A_cX)=aX_1+sX_2` with :math:`a=w_1`,
    :math:`s=c\,w_2`, :math:`\sigma^2=a^2+s^2`. For :math:`h>0` the head predicts 1 iff :math:`Z\ge t`,
    :math:`t=-b/h`, and

    .. math::
        r_+(t) = \mathbb P(Y=0, Z\ge t)+\mathbb P(Y=1,Z<t) = \tfrac12+\Phi(t/\sigma)-2\,\Phi_2(0,t/\sigma;a/\sigma),

    for :math:`h<0` the risk is :math:`1-r_+(t)`, and for :math:`h=0` (or :math:`\sigma=0`) it is
    :math:`\tfrac12`. :math:`\Phi_2(0,k;\rho)` is computed with Owen's :math:`T` function (scipy).
    Source: the risk :math:`\mathcal R(h\circ f;\mathcal D)` of Zhao et al. (2023) with the 0-1 loss
    of their proof of Example 1. ``c``, ``h``, ``b`` broadcast together; returns their broadcast shape
    on the device of ``weights``. Raises ``ValueError`` for bad ``weights`` or non-finite arguments.
    """
    _check_weights(weights)
    args = [torch.as_tensor(v, dtype=weights.dtype, device=weights.device) for v in (c, h, b)]
    for name, value in zip(("c", "h", "b"), args):
        check_finite(name, value)
    c_t, h_t, b_t = torch.broadcast_tensors(*args)
    c_n, h_n, b_n = (v.detach().cpu().numpy() for v in (c_t, h_t, b_t))
    a_coef = float(weights[0])
    s = c_n * float(weights[1])
    sigma = np.sqrt(a_coef**2 + s**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(h_n != 0, -b_n / np.where(h_n != 0, h_n, 1.0), 0.0)
        k = np.where(sigma > 0, t / np.where(sigma > 0, sigma, 1.0), 0.0)
    r_plus = 0.5 + ndtr(k) - 2.0 * _orthant_below(k, np.full_like(k, a_coef), np.abs(s))
    risk = np.where(h_n > 0, r_plus, 1.0 - r_plus)
    risk = np.where((h_n == 0) | (sigma == 0), 0.5, risk)
    return torch.as_tensor(risk, dtype=weights.dtype, device=weights.device)


def optimal_risk(
    a: "torch.Tensor | float | sympy.Expr", s: "torch.Tensor | float | sympy.Expr"
) -> "torch.Tensor | sympy.Expr":
    r"""The 0-1 risk of the best linear head on the feature :math:`Z=aX_1+sX_2` (chapter ``05_arcl``, optimal-head lemma).

    .. math::
        \mathcal R = \frac{\arccos\rho}{\pi} = \frac1\pi\arctan\frac{|s|}{|a|},\qquad
        \rho=\frac{|a|}{\sqrt{a^2+s^2}}

    (:math:`\tfrac12` when :math:`a=0`). ``a`` and ``s`` are numbers, tensors (broadcast; the
    result is a tensor) or SymPy expressions (the result is then the SymPy expression
    :math:`\arctan(|s|/|a|)/\pi`, which the chapter's derivation checks).
    """
    if is_symbolic(a, s):
        import sympy

        return sympy.atan(sympy.Abs(s) / sympy.Abs(a)) / sympy.pi
    like = a if isinstance(a, torch.Tensor) else s if isinstance(s, torch.Tensor) else None
    dtype = like.dtype if like is not None else DEFAULT_DTYPE
    device = like.device if like is not None else None
    a_t, s_t = torch.broadcast_tensors(torch.as_tensor(a, dtype=dtype, device=device),
                                       torch.as_tensor(s, dtype=dtype, device=device))
    return torch.atan2(s_t.abs(), a_t.abs()) / math.pi


def domain_risk(weights: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    r"""Exact risk :math:`\mathcal R(f_w;\mathcal D_c)=\min_{h,b}` of the 0-1 loss, minimised over linear heads with bias.

    .. math::
        \mathcal R(f_w;\mathcal D_c) = \frac{1}{\pi}\arctan\frac{|c\,w_2|}{|w_1|}
        = \frac{\arccos|\rho|}{\pi},\qquad \rho=\operatorname{corr}(X_1, f_w(A_cX)),

    i.e. :func:`optimal_risk` with :math:`a=w_1`, :math:`s=c\,w_2`, attained by :math:`t=-b/h=0`
    with :math:`\operatorname{sign}h=\operatorname{sign}w_1` (chapter ``05_arcl``, Lemma "optimal
    head"); :math:`\tfrac12` when :math:`w_1=0`. For :math:`f_\varepsilon` at
    :math:`c=2/\sqrt\varepsilon` it is :math:`\arctan(1)/\pi=1/4` (Zhao et al., 2023, proof of
    Example 1). ``c`` is a scalar or tensor; returns its shape on the device of ``weights``. Raises
    ``ValueError`` for bad ``weights`` or non-finite ``c``.
    """
    _check_weights(weights)
    c_t = check_finite("c", torch.as_tensor(c, dtype=weights.dtype, device=weights.device))
    return optimal_risk(weights[0].expand_as(c_t), c_t * weights[1])


def _half_line_rule(n_nodes: int, cutoff: float, dtype: torch.dtype, device: torch.device):
    nodes, wts = np.polynomial.legendre.leggauss(n_nodes)
    u = torch.as_tensor(cutoff * (nodes + 1.0) / 2.0, dtype=dtype, device=device)
    w = torch.as_tensor(cutoff * wts / 2.0, dtype=dtype, device=device)
    return u, w * torch.exp(-0.5 * u**2) / math.sqrt(2.0 * math.pi)


def _quadrature_grid(n_nodes: int, cutoff: float, dtype: torch.dtype, device: torch.device):
    # X1 is split at 0 (the label jumps there); X2 is integrated over [-cutoff, cutoff].
    u, wu = _half_line_rule(n_nodes, cutoff, dtype, device)
    x1 = torch.cat([-u, u])
    y_sign = torch.cat([-torch.ones_like(u), torch.ones_like(u)])
    w1 = torch.cat([wu, wu])
    x2 = torch.cat([-u.flip(0), u])
    w2 = torch.cat([wu.flip(0), wu])
    return x1, y_sign, w1, x2, w2


def logistic_domain_risk(
    weights: torch.Tensor,
    theta: torch.Tensor | float,
    h: torch.Tensor | float,
    b: torch.Tensor | float,
    *,
    n_nodes: int = 96,
    cutoff: float = 10.0,
) -> torch.Tensor:
    r"""Logistic risk of the head :math:`(h,b)` on the domain :math:`\mathcal D_\theta`, by quadrature.

    .. math::
        \mathcal R_\theta(h,b) = \mathbb E\,\log\big(1+e^{-\tilde Y\,(h f_w(A_\theta X)+b)}\big),
        \qquad \tilde Y = 2Y-1 = \operatorname{sign}X_1 .

    The loss is 1-Lipschitz in the score, the :math:`c=1` of Theorem 2 of Zhao et al. (2023).
    Gauss–Legendre with ``n_nodes`` nodes on each of :math:`X_1\in[-L,0]`, :math:`[0,L]` and
    :math:`X_2\in[-L,0]`, :math:`[0,L]`, :math:`L=` ``cutoff`` (the Gaussian mass beyond is below
    :math:`10^{-22}` for :math:`L=10`). ``theta``, ``h``, ``b`` broadcast; returns their broadcast
    shape (differentiable in ``h``, ``b`` and ``weights``). Raises ``ValueError`` for bad ``weights``,
    non-finite arguments or a non-positive ``n_nodes``/``cutoff``.
    """
    _check_weights(weights)
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes <= 0:
        raise ValueError(f"n_nodes must be a positive int, got {n_nodes!r}")
    cutoff = check_positive("cutoff", cutoff)
    args = [torch.as_tensor(v, dtype=weights.dtype, device=weights.device) for v in (theta, h, b)]
    for name, value in zip(("theta", "h", "b"), args):
        check_finite(name, value)
    theta_t, h_t, b_t = torch.broadcast_tensors(*args)
    x1, y_sign, w1, x2, w2 = _quadrature_grid(n_nodes, cutoff, weights.dtype, weights.device)
    z = weights[0] * x1[:, None] + weights[1] * theta_t[..., None, None] * x2[None, :]
    margin = y_sign[:, None] * (h_t[..., None, None] * z + b_t[..., None, None])
    loss = torch.nn.functional.softplus(-margin)
    return torch.einsum("...ij,i,j->...", loss, w1, w2)


def fit_logistic_heads(
    weights: torch.Tensor,
    theta: torch.Tensor,
    *,
    n_nodes: int = 96,
    cutoff: float = 10.0,
    grad_tol: float = 1e-11,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Minimise the logistic risk over linear heads with bias, :math:`(h_\theta,b_\theta)=\arg\min_{h,b}\mathcal R_\theta(h,b)`, one per domain.

    Damped Newton on the convex risk of :func:`logistic_domain_risk`, with the exact gradient
    :math:`\mathbb E[-\tilde Y\sigma(-\tilde Y m)(Z,1)]` and Hessian
    :math:`\mathbb E[\sigma(m)\sigma(-m)(Z,1)(Z,1)^\top]` (:math:`m=hZ+b`), by
    :func:`clkit.optim.damped_newton` (Armijo backtracking), vectorised over the
    strengths ``theta`` (shape ``(k,)``). The minimiser exists when :math:`\theta w_2\ne0` (the
    classes then overlap); otherwise ``ValueError`` is raised (the risk decreases as
    :math:`h\to\infty`), as it is for bad ``weights``. Returns ``(h, b)``, each of shape ``(k,)``.
    Raises ``RuntimeError`` if the gradient norm does not fall below ``grad_tol``.
    """
    _check_weights(weights)
    check_shape("theta", theta, (None,))
    check_finite("theta", theta)
    theta = theta.to(dtype=weights.dtype, device=weights.device)
    if bool(((theta * weights[1]) == 0).any()):
        raise ValueError("theta * weights[1] must be non-zero: a separable domain has no minimising head")
    x1, y_sign, w1, x2, w2 = _quadrature_grid(n_nodes, cutoff, weights.dtype, weights.device)
    quad_w = w1[:, None] * w2[None, :]
    z = weights[0] * x1[:, None] + weights[1] * theta[:, None, None] * x2[None, :]
    params = torch.zeros(theta.shape[0], 2, dtype=weights.dtype, device=weights.device)

    def risk_of(p: torch.Tensor) -> torch.Tensor:
        m = y_sign[:, None] * (p[:, 0, None, None] * z + p[:, 1, None, None])
        return (torch.nn.functional.softplus(-m) * quad_w).sum((-2, -1))

    def value_grad_hess(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = p[:, 0, None, None] * z + p[:, 1, None, None]
        weight_grad = -y_sign[:, None] * torch.sigmoid(-y_sign[:, None] * m) * quad_w
        grad = torch.stack([(weight_grad * z).sum((-2, -1)), weight_grad.sum((-2, -1))], dim=-1)
        curv = torch.sigmoid(m) * torch.sigmoid(-m) * quad_w
        off = (curv * z).sum((-2, -1))
        hess = torch.stack(
            [torch.stack([(curv * z * z).sum((-2, -1)), off], -1), torch.stack([off, curv.sum((-2, -1))], -1)],
            -2,
        )
        return risk_of(p), grad, hess

    result = damped_newton(value_grad_hess, params, grad_tol=grad_tol, max_iter=max_iter, value=risk_of)
    return result.x[:, 0].clone(), result.x[:, 1].clone()


# Largest k = |a/s| the conditioning rule resolves: its first panel is [0, 1 / _K_MAX]. Beyond it the
# posterior Phi(kv) and the optimal head's sigmoid(-g v) (g ~ 1.81 k) change inside one panel: at
# k = 1e8 the head comes out 7.1 % low, at k = 1e9 Newton fails (review of chapter 05).
_K_MAX = 1e6


def _conditioning_rule(n_per_panel: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # v = Z / sigma ~ N(0, 1), split at 0; geometric panels resolve the scale 1/k of P(Y=1 | Z) near 0
    # for k = a/|s| up to _K_MAX (uniform-width panels would need ~k nodes); beyond it callers raise.
    edges = np.concatenate([[0.0], np.geomspace(1.0 / _K_MAX, 12.0, 32)])
    v, wv = _composite_gauss_legendre(edges, n_per_panel)
    v, wv = np.concatenate([-v[::-1], v]), np.concatenate([wv[::-1], wv])
    weight = wv * np.exp(-0.5 * v**2) / math.sqrt(2.0 * math.pi)
    return torch.as_tensor(v, dtype=dtype, device=device), torch.as_tensor(weight, dtype=dtype, device=device)


def _domain_scales(weights: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = theta * weights[1]
    sigma = torch.sqrt(weights[0] ** 2 + s**2)
    k = weights[0].abs() / s.abs()
    if bool((k > _K_MAX * (1 + 1e-9)).any()):  # 1e-9: round-off of s = 1e-6 itself
        raise ValueError(
            f"theta: |theta * weights[1] / weights[0]| must be >= {1 / _K_MAX:g} (nearly separable "
            f"domains are beyond the resolution of the quadrature), got {float((1 / k).min()):.3g}"
        )
    return sigma, weights[0] / s.abs()


def logistic_risk_by_conditioning(
    weights: torch.Tensor,
    theta: torch.Tensor | float,
    h: torch.Tensor | float,
    b: torch.Tensor | float,
    *,
    n_per_panel: int = 12,
) -> torch.Tensor:
    r"""Logistic risk of the head :math:`(h,b)` on :math:`\mathcal D_\theta`, as a one-dimensional integral.

    Conditioning on the feature :math:`Z=aX_1+sX_2` (:math:`a=w_1`, :math:`s=\theta w_2`,
    :math:`\sigma^2=a^2+s^2`): :math:`\mathbb P(Y=1\mid Z=\sigma v)=\Phi(kv)` with :math:`k=a/|s|`, so

    .. math::
        \mathcal R_\theta(h,b) = \mathbb E_{v\sim\mathcal N(0,1)}\big[\Phi(kv)\,\log(1+e^{-(h\sigma v+b)})
        + \Phi(-kv)\,\log(1+e^{h\sigma v+b})\big]

    (chapter ``05_arcl``; the same risk as :func:`logistic_domain_risk`, by an independent route).
    Composite Gauss–Legendre in :math:`v` on geometric panels from :math:`10^{-6}` to 12, which
    resolve the posterior for :math:`k\le10^6` (:math:`|\theta w_2/w_1|\ge10^{-6}`).
    ``theta``, ``h``, ``b`` broadcast; returns their broadcast shape. Raises ``ValueError`` for bad
    ``weights``, non-finite arguments, :math:`k>10^6` (``theta``; this includes the separable
    :math:`\theta w_2=0`) or a non-positive ``n_per_panel``.
    """
    _check_weights(weights)
    if isinstance(n_per_panel, bool) or not isinstance(n_per_panel, int) or n_per_panel <= 0:
        raise ValueError(f"n_per_panel must be a positive int, got {n_per_panel!r}")
    args = [torch.as_tensor(v, dtype=weights.dtype, device=weights.device) for v in (theta, h, b)]
    for name, value in zip(("theta", "h", "b"), args):
        check_finite(name, value)
    theta_t, h_t, b_t = torch.broadcast_tensors(*args)
    v, weight = _conditioning_rule(n_per_panel, weights.dtype, weights.device)
    sigma, k = _domain_scales(weights, theta_t)
    p_one = torch.special.ndtr(k[..., None] * v)
    score = (h_t * sigma)[..., None] * v + b_t[..., None]
    softplus = torch.nn.functional.softplus
    return ((p_one * softplus(-score) + (1.0 - p_one) * softplus(score)) * weight).sum(-1)


def optimal_logistic_heads(
    weights: torch.Tensor, theta: torch.Tensor, *, n_per_panel: int = 12, max_iter: int = 200
) -> torch.Tensor:
    r"""The minimising logistic head :math:`h_\theta` on each domain :math:`\mathcal D_\theta` (bias 0), by conditioning.

    :func:`logistic_risk_by_conditioning` is even in :math:`b` (substitute :math:`v\to-v`) and
    convex, so the optimal bias is 0 and :math:`h_\theta=g^\star(k)/\sigma` with
    :math:`g^\star(k)=\arg\min_g 2\,\mathbb E[\Phi(kv)\log(1+e^{-gv})]` (chapter ``05_arcl``).
    Damped Newton on :math:`g`, vectorised over ``theta`` (any shape), stopped when the step is
    below :math:`10^{-12}(1+|g|)`. Valid for :math:`k=|w_1/(\theta w_2)|\le10^6`, where the
    quadrature resolves the posterior (at :math:`k=10^8` the head would be 7.1 % low). Raises
    ``ValueError`` where :math:`\theta w_2=0` (a separable domain has no minimising head) or
    :math:`k>10^6` (``theta``), and ``RuntimeError`` if Newton does not converge.
    """
    _check_weights(weights)
    theta = check_finite("theta", torch.as_tensor(theta, dtype=weights.dtype, device=weights.device))
    if bool(((theta * weights[1]) == 0).any()):
        raise ValueError("theta * weights[1] must be non-zero: a separable domain has no minimising head")
    v, weight = _conditioning_rule(n_per_panel, weights.dtype, weights.device)
    sigma, k = _domain_scales(weights, theta)
    p_one = torch.special.ndtr(k[..., None] * v)
    softplus = torch.nn.functional.softplus

    def risk(g: torch.Tensor) -> torch.Tensor:
        return 2.0 * (p_one * softplus(-g[..., None] * v) * weight).sum(-1)

    # start at the slope of the best linear fit of the posterior, Phi(kv) ~ 1/2 + phi(0) k v against
    # sigma(gv) ~ 1/2 + gv/4: g = 4 phi(0) k ~ 1.6 k; the logit-probit factor ~1.7 is the same at large k
    g = 4.0 * k / math.sqrt(2.0 * math.pi)

    def value_grad_hess(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sig = torch.sigmoid(-x * v)
        grad = -2.0 * (p_one * v * sig * weight).sum(-1, keepdim=True)
        curv = 2.0 * (p_one * v * v * sig * (1.0 - sig) * weight).sum(-1)
        return risk(x[..., 0]), grad, curv[..., None, None]

    result = damped_newton(
        value_grad_hess, g[..., None], grad_tol=0.0, x_rtol=1e-12, max_iter=max_iter, norm_ord=math.inf,
        value=lambda x: risk(x[..., 0]),
    )
    return result.x[..., 0] / sigma


def fit_logistic_heads_on_sample(
    features: torch.Tensor, labels: torch.Tensor, *, grad_tol: float = 1e-12, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Empirical risk minimiser :math:`(\hat h,\hat b)=\arg\min\frac1n\sum_k\log(1+e^{-\tilde y_k(hz_k+b)})` per row.

    ``features`` has shape ``(d, n)`` (one domain per row, the same ``n`` inputs) or ``(n,)``,
    ``labels`` shape ``(n,)`` in {0, 1} (:math:`\tilde y=2y-1`). Damped Newton on the convex
    empirical logistic risk, vectorised over rows: the heads a practitioner fits on a finite
    sample (chapter ``05_arcl``, transfer bound with empirical heads). Returns ``(h, b)`` of shape
    ``(d,)`` (or 0-d). Raises ``ValueError`` if a row is linearly separable (no minimiser) or the
    shapes disagree, ``RuntimeError`` if the gradient norm does not fall below ``grad_tol``.
    """
    if not isinstance(features, torch.Tensor) or features.dim() not in (1, 2):
        raise ValueError(f"features must be a tensor of shape (d, n) or (n,), got {getattr(features, 'shape', None)}")
    check_finite("features", features)
    squeeze = features.dim() == 1
    z = features[None, :] if squeeze else features
    if not isinstance(labels, torch.Tensor) or labels.shape != (z.shape[1],):
        raise ValueError(f"labels must be a tensor of shape ({z.shape[1]},), got {getattr(labels, 'shape', None)}")
    y_sign = (2 * labels - 1).to(z.dtype)
    ones, zeros = labels == 1, labels == 0
    if not (bool(ones.any()) and bool(zeros.any())):
        raise ValueError("labels must contain both classes")
    big = torch.finfo(z.dtype).max
    separable = (z.masked_fill(~zeros, -big).amax(1) < z.masked_fill(~ones, big).amin(1)) | (
        z.masked_fill(~ones, -big).amax(1) < z.masked_fill(~zeros, big).amin(1)
    )
    if bool(separable.any()):
        raise ValueError("features: a row is linearly separable, so no minimising head exists")
    n = z.shape[1]
    params = torch.zeros(z.shape[0], 2, dtype=z.dtype, device=z.device)
    softplus = torch.nn.functional.softplus

    def risk(p: torch.Tensor) -> torch.Tensor:
        return softplus(-y_sign * (p[:, :1] * z + p[:, 1:])).mean(1)

    def value_grad_hess(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = y_sign * (p[:, :1] * z + p[:, 1:])
        coef = -y_sign * torch.sigmoid(-m) / n
        grad = torch.stack([(coef * z).sum(1), coef.sum(1)], -1)
        curv = torch.sigmoid(m) * torch.sigmoid(-m) / n
        off = (curv * z).sum(1)
        hess = torch.stack(
            [torch.stack([(curv * z * z).sum(1), off], -1), torch.stack([off, curv.sum(1)], -1)], -2
        )
        return softplus(-m).mean(1), grad, hess

    result = damped_newton(value_grad_hess, params, grad_tol=grad_tol, max_iter=max_iter, value=risk)
    out_h, out_b = result.x[:, 0].clone(), result.x[:, 1].clone()
    return (out_h[0], out_b[0]) if squeeze else (out_h, out_b)


def _reduced_strengths(name_a: str, s_a, name_b: str, s_b, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    out = []
    for name, value in ((name_a, s_a), (name_b, s_b)):
        t = check_finite(name, torch.as_tensor(value, dtype=dtype, device=device))
        if bool((t <= 0).any()):
            raise ValueError(f"{name} must be > 0 (a domain with s = 0 is separable and has no minimising head)")
        if bool((t < (1 - 1e-9) / _K_MAX).any()):
            raise ValueError(f"{name} must be >= {1 / _K_MAX:g}, the resolution of the quadrature")
        out.append(t)
    if bool((torch.broadcast_tensors(*out)[0] == torch.broadcast_tensors(*out)[1]).any()):
        raise ValueError(f"{name_a} and {name_b} must differ (the ratio is 0/0 for a pair of equal domains)")
    return out[0], out[1]


def conjecture_ratio(
    s_a: torch.Tensor | float,
    s_b: torch.Tensor | float,
    *,
    n_per_panel: int = 12,
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Excess risk over the scale-invariant linear bound (chapter ``05_arcl``) in reduced coordinates.

    For :math:`f_w` with :math:`w_1,w_2\neq0` on the domains :math:`\theta_A,\theta_{A'}` of a
    family :math:`[\theta_-,\theta_+]` the ratio of the excess
    :math:`\mathcal R_A(h_{A'})-\mathcal R_A(h_A)` to
    :math:`(|h_A|+|h_{A'}|)\,\mathcal L_{AR}(f_w)/\sqrt{\min_A\mathbb E f_w(AX)^2}` depends on
    :math:`w` and :math:`\theta` only through :math:`s=\theta|w_2/w_1|`, and is largest, for a given
    pair, on the family with the pair at its ends. There it equals

    .. math::
        r(s_A,s_{A'})=\frac{R_{s_A}(g_{s_{A'}})-R_{s_A}(g_{s_A})}
        {(|g_{s_A}|+|g_{s_{A'}}|)\,(s_A-s_{A'})^2/\sqrt{1+\min(s_A,s_{A'})^2}},

    with :math:`R_s(g)` the logistic risk of the head :math:`g` (bias 0) on the feature
    :math:`X_1+sX_2` and :math:`g_s` its minimiser (:func:`logistic_risk_by_conditioning`,
    :func:`optimal_logistic_heads` with weights :math:`(1,1)` and strength :math:`s`).
    ``s_a`` is the domain the risk is measured on, ``s_b`` the domain whose head is used; they
    broadcast, and the heads are fitted on each argument's own shape before broadcasting (pass
    ``s[:, None]`` and ``s[None, :]`` for a grid). Returns the broadcast shape. Raises
    ``ValueError`` unless both are finite and :math:`\ge10^{-6}` (the range of
    :func:`optimal_logistic_heads`) and no pair is equal, or for a bad ``n_per_panel``.
    """
    device = default_device() if device is None else torch.device(device)
    s_a, s_b = _reduced_strengths("s_a", s_a, "s_b", s_b, dtype, device)
    ones = torch.ones(2, dtype=dtype, device=device)
    g_a = optimal_logistic_heads(ones, s_a, n_per_panel=n_per_panel)
    g_b = optimal_logistic_heads(ones, s_b, n_per_panel=n_per_panel)
    s_a, s_b, g_a, g_b = torch.broadcast_tensors(s_a, s_b, g_a, g_b)
    risks = logistic_risk_by_conditioning(
        ones, torch.stack([s_a, s_a]), torch.stack([g_b, g_a]), 0.0, n_per_panel=n_per_panel
    )
    excess = risks[0] - risks[1]
    bound = (g_a.abs() + g_b.abs()) * (s_a - s_b) ** 2 / torch.sqrt(1 + torch.minimum(s_a, s_b) ** 2)
    return excess / bound


def conjecture_ratio_limit(s: torch.Tensor | float) -> torch.Tensor | float:
    r"""The limit of :func:`conjecture_ratio` as the head's domain becomes separable, :math:`s_{A'}\to0`.

    .. math::
        \lim_{s_{A'}\to0} r(s,s_{A'})=\frac{\mathbb E[(sW-|X|)_+]}{s^2}
        =\frac{\varphi(0)}{1+\sqrt{1+s^2}},\qquad W,X\sim\mathcal N(0,1)\text{ independent},

    decreasing in :math:`s` with supremum :math:`\varphi(0)/2=1/(2\sqrt{2\pi})` as :math:`s\to0`
    (derivation in chapter ``05_arcl``). ``s`` is a positive number or tensor; returns the same
    type. Raises ``ValueError`` unless ``s`` is finite and positive.
    """
    phi0 = 1.0 / math.sqrt(2.0 * math.pi)
    if isinstance(s, torch.Tensor):
        check_finite("s", s)
        if bool((s <= 0).any()):
            raise ValueError("s must be > 0")
        return phi0 / (1.0 + torch.sqrt(1.0 + s * s))
    s = check_positive("s", s)
    return phi0 / (1.0 + math.sqrt(1.0 + s * s))


_CORNER_BREAKS = (-np.inf, -8.0, 0.0, 8.0, np.inf)


def _corner_integral(integrand: Callable[[float], float]) -> float:
    from scipy.integrate import quad

    return sum(
        quad(integrand, a, b, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
        for a, b in zip(_CORNER_BREAKS[:-1], _CORNER_BREAKS[1:])
    )


def _corner_j(c: float) -> float:
    # J(c) = int Phi(u) log(1 + e^{-c u}) du
    return _corner_integral(lambda u: float(ndtr(u)) * float(np.logaddexp(0.0, -c * u)))


@functools.lru_cache(maxsize=1)
def _corner_head() -> float:
    # c* = argmin J: J'(c) = -int u Phi(u) sigmoid(-c u) du = 0 (the limit of g_s * s as s -> 0)
    from scipy.optimize import brentq
    from scipy.special import expit

    return brentq(lambda c: _corner_integral(lambda u: -u * float(ndtr(u)) * float(expit(-c * u))),
                  1.0, 3.0, xtol=1e-15, rtol=1e-15)


def conjecture_ratio_corner(t: torch.Tensor | float) -> torch.Tensor:
    r"""The corner limit :math:`F(t)=\lim_{s\to0}r(s,ts)` of :func:`conjecture_ratio` (chapter ``05_arcl``).

    With :math:`v=su` in :func:`logistic_risk_by_conditioning` (:math:`k=1/s`, heads
    :math:`g=c/s`), :math:`R_s(c/s)=2s\varphi(0)J(c)+o(s)` with
    :math:`J(c)=\int\Phi(u)\log(1+e^{-cu})\,du`, the heads obey :math:`s\,g_s\to c^\star=\arg\min J`
    and :math:`ts\,g_{ts}\to c^\star`, so

    .. math::
        F(t)=\frac{2\varphi(0)\,[J(c^\star/t)-J(c^\star)]}{c^\star\,(1+1/t)\,(1-t)^2},

    which tends to :math:`\varphi(0)/2` as :math:`t\to0` (:math:`J(C)\sim C/4`). A reconstruction
    of this book, not from the paper. Adaptive quadrature (``scipy.integrate.quad``, relative
    error 1e-13) on :math:`(-\infty,-8,0,8,\infty)` and Brent's method for :math:`c^\star`.
    ``t`` is a positive number or tensor with no entry equal to 1; returns a float64 tensor of its
    shape. Raises ``ValueError`` (naming ``t``) otherwise.
    """
    t_t = check_finite("t", torch.as_tensor(t, dtype=torch.float64))
    if bool((t_t <= 0).any()) or bool((t_t == 1).any()):
        raise ValueError("t must be > 0 and != 1 (the ratio is 0/0 for equal domains)")
    c_star = _corner_head()
    j_star = _corner_j(c_star)
    phi0 = 1.0 / math.sqrt(2.0 * math.pi)
    values = [
        2.0 * phi0 * (_corner_j(c_star / tv) - j_star) / (c_star * (1.0 + 1.0 / tv) * (1.0 - tv) ** 2)
        for tv in t_t.reshape(-1).tolist()
    ]
    return torch.tensor(values, dtype=torch.float64).reshape(t_t.shape)
