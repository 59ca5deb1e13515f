"""Every chapter of the book, executed at smoke scale: no cell may fail and every claim must pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit_claims import toc_chapters
from conftest import BOOK, execute_myst

CHAPTERS = toc_chapters(BOOK)


def test_every_chapter_file_is_in_the_table_of_contents():
    on_disk = sorted(p.stem for p in (BOOK / "chapters").glob("*.md"))
    assert on_disk == sorted(CHAPTERS)


@pytest.mark.chapter
@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_executes_at_smoke_scale_with_all_claims_passing(stem: str, tmp_path: Path):
    execute_myst(BOOK / "chapters" / f"{stem}.md", claims_dir=tmp_path)
    record = json.loads((tmp_path / f"{stem}.json").read_text())
    assert record["chapter"] == stem
    assert record["claims"], "a chapter must check at least one claim"
    failed = [c["name"] for c in record["claims"] if not c["passed"]]
    assert not failed and record["all_passed"]
