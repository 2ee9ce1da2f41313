"""What the labels themselves keep, with no model in the way: class mass and the score ceiling.

- :func:`dataset_retention`: the share of each class's mass that nearest, mode and soft
  down-sampling keep at a factor (``softseg retention``, the demo), and :func:`retention_table`
  to print it.
- :func:`dataset_label_ceiling`: the scores a model would get if it predicted its training labels
  exactly (``docs/results/label_ceiling.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..ops.resample import soft_downsample
from ..ops.retention import class_retention, one_hot_labels
from ..train.metrics import SegmentationMetrics
from ..train.transforms import resample_label
from .cell import method_options

__all__ = ["dataset_label_ceiling", "dataset_retention", "retention_table"]


def _reduced_size(label: torch.Tensor, factor: float) -> tuple[int, int]:
    """The ``(h, w)`` a label ``(..., H, W)`` has at ``1 / factor``, at least one pixel a side."""
    return tuple(max(1, round(s / factor)) for s in label.shape[-2:])  # type: ignore[return-value]


def dataset_retention(
    dataset, factor: float, methods=("nearest", "mode", "soft"), *, limit: int | None = None
) -> dict[str, list[float | None]]:
    """Per-class retention (percent) over the first ``limit`` images of a dataset at ``factor``.

    Images may differ in size, so each is shrunk on its own and the kept/true masses are pooled.
    Returns ``{method: [percent or None per class]}``; ``None`` for a class absent from the labels.
    """
    info = dataset.info
    kept = {m: torch.zeros(info.num_classes, dtype=torch.float64) for m in methods}
    mass = torch.zeros(info.num_classes, dtype=torch.float64)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        _, label, _ = dataset[i]
        size = _reduced_size(label, factor)
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


def retention_table(table: dict[str, list[float | None]], classes: Sequence[str]) -> str:
    """A :func:`dataset_retention` table as fixed-width text, a row per class, a column per method.

    >>> print(retention_table({"nearest": [90.0, None], "soft": [100.0, None]}, ["road", "pole"]))
    class          nearest      soft
    road             90.0%    100.0%
    pole                 -         -
    """
    methods = list(table)
    lines = [f"{'class':<12}" + "".join(f"{m:>10}" for m in methods)]
    for i, name in enumerate(classes):
        cells = ("-" if table[m][i] is None else f"{table[m][i]:.1f}%" for m in methods)
        lines.append(f"{name:<12}" + "".join(f"{c:>10}" for c in cells))
    return "\n".join(lines)


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
        size = _reduced_size(label, factor)
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
