"""MyST chapter markdown -> plain Markdown + LaTeX that Jupyter and Colab render.

The book's chapters are MyST notebooks: their markdown holds Sphinx directives and roles
(``{prf:theorem}``, ``{cite:p}``, ``{glue:text}``, ``{numref}`` ...) that only the book's build
understands. This module rewrites them as a notebook reader sees them in the book:

* ``{prf:…}`` blocks become titled block quotes (``> **Theorem 2.3 (title).**``), proofs end in ∎;
* citations become author–year text from ``references.bib`` (``Chen et al. (2020)``), the
  ``{bibliography}`` a list of the works the chapter cites;
* cross-references become the words the book prints (``Theorem 2.3``, ``Figure 2.1``, ``(2.4)``,
  a section's title), with the book's numbering: per chapter, one counter shared by all theorem-like
  blocks (see ``prf_realtyp_to_countertyp`` in ``_config.yml`` and ``clbook.py``);
* labelled equations get ``\\tag{2.4}``; ``(label)=`` targets and ``%`` comments disappear;
* ``{glue:text}`` placeholders become the glued value when values are given (from an executed
  run), followed by a marker, and otherwise the glued name in code font; a ``{glue}``/``{glue:md}``
  table becomes the glued Markdown; a ``{glue:figure}`` becomes its numbered caption as text, with
  the glued image as a cell attachment when asked (``figures_inline``);
* references into another chapter become links to the online chapter when a ``link_base`` is given;
* admonitions become titled block quotes, ``{code-block}`` a plain code fence.

The book's TeX macros (``mathjax3_config`` of ``_config.yml``) and any ``\\newcommand`` a cell
makes are expanded in every cell (:func:`expand_macros`), so that each cell's math stands alone:
GitHub's and VS Code's notebook renderers do not carry definitions across cells.

Used by ``scripts/sync_notebooks.py`` (the Colab notebooks) and by ``clbook.py`` (the ``.ipynb``
download of each chapter, with outputs and glued values). Standard library + pybtex/latexcodec
(both come with sphinxcontrib-bibtex).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

#: sphinx-proof's directive types. All but ``proof`` and ``algorithm`` share one counter (the
#: book's ``prf_realtyp_to_countertyp``), so "Lemma 2.4" follows "Theorem 2.3".
PROOF_TYPES: tuple[str, ...] = (
    "theorem", "lemma", "proposition", "corollary", "definition", "remark", "conjecture",
    "example", "assumption", "axiom", "criterion", "observation", "property", "notation",
    "algorithm",
)
SHARED_COUNTER: frozenset[str] = frozenset(PROOF_TYPES) - {"algorithm"}

ADMONITIONS: dict[str, str] = {
    "note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
    "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
    "seealso": "See also", "admonition": "", "dropdown": "", "margin": "", "sidebar": "",
    "topic": "", "epigraph": "", "card": "",
}

FENCE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:.-]+)\}\s*(?P<arg>.*)$")
PLAIN_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?!.*\{)")
TARGET = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
ROLE_ACROSS_LINES = re.compile(r"(?<!`)\{[\w:.-]+\}`[^`\n]*\n[^`]*?`")
ROLE = re.compile(r"\{(?P<name>[\w:.-]+)\}(?P<ticks>`+)(?P<body>.+?)(?P=ticks)", re.DOTALL)
LABELLED_DOLLAR = re.compile(r"\$\$(?P<body>.+?)\$\$[ \t]*\((?P<label>[^()\s]+)\)", re.DOTALL)
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
MATH_ENV = re.compile(r"^\s*\\begin\{(align|equation|gather|multline|alignat|eqnarray|flalign)\*?\}")


def chapter_number(stem: str) -> int | None:
    """``02_projection_heads`` -> 2; ``None`` for a page that is not a numbered chapter."""
    m = re.match(r"(\d+)_", PurePosixPath(stem).name)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------
# Bibliography
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    key: str
    authors: tuple[str, ...]  # last names, with "von" parts
    full_authors: tuple[str, ...]  # "Chen, T."
    year: str
    title: str
    venue: str

    def short(self) -> str:
        if len(self.authors) == 1:
            return self.authors[0]
        if len(self.authors) == 2:
            return f"{self.authors[0]} and {self.authors[1]}"
        return f"{self.authors[0]} et al."

    def entry(self) -> str:
        names = self.full_authors
        who = (names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2
               else ", ".join(names[:-1]) + ", and " + names[-1])
        venue = f" *{self.venue}*." if self.venue else ""
        return f"{who} ({self.year}). {self.title}.{venue}"


def _latex_to_text(text: str) -> str:
    try:
        import latexcodec  # noqa: F401  (registers the "latex" codec)

        text = text.encode("utf-8").decode("latex")
    except Exception:  # noqa: BLE001 - plain text is a fine fallback
        pass
    return re.sub(r"[{}]", "", text).replace("--", "–").strip()


def load_bibliography(path: Path) -> dict[str, Reference]:
    """The entries of a BibTeX file, keyed by citation key."""
    from pybtex.database import parse_file

    data = parse_file(str(path))
    refs: dict[str, Reference] = {}
    for key, entry in data.entries.items():
        persons = entry.persons.get("author", [])
        last = tuple(_latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in persons)
        full = tuple(
            _latex_to_text(" ".join(p.prelast_names + p.last_names))
            + (", " + " ".join(f"{_latex_to_text(n)[:1]}." for n in p.first_names + p.middle_names)
               if p.first_names or p.middle_names else "")
            for p in persons
        )
        fields = entry.fields
        venue = fields.get("journal") or fields.get("booktitle") or fields.get("howpublished") or ""
        refs[key] = Reference(
            key, last or ("Anonymous",), full or ("Anonymous",), fields.get("year", "n.d."),
            _latex_to_text(fields.get("title", key)), _latex_to_text(venue),
        )
    return refs


# --------------------------------------------------------------------------------------------
# Parsing MyST blocks
# --------------------------------------------------------------------------------------------
@dataclass
class Directive:
    name: str
    argument: str
    options: dict[str, str]
    body: str


def _closing(lines: list[str], start: int, char: str, length: int) -> int:
    pattern = re.compile(rf"^\s*{re.escape(char)}{{{length},}}\s*$")
    for j in range(start, len(lines)):
        if pattern.match(lines[j]):
            return j
    return len(lines)


def _split_options(body_lines: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    i = 0
    if body_lines and body_lines[0].strip() == "---":
        end = next((j for j in range(1, len(body_lines)) if body_lines[j].strip() == "---"), None)
        if end is not None:
            import yaml

            loaded = yaml.safe_load("\n".join(body_lines[1:end])) or {}
            options = {str(k): str(v) for k, v in loaded.items()}
            i = end + 1
    while i < len(body_lines):
        m = re.match(r"^\s*:([\w-]+):\s*(.*)$", body_lines[i])
        if not m:
            break
        options[m.group(1)] = m.group(2).strip()
        i += 1
    while i < len(body_lines) and not body_lines[i].strip():
        i += 1
    return options, body_lines[i:]


def iter_blocks(text: str) -> Iterable[str | Directive | tuple[str, str]]:
    """Yield a chapter markdown's pieces: lines (``str``), directives, and plain code fences
    (``("code", text)``), in order."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE_OPEN.match(line)
        if m:
            fence = m.group("fence")
            end = _closing(lines, i + 1, fence[0], len(fence))
            options, body = _split_options(lines[i + 1:end])
            indent = len(m.group("indent"))
            body = [b[indent:] if b[:indent].strip() == "" else b for b in body]
            yield Directive(m.group("name"), m.group("arg").strip(), options, "\n".join(body).rstrip())
            i = end + 1
            continue
        m = PLAIN_FENCE.match(line)
        if m:
            fence = m.group("fence")
            end = _closing(lines, i + 1, fence[0], len(fence))
            yield ("code", "\n".join(lines[i:end + 1]))
            i = end + 1
            continue
        yield line
        i += 1


# --------------------------------------------------------------------------------------------
# Labels: what the book prints for each cross-reference
# --------------------------------------------------------------------------------------------
@dataclass
class Book:
    """Cross-reference texts of all chapters and the bibliography."""

    labels: dict[str, str] = field(default_factory=dict)  # label -> "Theorem 2.3", "(2.4)", title
    references: dict[str, Reference] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # label -> the chapter (stem) defining it
    equations: set[str] = field(default_factory=set)  # labels of equations

    def anchor(self, label: str) -> str:
        """The HTML id Sphinx gives a label (``equation-<label>`` for an equation)."""
        return f"equation-{label}" if label in self.equations else label

    def collect(self, stem: str, markdown_cells: Iterable[str]) -> None:
        """Number the labelled items of one chapter, in document order, as the book does."""
        markdown_cells = list(markdown_cells)
        chapter = chapter_number(stem)
        prefix = f"{chapter}." if chapter is not None else ""
        counters: dict[str, int] = {}
        pending_target: str | None = None

        def bump(kind: str) -> str:
            counters[kind] = counters.get(kind, 0) + 1
            return f"{prefix}{counters[kind]}"

        def walk(text: str) -> None:
            nonlocal pending_target
            for block in iter_blocks(text):
                if isinstance(block, Directive):
                    name = block.name
                    if name.startswith("prf:") and name[4:] in PROOF_TYPES:
                        kind = name[4:]
                        if "nonumber" not in block.options:
                            number = bump("theorem" if kind in SHARED_COUNTER else kind)
                            if "label" in block.options:
                                self.labels[block.options["label"]] = f"{kind.title()} {number}"
                        elif "label" in block.options:
                            self.labels[block.options["label"]] = kind.title()
                    elif name in ("glue:figure", "figure") and "name" in block.options:
                        self.labels[block.options["name"]] = f"Figure {bump('figure')}"
                    elif name in ("table", "list-table", "csv-table") and "name" in block.options:
                        self.labels[block.options["name"]] = f"Table {bump('table')}"
                    walk(block.body)
                elif isinstance(block, tuple):
                    continue
                else:
                    target = TARGET.match(block)
                    heading = HEADING.match(block)
                    if target:
                        pending_target = target.group("label")
                    elif heading and pending_target:
                        self.labels[pending_target] = heading.group("text")
                        pending_target = None
                    elif block.strip():
                        pending_target = None

        before = set(self.labels)
        for cell in markdown_cells:
            walk(_without_dollar_labels(cell))
        # labelled equations ($$ ... $$ (label) and {math} with :label:), in document order
        counter = 0
        for cell in markdown_cells:
            for label in _equation_labels_in_order(cell):
                counter += 1
                self.labels[label] = f"({prefix}{counter})"
                self.equations.add(label)
        for label in set(self.labels) - before:
            self.where[label] = stem


def _without_dollar_labels(text: str) -> str:
    return LABELLED_DOLLAR.sub(lambda m: f"$${m.group('body')}$$", text)


def _equation_labels_in_order(text: str) -> list[str]:
    """Labels of ``$$…$$ (label)`` and ``{math}`` blocks of one markdown cell, in order."""
    found: list[tuple[int, str]] = []
    for m in LABELLED_DOLLAR.finditer(text):
        found.append((m.start(), m.group("label")))
    for m in re.finditer(r"^\s*(`{3,}|:{3,})\{math\}[^\n]*\n((?:\s*:[\w-]+:[^\n]*\n)*)", text, re.M):
        label = re.search(r":label:\s*(\S+)", m.group(2))
        if label:
            found.append((m.start(), label.group(1)))
    return [label for _, label in sorted(found)]


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------
@dataclass
class Converter:
    """Converts the markdown cells of one chapter."""

    book: Book
    stem: str
    values: dict[str, dict[str, str]] | None = None  # glue key -> MIME bundle of the glued value
    marker: str = ""  # appended to every glued value put into the prose ("" for none)
    link_base: str | None = None  # "https://…/chapters/": references to other chapters become links
    figures_inline: bool = False  # a {glue:figure} shows the book's image (a cell attachment)
    cited: list[str] = field(default_factory=list)
    figure_keys: set[str] = field(default_factory=set)
    glue_keys: dict[str, str] = field(default_factory=dict)  # key -> first format spec in the prose
    missing: list[str] = field(default_factory=list)  # glue keys the prose quotes without a value
    attachments: dict[str, dict[str, str]] = field(default_factory=dict)  # of the current cell
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.values is not None:  # a bare string is a text/plain value
            self.values = {k: (v if isinstance(v, dict) else {"text/plain": v}) for k, v in self.values.items()}

    # -- roles -----------------------------------------------------------------------------
    def _cite(self, keys: str, textual: bool) -> str:
        parts = []
        for key in [k.strip() for k in keys.split(",") if k.strip()]:
            ref = self.book.references.get(key)
            if ref is None:
                self.problems.append(f"unknown citation key {key!r}")
                parts.append(key)
                continue
            if key not in self.cited:
                self.cited.append(key)
            parts.append(f"{ref.short()} ({ref.year})" if textual else f"{ref.short()}, {ref.year}")
        return "; ".join(parts) if textual else f"({'; '.join(parts)})"

    def _xref(self, body: str, kind: str) -> str:
        m = EXPLICIT.match(body.strip())
        if m:
            text, target = m.group("text"), m.group("target")
            if "%s" in text or "{number}" in text:
                number = self.book.labels.get(target, "?").split(" ")[-1].strip("()")
                text = text.replace("%s", number).replace("{number}", number)
            return self._linked(text, target)
        target = body.strip()
        if target not in self.book.labels:
            self.problems.append(f"unresolved {kind} reference {target!r}")
            return target
        text = self.roles(self.book.labels[target]) if kind == "ref" else self.book.labels[target]
        return self._linked(text, target)

    def _linked(self, text: str, target: str) -> str:
        """``text``, as a link to the online chapter when ``target`` lives in another chapter."""
        stem = self.book.where.get(target)
        if self.link_base is None or stem is None or stem == self.stem:
            return text
        page = f"{self.link_base}{stem}.html"
        return f"[{text}]({page}#{self.book.anchor(target)})"

    def _glue_text(self, body: str) -> str:
        key, _, spec = body.partition(":")
        key = key.strip()
        self.glue_keys.setdefault(key, spec)
        data = (self.values or {}).get(key)
        if data is not None and ("text/plain" in data or "text/markdown" in data):
            if "text/markdown" in data and "\n" not in data["text/markdown"].strip():
                return data["text/markdown"].strip() + self.marker
            raw = data.get("text/plain", "")
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw
            if spec:
                try:
                    kind = spec[-1]
                    value = (int(value) if kind in "bcdoxX" else float(value) if kind in "eEfFgGn%"
                             else str(value) if kind == "s" else value)
                    return format(value, spec) + self.marker
                except (TypeError, ValueError):
                    pass
            return str(value) + self.marker
        if key not in self.missing:
            self.missing.append(key)
        return f"`{key}`"

    def _glue_block(self, key: str) -> str:
        """A glued table (or other block) placed by a ``{glue}``/``{glue:md}`` directive."""
        self.glue_keys.setdefault(key, "")
        data = (self.values or {}).get(key) or {}
        if "text/markdown" in data:
            note = (f"\n\n*{self.marker.strip()} The table as the book's run computed it; the code cell "
                    "above displays it when you run it.*") if self.marker else ""
            return data["text/markdown"].strip() + note
        if key not in self.missing:
            self.missing.append(key)
        return self._glue_text(key) if "text/plain" in data else f"`{key}`"

    def roles(self, text: str) -> str:
        def replace(m: re.Match[str]) -> str:
            name, body = m.group("name"), m.group("body")
            if name in ("cite", "cite:p", "cite:ps", "cite:alp"):
                return self._cite(body, textual=False)
            if name in ("cite:t", "cite:ts", "cite:alt"):
                return self._cite(body, textual=True)
            if name in ("cite:year",):
                return ", ".join(self.book.references[k.strip()].year for k in body.split(","))
            if name in ("prf:ref", "numref", "ref", "doc"):
                return self._xref(body, name)
            if name == "eq":
                return self._xref(body, name)
            if name in ("glue:text", "glue", "glue:md", "glue:any"):
                return self._glue_text(body)
            if name == "glue:math":
                text = self._glue_text(body)
                return text if text.startswith("`") else f"${text.removesuffix(self.marker)}${self.marker}"
            if name == "math":
                return f"${body}$"
            if name in ("sub", "sup"):
                return f"<{name}>{body}</{name}>"
            if name in ("abbr", "term", "kbd", "file", "command", "code", "samp", "guilabel"):
                return f"`{body}`" if name in ("kbd", "file", "command", "code", "samp") else body
            self.problems.append(f"unknown role {{{name}}}")
            return body

        return ROLE.sub(replace, text)

    # -- blocks ----------------------------------------------------------------------------
    def convert(self, text: str) -> str:
        """One markdown cell (or a directive's body) as plain Markdown."""
        # a role may wrap onto the next line (MyST reads it as one): join it, outside code fences
        text = ROLE_ACROSS_LINES.sub(lambda m: re.sub(r"\s*\n\s*", " ", m.group(0)), text)
        text = LABELLED_DOLLAR.sub(lambda m: f"$${self._tagged(m.group('body'), m.group('label'))}$$", text)
        out: list[str] = []
        in_math = False
        for block in iter_blocks(text):
            if isinstance(block, Directive):
                out.append(self.directive(block))
            elif isinstance(block, tuple):
                out.append(block[1])
            else:
                if TARGET.match(block) or re.match(r"^\s*%", block):
                    continue
                if block.count("$$") % 2 == 1:
                    in_math = not in_math
                if not in_math and MATH_ENV.match(block):
                    block = "$$" + block  # a bare amsmath environment: give it display delimiters
                    in_math = "env"
                elif in_math == "env" and re.match(r"^\s*\\end\{", block) and not _open_env(out, block):
                    block = block + "$$"
                    in_math = False
                out.append(self.roles(block))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")

    def _tag(self, label: str) -> str:
        return self.book.labels.get(label, "?").strip("()")

    def _tagged(self, body: str, label: str) -> str:
        """``body`` with ``\\tag{n}``: inside a lone top-level environment, else at the end."""
        tag = f"\\tag{{{self._tag(label)}}}"
        m = re.match(r"^\s*\\begin\{(\w+\*?)\}.*\\end\{\1\}\s*$", body, re.DOTALL)
        if m and m.group(1).rstrip("*") in ("align", "equation", "gather", "multline", "alignat", "flalign"):
            end = body.rstrip().rfind("\\end{")
            return f"{body[:end].rstrip()} {tag}\n{body.rstrip()[end:]}"
        return f"{body.rstrip()} {tag}"

    def directive(self, d: Directive) -> str:
        name = d.name
        if name.startswith("prf:"):
            kind = name[4:]
            if kind == "proof":
                body = self.convert(d.body)
                return _quote(f"*Proof.* {body}".rstrip() + " ∎" if "\n" not in body
                              else f"*Proof.*\n\n{body}\n\n∎")
            number = ""
            label = d.options.get("label")
            if label and label in self.book.labels:
                number = self.book.labels[label].split(" ", 1)[1] if " " in self.book.labels[label] else ""
            head = f"**{kind.title()}{' ' + number if number else ''}"
            head += f" ({self.roles(d.argument)}).**" if d.argument else ".**"
            return _quote(f"{head}\n\n{self.convert(d.body)}")
        if name in ("glue:figure", "figure"):
            label = self.book.labels.get(d.options.get("name", ""), "Figure")
            caption = self.convert(d.body) if d.body else ""
            if name == "glue:figure":
                self.figure_keys.add(d.argument)
                where = "*(drawn by the code cell that computes it)*"
                image = ((self.values or {}).get(d.argument) or {}).get("image/png")
                if self.figures_inline and image:
                    name_png = f"{d.argument}.png"
                    self.attachments[name_png] = {"image/png": image}
                    alt = d.options.get("alt", "").replace("]", ")").replace("[", "(")
                    where = ("*(as the book's run drew it; the code cell that computes it draws it when "
                             "you run it)*")
                    return (f"![{alt}](attachment:{name_png})\n\n"
                            + _quote(f"**{label}.** {caption} {where}".strip()))
            else:
                alt = d.options.get("alt", caption)
                return f"![{alt}]({d.argument})\n\n**{label}.** {caption}".strip()
            return _quote(f"**{label}.** {caption} {where}".strip())
        if name == "math":
            label = d.options.get("label")
            return f"$$\n{self._tagged(d.body, label) if label else d.body}\n$$"
        if name == "bibliography":
            if not self.cited:
                return ""
            refs = sorted((self.book.references[k] for k in self.cited), key=lambda r: (r.authors, r.year))
            return "\n".join(f"- {r.entry()}" for r in refs)
        if name in ("tableofcontents", "glue:math", "nb-exec-table"):
            return ""
        if name in ("glue", "glue:any", "glue:md", "glue:text"):
            return self._glue_block(d.argument)
        if name in ("code-block", "code", "sourcecode"):
            return f"```{d.argument}\n{d.body}\n```"
        if name in ADMONITIONS:
            title = self.roles(d.argument) or ADMONITIONS[name]
            head = f"**{title}.**\n\n" if title else ""
            return _quote(head + self.convert(d.body))
        if name in ("table", "list-table", "csv-table"):
            label = self.book.labels.get(d.options.get("name", ""), "Table")
            return f"**{label}.** {self.roles(d.argument)}\n\n{self.convert(d.body)}"
        if name == "colab-badge":
            return ""  # replaced by the caller (a link back to the executed chapter)
        self.problems.append(f"unknown directive {{{name}}}")
        return self.convert(d.body)


def _open_env(out: list[str], line: str) -> bool:
    """Whether ``line`` closes an environment nested inside the top-level one (e.g. ``cases``)."""
    name = re.match(r"^\s*\\end\{([^}]+)\}", line)
    if not name or name.group(1).rstrip("*") in ("align", "equation", "gather", "multline",
                                                    "alignat", "eqnarray", "flalign"):
        return False
    return True


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.strip("\n").split("\n"))


NEWCOMMAND = re.compile(r"\\(?:re)?newcommand\s*\{?\\([A-Za-z]+)\}?\s*(?:\[(\d)\])?\s*")


def _group(text: str, start: int) -> tuple[str, int] | None:
    """The TeX argument at ``text[start:]`` (after spaces): a balanced ``{…}`` group's content, a
    control word, or one character; with the index after it (``None`` at the end)."""
    i = start
    while i < len(text) and text[i] in " \t\n":
        i += 1
    if i >= len(text):
        return None
    if text[i] == "{":
        depth = 0
        for j in range(i, len(text)):
            if text[j] == "\\":
                continue
            if text[j] == "{" and (j == 0 or text[j - 1] != "\\"):
                depth += 1
            elif text[j] == "}" and text[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[i + 1:j], j + 1
        return None
    if text[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", text[i:])
        return (m.group(0), i + m.end()) if m else None
    return text[i], i + 1


def _macro_table(macros: dict[str, object]) -> dict[str, tuple[str, int]]:
    return {name: ((str(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (str(v), 0))
            for name, v in macros.items()}


def expand_tex_macros(tex: str, macros: dict[str, object]) -> str:
    """``tex`` with every use of the ``macros`` (MathJax's ``tex.macros`` form, ``{"R":
    "\\mathbb{R}", "norm": ["\\lVert #1 \\rVert", 1]}``) replaced by its body, arguments
    substituted, until none is left (nested macros included). A body is braced where TeX would
    take it as one argument (after ``^``, ``_`` or a control word), as MathJax treats it."""
    table = _macro_table(macros)
    if not table:
        return tex
    pattern = re.compile(r"\\(" + "|".join(sorted(map(re.escape, table), key=len, reverse=True))
                         + r")(?![A-Za-z])")
    for _ in range(20):
        out, pos, changed = [], 0, False
        while True:
            m = pattern.search(tex, pos)
            if m is None:
                break
            body, nargs = table[m.group(1)]
            end, args = m.end(), []
            for _k in range(nargs):
                got = _group(tex, end)
                if got is None:
                    break
                args.append(got[0])
                end = got[1]
            if len(args) < nargs:
                pos = m.end()
                continue
            for k, arg in enumerate(args, 1):
                body = body.replace(f"#{k}", arg)
            before = tex[pos:m.start()]
            prev = (("".join(out) + before).rstrip())
            if prev.endswith(("^", "_")) or re.search(r"\\[A-Za-z]+$", prev):
                if not body.lstrip().startswith(("^", "_")):
                    body = "{" + body + "}"
            # a control word directly followed by a letter must stay separate
            if re.search(r"\\[A-Za-z]+$", body) and re.match(r"[A-Za-z]", tex[end:end + 1]):
                body += " "
            out.append(before + body)
            pos, changed = end, True
        out.append(tex[pos:])
        tex = "".join(out)
        if not changed:
            break
    return tex


CODE_SPAN = re.compile(r"(^(\s*(?:>\s*)*)(`{3,}|~{3,})[^\n]*\n.*?^\2\3[ \t]*$|`[^`\n]*`)", re.M | re.S)


def expand_macros(text: str, macros: dict[str, object]) -> tuple[str, dict[str, object]]:
    """A markdown cell with the ``macros`` expanded outside code, and the ``\\newcommand``
    definitions the cell makes itself removed and expanded too (returned with the macros, so that
    later cells get them). Each cell's math then stands alone."""
    macros = dict(macros)
    before = set(macros)
    out, last = [], 0
    segments: list[tuple[bool, str]] = []
    for m in CODE_SPAN.finditer(text):
        segments.append((False, text[last:m.start()]))
        segments.append((True, m.group(0)))
        last = m.end()
    segments.append((False, text[last:]))
    for is_code, segment in segments:
        if is_code:
            out.append(segment)
            continue
        while True:
            m = NEWCOMMAND.search(segment)
            if not m:
                break
            body = _group(segment, m.end())
            if body is None:
                break
            macros[m.group(1)] = [body[0], int(m.group(2))] if m.group(2) else body[0]
            segment = segment[:m.start()] + segment[body[1]:]
        out.append(expand_tex_macros(segment, macros))
    result = "".join(out)
    if macros.keys() != before:  # the cell defined macros: drop the math blocks left empty
        result = re.sub(r"^[ \t]*(\$\$?)\s*\1[ \t]*$\n?", "", result, flags=re.M)
    return result, macros


GLUE_IMPORT = re.compile(r"^(\s*)from myst_nb import glue\b.*$", re.M)


def glue_from_clkit(code: str) -> str:
    """``from myst_nb import glue`` -> ``from clkit.notebook import glue`` (myst-nb's glue in the
    book; outside it, prints ``name = value`` or shows the table/figure)."""
    return GLUE_IMPORT.sub(r"\1from clkit.notebook import glue  # prints or shows each glued value", code)


def glued_values(notebook: Any) -> dict[str, dict[str, str]]:
    """Glue key -> the glued value's MIME bundle (unprefixed), from an executed notebook's
    outputs (myst-nb's ``glue`` records)."""
    values: dict[str, dict[str, str]] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            glued = (output.get("metadata", {}).get("scrapbook") or {})
            key = glued.get("name")
            if key:
                prefix = glued.get("mime_prefix", "")
                values[key] = {k.removeprefix(prefix): v for k, v in output.get("data", {}).items()
                               if isinstance(v, str)}
    return values


def glue_figures_visible(code: str, keys: set[str]) -> str:
    """Turn ``glue("fig-…", fig, display=False)`` into ``display=True`` for the figure keys, so that
    the figure appears in the cell's output in Jupyter/Colab (the book shows it in the prose)."""
    for key in keys:
        code = re.sub(
            rf"(glue\(\s*['\"]{re.escape(key)}['\"]\s*,[^()]*?display\s*=\s*)False",
            r"\1True", code,
        )
    return code


def convert_cells(cells: list, stem: str, book: Book, values: dict[str, Any] | None = None,
                  badge: Callable[[], str] | None = None, macros: dict[str, object] | None = None,
                  marker: str = "", link_base: str | None = None, figures_inline: bool = False,
                  show_glued_figures: bool = False) -> Converter:
    """Convert the markdown cells (``nbformat`` cells) of one chapter in place; return the converter
    (its ``problems`` list names what could not be converted, ``missing`` the glue keys quoted
    without a value).

    ``values``: glue key -> MIME bundle (or ``text/plain`` string) put into the prose, followed by
    ``marker``; ``macros``: the book's TeX macros, expanded in every cell (with any
    ``\\newcommand`` a cell defines), so that no cell depends on another; ``link_base``: references
    to another chapter's labels become links to ``<link_base><stem>.html#<id>``;
    ``figures_inline``: a ``{glue:figure}`` shows the glued image as a cell attachment;
    ``show_glued_figures``: the figures' ``glue(..., display=False)`` calls become
    ``display=True`` (for a notebook that uses myst-nb's ``glue``)."""
    conv = Converter(book, stem, values, marker=marker, link_base=link_base, figures_inline=figures_inline)
    badge_re = re.compile(r"^(`{3,}|:{3,})\{colab-badge\}[ \t]*\n[ \t]*\1[ \t]*$", re.M)
    current = dict(macros or {})
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        source = cell.source
        if badge is not None:
            source = badge_re.sub(lambda _: badge(), source)
        conv.attachments = {}
        source = conv.convert(source)
        if macros is not None:
            source, current = expand_macros(source, current)
        cell.source = source
        if conv.attachments:
            cell["attachments"] = dict(conv.attachments)
    if show_glued_figures:
        for cell in cells:
            if cell.cell_type == "code" and conv.figure_keys:
                cell.source = glue_figures_visible(cell.source, conv.figure_keys)
    return conv


def collect_book(chapters: dict[str, list[str]], bib: Path | None) -> Book:
    """Labels of every chapter (``stem -> markdown cell sources``) and the bibliography."""
    book = Book(references=load_bibliography(bib) if bib and bib.is_file() else {})
    for stem, cells in chapters.items():
        book.collect(stem, cells)
    return book
