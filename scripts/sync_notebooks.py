"""Generate the Colab notebooks ``notebooks/<chapter>.ipynb`` from the MyST chapters with jupytext.

The repository URL lives in one place, ``repository.url`` of ``book/_config.yml``; clkit's version in
one place, ``pyproject.toml``. From them this script derives each notebook's Colab set-up cell (it
installs ``clkit @ git+<url>@v<version>``, the clkit the book was built with, when clkit is missing or
older; Colab's torch is kept; no myst-nb) and a link back to the executed chapter online that
replaces the ``{colab-badge}`` directive, with a note that a CPU runtime reproduces the book.

Colab and Jupyter render Markdown and MathJax, not Sphinx: the markdown cells are converted to plain
Markdown/LaTeX by ``book/_ext/myst_notebook.py`` (theorem blocks as titled block quotes, citations
as author-year text, cross-references as the words the book prints, linked to the online chapter
when they point into another chapter, the book's TeX macros expanded in every cell so that each
cell's math stands alone). Every number the prose quotes (``{glue:text}``) is the value of the
book's run followed by a marker (†); a glued table is put in as the book computed it and a glued
figure as the book drew it (a cell attachment). In the code, ``from myst_nb import glue`` becomes
``from clkit.notebook import glue``, which prints ``name = value`` (in the prose's format) or
displays the table/figure under its cell when the reader runs it. Cells the book hides get Colab's
``cellView: form``.

The book's values come from, in this order: an executed build (``book/_build/jupyter_execute``,
``--build``) whose code equals the chapter's current code; the values stored in the committed
notebook (``metadata.clbook``) when the chapter's code has not changed since; with ``--execute``,
a run of the chapter at default scale here. A chapter with none of these is written with its glue
keys in code font, and reported (``tests/test_notebooks.py`` fails on them).

    python scripts/sync_notebooks.py            # write
    python scripts/sync_notebooks.py --execute  # also run chapters whose values are stale
    python scripts/sync_notebooks.py --check    # exit 1 if anything is out of sync
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jupytext
import nbformat
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
NOTEBOOKS = REPO / "notebooks"
BUILD = BOOK / "_build"
sys.path.insert(0, str(BOOK / "_ext"))

import myst_notebook  # noqa: E402  (book/_ext: shared with the book's .ipynb downloads)

INSTALL_RE = re.compile(r'"clkit @ git\+[^"]*"')
#: After each number of the book's run put into the prose.
MARKER = "†"
#: Tags of the cells the book hides (their code is folded in Colab: ``cellView: form``).
HIDDEN_TAGS = {"hide-input", "hide-cell", "remove-input", "remove-cell", "hide-output"}


def book_config() -> dict:
    return yaml.safe_load((BOOK / "_config.yml").read_text(encoding="utf-8"))


def repository_url() -> str:
    return book_config()["repository"]["url"].rstrip("/")


def clkit_version() -> str:
    """clkit's version (``pyproject.toml``): the notebooks install the tag ``v<version>``."""
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def tex_macros() -> dict[str, object]:
    """The book's MathJax macros (``sphinx.config.mathjax3_config.tex.macros``)."""
    config = book_config().get("sphinx", {}).get("config", {})
    return dict((config.get("mathjax3_config") or {}).get("tex", {}).get("macros", {}))


def pages_url(repo_url: str) -> str:
    owner, name = urlparse(repo_url).path.strip("/").removesuffix(".git").split("/")[:2]
    return f"https://{owner}.github.io/{name}"


def chapters() -> list[Path]:
    return sorted((BOOK / "chapters").glob("*.md"))


def expected_source(path: Path, repo_url: str, text: str | None = None) -> str:
    """The chapter's MyST text (``text``, else read) with its install line pointing at ``repo_url``."""
    text = path.read_text(encoding="utf-8") if text is None else text
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


# --------------------------------------------------------------------------------------------
# The book's values
# --------------------------------------------------------------------------------------------
def code_cells(notebook: Any) -> list[str]:
    return [c.source.strip() for c in notebook.cells if c.cell_type == "code"]


def code_digest(notebook: Any) -> str:
    """SHA-256 of a chapter's code cells: the values of a run belong to this code."""
    return hashlib.sha256("\n\0\n".join(code_cells(notebook)).encode("utf-8")).hexdigest()


def _text_values(values: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {k: {m: v for m, v in data.items() if m in ("text/plain", "text/markdown")}
            for k, data in sorted(values.items())}


def values_from_build(stem: str, notebook: Any, build: Path) -> dict[str, dict[str, str]] | None:
    """The glued values of an executed build of the chapter, if its code is the current code."""
    executed_path = build / "jupyter_execute" / "chapters" / f"{stem}.ipynb"
    if not executed_path.is_file():
        return None
    executed = nbformat.read(executed_path, as_version=4)
    if code_cells(executed) != code_cells(notebook):
        return None
    values = myst_notebook.glued_values(executed)
    glue_json = executed_path.with_name(f"{stem}.glue.json")
    if glue_json.is_file():
        for key, output in json.loads(glue_json.read_text(encoding="utf-8")).items():
            values.setdefault(key, {k: v for k, v in (output.get("data") or {}).items() if isinstance(v, str)})
    return values


def values_from_committed(target: Path, digest: str) -> dict[str, dict[str, str]] | None:
    """The values stored in the committed notebook, if they were made from the current code."""
    if not target.is_file():
        return None
    committed = nbformat.read(target, as_version=4)
    meta = committed.metadata.get("clbook") or {}
    if meta.get("code_sha256") != digest:
        return None
    values = {k: dict(v) for k, v in (meta.get("book_values") or {}).items()}
    for cell in committed.cells:
        for name, data in (cell.get("attachments") or {}).items():
            if name.endswith(".png") and "image/png" in data:
                values.setdefault(name.removesuffix(".png"), {})["image/png"] = data["image/png"]
    return values


def values_from_execution(path: Path, timeout: int = 900) -> dict[str, dict[str, str]]:
    """Run the chapter at default scale in its folder (as the book does) and harvest its glue."""
    from nbclient import NotebookClient

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_chapter import temporary_environment

    notebook = jupytext.read(path, fmt="md:myst")
    env = {"CLKIT_SCALE": "default", "MPLBACKEND": "Agg", "CLBOOK_SPHINX_BUILD": "1",
           "CLKIT_CLAIMS_DIR": str(BUILD / "sync-claims")}
    with temporary_environment(env):
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    return myst_notebook.glued_values(notebook)


# --------------------------------------------------------------------------------------------
# Code cells
# --------------------------------------------------------------------------------------------
def setup_cell(repo_url: str, version: str, formats: dict[str, str]) -> str:
    """The Colab set-up cell: clkit ``v<version>`` installed when missing or older."""
    wanted = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    lines = [
        f"# @title Set-up: clkit {version}, the version the book was built with (Colab's torch is kept)",
        "# A CPU runtime reproduces the book's numbers. On a GPU runtime clkit computes on CUDA;",
        "# uncomment the next line to compute on the CPU as the book did.",
        '# import os; os.environ["CLKIT_DEVICE"] = "cpu"',
        "import importlib.metadata",
        "import re",
        "import subprocess",
        "import sys",
        "",
        f"CLKIT = {f'clkit @ git+{repo_url}@v{version}'!r}",
        "PIP = [sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"--upgrade\"]",
        "try:",
        '    installed = tuple(int(p) for p in re.findall(r"\\d+", importlib.metadata.version("clkit"))[:3])',
        "except importlib.metadata.PackageNotFoundError:",
        "    installed = None",
        f"if installed is None or installed < {wanted!r}:",
        "    try:",
        "        subprocess.run(PIP + [CLKIT], check=True)",
        "    except subprocess.CalledProcessError:  # the version's tag is not published (yet)",
        f'        print("no tag v{version} in the repository: installing clkit from its default branch")',
        '        subprocess.run(PIP + [CLKIT.rsplit("@", 1)[0]], check=True)',
        '    if "clkit" in sys.modules:',
        '        print("clkit was upgraded: restart the session (Runtime > Restart session), run again")',
        "",
        "import clkit.notebook  # noqa: E402",
        "",
        "# how the prose quotes each glued value: glue() prints `name = value` in this format",
    ]
    if formats:
        items = [f"    {k!r}: {v!r}," for k, v in sorted(formats.items())]
        lines += ["clkit.notebook.set_formats({", *items, "})"]
    else:
        lines += ["clkit.notebook.set_formats({})"]
    return "\n".join(lines)


def notebook_code(source: str, book: myst_notebook.Book) -> str:
    """A code cell for Colab: ``glue`` from clkit, equation labels in comments as their numbers."""
    source = myst_notebook.glue_from_clkit(source)
    for label in sorted(book.equations, key=len, reverse=True):
        number = book.labels.get(label)
        if number and label in source:
            source = re.sub(rf"\(?(?<![\w-]){re.escape(label)}(?![\w-])\)?|`{re.escape(label)}`",
                            number, source)
    return source


# --------------------------------------------------------------------------------------------
# The notebook
# --------------------------------------------------------------------------------------------
def expected_notebook(path: Path, source: str, repo_url: str, book: myst_notebook.Book | None = None,
                      values: dict[str, dict[str, str]] | None = None,
                      values_from: str = "") -> tuple[str, list[str]]:
    """The Colab notebook of one chapter and the glue keys its prose quotes without a value
    (``book``: the labels of all chapters; by default only this chapter's, so references to other
    chapters stay unresolved; ``values``: the book's glued values)."""
    notebook = jupytext.reads(source, fmt="md:myst")
    digest = code_digest(notebook)
    if book is None:
        book = book_labels({path.stem: source})
    site = pages_url(repo_url)
    link = f"{site}/chapters/{path.stem}.html"
    note = (
        f"*Generated from the book's MyST source; the executed chapter is online at <{link}>. "
        f"A number marked {MARKER} is the value the book's run computed (on a CPU, at the default "
        "scale); run the notebook and each code cell prints the values it glues as `name = value`, "
        "and shows its tables and figures. A CPU runtime reproduces the book's numbers; on a GPU "
        "runtime clkit computes on CUDA (small differences), unless `CLKIT_DEVICE=cpu` is set before "
        "clkit is imported (see the set-up cell).*"
    )
    converter = myst_notebook.convert_cells(
        notebook.cells, path.stem, book, values=values or {}, badge=lambda: note, macros=tex_macros(),
        marker=MARKER, link_base=f"{site}/chapters/", figures_inline=True,
    )
    if converter.problems:
        raise ValueError(f"{path.relative_to(REPO)}: cannot convert to plain Markdown: {converter.problems}")
    formats = {k: v for k, v in converter.glue_keys.items() if v}
    setup_done = False
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if not setup_done and INSTALL_RE.search(cell.source):
            cell.source = setup_cell(repo_url, clkit_version(), formats)
            setup_done = True
        else:
            cell.source = notebook_code(cell.source, book)
        if tags & HIDDEN_TAGS:
            cell.metadata["cellView"] = "form"
    if not setup_done:
        raise ValueError(f"{path.relative_to(REPO)} has no Colab set-up cell")
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{path.stem}-{index:03d}"  # stable ids keep the generated file reproducible
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["colab"] = {"provenance": [], "name": f"{path.stem}.ipynb"}
    quoted = set(converter.glue_keys)
    notebook.metadata["clbook"] = {
        "code_sha256": digest,
        "clkit_version": clkit_version(),
        "book_values": _text_values({k: v for k, v in (values or {}).items() if k in quoted}),
    }
    return nbformat.writes(notebook) + "\n", converter.missing


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def compact_png(data: str) -> str:
    """A figure (base64 PNG) in 256 colours, about a third of the bytes, for a cell attachment
    (the reader's own run shows the full image); unchanged without Pillow."""
    try:
        import base64
        import io

        from PIL import Image
    except ImportError:
        return data
    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def _compacted(values: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {k: ({**v, "image/png": compact_png(v["image/png"])} if "image/png" in v else v)
            for k, v in values.items()}


def chapter_values(path: Path, source: str, target: Path, build: Path | None,
                   execute: bool) -> tuple[dict[str, dict[str, str]] | None, str]:
    """The book's values for one chapter and where they came from (see the module docstring)."""
    notebook = jupytext.reads(source, fmt="md:myst")
    if build is not None:
        found = values_from_build(path.stem, notebook, build)
        if found is not None:
            return _compacted(found), "build"
    found = values_from_committed(target, code_digest(notebook))
    if found is not None:
        return found, "committed"  # its figures are compacted already
    if execute:
        try:
            return _compacted(values_from_execution(path)), "executed"
        except Exception as err:  # noqa: BLE001 - a failing chapter keeps its keys, reported
            print(f"warning: {path.stem} failed to execute: {str(err)[-300:]}", file=sys.stderr)
    return None, ""


def sync(check: bool, notebooks: Path | None = None, build: Path | None = BUILD, execute: bool = False,
         report: list[str] | None = None, used: dict[str, str] | None = None) -> list[str]:
    """Write (or, with ``check``, only compare) every chapter's source and notebook; return what differs.

    ``notebooks``: write the notebooks to this folder instead of ``notebooks/`` and leave the MyST
    sources alone (a trial run on a temporary copy; the book's values still come from a build or
    the committed notebooks). ``report`` (a list) receives one line per chapter whose prose quotes
    values the sync could not find; ``used`` (a dict) the chapters' texts the notebooks were made
    from (chapters may change while the sync runs)."""
    repo_url = repository_url()
    stale: list[str] = []
    wanted = set()
    sources = {path.stem: expected_source(path, repo_url) for path in chapters()}
    if used is not None:
        used.update(sources)
    book = book_labels(sources)
    for path in chapters():
        source = sources[path.stem]
        target = (notebooks or NOTEBOOKS) / f"{path.stem}.ipynb"
        committed = NOTEBOOKS / f"{path.stem}.ipynb"
        wanted.add(target.name)
        values, origin = chapter_values(path, source, committed, build, execute and not check)
        notebook, missing = expected_notebook(path, source, repo_url, book, values, origin)
        if missing and report is not None:
            report.append(f"{path.stem}: no value of the book's run for {', '.join(missing)} "
                          "(build the book, or --execute, then sync again)")
        pairs = [(target, notebook, None)]
        if notebooks is None:
            # the chapter itself only when its install line names another repository, from the file
            # as it is now (its author may have edited it while the chapters executed)
            current = path.read_text(encoding="utf-8")
            pairs.insert(0, (path, expected_source(path, repo_url, current), current))
        for file, text, current in pairs:
            if current is None and file.exists():
                current = file.read_text(encoding="utf-8")
            if current != text:
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
    parser.add_argument("--build", type=Path, default=BUILD,
                        help="an executed build of the book (its _build folder) to take the values from")
    parser.add_argument("--execute", action="store_true",
                        help="run (at default scale) each chapter whose values are neither in the build "
                             "nor in its committed notebook")
    args = parser.parse_args()
    report: list[str] = []
    stale = sync(check=args.check, notebooks=args.out, build=args.build, execute=args.execute, report=report)
    verb = "out of sync" if args.check else "written"
    for name in stale:
        print(f"{verb}: {name}")
    for line in report:
        print(f"warning: {line}", file=sys.stderr)
    if args.check and stale:
        print("run: python scripts/sync_notebooks.py", file=sys.stderr)
        return 1
    if report and not args.check:
        print(f"{len(report)} notebook(s) quote glue keys without the book's values: build the book "
              "(bash scripts/build-book.sh) or add --execute, then sync again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
