"""Figures for the experiments: mIoU against factor and compute, per-class gains, retention, label
panels.

Every function saves a PNG (dpi 120) atomically and returns its path; nothing is ever shown. Each
figure is a :class:`matplotlib.figure.Figure` drawn by its own Agg canvas, without pyplot: no
global backend switch, no registry of open figures, nothing changed for the program importing
softseg. :func:`colorize` turns a hard label map or a soft one into an RGB picture: a soft pixel is
the mixture ``sum_c p_c * color_c`` of its class colours, so mass lost to ignored pixels darkens it
towards black, as ignored pixels are black in hard maps. For example::

    rows = softseg.study.stats.summarize(softseg.study.grid.load_results("runs/grid"))
    plot_miou_vs_factor(rows, "runs/miou.png")
    plot_class_gains(rows, "runs/gains.png", method="soft", baseline="nearest")
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..atomic import atomic_write_bytes
from ..data.colors import _numpy, colorize

__all__ = [
    "DPI",
    "colorize",
    "plot_class_gains",
    "plot_label_panel",
    "plot_miou_vs_compute",
    "plot_miou_vs_factor",
    "plot_retention",
]

DPI = 120

ArrayLike = torch.Tensor | np.ndarray


# --------------------------------------------------------------------------- helpers
def _figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches with its own Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Render ``fig`` to PNG in memory and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write_bytes(path, buf.getvalue())


def _factor_label(factor: float) -> str:
    return f"{factor:g}"


def _grouped_offsets(n_bars: int, width: float = 0.8) -> tuple[np.ndarray, float]:
    """Centre offsets of ``n_bars`` bars sharing one group slot of ``width``, and the bar width."""
    bar = width / n_bars
    return (np.arange(n_bars) - (n_bars - 1) / 2) * bar, bar


def _image_hwc(image: ArrayLike) -> np.ndarray:
    """A ``(3, H, W)`` uint8 or float ``[0, 1]`` image as float ``(H, W, 3)`` in ``[0, 1]``."""
    x = _numpy(image)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {tuple(x.shape)}")
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        # resampled images overshoot [0, 1] slightly with bicubic kernels
        x = np.clip(x.astype(np.float64), 0.0, 1.0)
    else:
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {x.dtype}")
    return x.transpose(1, 2, 0)


# --------------------------------------------------------------------------- summary plots
def _by_method(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Summary rows grouped by method (order of appearance), each group sorted by factor."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["method"]), []).append(row)
    return {m: sorted(g, key=lambda r: float(r["factor"])) for m, g in groups.items()}


def _save_miou_axes(fig, ax, xlabel: str, title: str, path: str | os.PathLike) -> Path:
    """Label, grid and legend of an mIoU plot (one line per label method), then save it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(title="labels")
    fig.tight_layout()
    return _save(fig, path)


def plot_miou_vs_factor(summary_rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """mIoU (mean ± std over seeds) against the down-sampling factor, one line per method.

    ``summary_rows`` are :func:`softseg.study.stats.summarize` rows (``method``, ``factor``,
    ``miou_mean``, ``miou_std``; a missing std draws no error bar). The x axis is log2 with the
    factors as ticks.
    """
    if not summary_rows:
        raise ValueError("summary_rows is empty; nothing to plot")
    factors = sorted({float(r["factor"]) for r in summary_rows})
    if factors[0] <= 0:
        raise ValueError(f"factors must be positive for a log2 axis, got {factors[0]}")
    fig = _figure(6.4, 4.4)
    ax = fig.subplots()
    for method, rows in _by_method(summary_rows).items():
        x = [float(r["factor"]) for r in rows]
        y = [float(r["miou_mean"]) for r in rows]
        err = [0.0 if r.get("miou_std") is None else float(r["miou_std"]) for r in rows]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(factors)
    ax.set_xticklabels([_factor_label(f) for f in factors])
    ax.xaxis.set_minor_locator(NullLocator())  # log axes add unlabeled minor ticks otherwise
    if len(factors) == 1:  # a single tick would sit on a zero-width axis
        ax.set_xlim(factors[0] / 1.5, factors[0] * 1.5)
    title = "mIoU against down-sampling factor (mean ± std over seeds)"
    return _save_miou_axes(fig, ax, "down-sampling factor", title, path)


def plot_miou_vs_compute(
    summary_rows: Sequence[Mapping[str, Any]], path: str | os.PathLike
) -> Path:
    """mIoU (mean ± std over seeds) against training time per epoch, one line per method.

    The paper's question read off one figure: does a method at a larger factor reach the accuracy
    of another at a smaller one for less compute? Each point is a (method, factor) summary row
    (``epoch_time_s_median`` over seeds on a log x axis: robust to one seed that shared its
    machine), labelled with its factor; rows without a time are left out.
    """
    timed = [r for r in summary_rows if r.get("epoch_time_s_median") is not None]
    if not timed:
        raise ValueError("no summary row has epoch_time_s_median; nothing to plot")
    fig = _figure(6.4, 4.4)
    ax = fig.subplots()
    for method, rows in _by_method(timed).items():
        x = [float(r["epoch_time_s_median"]) for r in rows]
        y = [float(r["miou_mean"]) for r in rows]
        err = [0.0 if r.get("miou_std") is None else float(r["miou_std"]) for r in rows]
        line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
        for xi, yi, row in zip(x, y, rows, strict=True):
            ax.annotate(
                f"x{_factor_label(float(row['factor']))}", (xi, yi), textcoords="offset points",
                xytext=(4, -10), fontsize=7, color=line[0].get_color(),
            )  # fmt: skip
    ax.set_xscale("log")
    xlabel = "training time per epoch (s, median over seeds, log scale)"
    return _save_miou_axes(
        fig, ax, xlabel, "mIoU against compute (points labelled by factor)", path
    )


def _iou(row: Mapping[str, Any], name: str) -> float:
    value = (row.get("per_class") or {}).get(name)
    return math.nan if value is None else float(value)


def plot_class_gains(
    summary_rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    method: str = "soft",
    baseline: str = "nearest",
) -> Path:
    """Per-class IoU gain of ``method`` over ``baseline``: a bar group per class, a bar per factor.

    Only factors where both methods ran are drawn; a class without an IoU on either side has no
    bar there.
    """
    by_key = {(str(r["method"]), float(r["factor"])): r for r in summary_rows}
    factors = sorted(f for (m, f) in by_key if m == method and (baseline, f) in by_key)
    if not factors:
        methods = sorted({m for m, _ in by_key})
        raise ValueError(
            f"no factor has both {method!r} and {baseline!r} results; methods present: {methods}"
        )
    classes: dict[str, None] = {}
    for f in factors:
        for key in ((method, f), (baseline, f)):
            classes.update(dict.fromkeys(by_key[key].get("per_class") or {}))
    if not classes:
        raise ValueError("the summary rows have no per-class IoUs")
    names = list(classes)
    x = np.arange(len(names))
    offsets, width = _grouped_offsets(len(factors))
    # wider for many classes and many factors, so bars stay visible
    width_in = max(6.4, 0.45 * len(names) * max(1.0, len(factors) / 2) + 2)
    fig = _figure(width_in, 4.6)
    ax = fig.subplots()
    for offset, f in zip(offsets, factors, strict=True):
        gains = [_iou(by_key[(method, f)], c) - _iou(by_key[(baseline, f)], c) for c in names]
        ax.bar(x + offset, gains, width, label=f"factor {_factor_label(f)}")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel(f"IoU gain (points): {method} − {baseline}")
    ax.set_title(f"Per-class IoU gain of {method} labels over {baseline}")
    ax.grid(True, axis="y", alpha=0.3)
    # outside the axes: gains can be positive or negative, so no corner is reliably empty
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _save(fig, path)


def plot_retention(
    table: Mapping[str, Sequence[float] | ArrayLike],
    class_names: Sequence[str],
    path: str | os.PathLike,
) -> Path:
    """Class retention (0–100 %) per class, one bar per method (the keys of ``table``).

    ``table[method]`` holds one percentage per class in ``class_names`` order; NaN (a class absent
    from the labels) draws no bar.
    """
    if not table:
        raise ValueError("table is empty; expected {method: retention per class}")
    names = list(class_names)
    values = {}
    for method, row in table.items():
        arr = _numpy(row).astype(np.float64).reshape(-1)
        if len(arr) != len(names):
            raise ValueError(
                f"table[{method!r}] has {len(arr)} values but there are {len(names)} class names"
            )
        values[method] = arr
    x = np.arange(len(names))
    offsets, width = _grouped_offsets(len(values))
    fig = _figure(max(6.4, 0.5 * len(names) + 2), 4.6)
    ax = fig.subplots()
    for offset, (method, arr) in zip(offsets, values.items(), strict=True):
        ax.bar(x + offset, arr, width, label=method)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, 118)  # the band above 100 % holds the legend, clear of every bar
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("class mass kept (%)")
    ax.set_title("Class retention of label down-sampling methods")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper center", ncol=len(values), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- label panels
def plot_label_panel(
    image: ArrayLike,
    rows: Sequence[tuple[str, ArrayLike] | None],
    colors: Sequence[Sequence[float]],
    path: str | os.PathLike,
    *,
    ignore_index: int | None = 255,
    max_cols: int = 4,
) -> Path:
    """The image followed by titled label panels, all at the image's display size.

    Each of ``rows`` is ``(title, map)``: a hard map ``(H, W)`` of integers or soft labels
    ``(C, h, w)`` (see :func:`colorize`). Maps of any resolution are stretched over the image's
    extent with nearest interpolation, so low-resolution pixels show as blocks. Panels wrap after
    ``max_cols`` columns; a ``None`` in ``rows`` leaves its place blank (to start a new row).
    """
    img = _image_hwc(image)
    H, W = img.shape[:2]
    panels = [(f"image {H}×{W}", img)]
    for entry in rows:
        if entry is None:
            panels.append(None)
            continue
        title, labels = entry
        rgb = colorize(labels, colors, ignore_index)
        panels.append((f"{title} {rgb.shape[0]}×{rgb.shape[1]}", rgb))
    ncols = min(len(panels), max_cols)
    nrows = math.ceil(len(panels) / ncols)
    # panel size from the image aspect ratio, within reason for very wide or tall images
    panel_w = 3.2
    panel_h = float(np.clip(panel_w * H / W, 1.0, 6.0)) + 0.4
    fig = _figure(panel_w * ncols, panel_h * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, panel in zip(axes.flat, panels, strict=False):  # spare axes stay blank
        if panel is None:
            continue
        title, picture = panel
        # the same extent for every panel: identical display size whatever the map's resolution
        ax.imshow(picture, interpolation="nearest", extent=(0, W, H, 0))
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
