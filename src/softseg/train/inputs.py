"""What a training run reads: dataset splits, augmented samples, the window size, class weights.

Every augmentation is a function of (seed, epoch, index) only (:class:`AugmentedDataset`), whatever
the worker that makes it: that is what lets a killed run resume exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from ..data import DatasetInfo, build_dataset
from .config import TrainConfig
from .losses import median_frequency_weights
from .runtime import DistInfo
from .transforms import TrainTransform, sample_generator

__all__ = [
    "CLASS_WEIGHTS",
    "AugmentedDataset",
    "FirstN",
    "TrainData",
    "build_data",
    "class_weights",
    "default_crop",
    "label_mass",
    "load_split",
    "require_labels",
    "train_transform",
    "training_crop",
]

CLASS_WEIGHTS = (None, "median-frequency")


class AugmentedDataset(Dataset):
    """A dataset seen through a :class:`TrainTransform`, with randomness from (seed, epoch, index)."""

    def __init__(self, base: Dataset, transform: TrainTransform, seed: int) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next samples as epoch ``epoch`` does (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, label, name = self.base[index]
        try:
            return self.transform(image, label, sample_generator(self.seed, self.epoch, index))
        except ValueError as err:
            raise ValueError(f"sample {index} ({name}): {err}") from err


class FirstN(Dataset):
    """The first ``n`` samples of a dataset (all of them when it has fewer), with its ``info``."""

    def __init__(self, base: Dataset, n: int) -> None:
        self.base, self.n = base, min(n, len(base))
        self.info: DatasetInfo = base.info

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.base[index]


def load_split(cfg: TrainConfig, split: str, limit: int | None = None) -> Dataset:
    """Split ``split`` of the run's dataset, its first ``limit`` samples when given; never empty."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive number of images (or None), got {limit!r}")
    ds = build_dataset(cfg.dataset, cfg.root, split, **cfg.dataset_options)
    if len(ds) == 0:
        raise ValueError(f"split {split!r} of dataset {cfg.dataset!r} at {cfg.root} is empty")
    return ds if limit is None else FirstN(ds, limit)


def label_mass(y: Any, ignore_index: int) -> torch.Tensor:
    """The labelled mass of a batch's targets (soft, sparse top-k or class maps), on its device."""
    if isinstance(y, (tuple, list)):
        return y[1].sum().float()
    if y.dtype.is_floating_point:
        return y.sum().float()
    return (y != ignore_index).sum().float()


def require_labels(ds: Dataset, seen: float, split: str) -> None:
    """Refuse training labels without a single labelled pixel: the loss would be 0 and nothing
    learnt, silently. ``seen`` is the labelled mass of the batches so far; only when it is 0 are
    the labels read (the random windows may have missed the few labelled pixels)."""
    if seen > 0:
        return
    ignore = ds.info.ignore_index
    if any(bool((ds[i][1] != ignore).any()) for i in range(len(ds))):
        return
    raise ValueError(
        f"no labelled pixel in the {len(ds)} training images of split {split!r}: every label is "
        f"the ignore value {ignore}, so the loss is 0 and nothing is learnt (is this the right "
        "label folder, or the right dataset?)"
    )


def class_weights(cfg: TrainConfig, ds: Dataset, progress: bool) -> torch.Tensor | None:
    """The loss's class weights ``(C,)``, from the full-resolution training labels (the same for
    every label method, so that runs differing only in ``labels`` stay comparable)."""
    if cfg.class_weights is None:
        return None
    if cfg.class_weights != "median-frequency":
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {cfg.class_weights!r}")
    info = ds.info
    labels = (ds[i][1] for i in tqdm(range(len(ds)), "class frequencies", disable=not progress))
    return median_frequency_weights(labels, info.num_classes, info.ignore_index)


def default_crop(ds: Dataset, factor: float, divisor: int) -> tuple[int, int]:
    """The whole first frame at ``factor``, rounded up to a multiple of the model's ``divisor``."""
    _, label, _ = ds[0]
    h, w = (math.ceil(s / factor) for s in label.shape[-2:])
    return (-(-h // divisor) * divisor, -(-w // divisor) * divisor)


def training_crop(cfg: TrainConfig, ds: Dataset, divisor: int) -> tuple[int, int]:
    """The training window ``(h, w)``: ``cfg.crop``, or :func:`default_crop`; a multiple of
    ``divisor`` (the model's)."""
    crop = cfg.crop or default_crop(ds, cfg.factor, divisor)
    if crop[0] % divisor or crop[1] % divisor:
        raise ValueError(
            f"`crop` {crop} must be a multiple of {divisor} for {cfg.arch}/{cfg.encoder}"
        )
    return crop


def train_transform(cfg: TrainConfig, info: DatasetInfo, crop: tuple[int, int]) -> TrainTransform:
    """The augmentation ``cfg`` asks for, producing ``crop``-sized windows."""
    return TrainTransform(
        info.num_classes, cfg.factor, crop, label_method=cfg.labels,
        image_kernel=cfg.image_kernel, label_kernel=cfg.label_kernel, antialias=cfg.antialias,
        scale_range=cfg.scale, hflip=cfg.hflip, jitter=cfg.jitter, topk=cfg.topk,
        ignore_index=info.ignore_index, rotation=cfg.rotation,
    )  # fmt: skip


@dataclass
class TrainData:
    """The training samples, their sampler and loader settings, and the validation split."""

    samples: AugmentedDataset
    sampler: DistributedSampler
    loader_kw: dict[str, Any]
    steps_per_epoch: int
    val: Dataset | None

    @property
    def info(self) -> DatasetInfo:
        """The training dataset's description."""
        return self.samples.base.info

    def epoch_loader(self, epoch: int) -> DataLoader:
        """The batches of epoch ``epoch`` (the same on every call, and after a resume)."""
        self.samples.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        return DataLoader(self.samples, **self.loader_kw)


def build_data(
    cfg: TrainConfig,
    train_ds: Dataset,
    val_ds: Dataset | None,
    divisor: int,
    di: DistInfo,
    device: torch.device,
) -> TrainData:
    """Augmented, sharded training batches of ``train_ds`` in windows fitting the model's
    ``divisor``; refuses a split too small for one batch per process."""
    crop = training_crop(cfg, train_ds, divisor)
    samples = AugmentedDataset(train_ds, train_transform(cfg, train_ds.info, crop), cfg.seed)
    sampler = DistributedSampler(
        samples, num_replicas=di.world, rank=di.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    per_rank = len(samples) // di.world
    if per_rank < cfg.batch_size:
        raise ValueError(
            f"{len(samples)} training images give {per_rank} per process, fewer than one batch of "
            f"{cfg.batch_size}; lower `batch_size`"
        )
    loader_kw = dict(batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    loader_kw |= dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    return TrainData(samples, sampler, loader_kw, per_rank // cfg.batch_size, val_ds)
