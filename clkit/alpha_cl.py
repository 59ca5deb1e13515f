"""Tian (2022, 2023): alpha-CL contrastive covariance, one-layer objective, local roughness."""

from __future__ import annotations

__all__: list[str] = []
