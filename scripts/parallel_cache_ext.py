"""Sphinx extension used only by the parallel build (scripts/execute_parallel.py adds it).

In ``execute_notebooks: cache`` mode, myst-nb 1.x renders the page from the cached outputs but
writes ``_build/jupyter_execute/<doc>.ipynb`` from the notebook it read, which never received them
(``merge_match_into_notebook`` returns a copy). In ``force`` mode that file holds the outputs, and
the book uses it (the readable ``.ipynb`` download of book/_ext/clbook.py). This extension copies
the cached outputs, execution counts and notebook metadata back into the notebook myst-nb read, so
the parallel build writes the same files as a serial one.
"""

from __future__ import annotations

from typing import Any

from myst_nb.core.execute.cache import NotebookClientCache

_original_start = NotebookClientCache.start_client


def _start_client_in_place(self: NotebookClientCache) -> None:
    read = self._notebook
    _original_start(self)
    merged = self._notebook
    if merged is read or len(merged.cells) != len(read.cells):
        return
    for cell, source in zip(read.cells, merged.cells):
        if cell.cell_type == "code":
            cell.outputs = source.get("outputs", [])
            cell.execution_count = source.get("execution_count")
    read.metadata.update(merged.metadata)
    self._notebook = read


def setup(app: Any) -> dict[str, Any]:
    NotebookClientCache.start_client = _start_client_in_place  # type: ignore[method-assign]
    return {"parallel_read_safe": True, "parallel_write_safe": True}
