"""Huang et al. (2023): (sigma, delta)-augmentation, alignment, divergence, Theorem 1 bound."""

from __future__ import annotations

__all__: list[str] = []
