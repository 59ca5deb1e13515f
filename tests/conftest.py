"""Shared fixtures and helpers: repository paths, and executing a MyST chapter like the book does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
sys.path.insert(0, str(REPO / "scripts"))


def execute_myst(path: Path, claims_dir: Path, scale: str = "smoke", timeout: int = 900) -> None:
    """Execute a MyST notebook in its own folder, as Jupyter Book does, at the given scale.

    Claims go to ``claims_dir``; any failing cell (a failing claim among them) raises
    ``nbclient.exceptions.CellExecutionError``.
    """
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(path, fmt="md:myst")
    env = {"CLKIT_SCALE": scale, "CLKIT_CLAIMS_DIR": str(claims_dir), "MPLBACKEND": "Agg"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def float64_generator():
    import clkit

    return clkit.make_generator(1234, "cpu")
