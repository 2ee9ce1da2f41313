"""Where a run executes: device, distributed processes, memory counters, deterministic kernels.

Distributed data parallel runs under ``torchrun`` (NCCL on CUDA, gloo on the CPU); rank 0 writes.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "deterministic_algorithms",
    "init_distributed",
    "machine",
    "peak_memory_mb",
    "reset_peak_memory",
    "resolve_device",
    "unwrap",
]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when there is one, else the CPU) or a torch device name.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(
            f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type not in ("cpu", "cuda"):
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(f"device {name!r} is not usable here ({err})") from None
    return device


def machine(device: torch.device) -> dict[str, str | int | None]:
    """What a run's timings were measured on: CPU model, usable cores, GPU name, torch version.

    Timings of runs on different machines do not compare; this says which ones do.
    """
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None
            )
    except OSError:
        pass  # not Linux
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": cpu, "cpu_cores": cores, "gpu": gpu, "torch": torch.__version__}


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


@dataclass(frozen=True)
class DistInfo:
    """This process's place among the distributed ones (a single process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and shows progress."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (none: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def finish_distributed() -> None:
    """Leave the process group together: without it, gloo may abort a process whose peer exited."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
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
