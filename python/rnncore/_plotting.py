"""The matplotlib plumbing shared by the demos' PNGs; matplotlib stays an optional extra."""

from __future__ import annotations

import os
from typing import Any


def log_scale_axes() -> tuple[Any, Any, Any] | None:
    """(pyplot, figure, axes) with a log-scale y axis, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.2))
    axes.set_yscale("log")
    return plt, figure, axes


def save_figure(plt: Any, figure: Any, axes: Any, path: str) -> None:
    """Legend and grid, then the PNG at `path` (its folder created), and the figure closed."""
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def pyplot() -> Any | None:
    """matplotlib.pyplot drawing to files only, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_plain_figure(plt: Any, figure: Any, axes_list: Any, path: str, legend: bool = True) -> None:
    """A figure of several linear axes: legends and grids (or neither: an image), the PNG at
    `path` (its folder created), and the figure closed."""
    for axes in axes_list:
        if legend:
            axes.legend(fontsize=8)
            axes.grid(True, alpha=0.3)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
