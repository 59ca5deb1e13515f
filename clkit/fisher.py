"""Bansal, Kavis & Sanghavi (2024): Fisher subspace and population InfoNCE/CLIP on Gaussian mixtures."""

from __future__ import annotations

__all__: list[str] = []
