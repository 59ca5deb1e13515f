"""Planted errors of chapter 01_setting (setting): kept by that chapter's author."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

from planted_errors import PlantedError

def _temperature_off(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(z1: Any, z2: Any, temperature: float = 0.5, **kwargs: Any) -> Any:
        return original(z1, z2, temperature=1.05 * temperature, **kwargs)

    return wrong


def _collapse_2n(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(n_pairs: Any) -> Any:
        import sympy

        value = original(n_pairs)  # validates; the mistake: log(2N) instead of log(2N - 1)
        return sympy.log(2 * n_pairs) if isinstance(value, sympy.Basic) else math.log(2 * n_pairs)

    return wrong


def _bound_2n_minus_1(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrong(n_pairs: Any, temperature: Any) -> Any:
        import sympy

        value = original(n_pairs, temperature)  # the mistake: 2N - 1 negatives instead of 2N - 2
        if isinstance(value, sympy.Basic):
            return sympy.log(1 + (2 * n_pairs - 1) * sympy.exp(-2 / temperature))
        return math.log1p((2 * n_pairs - 1) * math.exp(-2 / temperature))

    return wrong


def _noise_inflated(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrong(self: Any, n: int, generator: Any) -> Any:
        x, labels = original(self, n, generator)
        centre = self.means[labels]
        return centre + 1.05 * (x - centre), labels  # covariance 10 % too large

    return wrong


PLANTED: list[PlantedError] = [
    PlantedError("01-ntxent-temperature-5pct", "01_setting", "clkit.losses.info_nce",
                 "NT-Xent computed at 1.05 tau", _temperature_off),
    PlantedError("01-collapse-log-2n", "01_setting", "clkit.losses.info_nce_collapse_value",
                 "collapse value log(2N) instead of log(2N - 1)", _collapse_2n),
    PlantedError("01-bound-2n-minus-1", "01_setting", "clkit.losses.info_nce_lower_bound",
                 "lower bound counts 2N - 1 negatives instead of 2N - 2", _bound_2n_minus_1),
    PlantedError("01-mixture-covariance-10pct", "01_setting", "clkit.mixtures.GaussianMixture.sample",
                 "mixture sampler's covariance 10 % too large", _noise_inflated),
]
