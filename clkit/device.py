"""Devices, dtypes and seeded random generators.

Theory checks run in float64 (``DEFAULT_DTYPE``); nothing here hard-codes a device: CUDA is used
when present, otherwise the CPU.
"""

from __future__ import annotations

import os

import torch

__all__ = ["DEFAULT_DTYPE", "default_device", "make_generator", "as_tensor"]

#: dtype of every theory check in the book (closed forms against simulation need the digits).
DEFAULT_DTYPE: torch.dtype = torch.float64


def default_device() -> torch.device:
    """The device chapters compute on: ``$CLKIT_DEVICE`` if set, else CUDA when available, else CPU."""
    requested = os.environ.get("CLKIT_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``: the only source of randomness in clkit.

    Raises ``ValueError`` if ``seed`` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    device = torch.device(device) if device is not None else default_device()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def as_tensor(
    value: object,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``torch.as_tensor`` with clkit's defaults: float64, and the device of ``value`` when it is a tensor."""
    if isinstance(value, torch.Tensor):
        if dtype is None:
            dtype = value.dtype if value.is_floating_point() else DEFAULT_DTYPE
        return value.to(dtype=dtype, device=device if device is not None else value.device)
    return torch.as_tensor(
        value,
        dtype=dtype if dtype is not None else DEFAULT_DTYPE,
        device=device if device is not None else default_device(),
    )
