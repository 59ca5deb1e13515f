"""One figure style for the whole book (matplotlib + seaborn).

:func:`use_style` makes figures crisp on every screen: in a notebook (the book's build, Jupyter,
Colab) figures are emitted as double-resolution PNG (``retina``: drawn at 2x, displayed at 1x, so
sharp on high-DPI screens and in the PDF); files saved with ``savefig`` get 200 dpi. Not SVG: a
mesh or a scatter of thousands of points makes an SVG of megabytes (4.8 MB for one heat map of
chapter 2), where the 2x PNG stays near 100 kB. Legends are framed by
default, so that a legend placed in a corner of the axes stays readable over grid lines; place it
off the data (``loc=...`` in an empty corner, or ``bbox_to_anchor`` outside the axes).
"""

from __future__ import annotations

import matplotlib as mpl
import seaborn as sns

__all__ = ["PALETTE", "use_style", "figure_size", "INLINE_FORMATS"]

#: colour-blind-safe palette; chapters index it rather than naming colours.
PALETTE: list[tuple[float, float, float]] = sns.color_palette("colorblind")

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

    set_matplotlib_formats(*formats)
    return True


def use_style() -> None:
    """Apply the book's style: seaborn ``whitegrid`` + ``colorblind``, readable sizes, framed
    legends, crisp output (retina PNG in notebooks, 200 dpi files)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
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
