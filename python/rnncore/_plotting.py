"""The matplotlib plumbing shared by the demos' PNGs; matplotlib stays an optional extra."""

from __future__ import annotations

import os
from typing import Any


def pyplot() -> Any | None:
    """matplotlib.pyplot drawing to files only, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def new_axes(rows: int = 1, figsize: tuple[float, float] = (7, 4.2)) -> tuple[Any, Any, Any] | None:
    """(pyplot, figure, axes) — one axes, or an array of ``rows`` stacked ones — or None when
    matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return None
    figure, axes = plt.subplots(rows, 1, figsize=figsize)
    return plt, figure, axes


def log_scale_axes() -> tuple[Any, Any, Any] | None:
    """(pyplot, figure, axes) with a log-scale y axis, or None when matplotlib is not installed."""
    plot = new_axes()
    if plot is not None:
        plot[2].set_yscale("log")
    return plot


def _write(plt: Any, figure: Any, path: str) -> None:
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def save_figure(plt: Any, figure: Any, axes: Any, path: str) -> None:
    """Legend and grid (on each of several axes), then the PNG at `path` (its folder created),
    and the figure closed."""
    for each in getattr(axes, "flat", [axes]):
        each.legend(fontsize=8)
        each.grid(True, which="both", alpha=0.3)
    _write(plt, figure, path)


def save_plain_figure(plt: Any, figure: Any, axes_list: Any, path: str, legend: bool = True) -> None:
    """A figure of several linear axes: legends and grids (or neither: an image), the PNG at
    `path` (its folder created), and the figure closed."""
    for axes in axes_list:
        if legend:
            axes.legend(fontsize=8)
            axes.grid(True, alpha=0.3)
    _write(plt, figure, path)


def files_line(wrote_plot: bool, plot_asked: bool, png: str, data: list[str]) -> str:
    """What a command prints about its output files: the PNG and the CSVs behind it, or the CSVs
    and why there is no PNG (--no-plot, or matplotlib missing)."""
    if wrote_plot:
        return f"plot: {png} (data: {', '.join(data)})"
    reason = "--no-plot" if not plot_asked else "install matplotlib (pip install 'rnncore[plot]') for the PNG"
    return f"data: {', '.join(data)} ({reason})"
