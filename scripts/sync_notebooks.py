"""Generate the Colab notebooks ``notebooks/<chapter>.ipynb`` from the MyST chapters with jupytext.

The repository URL lives in one place, ``repository.url`` of ``book/_config.yml``. From it this
script derives the ``pip install`` line of every chapter's Colab set-up cell (rewriting the MyST
source if it differs) and, in the notebooks, a link back to the executed chapter online that
replaces the ``{colab-badge}`` directive (Colab cannot render Sphinx directives).

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
INSTALL_RE = re.compile(r'"clkit @ git\+[^"]*"')
BADGE_RE = re.compile(r"```\{colab-badge\}\s*```")


def repository_url() -> str:
    config = yaml.safe_load((BOOK / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


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


def expected_notebook(path: Path, source: str, repo_url: str) -> str:
    notebook = jupytext.reads(source, fmt="md:myst")
    link = f"{pages_url(repo_url)}/chapters/{path.stem}.html"
    note = f"*Generated from the book's MyST source; the executed chapter is online at <{link}>.*"
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{path.stem}-{index:03d}"  # stable ids keep the generated file reproducible
        if cell.cell_type == "markdown":
            cell.source = BADGE_RE.sub(note, cell.source)
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["colab"] = {"provenance": [], "name": f"{path.stem}.ipynb"}
    return nbformat.writes(notebook) + "\n"


def sync(check: bool) -> list[str]:
    """Write (or, with ``check``, only compare) every chapter's source and notebook; return what differs."""
    repo_url = repository_url()
    stale: list[str] = []
    wanted = set()
    for path in chapters():
        source = expected_source(path, repo_url)
        target = NOTEBOOKS / f"{path.stem}.ipynb"
        wanted.add(target.name)
        notebook = expected_notebook(path, source, repo_url)
        for file, text in ((path, source), (target, notebook)):
            if not file.exists() or file.read_text(encoding="utf-8") != text:
                stale.append(str(file.relative_to(REPO)))
                if not check:
                    file.parent.mkdir(exist_ok=True)
                    file.write_text(text, encoding="utf-8")
    for orphan in sorted(p for p in NOTEBOOKS.glob("*.ipynb") if p.name not in wanted):
        stale.append(str(orphan.relative_to(REPO)))
        if not check:
            orphan.unlink()
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = parser.parse_args()
    stale = sync(check=args.check)
    verb = "out of sync" if args.check else "written"
    for name in stale:
        print(f"{verb}: {name}")
    if args.check and stale:
        print("run: python scripts/sync_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
