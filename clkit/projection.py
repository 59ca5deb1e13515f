r"""Gui, Ma & Zhong (2023), projection heads: :math:`\tau^*`, expansion measure, closed-form population loss.

Model (Gui, Ma & Zhong 2023, arXiv 2306.03335; the authors' poster, "Feature-level GMM modeling"):
features :math:`h\sim\tfrac12\mathcal N(-\mu,I_p)+\tfrac12\mathcal N(\mu,I_p)`, augmentations
:math:`h^+\mid h\sim\mathcal N(h,\sigma^2 I_p)`, a linear projector :math:`z=Wh` and the normalised
population loss

.. math::
    \mathcal C(W)=\frac{1}{2\tau}\frac{\mathbb E\|Wh_1^+-Wh_2^+\|^2}{(\mathbb E\|Wh_1^+\|^2\,\mathbb E\|Wh_2^+\|^2)^{1/2}}
    +\log\mathbb E\exp\Big(-\frac{1}{2\tau}\frac{\|Wh_1^+-Wh^-\|^2}{(\mathbb E\|Wh_1^+\|^2\,\mathbb E\|Wh^-\|^2)^{1/2}}\Big).

Every expectation is a Gaussian integral; with :math:`M=W^\top W`, :math:`a=\operatorname{tr}M`,
:math:`b=\mu^\top M\mu`, :math:`s=(1+\sigma^2)a+b`, :math:`c=1/(2\tau s)` and :math:`v=2(1+\sigma^2)`,

.. math::
    \mathcal C(W)=\frac{\sigma^2 a}{\tau s}-\tfrac12\log\det(I+2cvM)
    +\log\Big(\tfrac12+\tfrac12 e^{-4c\,\mu^\top(I+2cvM)^{-1}M\mu}\Big)

(derived in the book's chapter on projection heads). The poster does not print the "first-order
approximation" :math:`\widetilde{\mathcal L}` of its Theorem 1; :func:`first_order_loss` is *the
book's reconstruction*: first order in :math:`c` inside the log-determinant and the inverse.

The module also holds the downstream side of the paper: the projector family
:math:`W_\eta=I+\eta\,\mu\mu^\top/\|\mu\|^2`, ridge-regularised logistic regression, the exact test
error of a linear classifier on :math:`z=Wh`, and the max-margin classifier.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from scipy.special import ndtr

from ._validation import check_finite, check_matrix, check_positive, check_shape
from .device import as_tensor
from .symbolic import is_symbolic

__all__ = [
    "tau_star",
    "expansion_measure",
    "population_loss",
    "first_order_loss",
    "first_order_loss_profile",
    "first_order_optimum",
    "rank_one_derivative",
    "exact_threshold",
    "minimize_over_projector",
    "projector_family",
    "projector_parameter",
    "ridge_logistic_regression",
    "linear_classifier_error",
    "max_margin_classifier",
    "MaxMarginLimit",
    "max_margin_asymptotics",
    "separability_threshold",
]

_LOG2 = math.log(2.0)


def _positive_param(name: str, value: float | torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``value`` as a float64 (or ``like``'s dtype) tensor, every entry finite and > 0."""
    if isinstance(value, torch.Tensor):
        out = as_tensor(value, dtype=like.dtype if like is not None else None,
                        device=like.device if like is not None else None)
        check_finite(name, out)
        if (out <= 0).any():
            raise ValueError(f"{name} must be > 0, got {out.tolist() if out.numel() < 8 else 'entries <= 0'}")
        return out
    check_positive(name, value)
    return as_tensor(float(value), dtype=like.dtype if like is not None else None,
                     device=like.device if like is not None else None)


def _check_mu(mu: torch.Tensor, p: int | None = None) -> torch.Tensor:
    if not isinstance(mu, torch.Tensor):
        raise ValueError(f"mu must be a torch.Tensor, got {type(mu).__name__}")
    if mu.dim() < 1 or (p is not None and mu.shape[-1] != p):
        raise ValueError(f"mu must have shape (..., {p if p is not None else 'p'}), got {tuple(mu.shape)}")
    check_finite("mu", mu)
    if (mu.pow(2).sum(-1) == 0).any():
        raise ValueError("mu must be non-zero")
    return mu


def _check_W(W: torch.Tensor) -> torch.Tensor:
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"W must be a torch.Tensor, got {type(W).__name__}")
    if W.dim() < 2:
        raise ValueError(f"W must have shape (..., q, p), got {tuple(W.shape)}")
    if not W.is_floating_point():
        raise ValueError(f"W must be floating point, got {W.dtype}")
    check_finite("W", W)
    if (W.pow(2).sum((-2, -1)) == 0).any():
        raise ValueError("W must be non-zero (the loss is scale-invariant and undefined at W = 0)")
    return W


def tau_star(sigma2: float | torch.Tensor, mu_norm2: float | torch.Tensor) -> float | torch.Tensor:
    r"""The expansion–shrinkage threshold of Gui, Ma & Zhong (2023), poster, "phase transition":

    .. math:: \tau^*=\frac{2\|\mu\|^2}{(1+\sigma^2_{\mathrm{aug}}+\|\mu\|^2)\log(1+2\sigma^2_{\mathrm{aug}})}.

    Args:
        sigma2: augmentation variance :math:`\sigma^2_{\mathrm{aug}}>0` (float or tensor).
        mu_norm2: signal strength :math:`\|\mu\|^2>0` (float or tensor, broadcastable with ``sigma2``).

    Returns a float when both arguments are numbers, a tensor of the broadcast shape for tensors,
    and a SymPy expression when either argument is a SymPy object (the book's symbolic checks).

    Raises:
        ValueError: if ``sigma2`` or ``mu_norm2`` is not finite and > 0 (at :math:`\sigma^2=0` the
            threshold is infinite: every temperature is in the shrinkage regime).
    """
    if is_symbolic(sigma2, mu_norm2):
        import sympy

        return 2 * mu_norm2 / ((1 + sigma2 + mu_norm2) * sympy.log(1 + 2 * sigma2))
    scalar = not isinstance(sigma2, torch.Tensor) and not isinstance(mu_norm2, torch.Tensor)
    like = sigma2 if isinstance(sigma2, torch.Tensor) else (mu_norm2 if isinstance(mu_norm2, torch.Tensor) else None)
    s2 = _positive_param("sigma2", sigma2, like)
    rho = _positive_param("mu_norm2", mu_norm2, like)
    out = 2 * rho / ((1 + s2 + rho) * torch.log1p(2 * s2))
    return float(out) if scalar else out


def expansion_measure(W: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    r"""Expansion measure of Gui, Ma & Zhong (2023), poster Figure 3:

    .. math:: \tilde t(W)=\frac{\|W\mu\|^2}{\|W\|_F^2\,\|\mu\|^2}\in[0,1].

    :math:`\tilde t=1` iff :math:`W` is rank one with right singular vector :math:`\pm\mu/\|\mu\|`;
    :math:`\tilde t(I_p)=1/p`.

    Args:
        W: ``(..., q, p)`` projector(s), non-zero.
        mu: ``(p,)`` (or ``(..., p)``, broadcast against ``W``'s batch) non-zero mean.

    Returns a tensor of shape ``W.shape[:-2]`` (a 0-d tensor for one matrix).

    Raises:
        ValueError: naming ``W`` or ``mu`` for wrong shapes, non-finite or zero input.
    """
    W = _check_W(W)
    mu = _check_mu(mu, W.shape[-1])
    Wmu = (W @ mu.unsqueeze(-1)).squeeze(-1)
    return Wmu.pow(2).sum(-1) / (W.pow(2).sum((-2, -1)) * mu.pow(2).sum(-1))


def _moments(W: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor, tau: torch.Tensor):
    M = W.transpose(-2, -1) @ W
    a = torch.diagonal(M, dim1=-2, dim2=-1).sum(-1)
    b = (mu.unsqueeze(-2) @ M @ mu.unsqueeze(-1)).squeeze(-1).squeeze(-1)
    s = (1 + sigma2) * a + b
    return M, a, b, s


def _loss_args(W, mu, sigma2, tau):
    W = _check_W(W)
    mu = _check_mu(as_tensor(mu, dtype=W.dtype, device=W.device) if isinstance(mu, torch.Tensor) else mu, W.shape[-1])
    return W, mu, _positive_param("sigma2", sigma2, W), _positive_param("tau", tau, W)


def population_loss(
    W: torch.Tensor, mu: torch.Tensor, sigma2: float | torch.Tensor, tau: float | torch.Tensor
) -> torch.Tensor:
    r"""Exact population loss :math:`\mathcal C(W)` of Gui, Ma & Zhong (2023) in closed form.

    .. math::
        \mathcal C(W)=\frac{\sigma^2 a}{\tau s}-\tfrac12\log\det(I_p+2cvM)
        +\log\Big(\tfrac12+\tfrac12e^{-4c\,\mu^\top(I_p+2cvM)^{-1}M\mu}\Big),

    :math:`M=W^\top W`, :math:`a=\operatorname{tr}M`, :math:`b=\mu^\top M\mu`,
    :math:`s=(1+\sigma^2)a+b`, :math:`c=1/(2\tau s)`, :math:`v=2(1+\sigma^2)`. The loss is the poster's
    :math:`\mathcal C` ("Population loss"); the closed form is derived in the book (each expectation
    is Gaussian: :math:`h_1^+-h_2^+\sim\mathcal N(0,2\sigma^2I)` and :math:`h_1^+-h^-` is the mixture
    :math:`\tfrac12\mathcal N(0,vI)+\tfrac14\mathcal N(\pm2\mu,vI)`). It is invariant under
    :math:`W\mapsto kW` and differentiable in ``W``.

    Args:
        W: ``(..., q, p)`` projector(s), non-zero.
        mu: ``(p,)`` or ``(..., p)`` mixture mean.
        sigma2: augmentation variance > 0; float or tensor broadcastable to ``W.shape[:-2]``.
        tau: temperature > 0; float or tensor broadcastable to ``W.shape[:-2]``.

    Returns a tensor of shape ``W.shape[:-2]``.

    Raises:
        ValueError: naming the argument, for wrong shapes, non-finite values, ``W = 0``, ``mu = 0``,
            ``sigma2 <= 0`` or ``tau <= 0``.
    """
    return _population_loss(*_loss_args(W, mu, sigma2, tau))


def _population_loss(W: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    M, a, b, s = _moments(W, mu, sigma2, tau)
    c = 1 / (2 * tau * s)
    v = 2 * (1 + sigma2)
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    A = eye + (2 * c * v)[..., None, None] * M
    chol = torch.linalg.cholesky(A)
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    Mmu = M @ mu.unsqueeze(-1).expand(*M.shape[:-1], 1)
    quad = (mu.unsqueeze(-2) @ torch.cholesky_solve(Mmu, chol)).squeeze(-1).squeeze(-1)
    tail = torch.logaddexp(torch.zeros_like(quad), -4 * c * quad) - _LOG2
    return sigma2 * a / (tau * s) - 0.5 * logdet + tail


def first_order_loss(
    W: torch.Tensor, mu: torch.Tensor, sigma2: float | torch.Tensor, tau: float | torch.Tensor
) -> torch.Tensor:
    r"""First-order surrogate :math:`\widetilde{\mathcal L}(W)` (*the book's reconstruction*, not the paper's text).

    Replace :math:`\log\det(I+2cvM)` by :math:`2cv\operatorname{tr}M` and :math:`(I+2cvM)^{-1}` by
    :math:`I` in :func:`population_loss` (first order in :math:`c=1/(2\tau s)`):

    .. math::
        \widetilde{\mathcal L}(W)=-\frac{a}{\tau s}+\log\frac{1+e^{-2b/(\tau s)}}{2}
        =\widetilde\ell\big(\tilde t(W)\|\mu\|^2\big),

    with :math:`\widetilde\ell` of :func:`first_order_loss_profile`. Gui, Ma & Zhong's Theorem 1 is
    stated for "certain first-order approximation"; this one reproduces their :math:`\tau^*` exactly.

    Shapes, arguments and errors as in :func:`population_loss`.
    """
    return _first_order_loss(*_loss_args(W, mu, sigma2, tau))


def _first_order_loss(W: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    _, a, b, s = _moments(W, mu, sigma2, tau)
    u = 2 * b / (tau * s)
    return -a / (tau * s) + torch.logaddexp(torch.zeros_like(u), -u) - _LOG2


@functools.lru_cache(maxsize=16)
def _eye(p: int) -> np.ndarray:
    eye = np.eye(p)
    eye.setflags(write=False)
    return eye


def _numpy_moments(M: np.ndarray, mu: np.ndarray, sigma2: float):
    a = float(np.trace(M))
    Mmu = M @ mu
    b = float(mu @ Mmu)
    s = (1 + sigma2) * a + b
    ds = (1 + sigma2) * _eye(len(mu)) + np.outer(mu, mu)  # d s / d M
    return a, b, s, ds, Mmu


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def _population_value_grad_M(M: np.ndarray, mu: np.ndarray, sigma2: float, tau: float):
    r""":math:`\mathcal C` and :math:`\partial\mathcal C/\partial M` in float64 numpy (same closed form
    as :func:`population_loss`; chain rule through :math:`a,b,s,k=2cv,q=\mu^\top A^{-1}M\mu`)."""
    a, b, s, ds, Mmu = _numpy_moments(M, mu, sigma2)
    v = 2 * (1 + sigma2)
    k = v / (tau * s)  # 2 c v
    A = _eye(len(mu)) + k * M
    logdet = 2 * float(np.log(np.diag(np.linalg.cholesky(A))).sum())
    A_inv = np.linalg.inv(A)
    y = A_inv @ mu
    q = float(y @ Mmu)
    z = -2 * q / (tau * s)
    value = sigma2 * a / (tau * s) - 0.5 * logdet + (math.log1p(math.exp(-abs(z))) + max(z, 0.0) - _LOG2)
    dk = -(k / s) * ds
    dq = np.outer(y, y) + ((-q + float(y @ M @ y)) / k) * dk
    grad = (sigma2 / tau) * (_eye(len(mu)) / s - (a / s**2) * ds)
    grad = grad - 0.5 * (k * A_inv + float(np.vdot(A_inv, M)) * dk)
    grad = grad + _sigmoid(z) * (-2 / (tau * s) * dq + (2 * q / (tau * s**2)) * ds)
    return float(value), grad


def _first_order_value_grad_M(M: np.ndarray, mu: np.ndarray, sigma2: float, tau: float):
    r""":math:`\widetilde{\mathcal L}` and :math:`\partial\widetilde{\mathcal L}/\partial M` in float64 numpy."""
    a, b, s, ds, _ = _numpy_moments(M, mu, sigma2)
    u = 2 * b / (tau * s)
    value = -a / (tau * s) + (math.log1p(math.exp(-abs(u))) + max(-u, 0.0)) - _LOG2
    du = 2 * np.outer(mu, mu) / (tau * s) - (2 * b / (tau * s**2)) * ds
    grad = -_eye(len(mu)) / (tau * s) + (a / (tau * s**2)) * ds - _sigmoid(-u) * du
    return value, grad


_NEWTON_STEPS = 30
_UNCHECKED: dict[Callable[..., torch.Tensor], Callable[..., torch.Tensor]] = {}


def first_order_loss_profile(
    x: torch.Tensor | float, sigma2: float | torch.Tensor, tau: float | torch.Tensor
) -> torch.Tensor:
    r"""The surrogate as a function of :math:`x=\tilde t(W)\|\mu\|^2=b/a` (the book's reconstruction):

    .. math::
        \widetilde\ell(x)=-\frac{1}{\tau(1+\sigma^2+x)}+\log\frac{1+e^{-u(x)}}{2},\qquad
        u(x)=\frac{2x}{\tau(1+\sigma^2+x)}.

    Args:
        x: tensor (any shape) or float, :math:`x\ge0`.
        sigma2, tau: > 0, floats or tensors broadcastable with ``x``.

    Raises:
        ValueError: if ``x`` is negative or non-finite, or ``sigma2``/``tau`` not > 0.
    """
    x = as_tensor(x)
    check_finite("x", x)
    if (x < 0).any():
        raise ValueError("x must be >= 0")
    sigma2 = _positive_param("sigma2", sigma2, x)
    tau = _positive_param("tau", tau, x)
    d = tau * (1 + sigma2 + x)
    u = 2 * x / d
    return -1 / d + torch.logaddexp(torch.zeros_like(u), -u) - _LOG2


def first_order_optimum(
    sigma2: float | torch.Tensor, tau: float | torch.Tensor, mu_norm2: float | torch.Tensor
) -> float | torch.Tensor:
    r"""Minimiser :math:`x^*` of :math:`\widetilde\ell` on :math:`[0,\|\mu\|^2]` (the book's derivation):

    .. math::
        x^*=\begin{cases}\|\mu\|^2 & \tau\ge\tau^*\ \text{(expansion: } \tilde t=1)\\[2pt]
        \dfrac{\tau(1+\sigma^2)\ell}{2-\tau\ell} & \tau<\tau^*\ \text{(shrinkage)}\end{cases},
        \qquad \ell=\log(1+2\sigma^2).

    :math:`\tilde t(W^*)=x^*/\|\mu\|^2`; as :math:`\sigma^2\to0` at fixed :math:`\tau`,
    :math:`x^*\sim\tau\sigma^2\to0`.

    Returns a float when all arguments are numbers, else a tensor.

    Raises:
        ValueError: if an argument is not finite and > 0.
    """
    scalar = not any(isinstance(v, torch.Tensor) for v in (sigma2, tau, mu_norm2))
    like = next((v for v in (sigma2, tau, mu_norm2) if isinstance(v, torch.Tensor)), None)
    s2 = _positive_param("sigma2", sigma2, like)
    t = _positive_param("tau", tau, like)
    rho = _positive_param("mu_norm2", mu_norm2, like)
    ell = torch.log1p(2 * s2)
    denom = 2 - t * ell
    interior = t * (1 + s2) * ell / denom.clamp_min(torch.finfo(denom.dtype).tiny)
    out = torch.where(denom > 0, torch.minimum(interior, rho), rho)
    return float(out) if scalar else out


def _scalar_params(**values: Any) -> dict[str, float]:
    """Each value as a float, finite and > 0 (``ValueError`` naming the argument otherwise)."""
    out = {}
    for name, value in values.items():
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a real number, got {value!r}")
        out[name] = check_positive(name, value)
    return out


def _positive_arrays(**values: Any) -> list[np.ndarray]:
    """Each value as a float64 array, finite and > 0 (``ValueError`` naming the argument otherwise)."""
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a real number, got {value!r}")
        value = np.asarray(value, dtype=np.float64)
        if not np.isfinite(value).all() or (value <= 0).any():
            raise ValueError(f"{name} must be finite and > 0")
        out.append(value)
    return out


def rank_one_derivative(tau: Any, sigma2: Any, mu_norm2: Any) -> Any:
    r"""Slope of the exact loss out of the rank-one aligned point (the book's lemma on :math:`\tau_e`).

    Along :math:`M(T)=e_1e_1^\top+\tfrac{T}{p-1}P_\perp` with :math:`\mu=\|\mu\|e_1` and
    :math:`P_\perp=I_p-e_1e_1^\top`, the derivative of :func:`population_loss` at :math:`T=0` is

    .. math::
        \partial_T\mathcal C\big|_{T=0}=\frac{c}{s}\Big[2\sigma^2\|\mu\|^2
        -v\Big(s-\frac{w}{k}\Big)+\frac{2v\|\mu\|^2}{k^2(1+e^{q})}\Big],

    with :math:`w=1+\sigma^2`, :math:`v=2w`, :math:`s=w+\|\mu\|^2`, :math:`c=1/(2\tau s)`,
    :math:`k=1+2cv` and :math:`q=4c\|\mu\|^2/k`. It does not depend on :math:`p`, and every
    first-order PSD direction at the rank-one point changes :math:`\mathcal C` by this slope times
    the trace of its perpendicular block (see the book's chapter on projection heads). The root in
    :math:`\tau` is :func:`exact_threshold`.

    Args:
        tau, sigma2, mu_norm2: > 0; floats, numpy arrays (broadcast; then the result is an
            array) or SymPy expressions (then the result is one).

    Returns a float, an array, or a SymPy expression when an argument is symbolic.

    Raises:
        ValueError: naming the argument, if a numeric argument is not finite and > 0.
    """
    if is_symbolic(tau, sigma2, mu_norm2):
        import sympy

        exp = sympy.exp
    elif any(isinstance(v, np.ndarray) for v in (tau, sigma2, mu_norm2)):
        tau, sigma2, mu_norm2 = _positive_arrays(tau=tau, sigma2=sigma2, mu_norm2=mu_norm2)

        def exp(x: np.ndarray) -> np.ndarray:
            return np.exp(np.minimum(x, 700.0))
    else:
        values = _scalar_params(tau=tau, sigma2=sigma2, mu_norm2=mu_norm2)
        tau, sigma2, mu_norm2 = values["tau"], values["sigma2"], values["mu_norm2"]

        def exp(x: float) -> float:
            return math.exp(min(x, 700.0))  # 1/(1 + e^q) underflows to 0 beyond, as it should

    w = 1 + sigma2
    v = 2 * w
    s = w + mu_norm2
    c = 1 / (2 * tau * s)
    k = 1 + 2 * c * v
    q = 4 * c * mu_norm2 / k
    return c / s * (2 * sigma2 * mu_norm2 - v * (s - w / k) + 2 * v * mu_norm2 / (k**2 * (1 + exp(q))))


def exact_threshold(sigma2: Any, mu_norm2: Any) -> Any:
    r"""The exact loss's rank-one threshold :math:`\tau_e(\sigma^2,\|\mu\|^2)` (the book's lemma).

    :math:`\tau_e` is the root in :math:`\tau` of :func:`rank_one_derivative`: for
    :math:`\tau>\tau_e` mass in the directions perpendicular to :math:`\mu` raises :math:`\mathcal C`
    at first order (the rank-one aligned projector satisfies the first-order optimality conditions),
    for :math:`\tau<\tau_e` it lowers it (the rank-one projector is not a local minimiser). It is
    the exact loss's analogue of the surrogate's :func:`tau_star`, and :math:`\tau_e/\tau^*\to1` as
    :math:`\|\mu\|^2\to\infty`.

    Found by Brent's method on :math:`\log\tau`, bracketed by doubling from :math:`\tau^*`, to
    relative accuracy :math:`\approx 4\times10^{-16}`. For numpy arrays (broadcast), every
    configuration at once: the same bracket, then bisection on :math:`\log\tau` until the brackets
    are 2 ulp wide (the tests compare it with the scalar path).

    Args:
        sigma2: augmentation variance > 0 (float or numpy array).
        mu_norm2: :math:`\|\mu\|^2>0` (float or numpy array).

    Returns a float, or an array of the broadcast shape.

    Raises:
        ValueError: naming the argument, if ``sigma2`` or ``mu_norm2`` is not finite and > 0.
    """
    if isinstance(sigma2, np.ndarray) or isinstance(mu_norm2, np.ndarray):
        return _exact_threshold_array(sigma2, mu_norm2)
    values = _scalar_params(sigma2=sigma2, mu_norm2=mu_norm2)
    s2, rho = values["sigma2"], values["mu_norm2"]

    def slope(log_tau: float) -> float:
        # c/s > 0 does not change the sign; dividing it out keeps the bracket's values O(1)
        tau = math.exp(log_tau)
        return rank_one_derivative(tau, s2, rho) * 2 * tau * (1 + s2 + rho) ** 2

    lo = hi = math.log(tau_star(s2, rho))
    while slope(hi) <= 0:
        hi += math.log(2.0)
    while slope(lo) > 0:
        lo -= math.log(2.0)
    from scipy.optimize import brentq  # here, not at import: 0.3 s saved where unused

    return math.exp(brentq(slope, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


def _exact_threshold_array(sigma2: Any, mu_norm2: Any) -> np.ndarray:
    """:func:`exact_threshold` of every pair of the broadcast arrays (bisection in log tau)."""
    s2, rho = np.broadcast_arrays(*_positive_arrays(sigma2=sigma2, mu_norm2=mu_norm2))

    def positive(log_tau: np.ndarray) -> np.ndarray:  # the sign of g, as in the scalar path
        tau = np.exp(log_tau)
        return rank_one_derivative(tau, s2, rho) * 2 * tau * (1 + s2 + rho) ** 2 > 0

    start = np.log(tau_star(torch.as_tensor(s2), torch.as_tensor(rho)).cpu().numpy())
    lo, hi = start.copy(), start.copy()
    for _ in range(2000):  # g < 0 below tau_e and > 0 above: double outwards until bracketed
        up, down = ~positive(hi), positive(lo)
        if not (up.any() or down.any()):
            break
        hi, lo = np.where(up, hi + math.log(2.0), hi), np.where(down, lo - math.log(2.0), lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        wide = (mid > lo) & (mid < hi)
        if not wide.any():
            break
        above = positive(mid)
        hi, lo = np.where(wide & above, mid, hi), np.where(wide & ~above, mid, lo)
    return np.exp(0.5 * (lo + hi))


class _BFGSResult(NamedTuple):
    x: np.ndarray
    fun: float
    jac: np.ndarray
    success: bool
    status: int  # 0: gradient below gtol, 1: iteration limit, 2: the line search found no decrease
    message: str


def _bfgs(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, gtol: float,
          max_iter: int) -> _BFGSResult:
    """BFGS on the inverse Hessian (Nocedal & Wright 2006, Algorithm 6.1) with a backtracking
    Armijo line search, for a few dozen variables and a cheap closed-form ``fun`` (value, gradient).

    The initial inverse Hessian is scaled by y's/y'y after the first step (N&W eq. 6.20); an update
    whose curvature y's is not positive is skipped. Stops when the gradient's largest entry is
    below ``gtol`` (status 0), after ``max_iter`` steps (1), or when no step of the search decreases
    the value beyond its round-off (2, precision loss: the caller polishes with Newton). scipy's
    BFGS spends most of its time in its Python Wolfe line search on these small problems.
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fun(x)
    n = x.size
    h_inv = np.eye(n)
    scaled = False
    for k in range(max_iter):
        if not np.isfinite(f):
            return _BFGSResult(x, f, g, False, 3, "non-finite loss")
        if np.abs(g).max() < gtol:
            return _BFGSResult(x, f, g, True, 0, "gradient below gtol")
        p = -h_inv @ g
        slope = float(g @ p)
        if slope >= 0:  # not a descent direction (round-off in h_inv): restart from the gradient
            h_inv, scaled = np.eye(n), False
            p, slope = -g, -float(g @ g)
        t, slack = 1.0, 64 * np.finfo(float).eps * max(1.0, abs(f))
        while True:
            x_new = x + t * p
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * t * slope or (f_new <= f + slack and t < 1e-3):
                break
            t *= 0.5
            if t < 1e-12:
                return _BFGSResult(x, f, g, False, 2, "precision loss: no decrease along the search direction")
        s_vec, y_vec = x_new - x, g_new - g
        curvature = float(y_vec @ s_vec)
        if curvature > 1e-300:
            if not scaled:
                h_inv = np.eye(n) * (curvature / float(y_vec @ y_vec))
                scaled = True
            rho = 1.0 / curvature
            hy = h_inv @ y_vec
            h_inv = (h_inv - rho * (np.outer(s_vec, hy) + np.outer(hy, s_vec))
                     + (rho * rho * float(y_vec @ hy) + rho) * np.outer(s_vec, s_vec))
        x, f, g = x_new, f_new, g_new
    if np.abs(g).max() < gtol:
        return _BFGSResult(x, f, g, True, 0, "gradient below gtol")
    return _BFGSResult(x, f, g, False, 1, f"iteration limit {max_iter}")


def minimize_over_projector(
    loss: Callable[..., torch.Tensor],
    mu: torch.Tensor,
    sigma2: float,
    tau: float,
    W0: torch.Tensor,
    *,
    gtol: float = 1e-12,
    max_iter: int = 5000,
    max_restarts: int = 5,
) -> torch.Tensor:
    r"""A minimiser :math:`\hat W=\arg\min_W \texttt{loss}(W,\mu,\sigma^2,\tau)` over *all* ``(q, p)`` matrices.

    BFGS (:func:`_bfgs`: inverse-Hessian updates, backtracking Armijo search; tested against
    scipy's BFGS) on the :math:`qp` entries of :math:`W`, started at ``W0``, with the exact gradient
    (for :func:`population_loss` and :func:`first_order_loss` in float64, the chain rule through
    :math:`M=W^\top W` in numpy, tested against autograd; autograd otherwise), in ``W0``'s dtype. The answer is returned only when the gradient's largest entry
    is below ``gtol``. When BFGS stops for precision loss (its line search
    needs decreases of the loss that round-off cannot resolve), a few Newton steps on the gradient
    with a Hessian (central differences of the exact gradient, or autograd's; least-squares steps: the Hessian is singular along the invariances
    :math:`W\mapsto QW`, :math:`W\mapsto kW`) finish the job, and their result is
    accepted only if the gradient criterion holds; otherwise BFGS restarts from the point reached
    (a fresh Hessian approximation), up to ``max_restarts`` times. Both losses of this module are invariant
    under :math:`W\mapsto kW`, so only scale-free functions of :math:`\hat W` (such as
    :func:`expansion_measure`) are meaningful; the returned matrix is normalised to
    :math:`\|\hat W\|_F=1`.

    Args:
        loss: :func:`population_loss`, :func:`first_order_loss` or any function with their signature.
        mu: ``(p,)`` mean; sigma2, tau: > 0.
        W0: ``(q, p)`` starting point, non-zero.
        gtol: BFGS stops when the gradient's largest entry is below ``gtol``.
        max_iter: BFGS iteration limit (per start).
        max_restarts: restarts allowed after a stop without ``success``.

    Raises:
        ValueError: for invalid ``W0``, ``gtol <= 0``, a non-finite loss along the way, or when
            BFGS has not reported success after ``max_restarts`` restarts (the message gives scipy's
            reason and the gradient reached).
    """
    W0 = _check_W(W0)
    if W0.dim() != 2:
        raise ValueError(f"W0 must be one (q, p) matrix, got shape {tuple(W0.shape)}")
    gtol = check_positive("gtol", gtol)
    shape, dtype, device = W0.shape, W0.dtype, W0.device
    core = _UNCHECKED.get(loss)
    if core is not None:  # validated once here instead of at every evaluation
        _, mu_t, s2_t, tau_t = _loss_args(W0, mu, sigma2, tau)
        scale_free = lambda W: core(W, mu_t, s2_t, tau_t)  # noqa: E731
    else:
        scale_free = lambda W: loss(W, mu, sigma2, tau)  # noqa: E731

    def objective(W: torch.Tensor) -> torch.Tensor:
        # The loss is scale-invariant, so its gradient shrinks like 1/||W|| and BFGS could meet
        # gtol by inflating W. The radial term pins ||W||_F near 1 without moving any minimiser's
        # direction (it vanishes on the unit sphere and is minimised there along every ray).
        return scale_free(W) + (W.pow(2).sum() - 1) ** 2

    numpy_core = _NUMPY_VALUE_GRAD.get(loss)
    if numpy_core is not None and dtype == torch.float64:  # closed-form gradient, no autograd
        mu_np = _loss_args(W0, mu, sigma2, tau)[1].detach().cpu().numpy().astype(np.float64)
        s2_np, tau_np = float(sigma2), float(tau)

    def value_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        if numpy_core is not None and dtype == torch.float64:
            W_np = w.reshape(shape)
            value, grad_M = numpy_core(W_np.T @ W_np, mu_np, s2_np, tau_np)
            radial = float(w @ w) - 1
            grad = 2 * W_np @ grad_M + 4 * radial * W_np
            return value + radial**2, grad.ravel()
        W = torch.tensor(w.reshape(shape), dtype=dtype, device=device, requires_grad=True)
        value = objective(W)
        (grad,) = torch.autograd.grad(value, W)
        return float(value.detach()), grad.detach().cpu().numpy().ravel()

    def newton_polish(w: np.ndarray) -> tuple[np.ndarray, float]:
        # Newton steps on the gradient alone (no function values, so no precision loss); the
        # Hessian is singular along W -> QW and W -> kW, hence the least-squares step.
        for _ in range(_NEWTON_STEPS):
            _, g = value_and_grad(w)
            if np.abs(g).max() <= gtol:
                break
            if numpy_core is not None and dtype == torch.float64:
                # central differences of the exact gradient (step 1e-5 at ||W|| ~ 1: truncation
                # ~1e-10, round-off ~1e-11): 2qp closed-form gradients cost a tenth of autograd's
                # Hessian, and an inexact Hessian only slows the polish from quadratic to linear
                # convergence with rate ~1e-7; acceptance is by the exact gradient below.
                h = 1e-5 * max(1.0, float(np.linalg.norm(w)))
                basis = np.eye(w.size) * h
                H = np.stack([value_and_grad(w + e)[1] - value_and_grad(w - e)[1] for e in basis], 1) / (2 * h)
                H = 0.5 * (H + H.T)
            else:
                W = torch.tensor(w.reshape(shape), dtype=dtype, device=device)
                H = torch.autograd.functional.hessian(lambda v: objective(v.reshape(shape)), W.reshape(-1))
                H = H.detach().cpu().numpy()
            step = np.linalg.lstsq(H, g, rcond=1e-12)[0]
            w = w - step
        _, g = value_and_grad(w)
        return w, float(np.abs(g).max())

    x = W0.detach().cpu().numpy().ravel()
    for _ in range(max_restarts + 1):
        result = _bfgs(value_and_grad, x, gtol, max_iter)
        if not np.isfinite(result.fun):
            raise ValueError("the loss became non-finite during the minimisation")
        x = result.x
        if result.success:
            break
        if result.status == 2:  # precision loss: the line search cannot resolve the decrease
            polished, largest = newton_polish(x)
            if largest <= gtol and np.isfinite(largest):
                x = polished
                break
        x = x / np.linalg.norm(x)  # scale-invariant loss: restart at unit norm
    else:
        raise ValueError(
            f"BFGS did not converge to gtol={gtol:g} after {max_restarts} restarts ({result.message}; largest "
            f"gradient entry {np.abs(result.jac).max():.2e}); increase gtol or max_restarts"
        )
    x = x / np.linalg.norm(x)
    return torch.as_tensor(x.reshape(shape), dtype=dtype, device=device)


_UNCHECKED.update({population_loss: _population_loss, first_order_loss: _first_order_loss})
_NUMPY_VALUE_GRAD: dict[Callable[..., torch.Tensor], Callable[..., Any]] = {
    population_loss: _population_value_grad_M, first_order_loss: _first_order_value_grad_M}


def projector_family(mu: torch.Tensor, eta: float) -> torch.Tensor:
    r"""The projector :math:`W_\eta=I_p+\eta\,\mu\mu^\top/\|\mu\|^2` (Gui, Ma & Zhong 2023, poster, "Effect of projectors").

    :math:`\eta>0` expands the signal direction, :math:`-1<\eta<0` shrinks it;
    :math:`\tilde t(W_\eta)=(1+\eta)^2/(p-1+(1+\eta)^2)`.

    Args:
        mu: ``(p,)`` non-zero mean.
        eta: real number > -1.

    Returns a ``(p, p)`` tensor with ``mu``'s dtype and device.

    Raises:
        ValueError: if ``mu`` is not a non-zero finite vector or ``eta <= -1``.
    """
    check_shape("mu", mu, (None,))
    _check_mu(mu)
    eta = float(eta)
    if not math.isfinite(eta) or eta <= -1:
        raise ValueError(f"eta must be finite and > -1, got {eta}")
    eye = torch.eye(mu.numel(), dtype=mu.dtype, device=mu.device)
    return eye + eta * torch.outer(mu, mu) / mu.pow(2).sum()


def projector_parameter(t_tilde: float, p: int) -> float:
    r"""The :math:`\eta` of the family :func:`projector_family` with expansion measure ``t_tilde``.

    Inverts :math:`\tilde t(W_\eta)=(1+\eta)^2/(p-1+(1+\eta)^2)`:
    :math:`\eta=\sqrt{(p-1)\tilde t/(1-\tilde t)}-1` (:math:`\eta=\infty` at :math:`\tilde t=1`,
    the rank-one limit of the family).

    Args:
        t_tilde: expansion measure in :math:`(0, 1]`.
        p: dimension, an integer >= 2.

    Raises:
        ValueError: if ``t_tilde`` is outside (0, 1] or ``p`` is not an integer >= 2.
    """
    t = check_positive("t_tilde", t_tilde)
    if t > 1:
        raise ValueError(f"t_tilde must be in (0, 1], got {t}")
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 2:
        raise ValueError(f"p must be an integer >= 2, got {p!r}")
    return math.inf if t == 1 else math.sqrt((p - 1) * t / (1 - t)) - 1


def ridge_logistic_regression(
    z: torch.Tensor, y: torch.Tensor, lam: float, *, intercept: bool = True, tol: float = 1e-12,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Minimiser of the ridge-regularised logistic loss of Gui, Ma & Zhong (2023), poster Proposition:

    .. math::
        \ell_n(\gamma,\beta;\lambda)=\frac1n\sum_{i=1}^n\log\big(1+e^{-y_i(\gamma+z_i^\top\beta)}\big)
        +\lambda\|\beta\|^2

    (intercept :math:`\gamma` unpenalised), by Newton's method on the strictly convex objective,
    batched over leading dimensions. With ``intercept=False`` the intercept is held at
    :math:`\gamma=0` (the Bayes rule's intercept in the symmetric mixture).

    Args:
        z: ``(..., n, d)`` features.
        y: ``(..., n)`` labels in :math:`\{-1,+1\}`.
        lam: :math:`\lambda>0`.
        intercept: fit :math:`\gamma` (``True``) or hold it at 0.
        tol: stop when the Newton decrement (squared) is below ``tol`` for every problem.
        max_iter: maximum Newton steps.

    Returns ``(gamma, beta)`` of shapes ``(...)`` and ``(..., d)``.

    Raises:
        ValueError: for mismatched shapes, labels outside {-1, +1}, non-finite ``z``, ``lam <= 0``,
            or if Newton's method does not converge within ``max_iter`` steps.
    """
    if not isinstance(z, torch.Tensor) or z.dim() < 2:
        raise ValueError(f"z must be a tensor of shape (..., n, d), got {getattr(z, 'shape', type(z))}")
    check_finite("z", z)
    check_shape("y", y, tuple(z.shape[:-1]))
    if not ((y == 1) | (y == -1)).all():
        raise ValueError("y must hold labels in {-1, +1}")
    lam = check_positive("lam", lam)
    n, d = z.shape[-2:]
    # intercept first; without it a zero column with a penalty keeps theta[0] = 0 and H invertible
    first = torch.ones_like(z[..., :1]) if intercept else torch.zeros_like(z[..., :1])
    X = torch.cat([first, z], dim=-1)  # (..., n, d+1)
    yy = y.to(z.dtype)
    theta = torch.zeros(*z.shape[:-2], d + 1, dtype=z.dtype, device=z.device)
    pen = torch.full((d + 1,), 2 * lam, dtype=z.dtype, device=z.device)
    pen[0] = 0.0 if intercept else 1.0
    Xt = X.transpose(-2, -1)
    for _ in range(max_iter):
        # three passes over X per step: X theta, X^T (y sigma) and X^T diag(w) X
        margin = yy * (X @ theta.unsqueeze(-1)).squeeze(-1)
        sig = torch.sigmoid(-margin)  # derivative of log(1+e^{-m}) is -sigmoid(-m)
        grad = -(Xt @ (yy * sig).unsqueeze(-1)).squeeze(-1) / n + pen * theta
        weight = sig * (1 - sig)
        hess = (Xt * weight.unsqueeze(-2)) @ X / n + torch.diag(pen)
        step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
        theta = theta - step
        if float((grad * step).sum(-1).max()) < tol:
            return theta[..., 0], theta[..., 1:]
    raise ValueError(f"Newton's method did not converge in max_iter={max_iter} steps; increase max_iter")


def linear_classifier_error(
    gamma: torch.Tensor | float, beta: torch.Tensor, mu: torch.Tensor, W: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Exact test error of :math:`\hat y=\operatorname{sign}(\gamma+\langle z,\beta\rangle)` on :math:`z=Wh`.

    With :math:`h=y\mu+g`, :math:`g\sim\mathcal N(0,I_p)`, :math:`y=\pm1` equally likely,
    :math:`m=\langle W\mu,\beta\rangle` and :math:`r=\|W^\top\beta\|`,

    .. math::
        \mathrm{Err}=\mathbb P\big(y(\gamma+\langle z,\beta\rangle)<0\big)
        =\tfrac12\Phi\Big(-\frac{m+\gamma}{r}\Big)+\tfrac12\Phi\Big(-\frac{m-\gamma}{r}\Big).

    (The poster writes :math:`\mathbb P(\gamma+y'\langle z',\beta\rangle<0)`; we read the intercept as
    multiplied by the label too, the classification error.) Its minimum over :math:`(\gamma,\beta)` is
    the Bayes error :math:`\Phi(-\|\mu\|)` for every invertible :math:`W`.

    Args:
        gamma: intercept(s), float or tensor of shape ``(...)``.
        beta: ``(..., q)`` weights, non-zero.
        mu: ``(p,)`` mean.
        W: ``(q, p)`` projector; ``None`` means the identity.

    Raises:
        ValueError: for mismatched shapes, non-finite values or ``beta = 0``.
    """
    check_shape("mu", mu, (None,))
    _check_mu(mu)
    if W is None:
        W = torch.eye(mu.numel(), dtype=mu.dtype, device=mu.device)
    check_matrix("W", W)
    if W.shape[1] != mu.numel():
        raise ValueError(f"W must have {mu.numel()} columns, got shape {tuple(W.shape)}")
    if not isinstance(beta, torch.Tensor) or beta.shape[-1:] != W.shape[:1]:
        raise ValueError(f"beta must have shape (..., {W.shape[0]}), got {getattr(beta, 'shape', type(beta))}")
    check_finite("beta", beta)
    r = (beta @ W).norm(dim=-1)
    if (r == 0).any():
        raise ValueError("beta must satisfy W^T beta != 0")
    gamma = as_tensor(gamma, dtype=beta.dtype, device=beta.device)
    check_finite("gamma", gamma)
    m = beta @ (W @ mu)
    normal = torch.distributions.Normal(torch.zeros((), dtype=beta.dtype, device=beta.device), 1.0)
    return 0.5 * normal.cdf(-(m + gamma) / r) + 0.5 * normal.cdf(-(m - gamma) / r)


def max_margin_classifier(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor | None, float]:
    r"""Hard-margin classifier through the origin of Gui, Ma & Zhong (2023), poster Theorem 2:

    .. math:: \hat\beta=\arg\max_{\|\beta\|\le1}\min_{i\le n}y_i\langle z_i,\beta\rangle,\qquad
              \hat\kappa=\min_i y_i\langle z_i,\hat\beta\rangle.

    Solved exactly as the least-distance programme :math:`\min\|w\|` s.t. :math:`y_iz_i^\top w\ge1`
    through non-negative least squares (Lawson & Hanson 1974, ch. 23):
    :math:`\hat\beta=w/\|w\|`, :math:`\hat\kappa=1/\|w\|`.

    Args:
        z: ``(n, d)`` features; y: ``(n,)`` labels in {-1, +1}.

    Returns ``(beta_hat, kappa_hat)``, or ``(None, 0.0)`` when the data are not linearly separable
    through the origin.

    Raises:
        ValueError: for mismatched shapes, non-finite ``z`` or labels outside {-1, +1}.
    """
    check_matrix("z", z)
    check_shape("y", y, (z.shape[0],))
    # numpy from here on: the solve is scipy's, and a few small torch ops per call cost more
    # than the solve itself when the book calls this thousands of times (Wendel's check)
    z_np, y_np = z.detach().cpu().numpy(), y.detach().cpu().numpy()
    if not np.all((y_np == 1) | (y_np == -1)):
        raise ValueError("y must hold labels in {-1, +1}")
    G = y_np.astype(z_np.dtype)[:, None] * z_np  # constraints G w >= 1
    n, d = G.shape
    E = np.empty((d + 1, n), dtype=G.dtype)
    E[:d], E[d] = G.T, 1.0
    f = np.zeros(d + 1)
    f[-1] = 1.0
    from scipy.optimize import nnls

    u, _ = nnls(E, f, maxiter=50 * (n + d))
    r = E @ u - f
    if abs(r[-1]) < 1e-10:
        return None, 0.0
    w = -r[:d] / r[-1]
    if (G @ w).min() < 1 - 1e-8:
        return None, 0.0
    norm = float(np.linalg.norm(w))
    return torch.as_tensor(w / norm, dtype=z.dtype, device=z.device), 1.0 / norm



class MaxMarginLimit(NamedTuple):
    """Asymptotic max-margin quantities (see :func:`max_margin_asymptotics`)."""

    kappa: float  # limit of the margin kappa-hat
    error: float  # limit of the test error Err(beta-hat)
    alpha: float  # limit of <W beta-hat, mu/|mu|>
    r: float  # limit of |P_perp W beta-hat|


def _positive_part_second_moment(a: float, b: float) -> float:
    r""":math:`\mathbb E[(a+bZ)_+^2]=(a^2+b^2)\Phi(a/b)+ab\,\varphi(a/b)`, :math:`Z\sim\mathcal N(0,1)`, :math:`b>0`."""
    x = a / b
    return (a * a + b * b) * float(ndtr(x)) + a * b * math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _margin_at(alpha: float, r: float, delta: float, m: float) -> float:
    """Largest kappa with delta * E[(kappa - alpha m + sqrt(alpha^2 + r^2) Z)_+^2] <= r^2 (-inf if none >= 0)."""
    b = math.hypot(alpha, r)
    gap = lambda kappa: delta * _positive_part_second_moment(kappa - alpha * m, b) - r * r  # noqa: E731
    if gap(0.0) >= 0:
        return -math.inf
    hi = 1.0
    while gap(hi) < 0:
        hi *= 2
    from scipy.optimize import brentq

    return brentq(gap, 0.0, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)


def max_margin_asymptotics(delta: float, mu_norm2: float, eta: float) -> MaxMarginLimit:
    r"""Proportional-limit margin and test error of the max-margin classifier on :math:`z=W_\eta h`.

    *The book's derivation* (Gordon's comparison inequality, as in the CGMT analyses of max-margin
    classifiers on Gaussian mixtures); Gui, Ma & Zhong's poster (Theorem 2) states that the limits
    exist but prints no formula. With :math:`n/p\to\delta`, :math:`m=\|\mu\|`, and
    :math:`W_\eta\hat\beta` written as :math:`\alpha\,\mu/m` plus a perpendicular part of norm
    :math:`r`, the constraint :math:`\|\hat\beta\|\le1` reads :math:`\alpha^2/(1+\eta)^2+r^2\le1` and

    .. math::
        \kappa^*=\max_{\alpha^2/(1+\eta)^2+r^2\le1}\kappa(\alpha,r),\qquad
        \delta\,\mathbb E\big[(\kappa-\alpha m+\sqrt{\alpha^2+r^2}\,Z)_+^2\big]=r^2,

        \mathrm{Err}^*=\Phi\Big(-\frac{m\,\alpha^*}{\sqrt{\alpha^{*2}+r^{*2}}}\Big),

    maximised over the boundary :math:`\alpha=(1+\eta)\cos\theta`, :math:`r=\sin\theta` (Brent's
    method in :math:`\theta`, inner root by Brent's method). ``eta = inf`` is the rank-one limit
    (:math:`\alpha` free, :math:`r\le1`).

    Args:
        delta: :math:`n/p>0`, below :func:`separability_threshold` of ``mu_norm2``.
        mu_norm2: :math:`\|\mu\|^2>0`.
        eta: projector parameter > -1 (``math.inf`` allowed).

    Raises:
        ValueError: naming the argument for invalid input, and naming ``delta`` when the data are
            not separable in the limit (:math:`\delta\ge\delta^*`).
    """
    values = _scalar_params(delta=delta, mu_norm2=mu_norm2)
    delta, m = values["delta"], math.sqrt(values["mu_norm2"])
    eta = float(eta)
    if math.isnan(eta) or eta <= -1:
        raise ValueError(f"eta must be > -1, got {eta}")
    if delta >= separability_threshold(m * m):
        raise ValueError(f"delta = {delta} is at or above the separability threshold {separability_threshold(m * m):.6g}")
    if math.isinf(eta):  # r = 1, alpha free: theta parametrises alpha = tan(theta)
        point = lambda th: (math.tan(th), 1.0)  # noqa: E731
    else:
        point = lambda th: ((1 + eta) * math.cos(th), math.sin(th))  # noqa: E731

    def negative_margin(theta: float) -> float:
        kappa = _margin_at(*point(theta), delta, m)
        return -kappa if math.isfinite(kappa) else 1e300

    from scipy.optimize import minimize_scalar

    res = minimize_scalar(negative_margin, bounds=(1e-12, math.pi / 2 - 1e-12), method="bounded",
                          options={"xatol": 1e-12})
    alpha, r = point(float(res.x))
    return MaxMarginLimit(float(-res.fun), float(ndtr(-m * alpha / math.hypot(alpha, r))), alpha, r)


def separability_threshold(mu_norm2: float) -> float:
    r"""Proportional-limit separability threshold :math:`\delta^*(\|\mu\|^2)` (the book's derivation).

    The data :math:`\{(W_\eta h_i,y_i)\}_{i\le n}` are separable through the origin with probability
    tending to 1 if :math:`n/p\to\delta<\delta^*` and to 0 if :math:`\delta>\delta^*`, where
    (Gordon's comparison; independent of :math:`\eta`, since :math:`W_\eta` is invertible)

    .. math:: \frac1{\delta^*}=\min_{t\ge0}\,(1+t^2)\,\mathbb E\Big[\Big(Z-\frac{t\,\|\mu\|}{\sqrt{1+t^2}}\Big)_+^2\Big].

    :math:`\delta^*(0)=2` is Cover's capacity (Wendel's theorem).

    Args:
        mu_norm2: :math:`\|\mu\|^2\ge0`.

    Raises:
        ValueError: if ``mu_norm2`` is negative or not finite.
    """
    if isinstance(mu_norm2, bool):
        raise ValueError(f"mu_norm2 must be a real number, got {mu_norm2!r}")
    m2 = float(mu_norm2)
    if not math.isfinite(m2) or m2 < 0:
        raise ValueError(f"mu_norm2 must be finite and >= 0, got {mu_norm2!r}")
    m = math.sqrt(m2)
    h = lambda t: (1 + t * t) * _positive_part_second_moment(-t * m / math.sqrt(1 + t * t), 1.0)  # noqa: E731
    if m == 0:
        return 1 / h(0.0)
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(h, bounds=(0.0, 1e3), method="bounded", options={"xatol": 1e-12})
    return 1 / min(res.fun, h(0.0))
