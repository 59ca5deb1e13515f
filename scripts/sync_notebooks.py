"""Generate the Colab notebooks ``notebooks/<chapter>.ipynb`` from the MyST chapters with jupytext.

The repository URL lives in one place, ``repository.url`` of ``book/_config.yml``. From it this
script derives the ``pip install`` line of every chapter's Colab set-up cell (rewriting the MyST
source if it differs) and, in the notebooks, a link back to the executed chapter online that
replaces the ``{colab-badge}`` directive.

Colab and Jupyter render Markdown and MathJax, not Sphinx: the markdown cells are converted to plain
Markdown/LaTeX by ``book/_ext/myst_notebook.py`` (theorem blocks as titled block quotes, citations
as author-year text, cross-references as the words the book prints, glued numbers as the name of
the value in code font, a glued figure's caption as text while the figure shows in its cell's
output), and a first markdown cell defines the book's TeX macros (``mathjax3_config`` of
``book/_config.yml``). ``tests/test_notebooks.py`` scans the result for leftover MyST syntax and
undefined macros.

    python scripts/sync_notebooks.py          # write
    python scripts/sync_notebooks.py --check  # exit 1 if anything is out of sync
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import jupytext
import nbformat
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(BOOK / "_ext"))

import myst_notebook  # noqa: E402  (book/_ext: shared with the book's .ipynb downloads)
INSTALL_RE = re.compile(r'"clkit @ git\+[^"]*"')


def book_config() -> dict:
    return yaml.safe_load((BOOK / "_config.yml").read_text(encoding="utf-8"))


def repository_url() -> str:
    return book_config()["repository"]["url"].rstrip("/")


def tex_macros() -> dict[str, object]:
    """The book's MathJax macros (``sphinx.config.mathjax3_config.tex.macros``)."""
    config = book_config().get("sphinx", {}).get("config", {})
    return dict((config.get("mathjax3_config") or {}).get("tex", {}).get("macros", {}))


def pages_url(repo_url: str) -> str:
    owner, name = urlparse(repo_url).path.strip("/").removesuffix(".git").split("/")[:2]
    return f"https://{owner}.github.io/{name}"


def chapters() -> list[Path]:
    return sorted((BOOK / "chapters").glob("*.md"))


def expected_source(path: Path, repo_url: str) -> str:
    """The chapter's MyST text with its install line pointing at ``repo_url``."""
    text = path.read_text(encoding="utf-8")
    if not INSTALL_RE.search(text):
        raise ValueError(f"{path.relative_to(REPO)} has no Colab set-up cell installing 'clkit @ git+…'")
    return INSTALL_RE.sub(f'"clkit @ git+{repo_url}"', text)


def book_labels(sources: dict[str, str]) -> myst_notebook.Book:
    """Cross-reference texts of every chapter (``stem -> MyST source``) and the bibliography."""
    cells = {
        stem: [c.source for c in jupytext.reads(text, fmt="md:myst").cells if c.cell_type == "markdown"]
        for stem, text in sources.items()
    }
    return myst_notebook.collect_book(cells, BOOK / "references.bib")


def expected_notebook(path: Path, source: str, repo_url: str, book: myst_notebook.Book | None = None) -> str:
    """The Colab notebook of one chapter (``book``: the labels of all chapters; by default only this
    chapter's, so references to other chapters stay unresolved)."""
    notebook = jupytext.reads(source, fmt="md:myst")
    if book is None:
        book = book_labels({path.stem: source})
    link = f"{pages_url(repo_url)}/chapters/{path.stem}.html"
    note = (f"*Generated from the book's MyST source. The executed chapter, with every number and "
            f"figure, is online at <{link}>; here, a number the text quotes appears as the name of "
            f"the value in code font (run the notebook and evaluate it).*")
    converter = myst_notebook.convert_cells(notebook.cells, path.stem, book, values=None, badge=lambda: note)
    if converter.problems:
        raise ValueError(f"{path.relative_to(REPO)}: cannot convert to plain Markdown: {converter.problems}")
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(myst_notebook.macro_cell_source(tex_macros())))
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{path.stem}-{index:03d}"  # stable ids keep the generated file reproducible
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["colab"] = {"provenance": [], "name": f"{path.stem}.ipynb"}
    return nbformat.writes(notebook) + "\n"


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def sync(check: bool, notebooks: Path | None = None) -> list[str]:
    """Write (or, with ``check``, only compare) every chapter's source and notebook; return what differs.

    ``notebooks``: write the notebooks to this folder instead of ``notebooks/`` and leave the MyST
    sources alone (a trial run on a temporary copy)."""
    repo_url = repository_url()
    stale: list[str] = []
    wanted = set()
    sources = {path.stem: expected_source(path, repo_url) for path in chapters()}
    book = book_labels(sources)
    for path in chapters():
        source = sources[path.stem]
        target = (notebooks or NOTEBOOKS) / f"{path.stem}.ipynb"
        wanted.add(target.name)
        notebook = expected_notebook(path, source, repo_url, book)
        pairs = ((path, source), (target, notebook)) if notebooks is None else ((target, notebook),)
        for file, text in pairs:
            if not file.exists() or file.read_text(encoding="utf-8") != text:
                stale.append(_shown(file))
                if not check:
                    file.parent.mkdir(exist_ok=True)
                    file.write_text(text, encoding="utf-8")
    for orphan in sorted(p for p in (notebooks or NOTEBOOKS).glob("*.ipynb") if p.name not in wanted):
        stale.append(_shown(orphan))
        if not check:
            orphan.unlink()
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    parser.add_argument("--out", type=Path, help="write the notebooks here (not notebooks/), sources untouched")
    args = parser.parse_args()
    stale = sync(check=args.check, notebooks=args.out)
    verb = "out of sync" if args.check else "written"
    for name in stale:
        print(f"{verb}: {name}")
    if args.check and stale:
        print("run: python scripts/sync_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
