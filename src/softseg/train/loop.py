"""The training loop behind ``softseg train``, as a sequence of named steps.

:func:`train` opens (or resumes) the run directory, builds the data, the model, the optimiser and
its schedule and the loss, wraps the model for distributed and compiled execution, and then runs
epochs: train on every batch, validate when due, save the checkpoint and the metrics log (rank 0).
Every step is a function of its own here, so each can be called and checked alone.

``resume=True`` continues from the checkpoint and, because every augmentation is a function of
(seed, epoch, index) only, ends exactly where the uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..atomic import atomic_torch_save, atomic_write_text, remove_stale_temps
from ..data import DatasetInfo
from .config import (
    CHECKPOINT,
    CONFIG,
    DATASET_INFO,
    MAY_CHANGE_ON_RESUME,
    METRICS_LOG,
    TrainConfig,
    config_differences,
    describe_differences,
    read_checkpoint,
    read_config,
    write_config,
    write_dataset_info,
)
from .evaluate import build_model, evaluate_model
from .inputs import (
    LabelWindows,
    TrainData,
    build_data,
    class_weights,
    label_mass,
    load_split,
    require_labels,
    soft_from_windows,
)
from .losses import SoftCrossEntropy
from .models import required_divisor
from .runtime import (
    DistInfo,
    deterministic_algorithms,
    init_distributed,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    unwrap,
)

__all__ = [
    "SCHEDULES",
    "build_loss",
    "build_optimizer",
    "lr_factor",
    "open_run",
    "setup_device",
    "train",
]

SCHEDULES = ("poly", "cosine", "constant")


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the last epoch's record (train loss, val scores, times).

    ``resume`` continues ``cfg.out`` from its checkpoint; the config may differ from the saved
    one only in ``MAY_CHANGE_ON_RESUME``: ``epochs`` (raising it extends a finished run, with the
    schedule stretched to the new length from there on) and the settings of where and how fast
    the run executes. ``stop_after_epoch`` ends the call early, as a kill after that epoch would.

    Raises:
        FileExistsError: ``cfg.out`` already holds a run and ``resume`` is False.
        FileNotFoundError: ``resume`` where there is no run, or a dataset file is missing.
        ValueError: options that do not fit (each message names the argument), a config that
            differs from the saved one, a damaged checkpoint, or training labels without a single
            labelled pixel.
        FloatingPointError: the loss became NaN or infinite (the last good checkpoint is kept).
    """
    with deterministic_algorithms(cfg.deterministic):
        return _train(cfg, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch)


# --------------------------------------------------------------------------- the steps
def setup_device(cfg: TrainConfig) -> tuple[torch.device, DistInfo]:
    """The device this process trains on and its place among the distributed processes."""
    device = resolve_device(cfg.device)
    di = init_distributed(device)
    if device.type == "cuda" and di.world > 1:
        device = torch.device("cuda", di.local_rank)
        torch.cuda.set_device(device)
    if (cfg.amp or cfg.compile) and device.type != "cuda":
        raise ValueError(
            f"`amp` and `compile` are CUDA options (amp={cfg.amp}, compile={cfg.compile}); "
            "this run is on the CPU"
        )
    return device, di


def open_run(cfg: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from (``None``: a new run).

    Refuses to overwrite a run without ``resume``, to resume where there is no run, and to resume
    with a config that differs in more than ``MAY_CHANGE_ON_RESUME`` (naming each field that
    does, with both values). A run killed before its first checkpoint (``config.json`` only)
    resumes from the start.
    """
    out = Path(cfg.out)
    has_config = (out / CONFIG).is_file()
    if not (out / CHECKPOINT).exists():
        if resume and not has_config:
            raise FileNotFoundError(
                f"nothing to resume in {out}: it holds no {CHECKPOINT} or {CONFIG}; "
                "drop `resume=True` to start a new run there"
            )
        if not (resume and has_config):
            return None
    elif not resume:
        raise FileExistsError(
            f"{out} already holds a run ({CHECKPOINT}); pass `resume=True` to continue it "
            "or choose another `out`"
        )
    changed = config_differences(read_config(out), cfg)
    if changed:
        allowed = ", ".join(f"`{k}`" for k in sorted(MAY_CHANGE_ON_RESUME))
        raise ValueError(
            f"`resume=True` with a config that differs from {out / CONFIG} in "
            f"{describe_differences(changed)}; a resumed run may change only {allowed}"
        )
    return read_checkpoint(out) if (out / CHECKPOINT).exists() else None


def lr_factor(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier of each step: linear warm-up, then ``schedule``.

    >>> f = lr_factor("poly", total_steps=10, warmup_steps=2)
    >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.536, 0.0]
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "poly":
            return (1.0 - t) ** 0.9
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return factor


def build_optimizer(
    cfg: TrainConfig, model: torch.nn.Module, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser and its per-step schedule over ``cfg.epochs`` epochs."""
    if cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
        )
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    factor = lr_factor(cfg.schedule, steps_per_epoch * cfg.epochs, warmup)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_loss(cfg: TrainConfig, train_ds: Dataset, progress: bool) -> SoftCrossEntropy:
    """The soft cross-entropy ``cfg`` asks for (class weights from ``train_ds`` when asked)."""
    return SoftCrossEntropy(
        ignore_index=train_ds.info.ignore_index, label_smoothing=cfg.label_smoothing,
        weight=class_weights(cfg, train_ds, progress), weight_mode=cfg.weight_mode,
        kernel=cfg.label_kernel or cfg.image_kernel, antialias=cfg.antialias,
    )  # fmt: skip


def _restore(state: dict[str, Any], model, optimizer, schedule) -> list[dict[str, Any]]:
    """Load a checkpoint into the training objects and the global RNG; returns its history."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    return list(state["history"])


def _describe_run(cfg: TrainConfig, info: DatasetInfo, fresh: bool) -> None:
    """Write ``config.json`` (new runs) and ``dataset.json`` (new runs, and older ones lacking it)."""
    out = Path(cfg.out)
    if fresh:
        out.mkdir(parents=True, exist_ok=True)
        write_config(out, cfg)
    if fresh or not (out / DATASET_INFO).exists():
        write_dataset_info(out, info)


def _distribute(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device, di: DistInfo
) -> torch.nn.Module:
    """The model wrapped for several processes and compiled, as asked."""
    net: torch.nn.Module = model
    if di.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(net) if cfg.compile else net


# --------------------------------------------------------------------------- the epochs
@dataclass
class _Session:
    """Everything the epochs of one run share."""

    cfg: TrainConfig
    device: torch.device
    di: DistInfo
    data: TrainData
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    loss_fn: torch.nn.Module
    history: list[dict[str, Any]]
    progress: bool
    amp_dtype: torch.dtype = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if cuda_bf16 else torch.float16
        # bfloat16 has float32's range: only float16 needs its gradients scaled
        fp16 = self.cfg.amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    @property
    def checkpoint(self) -> Path:
        return Path(self.cfg.out) / CHECKPOINT


def _targets(s: _Session, y: Any) -> Any:
    """The batch's targets on the device; soft labels shipped as label windows are made here."""
    if isinstance(y, LabelWindows):
        return soft_from_windows(s.data.samples.transform, y, s.device)
    return tuple(t.to(s.device) for t in y) if isinstance(y, (tuple, list)) else y.to(s.device)


def _train_step(s: _Session, x: torch.Tensor, y: Any, epoch: int, step: int) -> torch.Tensor:
    """Forward, loss, backward and optimiser step on one batch (targets on the device already);
    returns the batch's loss."""
    x = x.to(s.device, non_blocking=True)
    with torch.autocast("cuda", dtype=s.amp_dtype) if s.cfg.amp else nullcontext():
        logits = s.net(x)
    try:
        loss = s.loss_fn(logits.float(), y)
    except FloatingPointError as err:
        saved = s.history[-1]["epoch"] if s.history else 0
        raise FloatingPointError(
            f"epoch {epoch + 1}, step {step + 1}: {err}; stopped without touching "
            f"{s.checkpoint} (it holds epoch {saved})"
        ) from err
    s.optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.schedule.step()
    return loss


def _train_epoch(s: _Session, epoch: int) -> dict[str, Any]:
    """One pass over the training batches; returns the epoch's record (loss, lr, time, memory)."""
    cfg = s.cfg
    s.net.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    labelled = torch.zeros((), device=s.device)
    desc = f"epoch {epoch + 1}/{cfg.epochs} [{cfg.labels} x{cfg.factor:g}]"
    bar = tqdm(
        s.data.epoch_loader(epoch), desc=desc, disable=not (s.progress and s.di.main),
        unit="batch", leave=False,
    )  # fmt: skip
    for step, (x, y) in enumerate(bar):
        y = _targets(s, y)
        loss = _train_step(s, x, y, epoch, step)
        loss_sum += loss.detach()
        if epoch == 0:
            labelled += label_mass(y, s.data.info.ignore_index)
        if step % 5 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{s.schedule.get_last_lr()[0]:.2e}")
    if s.di.world > 1:
        dist.all_reduce(loss_sum)
    if epoch == 0:
        _check_labelled(s, labelled)
    epoch_time = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum.item() / (s.data.steps_per_epoch * s.di.world),
        "lr": s.schedule.get_last_lr()[0],
        "epoch_time_s": epoch_time,
        "peak_memory_mb": peak_memory_mb(s.device),
    }


def _check_labelled(s: _Session, labelled: torch.Tensor) -> None:
    """After the first epoch: refuse to go on when no training pixel carries a label."""
    if s.di.world > 1:
        dist.all_reduce(labelled)
    require_labels(s.data.samples.base, float(labelled), s.cfg.train_split)


def _validate(s: _Session, epoch: int) -> dict[str, Any]:
    """``val_*`` scores of the record when validation is due after ``epoch`` (else nothing)."""
    cfg = s.cfg
    if s.data.val is None or ((epoch + 1) % cfg.eval_every and epoch + 1 != cfg.epochs):
        return {}
    scores = evaluate_model(
        s.net, s.data.val, cfg.factor, image_kernel=cfg.image_kernel, antialias=cfg.antialias,
        device=s.device, dist_info=s.di, progress=s.progress, desc=f"val {cfg.val_split}",
        workers=cfg.workers,
    )  # fmt: skip
    record = {f"val_{k}": v for k, v in scores.items() if k in ("miou", "pixel_acc", "mean_acc")}
    record["val_per_class"] = scores.get("per_class")
    return record


def _save(s: _Session, epoch: int) -> None:
    """Checkpoint after ``epoch`` and the metrics log rewritten from its history (atomically)."""
    atomic_torch_save(
        {
            "model": unwrap(s.net).state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "schedule": s.schedule.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch,
            "history": s.history,
            "num_classes": s.data.info.num_classes,
        },
        s.checkpoint,
    )
    lines = "".join(json.dumps(row) + "\n" for row in s.history)
    atomic_write_text(Path(s.cfg.out) / METRICS_LOG, lines)


def _show(record: dict[str, Any]) -> None:
    shown = {
        k: (round(v, 4) if isinstance(v, float) else v)
        for k, v in record.items()
        if k != "val_per_class"
    }
    tqdm.write(json.dumps(shown))


def _train(
    cfg: TrainConfig, *, resume: bool, progress: bool, stop_after_epoch: int | None
) -> dict[str, Any]:
    device, di = setup_device(cfg)
    state = open_run(cfg, resume)
    if di.main:
        # what a run killed inside an atomic write left behind (never a live writer's file)
        remove_stale_temps(cfg.out)
        if resume and state is None and progress:
            tqdm.write(f"{cfg.out} has no checkpoint yet: training from the first epoch")
    torch.manual_seed(cfg.seed)  # before the model: its initial weights come from this seed
    train_ds = load_split(cfg, cfg.train_split, cfg.limit_train)
    val_ds = load_split(cfg, cfg.val_split, cfg.limit_val) if cfg.val_split else None
    model = build_model(cfg, train_ds.info.num_classes).to(device)
    data = build_data(cfg, train_ds, val_ds, required_divisor(model), di, device)
    optimizer, schedule = build_optimizer(cfg, model, data.steps_per_epoch)
    loss_fn = build_loss(cfg, train_ds, progress and di.main).to(device)
    history = [] if state is None else _restore(state, model, optimizer, schedule)
    if di.main:
        _describe_run(cfg, train_ds.info, fresh=state is None)
    s = _Session(
        cfg, device, di, data, _distribute(model, cfg, device, di), optimizer, schedule, loss_fn,
        history, progress,
    )  # fmt: skip
    reset_peak_memory(device)
    record: dict[str, Any] = history[-1] if history else {}
    start = 0 if state is None else int(state["epoch"]) + 1
    last = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
    for epoch in range(start, last):
        record = _train_epoch(s, epoch)
        record |= _validate(s, epoch)
        history.append(record)
        if di.main:
            _save(s, epoch)
            if progress:
                _show(record)
    if di.world > 1:
        dist.barrier()
    return record
