"""Segmentation metrics from a confusion matrix: IoU, mIoU, pixel and mean accuracy.

The confusion matrix ``cm`` ``(C, C)`` counts pixels with ground truth ``i`` (row) predicted as
``j`` (column). For class ``c``, ``IoU = tp / (tp + fp + fn)`` with ``tp = cm[c, c]``, ``fn`` the
rest of row ``c`` and ``fp`` the rest of column ``c``; a class absent from both ground truth and
prediction has no IoU (NaN) and is left out of the mean, the usual convention of the benchmarks.

Scores are taken at the resolution of the labels: :class:`SegmentationMetrics` up-samples smaller
logits bilinearly before the argmax, as papers do when they report results for down-scaled training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = [
    "SegmentationMetrics",
    "confusion_matrix",
    "iou_from_confusion",
    "mean_accuracy",
    "miou",
    "pixel_accuracy",
]


def _check_int(t: torch.Tensor, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{what} must hold integer class indices, got dtype {t.dtype}")


def _check_range(values: torch.Tensor, num_classes: int, what: str) -> None:
    if values.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(values))
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{what} values must lie in [0, {num_classes}), got values in [{lo}, {hi}]"
        )


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Pixel counts ``(C, C)`` int64, rows = ground truth, columns = prediction.

    Args:
        pred: integer predictions ``(N, H, W)`` or ``(H, W)``, values in ``[0, C)``.
        target: integer ground truth of the same shape; pixels equal to ``ignore_index`` are
            skipped, the others must lie in ``[0, C)``.
        num_classes: ``C``.
        ignore_index: label value to skip (``None``: none).

    Returns:
        The matrix on the inputs' device (one ``bincount``, so any device works).
    """
    _check_int(pred, "pred")
    _check_int(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            "pred and target must have one shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    _check_range(pred, num_classes, "pred")
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    _check_range(target, num_classes, f"target (other than ignore_index={ignore_index})")
    # one flat index per pixel: gt * C + pred, counted in one pass
    flat = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def _as_float64(cm: torch.Tensor) -> torch.Tensor:
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be (C, C), got shape {tuple(cm.shape)}")
    return cm.to(torch.float64)


def iou_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU ``(C,)`` float64 in ``[0, 1]``; NaN for classes absent from gt and pred."""
    cm = _as_float64(cm)
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp  # tp + fp + fn
    return torch.where(union > 0, tp / union.clamp(min=1), torch.nan)


def miou(cm: torch.Tensor) -> torch.Tensor:
    """Mean IoU over the classes that have one (0-dim float64 in ``[0, 1]``; NaN if none has)."""
    return iou_from_confusion(cm).nanmean()


def pixel_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Fraction of scored pixels predicted right (0-dim float64; NaN for an empty matrix)."""
    cm = _as_float64(cm)
    total = cm.sum()
    return torch.where(total > 0, cm.trace() / total.clamp(min=1), torch.nan)


def mean_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Mean over classes present in the ground truth of their recall ``tp / (tp + fn)`` (0-dim)."""
    cm = _as_float64(cm)
    support = cm.sum(1)
    recall = torch.where(support > 0, cm.diagonal() / support.clamp(min=1), torch.nan)
    return recall.nanmean()


def _percent(x: float) -> float | None:
    """A fraction as a JSON-friendly percentage: ``None`` for NaN."""
    return None if math.isnan(x) else 100.0 * x


class SegmentationMetrics:
    """Accumulate a confusion matrix over batches and report the usual scores.

    >>> m = SegmentationMetrics(3, class_names=["road", "car", "sky"])
    >>> m.update(logits, labels)   # logits (N, C, h, w), up-sampled to labels (N, H, W) if smaller
    >>> m.compute()["miou"]        # percent

    The matrix lives on the device of the first update; in distributed evaluation call
    :meth:`all_reduce` once before :meth:`compute`.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = None if class_names is None else list(class_names)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.matrix = torch.zeros_like(self.matrix)

    @torch.no_grad()
    def update(self, logits_or_pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch.

        Args:
            logits_or_pred: float logits ``(N, C, h, w)`` (or ``(C, h, w)``), or integer predictions
                of the target's shape. Logits smaller than the target are up-sampled bilinearly
                (``align_corners=False``) to its size before the argmax; larger ones are refused.
            target: integer labels ``(N, H, W)`` (or ``(H, W)``), ``ignore_index`` skipped.
        """
        _check_int(target, "target")
        x = logits_or_pred
        if x.dtype.is_floating_point:
            if x.dim() != target.dim() + 1:
                raise ValueError(
                    f"logits must be (N, C, h, w) for targets (N, H, W), got shapes "
                    f"{tuple(x.shape)} and {tuple(target.shape)}"
                )
            pred = self._argmax_at(x if x.dim() == 4 else x.unsqueeze(0), tuple(target.shape[-2:]))
            pred = pred if x.dim() == 4 else pred[0]
        else:
            pred = x
        if pred.shape != target.shape:
            raise ValueError(
                f"predictions {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        cm = confusion_matrix(pred, target.to(pred.device), self.num_classes, self.ignore_index)
        if self.matrix.device != cm.device:
            self.matrix = self.matrix.to(cm.device)
        self.matrix += cm

    def _argmax_at(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Argmax ``(N, H, W)`` of logits ``(N, C, h, w)`` brought up to ``size``."""
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[1]} channels but num_classes is {self.num_classes}"
            )
        h, w = logits.shape[-2:]
        if (h, w) == size:
            return logits.argmax(1)
        if h > size[0] or w > size[1]:
            raise ValueError(
                f"logits size {(h, w)} is larger than the target size {size} in at least one "
                "dimension; scores are taken at the label resolution"
            )
        # one image at a time: full-resolution logits of a whole batch can take gigabytes
        return torch.cat(
            [
                F.interpolate(
                    logits[i : i + 1].float(), size=size, mode="bilinear", align_corners=False
                ).argmax(1)
                for i in range(logits.shape[0])
            ]
        )

    def all_reduce(self) -> None:
        """Sum the matrix over all processes when ``torch.distributed`` is initialised (else no-op).

        Call it once, before :meth:`compute`: a second call would count everything again.
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self) -> dict:
        """Scores in percent, JSON-friendly (NaN becomes ``None``).

        Returns:
            ``{"miou", "pixel_acc", "mean_acc"}`` floats (or ``None``), ``"iou"`` a list of ``C``
            per-class values, and ``"per_class"`` ``{name: iou}`` when class names were given.
        """
        cm = self.matrix.cpu()  # tiny; and float64 is not available on every accelerator
        iou = iou_from_confusion(cm)
        result: dict = {
            "miou": _percent(float(miou(cm))),
            "pixel_acc": _percent(float(pixel_accuracy(cm))),
            "mean_acc": _percent(float(mean_accuracy(cm))),
            "iou": [_percent(v) for v in iou.tolist()],
        }
        if self.class_names is not None:
            result["per_class"] = dict(zip(self.class_names, result["iou"], strict=True))
        return result

    def __repr__(self) -> str:
        return (
            f"SegmentationMetrics(num_classes={self.num_classes}, "
            f"ignore_index={self.ignore_index}, pixels={int(self.matrix.sum())})"
        )
