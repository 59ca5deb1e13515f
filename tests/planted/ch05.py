"""Planted errors of chapter 05_arcl (ArCL): kept by that chapter's author."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

from planted_errors import PlantedError, scaled, shifted

def _arctan_argument_scaled(factor: float) -> Callable[[Any], Any]:
    """Wrong variant of optimal_risk(a, s): arctan(factor |s| / |a|) / pi (numbers, tensors, SymPy)."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(a: Any, s: Any) -> Any:
            return original(a, s * factor)

        return wrong

    return make


def _ar_loss_without_square(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of ar_loss: (theta_+ - theta_-) w_2^2, the square of the width dropped."""

    @functools.wraps(original)
    def wrong(weights: Any, theta_range: Any) -> Any:
        lo, hi = (float(v) for v in theta_range)
        return original(weights, theta_range) / (hi - lo)

    return wrong


def _range_off_by_one(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of expected_squared_range: the range of m - 1 normals instead of m."""

    @functools.wraps(original)
    def wrong(m: int, **kwargs: Any) -> Any:
        return original(m - 1, **kwargs)

    return wrong


def _edge_without_root(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of conjecture_ratio_limit: phi(0) / (2 + s^2), the square root dropped."""

    @functools.wraps(original)
    def wrong(s: Any) -> Any:
        original(s)  # the same validation
        return 1 / math.sqrt(2 * math.pi) / (2 + s * s)

    return wrong


def _ratio_with_max(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of conjecture_ratio: sqrt(1 + max(s_A, s_A')^2) in the bound instead of min."""

    @functools.wraps(original)
    def wrong(s_a: Any, s_b: Any, **kwargs: Any) -> Any:
        import torch

        r = original(s_a, s_b, **kwargs)
        a, b = torch.broadcast_tensors(torch.as_tensor(s_a, dtype=r.dtype), torch.as_tensor(s_b, dtype=r.dtype))
        return r * torch.sqrt(1 + torch.minimum(a, b) ** 2) / torch.sqrt(1 + torch.maximum(a, b) ** 2)

    return wrong


def _corner_without_own_head(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of conjecture_ratio_corner: |g_{ts}| alone in the bound, (1 + 1/t) -> 1/t."""

    @functools.wraps(original)
    def wrong(t: Any) -> Any:
        import torch

        f = original(t)
        t_t = torch.as_tensor(t, dtype=f.dtype)
        return f * (1 + 1 / t_t) * t_t

    return wrong


def _newton_stops_early(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of clkit.optim.damped_newton: at most 4 steps, non-convergence not raised."""

    @functools.wraps(original)
    def wrong(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "max_iter": min(4, kwargs.get("max_iter", 100)), "strict": False})

    return wrong


PLANTED: list[PlantedError] = [
    PlantedError(id="05-align-2pct", chapter="05_arcl", target="clkit.arcl.alignment_loss",
                 description="alignment loss 2 w_2^2 Var(theta) 2 % too large", make=scaled(1.02)),
    PlantedError(id="05-risk-arctan-coef", chapter="05_arcl", target="clkit.arcl.optimal_risk",
                 description="optimal 0-1 risk arctan(1.05 |s|/|a|)/pi: coefficient 5 % off",
                 make=_arctan_argument_scaled(1.05)),
    PlantedError(id="05-first-moment-half", chapter="05_arcl", target="clkit.arcl.ar_first_moment",
                 description="E sup|f(A1 X) - f(A2 X)| halved: an optimistic factor 2 in the bound",
                 make=scaled(0.5)),
    PlantedError(id="05-ar-loss-no-square", chapter="05_arcl", target="clkit.arcl.ar_loss",
                 description="L_AR = (theta_+ - theta_-) w_2^2: square of the width dropped",
                 make=_ar_loss_without_square),
    PlantedError(id="05-range-off-by-one", chapter="05_arcl",
                 target="clkit.arcl.expected_squared_range",
                 description="E R_m^2 of m - 1 normals instead of m", make=_range_off_by_one),
    PlantedError(id="05-head-risk-shift", chapter="05_arcl", target="clkit.arcl.head_risk",
                 description="0-1 risk of a head 0.005 too large", make=shifted(0.005)),
    PlantedError(id="05-logistic-risk-1pct", chapter="05_arcl",
                 target="clkit.arcl.logistic_risk_by_conditioning",
                 description="logistic risk by conditioning 1 % too large", make=scaled(1.01)),
    PlantedError(id="05-heads-5pct", chapter="05_arcl", target="clkit.arcl.optimal_logistic_heads",
                 description="optimal logistic heads 5 % too large", make=scaled(1.05)),
    PlantedError(id="05-edge-limit-1pct", chapter="05_arcl", target="clkit.arcl.conjecture_ratio_limit",
                 description="separable-edge limit phi(0)/(1 + sqrt(1 + s^2)) 1 % too large",
                 make=scaled(1.01)),
    PlantedError(id="05-edge-no-root", chapter="05_arcl", target="clkit.arcl.conjecture_ratio_limit",
                 description="separable-edge limit phi(0)/(2 + s^2): square root dropped",
                 make=_edge_without_root),
    PlantedError(id="05-conj-ratio-max", chapter="05_arcl", target="clkit.arcl.conjecture_ratio",
                 description="reduced conjecture ratio normalised by sqrt(1 + max(s)^2) instead of min",
                 make=_ratio_with_max),
    PlantedError(id="05-corner-no-head-sum", chapter="05_arcl",
                 target="clkit.arcl.conjecture_ratio_corner",
                 description="corner limit F(t) normalised by the head g_{ts} alone: factor (1 + 1/t) -> 1/t",
                 make=_corner_without_own_head),
    PlantedError(id="05-newton-stops-early", chapter="05_arcl", target="clkit.optim.damped_newton",
                 description="damped Newton stops after 4 steps and does not raise (the heads' searches)",
                 make=_newton_stops_early),
]
