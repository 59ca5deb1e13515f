"""One figure style for the whole book (matplotlib + seaborn)."""

from __future__ import annotations

import matplotlib as mpl
import seaborn as sns

__all__ = ["PALETTE", "use_style", "figure_size"]

#: colour-blind-safe palette; chapters index it rather than naming colours.
PALETTE: list[tuple[float, float, float]] = sns.color_palette("colorblind")

_WIDTH_IN = 6.4


def use_style() -> None:
    """Apply the book's style: seaborn ``whitegrid`` + ``colorblind``, readable sizes, tight saves."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "figure.constrained_layout.use": True,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "lines.linewidth": 1.8,
            "image.cmap": "viridis",
        }
    )


def figure_size(ncols: int = 1, aspect: float = 0.62) -> tuple[float, float]:
    """Width and height (inches) for a row of ``ncols`` panels in the book's text width."""
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    width = _WIDTH_IN if ncols == 1 else min(3.4 * ncols, 11.0)
    return width, width / ncols * aspect * (1 if ncols == 1 else 1.15)
