"""Every chapter of the book, executed once at smoke scale by the session's book build: no cell may
fail, every claim must pass, and the claims must survive the audit (verdicts recomputed from the
numbers, no result whose tolerance is at least |theory|). The browser checks of tests/browser_checks.py
are imported here: everything that reads the build is one module, so pytest-xdist's
``--dist loadscope`` runs it on one worker and the book is built once."""

from __future__ import annotations

import json

import pytest

from audit_claims import audit_chapter, toc_chapters
from browser_checks import *  # noqa: F401,F403  (the browser checks of the same build, same worker)
from conftest import BOOK, BookBuild

CHAPTERS = toc_chapters(BOOK)


def test_every_chapter_file_is_in_the_table_of_contents():
    on_disk = sorted(p.stem for p in (BOOK / "chapters").glob("*.md"))
    assert on_disk == sorted(CHAPTERS)


@pytest.mark.chapter
def test_whole_book_builds_with_warnings_as_errors(built_book: BookBuild):
    assert built_book.returncode == 0, built_book.log
    assert (built_book.html / "index.html").is_file()


@pytest.mark.chapter
@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_claims_all_pass_and_survive_the_audit(stem: str, built_book: BookBuild):
    path = built_book.claims / f"{stem}.json"
    assert path.is_file(), f"{stem} wrote no claims (did it execute?)\n{built_book.log[-3000:]}"
    record = json.loads(path.read_text())
    assert record["chapter"] == stem
    kinds = {c["kind"] for c in record["claims"]}
    assert kinds & {"result", "bound"}, "a chapter must check at least one result or bound"
    report = audit_chapter(stem, record)
    assert not report.problems, "\n".join(report.problems)


@pytest.mark.chapter
def test_every_figure_fits_its_canvas(built_book: BookBuild):
    """Figures are saved at exactly their figsize (savefig.bbox "standard"): nothing may stick out.

    The build runs with CLKIT_CHECK_FIGURES=1, so clkit.style logs each displayed figure's overflow.
    """
    records = [json.loads(line) for log in sorted(built_book.claims.glob("figures-*.jsonl"))
               for line in log.read_text().splitlines()]
    assert len(records) >= 2 * len(CHAPTERS), f"only {len(records)} figures were measured"
    over = [r for r in records if r["overflow_in"] > r["tolerance_in"]]
    assert not over, "figures sticking out of their canvas:\n" + "\n".join(map(str, over))


@pytest.mark.chapter
@pytest.mark.parametrize("stem", CHAPTERS)
def test_executed_notebooks_carry_their_outputs(stem: str, built_book: BookBuild):
    """The executed chapter the build writes (read by the page's .ipynb download, the notebook zip
    and scripts/sync_notebooks.py) holds the outputs of its run, its claims table included: with
    the chapters executed through jupyter-cache, myst-nb alone would write them without outputs."""
    import io
    import zipfile

    import nbformat

    executed = built_book.output / "_build" / "jupyter_execute" / "chapters" / f"{stem}.ipynb"
    zipped = zipfile.ZipFile(built_book.html / "clbook-notebooks.zip")
    name = next(n for n in zipped.namelist() if n.endswith(f"/{stem}.ipynb"))
    for source, text in ((executed, executed.read_text(encoding="utf-8")),
                         (f"zip:{name}", zipped.read(name).decode("utf-8"))):
        nb = nbformat.read(io.StringIO(text), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        with_output = sum(bool(c.get("outputs")) for c in code)
        assert with_output >= 3, f"{source}: only {with_output} of {len(code)} code cells have outputs"
        assert any("clkit-claims" in json.dumps(c.get("outputs", [])) for c in code[-3:]), (
            f"{source}: no claims table among the last code cells' outputs")
