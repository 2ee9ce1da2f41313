"""One training cell of a ``softseg compare`` grid: what a method name means, and its training.

A method name says how labels are made: ``nearest``, ``mode``, ``soft`` (the image's own kernel) or
``soft-<kernel>`` (soft labels with another kernel, e.g. ``soft-area``). The image is always
resampled the same way, so only the labels differ between methods.

>>> method_options("soft-area")
{'labels': 'soft', 'label_kernel': 'area'}
>>> crop_for((360, 480), 1, 43200, divisor=32)
(192, 256)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..ops.kernels import KERNELS
from ..train.config import CHECKPOINT, TrainConfig, read_checkpoint
from ..train.evaluate import build_model, evaluate_run
from ..train.inputs import load_split
from ..train.loop import train
from ..train.models import required_divisor
from ..train.runtime import machine, resolve_device
from .grid import Cell

__all__ = [
    "CELL_CONFIG_FIELDS",
    "CELL_SCORES",
    "check_grid",
    "crop_for",
    "method_options",
    "train_cell",
]

CELL_CONFIG_FIELDS = ("factor", "seed", "labels", "label_kernel", "crop", "out")
"""The :class:`TrainConfig` fields :func:`train_cell` sets for each cell; the grid shares the rest."""

CELL_SCORES = (
    "miou", "pixel_acc", "per_class",
    # boundary and calibration scores: cells written before they existed lack these keys
    "boundary_miou", "boundary_per_class", "boundary_width", "ece", "nll",
)  # fmt: skip
"""The evaluation scores a cell's ``result.json`` keeps."""


def method_options(method: str) -> dict[str, Any]:
    """The :class:`TrainConfig` fields a method name stands for."""
    if method in ("nearest", "mode", "soft"):
        return {"labels": method, "label_kernel": None}
    if method.startswith("soft-") and method[5:] in KERNELS["torch"]:
        return {"labels": "soft", "label_kernel": method[5:]}
    raise ValueError(
        f"unknown method {method!r}; expected nearest, mode, soft or soft-<kernel> with a kernel "
        f"in {KERNELS['torch']}"
    )


def crop_for(
    frame: tuple[int, int], factor: float, max_pixels: int | None, divisor: int = 1
) -> tuple[int, int] | None:
    """The training window for frames of ``max_pixels`` at most, or None for whole frames.

    A frame at ``factor`` over ``max_pixels`` is cropped to a window of ``max_pixels`` with the
    frame's aspect ratio, rounded up to multiples of the model's ``divisor``: whole frames are
    padded up to that multiple (``softseg.train.inputs.default_crop``), so both train on windows of one size.
    """
    h, w = frame[0] / factor, frame[1] / factor
    if max_pixels is None or h * w <= max_pixels:
        return None
    r = math.sqrt(max_pixels / (h * w))
    return tuple(-(-max(1, math.floor(s * r)) // divisor) * divisor for s in (h, w))


def _cell_config(base: TrainConfig, cell: Cell, run_dir: Path, max_pixels: int | None):
    """``base`` with the cell's factor, seed and labels, and a crop when frames exceed the budget."""
    cfg = replace(
        base, out=str(run_dir), factor=cell.factor, seed=cell.seed, **method_options(cell.method)
    )
    if cfg.crop is None and max_pixels is not None:
        train_ds = load_split(cfg, cfg.train_split, 1)
        divisor = required_divisor(build_model(cfg, train_ds.info.num_classes))
        frame = tuple(train_ds[0][1].shape[-2:])
        cfg = replace(cfg, crop=crop_for(frame, cell.factor, max_pixels, divisor))
    return cfg


def check_grid(
    base: TrainConfig, cells: Sequence[Cell], *, eval_split: str, max_pixels: int | None = None
) -> None:
    """Check, before any cell trains, what would otherwise fail only in a cell or after one
    trained: every method name and cell config, the training and evaluation splits (present,
    non-empty, their first frame readable, the same classes) and the model.

    Raises:
        ValueError: naming what is wrong (``FileNotFoundError`` for missing dataset files).
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
                                   or max_pixels < 1):  # fmt: skip
        raise ValueError(f"`max_pixels` must be a positive integer (or None), got {max_pixels!r}")
    for cell in cells:
        replace(base, factor=cell.factor, seed=cell.seed, **method_options(cell.method))
    train_ds = load_split(base, base.train_split, 1)
    eval_ds = load_split(base, eval_split, 1)
    for what, ds in (("training", train_ds), ("evaluation", eval_ds)):
        ds[0]  # a label file the dataset cannot read fails here, not after training
        if tuple(ds.info.classes) != tuple(train_ds.info.classes):
            raise ValueError(
                f"the {what} split {eval_split!r} names its classes {list(ds.info.classes)}, "
                f"the training split {base.train_split!r} {list(train_ds.info.classes)}"
            )
    try:
        build_model(base, train_ds.info.num_classes)
    except (KeyError, RuntimeError, TypeError) as err:
        raise ValueError(f"cannot build the model {base.arch}/{base.encoder}: {err}") from err


def train_cell(
    base: TrainConfig,
    cell: Cell,
    cell_dir: Path,
    *,
    eval_split: str = "val",
    max_pixels: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or finish training) one cell and score it at the full label resolution.

    Returns the :data:`CELL_SCORES` of ``eval_split``, the training time (total and median per
    epoch), peak memory, the number of epochs, the training window (``crop``) and the
    ``machine`` that finished the cell (:func:`softseg.train.runtime.machine`; a cell resumed
    elsewhere trained partly on another).
    """
    run_dir = cell_dir / "run"
    cfg = _cell_config(base, cell, run_dir, max_pixels)
    train(cfg, resume=(run_dir / CHECKPOINT).exists(), progress=progress)
    scores = evaluate_run(run_dir, split=eval_split, progress=progress)
    history = read_checkpoint(run_dir)["history"]
    epoch_times = [r["epoch_time_s"] for r in history]
    return {
        **{k: scores[k] for k in CELL_SCORES if k in scores},
        "train_time_s": sum(epoch_times),
        # the median: an epoch slowed by other work on the machine does not move it
        "epoch_time_s": statistics.median(epoch_times),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in history),
        "epochs": len(history),
        "crop": list(cfg.crop) if cfg.crop else None,
        "machine": machine(resolve_device(cfg.device)),
    }
