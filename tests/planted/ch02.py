"""Planted errors of chapter 02_projection_heads (projection heads): kept by that chapter's author."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

from planted_errors import PlantedError, scaled, shifted  # noqa: F401

def _rank_one_slope_without_last_term(original: Callable[..., Any]) -> Callable[..., Any]:
    """g(tau) of the exact-threshold lemma with the term 2v|mu|^2/(k^2(1 + e^q)) dropped."""

    @functools.wraps(original)
    def wrong(tau: Any, sigma2: Any, mu_norm2: Any) -> Any:
        import math

        import sympy

        import numpy as np

        symbolic = any(isinstance(x, sympy.Basic) for x in (tau, sigma2, mu_norm2))
        arrays = any(isinstance(x, np.ndarray) for x in (tau, sigma2, mu_norm2))
        exp = sympy.exp if symbolic else (lambda x: np.exp(np.minimum(x, 700.0))) if arrays else math.exp
        w = 1 + sigma2
        s = w + mu_norm2
        c = 1 / (2 * tau * s)
        k = 1 + 2 * c * 2 * w
        q = 4 * c * mu_norm2 / k
        return original(tau, sigma2, mu_norm2) - c / s * 2 * 2 * w * mu_norm2 / (k**2 * (1 + exp(q)))

    return wrong


def _margin_without_alpha_noise(original: Callable[..., Any]) -> Callable[..., Any]:
    """Max-margin limit with the noise of the signal coordinate dropped: sqrt(alpha^2 + r^2) -> r."""

    @functools.wraps(original)
    def wrong(alpha: float, r: float, delta: float, m: float) -> float:
        import math

        from scipy.optimize import brentq

        from clkit.projection import _positive_part_second_moment

        gap = lambda kappa: delta * _positive_part_second_moment(kappa - alpha * m, r) - r * r  # noqa: E731
        if gap(0.0) >= 0:
            return -math.inf
        hi = 1.0
        while gap(hi) < 0:
            hi *= 2
        return brentq(gap, 0.0, hi, xtol=1e-15)

    return wrong


def _logdet_coefficient_one(original: Callable[..., Any]) -> Callable[..., Any]:
    """Closed form of C with -log det(I + 2cvM) instead of -1/2 log det(I + 2cvM)."""

    @functools.wraps(original)
    def wrong(W: Any, mu: Any, sigma2: Any, tau: Any) -> Any:
        import torch

        M = W.transpose(-2, -1) @ W
        a = torch.diagonal(M, dim1=-2, dim2=-1).sum(-1)
        b = (mu @ M @ mu) if M.dim() == 2 else (mu.unsqueeze(-2) @ M @ mu.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        s = (1 + sigma2) * a + b
        c = 1 / (2 * tau * s)
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        A = eye + (2 * c * 2 * (1 + sigma2))[..., None, None] * M
        return original(W, mu, sigma2, tau) - 0.5 * torch.logdet(A)

    return wrong


def _numpy_route_logdet_coefficient(original: Callable[..., Any]) -> Callable[..., Any]:
    """The closed-form numpy value and gradient in M (minimize_over_projector's route) with
    -0.55 log det(I + 2cvM) instead of -1/2 log det(I + 2cvM): a consistent wrong loss, so the
    search converges, to the wrong minimiser."""

    @functools.wraps(original)
    def wrong(M: Any, mu: Any, sigma2: float, tau: float) -> Any:
        import numpy as np

        value, grad = original(M, mu, sigma2, tau)
        a, b = float(np.trace(M)), float(mu @ M @ mu)
        s = (1 + sigma2) * a + b
        ds = (1 + sigma2) * np.eye(len(mu)) + np.outer(mu, mu)
        k = 2 * (1 + sigma2) / (tau * s)
        A = np.eye(len(mu)) + k * M
        A_inv = np.linalg.inv(A)
        dk = -(k / s) * ds
        logdet = float(np.linalg.slogdet(A)[1])
        return value - 0.05 * logdet, grad - 0.05 * (k * A_inv + float(np.vdot(A_inv, M)) * dk)

    return wrong


def _delta_inverted(original: Callable[..., Any]) -> Callable[..., Any]:
    """Max-margin limits with 1/delta written for delta (identical at delta = 1)."""

    @functools.wraps(original)
    def wrong(delta: float, mu_norm2: float, eta: float) -> Any:
        return original(1 / delta, mu_norm2, eta)

    return wrong


def _no_second_order_test(original: Callable[..., Any]) -> Callable[..., Any]:
    """minimize_over_projector's second-order test switched off: every stationary point passes."""

    @functools.wraps(original)
    def wrong(H: Any, W: Any) -> Any:
        _, direction = original(H, W)
        return 0.0, direction

    return wrong


def _tau2_without_K0(original: Callable[..., Any]) -> Callable[..., Any]:
    """tau_2 of the second-order surrogate with c^2 K_0 dropped (only L~'s 2c^2 b^2 kept):
    w |mu|^2 / (sigma2 (w + |mu|^2)) instead of w (|mu|^4 + 4w|mu|^2 + 2w^2) / (sigma2 |mu|^2 (w + |mu|^2))."""

    @functools.wraps(original)
    def wrong(sigma2: Any, mu_norm2: Any) -> Any:
        value = original(sigma2, mu_norm2)  # validates the arguments
        w = 1 + sigma2
        return value * mu_norm2**2 / (mu_norm2**2 + 4 * w * mu_norm2 + 2 * w**2)

    return wrong


def _tau2_coefficient(original: Callable[..., Any]) -> Callable[..., Any]:
    """tau_2 with 2w|mu|^2 for 4w|mu|^2 in the bracket (K_0's cross term 4v mu^T M^2 mu halved)."""

    @functools.wraps(original)
    def wrong(sigma2: Any, mu_norm2: Any) -> Any:
        value = original(sigma2, mu_norm2)
        w = 1 + sigma2
        rho = mu_norm2
        return value * (rho**2 + 2 * w * rho + 2 * w**2) / (rho**2 + 4 * w * rho + 2 * w**2)

    return wrong


def _second_order_loss_without_K0(original: Callable[..., Any]) -> Callable[..., Any]:
    """The second-order surrogate's torch loss without c^2 K_0 (the first-order surrogate's truncation)."""

    @functools.wraps(original)
    def wrong(W: Any, mu: Any, sigma2: Any, tau: Any) -> Any:
        M = W.transpose(-2, -1) @ W
        a = M.diagonal(dim1=-2, dim2=-1).sum(-1)
        b = (mu.unsqueeze(-2) @ M @ mu.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        s = (1 + sigma2) * a + b
        c = 1 / (2 * tau * s)
        return -2 * c * (a + b) + 2 * c**2 * b**2

    return wrong


def _projector_parameter_p(original: Callable[..., Any]) -> Callable[..., Any]:
    """eta of W_eta from t~ with p for p - 1: sqrt(p t/(1 - t)) - 1."""

    @functools.wraps(original)
    def wrong(t_tilde: float, p: int) -> float:
        return original(t_tilde, p + 1)

    return wrong


PLANTED: list[PlantedError] = [
    PlantedError(id="02-tau-star-2pct", chapter="02_projection_heads", target="clkit.projection.tau_star",
                 description="tau* 2 % too large (reaches the SymPy step u(|mu|^2) = log(1 + 2 sigma2) at tau*)",
                 make=scaled(1.02)),
    PlantedError(id="02-exact-threshold-1pct", chapter="02_projection_heads",
                 target="clkit.projection.exact_threshold", description="tau_e 1 % too large",
                 make=scaled(1.01)),
    PlantedError(id="02-rank-one-slope-dropped-term", chapter="02_projection_heads",
                 target="clkit.projection.rank_one_derivative",
                 description="slope g(tau) of the lemma without its last term (the negative pairs' mixture term)",
                 make=_rank_one_slope_without_last_term),
    PlantedError(id="02-max-margin-dropped-noise", chapter="02_projection_heads",
                 target="clkit.projection._margin_at",
                 description="max-margin limit with sqrt(alpha^2 + r^2) Z replaced by r Z (signal noise dropped)",
                 make=_margin_without_alpha_noise),
    PlantedError(id="02-logdet-factor-2", chapter="02_projection_heads",
                 target="clkit.projection.population_loss",
                 description="closed form of C with the log-determinant's coefficient 1 instead of 1/2",
                 make=_logdet_coefficient_one),
    PlantedError(id="02-exact-threshold-array-1pct", chapter="02_projection_heads",
                 target="clkit.projection._exact_threshold_array",
                 description="tau_e 1 % too large on the array path only (the map), the scalar path intact",
                 make=scaled(1.01)),
    PlantedError(id="02-x-star-1pct", chapter="02_projection_heads",
                 target="clkit.projection.first_order_optimum",
                 description="surrogate optimum x* 1 % too large", make=scaled(1.01)),
    PlantedError(id="02-numpy-route-logdet-10pct", chapter="02_projection_heads",
                 target="clkit.projection._population_value_grad_M",
                 description="the numpy value and gradient of C (minimize_over_projector's route) with "
                             "the log-determinant's coefficient 0.55 instead of 1/2",
                 make=_numpy_route_logdet_coefficient),
    PlantedError(id="02-max-margin-delta-inverted", chapter="02_projection_heads",
                 target="clkit.projection.max_margin_asymptotics",
                 description="kappa* and Err* with 1/delta written for delta (the same numbers at delta = 1)",
                 make=_delta_inverted),
    PlantedError(id="02-separability-threshold-plus-15pct", chapter="02_projection_heads",
                 target="clkit.projection.separability_threshold",
                 description="delta* 15 % too large", make=scaled(1.15)),
    PlantedError(id="02-separability-threshold-minus-15pct", chapter="02_projection_heads",
                 target="clkit.projection.separability_threshold",
                 description="delta* 15 % too small", make=scaled(0.85)),
    PlantedError(id="02-kappa-1pct", chapter="02_projection_heads",
                 target="clkit.projection.threshold_ratio_coefficient",
                 description="kappa(sigma2) of tau_e/tau* = 1 + kappa/|mu|^2 + ... 1 % too large",
                 make=scaled(1.01)),
    PlantedError(id="02-no-second-order-test", chapter="02_projection_heads",
                 target="clkit.projection._lowest_curvature",
                 description="minimize_over_projector accepts any stationary point (the review's "
                             "finding: the rank-one saddle below tau_e)",
                 make=_no_second_order_test),
    PlantedError(id="02-tau2-without-K0", chapter="02_projection_heads",
                 target="clkit.projection.second_order_threshold",
                 description="tau_2 from the second-order terms with c^2 K_0 dropped (only 2c^2 b^2)",
                 make=_tau2_without_K0),
    PlantedError(id="02-tau2-coefficient", chapter="02_projection_heads",
                 target="clkit.projection.second_order_threshold",
                 description="tau_2 with 2w|mu|^2 for 4w|mu|^2 (K_0's cross term halved)",
                 make=_tau2_coefficient),
    PlantedError(id="02-second-order-loss-without-K0", chapter="02_projection_heads",
                 target="clkit.projection._second_order_loss",
                 description="the second-order surrogate's loss without c^2 K_0",
                 make=_second_order_loss_without_K0),
    PlantedError(id="02-projector-parameter-p", chapter="02_projection_heads",
                 target="clkit.projection.projector_parameter",
                 description="eta* from t~ with p written for p - 1 ((1 + eta)^2 = p t/(1 - t))",
                 make=_projector_parameter_p),
]
