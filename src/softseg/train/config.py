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
import math
import numbers
import os
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
    "MAY_CHANGE_ON_RESUME",
    "METRICS_LOG",
    "SOFT_LABELS_IN",
    "TrainConfig",
    "WHERE_IT_RUNS",
    "config_differences",
    "describe_differences",
    "read_checkpoint",
    "read_config",
    "read_dataset_info",
    "same_path",
    "write_config",
    "write_dataset_info",
]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
DATASET_INFO = "dataset.json"
METRICS_LOG = "metrics.jsonl"

#: What a config written before an option existed meant: the behaviour of the code back then, not
#: today's default (weight_mode was "class" until the CamVid study showed it cost soft labels).
IMPLIED_WHEN_MISSING: dict[str, Any] = {"weight_mode": "class", "soft_labels_in": "worker"}

#: The fields that say where a run executes, not what it learns: cells of one study may differ.
WHERE_IT_RUNS = frozenset({"workers", "device", "soft_labels_in"})

#: Where soft labels are made: in the data-loader workers, in the training step on the model's
#: device, or "auto" (the step on CUDA, the workers on the CPU).
SOFT_LABELS_IN = ("worker", "step", "auto")

#: The fields a resumed run may change. ``epochs``: raising it extends a finished run. The rest
#: say where or how fast the run executes, not what it learns: the run directory's own path
#: (``out``: a moved run is the same run), data-loader processes, the device, torch.compile,
#: CUDA's deterministic kernels, and how often and on how many images it validates. ``amp`` is
#: compared (it changes the numerics of every step), as is everything about data, model, loss,
#: optimiser and schedule. ``root`` is compared as the directory it resolves to.
#: ``soft_labels_in`` moves the same soft labels from the workers to the step (equal to float32
#: rounding, not bit for bit: a resume that changes it continues the run up to that rounding).
MAY_CHANGE_ON_RESUME = frozenset(
    {"epochs", "out", "workers", "device", "compile", "deterministic", "eval_every", "limit_val"}
    | {"soft_labels_in"}
)


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
    rotation: float = 0.0  # max random rotation in degrees; 0 (also when missing) is off
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
    soft_labels_in: str = "auto"  # "worker", "step" or "auto" (missing: "worker")
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    deterministic: bool = False  # bit-reproducible kernels on CUDA too (slower)
    eval_every: int = 1
    limit_train: int | None = None
    limit_val: int | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse values no run can use, naming the field (in backticks, which the CLI turns into
        its flag); ``crop`` and ``scale`` become tuples (JSON gives lists)."""
        if self.crop is not None:
            self.crop = tuple(self.crop)  # type: ignore[assignment]
        self.scale = tuple(self.scale)  # type: ignore[assignment]
        _check_config(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """The config a saved ``config.json`` describes (keys it lacks: see ``IMPLIED_WHEN_MISSING``)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**(IMPLIED_WHEN_MISSING | raw))

    def as_json(self) -> dict[str, Any]:
        """The config as it reads back from ``config.json`` (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


# --------------------------------------------------------------------------- validation
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _need(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")


def _check_config(cfg: TrainConfig) -> None:
    """The checks of :meth:`TrainConfig.__post_init__` (names and kinds of values only: whether
    a dataset, kernel or model of that name exists is found out where it is built)."""
    _need(isinstance(cfg.out, str) and bool(cfg.out), "out", cfg.out, "a directory name")
    _need(_is_real(cfg.factor) and cfg.factor > 0, "factor", cfg.factor, "a positive number")
    for name in ("epochs", "batch_size", "eval_every"):
        value = getattr(cfg, name)
        _need(_is_int(value) and value >= 1, name, value, "a positive integer")
    for name in ("limit_train", "limit_val", "topk"):
        value = getattr(cfg, name)
        expected = "a positive integer (or None for all)"
        _need(value is None or (_is_int(value) and value >= 1), name, value, expected)
    _need(_is_int(cfg.workers) and cfg.workers >= 0, "workers", cfg.workers, "0 or more")
    _need(_is_int(cfg.seed), "seed", cfg.seed, "an integer")
    _need(_is_real(cfg.lr) and cfg.lr > 0, "lr", cfg.lr, "a positive number")
    for name in ("weight_decay", "warmup_epochs", "jitter"):
        value = getattr(cfg, name)
        _need(_is_real(value) and value >= 0, name, value, "a number >= 0")
    rot = cfg.rotation
    _need(_is_real(rot) and 0 <= rot <= 180, "rotation", rot, "degrees in [0, 180] (0 is off)")
    ls = cfg.label_smoothing
    _need(_is_real(ls) and 0 <= ls < 1, "label_smoothing", ls, "a number in [0, 1)")
    crop = cfg.crop
    ok = crop is None or (len(crop) == 2 and all(_is_int(v) and v >= 1 for v in crop))
    _need(ok, "crop", crop, "two positive integers (height, width), or None")
    lo_hi = cfg.scale
    ok = len(lo_hi) == 2 and all(_is_real(v) and v > 0 for v in lo_hi) and lo_hi[0] <= lo_hi[1]
    _need(ok, "scale", lo_hi, "a range (low, high) with 0 < low <= high")
    _need(isinstance(cfg.dataset_options, dict), "dataset_options", cfg.dataset_options, "a dict")
    where = cfg.soft_labels_in
    _need(where in SOFT_LABELS_IN, "soft_labels_in", where, f"one of {SOFT_LABELS_IN}")
    ok = not (where == "step" and cfg.labels == "soft" and cfg.rotation > 0)
    _need(ok, "soft_labels_in", where, "'worker' or 'auto' with `rotation` > 0 (warped in workers)")
    _check_device_name(cfg.device)


def _check_device_name(name: Any) -> None:
    """``"auto"`` or a name torch reads as a device (whether it is present is checked later)."""
    import torch  # the config module is read by tools that need no torch otherwise

    expected = "'auto', 'cpu', 'cuda' or 'cuda:N'"
    _need(isinstance(name, str), "device", name, expected)
    if name == "auto":
        return
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"`device` must be {expected}, got {name!r}") from None


# --------------------------------------------------------------------------- resume
def same_path(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Whether two paths name the same place: equal as written, or equal once made absolute
    (relative to the current directory) and normalised, or the same existing file or directory.

    >>> same_path("data/camvid", "./data//camvid/"), same_path("data/a", "data/b")
    (True, False)
    """
    if a is None or b is None:
        return a is b
    if os.fspath(a) == os.fspath(b):
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.absolute() == pb.absolute() or pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:
        return False


def config_differences(saved: TrainConfig, asked: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved value, asked value)}`` for the fields a resume must not change: all but
    ``MAY_CHANGE_ON_RESUME``, with ``root`` compared as the place it names.

    >>> config_differences(TrainConfig(lr=0.1), TrainConfig(lr=0.2, epochs=30, workers=0))
    {'lr': (0.1, 0.2)}
    >>> config_differences(TrainConfig(root="data/x"), TrainConfig(root="./data/x", out="b"))
    {}
    """
    a, b = saved.as_json(), asked.as_json()
    diffs = {k: (a[k], b[k]) for k in a if k not in MAY_CHANGE_ON_RESUME and a[k] != b[k]}
    if "root" in diffs and same_path(a["root"], b["root"]):
        del diffs["root"]
    return diffs


def describe_differences(diffs: dict[str, tuple[Any, Any]]) -> str:
    """``"lr (saved 0.001, now 0.5), seed (saved 0, now 1)"``: each field with both values."""
    return ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in diffs.items())


def read_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir``."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a softseg run directory?")
    try:
        raw = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not a readable config ({err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a {type(raw).__name__}; expected a JSON object")
    return TrainConfig.from_dict(raw)


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


def read_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint of the run in ``run_dir``, on the CPU, read as plain tensors and containers
    (``weights_only``: a checkpoint never runs code when it is loaded).

    Raises:
        FileNotFoundError: ``run_dir`` holds no checkpoint.
        ValueError: the file is truncated, damaged or not a softseg checkpoint (naming it).
    """
    import torch

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a softseg run directory?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and pickle raise many unrelated types for a damaged file
        raise ValueError(
            f"cannot read the checkpoint {path} ({type(err).__name__}: {err}); the file is "
            "damaged or truncated (copy it again, or delete it to train the run from scratch)"
        ) from err
    keys = ("model", "epoch", "history", "num_classes")
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise ValueError(f"{path} is not a softseg checkpoint: it lacks {missing}")
    return state
