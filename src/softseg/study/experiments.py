"""One training cell of a ``softseg compare`` grid, its figure, and the retention study.

A method name says how labels are made: ``nearest``, ``mode``, ``soft`` (the image's own kernel) or
``soft-<kernel>`` (soft labels with another kernel, e.g. ``soft-area``). The image is always
resampled the same way, so only the labels differ between methods.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..ops.kernels import KERNELS
from ..ops.resample import soft_downsample
from ..ops.retention import class_retention, one_hot_labels
from ..train.engine import (
    CHECKPOINT,
    TrainConfig,
    build_model,
    evaluate_run,
    load_run,
    load_split,
    predict_image,
    train,
)
from ..train.metrics import SegmentationMetrics
from ..train.models import required_divisor
from ..train.transforms import resample_label
from .compare import Cell
from .plots import plot_label_panel

# the TrainConfig fields train_cell sets for each cell; every other field is shared by the grid
CELL_CONFIG_FIELDS = ("factor", "seed", "labels", "label_kernel", "crop", "out")


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
    padded up to that multiple (``engine.default_crop``), so both train on windows of one size.
    """
    h, w = frame[0] / factor, frame[1] / factor
    if max_pixels is None or h * w <= max_pixels:
        return None
    r = math.sqrt(max_pixels / (h * w))
    return tuple(-(-max(1, math.floor(s * r)) // divisor) * divisor for s in (h, w))


def train_cell(
    base: TrainConfig,
    cell: Cell,
    cell_dir: Path,
    *,
    eval_split: str = "val",
    max_pixels: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or finish training) one cell and score it at the full label resolution."""
    run_dir = cell_dir / "run"
    cfg = replace(
        base, out=str(run_dir), factor=cell.factor, seed=cell.seed, **method_options(cell.method)
    )
    if cfg.crop is None and max_pixels is not None:
        train_ds = load_split(cfg, cfg.train_split, 1)
        divisor = required_divisor(build_model(cfg, train_ds.info.num_classes))
        frame = tuple(train_ds[0][1].shape[-2:])
        cfg = replace(cfg, crop=crop_for(frame, cell.factor, max_pixels, divisor))
    train(cfg, resume=(run_dir / CHECKPOINT).exists(), progress=progress)
    scores = evaluate_run(run_dir, split=eval_split, progress=progress)
    history = torch.load(run_dir / CHECKPOINT, weights_only=True)["history"]
    epoch_times = [r["epoch_time_s"] for r in history]
    return {
        "miou": scores["miou"],
        "pixel_acc": scores["pixel_acc"],
        "per_class": scores["per_class"],
        # boundary and calibration scores: cells written before they existed lack these keys
        **{k: scores[k] for k in ("boundary_miou", "boundary_per_class", "boundary_width", "ece", "nll")},
        "train_time_s": sum(epoch_times),
        # the median: an epoch slowed by other work on the machine does not move it
        "epoch_time_s": statistics.median(epoch_times),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in history),
        "epochs": len(history),
        "crop": list(cfg.crop) if cfg.crop else None,
    }


def dataset_retention(
    dataset, factor: float, methods=("nearest", "mode", "soft"), *, limit: int | None = None
) -> dict[str, list[float | None]]:
    """Per-class retention (percent) over the first ``limit`` images of a dataset at ``factor``.

    Images may differ in size, so each is shrunk on its own and the kept/true masses are pooled.
    """
    info = dataset.info
    kept = {m: torch.zeros(info.num_classes, dtype=torch.float64) for m in methods}
    mass = torch.zeros(info.num_classes, dtype=torch.float64)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        _, label, _ = dataset[i]
        size = (max(1, round(label.shape[-2] / factor)), max(1, round(label.shape[-1] / factor)))
        shares = class_retention(
            label, size, info.num_classes, methods, ignore_index=info.ignore_index
        )
        # class_retention gives kept / true mass per image: weight by the true mass to pool
        true_mass = soft_downsample(label, size, info.num_classes, ignore_index=info.ignore_index)
        true_mass = true_mass.double().sum((-1, -2))
        for m in methods:
            kept[m] += torch.nan_to_num(shares[m]) * true_mass
        mass += true_mass
    return {
        m: [None if t == 0 else 100.0 * float(k / t) for k, t in zip(kept[m], mass, strict=True)]
        for m in methods
    }


def dataset_label_ceiling(
    dataset,
    factor: float,
    methods=("nearest", "mode", "soft", "soft-area"),
    *,
    image_kernel: str = "bilinear",
    antialias: bool = True,
    class_weights: torch.Tensor | None = None,
    limit: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The scores a model would get if it predicted its training labels exactly, per method.

    Each whole frame's label is made at ``1 / factor`` the way a method makes training labels (soft:
    class distributions; nearest, mode: one-hot) and scored at full resolution the way the models'
    outputs are (bilinear up-sampling, argmax): the accuracy ceiling the labels themselves set,
    with no model in the way. With ``class_weights`` ``(C,)`` the label is first re-weighted to
    ``w_c t_c / sum_k w_k t_k``, the optimum of the class-weighted soft cross-entropy (it changes
    nothing for one-hot labels). Returns ``{method: SegmentationMetrics.compute()}`` over the first
    ``limit`` images.
    """
    info = dataset.info
    options = {m: method_options(m) for m in methods}  # unknown names fail before any work
    meters = {
        m: SegmentationMetrics(info.num_classes, info.ignore_index, info.classes) for m in methods
    }
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        _, label, _ = dataset[i]
        size = tuple(max(1, round(s / factor)) for s in label.shape[-2:])
        for m, opts in options.items():
            made = resample_label(
                label, (0, 0, *label.shape[-2:]), size, opts["labels"], info.num_classes,
                kernel=opts["label_kernel"] or image_kernel, antialias=antialias,
                ignore_index=info.ignore_index,
            )  # fmt: skip
            if not made.dtype.is_floating_point:  # hard labels: one-hot, void pixels all zero
                made = one_hot_labels(made, info.num_classes, info.ignore_index)
            if class_weights is not None:
                made = made * class_weights.view(-1, 1, 1)
                made = made / made.sum(0, keepdim=True).clamp(min=1e-12)
            meters[m].update(made[None], label[None].long())
    return {m: meter.compute() for m, meter in meters.items()}


def trained_factors(
    grid_dir: str | Path, factors: list[float], seed: int = 0, methods=("nearest", "soft")
) -> list[float]:
    """The factors at which every one of ``methods`` has a trained checkpoint for ``seed``."""
    cells_dir = Path(grid_dir) / "cells"
    return [
        f
        for f in sorted(factors)
        if all((cells_dir / Cell(m, f, seed).key / "run" / CHECKPOINT).exists() for m in methods)
    ]


def labels_and_predictions_figure(
    grid_dir: str | Path,
    dataset,
    factors: list[float],
    path: str | Path,
    *,
    seed: int = 0,
    index: int = 0,
    methods: tuple[str, str] = ("nearest", "soft"),
) -> Path | None:
    """One image of ``dataset``: its label, and per factor both methods' labels and predictions.

    Row 1 holds the image and its full label; each factor adds a row with the training labels of
    both methods at that factor and the full-resolution predictions of the models trained on them
    (the grid cells of ``seed`` in ``grid_dir``). Factors without both trained
    cells are left out; returns None when none is left.
    """
    image, label, _ = dataset[index]
    info = dataset.info
    cells_dir = Path(grid_dir) / "cells"
    panels: list[tuple[str, Any] | None] = [("label", label), None, None]
    shown = trained_factors(grid_dir, factors, seed, methods)
    for factor in shown:
        runs = [cells_dir / Cell(m, factor, seed).key / "run" for m in methods]
        size = tuple(max(1, round(s / factor)) for s in label.shape[-2:])
        trained, predicted = [], []
        for method, run in zip(methods, runs, strict=True):
            cfg, model, _ = load_run(run)
            training_labels = resample_label(
                label, (0, 0, *label.shape[-2:]), size, cfg.labels, info.num_classes,
                kernel=cfg.label_kernel or cfg.image_kernel, antialias=cfg.antialias,
                ignore_index=info.ignore_index,
            )  # fmt: skip
            trained.append((f"{method} labels x{factor:g}", training_labels))
            prediction = predict_image(model, cfg, image, torch.device("cpu"))
            predicted.append((f"{method} x{factor:g} prediction", prediction))
        panels += trained + predicted
    if not shown:
        return None
    return plot_label_panel(
        image, panels, list(info.colors), path, ignore_index=info.ignore_index, max_cols=4
    )
