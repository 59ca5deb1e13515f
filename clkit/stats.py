"""Monte Carlo estimates with their standard errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["MonteCarloEstimate", "monte_carlo_mean"]


@dataclass(frozen=True)
class MonteCarloEstimate:
    """Sample mean of ``n`` i.i.d. draws and its standard error ``sd / sqrt(n)``."""

    mean: float
    stderr: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.stderr:.2g} (n = {self.n:,})"


def monte_carlo_mean(samples: torch.Tensor) -> MonteCarloEstimate:
    """Mean and standard error of the i.i.d. draws in ``samples`` (any shape; all entries count).

    Raises ``ValueError`` for fewer than two samples or non-finite values.
    """
    flat = torch.as_tensor(samples).reshape(-1).to(torch.float64)
    if flat.numel() < 2:
        raise ValueError(f"samples must hold at least 2 draws, got {flat.numel()}")
    if not torch.isfinite(flat).all():
        raise ValueError("samples contains non-finite values (NaN or inf)")
    n = flat.numel()
    return MonteCarloEstimate(float(flat.mean()), float(flat.std(unbiased=True)) / math.sqrt(n), n)
