"""The build guard: a false claim fails a book build (the whole book's own build, which must pass,
is tested in test_chapters.py from the session's single build)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import BOOK, MYST_FRONT_MATTER, build_book

CHAPTER = MYST_FRONT_MATTER + """

# Guard

```{{code-cell}} ipython3
import clkit

claims = clkit.Claims("guard")
claims.check("one plus one", theory=2.0, measured=1.0 + {addend}, tolerance=1e-12, kind="identity")
claims.table()
```
"""


def _guard_book(tmp_path: Path, addend: str) -> Path:
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    for name in ("_config.yml", "references.bib"):
        shutil.copy(BOOK / name, book / name)
    for folder in ("_ext", "_static"):
        if (BOOK / folder).is_dir():
            shutil.copytree(BOOK / folder, book / folder)
    (book / "intro.md").write_text("# Guard book\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/guard\n")
    (book / "chapters" / "guard.md").write_text(CHAPTER.format(addend=addend))
    return book


@pytest.mark.build
def test_a_false_claim_fails_the_build(tmp_path: Path):
    book = _guard_book(tmp_path, "1.5")
    result = build_book(book, tmp_path / "out", tmp_path / "claims")
    assert result.returncode != 0, result.log
    assert "ClaimFailure" in result.log
