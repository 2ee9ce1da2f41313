"""The fast path of soft labels: the same operator as the dense reference, without the one-hot.

Private to :mod:`softseg.ops.resample`, which documents the idea and holds the reference
(:func:`softseg.ops.resample.soft_resized_crop_reference`) this must equal. Here is only speed:

- :func:`axis_plan`: one axis's band in the forms the passes need (input-centric phases, runs).
- :func:`soft_from_labels`: pass 1 scatters each input pixel's weights straight into the channel its
  label names, per phase or per run of equal labels; pass 2 is a banded weighted sum of rows.
  Both run per block of output rows sized by :class:`FastPath`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
import torch

from ._runs import Runs, boundaries, run_form, runs_pass
from ._taps import codes_of
from .kernels import AxisWeights, Resampler, axis_weights

RunPath = Literal["auto", "always", "never"]

#: Bytes of partial sums held at once; blocks of output rows keep the buffer this small, which
#: keeps it in the allocator's reusable heap (no page faults) and in cache. A GPU has neither
#: concern but pays a few kernel launches per block, so it takes far larger blocks.
DEFAULT_BLOCK_BYTES = {"cpu": 8 << 20, "cuda": 256 << 20}


@dataclass(frozen=True)
class FastPath:
    """How the fast path runs; every setting gives the same numbers (up to float32 rounding).

    ``run_path``: the first pass per run of equal labels (``"always"``), per pixel (``"never"``),
    or whichever touches fewer elements, per pixel on GPUs (``"auto"``). ``block_bytes``: the
    partial sums held at once (``None``: :data:`DEFAULT_BLOCK_BYTES` for the device).
    ``tap_path``: read each output's taps instead of the two row passes
    (:func:`softseg.ops._taps.soft_from_taps`): ``"auto"`` where that reads less (only with
    ``run_path="auto"``, on the CPU), ``"always"``, or ``"never"``.
    """

    run_path: RunPath = "auto"
    block_bytes: int | None = None
    tap_path: RunPath = "auto"

    def __post_init__(self) -> None:
        for name in ("run_path", "tap_path"):
            if getattr(self, name) not in ("auto", "always", "never"):
                raise ValueError(
                    f"{name} must be 'auto', 'always' or 'never', got {getattr(self, name)!r}"
                )
        if self.block_bytes is not None and self.block_bytes <= 0:
            raise ValueError(f"block_bytes must be positive, got {self.block_bytes}")

    def block_bytes_on(self, device_type: str) -> int:
        """The partial-sum budget on a device type (``"cpu"``, ``"cuda"``, ...)."""
        if self.block_bytes is not None:
            return self.block_bytes
        return DEFAULT_BLOCK_BYTES.get(device_type, DEFAULT_BLOCK_BYTES["cpu"])


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class AxisPlan:
    """One axis's weights in the forms the label passes need.

    ``used``: input positions with any non-zero weight (the rest is skipped before any work).
    ``band_index``/``band_weight``, shape ``(n_out, taps)``: the band, indexed into ``used``.
    ``n_phases``: how many phases :attr:`phases` has (the most outputs one input feeds).
    The forms of the first pass are built on first use, since a plan serves either axis and
    per-sample crops rarely reuse one: :attr:`phases` and :attr:`runs`.
    """

    axis: AxisWeights
    used: torch.Tensor
    band_index: torch.Tensor
    band_weight: torch.Tensor
    n_phases: int

    @property
    def n_out(self) -> int:
        return self.band_index.shape[0]

    @cached_property
    def phases(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``target``/``weight``, shape ``(phases, n_used)``: the weights seen from the input
        side; in phase ``t`` used input ``u`` feeds output ``target[t, u]`` with ``weight[t, u]``
        (0 when it feeds fewer outputs). An input feeds about ``taps / scale`` outputs, so there
        are few phases."""
        n_out, n_used = self.n_out, len(self.used)
        band_index, band_weight = self.band_index.numpy(), self.band_weight.numpy()
        live = band_weight != 0.0
        # merge repeated (input, output) pairs (clamped border taps), then give the j-th output
        # an input feeds to phase j
        rows = np.broadcast_to(np.arange(n_out)[:, None], live.shape)[live]
        keys, inverse = np.unique(band_index[live] * n_out + rows, return_inverse=True)
        merged = np.bincount(inverse, weights=band_weight[live], minlength=len(keys))
        slot, rows = keys // n_out, keys % n_out  # sorted by input, then output
        phase = np.arange(len(slot)) - np.searchsorted(slot, slot)
        n_phases = int(phase.max()) + 1 if len(phase) else 1
        target = np.zeros((n_phases, n_used), dtype=np.int64)
        weight = np.zeros((n_phases, n_used))
        target[phase, slot], weight[phase, slot] = rows, merged
        return torch.from_numpy(target), torch.from_numpy(weight)

    @cached_property
    def runs(self) -> Runs | None:
        """The run form (:mod:`softseg.ops._runs`; ``None`` where it does not apply)."""
        return run_form(self.band_index.numpy(), self.band_weight.numpy(), len(self.used))


def _plan(aw: AxisWeights, n_in: int) -> AxisPlan:
    n_out, taps = aw.index.shape
    index, band_weight = aw.index.numpy(), aw.weight.numpy()
    live = band_weight != 0.0
    feeds = np.bincount(index[live], minlength=n_in)
    used = np.flatnonzero(feeds)  # sorted, unique
    position = np.maximum(np.cumsum(feeds > 0) - 1, 0)  # of each used input among them
    # clamped border taps repeat an input in a row (rows ascend): one output, one phase
    repeat = live[:, 1:] & live[:, :-1] & (index[:, 1:] == index[:, :-1])
    if repeat.any():
        feeds = feeds - np.bincount(index[:, 1:][repeat], minlength=n_in)
    # Dead taps point at their row's first live tap, so a block of outputs spans only the inputs
    # it really reads; rows without any, at the last row's, so that first taps never descend
    # where live ones do not (the run form relies on that).
    first = position[index[np.arange(n_out), live.argmax(1)]]
    has = live.any(1)
    first = np.where(has, first, np.maximum.accumulate(np.where(has, first, 0)))
    band_index = np.where(live, position[index], first[:, None])
    t = torch.from_numpy
    return AxisPlan(aw, t(used), t(band_index), aw.weight.clone(), max(1, int(feeds.max())))


@lru_cache(maxsize=256)
def axis_plan(n_in: int, n_out: int, resampler: Resampler, start: float, length: float) -> AxisPlan:
    """The (cached) plan of one axis: :func:`axis_weights` of the box ``[start, start+length)``."""
    aw = axis_weights(n_in, n_out, start=start, length=length, resampler=resampler)
    return _plan(aw, n_in)


# --------------------------------------------------------------------------- the two passes
class _Phases:
    """The column plan's phase tables on a device, moved there once, on first use (the run
    path never needs them)."""

    def __init__(self, px: AxisPlan, dev: torch.device) -> None:
        self.count, self._px, self._dev, self._tables = px.n_phases, px, dev, None

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tables is None:
            target, weight = self._px.phases
            self._tables = target.to(self._dev), weight.to(self._dev, torch.float32)
        return self._tables


def _first_pass(part, acc, k: int, w: int, phases: _Phases, runs, run_path, ignore_index) -> None:
    """Add the weights of ``part`` (rows of checked labels) into ``acc``, a zeroed flat
    ``(k, rows, w)`` buffer whose channel ``k - 1`` takes the ignored pixels.

    Two equivalent ways; whichever touches fewer elements is used: once per pixel and phase, or
    once per output and per boundary between runs of equal labels (``runs``, where allowed; label
    maps are piecewise constant). Labels become channel numbers only here, on the pixels read,
    never on the whole map.
    """
    n_rows, cols = part.shape
    if runs is not None:
        row, col = boundaries(part)
        # a boundary costs a few gathers and two adds per output it cuts; a pixel phase one add
        per_run = 2 * (len(row) * (2 * runs.cut_j.shape[1] + 4) + n_rows * w) + n_rows * cols // 4
        if run_path == "always" or per_run < n_rows * cols * phases.count:
            runs_pass(part, row, col, runs, acc, k, w, ignore_index)
            return
    target, weight = phases.tables()
    flat = codes_of(part, k - 1, ignore_index).mul_(n_rows * w)  # part is this block's own copy
    flat += (torch.arange(n_rows, device=part.device) * w).view(n_rows, 1)
    previous = 0
    for t in range(target.shape[0]):
        flat += target[t] - previous
        previous = target[t]
        acc.index_add_(0, flat.view(-1), weight[t].expand(n_rows, cols).reshape(-1))


def soft_from_labels(
    labels: torch.Tensor,
    py: AxisPlan,
    px: AxisPlan,
    num_classes: int,
    ignore_index: int | None,
    fast: FastPath,
) -> torch.Tensor:
    """Soft labels ``(N, C, h, w)`` from checked labels ``(N, H, W)`` (values ``0 .. C-1`` or
    ``ignore_index``, whose pixels go to a spare channel ``C`` that is dropped).

    Pass 1 walks the input pixels along ``px`` and adds each weight straight into the channel its
    label names, giving ``(C + 1, N, rows, w)`` partial sums. Pass 2 is a weighted sum of those
    rows along ``py``, which ``embedding_bag`` does in one fused call. Both run per block of
    output rows.
    """
    # pass 1 fills (C + 1) x rows read x outputs along a row, pass 2 reads each row of that
    # once per tap: run along whichever axis gives less (same code on the transposed map)
    h, w = py.n_out, px.n_out
    transpose = h * (len(px.used) + w * px.band_index.shape[1]) < w * (
        len(py.used) + h * py.band_index.shape[1]
    )
    if transpose:
        labels, py, px = labels.transpose(1, 2), px, py
    dev, f32 = labels.device, torch.float32
    n, h, w, k = labels.shape[0], py.n_out, px.n_out, num_classes + 1
    if len(px.used) == 0 or len(py.used) == 0:  # the box lies wholly outside the image
        out = torch.zeros(n, num_classes, h, w, dtype=f32, device=dev)
        return out.transpose(2, 3).contiguous() if transpose else out
    if len(px.used) < labels.shape[2]:
        labels = labels.index_select(2, px.used.to(dev))
    cols = labels.shape[2]
    # On a GPU the run path's host syncs (finding boundaries, sizing their outputs) cost more
    # than the per-pixel adds they save: measured 0.1-0.9x against 1.1-3.2x (CUDA sweep).
    runs_allowed = fast.run_path == "always" or (fast.run_path == "auto" and dev.type == "cpu")
    runs = px.runs.to(dev) if runs_allowed and px.runs is not None else None
    phases = _Phases(px, dev)
    band_index, band_weight = py.band_index.to(dev), py.band_weight.to(dev, f32)
    used_rows = py.used.to(dev)
    rows_per_out = max(1.0, len(py.used) / h) + py.band_index.shape[1]
    block = max(1, int(fast.block_bytes_on(dev.type) / (4 * n * k * w * rows_per_out)))
    out = None if block >= h else torch.empty(n, num_classes, h, w, dtype=f32, device=dev)
    for i0 in range(0, h, block):
        host_bags = py.band_index[i0 : i0 + block]  # the row span, read without a device sync
        lo, hi = int(host_bags.min()), int(host_bags.max()) + 1
        rows = hi - lo
        part = labels.index_select(1, used_rows[lo:hi]).reshape(n * rows, cols)
        acc = torch.zeros(k * n * rows * w, dtype=f32, device=dev)
        _first_pass(part, acc, k, w, phases, runs, fast.run_path, ignore_index)
        # the bags of class c and sample s read rows (c * n + s) * rows + ... of the partial sums
        bags = (band_index[i0 : i0 + block] - lo).unsqueeze(0)
        bags = bags + (torch.arange(k * n, device=dev) * rows).view(k * n, 1, 1)
        summed = torch.nn.functional.embedding_bag(
            bags.view(-1, bags.shape[-1]),
            acc.view(k * n * rows, w),
            per_sample_weights=band_weight[i0 : i0 + block].repeat(k * n, 1),
            mode="sum",
        )
        soft = summed.view(k, n, -1, w)[:num_classes].transpose(0, 1)
        if out is None:  # one block: the partial sums' layout is already the result's
            out = soft if n == 1 else soft.contiguous()
        else:
            out[:, :, i0 : i0 + soft.shape[2]] = soft
    return out.transpose(2, 3).contiguous() if transpose else out


# --------------------------------------------------------------------------- batches
# Every sample of a batch has its own box (and maybe its own map size), hence its own bands. They
# are padded to common widths with zero weights, so both passes run on all samples at once. The
# host builds and blocks the tables (softseg.ops.batch); here is only the device work.
@dataclass(frozen=True)
class BatchBand:
    """One axis of a batch of boxes in both forms the passes need (numpy, on the host).

    ``used`` ``(N, n_used)``: the inputs each sample reads, ascending, padded by repeating its
    last; ``counts`` ``(N,)``: how many are real. Output-centric form, ``position``/``weight``
    ``(N, n_out, taps)``: output ``i`` of sample ``n`` adds ``weight[n, i, k]`` times input
    ``used[n, position[n, i, k]]`` (dead taps weigh 0 and point at a live tap of their row, so a
    block of outputs spans only the inputs it reads). Input-centric form, ``target``/``spread``
    ``(N, phases, n_used)``: in phase ``t``, used input ``u`` gives ``spread[n, t, u]`` to output
    ``target[n, t, u]``.
    """

    used: np.ndarray
    counts: np.ndarray
    position: np.ndarray
    weight: np.ndarray
    target: np.ndarray
    spread: np.ndarray

    @property
    def n_out(self) -> int:
        return self.position.shape[1]

    @property
    def taps(self) -> int:
        return self.position.shape[2]


def _to_device(arrays: list[np.ndarray], dev: torch.device, dtype: torch.dtype):
    """The arrays as tensors on ``dev`` through one copy. A GPU gets it from pinned memory without
    blocking, so the tables travel together and nothing waits for the device."""
    host = torch.from_numpy(np.concatenate([a.reshape(-1) for a in arrays])).to(dtype)
    flat = host.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else host
    parts = flat.split([a.size for a in arrays])
    return [t.view(a.shape) for t, a in zip(parts, arrays, strict=True)]


def _batch_first_pass(rows_of, rows, cols, target, spread, num_classes, ignore_index, w):
    """Partial sums ``(M, R, (C + 1) * w)`` of ``M`` chunks: the label rows ``rows`` ``(M, R)``
    of ``rows_of`` (flat ``(N * H, W)``) at the used columns ``cols`` ``(M, U)``, each pixel's
    weights added into the channel its label names, phase by phase."""
    m, r, u = rows.shape[0], rows.shape[1], cols.shape[1]
    # whole rows first (plain copies), then the used columns: far cheaper than one gather through
    # broadcast indices
    part = rows_of.index_select(0, rows.view(-1)).view(m, r, rows_of.shape[1])
    flat = codes_of(part.gather(2, cols.unsqueeze(1).expand(m, r, u)), num_classes, ignore_index)
    flat.mul_(w)
    acc = torch.zeros(m, r, (num_classes + 1) * w, dtype=torch.float32, device=rows_of.device)
    previous = 0
    for t in range(target.shape[1]):
        flat += (target[:, t] - previous).unsqueeze(1)
        previous = target[:, t]
        acc.scatter_add_(2, flat, spread[:, t].unsqueeze(1).expand(m, r, u))
    return acc


@dataclass(frozen=True)
class BatchBlock:
    """One block of a batch's work: ``M`` chunks of ``R`` consecutive used input rows (host tables).

    ``samples`` ``(M,)``: each chunk's sample; ``rows`` ``(M, R)``: its rows in the flat
    ``(N * H, W)`` map; ``bags``/``weights`` ``(B, taps)``: per output row the block completes,
    its rows among the block's ``M * R`` partial sums and their weights; ``spans``: per chunk, the
    ``(sample, first, end)`` of those output rows, in bag order; ``n_cols``: used columns of the
    block's widest sample.
    """

    samples: np.ndarray
    rows: np.ndarray
    bags: np.ndarray
    weights: np.ndarray
    spans: tuple[tuple[int, int, int], ...]
    n_cols: int


def soft_from_batch_blocks(
    labels: torch.Tensor,
    blocks: list[BatchBlock],
    bx: BatchBand,
    out: torch.Tensor,
    ignore_index: int | None,
) -> torch.Tensor:
    """Fill ``out`` (``(N, C, h, w)``, or any view of that shape) with the soft labels of checked
    ``labels`` ``(N, H, W)``: per block, pass 1 adds the pixels of its chunks into
    ``(M, R, C + 1, w)`` partial sums along ``bx``, pass 2 sums those rows per output row (one
    ``embedding_bag``) and copies the rows it completes into place, a slice per chunk. Every
    table is copied to the device up front; the loop queues work without reading anything back."""
    num_classes, w, dev = out.shape[1], bx.n_out, labels.device
    c0, c1 = int(bx.used.min()), int(bx.used.max()) + 1  # the columns any sample reads
    rows_of = labels.flatten(0, 1)[:, c0:c1]
    ints = [bx.used - c0, bx.target] + [a for b in blocks for a in (b.samples, b.rows, b.bags)]
    cols, target, *tables = _to_device(ints, dev, torch.int64)
    spread, *weights = _to_device([bx.spread] + [b.weights for b in blocks], dev, torch.float32)
    for i, block in enumerate(blocks):
        samples, rows, bags = tables[3 * i : 3 * i + 3]
        u = block.n_cols
        acc = _batch_first_pass(
            rows_of, rows, cols.index_select(0, samples)[:, :u],
            target.index_select(0, samples)[:, :, :u], spread.index_select(0, samples)[:, :, :u],
            num_classes, ignore_index, w,
        )  # fmt: skip
        summed = torch.nn.functional.embedding_bag(
            bags, acc.view(-1, acc.shape[2]), per_sample_weights=weights[i], mode="sum"
        )
        summed = summed.view(-1, num_classes + 1, w)[:, :num_classes]
        start = 0
        # plain slice copies: an indexed write is far slower
        for n, i0, i1 in block.spans:
            out[n, :, i0:i1] = summed[start : start + i1 - i0].transpose(0, 1)
            start += i1 - i0
    return out
