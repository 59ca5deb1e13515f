"""Gui, Ma & Zhong (2023), projection heads: tau*, expansion measure, closed-form population loss."""

from __future__ import annotations

__all__: list[str] = []
