"""The labels-and-predictions figure of a grid: what each method trains on and what it predicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..train.config import CHECKPOINT
from ..train.evaluate import load_run, predict_image
from ..train.transforms import resample_label
from .grid import Cell
from .plots import plot_label_panel

__all__ = ["labels_and_predictions_figure", "trained_factors"]


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


def _method_panels(run: Path, method: str, factor: float, image, label, info):
    """``(title, map)`` of the labels the run at ``run`` trained on and of its prediction."""
    cfg, model, *_ = load_run(run)
    size = tuple(max(1, round(s / factor)) for s in label.shape[-2:])
    training_labels = resample_label(
        label, (0, 0, *label.shape[-2:]), size, cfg.labels, info.num_classes,
        kernel=cfg.label_kernel or cfg.image_kernel, antialias=cfg.antialias,
        ignore_index=info.ignore_index,
    )  # fmt: skip
    prediction = predict_image(model, cfg, image, torch.device("cpu"))
    trained = (f"{method} labels x{factor:g}", training_labels)
    return trained, (f"{method} x{factor:g} prediction", prediction)


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
    shown = trained_factors(grid_dir, factors, seed, methods)
    if not shown:
        return None
    image, label, _ = dataset[index]
    info = dataset.info
    cells_dir = Path(grid_dir) / "cells"
    panels: list[tuple[str, Any] | None] = [("label", label), None, None]
    for factor in shown:
        runs = {m: cells_dir / Cell(m, factor, seed).key / "run" for m in methods}
        pairs = [_method_panels(run, m, factor, image, label, info) for m, run in runs.items()]
        panels += [trained for trained, _ in pairs] + [predicted for _, predicted in pairs]
    return plot_label_panel(
        image, panels, list(info.colors), path, ignore_index=info.ignore_index, max_cols=4
    )
