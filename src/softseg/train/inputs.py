"""What a training run reads: dataset splits, augmented samples, the window size, class weights.

Every augmentation is a function of (seed, epoch, index) only (:class:`AugmentedDataset`), whatever
the worker that makes it: that is what lets a killed run resume exactly.

Soft labels are made either in the data-loader workers, sample by sample, or in the training step
on the model's device (``TrainConfig.soft_labels_in``): the workers then ship each sample's integer
label window (:class:`~softseg.train.transforms.LabelWindow`), :func:`collate_samples` pads them
into one batch, and :func:`soft_from_windows` makes the whole batch with one
:func:`softseg.ops.batch.soft_resized_crop_batch` call, then flips and keeps the top-k as the
workers would: the same targets to float32 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from ..data import DatasetInfo, build_dataset
from ..ops.batch import soft_resized_crop_batch
from ..ops.sparse import topk_soft_labels
from .config import TrainConfig
from .losses import median_frequency_weights
from .runtime import DistInfo
from .targets import Target
from .transforms import LabelWindow, TrainTransform, sample_generator

__all__ = [
    "CLASS_WEIGHTS",
    "AugmentedDataset",
    "FirstN",
    "LabelWindows",
    "TrainData",
    "build_data",
    "class_weights",
    "collate_samples",
    "default_crop",
    "label_mass",
    "load_split",
    "read_ahead",
    "require_labels",
    "soft_from_windows",
    "soft_in_step",
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


class _Mapped(Dataset):
    """``fn(*ds[i])`` for the chosen indices, so that loader workers do the reading and ``fn``."""

    def __init__(self, ds: Dataset, indices: Sequence[int], fn: Callable[..., Any] | None) -> None:
        self.ds, self.indices, self.fn = ds, list(indices), fn

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Any:
        item = self.ds[self.indices[k]]
        return item if self.fn is None else self.fn(*item)


def read_ahead(
    ds: Dataset,
    indices: Sequence[int] | None = None,
    fn: Callable[..., Any] | None = None,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[Any]:
    """``fn(*ds[i])`` (or ``ds[i]``) for each index in order, read ahead by ``workers`` loader
    processes (0: read here, one at a time). On a GPU lease, scoring 305 CamVid frames read one
    at a time took longer than training the model. ``fn`` must be picklable
    where the loader spawns its workers rather than forking them (a module-level function or a
    dataclass instance, not a lambda)."""
    items = _Mapped(ds, range(len(ds)) if indices is None else indices, fn)
    if workers == 0:  # no loader at all: nothing to pin, no worker to start
        return (items[k] for k in range(len(items)))
    loader = DataLoader(items, batch_size=None, num_workers=workers, pin_memory=pin_memory)
    return iter(loader)


def _label(image: torch.Tensor, label: torch.Tensor, name: str) -> torch.Tensor:
    return label


def class_weights(cfg: TrainConfig, ds: Dataset, progress: bool) -> torch.Tensor | None:
    """The loss's class weights ``(C,)``, from the full-resolution training labels (the same for
    every label method, so that runs differing only in ``labels`` stay comparable)."""
    if cfg.class_weights is None:
        return None
    if cfg.class_weights != "median-frequency":
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {cfg.class_weights!r}")
    info = ds.info
    labels = tqdm(
        read_ahead(ds, fn=_label, workers=cfg.workers), "class frequencies", total=len(ds),
        disable=not progress,
    )  # fmt: skip
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


def train_transform(
    cfg: TrainConfig, info: DatasetInfo, crop: tuple[int, int], in_step: bool = False
) -> TrainTransform:
    """The augmentation ``cfg`` asks for, producing ``crop``-sized windows; ``in_step``: soft
    labels shipped as label windows, made in the training step (see :func:`soft_in_step`)."""
    return TrainTransform(
        info.num_classes, cfg.factor, crop, label_method=cfg.labels,
        image_kernel=cfg.image_kernel, label_kernel=cfg.label_kernel, antialias=cfg.antialias,
        scale_range=cfg.scale, hflip=cfg.hflip, jitter=cfg.jitter, topk=cfg.topk,
        ignore_index=info.ignore_index, rotation=cfg.rotation, soft_in_step=in_step,
    )  # fmt: skip


def soft_in_step(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the run makes its soft labels in the training step: ``soft_labels_in`` "step",
    or "auto" on CUDA (on the CPU the step would take the time from the model that the workers
    spend in parallel). Hard labels, and rotated soft labels under "auto", stay in the workers."""
    if cfg.labels != "soft" or cfg.soft_labels_in == "worker":
        return False
    if cfg.soft_labels_in == "step":
        return True  # the config refuses "step" with a rotation
    return device.type == "cuda" and cfg.rotation == 0


class LabelWindows(NamedTuple):
    """A batch of :class:`~softseg.train.transforms.LabelWindow`: ``windows`` ``(N, H, W)``
    integer, zero-padded (the padding is never read), ``sizes`` ``(N, 2)`` each window's true
    ``(h, w)``, ``boxes`` ``(N, 4)`` float64 in window pixels, ``flips`` ``(N,)`` bool."""

    windows: torch.Tensor
    sizes: torch.Tensor
    boxes: torch.Tensor
    flips: torch.Tensor


def collate_samples(batch: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, Any]:
    """The loader's batch: torch's default, or, for samples carrying label windows, the images
    stacked and the windows padded into :class:`LabelWindows`."""
    if not isinstance(batch[0][1], LabelWindow):
        return default_collate(batch)
    samples = [y for _, y in batch]
    sizes = torch.tensor([tuple(y.window.shape) for y in samples], dtype=torch.int64)
    h, w = (int(v) for v in sizes.max(0).values)
    windows = torch.zeros(len(samples), h, w, dtype=samples[0].window.dtype)
    for n, y in enumerate(samples):
        windows[n, : y.window.shape[0], : y.window.shape[1]] = y.window
    boxes = torch.stack([y.box for y in samples])
    flips = torch.stack([y.flip for y in samples])
    return torch.stack([x for x, _ in batch]), LabelWindows(windows, sizes, boxes, flips)


def soft_from_windows(t: TrainTransform, y: LabelWindows, device: torch.device) -> Target:
    """The batch's soft targets on ``device``, as the workers would have made them with ``t``
    (soft ``(N, C, h, w)``, or the top-k ``(indices, weights)``): one batched resampling of the
    windows, then each sample's flip, then the top-k."""
    soft = soft_resized_crop_batch(
        y.windows.to(device, non_blocking=True), y.boxes, t.crop_size, t.num_classes,
        sizes=y.sizes, ignore_index=t.ignore_index, resampler=t.label_resampler,
    )  # fmt: skip
    flips = y.flips.to(device).view(-1, 1, 1, 1)
    soft = torch.where(flips, soft.flip(-1), soft)
    return soft if t.topk is None else topk_soft_labels(soft, t.topk)


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
    transform = train_transform(cfg, train_ds.info, crop, soft_in_step(cfg, device))
    samples = AugmentedDataset(train_ds, transform, cfg.seed)
    sampler = DistributedSampler(
        samples, num_replicas=di.world, rank=di.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    per_rank = len(samples) // di.world
    if per_rank < cfg.batch_size:
        raise ValueError(
            f"{len(samples)} training images give {per_rank} per process, fewer than one batch of "
            f"{cfg.batch_size}; lower `batch_size`"
        )
    loader_kw = dict(
        batch_size=cfg.batch_size, sampler=sampler, drop_last=True, collate_fn=collate_samples
    )
    loader_kw |= dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    return TrainData(samples, sampler, loader_kw, per_rank // cfg.batch_size, val_ds)
