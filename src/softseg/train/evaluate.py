"""Scoring and using a trained model: the loop behind ``softseg eval`` and ``softseg predict``.

Scores are taken at the original label resolution: the image is shrunk by the run's factor with
its kernel, and the logits are up-sampled back to the label (:class:`SegmentationMetrics`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data import DatasetInfo
from .config import CHECKPOINT, CONFIG, TrainConfig, read_checkpoint, read_config, read_dataset_info
from .inputs import load_split
from .metrics import SegmentationMetrics
from .models import create_model, pad_to_multiple, required_divisor
from .runtime import DistInfo, init_distributed, resolve_device, unwrap
from .transforms import EvalTransform

__all__ = [
    "build_model",
    "evaluate_model",
    "evaluate_run",
    "load_run",
    "predict_image",
    "predict_logits",
    "run_dataset_info",
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
) -> dict[str, Any]:
    """Score ``model`` on ``ds`` at the original label resolution (logits up-sampled to the label).

    With ``dist_info`` of several processes each scores every ``world``-th image and the counts
    are summed; every process returns the same scores.
    """
    dist_info = dist_info or DistInfo()
    info = ds.info
    transform = EvalTransform(factor, image_kernel=image_kernel, antialias=antialias)
    metrics = SegmentationMetrics(info.num_classes, info.ignore_index, info.classes)
    divisor = required_divisor(unwrap(model))
    was_training = model.training
    model.eval()
    indices = range(dist_info.rank, len(ds), dist_info.world)
    bar = tqdm(indices, desc=desc, disable=not (progress and dist_info.main), leave=False)
    for i in bar:
        image, label, _ = ds[i]
        x, y = transform(image, label)
        logits = predict_logits(model, x[None].to(device), divisor)
        metrics.update(logits.float(), y[None].to(device))
    metrics.all_reduce()
    model.train(was_training)
    result = metrics.compute()
    result["n_images"] = len(ds)
    return result


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
) -> dict[str, Any]:
    """Score a run's checkpoint on a split (dataset, root and factor default to the run's own).

    Returns :meth:`SegmentationMetrics.compute`'s scores plus ``run``, ``dataset``, ``split``,
    ``factor``, ``epoch`` (of the checkpoint) and ``labels`` (the run's label method).
    """
    if factor is not None and not (
        isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0
    ):
        raise ValueError(f"`factor` must be a positive number, got {factor!r}")
    dev = resolve_device(device)
    di = init_distributed(dev)
    cfg, model, state = load_run(run_dir, dev)
    data_cfg = replace(cfg, dataset=dataset or cfg.dataset, root=root or cfg.root)
    ds = load_split(data_cfg, split, limit)
    _check_classes(ds.info, run_dir, state, f"split {split!r} of {data_cfg.dataset}")
    result = evaluate_model(
        model, ds, factor or cfg.factor, image_kernel=cfg.image_kernel, antialias=cfg.antialias,
        device=dev, dist_info=di, progress=progress, desc=f"eval {split}",
    )  # fmt: skip
    result |= {
        "run": str(run_dir),
        "dataset": data_cfg.dataset,
        "split": split,
        "factor": factor or cfg.factor,
        "epoch": int(state["epoch"]) + 1,
        "labels": cfg.labels,
    }
    return result


@torch.no_grad()
def predict_image(
    model: torch.nn.Module, cfg: TrainConfig, image: torch.Tensor, device: torch.device | str
) -> torch.Tensor:
    """Class map ``(H, W)`` int64 at the image's own resolution for a uint8 image ``(3, H, W)``."""
    x = EvalTransform(cfg.factor, cfg.image_kernel, cfg.antialias).transform_image(image)
    logits = predict_logits(model, x[None].to(device), required_divisor(unwrap(model)))
    logits = F.interpolate(
        logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=False
    )
    return logits.argmax(1)[0].cpu()
