"""Linear algebra on subspaces: orthonormal bases, principal angles, projections."""

from __future__ import annotations

__all__: list[str] = []
