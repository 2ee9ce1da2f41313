"""Peak memory of one call, as the benchmarks measure it (side by side in one run).

CPU: the rise of the peak resident set (VmHWM, reset just before the call) in a fresh spawned
process per call, so that nothing the parent allocated earlier hides or inflates the peak. CUDA:
``max_memory_allocated`` above what was allocated before the call.

Both take ``prepare(*args)``, a module-level function of the benchmark (the spawned child must
import it) that builds the inputs and returns the zero-argument call to measure.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import torch

Prepare = Callable[..., Callable[[], Any]]


def resident_kib() -> dict[str, int]:
    """Current (``VmRSS``) and peak (``VmHWM``) resident set of this process, in KiB."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


def _child(prepare: Prepare, args: tuple, queue: Any) -> None:
    torch.set_num_threads(1)
    call = prepare(*args)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident set restarts from the current one
    before = resident_kib()["VmRSS"]
    call()
    queue.put((resident_kib()["VmHWM"] - before) * 1024)


def cpu_peak_bytes(prepare: Prepare, args: tuple, timeout: float = 1800) -> int:
    """Bytes the call adds to the peak resident set, measured in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(prepare, args, queue))
    child.start()
    value = queue.get(timeout=timeout)
    child.join()
    return value


def cuda_peak_bytes(prepare: Prepare, args: tuple) -> int:
    """Bytes the call allocates on the current CUDA device at its peak, above its inputs."""
    call = prepare(*args)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = call()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def peak_bytes(prepare: Prepare, args: tuple, device: str) -> int:
    """:func:`cuda_peak_bytes` on ``"cuda"``, else :func:`cpu_peak_bytes`."""
    return cuda_peak_bytes(prepare, args) if device == "cuda" else cpu_peak_bytes(prepare, args)
