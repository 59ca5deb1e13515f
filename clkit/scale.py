"""Scale profiles: how big a chapter's experiments are.

``CLKIT_SCALE`` selects one of ``smoke`` (tests: seconds), ``default`` (the book: a minute a
chapter on 2 CPU cores) and ``large`` (a GPU reader: more samples, tighter Monte Carlo errors).
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["SCALES", "scale_profile", "by_scale"]

SCALES: tuple[str, ...] = ("smoke", "default", "large")

T = TypeVar("T")


def scale_profile() -> str:
    """The active profile, read from ``$CLKIT_SCALE`` (default ``"default"``).

    Raises ``ValueError`` naming ``CLKIT_SCALE`` if it holds anything but a known profile.
    """
    value = os.environ.get("CLKIT_SCALE", "default").strip().lower() or "default"
    if value not in SCALES:
        raise ValueError(f"CLKIT_SCALE must be one of {SCALES}, got {value!r}")
    return value


def by_scale(*, smoke: T, default: T, large: T, profile: str | None = None) -> T:
    """Pick the value for the active (or given) profile: ``by_scale(smoke=10**3, default=10**5, large=10**7)``."""
    profile = scale_profile() if profile is None else profile
    if profile not in SCALES:
        raise ValueError(f"profile must be one of {SCALES}, got {profile!r}")
    return {"smoke": smoke, "default": default, "large": large}[profile]
