"""Zhao et al. (2023), ArCL: the alignment counter-example and the augmentation-robust loss."""

from __future__ import annotations

__all__: list[str] = []
