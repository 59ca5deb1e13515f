"""``glue`` for the book and for the same chapter run as a plain notebook (Colab, Jupyter).

Inside the book's Sphinx build (``book/_ext/clbook.py`` sets ``$CLBOOK_SPHINX_BUILD=1``, which the
chapters' kernels inherit) :func:`glue` is myst-nb's ``glue``: it records the value for
``{glue:text}``, ``{glue:md}`` and ``{glue:figure}``, and shows nothing unless ``display=True``.

Outside the book, where nothing reads myst-nb's records (``application/papermill.record/*``
outputs, which Jupyter, Colab and nbconvert do not render), it shows the value under the cell:

* a figure, a table or any object with an HTML, image or multi-line Markdown representation is
  displayed;
* a number or a short text is printed as ``name = value``, formatted as the book's prose quotes it:
  the format spec of ``{glue:text}`name:.4f``` registered with :func:`set_formats` (the generated
  notebooks do so in their set-up cell), else the value's ``text/plain`` representation, as
  myst-nb's ``{glue:text}`` without a spec; a one-line Markdown value (a formula) is displayed as
  Markdown with the same text as plain-text fallback.

The Colab notebooks (``scripts/sync_notebooks.py``) import ``glue`` from here instead of myst-nb,
so Colab needs neither myst-nb nor Sphinx.
"""

from __future__ import annotations

import os
from ast import literal_eval
from typing import Any, Mapping

__all__: list[str] = []  # nothing re-exported at top level: use ``clkit.notebook.glue``

#: Set (to "1") by the book's Sphinx extension; the kernels the build starts inherit it.
BOOK_BUILD_ENV = "CLBOOK_SPHINX_BUILD"

#: The myst-nb prefix of glued MIME types (``myst_nb.ext.glue.GLUE_PREFIX``).
GLUE_PREFIX = "application/papermill.record/"

_FORMATS: dict[str, str] = {}


def in_book() -> bool:
    """Whether this process runs inside the book's Sphinx build (``$CLBOOK_SPHINX_BUILD == "1"``)."""
    return os.environ.get(BOOK_BUILD_ENV) == "1"


def set_formats(formats: Mapping[str, str]) -> None:
    """Register format specs (``{"loss_example": ".4f"}``) used when a glued value is printed.

    Raises ``ValueError`` if ``formats`` is not a mapping of strings to strings.
    """
    if not isinstance(formats, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in formats.items()
    ):
        raise ValueError(f"formats must map glue names to format specs, got {formats!r}")
    _FORMATS.update(formats)


def format_plain_text(text: str, spec: str) -> str:
    """``text`` (a ``text/plain`` representation) formatted with ``spec`` as myst-nb's
    ``{glue:text}`` does: literal-evaluated, converted to ``int``/``float`` by the spec's type
    character, then ``format``-ed. Raises ``ValueError`` when the value does not fit the spec."""
    try:
        value: Any = literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if spec == "":
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def _bundle(variable: Any) -> dict[str, Any]:
    try:
        from IPython.core.formatters import format_display_data

        data, _ = format_display_data(variable)
        return dict(data)
    except Exception:  # noqa: BLE001 - outside IPython: the plain representation
        return {"text/plain": repr(variable)}


def _rich(data: Mapping[str, Any]) -> bool:
    if any(k.startswith("image/") or k in ("text/html", "application/pdf") for k in data):
        return True
    markdown = data.get("text/markdown")
    return isinstance(markdown, str) and "\n" in markdown.strip()


def glued_line(name: str, data: Mapping[str, Any]) -> str:
    """``name = value``, the value formatted with the registered spec (if any), else as text."""
    if "text/markdown" in data and isinstance(data["text/markdown"], str):
        return f"{name} = {data['text/markdown'].strip()}"
    text = str(data.get("text/plain", ""))
    spec = _FORMATS.get(name)
    if spec:
        try:
            text = format_plain_text(text, spec)
        except (TypeError, ValueError):
            pass
    else:
        text = format_plain_text(text, "")
    return f"{name} = {text}"


def glue(name: str, variable: Any, display: bool = True) -> None:
    """Glue ``variable`` under ``name``: myst-nb's ``glue`` inside the book, else shown under the
    cell (see the module docstring). Raises ``ValueError`` if ``name`` is not a non-empty string."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if in_book():
        from myst_nb import glue as myst_glue

        myst_glue(name, variable, display=display)
        return
    try:
        from IPython import get_ipython
        from IPython.display import display as show
    except ImportError:  # plain Python without IPython
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is None or get_ipython() is None:
        print(glued_line(name, {"text/plain": repr(variable)}))
        return
    data = _bundle(variable)
    if display or _rich(data):
        show(variable)
    elif "text/markdown" in data:  # a one-line formula: rendered, with a plain-text fallback
        line = glued_line(name, data)
        show({"text/plain": line, "text/markdown": f"`{name}` = {data['text/markdown'].strip()}"},
             raw=True)
    else:
        print(glued_line(name, data))
