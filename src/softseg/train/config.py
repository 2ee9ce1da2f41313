"""What a training run is: its config and the files of its run directory.

A run lives in one directory:

- ``config.json``: the :class:`TrainConfig` that was asked for;
- ``dataset.json``: what the model's outputs mean (dataset name, class names, colours, ignore
  value), written when training starts, so that ``predict`` and ``eval`` of the run need no dataset
  split for them (runs written before it existed fall back to the dataset);
- ``checkpoint.pt``: weights, optimiser, schedule, RNG state and the per-epoch history, written
  atomically after every epoch;
- ``metrics.jsonl``: that history, one JSON line per finished epoch, rewritten from the checkpoint
  so the two always agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..data import DatasetInfo

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "DATASET_INFO",
    "IMPLIED_WHEN_MISSING",
    "METRICS_LOG",
    "TrainConfig",
    "config_differences",
    "read_config",
    "read_dataset_info",
    "write_config",
    "write_dataset_info",
]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
DATASET_INFO = "dataset.json"
METRICS_LOG = "metrics.jsonl"

#: What a config written before an option existed meant: the behaviour of the code back then, not
#: today's default (weight_mode was "class" until the CamVid study showed it cost soft labels).
IMPLIED_WHEN_MISSING: dict[str, Any] = {"weight_mode": "class"}

#: The fields a resumed run may change: raising ``epochs`` extends a finished run.
MAY_CHANGE_ON_RESUME = frozenset({"epochs"})


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` in the run directory.

    >>> cfg = TrainConfig.from_dict({"factor": 8, "crop": [32, 64]})
    >>> cfg.crop, cfg.weight_mode        # a config without weight_mode predates it: "class"
    ((32, 64), 'class')
    >>> TrainConfig().weight_mode
    'pixel'
    """

    out: str = "runs/run"
    dataset: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    factor: float = 4.0
    crop: tuple[int, int] | None = None  # training window (h, w); default: the frame / factor
    labels: str = "soft"
    image_kernel: str = "bilinear"
    label_kernel: str | None = None  # None: the image's kernel (coherent pairs)
    antialias: bool = True
    scale: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    jitter: float = 0.1
    topk: int | None = None
    arch: str = "unet"
    encoder: str = "resnet18"
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "poly"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    class_weights: str | None = None  # None or "median-frequency" (over the training labels)
    weight_mode: str = "pixel"  # how class weights meet soft labels: "pixel" or "class"
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    deterministic: bool = False  # bit-reproducible kernels on CUDA too (slower)
    eval_every: int = 1
    limit_train: int | None = None
    limit_val: int | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """The config a saved ``config.json`` describes (keys it lacks: see ``IMPLIED_WHEN_MISSING``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        cfg = cls(**(IMPLIED_WHEN_MISSING | raw))
        for name in ("crop", "scale"):
            value = getattr(cfg, name)
            if value is not None:
                setattr(cfg, name, tuple(value))
        return cfg

    def as_json(self) -> dict[str, Any]:
        """The config as it reads back from ``config.json`` (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


def config_differences(saved: TrainConfig, asked: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved value, asked value)}`` for the fields a resume must not change.

    >>> config_differences(TrainConfig(lr=0.1), TrainConfig(lr=0.2, epochs=30))
    {'lr': (0.1, 0.2)}
    """
    a, b = saved.as_json(), asked.as_json()
    return {k: (a[k], b[k]) for k in a if k not in MAY_CHANGE_ON_RESUME and a[k] != b[k]}


def read_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir``."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a softseg run directory?")
    return TrainConfig.from_dict(json.loads(path.read_text()))


def write_config(run_dir: str | Path, cfg: TrainConfig) -> Path:
    """Save ``cfg`` as ``run_dir/config.json`` (atomically)."""
    return atomic_write_text(Path(run_dir) / CONFIG, json.dumps(asdict(cfg), indent=2) + "\n")


def write_dataset_info(run_dir: str | Path, info: DatasetInfo) -> Path:
    """Save what the model's classes mean as ``run_dir/dataset.json`` (atomically)."""
    text = json.dumps(asdict(info), indent=2) + "\n"
    return atomic_write_text(Path(run_dir) / DATASET_INFO, text)


def read_dataset_info(run_dir: str | Path) -> DatasetInfo | None:
    """The :class:`DatasetInfo` saved in ``run_dir``, or ``None`` for a run written before it was.

    >>> import tempfile
    >>> from softseg.data import SYNTHETIC_INFO
    >>> with tempfile.TemporaryDirectory() as run:
    ...     _ = write_dataset_info(run, SYNTHETIC_INFO)
    ...     read_dataset_info(run) == SYNTHETIC_INFO
    True
    """
    path = Path(run_dir) / DATASET_INFO
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    try:
        return DatasetInfo(
            name=str(raw["name"]),
            classes=tuple(str(c) for c in raw["classes"]),
            colors=tuple((int(r), int(g), int(b)) for r, g, b in raw["colors"]),
            ignore_index=int(raw["ignore_index"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a dataset description ({err!r})") from err
