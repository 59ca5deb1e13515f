"""Input validation shared by every clkit function.

Each check raises one :class:`ValueError` whose message names the offending argument, in the
spirit of scikit-learn's validation at the boundary.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = [
    "check_positive",
    "check_nonnegative",
    "check_finite",
    "check_matrix",
    "check_shape",
    "check_probability_vector",
    "check_positive_definite",
]


def _as_float(name: str, value: float | torch.Tensor) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number, got {value!r}") from err
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def check_positive(name: str, value: float | torch.Tensor) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is finite and > 0."""
    out = _as_float(name, value)
    if out <= 0:
        raise ValueError(f"{name} must be > 0, got {out}")
    return out


def check_nonnegative(name: str, value: float | torch.Tensor) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is finite and >= 0."""
    out = _as_float(name, value)
    if out < 0:
        raise ValueError(f"{name} must be >= 0, got {out}")
    return out


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if ``tensor`` holds a NaN or an infinity."""
    # Fast path for large floating tensors: a finite sum proves every entry finite (an inf or a
    # NaN makes the sum inf or NaN); only a sum that overflows needs the entrywise test.
    if tensor.is_floating_point() and tensor.numel() > 4096 and bool(torch.isfinite(tensor.sum())):
        return tensor
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return tensor


def check_shape(name: str, tensor: torch.Tensor, shape: Sequence[int | None]) -> torch.Tensor:
    """Raise ``ValueError`` unless ``tensor.shape`` matches ``shape`` (``None`` matches any size)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != len(shape) or any(
        want is not None and got != want for got, want in zip(tensor.shape, shape)
    ):
        pretty = tuple("*" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {pretty}, got {tuple(tensor.shape)}")
    return tensor


def check_matrix(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` unless ``tensor`` is a finite 2-D tensor."""
    check_shape(name, tensor, (None, None))
    return check_finite(name, tensor)


def check_probability_vector(name: str, weights: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
    """Raise ``ValueError`` unless ``weights`` is a 1-D vector of non-negative entries summing to 1."""
    check_shape(name, weights, (None,))
    check_finite(name, weights)
    if (weights < 0).any():
        raise ValueError(f"{name} must be non-negative, got {weights.tolist()}")
    total = float(weights.sum())
    if abs(total - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1, got sum {total:.6g}")
    return weights


def check_positive_definite(name: str, matrix: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` unless ``matrix`` (or each matrix of a batch) is symmetric positive definite."""
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"{name} must be a square matrix (or a batch of them), got {tuple(matrix.shape)}")
    check_finite(name, matrix)
    scale = matrix.abs().amax().clamp_min(1.0)
    if not torch.allclose(matrix, matrix.transpose(-1, -2), atol=1e-10 * float(scale), rtol=1e-8):
        raise ValueError(f"{name} must be symmetric")
    _, info = torch.linalg.cholesky_ex(matrix)
    if (info != 0).any():
        raise ValueError(f"{name} must be positive definite (Cholesky factorisation failed)")
    return matrix
