"""Per-class logit offsets fit to maximise mIoU on training frames (issue 16's thin-class remedy).

Models trained with soft labels at a reduced resolution rarely predict thin classes such as pole:
a pole narrower than a low-resolution pixel is a minority share of every soft label it touches,
so it seldom wins the argmax. Decoding with ``argmax_c (z_c + o_c)`` for offsets ``o`` chosen on
frames the model was trained on, then applied unchanged elsewhere, is a remedy that needs no
assumption about how the model's scores relate to the class prior (compare
:func:`~softseg.train.evaluate.prior_offset`).

:func:`fit_class_offsets` is coordinate ascent on a fixed grid: for each class in turn, every
grid value is tried as that class's offset (the others held) and the one with the highest mIoU
over all given pixels is kept, for a few rounds. Trying the whole grid for class ``c`` costs one
pass over the pixels: with the other offsets fixed, a pixel's decision is ``c`` from some grid
value on and its best competitor ``j`` below it, so one histogram over (first winning grid
index, label, ``j``) gives the confusion matrix at every grid value. :func:`fit_run_offsets`
collects the logits of a run's model on evenly spaced frames of a split and fits them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..ops.labels import check_label_values
from .evaluate import (
    _check_classes,
    check_factor,
    evaluate_run,
    frame_logits,
    load_run,
    to_label_size,
)
from .inputs import load_split
from .metrics import iou_from_confusion, miou
from .runtime import resolve_device

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_GRID",
    "RUN_TRAIN_SPLIT",
    "collect_logits",
    "decoded_miou",
    "evaluate_with_fitted_offsets",
    "fit_class_offsets",
    "fit_run_offsets",
    "spaced_indices",
]

DEFAULT_GRID: tuple[float, ...] = tuple(i / 4 for i in range(-8, 17))  # -2 to +4 nats, 0.25 apart
DEFAULT_FRAMES = 60
RUN_TRAIN_SPLIT = "run"  # the split name that stands for the run's own training split
_CHUNK = 1 << 20  # pixels per pass: bounds the float32 temporaries (C * 4 MiB each)


def _pixels(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(C, P)`` and int64 labels ``(P,)`` of the labelled pixels, from either
    ``(N, C, H, W)`` with ``(N, H, W)`` or ``(C, P)`` with ``(P,)``."""
    if logits.dim() == 4 and labels.dim() == 3:
        logits = logits.movedim(1, 0).reshape(logits.shape[1], -1)
        labels = labels.reshape(-1)
    if logits.dim() != 2 or labels.dim() != 1 or logits.shape[1] != labels.shape[0]:
        raise ValueError(
            "logits and labels must be (N, C, H, W) and (N, H, W), or (C, P) and (P,); got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if logits.shape[0] != num_classes:
        raise ValueError(f"logits have {logits.shape[0]} classes, num_classes is {num_classes}")
    check_label_values(labels, num_classes, ignore_index)
    if ignore_index is not None:
        keep = labels != ignore_index
        logits, labels = logits[:, keep], labels[keep]
    return logits, labels.long()


def _confusion(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    flat = labels * num_classes + pred
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)


def _decoded_confusion(
    z: torch.Tensor, y: torch.Tensor, num_classes: int, offsets: torch.Tensor | None
) -> torch.Tensor:
    """Confusion matrix of ``argmax(z + offsets)`` over pixels ``z`` ``(C, P)``, ``y`` ``(P,)``."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    o = torch.zeros(num_classes) if offsets is None else offsets.float()
    for s in range(0, y.numel(), _CHUNK):
        # max's indices are argmax's (the first of equal values), at a quarter of its time here
        pred = (z[:, s : s + _CHUNK].float() + o[:, None]).max(0).indices
        cm += _confusion(pred, y[s : s + _CHUNK], num_classes)
    return cm


def decoded_miou(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    offsets: torch.Tensor | None = None,
) -> float:
    """mIoU (percent) of ``argmax(logits + offsets)`` over the labelled pixels (shapes as for
    :func:`fit_class_offsets`); ``nan`` when no class has an IoU."""
    z, y = _pixels(logits, labels, num_classes, ignore_index)
    return 100.0 * float(miou(_decoded_confusion(z, y, num_classes, offsets)))


def _per_class(cm: torch.Tensor, names: Sequence[str]) -> dict[str, float | None]:
    ious = iou_from_confusion(cm).tolist()
    return {n: None if math.isnan(v) else 100.0 * v for n, v in zip(names, ious, strict=True)}


def _first_wins(
    own: torch.Tensor, rival: torch.Tensor, rival_index: torch.Tensor, c: int, grid: torch.Tensor
) -> torch.Tensor:
    """Per pixel, the first index into ``grid`` (ascending) from which class ``c`` wins the argmax
    with ``own + grid[i]`` against the best other class (value ``rival``, index ``rival_index``);
    ``len(grid)`` where it never wins. Ties go to the lower class index, as ``argmax`` does."""
    g = grid.numel()
    lower = c < rival_index  # on a tie, c wins only where it comes first

    def wins(i: torch.Tensor) -> torch.Tensor:
        v = own + grid[i.clamp(0, g - 1)]  # the same float32 sum the decoding computes
        return (i < g) & ((v > rival) | ((v == rival) & lower))

    # the threshold rival - own locates the index up to rounding; step to the exact one
    index = torch.searchsorted(grid, rival - own, right=True)
    while True:
        back = (index > 0) & wins(index - 1)
        ahead = (index < g) & ~wins(index)
        if not bool(back.any() or ahead.any()):
            return index
        index = index - back.long() + ahead.long()


def _grid_confusions(
    z: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor, c: int, grid: torch.Tensor
) -> torch.Tensor:
    """Confusion matrices ``(G, C, C)`` of the decoding with class ``c``'s offset set to each grid
    value in turn (the other offsets as given)."""
    num_classes, g = z.shape[0], grid.numel()
    counts = torch.zeros((g + 1) * num_classes**2, dtype=torch.int64)
    for s in range(0, y.numel(), _CHUNK):
        raw = z[:, s : s + _CHUNK].float()
        scores = raw + offsets[:, None]
        scores[c] = -math.inf
        rival, rival_index = scores.max(0)  # first maximal index on ties, as argmax
        first = _first_wins(raw[c], rival, rival_index, c, grid)
        key = (first * num_classes + y[s : s + _CHUNK]) * num_classes + rival_index
        counts += torch.bincount(key, minlength=counts.numel())
    counts = counts.view(g + 1, num_classes, num_classes)  # [first win, label, rival]
    won = counts[:g].cumsum(0)  # pixels that c takes from their rival at each grid value
    cms = counts.sum(0).expand(g, -1, -1) - won
    cms[:, :, c] += won.sum(2)
    return cms


def _check_fit_args(grid: Sequence[float], rounds: int) -> torch.Tensor:
    values = torch.as_tensor(list(grid), dtype=torch.float32)
    if (
        values.dim() != 1
        or not bool(values.isfinite().all())
        or not bool((values[1:] > values[:-1]).all())
        or not bool((values == 0).any())
    ):
        raise ValueError(
            f"`grid` must be finite offsets in increasing order that include 0, got {list(grid)}"
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be a positive int, got {rounds!r}")
    return values


def fit_class_offsets(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    rounds: int = 2,
) -> torch.Tensor:
    """Per-class logit offsets ``(C,)`` float32 that maximise the mIoU of ``argmax(logits + o)``.

    Args:
        logits: full-resolution logits ``(N, C, H, W)``, or ``(C, P)`` for ``P`` pixels (any float
            dtype; float16 halves the memory, and the fit is exact for the float32 sums of what
            is given).
        labels: ``(N, H, W)`` or ``(P,)`` class indices; ``ignore_index`` pixels are skipped.
        num_classes: ``C``.
        ignore_index: the label value to skip (``None``: none).
        grid: the offsets tried for each class, increasing and including 0.
        rounds: passes over the classes (in index order); stops early when a pass changes nothing.

    Coordinate ascent from all-zero offsets: a class's offset moves only to a grid value that
    raises the mIoU strictly (among equal best, the one nearest 0), so the fitted offsets never
    score below no offsets on these pixels, and the result is deterministic.
    """
    values = _check_fit_args(grid, rounds)
    z, y = _pixels(logits, labels, num_classes, ignore_index)
    offsets = torch.zeros(num_classes)
    if num_classes < 2 or y.numel() == 0:
        return offsets
    best = decoded_miou(z, y, num_classes, None, offsets)
    # among equal scores prefer the smallest change: order the grid by |value|, then value
    order = sorted(range(values.numel()), key=lambda i: (abs(float(values[i])), float(values[i])))
    for _ in range(rounds):
        changed = False
        for c in range(num_classes):
            cms = _grid_confusions(z, y, offsets, c, values)
            scores = [100.0 * float(miou(cm)) for cm in cms]
            pick = max(order, key=scores.__getitem__)  # the first of equal best in `order`
            if scores[pick] > best:  # nan never is: a class is kept unless it strictly gains
                best, offsets[c], changed = scores[pick], values[pick], True
        if not changed:
            break
    return offsets


def spaced_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (all of them when ``n >= total``): frames
    of video sequences follow one another, so the first ``n`` would all come from one sequence.

    >>> spaced_indices(10, 4)
    [0, 2, 5, 7]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`fit_offsets_frames` must be a positive number of frames, got {n!r}")
    return list(range(total)) if n >= total else [i * total // n for i in range(n)]


@torch.no_grad()
def collect_logits(
    model: torch.nn.Module,
    ds: Dataset,
    factor: float,
    indices: Sequence[int],
    *,
    image_kernel: str = "bilinear",
    antialias: bool = True,
    device: torch.device,
    progress: bool = True,
    dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The model's full-resolution logits ``(C, P)`` (``dtype``, on the CPU) and labels ``(P,)``
    over the labelled pixels of frames ``indices`` of ``ds``, and those frames' names; the same
    inputs and up-sampling as :func:`~softseg.train.evaluate.evaluate_model` scores."""
    ignore = ds.info.ignore_index
    zs, ys, names = [], [], []
    frames = frame_logits(
        model, ds, factor, indices, image_kernel=image_kernel, antialias=antialias,
        device=device, progress=progress, desc="logits for the offsets",
    )  # fmt: skip
    for logits, y, name in frames:
        full = to_label_size(logits, tuple(y.shape[-2:]))[0].flatten(1)
        y = y.reshape(-1)
        keep = y != ignore if ignore is not None else torch.ones_like(y, dtype=torch.bool)
        zs.append(full[:, keep].to("cpu", dtype))
        ys.append(y[keep].cpu())
        names.append(name)
    return torch.cat(zs, 1), torch.cat(ys), names


def fit_run_offsets(
    run_dir: str | Path,
    split: str = RUN_TRAIN_SPLIT,
    frames: int = DEFAULT_FRAMES,
    *,
    dataset: str | None = None,
    root: str | None = None,
    factor: float | None = None,
    device: str = "auto",
    progress: bool = True,
    grid: Sequence[float] = DEFAULT_GRID,
    rounds: int = 2,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Offsets fit (:func:`fit_class_offsets`) on ``frames`` evenly spaced frames of ``split``
    (``"run"``: the run's own training split) at ``factor`` (default: the run's), and a
    JSON-friendly record: ``{"split", "frames", "frame_names", "pixels", "grid", "rounds",
    "miou_before", "miou_after", "per_class_before", "per_class_after"}`` (mIoU and per-class
    IoU in percent on those frames, without and with the offsets)."""
    dev = resolve_device(device)
    cfg, model, state = load_run(run_dir, dev)
    data_cfg = replace(cfg, dataset=dataset or cfg.dataset, root=root or cfg.root)
    split = cfg.train_split if split == RUN_TRAIN_SPLIT else split
    try:
        ds = load_split(data_cfg, split)
    except ValueError as err:
        raise ValueError(f"`fit_offsets_on` {split!r}: {err}") from err
    _check_classes(ds.info, run_dir, state, f"split {split!r} of {data_cfg.dataset}")
    info = ds.info
    z, y, names = collect_logits(
        model, ds, factor or cfg.factor, spaced_indices(len(ds), frames),
        image_kernel=cfg.image_kernel, antialias=cfg.antialias, device=dev, progress=progress,
    )  # fmt: skip
    offsets = fit_class_offsets(z, y, info.num_classes, None, grid=grid, rounds=rounds)
    record: dict[str, Any] = {
        "split": split,
        "frames": len(names),
        "frame_names": names,
        "pixels": int(y.numel()),
        "grid": [float(v) for v in grid],
        "rounds": rounds,
    }
    for when, o in (("before", None), ("after", offsets)):
        cm = _decoded_confusion(z, y, info.num_classes, o)
        record[f"miou_{when}"] = 100.0 * float(miou(cm))
        record[f"per_class_{when}"] = _per_class(cm, info.classes)
    return offsets, record


def evaluate_with_fitted_offsets(
    run_dir: str | Path,
    fit_offsets_on: str = RUN_TRAIN_SPLIT,
    fit_offsets_frames: int = DEFAULT_FRAMES,
    *,
    prior_correction: float = 0.0,
    **eval_options: Any,
) -> dict[str, Any]:
    """:func:`~softseg.train.evaluate.evaluate_run` decoding with offsets fit by
    :func:`fit_run_offsets` on ``fit_offsets_frames`` frames of ``fit_offsets_on`` (the same
    dataset, root, factor and device as the scored split); the scores gain ``class_offsets_fit``,
    the fit's record. ``prior_correction`` is refused: it is the other remedy for the same bias."""
    if prior_correction:
        raise ValueError(
            f"`prior_correction` {prior_correction!r} and `fit_offsets_on` {fit_offsets_on!r} are "
            "two remedies for one bias: use one of them"
        )
    spaced_indices(1, fit_offsets_frames)  # refuse bad values before any work
    check_factor(eval_options.get("factor"))
    fit_options = {k: eval_options.get(k) for k in ("dataset", "root", "factor")}
    offsets, record = fit_run_offsets(
        run_dir, fit_offsets_on, fit_offsets_frames, **fit_options,
        device=eval_options.get("device", "auto"), progress=eval_options.get("progress", True),
    )  # fmt: skip
    result = evaluate_run(run_dir, class_offsets=offsets, **eval_options)
    return result | {"class_offsets_fit": record}
