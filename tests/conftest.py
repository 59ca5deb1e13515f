"""Shared fixtures and helpers: repository paths, executing a MyST chapter like the book does, and
the one smoke-scale build of the whole book that every chapter-level test reads.

The suite executes each chapter once: the session fixture :func:`built_book` runs
``jupyter-book build`` on the book at smoke scale; the per-chapter tests check the claims that
build wrote, the browser test loads its HTML. All tests that use it live in one module
(tests/test_chapters.py, which imports the browser checks), so that under pytest-xdist's
``--dist loadscope`` one worker builds the book while the other runs the unit tests and the
planted errors (``loadgroup`` would be the natural choice, but it does not group under pytest 9).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
sys.path.insert(0, str(REPO / "scripts"))

from run_chapter import execute_myst  # noqa: E402  (re-exported for the tests)

#: The front matter of a MyST notebook with the Python 3 kernel (tests write small notebooks).
MYST_FRONT_MATTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

JUPYTER_BOOK = str(Path(sys.executable).with_name("jupyter-book"))


@dataclass(frozen=True)
class BookBuild:
    """One build of a book: where it went and how it ended."""

    output: Path  # the folder holding _build/html
    claims: Path  # the claims JSON the build wrote, one file per chapter
    returncode: int
    log: str

    @property
    def html(self) -> Path:
        return self.output / "_build" / "html"


def build_book(book: Path, output: Path, claims: Path, scale: str = "smoke") -> BookBuild:
    """``jupyter-book build`` with warnings as errors, at ``scale``, claims written to ``claims``."""
    env = {**os.environ, "CLKIT_SCALE": scale, "CLKIT_CLAIMS_DIR": str(claims), "MPLBACKEND": "Agg",
           "CLKIT_CHECK_FIGURES": "1"}  # every figure must fit its canvas (clkit.style)
    result = subprocess.run(
        [JUPYTER_BOOK, "build", str(book), "--path-output", str(output), "-W", "-n", "--keep-going"],
        env=env, capture_output=True, text=True, timeout=3000,
    )
    return BookBuild(output, claims, result.returncode, result.stdout[-8000:] + result.stderr[-8000:])


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> BookBuild:
    """The whole book built once per session at smoke scale (every chapter executed once)."""
    root = tmp_path_factory.mktemp("book-build")
    return build_book(BOOK, root / "out", root / "claims")


@pytest.fixture
def float64_generator():
    import clkit

    return clkit.make_generator(1234, "cpu")
