"""Sphinx extension: the book as a reader gets it (issue 17).

* **Numbering per chapter.** Figures, theorem-like blocks and labelled equations are numbered
  ``<chapter>.<n>`` ("Theorem 2.3", "Figure 2.1", "(2.4)"), the chapter being the number in the
  file name (``02_projection_heads`` -> 2), so that the book's numbers cannot be mistaken for a
  paper's. Other pages number from 1 without a prefix. The chapter's title gets its number in
  the HTML (the sidebar numbers chapters through CSS counters, see ``_static/clbook.css``); in the
  PDF LaTeX's chapter counter is set to the same number.
* **Claims JSON in the site.** The claims that chapters write while they execute
  (``$CLKIT_CLAIMS_DIR`` or ``<book>/_build/claims``) are copied to ``<html>/claims/<chapter>.json``
  when the build finishes, where every chapter's claims table links.
* **Local MathJax.** When a MathJax 3 copy is present (``$CLBOOK_MATHJAX``: a folder holding
  ``tex-chtml.js``; else ``node_modules/mathjax/es5`` next to the book or in the repository, as
  ``npm install mathjax@3`` makes it), the book loads it from ``_static/mathjax/`` and renders its
  math offline; otherwise it uses Sphinx's CDN default.
* **Colab button and .ipynb download.** The header's launch button opens the chapter's generated
  notebook ``notebooks/<stem>.ipynb`` in Colab (the URL of ``colab.py``), and the download menu's
  ``.ipynb`` is the executed chapter converted to plain Markdown/LaTeX (``myst_notebook.py``),
  with its outputs and glued values (tables in the prose), so that it renders in Jupyter and re-runs
  without myst-nb (``glue`` from ``clkit.notebook``); ``clbook-notebooks.zip`` holds all of them.
* **Glue inside the book.** ``$CLBOOK_SPHINX_BUILD=1`` is set for the kernels the build starts:
  ``clkit.notebook.glue`` is myst-nb's glue there, and the claims table renders as HTML.
* **Status page.** ``{clbook-status}`` renders the table of chapters: title, run time, claims
  summary, planted errors caught (from ``_static/planted_errors.json`` when the build has it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

sys.path.insert(0, str(Path(__file__).resolve().parent))

from colab import colab_url  # noqa: E402
from myst_notebook import chapter_number  # noqa: E402

logger = logging.getLogger(__name__)

#: The MathJax files a book page needs (the other bundles and the speech engine stay out).
MATHJAX_PARTS = ("tex-chtml.js", "input", "output", "ui", "a11y", "adaptors")


# --------------------------------------------------------------------------------------------
# Numbering per chapter
# --------------------------------------------------------------------------------------------
def number_per_chapter(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """Renumber ``env.toc_fignumbers`` (figures, prf blocks, equations) as ``(chapter, n)``.

    Without a numbered toctree Sphinx counts across the whole book; the numbers it assigned
    still give each page's document order, which this keeps.
    """
    for docname, figtypes in env.toc_fignumbers.items():
        chapter = chapter_number(docname)
        prefix = (chapter,) if chapter is not None else ()
        for figtype, numbers in figtypes.items():
            ordered = sorted(numbers, key=lambda ident: numbers[ident])
            figtypes[figtype] = {ident: (*prefix, i) for i, ident in enumerate(ordered, 1)}
    _labels_in_contents(env)
    return []


def _labels_in_contents(env: BuildEnvironment) -> None:
    """A ``{prf:ref}`` in a heading shows in the page contents (the tocs) as its raw label; put
    the words the reference prints there instead ("Proposition 1.2")."""
    proofs = getattr(env, "proof_list", {})
    for toc in env.tocs.values():
        for text in list(toc.findall(nodes.Text)):
            label = text.astext().strip()
            if label not in proofs:
                continue
            match = proofs[label]
            numbers = env.toc_fignumbers.get(match["docname"], {}).get(match["countertype"], {})
            number = ".".join(map(str, numbers.get(label, ())))
            words = f"{match['realtype'].title()} {number}".strip()
            text.parent.replace(text, nodes.Text(words))


def _chapter_label(chapter: int) -> nodes.inline:
    return nodes.inline("", f"{chapter} ", classes=["clbook-chapter-number"])


def _prefix(node: nodes.Element, chapter: int) -> None:
    if not any("clbook-chapter-number" in n.get("classes", []) for n in node.findall(nodes.inline)):
        node.insert(0, _chapter_label(chapter))


def number_chapters_in_navigation(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """Chapter numbers in the titles the sidebar, the page title and prev/next links use."""
    for docname in env.found_docs:
        chapter = chapter_number(docname)
        if chapter is None or not docname.startswith("chapters/"):
            continue
        if docname in env.titles:
            _prefix(env.titles[docname], chapter)
        toc = env.tocs.get(docname)
        reference = next(iter(toc.findall(nodes.reference)), None) if toc is not None else None
        if reference is not None:
            _prefix(reference, chapter)
    return []


def number_chapter_titles(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Put the chapter number before the chapter's title (HTML), or set LaTeX's chapter counter."""
    if app.builder.format == "latex":
        # a formula in a heading: typeset in the heading, plain text in the PDF's bookmarks
        # (hyperref cannot put unicode-math's symbols there)
        for title in list(doctree.findall(nodes.title)):
            for math in list(title.findall(nodes.math)):
                tex = math.astext()
                plain = re.sub(r"[^\w\s+\-/=<>(),.]", "", re.sub(r"\\([A-Za-z]+)", r"\1", tex))
                math.parent.replace(math, nodes.raw("", f"\\texorpdfstring{{\\({tex}\\)}}{{{plain}}}",
                                                    format="latex"))
        # Sphinx puts a labelled display inside equation + split, where amsmath refuses the
        # display-level multline (MathJax accepts it): use mathtools' inner multlined there
        for block in list(doctree.findall(nodes.math_block)):
            tex = block.astext()
            if "\\begin{multline" in tex and not block.get("nowrap"):
                tex = re.sub(r"\\(begin|end)\{multline(\*?)\}", r"\\\1{multlined}", tex)
                block.children = [nodes.Text(tex)]
        for start in doctree.findall(addnodes.start_of_file):
            chapter = chapter_number(start.get("docname", ""))
            if chapter is not None:
                start.insert(0, nodes.raw("", f"\\setcounter{{chapter}}{{{chapter - 1}}}\n", format="latex"))
        return
    chapter = chapter_number(docname)
    if chapter is None or app.builder.format != "html" or not docname.startswith("chapters/"):
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not section.children or not isinstance(section[0], nodes.title):
        return
    _prefix(section[0], chapter)


# --------------------------------------------------------------------------------------------
# Claims JSON
# --------------------------------------------------------------------------------------------
def claims_source(app: Sphinx) -> Path:
    explicit = os.environ.get("CLKIT_CLAIMS_DIR")
    return Path(explicit) if explicit else Path(app.srcdir) / "_build" / "claims"


def publish_claims(app: Sphinx, exception: Exception | None) -> None:
    """Copy each chapter's claims file to ``<html>/claims/<stem>.json`` (after execution)."""
    if exception is not None or app.builder.format != "html":
        return
    source = claims_source(app)
    stems = {Path(doc).name for doc in app.env.found_docs}
    files = [p for p in sorted(source.glob("*.json")) if p.stem in stems] if source.is_dir() else []
    target = Path(app.outdir) / "claims"
    target.mkdir(exist_ok=True)
    for path in files:
        shutil.copy2(path, target / path.name)
    logger.info(f"[clbook] published {len(files)} claims file(s) to {target}")


# --------------------------------------------------------------------------------------------
# Local MathJax
# --------------------------------------------------------------------------------------------
def find_mathjax(srcdir: Path) -> Path | None:
    """A MathJax 3 ``es5`` folder: ``$CLBOOK_MATHJAX``, else ``node_modules/mathjax/es5`` beside
    the book or in the folders above it."""
    explicit = os.environ.get("CLBOOK_MATHJAX")
    candidates = [Path(explicit)] if explicit else []
    candidates += [folder / "node_modules" / "mathjax" / "es5" for folder in (srcdir, *srcdir.parents)]
    for folder in candidates:
        if (folder / "tex-chtml.js").is_file():
            return folder
    if explicit:
        logger.warning(f"[clbook] CLBOOK_MATHJAX={explicit} holds no tex-chtml.js; using the CDN")
    return None


def use_local_mathjax(app: Sphinx) -> None:
    folder = find_mathjax(Path(app.srcdir))
    app.env_mathjax = folder  # type: ignore[attr-defined]
    if folder is not None and app.builder.format == "html":
        app.config.mathjax_path = "mathjax/tex-chtml.js"
        logger.info(f"[clbook] MathJax served from the site (copied from {folder})")


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    folder = getattr(app, "env_mathjax", None)
    if exception is not None or folder is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    for part in MATHJAX_PARTS:
        src = folder / part
        if src.is_dir():
            shutil.copytree(src, target / part, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, target / part)


# --------------------------------------------------------------------------------------------
# Colab launch button and .ipynb download
# --------------------------------------------------------------------------------------------
def _glued_values(executed: Any, glue_file: Path) -> dict[str, dict[str, str]]:
    """Glue key -> the glued value's MIME bundle (``text/plain``, ``text/markdown``, ``image/png``
    ...): from myst-nb's ``<page>.glue.json``, else from the executed notebook's outputs."""
    from myst_notebook import glued_values

    values: dict[str, dict[str, str]] = {}
    if glue_file.is_file():
        for key, output in json.loads(glue_file.read_text(encoding="utf-8")).items():
            data = output.get("data") or {}
            values[key] = {k: v for k, v in data.items() if isinstance(v, str)}
    for key, data in glued_values(executed).items():
        values.setdefault(key, data)
    return values


def _show_glued_figures(executed: Any, keys: set[str]) -> None:
    """Glued outputs carry a prefixed MIME type that Jupyter does not show; unprefix the figures
    that the text places (``{glue:figure}``), so that they show in their cells."""
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            glued = (output.get("metadata", {}).get("scrapbook") or {})
            if glued.get("name") in keys and glued.get("mime_prefix"):
                prefix = glued["mime_prefix"]
                output["data"] = {k.removeprefix(prefix): v for k, v in output.get("data", {}).items()}


def readable_notebook(app: Sphinx, docname: str) -> Any | None:
    """The executed chapter with its markdown converted to plain Markdown/LaTeX (or ``None``)."""
    import nbformat

    import myst_notebook as mn

    executed_path = Path(app.outdir).parent / "jupyter_execute" / f"{docname}.ipynb"
    if not executed_path.is_file():
        return None
    executed = nbformat.read(executed_path, as_version=4)
    book = getattr(app, "clbook_labels", None)
    if book is None:
        chapters = {}
        for doc in sorted(app.env.found_docs):
            if chapter_number(doc) is None:
                continue
            path = Path(app.env.doc2path(doc))
            cells = _markdown_cells(path)
            if cells is not None:
                chapters[Path(doc).name] = cells
        book = mn.collect_book(chapters, Path(app.srcdir) / "references.bib")
        app.clbook_labels = book  # type: ignore[attr-defined]
    values = _glued_values(executed, executed_path.with_name(f"{Path(docname).name}.glue.json"))
    note = ("*The chapter as the book's build executed it, with its outputs and numbers, in plain "
            "Markdown and LaTeX; the book's page is " + f"{Path(docname).name}.html.*")
    macros = app.config.mathjax3_config.get("tex", {}).get("macros", {}) if app.config.mathjax3_config else {}
    conv = mn.convert_cells(executed.cells, Path(docname).name, book, values=values, badge=lambda: note,
                            macros=macros)
    _show_glued_figures(executed, conv.figure_keys)
    for cell in executed.cells:
        if cell.cell_type == "code":
            cell.source = mn.glue_from_clkit(cell.source)
    for index, cell in enumerate(executed.cells):
        cell.id = f"{Path(docname).name}-{index:03d}"
    for problem in conv.problems:  # tests/test_notebooks.py fails on these; the book need not
        logger.info(f"[clbook] {docname}.ipynb: {problem}")
    return executed


def _markdown_cells(path: Path) -> list[str] | None:
    try:
        import jupytext

        notebook = jupytext.read(path, fmt="md:myst")
    except Exception:  # noqa: BLE001 - a page that is not a MyST notebook has no cells
        return None
    return [c.source for c in notebook.cells if c.cell_type == "markdown"]


def book_pdf(app: Sphinx) -> Path | None:
    """The PDF of the whole book, when ``scripts/build-pdf.sh`` has made one (``$CLBOOK_PDF`` or
    ``<book>/_build/latex/clbook.pdf``)."""
    explicit = os.environ.get("CLBOOK_PDF")
    path = Path(explicit) if explicit else Path(app.srcdir) / "_build" / "latex" / "clbook.pdf"
    return path if path.is_file() else None


NOTEBOOKS_ZIP = "clbook-notebooks.zip"


def publish_notebooks_zip(app: Sphinx, exception: Exception | None) -> None:
    """Every chapter's readable executed notebook (the download menu's ``.ipynb``) in one zip,
    ``<html>/clbook-notebooks.zip``; reproducible (fixed dates, sorted names)."""
    import zipfile

    if exception is not None or app.builder.format != "html":
        return
    notebooks = sorted((Path(app.outdir) / "_sources" / "chapters").glob("*.ipynb"))
    if not notebooks:
        return
    target = Path(app.outdir) / NOTEBOOKS_ZIP
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in notebooks:
            info = zipfile.ZipInfo(f"clbook-notebooks/{path.name}", date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    logger.info(f"[clbook] {len(notebooks)} executed notebook(s) zipped to {target}")


def publish_pdf(app: Sphinx, exception: Exception | None) -> None:
    pdf = book_pdf(app)
    if exception is None and pdf is not None and app.builder.format == "html":
        shutil.copy2(pdf, Path(app.outdir) / "clbook.pdf")
        logger.info(f"[clbook] published the book's PDF ({pdf})")


def launch_and_download(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                        doctree: nodes.document | None) -> None:
    """Point the Colab button at ``notebooks/<stem>.ipynb``; serve a readable ``.ipynb``; offer
    the PDF of the whole book in the download menu when the build has one."""
    buttons = context.get("header_buttons", [])
    if book_pdf(app) is not None:
        for group in buttons:
            if group.get("label") == "download-buttons":
                group["buttons"].append({
                    "type": "link", "url": context["pathto"]("clbook.pdf", 1), "text": "Book (PDF)",
                    "tooltip": "The whole book as one PDF, typeset with LaTeX", "icon": "fas fa-book",
                    "label": "download-book-pdf-button",
                })
    chapter = chapter_number(pagename) is not None and pagename.startswith("chapters/")
    if chapter and context.get("ipynb_source"):
        for group in buttons:
            if group.get("label") == "download-buttons":
                group["buttons"].append({
                    "type": "link", "url": context["pathto"](NOTEBOOKS_ZIP, 1),
                    "text": "All chapters (.ipynb, zip)", "icon": "fas fa-file-archive",
                    "tooltip": "Every chapter as an executed notebook, with its outputs and numbers",
                    "label": "download-notebooks-zip-button",
                })
    options = app.config.html_theme_options
    for group in list(buttons):
        if group.get("label") == "launch-buttons":
            if not chapter:
                buttons.remove(group)
                continue
            target = colab_url(options.get("repository_url", ""), options.get("repository_branch", "main"),
                               pagename)
            for button in group.get("buttons", []):
                if button.get("text") == "Colab":
                    button["url"] = target
                    button["tooltip"] = "Open this chapter as a notebook in Colab"
    if not chapter or not context.get("ipynb_source"):
        return
    import nbformat

    try:
        notebook = readable_notebook(app, pagename)
    except Exception as err:  # noqa: BLE001 - the theme's executed copy stays as the download
        logger.info(f"[clbook] {pagename}.ipynb kept as executed (conversion failed: {err})")
        return
    if notebook is not None:
        target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)


# --------------------------------------------------------------------------------------------
# Status page
# --------------------------------------------------------------------------------------------
class status_table(nodes.General, nodes.Element):
    """Placeholder, filled in when the page is written (every chapter has executed by then)."""


class StatusDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        return [status_table()]


def _planted(app: Sphinx) -> tuple[dict[str, list[dict[str, Any]]] | None, str]:
    candidates = [Path(os.environ["CLBOOK_PLANTED_JSON"])] if os.environ.get("CLBOOK_PLANTED_JSON") else []
    candidates.append(Path(app.srcdir) / "_static" / "planted_errors.json")
    for path in candidates:
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            records = data.get("outcomes", data) if isinstance(data, dict) else data
            by_chapter: dict[str, list[dict[str, Any]]] = {}
            for record in records:
                by_chapter.setdefault(str(record.get("chapter", "")), []).append(record)
            return by_chapter, path.name
    return None, ""


def _exec_seconds(app: Sphinx, docname: str) -> float | None:
    data = (getattr(app.env, "nb_metadata", {}) or {}).get(docname, {}).get("exec_data") or {}
    runtime = data.get("runtime")
    return float(runtime) if isinstance(runtime, (int, float)) else None


def _table(headers: list[str], widths: tuple[int, ...], *extra_classes: str) -> tuple[nodes.table, nodes.tbody]:
    """An empty status-page table with a header row: (the table, its body to append rows to)."""
    table = nodes.table(classes=["clbook-status", *extra_classes])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    thead = nodes.thead()
    group += thead
    thead += nodes.row("", *(nodes.entry("", nodes.paragraph(text=h)) for h in headers))
    tbody = nodes.tbody()
    group += tbody
    return table, tbody


def fill_status(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    placeholders = list(doctree.findall(status_table))
    if not placeholders:
        return
    planted, planted_file = _planted(app)
    claims_dir = claims_source(app)
    table, tbody = _table(["Chapter", "Run time", "Claims", "Planted errors caught"], (30, 10, 45, 15))
    chapters = [d for d in app.env.found_docs if chapter_number(d) is not None and d.startswith("chapters/")]
    for doc in sorted(chapters):
        stem = Path(doc).name
        title = app.env.titles[doc].astext() if doc in app.env.titles else stem
        ref = nodes.reference("", "", internal=True, refuri=app.builder.get_relative_uri(docname, doc))
        ref += nodes.Text(title)
        seconds = _exec_seconds(app, doc)
        claims_file = claims_dir / f"{stem}.json"
        if claims_file.is_file():
            payload = json.loads(claims_file.read_text(encoding="utf-8"))
            summary = payload.get("summary") or f"{len(payload.get('claims', []))} claims"
            claims_cell = nodes.paragraph("", "")
            claims_cell += nodes.Text(summary + " (")
            claims_cell += nodes.reference("", "JSON", refuri=f"claims/{stem}.json")
            claims_cell += nodes.Text(")")
        else:
            claims_cell = nodes.paragraph(text="no claims file in this build")
        if planted is None:
            planted_text = "—"
        else:
            records = planted.get(stem, [])
            caught = [r for r in records if r.get("caught")]
            kinds = [str(r.get("kind") or "claim") for r in caught]
            by_kind = ", ".join(f"{kinds.count(k)} by a {k}" for k in dict.fromkeys(kinds))
            planted_text = (f"{len(caught)} of {len(records)}" + (f" ({by_kind})" if by_kind else "")
                            if records else "none planted")
        row = nodes.row()
        row += nodes.entry("", nodes.paragraph("", "", ref))
        row += nodes.entry("", nodes.paragraph(text=f"{seconds:.1f} s" if seconds is not None else "—"))
        row += nodes.entry("", claims_cell)
        row += nodes.entry("", nodes.paragraph(text=planted_text))
        tbody += row
    note = (
        f"Planted errors: outcomes from {planted_file} (each is a deliberately wrong formula planted in "
        "clkit; with derivation and identity failures recorded but not raised, a chapter catches it "
        "when one of its own result or bound claims fails). The table below names, for each, the "
        "claim that caught it and its kind."
        if planted is not None else
        "Planted errors: no record of a planted-error run was available to this build "
        "(run scripts/plant_error.py --science --json book/_static/planted_errors.json before building)."
    )
    content: list[nodes.Node] = [table, nodes.paragraph(text=note)]
    if planted:
        content.append(_planted_table(planted))
    for placeholder in placeholders:
        placeholder.replace_self(content)


def _planted_table(planted: dict[str, list[dict[str, Any]]]) -> nodes.table:
    """One row per planted error: chapter, what is wrong, and the claim (with its kind) that caught it."""
    table, tbody = _table(["Chapter", "Planted error", "Caught by"], (15, 45, 40), "clbook-planted")
    for stem in sorted(planted):
        for r in planted[stem]:
            what = f"{r.get('id', '')}: {r.get('description', '')}"
            if r.get("caught"):
                detail = str(r.get("detail", ""))
                name = detail.split("claim failed: ", 1)[-1].split(": measured", 1)[0]
                caught_by = f"{r.get('kind') or 'claim'}: {name}"
            else:
                caught_by = f"NOT CAUGHT ({r.get('detail', '')})"
            tbody += nodes.row("", *(nodes.entry("", nodes.paragraph(text=t))
                                     for t in (stem, what, caught_by)))
    return table


# --------------------------------------------------------------------------------------------
# The PDF: the book's TeX macros in the LaTeX preamble
# --------------------------------------------------------------------------------------------
def latex_macros(app: Sphinx, config: Any) -> None:
    """Define ``mathjax3_config.tex.macros`` for LaTeX too (``\\DeclareRobustCommand`` overrides
    LaTeX's own ``\\P``, ``\\L``, ``\\C`` without complaint)."""
    macros = ((config.mathjax3_config or {}).get("tex", {}) or {}).get("macros", {}) or {}
    lines = ["\\usepackage{mathtools}"]
    for name, value in macros.items():
        body, nargs = (value[0], int(value[1])) if isinstance(value, (list, tuple)) else (value, 0)
        if not body.lstrip().startswith(("^", "_")):
            body = "{" + body + "}"  # one math atom: \\widetilde\\L must work as in MathJax
        lines.append(f"\\DeclareRobustCommand{{\\{name}}}{f'[{nargs}]' if nargs else ''}{{{body}}}")
    elements = dict(config.latex_elements or {})
    elements["preamble"] = elements.get("preamble", "") + "\n% the book's TeX macros (mathjax3_config)\n" + "\n".join(lines) + "\n"
    config.latex_elements = elements


def _enclosing_docname(env: BuildEnvironment, node: nodes.Node, parent_tag: str) -> str | None:
    """The document a node of the assembled LaTeX doctree comes from (its ``start_of_file``)."""
    while node is not None:
        node = node.parent
        if node is not None and "docname" in node.attributes:
            return node["docname"]
    return None


def number_proofs_in_latex() -> None:
    """sphinx-proof finds a block's document in the PDF by matching the page title against section
    names, which misses (the theorem boxes of the PDF had no number); look up ``start_of_file``."""
    import sphinx_proof.nodes

    sphinx_proof.nodes.find_parent = _enclosing_docname


def latex_class_without_bbm(app: Sphinx) -> None:
    """sphinx-jupyterbook-latex's class needs ``bbm.sty``, which Debian ships only in the 1.4 GB
    texlive-fonts-extra: fall back to ``\\mathbb`` when it is missing."""
    cls = Path(app.outdir) / "jupyterBook.cls"
    if app.builder.format != "latex" or not cls.is_file():
        return
    text = cls.read_text(encoding="utf-8")
    fallback = "\\IfFileExists{bbm.sty}{\\RequirePackage{bbm}}{\\providecommand{\\mathbbm}[1]{\\mathbb{##1}}}"
    cls.write_text(text.replace("\\RequirePackage{bbm}", fallback), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Author-year bibliography
# --------------------------------------------------------------------------------------------
def register_bibliography_style() -> None:
    """pybtex style ``clbook_authoryear``: the plain style's entries, sorted by author and year,
    labelled "Chen et al., 2020" (the in-text citations are author-year already)."""
    import pybtex.plugin
    from pybtex.style.formatting.plain import Style as PlainStyle
    from pybtex.style.labels import BaseLabelStyle

    from myst_notebook import _latex_to_text

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):  # type: ignore[override]
            seen: dict[str, int] = {}
            labels = []
            for entry in sorted_entries:
                names = [_latex_to_text(" ".join(p.prelast_names + p.last_names))
                         for p in entry.persons.get("author", [])] or ["Anonymous"]
                who = (names[0] if len(names) == 1 else
                       f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al.")
                labels.append(f"{who}, {entry.fields.get('year', 'n.d.')}")
                seen[labels[-1]] = seen.get(labels[-1], 0) + 1
            suffix: dict[str, int] = {}
            for label in labels:
                if seen[label] > 1:  # two works of the same authors and year: 2020a, 2020b
                    suffix[label] = suffix.get(label, 0) + 1
                    yield label + "abcdefghijklmnopqrstuvwxyz"[suffix[label] - 1]
                else:
                    yield label

    class AuthorYearStyle(PlainStyle):
        default_label_style = "clbook_authoryear"
        default_sorting_style = "author_year_title"

    for group, name, cls in (("pybtex.style.labels", "clbook_authoryear", AuthorYearLabels),
                             ("pybtex.style.formatting", "clbook_authoryear", AuthorYearStyle)):
        pybtex.plugin.register_plugin(group, name, cls, force=True)


# --------------------------------------------------------------------------------------------
#: Tells ``clkit.notebook.glue`` (in the kernels this build starts, which inherit the environment)
#: that it runs inside the book: myst-nb's glue there, values printed or displayed elsewhere.
BOOK_BUILD_ENV = "CLBOOK_SPHINX_BUILD"


def setup(app: Sphinx) -> dict[str, object]:
    os.environ[BOOK_BUILD_ENV] = "1"
    register_bibliography_style()
    number_proofs_in_latex()
    app.add_node(status_table)
    app.add_directive("clbook-status", StatusDirective)
    # after Sphinx's TocTreeCollector (priority 500) has counted figures, prf blocks and equations
    app.connect("env-get-updated", number_per_chapter, priority=900)
    app.connect("config-inited", latex_macros)
    app.connect("builder-inited", latex_class_without_bbm, priority=900)
    app.connect("env-updated", number_chapters_in_navigation)
    app.connect("doctree-resolved", number_chapter_titles)
    app.connect("doctree-resolved", fill_status)
    app.connect("builder-inited", use_local_mathjax)
    app.connect("build-finished", publish_claims)
    app.connect("build-finished", copy_mathjax)
    app.connect("build-finished", publish_pdf)
    app.connect("build-finished", publish_notebooks_zip)
    # after sphinx-book-theme's launch and header buttons (priority 501)
    app.connect("html-page-context", launch_and_download, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": False, "version": "1.0"}
