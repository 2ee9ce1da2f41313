"""Segmentation metrics from a confusion matrix: IoU, mIoU, pixel and mean accuracy.

The confusion matrix ``cm`` ``(C, C)`` counts pixels with ground truth ``i`` (row) predicted as
``j`` (column). For class ``c``, ``IoU = tp / (tp + fp + fn)`` with ``tp = cm[c, c]``, ``fn`` the
rest of row ``c`` and ``fp`` the rest of column ``c``; a class absent from both ground truth and
prediction has no IoU (NaN) and is left out of the mean, the usual convention of the benchmarks.

Scores are taken at the resolution of the labels: :class:`SegmentationMetrics` up-samples smaller
logits bilinearly before the argmax, as papers do when they report results for down-scaled training.

Beyond the confusion matrix over all pixels, two views that mIoU hides:

- Boundary quality (trimap IoU): the same IoU counted only on the pixels within ``width`` pixels of
  a label edge, i.e. pixels whose ``(2 width + 1)``-square neighbourhood in the ground truth holds
  more than one value (void included, so edges against void count; void pixels themselves are
  never scored). See :func:`boundary_band`.
- Calibration of the full-resolution softmax on valid pixels: expected calibration error (ECE,
  equal-width confidence bins, ``sum_b n_b / N * |accuracy_b - confidence_b|`` with the top-1
  probability as confidence) and the negative log-likelihood of the true class (NLL, nats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..ops.labels import check_label_values

__all__ = [
    "SegmentationMetrics",
    "boundary_band",
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
    check_label_values(pred, num_classes, None, what="pred")
    check_label_values(target, num_classes, ignore_index, what="target")
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    # one flat index per pixel: gt * C + pred, counted in one pass
    flat = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def boundary_band(target: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within ``width`` of a label edge: their ``(2 width + 1)``-square window holds two values.

    Args:
        target: integer labels ``(..., H, W)``; every value, the ignore value included, counts as a
            region of its own. The window is cut at the image border (the border is no edge).
        width: the band's half-width in pixels (0: no pixel is in the band).

    Returns:
        ``bool`` tensor of the target's shape.

    >>> boundary_band(torch.tensor([[0, 0, 0, 1]]), 1).tolist()
    [[False, False, True, True]]
    """
    _check_int(target, "target")
    if isinstance(width, bool) or not isinstance(width, int) or width < 0:
        raise ValueError(f"width must be a non-negative int (pixels), got {width!r}")
    if width == 0 or target.numel() == 0:
        return torch.zeros_like(target, dtype=torch.bool)
    # label values are < 2**24, exact in float32: max- and min-pooling the map find the windows
    # that hold more than one value
    x = target.reshape(-1, 1, *target.shape[-2:]).float()
    k = 2 * width + 1
    hi = F.max_pool2d(x, k, stride=1, padding=width)
    lo = -F.max_pool2d(-x, k, stride=1, padding=width)
    return (hi != lo).reshape(target.shape)


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
    >>> labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 255]]])         # (N, H, W), 255 ignored
    >>> logits = torch.zeros(1, 3, 1, 2)                                 # (N, C, h, w): half size
    >>> logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = 5.0                    # road | car
    >>> m.update(logits, labels)    # up-sampled to the labels' size, then the argmax
    >>> scores = m.compute()        # percent
    >>> {name: round(iou, 1) for name, iou in scores["per_class"].items()}
    {'road': 50.0, 'car': 66.7, 'sky': 0.0}
    >>> round(scores["miou"], 1), round(scores["pixel_acc"], 1)
    (38.9, 57.1)

    The matrix lives on the device of the first update; in distributed evaluation call
    :meth:`all_reduce` once before :meth:`compute`.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        class_names: Sequence[str] | None = None,
        *,
        boundary_width: int = 3,
        calibration_bins: int = 15,
    ) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        if calibration_bins <= 0:
            raise ValueError(f"calibration_bins must be positive, got {calibration_bins}")
        boundary_band(torch.zeros(1, 1, dtype=torch.long), boundary_width)  # checks the width
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = None if class_names is None else list(class_names)
        self.boundary_width = boundary_width
        self.calibration_bins = calibration_bins
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        c = self.num_classes
        self.matrix = torch.zeros(c, c, dtype=torch.int64)
        self.boundary_matrix = torch.zeros(c, c, dtype=torch.int64)
        # per confidence bin: pixels, summed confidence, correct pixels; then NLL sum and pixels
        self.calibration = torch.zeros(3, self.calibration_bins, dtype=torch.float64)
        self.nll = torch.zeros(2, dtype=torch.float64)

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
        if not x.dtype.is_floating_point:
            self._count(x, target)
            return
        if x.dim() != target.dim() + 1:
            raise ValueError(
                f"logits must be (N, C, h, w) for targets (N, H, W), got shapes "
                f"{tuple(x.shape)} and {tuple(target.shape)}"
            )
        logits, labels = (x, target) if x.dim() == 4 else (x[None], target[None])
        self._check_logits(logits, tuple(labels.shape[-2:]))
        # one image at a time: full-resolution logits of a whole batch can take gigabytes
        for i in range(logits.shape[0]):
            full = F.interpolate(
                logits[i : i + 1].float(), size=labels.shape[-2:], mode="bilinear",
                align_corners=False,
            )  # fmt: skip
            y = labels[i : i + 1].to(full.device)
            self._count(full.argmax(1), y)
            self._count_calibration(full, y)

    def _check_logits(self, logits: torch.Tensor, size: tuple[int, int]) -> None:
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[1]} channels but num_classes is {self.num_classes}"
            )
        h, w = logits.shape[-2:]
        if h > size[0] or w > size[1]:
            raise ValueError(
                f"logits size {(h, w)} is larger than the target size {size} in at least one "
                "dimension; scores are taken at the label resolution"
            )

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add predictions to the confusion matrices (all pixels, and the boundary band)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"predictions {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        target = target.to(pred.device)
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        band = boundary_band(target, self.boundary_width)
        bcm = confusion_matrix(pred[band], target[band], self.num_classes, self.ignore_index)
        self._to(cm.device)
        self.matrix += cm
        self.boundary_matrix += bcm

    def _count_calibration(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add ECE bins and NLL of full-resolution logits ``(N, C, H, W)`` on valid pixels."""
        logp = logits.log_softmax(1).movedim(1, -1)[self._valid(target)]  # (P, C)
        truth = target[self._valid(target)].long()
        conf, pred = logp.exp().max(1)
        bins = (conf * self.calibration_bins).long().clamp(max=self.calibration_bins - 1)
        b = self.calibration_bins
        counts = torch.stack(
            [
                torch.bincount(bins, minlength=b).double(),
                torch.bincount(bins, weights=conf.double(), minlength=b),
                torch.bincount(bins, weights=(pred == truth).double(), minlength=b),
            ]
        )
        nll = -logp.gather(1, truth[:, None]).double().sum()
        self._to(counts.device)
        self.calibration += counts
        pixels = torch.tensor(float(truth.numel()), device=nll.device).double()
        self.nll += torch.stack([nll, pixels])

    def _valid(self, target: torch.Tensor) -> torch.Tensor:
        if self.ignore_index is None:
            return torch.ones_like(target, dtype=torch.bool)
        return target != self.ignore_index

    def _to(self, device: torch.device) -> None:
        for name in ("matrix", "boundary_matrix", "calibration", "nll"):
            if getattr(self, name).device != device:
                setattr(self, name, getattr(self, name).to(device))

    def all_reduce(self) -> None:
        """Sum the matrix over all processes when ``torch.distributed`` is initialised (else no-op).

        Call it once, before :meth:`compute`: a second call would count everything again.
        """
        if dist.is_available() and dist.is_initialized():
            for t in (self.matrix, self.boundary_matrix, self.calibration, self.nll):
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def compute(self) -> dict:
        """Scores in percent, JSON-friendly (NaN becomes ``None``).

        Returns:
            ``{"miou", "pixel_acc", "mean_acc"}`` floats (or ``None``), ``"iou"`` a list of ``C``
            per-class values, and ``"per_class"`` ``{name: iou}`` when class names were given;
            ``"boundary_miou"``, ``"boundary_iou"`` (and ``"boundary_per_class"``) the same within
            ``boundary_width`` pixels of label edges; ``"ece"`` (percent) and ``"nll"`` (nats per
            pixel) of the softmax, ``None`` until logits were counted.
        """
        cm = self.matrix.cpu()  # tiny; and float64 is not available on every accelerator
        bcm = self.boundary_matrix.cpu()
        result: dict = {
            "miou": _percent(float(miou(cm))),
            "pixel_acc": _percent(float(pixel_accuracy(cm))),
            "mean_acc": _percent(float(mean_accuracy(cm))),
            "iou": [_percent(v) for v in iou_from_confusion(cm).tolist()],
            "boundary_width": self.boundary_width,
            "boundary_miou": _percent(float(miou(bcm))),
            "boundary_iou": [_percent(v) for v in iou_from_confusion(bcm).tolist()],
            **self._calibration_scores(),
        }
        if self.class_names is not None:
            result["per_class"] = dict(zip(self.class_names, result["iou"], strict=True))
            result["boundary_per_class"] = dict(
                zip(self.class_names, result["boundary_iou"], strict=True)
            )
        return result

    def _calibration_scores(self) -> dict[str, float | None]:
        (n, conf, correct), (nll, pixels) = self.calibration.cpu(), self.nll.cpu()
        total = float(n.sum())
        if total == 0:
            return {"ece": None, "nll": None}
        gap = (correct - conf).abs()  # per bin: n_b * |accuracy_b - confidence_b|
        return {"ece": 100.0 * float(gap.sum()) / total, "nll": float(nll) / float(pixels)}

    def __repr__(self) -> str:
        return (
            f"SegmentationMetrics(num_classes={self.num_classes}, "
            f"ignore_index={self.ignore_index}, pixels={int(self.matrix.sum())})"
        )
