"""Progress bars for long loops.

In Jupyter or Colab with ipywidgets a notebook widget is shown; elsewhere tqdm's text bar, which
tqdm switches off by itself when stderr is not a terminal (so a book build's output stays clean).
"""

from __future__ import annotations

import importlib.util
from typing import Iterable, Iterator, TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str | None = None, total: int | None = None,
             disable: bool | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar (``disable=None``: shown only where it can be seen)."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return iter(tqdm(iterable, desc=desc, total=total, disable=disable, leave=False))
