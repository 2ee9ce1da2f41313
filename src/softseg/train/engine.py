"""Training, evaluation and prediction: the loop behind ``softseg train``, ``eval`` and ``predict``.

A run lives in one directory: ``config.json`` (what was asked), ``checkpoint.pt`` (written atomically
after every epoch: weights, optimiser, schedule, RNG state and the per-epoch history) and
``metrics.jsonl`` (that history, one JSON line per finished epoch, rewritten from the checkpoint so the
two always agree). ``resume=True`` continues from the checkpoint and, because every augmentation is a
function of (seed, epoch, index) only, ends exactly where the uninterrupted run would.

Distributed data parallel runs under ``torchrun`` (NCCL on CUDA, gloo on the CPU); rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from ..atomic import atomic_torch_save, atomic_write_text
from ..data import build_dataset
from .losses import SoftCrossEntropy, median_frequency_weights
from .metrics import SegmentationMetrics
from .models import create_model, pad_to_multiple, required_divisor
from .transforms import EvalTransform, TrainTransform, sample_generator

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS_LOG = "metrics.jsonl"


#: What a config written before an option existed meant: the behaviour of the code back then, not
#: today's default (weight_mode was "class" until the CamVid study showed it cost soft labels).
IMPLIED_WHEN_MISSING: dict[str, Any] = {"weight_mode": "class"}


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` in the run directory."""

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


# --------------------------------------------------------------------------- small utilities
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def reset_peak_memory(device: torch.device) -> None:
    """Start counting peak memory afresh (CUDA allocator; on Linux, the process's peak RSS)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
    except OSError:
        pass  # not Linux: the peak then counts from the start of the process


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since :func:`reset_peak_memory`: CUDA allocations on a GPU; on the CPU the peak
    resident set of this process (data-loader workers not included)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux and BSD: KiB


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# --------------------------------------------------------------------------- data
class AugmentedDataset(Dataset):
    """A dataset seen through a :class:`TrainTransform`, with randomness from (seed, epoch, index)."""

    def __init__(self, base: Dataset, transform: TrainTransform, seed: int) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label, name = self.base[index]
        try:
            return self.transform(image, label, sample_generator(self.seed, self.epoch, index))
        except ValueError as err:
            raise ValueError(f"sample {index} ({name}): {err}") from err


class _Subset(Dataset):
    def __init__(self, base: Dataset, n: int) -> None:
        self.base, self.n, self.info = base, min(n, len(base)), base.info

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.base[index]


def load_split(cfg: TrainConfig, split: str, limit: int | None = None) -> Dataset:
    ds = build_dataset(cfg.dataset, cfg.root, split, **cfg.dataset_options)
    if len(ds) == 0:
        raise ValueError(f"split {split!r} of dataset {cfg.dataset!r} at {cfg.root} is empty")
    return _Subset(ds, limit) if limit else ds


CLASS_WEIGHTS = (None, "median-frequency")


def _class_weights(cfg: TrainConfig, ds: Dataset, progress: bool) -> torch.Tensor | None:
    """The loss's class weights, from the full-resolution training labels (the same for every
    label method, so that runs differing only in ``labels`` stay comparable)."""
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


# --------------------------------------------------------------------------- model and optimiser
def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    return create_model(cfg.arch, cfg.encoder, num_classes=num_classes)


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")


def _lr_factor(cfg: TrainConfig, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    if cfg.schedule not in ("poly", "cosine", "constant"):
        raise ValueError(f"schedule must be 'poly', 'cosine' or 'constant', got {cfg.schedule!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if cfg.schedule == "poly":
            return (1.0 - t) ** 0.9
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return factor


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Logits for normalised images ``(N, 3, h, w)``, padding to the model's divisor and back."""
    h, w = x.shape[-2:]
    padded, _ = pad_to_multiple(x, divisor)
    logits = model(padded)
    # logits may be smaller than the input (output stride > 1): crop the same fraction
    lh = round(logits.shape[-2] * h / padded.shape[-2])
    lw = round(logits.shape[-1] * w / padded.shape[-1])
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
    dist_info: _Dist | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> dict[str, Any]:
    """Score ``model`` on ``ds`` at the original label resolution (logits up-sampled to the label)."""
    dist_info = dist_info or _Dist()
    info = ds.info
    transform = EvalTransform(factor, image_kernel=image_kernel, antialias=antialias)
    metrics = SegmentationMetrics(info.num_classes, info.ignore_index, info.classes)
    divisor = required_divisor(_unwrap(model))
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


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DistributedDataParallel


@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Only bit-reproducible kernels inside the block; the previous setting is restored after it.

    The CPU path is deterministic anyway. On CUDA, cuDNN and cuBLAS pick kernels whose reductions
    run in a varying order, so two identical runs drift apart in the last bits and a resumed run
    does not end where the uninterrupted one does; this trades some speed for exactness. An op
    with no deterministic CUDA kernel then raises rather than silently breaking the promise.
    """
    if not enabled:
        yield
        return
    # cuBLAS reads this when it creates its workspace; without it PyTorch refuses the products
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


# --------------------------------------------------------------------------- training
def _history_lines(history: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in history)


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples become lists), without ``epochs``."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k != "epochs"}


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the last epoch's record (train loss, val scores, times).

    ``resume`` continues ``cfg.out`` from its checkpoint; only ``epochs`` may differ from the saved
    config (raising it extends a finished run, with the schedule stretched to the new length from
    there on). ``stop_after_epoch`` ends the call early, as a kill after that epoch would.

    Raises:
        FileExistsError: ``cfg.out`` already holds a run and ``resume`` is False.
        FloatingPointError: the loss became NaN or infinite (the last good checkpoint is kept).
    """
    with deterministic_algorithms(cfg.deterministic):
        return _train(cfg, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch)


def _train(
    cfg: TrainConfig, *, resume: bool, progress: bool, stop_after_epoch: int | None
) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    di = _init_distributed(device)
    if device.type == "cuda" and di.world > 1:
        device = torch.device("cuda", di.local_rank)
        torch.cuda.set_device(device)
    if (cfg.amp or cfg.compile) and device.type != "cuda":
        raise ValueError("--amp and --compile are CUDA options; this run is on the CPU")
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    state = None
    if ckpt_path.exists() and not resume:
        raise FileExistsError(
            f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it "
            "or choose another --out"
        )
    if resume and ckpt_path.exists():
        saved = TrainConfig.from_dict(json.loads((out / CONFIG).read_text()))
        if _comparable(saved) != _comparable(cfg):
            raise ValueError(
                f"--resume with a config that differs from {out / CONFIG}; "
                "only --epochs may change when resuming"
            )
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    torch.manual_seed(cfg.seed)

    train_ds = load_split(cfg, cfg.train_split, cfg.limit_train)
    val_ds = load_split(cfg, cfg.val_split, cfg.limit_val) if cfg.val_split else None
    info = train_ds.info
    model = build_model(cfg, info.num_classes).to(device)
    divisor = required_divisor(model)
    crop = cfg.crop or default_crop(train_ds, cfg.factor, divisor)
    if crop[0] % divisor or crop[1] % divisor:
        raise ValueError(
            f"crop {crop} must be a multiple of {divisor} for {cfg.arch}/{cfg.encoder}"
        )
    transform = TrainTransform(
        info.num_classes, cfg.factor, crop, label_method=cfg.labels,
        image_kernel=cfg.image_kernel, label_kernel=cfg.label_kernel, antialias=cfg.antialias,
        scale_range=cfg.scale, hflip=cfg.hflip, jitter=cfg.jitter, topk=cfg.topk,
        ignore_index=info.ignore_index,
    )  # fmt: skip
    data = AugmentedDataset(train_ds, transform, cfg.seed)
    sampler = DistributedSampler(
        data, num_replicas=di.world, rank=di.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    per_rank = len(data) // di.world
    if per_rank < cfg.batch_size:
        raise ValueError(
            f"{len(data)} training images give {per_rank} per process, fewer than one batch of "
            f"{cfg.batch_size}; lower --batch-size"
        )
    loader_kw = dict(batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    loader_kw |= dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    steps_per_epoch = per_rank // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    optimizer = _optimizer(cfg, model)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_factor(cfg, total, round(cfg.warmup_epochs * steps_per_epoch))
    )
    loss_fn = SoftCrossEntropy(
        ignore_index=info.ignore_index, label_smoothing=cfg.label_smoothing,
        weight=_class_weights(cfg, train_ds, progress and di.main), weight_mode=cfg.weight_mode,
        kernel=cfg.label_kernel or cfg.image_kernel, antialias=cfg.antialias,
    ).to(device)  # fmt: skip
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
    elif di.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / CONFIG, json.dumps(asdict(cfg), indent=2) + "\n")
    net: torch.nn.Module = model
    if di.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)
    amp_dtype = (
        torch.bfloat16
        if device.type == "cuda" and torch.cuda.is_bf16_supported()
        else torch.float16
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and amp_dtype == torch.float16)
    reset_peak_memory(device)

    record: dict[str, Any] = history[-1] if history else {}
    last_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
    for epoch in range(start_epoch, last_epoch):
        data.set_epoch(epoch)
        sampler.set_epoch(epoch)
        loader = DataLoader(data, **loader_kw)
        net.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{cfg.epochs} [{cfg.labels} x{cfg.factor:g}]",
            disable=not (progress and di.main), unit="batch", leave=False,
        )  # fmt: skip
        for step, (x, y) in enumerate(bar):
            x = x.to(device, non_blocking=True)
            y = tuple(t.to(device) for t in y) if isinstance(y, (tuple, list)) else y.to(device)
            autocast = torch.autocast("cuda", dtype=amp_dtype) if cfg.amp else nullcontext()
            with autocast:
                logits = net(x)
            try:
                loss = loss_fn(logits.float(), y)
            except FloatingPointError as err:
                raise FloatingPointError(
                    f"epoch {epoch + 1}, step {step + 1}: {err}; stopped without touching "
                    f"{ckpt_path} (it holds epoch {start_epoch if not history else history[-1]['epoch']})"
                ) from err
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            loss_sum += loss.detach()
            if step % 5 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{schedule.get_last_lr()[0]:.2e}")
        if di.world > 1:
            dist.all_reduce(loss_sum)
        epoch_time = time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum.item() / (steps_per_epoch * di.world),
            "lr": schedule.get_last_lr()[0],
            "epoch_time_s": epoch_time,
            "peak_memory_mb": peak_memory_mb(device),
        }
        if val_ds is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            scores = evaluate_model(
                net, val_ds, cfg.factor, image_kernel=cfg.image_kernel, antialias=cfg.antialias,
                device=device, dist_info=di, progress=progress, desc=f"val {cfg.val_split}",
            )  # fmt: skip
            record |= {
                f"val_{k}": v for k, v in scores.items() if k in ("miou", "pixel_acc", "mean_acc")
            }
            record["val_per_class"] = scores.get("per_class")
        history.append(record)
        if di.main:
            atomic_torch_save(
                {
                    "model": _unwrap(net).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "rng": torch.get_rng_state(),
                    "epoch": epoch,
                    "history": history,
                    "num_classes": info.num_classes,
                },
                ckpt_path,
            )
            atomic_write_text(out / METRICS_LOG, _history_lines(history))
            if progress:
                shown = {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in record.items()
                    if k != "val_per_class"
                }
                tqdm.write(json.dumps(shown))
    if di.world > 1:
        dist.barrier()
    return record


# --------------------------------------------------------------------------- loading a run
def load_run(run_dir: str | Path, device: torch.device | str = "cpu"):
    """``(config, model)`` of a finished or interrupted run, weights from its last checkpoint."""
    run_dir = Path(run_dir)
    for name in (CONFIG, CHECKPOINT):
        if not (run_dir / name).exists():
            raise FileNotFoundError(
                f"{run_dir / name} not found: is {run_dir} a softseg run directory?"
            )
    cfg = TrainConfig.from_dict(json.loads((run_dir / CONFIG).read_text()))
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    model = build_model(cfg, int(state["num_classes"]))
    model.load_state_dict(state["model"])
    return cfg, model.to(device).eval(), state


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
    """Score a run's checkpoint on a split (dataset, root and factor default to the run's own)."""
    dev = resolve_device(device)
    di = _init_distributed(dev)
    cfg, model, state = load_run(run_dir, dev)
    data_cfg = TrainConfig.from_dict(
        asdict(cfg) | {"dataset": dataset or cfg.dataset, "root": root or cfg.root}
    )
    ds = load_split(data_cfg, split, limit)
    if ds.info.num_classes != int(state["num_classes"]):
        raise ValueError(
            f"split {split!r} of {data_cfg.dataset} has {ds.info.num_classes} classes but the "
            f"checkpoint in {run_dir} predicts {state['num_classes']}"
        )
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
def predict_image(model, cfg: TrainConfig, image: torch.Tensor, device) -> torch.Tensor:
    """Class map ``(H, W)`` at the image's own resolution for a uint8 image ``(3, H, W)``."""
    x, _ = EvalTransform(cfg.factor, cfg.image_kernel, cfg.antialias)(image, torch.zeros(1, 1))
    logits = predict_logits(model, x[None].to(device), required_divisor(_unwrap(model)))
    logits = F.interpolate(
        logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=False
    )
    return logits.argmax(1)[0].cpu()
