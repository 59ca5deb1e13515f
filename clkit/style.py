"""One figure style for the whole book: seaborn's theme (``whitegrid``, ``colorblind``) plus a few overrides.

:func:`use_style` makes figures crisp on every screen: in a notebook (the book's build, Jupyter,
Colab) figures are emitted as double-resolution PNG (``retina``: drawn at 2x, displayed at 1x, so
sharp on high-DPI screens and in the PDF); files saved with ``savefig`` get 200 dpi. Not SVG: a
mesh or a scatter of thousands of points makes an SVG of megabytes (4.8 MB for one heat map of
chapter 2), where the 2x PNG stays near 100 kB. Legends are framed by
default, so that a legend placed in a corner of the axes stays readable over grid lines; place it
off the data (``loc=...`` in an empty corner, or ``fig.legend(loc="outside lower center")``).

The saved or displayed image is exactly ``figsize`` (``savefig.bbox = "standard"``), laid out by
constrained layout: no tight bounding box, which would draw every figure a second time. What
constrained layout does not place (a legend anchored outside the axes with ``bbox_to_anchor``)
can then stick out and be cut; :func:`figure_overflow` measures it, and the test suite's build
(``CLKIT_CHECK_FIGURES=1``) fails on any figure of the book that overflows.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib as mpl
import seaborn

__all__ = ["PALETTE", "use_style", "figure_size", "figure_overflow", "INLINE_FORMATS"]

#: colour-blind-safe palette (seaborn's "colorblind"); chapters index it rather than naming colours.
PALETTE: list[tuple[float, float, float]] = list(seaborn.color_palette("colorblind"))

#: The format figures are displayed in inside a notebook: PNG at twice the resolution, with the
#: display size in its metadata (the HTML book, Jupyter and Colab honour it).
INLINE_FORMATS: tuple[str, ...] = ("retina",)

_WIDTH_IN = 6.4


def _set_inline_formats(formats: tuple[str, ...]) -> bool:
    """Ask IPython's inline backend for ``formats``; ``False`` outside an IPython kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return False
    if get_ipython() is None:
        return False
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    # bbox_inches=None: use savefig.bbox ("standard"), not the inline backend's default "tight"
    set_matplotlib_formats(*formats, bbox_inches=None)
    if os.environ.get("CLKIT_CHECK_FIGURES", "").strip() not in ("", "0"):
        _check_figures_fit(get_ipython())
    return True


def figure_overflow(fig: Any) -> float:
    """How far (inches) anything drawn in ``fig`` sticks out of its canvas; 0 when it all fits.

    With ``savefig.bbox = "standard"`` the saved image is exactly the canvas, so whatever lies
    outside it (a legend anchored below the axes, a title pushed up) is cut off.
    """
    tight = fig.get_tightbbox(fig.canvas.get_renderer())
    width, height = fig.get_size_inches()
    return float(max(0.0, -tight.x0, -tight.y0, tight.x1 - width, tight.y1 - height))


def _check_figures_fit(shell: Any, tolerance: float = 0.01) -> None:
    """Measure every figure the notebook displays and log it to ``figures-<pid>.jsonl``.

    Switched on by ``CLKIT_CHECK_FIGURES=1`` (the test suite's book build sets it; it costs one
    more layout pass per figure, so the book's own build does not pay it). Each line records the
    figure's axes labels, canvas size and :func:`figure_overflow`, in the claims directory
    (``$CLKIT_CLAIMS_DIR``); ``tests/test_chapters.py`` fails on any overflow above ``tolerance``
    inches. (A formatter cannot fail a cell: IPython prints a formatter's exception and goes on.)
    """
    import json

    from matplotlib.figure import Figure

    from .claims import claims_directory

    directory = claims_directory()
    if directory is None:
        return
    log = directory / f"figures-{os.getpid()}.jsonl"
    formatter = shell.display_formatter.formatters["image/png"]
    render = formatter.lookup_by_type(Figure)

    def checked(fig: Any, *args: Any, **kwargs: Any) -> Any:
        data = render(fig, *args, **kwargs)
        record = {"axes": [ax.get_title() or ax.get_xlabel() for ax in fig.axes],
                  "size_in": [float(v) for v in fig.get_size_inches()],
                  "overflow_in": figure_overflow(fig), "tolerance_in": tolerance}
        directory.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        return data

    formatter.for_type(Figure, checked)


def use_style() -> None:
    """Apply the book's style: ``seaborn.set_theme(style="whitegrid", palette="colorblind")`` and the
    book's overrides (sizes, framed legends, constrained layout, the canvas saved at exactly
    ``figsize``), with crisp output (retina PNG in notebooks, 200 dpi files).

    Example::

        import clkit, matplotlib.pyplot as plt
        clkit.use_style()
        fig, ax = plt.subplots(figsize=clkit.figure_size())
    """
    seaborn.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 200,
            # the canvas is exactly figsize, laid out by constrained layout; the test suite's
            # build checks that every figure fits it (figure_overflow)
            "savefig.bbox": "standard",
            "figure.constrained_layout.use": True,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "legend.frameon": True,
            "legend.framealpha": 0.92,
            "legend.edgecolor": "0.75",
            "legend.fancybox": False,
            "lines.linewidth": 1.8,
            "image.cmap": "viridis",
        }
    )
    _set_inline_formats(INLINE_FORMATS)


def figure_size(ncols: int = 1, aspect: float = 0.62) -> tuple[float, float]:
    """Width and height (inches) for a row of ``ncols`` panels in the book's text width."""
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    width = _WIDTH_IN if ncols == 1 else min(3.4 * ncols, 11.0)
    return width, width / ncols * aspect * (1 if ncols == 1 else 1.15)
