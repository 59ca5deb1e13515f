"""Shared fixtures and helpers: repository paths, and executing a MyST chapter like the book does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
sys.path.insert(0, str(REPO / "scripts"))

from run_chapter import execute_myst  # noqa: E402  (re-exported for the tests)


@pytest.fixture
def float64_generator():
    import clkit

    return clkit.make_generator(1234, "cpu")
