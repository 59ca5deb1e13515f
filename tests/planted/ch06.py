"""Planted errors of chapter 06_generalization (generalization): kept by that chapter's author."""

from __future__ import annotations

import functools
from typing import Any, Callable

from planted_errors import PlantedError, scaled

def _rho_r_coefficient_scaled(factor: float) -> Callable[[Any], Any]:
    """Wrong variant of rho_max: the coefficient of R_eps / min p times ``factor``."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(*args: Any, **kwargs: Any) -> Any:
            if len(args) >= 8:
                args = (*args[:7], args[7] * factor, *args[8:])
            else:
                kwargs = {**kwargs, "r_coefficient": kwargs.get("r_coefficient", 1) * factor}
            return original(*args, **kwargs)

        return wrong

    return make


def _rho_sigma_term_halved(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of rho_max: (1 - sigma) in place of 2 (1 - sigma) (an optimistic condition)."""

    @functools.wraps(original)
    def wrong(sigma: Any, *args: Any, **kwargs: Any) -> Any:
        return original(sigma, *args, **kwargs) - (1 - sigma)

    return wrong


def _threshold_without_sqrt(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of divergence_threshold: r^2 (1 - rho - Delta/2), the sqrt(2 rho) term dropped."""

    @functools.wraps(original)
    def wrong(rho: Any, delta_mu: Any, r: Any) -> Any:
        return original(0 * rho, delta_mu, r) - r**2 * rho

    return wrong


def _threshold_without_deficit(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of divergence_threshold: Delta_mu ignored."""

    @functools.wraps(original)
    def wrong(rho: Any, delta_mu: Any, r: Any) -> Any:
        return original(rho, 0 * delta_mu, r)

    return wrong


def _bound_without_sigma(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of theorem1_bound: R_eps alone, the (1 - sigma) term dropped."""

    @functools.wraps(original)
    def wrong(sigma: Any, r_epsilon: Any) -> Any:
        return original(sigma, r_epsilon) - (1 - sigma)

    return wrong


def _info_nce_pair_without_two(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of info_nce_pair_bound: B / (p_k p_l) in place of B / (2 p_k p_l)."""

    @functools.wraps(original)
    def wrong(budget: Any, p_k: Any, p_l: Any, r: Any) -> Any:
        return original(2 * budget, p_k, p_l, r)

    return wrong


def _cc_pair_without_own(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of cross_correlation_pair_bound: the term sum_m p_m^2 ||mu_m||^4 dropped."""

    @functools.wraps(original)
    def wrong(regulariser: Any, diagonal_sq: Any, own: Any, p_k: Any, p_l: Any) -> Any:
        return original(regulariser, diagonal_sq, 0 * own, p_k, p_l)

    return wrong


PLANTED: list[PlantedError] = [
    PlantedError(id="06-rho-r-coef-half", chapter="06_generalization", target="clkit.generalization.rho_max",
                 description="rho_max with R_eps / (2 min p): the coefficient of R_eps halved",
                 make=_rho_r_coefficient_scaled(0.5)),
    PlantedError(id="06-rho-sigma-term-halved", chapter="06_generalization",
                 target="clkit.generalization.rho_max",
                 description="rho_max with (1 - sigma) in place of 2 (1 - sigma): an optimistic condition",
                 make=_rho_sigma_term_halved),
    PlantedError(id="06-threshold-no-sqrt", chapter="06_generalization",
                 target="clkit.generalization.divergence_threshold",
                 description="condition r^2 (1 - rho - Delta/2): the sqrt(2 rho) term dropped",
                 make=_threshold_without_sqrt),
    PlantedError(id="06-threshold-no-deficit", chapter="06_generalization",
                 target="clkit.generalization.divergence_threshold",
                 description=("condition without the Delta_mu / 2 term (true when rho* <= 1/2, the "
                              "chapter's Proposition: 'caught' only because the search loses power "
                              "at c = 0.7, not refuted)"),
                 make=_threshold_without_deficit),
    PlantedError(id="06-bound-no-sigma", chapter="06_generalization",
                 target="clkit.generalization.theorem1_bound",
                 description="Err <= R_eps: the (1 - sigma) term of the bound dropped", make=_bound_without_sigma),
    PlantedError(id="06-bound-3pct-low", chapter="06_generalization",
                 target="clkit.generalization.theorem1_bound",
                 description="bound (1 - sigma) + R_eps 3 % too small", make=scaled(0.97)),
    PlantedError(id="06-infonce-pair-no-two", chapter="06_generalization",
                 target="clkit.generalization.info_nce_pair_bound",
                 description="InfoNCE divergence lemma with B / (p_k p_l): the factor 2 dropped",
                 make=_info_nce_pair_without_two),
    PlantedError(id="06-cc-pair-no-own", chapter="06_generalization",
                 target="clkit.generalization.cross_correlation_pair_bound",
                 description="cross-correlation lemma without the sum_m p_m^2 ||mu_m||^4 term",
                 make=_cc_pair_without_own),
]

PLANTED.append(
    PlantedError(id="06-rho-halved", chapter="06_generalization", target="clkit.generalization.rho_max",
                 description="rho_max halved (an optimistic condition)", make=scaled(0.5)))


def _rho_epsilon_coefficient_one(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrong variant of rho_max: sigma (L delta + eps) / r in place of sigma (L delta + 2 eps) / r."""

    @functools.wraps(original)
    def wrong(*args: Any, **kwargs: Any) -> Any:
        if len(args) >= 5:
            args = (*args[:4], args[4] / 2, *args[5:])
        else:
            kwargs = {**kwargs, "epsilon": kwargs["epsilon"] / 2}
        return original(*args, **kwargs)

    return wrong


PLANTED.append(
    PlantedError(id="06-rho-eps-coef-one", chapter="06_generalization", target="clkit.generalization.rho_max",
                 description="rho_max with sigma eps / r in place of 2 sigma eps / r (the 2-epsilon term halved)",
                 make=_rho_epsilon_coefficient_one))
