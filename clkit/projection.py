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
from .optim import damped_newton
from .symbolic import is_symbolic

__all__ = [
    "tau_star",
    "expansion_measure",
    "population_loss",
    "first_order_loss",
    "second_order_loss",
    "second_order_threshold",
    "first_order_loss_profile",
    "first_order_optimum",
    "rank_one_derivative",
    "exact_threshold",
    "threshold_ratio_coefficient",
    "minimize_over_projector",
    "projector_family",
    "projector_parameter",
    "ridge_logistic_regression",
    "linear_classifier_error",
    "max_margin_classifier",
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

    Example:
        >>> round(tau_star(1.0, 4.0), 6)
        1.213652
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

    Example:
        >>> mu = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
        >>> float(expansion_measure(torch.eye(3, dtype=torch.float64), mu))  # 1/p
        0.3333333333333333
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

    Example:
        >>> mu = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
        >>> round(float(population_loss(torch.eye(3, dtype=torch.float64), mu, 1.0, 0.5)), 6)
        -0.630449
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

    Example:
        >>> mu = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
        >>> round(float(first_order_loss(torch.eye(3, dtype=torch.float64), mu, 1.0, 0.5)), 6)
        -1.109246
    """
    return _first_order_loss(*_loss_args(W, mu, sigma2, tau))


def _first_order_loss(W: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    _, a, b, s = _moments(W, mu, sigma2, tau)
    u = 2 * b / (tau * s)
    return -a / (tau * s) + torch.logaddexp(torch.zeros_like(u), -u) - _LOG2


def second_order_loss(
    W: torch.Tensor, mu: torch.Tensor, sigma2: float | torch.Tensor, tau: float | torch.Tensor
) -> torch.Tensor:
    r"""Consistent second-order surrogate :math:`\mathcal L_2(W)` (*the book's*, not the paper's).

    :func:`population_loss` expanded to second order in :math:`c=1/(2\tau s)` at fixed
    :math:`M=W^\top W` (every term of order :math:`c^2`, unlike :func:`first_order_loss`, which keeps
    :math:`2c^2b^2` and drops :math:`c^2K_0`):

    .. math::
        \mathcal L_2(W)=-2c(a+b)+c^2\big(2b^2+K_0\big),\qquad
        K_0=v^2\operatorname{tr}M^2+4v\,\mu^\top M^2\mu,

    :math:`a=\operatorname{tr}M`, :math:`b=\mu^\top M\mu`, :math:`s=(1+\sigma^2)a+b`,
    :math:`v=2(1+\sigma^2)`. Invariant under :math:`W\mapsto kW` (:math:`cM` is). Its rank-one
    threshold is :func:`second_order_threshold`.

    Shapes, arguments and errors as in :func:`population_loss`.

    Example:
        >>> mu = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
        >>> round(float(second_order_loss(torch.eye(3, dtype=torch.float64), mu, 1.0, 0.5)), 6)
        0.04
    """
    return _second_order_loss(*_loss_args(W, mu, sigma2, tau))


def _second_order_loss(W: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    M, a, b, s = _moments(W, mu, sigma2, tau)
    c = 1 / (2 * tau * s)
    v = 2 * (1 + sigma2)
    Mmu = (M @ mu.unsqueeze(-1)).squeeze(-1)
    K0 = v**2 * M.pow(2).sum((-2, -1)) + 4 * v * Mmu.pow(2).sum(-1)  # tr M^2 = ||M||_F^2
    return -2 * c * (a + b) + c**2 * (2 * b**2 + K0)


def second_order_threshold(sigma2: Any, mu_norm2: Any) -> Any:
    r"""Rank-one threshold :math:`\tau_2` of :func:`second_order_loss` (the book's derivation).

    .. math::
        \tau_2=\frac{w\,(\|\mu\|^4+4w\|\mu\|^2+2w^2)}{\sigma^2\|\mu\|^2\,(w+\|\mu\|^2)},
        \qquad w=1+\sigma^2 .

    Along :math:`M(T)=e_1e_1^\top+\tfrac{T}{p-1}P_\perp` (:math:`\mu=\|\mu\|e_1`) the slope of
    :math:`\mathcal L_2` at :math:`T=0` is
    :math:`g_2(\tau)=\sigma^2\|\mu\|^2/(\tau s^2)-w(2\|\mu\|^4+v^2+4v\|\mu\|^2)/(2\tau^2s^3)`
    (:math:`s=w+\|\mu\|^2`, :math:`v=2w`), negative below :math:`\tau_2` and positive above; it is
    also the leading root of the exact slope :func:`rank_one_derivative` expanded in :math:`c`.
    :math:`\tau_2>\tau^*` always (:math:`\tau_2/\tau^*\ge w\log(1+2\sigma^2)/(2\sigma^2)\ge1`).

    Args:
        sigma2, mu_norm2: > 0; floats, numpy arrays (broadcast) or SymPy expressions.

    Returns a float, an array or a SymPy expression.

    Raises:
        ValueError: naming the argument, if a numeric argument is not finite and > 0.

    Example:
        >>> round(second_order_threshold(1.0, 1.0), 6)
        11.333333
    """
    if is_symbolic(sigma2, mu_norm2):
        pass
    elif isinstance(sigma2, np.ndarray) or isinstance(mu_norm2, np.ndarray):
        sigma2, mu_norm2 = _positive_arrays(sigma2=sigma2, mu_norm2=mu_norm2)
    else:
        values = _scalar_params(sigma2=sigma2, mu_norm2=mu_norm2)
        sigma2, mu_norm2 = values["sigma2"], values["mu_norm2"]
    w = 1 + sigma2
    rho = mu_norm2
    return w * (rho**2 + 4 * w * rho + 2 * w**2) / (sigma2 * rho * (w + rho))


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


def _second_order_value_grad_M(M: np.ndarray, mu: np.ndarray, sigma2: float, tau: float):
    r""":math:`\mathcal L_2` (:func:`second_order_loss`) and :math:`\partial\mathcal L_2/\partial M` in float64 numpy."""
    a, b, s, ds, Mmu = _numpy_moments(M, mu, sigma2)
    v = 2 * (1 + sigma2)
    c = 1 / (2 * tau * s)
    B = float(Mmu @ Mmu)
    N = 2 * b**2 + v**2 * float(np.vdot(M, M)) + 4 * v * B
    value = -2 * c * (a + b) + c**2 * N
    dc = -(c / s) * ds
    dN = 4 * b * np.outer(mu, mu) + 2 * v**2 * M + 4 * v * (np.outer(mu, Mmu) + np.outer(Mmu, mu))
    grad = -2 * (a + b) * dc - 2 * c * (_eye(len(mu)) + np.outer(mu, mu)) + 2 * c * N * dc + c**2 * dN
    return value, grad


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

    Example:
        >>> round(float(first_order_loss_profile(4.0 / 3, 1.0, 0.5)), 6)  # = first_order_loss at W = I_3
        -1.109246
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

    Example:
        >>> round(first_order_optimum(1.0, 0.5, 4.0), 6)  # tau < tau*(1, 4): shrinkage
        0.757301
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
    :math:`k=1+2cv` and :math:`q=4c\|\mu\|^2/k`. For numbers the bracket is evaluated as
    :math:`2\sigma^2\|\mu\|^2-v\|\mu\|^2a(2+a)/k^2-vwa/k-v\|\mu\|^2\tanh(q/2)/k^2`,
    :math:`a=2cv` (the same value, without cancellation as :math:`c\to0`). It does not depend on :math:`p`, and every
    first-order PSD direction at the rank-one point changes :math:`\mathcal C` by this slope times
    the trace of its perpendicular block (see the book's chapter on projection heads). The root in
    :math:`\tau` is :func:`exact_threshold`.

    Args:
        tau, sigma2, mu_norm2: > 0; floats, numpy arrays (broadcast; then the result is an
            array) or SymPy expressions (then the result is one).

    Returns a float, an array, or a SymPy expression when an argument is symbolic.

    Raises:
        ValueError: naming the argument, if a numeric argument is not finite and > 0.

    Example:
        >>> round(rank_one_derivative(1.0, 1.0, 4.0), 6)  # tau < tau_e: g < 0
        -0.105951
    """
    if is_symbolic(tau, sigma2, mu_norm2):
        import sympy

        exp = sympy.exp
    elif any(isinstance(v, np.ndarray) for v in (tau, sigma2, mu_norm2)):
        tau, sigma2, mu_norm2 = _positive_arrays(tau=tau, sigma2=sigma2, mu_norm2=mu_norm2)
        exp, tanh = None, np.tanh
    else:
        values = _scalar_params(tau=tau, sigma2=sigma2, mu_norm2=mu_norm2)
        tau, sigma2, mu_norm2 = values["tau"], values["sigma2"], values["mu_norm2"]
        exp, tanh = None, math.tanh

    w = 1 + sigma2
    v = 2 * w
    s = w + mu_norm2
    c = 1 / (2 * tau * s)
    if exp is not None:  # SymPy: the formula as stated
        k = 1 + 2 * c * v
        q = 4 * c * mu_norm2 / k
        return c / s * (2 * sigma2 * mu_norm2 - v * (s - w / k) + 2 * v * mu_norm2 / (k**2 * (1 + exp(q))))
    # numbers: the same bracket without cancellation as c -> 0, with a = k - 1 = 2cv,
    # s - w/k = |mu|^2 + w a/k and 2/(1 + e^q) = 1 - tanh(q/2):
    # 2 sigma2 |mu|^2 - v|mu|^2 a(2 + a)/k^2 - v w a/k - v|mu|^2 tanh(q/2)/k^2
    a = 2 * c * v
    k = 1 + a
    q = 4 * c * mu_norm2 / k
    bracket = (2 * sigma2 * mu_norm2 - v * mu_norm2 * a * (2 + a) / k**2 - v * w * a / k
               - v * mu_norm2 * tanh(q / 2) / k**2)
    return c / s * bracket


def exact_threshold(sigma2: Any, mu_norm2: Any) -> Any:
    r"""The exact loss's rank-one threshold :math:`\tau_e(\sigma^2,\|\mu\|^2)` (the book's lemma).

    :math:`\tau_e` is the root in :math:`\tau` of :func:`rank_one_derivative`: for
    :math:`\tau>\tau_e` mass in the directions perpendicular to :math:`\mu` raises :math:`\mathcal C`
    at first order (the rank-one aligned projector satisfies the first-order optimality conditions),
    for :math:`\tau<\tau_e` it lowers it (the rank-one projector is not a local minimiser). It is
    the exact loss's analogue of the surrogate's :func:`tau_star`, and :math:`\tau_e/\tau^*\to1` as
    :math:`\|\mu\|^2\to\infty`.

    Found by Brent's method on :math:`\log\tau`, bracketed by doubling from :math:`\tau^*`; for
    numpy arrays (broadcast), every configuration at once: the same bracket, then bisection on
    :math:`\log\tau` until the brackets are 2 ulp wide. :func:`rank_one_derivative` evaluates its
    bracket without cancellation as :math:`c\to0`, so the root's accuracy is that of the sign of
    :math:`g` near it: against 60-digit mpmath roots, relative errors :math:`\le3\times10^{-15}`
    from :math:`(\sigma^2,\|\mu\|^2)=(10^{-6},10^{-3})` to :math:`(100,10^5)` (tests).

    Args:
        sigma2: augmentation variance > 0 (float or numpy array).
        mu_norm2: :math:`\|\mu\|^2>0` (float or numpy array).

    Returns a float, or an array of the broadcast shape.

    Raises:
        ValueError: naming the argument, if ``sigma2`` or ``mu_norm2`` is not finite and > 0.

    Example:
        >>> round(exact_threshold(1.0, 1.0), 6)
        9.518432
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
    from scipy.optimize import brentq

    return math.exp(brentq(slope, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


def threshold_ratio_coefficient(sigma2: Any) -> Any:
    r"""First-order coefficient :math:`\kappa(\sigma^2)` of :math:`\tau_e/\tau^*` at large :math:`\|\mu\|^2`.

    .. math::
        \frac{\tau_e}{\tau^*}=1+\frac{\kappa(\sigma^2)}{\|\mu\|^2}+O(\|\mu\|^{-4}),\qquad
        \kappa(\sigma^2)=(1+\sigma^2)\Big[\frac{4(1+\sigma^2)}{1+2\sigma^2}-\log(1+2\sigma^2)\Big]

    (the book's derivation: the root of :func:`rank_one_derivative` expanded in
    :math:`1/\|\mu\|^2`). :math:`\kappa` changes sign once, near :math:`\sigma^2\approx4.09`:
    for a larger augmentation variance and a strong signal :math:`\tau_e<\tau^*`.

    Args:
        sigma2: augmentation variance > 0: a float, a numpy array or a SymPy expression.

    Returns a float, an array, or a SymPy expression.

    Raises:
        ValueError: if a numeric ``sigma2`` is not finite and > 0.

    Example:
        >>> round(threshold_ratio_coefficient(1.0), 6)
        3.136109
    """
    if is_symbolic(sigma2):
        import sympy

        log = sympy.log
    elif isinstance(sigma2, np.ndarray):
        (sigma2,) = _positive_arrays(sigma2=sigma2)
        log = np.log
    else:
        sigma2 = _scalar_params(sigma2=sigma2)["sigma2"]
        log = math.log
    w = 1 + sigma2
    return w * (4 * w / (1 + 2 * sigma2) - log(1 + 2 * sigma2))


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


_LOSSES = ("population", "first_order", "second_order")
_GRADIENTS = ("closed_form", "autograd")
_NEWTON_STEPS = 30


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded (scipy's among them), made once."""
    import scipy.optimize  # noqa: F401  (loads scipy's BLAS before the controller looks)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _lbfgsb(value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
            gtol: float, max_iter: int) -> Any:
    """``scipy.optimize.minimize(method="L-BFGS-B")`` on a few dozen variables with one BLAS thread
    (OpenBLAS's thread pool costs more than the 9-variable linear algebra it parallelises)."""
    from scipy.optimize import minimize

    with _blas_controller().limit(limits=1, user_api="blas"):
        return minimize(value_and_grad, x0, jac=True, method="L-BFGS-B",
                        options={"gtol": gtol, "ftol": 0.0, "maxiter": max_iter})


_ESCAPE_STEP = 1e-2  # step out of a saddle along its negative-curvature eigenvector, x ||W||


def _gauge_complement(W: np.ndarray) -> np.ndarray:
    r"""Orthonormal basis (columns) of the complement of the gauge directions at ``W``.

    The loss depends on :math:`W` only through :math:`W^\top W`, so it is constant along
    :math:`W\mapsto e^{tA}W` for antisymmetric :math:`A` (``(q, q)``): the tangent directions
    :math:`AW` are zero-curvature directions of every stationary point and are removed before
    testing the curvature (their span has dimension :math:`q(q-1)/2` at full rank, less at a
    rank-deficient :math:`W`; it is found by an SVD with relative rank tolerance :math:`10^{-8}`).
    """
    q, n = W.shape[0], W.size
    tangents = []
    for i in range(q):
        for j in range(i + 1, q):
            A = np.zeros((q, q))
            A[i, j], A[j, i] = 1.0, -1.0
            tangents.append((A @ W).ravel())
    if not tangents:
        return np.eye(n)
    U, sv, _ = np.linalg.svd(np.stack(tangents, 1), full_matrices=True)
    rank = int((sv > 1e-8 * max(float(sv[0]), np.finfo(float).tiny)).sum())
    return U[:, rank:]


def _lowest_curvature(H: np.ndarray, W: np.ndarray) -> tuple[float, np.ndarray]:
    """Smallest eigenvalue of the Hessian ``H`` (of F in vec(W)) off the gauge directions at ``W``,
    and its unit eigenvector in vec(W) coordinates."""
    N = _gauge_complement(W)
    evals, evecs = np.linalg.eigh(N.T @ (0.5 * (H + H.T)) @ N)
    return float(evals[0]), N @ evecs[:, 0]


def minimize_over_projector(
    loss: str,
    mu: torch.Tensor,
    sigma2: float,
    tau: float,
    W0: torch.Tensor,
    *,
    gradient: str = "closed_form",
    gtol: float = 1e-12,
    max_iter: int = 5000,
    max_restarts: int = 5,
    htol: float = 1e-7,
) -> torch.Tensor:
    r"""A minimiser :math:`\hat W` of :math:`\mathcal C` or :math:`\widetilde{\mathcal L}` over all ``(q, p)`` matrices.

    Minimises, over the :math:`qp` entries of :math:`W`,

    .. math:: F(W)=\mathcal L(W,\mu,\sigma^2,\tau)+\big(\|W\|_F^2-1\big)^2,

    with :math:`\mathcal L` = :func:`population_loss` (``loss="population"``),
    :func:`first_order_loss` (``loss="first_order"``) or :func:`second_order_loss`
    (``loss="second_order"``). All are invariant under :math:`W\mapsto kW`,
    so the radial term only fixes the scale (it vanishes on the unit sphere): the minimisers of
    :math:`F` are those of :math:`\mathcal L` with :math:`\|W\|_F=1`, and only scale-free functions
    of :math:`\hat W` (such as :func:`expansion_measure`) are meaningful.

    Method: scipy's L-BFGS-B from ``W0`` (stopping on ``gtol``, the largest gradient entry, not
    on a small relative decrease of :math:`F`); if it stops above ``gtol`` (its line search cannot
    resolve decreases below round-off), Newton steps on the gradient,
    :math:`w\leftarrow w-s\,|H|^{-1}\nabla F(w)` (:math:`|H|` has the absolute eigenvalues of
    :math:`H`, clamped at :math:`10^{-12}` of the largest, since :math:`H` is singular along
    :math:`W\mapsto QW`; :func:`clkit.optim.damped_newton`), then L-BFGS-B again from the point
    reached, up to ``max_restarts`` times, until the largest entry of :math:`\nabla F` is below
    ``gtol``. A zero gradient does not make a minimiser: the aligned rank-one :math:`W` is an
    exact stationary point at every :math:`\tau` (:math:`\nabla F=2WG=0`), a saddle below
    :math:`\tau_e`, and neither method leaves an exact stationary point. So the point found is
    then tested at second order: the smallest eigenvalue :math:`\lambda_{\min}` of the Hessian of
    :math:`F` restricted to the complement of the gauge directions :math:`AW` (:math:`A`
    antisymmetric, along which :math:`\mathcal L` is constant) must be :math:`\ge-`\ ``htol``;
    otherwise the search restarts from :math:`w\pm10^{-2}\|w\|\,v` (:math:`v` its eigenvector,
    the sign with the lower :math:`F`) and the new stationary point must have a lower :math:`F`.
    A point with :math:`-`\ ``htol`` :math:`\le\lambda_{\min}<0` (a degenerate stationary point,
    e.g. the rank-one :math:`W` at :math:`\tau\approx\tau_e`) is accepted.

    Args:
        loss: ``"population"``, ``"first_order"`` or ``"second_order"`` (:func:`second_order_loss`).
        mu: ``(p,)`` mean; sigma2, tau: > 0.
        W0: ``(q, p)`` non-zero starting point (its dtype and device are the result's).
        gradient: ``"closed_form"`` (float64 numpy: the chain rule through :math:`M=W^\top W`,
            :math:`\nabla_W=2W\,\partial\mathcal L/\partial M`; Hessian by central differences of
            it) or ``"autograd"`` (torch in ``W0``'s dtype, autograd's Hessian).
        gtol: tolerance on the largest entry of :math:`\nabla F`, > 0.
        max_iter: L-BFGS-B iteration limit per start.
        max_restarts: restarts allowed after a stop above ``gtol``, and escapes allowed from
            saddles.
        htol: tolerance of the second-order test, > 0 (the Hessian is exact for
            ``"autograd"`` and a central difference with error ~1e-10 for ``"closed_form"``).

    Returns the ``(q, p)`` minimiser with :math:`\|\hat W\|_F=1`.

    Raises:
        ValueError: naming the argument for invalid ``loss``, ``gradient``, ``W0``, ``mu``,
            ``sigma2``, ``tau``, ``gtol`` or ``htol``; if the loss becomes non-finite; if the
            gradient is still above ``gtol`` after ``max_restarts`` restarts; or if the point
            is still a saddle after ``max_restarts + 1`` escapes.

    Example:
        >>> mu = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
        >>> W = minimize_over_projector("first_order", mu, 1.0, 2 * tau_star(1.0, 4.0),
        ...                             torch.eye(3, dtype=torch.float64) + 0.1)
        >>> round(float(expansion_measure(W, mu)), 8)  # expansion regime: rank one along mu
        1.0
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
    if gradient not in _GRADIENTS:
        raise ValueError(f"gradient must be one of {_GRADIENTS}, got {gradient!r}")
    W0 = _check_W(W0)
    if W0.dim() != 2:
        raise ValueError(f"W0 must be one (q, p) matrix, got shape {tuple(W0.shape)}")
    gtol = check_positive("gtol", gtol)
    htol = check_positive("htol", htol)
    shape, dtype, device = W0.shape, W0.dtype, W0.device
    _, mu_t, s2_t, tau_t = _loss_args(W0, mu, sigma2, tau)

    if gradient == "closed_form":
        # looked up at call time, so that a replaced module attribute (a planted error) is used
        value_grad_M = {"population": _population_value_grad_M, "first_order": _first_order_value_grad_M,
                        "second_order": _second_order_value_grad_M}[loss]
        mu_np = mu_t.detach().cpu().numpy().astype(np.float64)
        s2_np, tau_np = float(s2_t), float(tau_t)

        def value_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            W_np = w.reshape(shape)
            value, grad_M = value_grad_M(W_np.T @ W_np, mu_np, s2_np, tau_np)
            radial = float(w @ w) - 1
            return value + radial**2, (2 * W_np @ grad_M + 4 * radial * W_np).ravel()

        def hessian(w: np.ndarray) -> np.ndarray:
            # central differences of the exact gradient, step 1e-5 at ||W|| ~ 1 (truncation
            # ~1e-10, round-off ~1e-11): an inexact H slows the polish, acceptance is by the gradient
            h = 1e-5 * max(1.0, float(np.linalg.norm(w)))
            H = np.stack([value_and_grad(w + e)[1] - value_and_grad(w - e)[1]
                          for e in np.eye(w.size) * h], 1) / (2 * h)
            return 0.5 * (H + H.T)
    else:
        torch_loss = {"population": population_loss, "first_order": first_order_loss,
                      "second_order": second_order_loss}[loss]

        def objective(v: torch.Tensor) -> torch.Tensor:
            W = v.reshape(shape)
            return torch_loss(W, mu_t, s2_t, tau_t) + (W.pow(2).sum() - 1) ** 2

        def value_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            v = torch.tensor(w, dtype=dtype, device=device, requires_grad=True)
            value = objective(v)
            (grad,) = torch.autograd.grad(value, v)
            return float(value.detach()), grad.detach().cpu().numpy().astype(np.float64)

        def hessian(w: np.ndarray) -> np.ndarray:
            v = torch.tensor(w, dtype=dtype, device=device)
            return torch.autograd.functional.hessian(objective, v).detach().cpu().numpy()

    def newton_polish(w: np.ndarray) -> tuple[np.ndarray, float]:
        # saddle-free Newton (|H|: steps downhill where H is indefinite, but it cannot leave an
        # exact stationary point: the second-order test below does that); H's near-zero
        # eigenvalues along W -> QW are clamped, the gradient has no part there
        def vgh(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x_np = x.numpy()
            f, g = value_and_grad(x_np)
            return (torch.tensor(f, dtype=torch.float64), torch.from_numpy(g),
                    torch.from_numpy(hessian(x_np)))

        def value_only(x: torch.Tensor) -> torch.Tensor:
            return torch.tensor(value_and_grad(x.numpy())[0], dtype=torch.float64)

        result = damped_newton(vgh, torch.from_numpy(w), grad_tol=gtol, max_iter=_NEWTON_STEPS,
                               value=value_only, saddle_free=True, norm_ord=math.inf,
                               strict=False)
        return result.x.numpy(), float(result.grad_norm)

    def stationary_point(x: np.ndarray) -> np.ndarray:
        # L-BFGS-B, then saddle-free Newton polish and a restart while the gradient is above gtol
        for _ in range(max_restarts + 1):
            result = _lbfgsb(value_and_grad, x, gtol, max_iter)
            if not np.isfinite(result.fun):
                raise ValueError("the loss became non-finite during the minimisation")
            x, largest = result.x, float(np.abs(result.jac).max())
            if largest <= gtol:
                return x
            x, largest = newton_polish(x)
            if not np.isfinite(largest):
                raise ValueError("the loss became non-finite during the minimisation")
            if largest <= gtol:
                return x
            x = x / np.linalg.norm(x)  # scale-invariant loss: restart at unit norm
        raise ValueError(
            f"no point with gradient below gtol={gtol:g} after {max_restarts} restarts (largest "
            f"gradient entry {largest:.2e}); increase gtol or max_restarts"
        )

    x = stationary_point(W0.detach().cpu().numpy().astype(np.float64).ravel())
    for _ in range(max_restarts + 1):
        # second-order test: a stationary point with negative curvature off the gauge
        # directions W -> QW is a saddle (e.g. the aligned rank-one W below tau_e)
        lowest, direction = _lowest_curvature(hessian(x), x.reshape(shape))
        if lowest >= -htol:
            break
        f_here = value_and_grad(x)[0]
        step = _ESCAPE_STEP * float(np.linalg.norm(x))
        start = min((x + step * direction, x - step * direction),
                    key=lambda y: value_and_grad(y)[0])
        x_new = stationary_point(start)
        if not value_and_grad(x_new)[0] < f_here:
            raise ValueError(
                f"stationary point with Hessian eigenvalue {lowest:.2e} < -htol that "
                "re-minimisation along its eigenvector could not leave; increase htol")
        x = x_new
    else:
        raise ValueError(
            f"still at a saddle (Hessian eigenvalue {lowest:.2e}) after {max_restarts + 1} "
            "escapes; increase max_restarts")
    return torch.as_tensor((x / np.linalg.norm(x)).reshape(shape), dtype=dtype, device=device)


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

    Example:
        >>> projector_family(torch.tensor([2.0, 0.0], dtype=torch.float64), 1.0)
        tensor([[2., 0.],
                [0., 1.]], dtype=torch.float64)
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

    Example:
        >>> round(projector_parameter(0.5, 3), 6)  # sqrt(2) - 1
        0.414214
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

    Example:
        >>> mu = torch.tensor([2.0, 0.0], dtype=torch.float64)
        >>> round(float(linear_classifier_error(0.0, mu, mu)), 6)  # the Bayes error Phi(-2)
        0.02275
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
    # numpy from here on: the solve is scipy's
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

    Example:
        >>> round(max_margin_asymptotics(0.5, 1.0, 0.0).kappa, 6)
        1.288276
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

    Example:
        >>> separability_threshold(0.0)  # Cover's capacity
        2.0
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
