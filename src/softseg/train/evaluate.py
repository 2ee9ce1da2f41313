"""Scoring and using a trained model: the loop behind ``softseg eval`` and ``softseg predict``.

Scores are taken at the original label resolution: the image is shrunk by the run's factor with
its kernel, and the logits are up-sampled back to the label (:class:`SegmentationMetrics`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data import DatasetInfo
from .config import CHECKPOINT, CONFIG, TrainConfig, read_checkpoint, read_config, read_dataset_info
from .inputs import load_split, read_ahead
from .metrics import SegmentationMetrics
from .models import create_model, pad_to_multiple, required_divisor
from .runtime import DistInfo, init_distributed, resolve_device, unwrap
from .transforms import EvalTransform

__all__ = [
    "build_model",
    "check_factor",
    "evaluate_model",
    "evaluate_run",
    "frame_logits",
    "load_run",
    "predict_image",
    "predict_logits",
    "run_dataset_info",
    "score_table",
    "to_label_size",
]


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The (untrained) model ``cfg`` names, with ``num_classes`` outputs."""
    return create_model(cfg.arch, cfg.encoder, num_classes=num_classes)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Logits for normalised images ``(N, 3, h, w)``, padding to the model's divisor and back."""
    h, w = x.shape[-2:]
    padded, _ = pad_to_multiple(x, divisor)
    logits = model(padded)
    # logits may be smaller than the input (output stride > 1): crop the same fraction, keeping
    # at least one row and column (an input smaller than the stride still gets a prediction)
    lh = max(1, round(logits.shape[-2] * h / padded.shape[-2]))
    lw = max(1, round(logits.shape[-1] * w / padded.shape[-1]))
    return logits[..., :lh, :lw]


def to_label_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float32 logits ``(N, C, h, w)`` up-sampled bilinearly to the label ``size`` ``(H, W)``, as
    :class:`SegmentationMetrics` does before its argmax."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class _ModelInput:
    """A frame as the model and the metrics take it (a picklable step for the loader workers)."""

    transform: EvalTransform

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, name: str
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        return (*self.transform(image, label), name)


@torch.no_grad()
def frame_logits(
    model: torch.nn.Module,
    ds: Dataset,
    factor: float,
    indices: Iterable[int],
    *,
    image_kernel: str = "bilinear",
    antialias: bool = True,
    device: torch.device,
    progress: bool = True,
    desc: str = "eval",
    workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
    """``(logits (1, C, h, w) float32, label (1, H, W) int64, name)`` for the frames ``indices`` of
    ``ds``, the image shrunk by ``factor`` with the run's kernel and the label left at full size
    (both on ``device``). ``workers`` loader processes read and shrink the frames ahead (see
    :func:`~softseg.train.inputs.read_ahead`). The model is in eval mode meanwhile and gets its
    mode back after."""
    indices = list(indices)
    step = _ModelInput(EvalTransform(factor, image_kernel=image_kernel, antialias=antialias))
    frames = read_ahead(
        ds, indices, step, workers=workers, pin_memory=torch.device(device).type == "cuda"
    )
    divisor = required_divisor(unwrap(model))
    was_training = model.training
    model.eval()
    try:
        for x, y, name in tqdm(
            frames, desc=desc, total=len(indices), disable=not progress, leave=False
        ):
            logits = predict_logits(model, x[None].to(device), divisor).float()
            yield logits, y[None].to(device), name
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    ds: Dataset,
    factor: float,
    *,
    image_kernel: str = "bilinear",
    antialias: bool = True,
    device: torch.device,
    dist_info: DistInfo | None = None,
    progress: bool = True,
    desc: str = "eval",
    logit_offset: torch.Tensor | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Score ``model`` on ``ds`` at the original label resolution (logits up-sampled to the label).

    With ``dist_info`` of several processes each scores every ``world``-th image and the counts
    are summed; every process returns the same scores. ``logit_offset`` ``(C,)`` is added to every
    pixel's logits before scoring (see :func:`prior_offset` and :mod:`softseg.train.offsets`).
    ``workers`` loader processes read the frames ahead (0: read here).
    """
    dist_info = dist_info or DistInfo()
    info = ds.info
    metrics = SegmentationMetrics(info.num_classes, info.ignore_index, info.classes)
    frames = frame_logits(
        model, ds, factor, range(dist_info.rank, len(ds), dist_info.world),
        image_kernel=image_kernel, antialias=antialias, device=device,
        progress=progress and dist_info.main, desc=desc, workers=workers,
    )  # fmt: skip
    for logits, y, _ in frames:
        if logit_offset is not None:
            logits = logits + logit_offset.to(logits.device).view(1, -1, 1, 1)
        metrics.update(logits, y)
    metrics.all_reduce()
    result = metrics.compute()
    result["n_images"] = len(ds)
    return result


def class_frequencies(ds: Dataset, progress: bool = False) -> torch.Tensor:
    """Share ``(C,)`` float64 of each class among the labelled pixels of ``ds`` (full resolution)."""
    info = ds.info
    counts = torch.zeros(info.num_classes, dtype=torch.float64)
    for i in tqdm(range(len(ds)), desc="class frequencies", disable=not progress, leave=False):
        flat = ds[i][1].reshape(-1).long()
        flat = flat[flat != info.ignore_index]
        counts += torch.bincount(flat, minlength=info.num_classes).double()
    if counts.sum() == 0:
        raise ValueError("no labelled pixel: class frequencies are undefined")
    return counts / counts.sum()


def prior_offset(frequencies: torch.Tensor, strength: float) -> torch.Tensor:
    """Logit offsets ``-strength * log(prior)`` that decode with the class prior divided out.

    A model trained on labels whose classes occur with ``prior`` predicts ``p(c | x)`` under that
    prior; ``argmax_c [z_c - log prior_c]`` is the decision of a model whose classes were equally
    likely a priori (logit adjustment, Menon et al. 2021), which favours rare, thin classes such as
    pole. ``strength`` 0 changes nothing, 1 divides the prior out fully. Classes absent from the
    training labels get no offset.

    Only for models trained without class weights: cross-entropy with weights ``w_c`` is
    minimised by ``q(c | x) ∝ w_c p(c | x)`` (exactly for one-hot labels, nearly for soft ones
    in ``weight_mode="pixel"``), so the balanced decision ``argmax p(c | x) / prior_c`` is
    ``argmax q(c | x) / (w_c prior_c)``. Median-frequency weights
    (:func:`~softseg.train.losses.median_frequency_weights`) make ``w_c prior_c = median *
    presence_c``, ``presence_c`` the share of training pixels in frames holding class ``c``, near
    1 for most CamVid classes: such a model's logits are already prior-adjusted, and this offset
    counts the prior twice (issue 16: mIoU 16.66 to 10.76 at strength 1 on a cross-sequence cell).
    :mod:`softseg.train.offsets` fits offsets on training frames instead, with no such assumption.

    >>> prior_offset(torch.tensor([0.5, 0.25, 0.25, 0.0]), 1.0).tolist()  # doctest: +ELLIPSIS
    [0.6931..., 1.3862..., 1.3862..., 0.0]
    """
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"`strength` must be a finite number >= 0, got {strength!r}")
    logs = frequencies.double().clamp(min=1e-300).log()
    return torch.where(frequencies > 0, -strength * logs, 0.0).float()


def load_run(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[TrainConfig, torch.nn.Module, dict[str, Any]]:
    """``(config, model in eval mode, checkpoint)`` of a finished or interrupted run, weights from
    its last checkpoint."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    state = read_checkpoint(run_dir)
    model = build_model(cfg, int(state["num_classes"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # the weights of another model than config.json names
        raise ValueError(
            f"the weights in {run_dir / CHECKPOINT} do not fit the {cfg.arch}/{cfg.encoder} model "
            f"of {run_dir / CONFIG}: {err}"
        ) from err
    return cfg, model.to(device).eval(), state


def run_dataset_info(run_dir: str | Path, cfg: TrainConfig | None = None) -> DatasetInfo:
    """What the classes of the run in ``run_dir`` mean: its ``dataset.json``; for runs written
    before that file existed, the description of the dataset the run's config names."""
    saved = read_dataset_info(run_dir)
    if saved is not None:
        return saved
    cfg = cfg or read_config(run_dir)
    return load_split(cfg, cfg.train_split, 1).info


def _check_classes(
    info: DatasetInfo, run_dir: str | Path, state: dict[str, Any], what: str
) -> None:
    """Refuse to score a model on labels whose classes are not the ones it learnt."""
    trained = read_dataset_info(run_dir)
    if info.num_classes != int(state["num_classes"]):
        raise ValueError(
            f"{what} has {info.num_classes} classes but the checkpoint in {run_dir} predicts "
            f"{state['num_classes']}"
        )
    if trained is not None and tuple(info.classes) != tuple(trained.classes):
        raise ValueError(
            f"{what} names its classes {list(info.classes)} but the run in {run_dir} was trained "
            f"on {list(trained.classes)}"
        )


def check_factor(factor: float | None) -> None:
    """Refuse a factor to score at that is not a positive number (``None``: the run's)."""
    if factor is not None and not (
        isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0
    ):
        raise ValueError(f"`factor` must be a positive number, got {factor!r}")


def _logit_offset(
    cfg: TrainConfig,
    info: DatasetInfo,
    prior_correction: float,
    class_offsets: Sequence[float] | torch.Tensor | None,
    progress: bool,
) -> torch.Tensor | None:
    """The ``(C,)`` offset to decode with: the prior correction's, the given one, or none."""
    if not (math.isfinite(prior_correction) and prior_correction >= 0):
        raise ValueError(f"`prior_correction` must be a number >= 0, got {prior_correction!r}")
    if class_offsets is None:
        if not prior_correction:
            return None
        train_ds = load_split(cfg, cfg.train_split, cfg.limit_train)
        return prior_offset(class_frequencies(train_ds, progress), prior_correction)
    if prior_correction:
        raise ValueError(
            f"`prior_correction` ({prior_correction!r}) and `class_offsets` are two remedies for "
            "one bias: give one of them, not both (summing them would count the prior twice)"
        )
    offset = torch.as_tensor(class_offsets, dtype=torch.float32).reshape(-1)
    if offset.numel() != info.num_classes or not bool(offset.isfinite().all()):
        raise ValueError(
            f"`class_offsets` must be {info.num_classes} finite numbers (one per class), got "
            f"{offset.tolist()}"
        )
    return offset


def evaluate_run(
    run_dir: str | Path,
    *,
    dataset: str | None = None,
    root: str | None = None,
    split: str = "val",
    factor: float | None = None,
    device: str = "auto",
    limit: int | None = None,
    progress: bool = True,
    prior_correction: float = 0.0,
    class_offsets: Sequence[float] | torch.Tensor | None = None,
) -> dict[str, Any]:
    """Score a run's checkpoint on a split (dataset, root and factor default to the run's own).

    ``prior_correction`` > 0 decodes with the training split's class prior divided out to that
    strength (:func:`prior_offset`; needs the run's training data). ``class_offsets`` ``(C,)`` are
    added to every pixel's logits instead (e.g. :func:`softseg.train.offsets.fit_class_offsets`);
    giving both is an error. Returns :meth:`SegmentationMetrics.compute`'s scores plus ``run``,
    ``dataset``, ``split``, ``factor``, ``epoch`` (of the checkpoint), ``labels`` (the run's label
    method), ``prior_correction`` and ``class_offsets`` (``{class name: offset}`` or ``None``).
    """
    check_factor(factor)
    dev = resolve_device(device)
    di = init_distributed(dev)
    cfg, model, state = load_run(run_dir, dev)
    data_cfg = replace(cfg, dataset=dataset or cfg.dataset, root=root or cfg.root)
    ds = load_split(data_cfg, split, limit)
    _check_classes(ds.info, run_dir, state, f"split {split!r} of {data_cfg.dataset}")
    offset = _logit_offset(cfg, ds.info, prior_correction, class_offsets, progress)
    result = evaluate_model(
        model, ds, factor or cfg.factor, image_kernel=cfg.image_kernel, antialias=cfg.antialias,
        device=dev, dist_info=di, progress=progress, desc=f"eval {split}", logit_offset=offset,
        workers=cfg.workers,
    )  # fmt: skip
    result |= {
        "run": str(run_dir),
        "dataset": data_cfg.dataset,
        "split": split,
        "factor": factor or cfg.factor,
        "epoch": int(state["epoch"]) + 1,
        "labels": cfg.labels,
        "prior_correction": prior_correction,
        "class_offsets": None
        if class_offsets is None
        else dict(zip(ds.info.classes, offset.tolist(), strict=True)),
    }
    return result


@torch.no_grad()
def predict_image(
    model: torch.nn.Module, cfg: TrainConfig, image: torch.Tensor, device: torch.device | str
) -> torch.Tensor:
    """Class map ``(H, W)`` int64 at the image's own resolution for a uint8 image ``(3, H, W)``."""
    x = EvalTransform(cfg.factor, cfg.image_kernel, cfg.antialias).transform_image(image)
    logits = predict_logits(model, x[None].to(device), required_divisor(unwrap(model)))
    return to_label_size(logits, tuple(image.shape[-2:])).argmax(1)[0].cpu()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"  # None: a class absent from the labels


def score_table(result: dict[str, Any]) -> str:
    """The per-class IoU table ``softseg eval`` prints, then mIoU, pixel accuracy, boundary mIoU,
    ECE and NLL (``-`` for an absent score)."""
    lines = [f"{'class':<20}{'IoU %':>8}"]
    for name, iou in (result.get("per_class") or {}).items():
        lines.append(f"{name:<20}{_percent(iou):>8}")
    lines.append(f"{'mIoU':<20}{_percent(result['miou']):>8}")
    lines.append(f"{'pixel accuracy':<20}{_percent(result['pixel_acc']):>8}")
    width = result.get("boundary_width")
    lines.append(f"{f'boundary mIoU ({width} px)':<20}{_percent(result.get('boundary_miou')):>8}")
    lines.append(f"{'ECE %':<20}{_percent(result.get('ece')):>8}")
    nll = result.get("nll")
    lines.append(f"{'NLL (nats/pixel)':<20}{'-' if nll is None else f'{nll:.4f}':>8}")
    return "\n".join(lines)
