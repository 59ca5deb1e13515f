"""The build itself: the whole book builds with warnings as errors, and a false claim fails a build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audit_claims import audit
from conftest import BOOK

JB = [str(Path(sys.executable).with_name("jupyter-book")), "build"]

CHAPTER = """\
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

# Guard

```{{code-cell}} ipython3
import clkit

claims = clkit.Claims("guard")
claims.check("one plus one", theory=2.0, measured=1.0 + {addend}, tolerance=1e-12)
claims.table()
```
"""


def _build(book: Path, out: Path, claims: Path, scale: str = "smoke") -> subprocess.CompletedProcess:
    env = {**os.environ, "CLKIT_SCALE": scale, "CLKIT_CLAIMS_DIR": str(claims), "MPLBACKEND": "Agg"}
    return subprocess.run([*JB, str(book), "--path-output", str(out), "-W", "-n", "--keep-going"],
                          env=env, capture_output=True, text=True, timeout=3000)


def _guard_book(tmp_path: Path, addend: str) -> Path:
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    for name in ("_config.yml", "references.bib"):
        shutil.copy(BOOK / name, book / name)
    shutil.copytree(BOOK / "_ext", book / "_ext")
    (book / "intro.md").write_text("# Guard book\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/guard\n")
    (book / "chapters" / "guard.md").write_text(CHAPTER.format(addend=addend))
    return book


@pytest.mark.build
@pytest.mark.parametrize("addend, should_pass", [("1.0", True), ("1.5", False)], ids=["true-claim", "false-claim"])
def test_a_false_claim_fails_the_build(tmp_path: Path, addend: str, should_pass: bool):
    book = _guard_book(tmp_path, addend)
    result = _build(book, tmp_path / "out", tmp_path / "claims")
    assert (result.returncode == 0) is should_pass, result.stdout[-3000:] + result.stderr[-3000:]
    if not should_pass:
        assert "ClaimFailure" in result.stdout + result.stderr


@pytest.mark.build
def test_whole_book_builds_with_warnings_as_errors(tmp_path: Path):
    claims = tmp_path / "claims"
    result = _build(BOOK, tmp_path / "out", claims)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert (tmp_path / "out" / "_build" / "html" / "index.html").is_file()
    assert audit(claims) == []
