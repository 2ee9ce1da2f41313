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
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

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
class _Runs:
    """The weights of one axis as seen by runs of equal labels (suffix sums).

    A run covering used inputs ``[a, b)`` adds ``S[j, a] - S[j, b]`` to output ``j``, where
    ``S[j, x]`` is the weight output ``j`` gives to inputs ``>= x``. That is ``total[j]`` for every
    ``j`` in ``[start[a], start[b])`` (outputs wholly inside the run), plus the partial sums
    ``partial_w[a]`` at outputs ``partial_j[a]`` (outputs cut by the run's left edge), minus the same
    at ``b``. Label maps are piecewise constant, so runs are far fewer than pixels.
    """

    start: torch.Tensor  # (n_used + 1,) first output lying wholly at or after each input
    partial_j: torch.Tensor  # (k, n_used + 1) outputs cut at each input (padded with 0)
    partial_w: torch.Tensor  # (k, n_used + 1) their suffix sums (0 in the padding)
    total: torch.Tensor  # (n_out,) each output's summed weight


@dataclass(frozen=True)
class AxisPlan:
    """One axis's weights in the forms the label passes need.

    ``used``: input positions with any non-zero weight (the rest is skipped before any work).
    ``target``/``weight``, shape ``(phases, n_used)``: the same weights seen from the input side;
    in phase ``t`` used input ``u`` feeds output ``target[t, u]`` with ``weight[t, u]`` (0 when it
    feeds fewer outputs). An input feeds about ``taps / scale`` outputs, so there are few phases.
    ``band_index``/``band_weight``, shape ``(n_out, taps)``: the band, indexed into ``used``.
    ``runs``: the run form (``None`` where the band is not monotone and it does not apply).
    """

    axis: AxisWeights
    used: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    band_index: torch.Tensor
    band_weight: torch.Tensor
    runs: _Runs | None

    @property
    def n_out(self) -> int:
        return self.band_index.shape[0]


def _plan(aw: AxisWeights, n_in: int) -> AxisPlan:
    n_out, taps = aw.index.shape
    index, band_weight = aw.index.numpy(), aw.weight.numpy()
    live = band_weight != 0.0
    used = np.unique(index[live])
    position = np.zeros(n_in, dtype=np.int64)
    position[used] = np.arange(len(used))
    # Dead taps point at their row's first live tap, so a block of outputs spans only the inputs
    # it really reads.
    first_live = index[np.arange(n_out), live.argmax(1)]
    band_index = position[np.where(live, index, first_live[:, None])]
    # Input-centric form: merge repeated (input, output) pairs (clamped border taps), then give
    # the j-th output an input feeds to phase j.
    rows = np.broadcast_to(np.arange(n_out)[:, None], index.shape)[live]
    keys, inverse = np.unique(index[live] * n_out + rows, return_inverse=True)
    merged = np.bincount(inverse, weights=band_weight[live], minlength=len(keys))
    cols, rows = keys // n_out, keys % n_out  # sorted by input, then output
    slot = np.searchsorted(used, cols)
    first = np.searchsorted(cols, used)
    phase = np.arange(len(cols)) - first[slot]
    n_phases = int(phase.max()) + 1 if len(phase) else 1
    target = np.zeros((n_phases, len(used)), dtype=np.int64)
    weight = np.zeros((n_phases, len(used)))
    target[phase, slot], weight[phase, slot] = rows, merged
    t = torch.from_numpy
    runs = _run_form(rows, slot, merged, n_out, len(used))
    return AxisPlan(aw, t(used), t(target), t(weight), t(band_index), aw.weight.clone(), runs)


def _run_form(rows, slot, merged, n_out: int, n_used: int) -> _Runs | None:
    """Suffix sums of the band over used inputs, or None when the band is not monotone."""
    if n_used == 0:
        return None
    band = np.zeros((n_out, n_used))
    np.add.at(band, (rows, slot), merged)
    live = band != 0.0
    has = live.any(1)
    lo = np.where(has, live.argmax(1), n_used)
    hi = np.where(has, n_used - 1 - live[:, ::-1].argmax(1), -1)
    # outputs wholly on padding weigh nothing: give them an empty span that keeps the order
    lo = np.where(has, lo, np.maximum.accumulate(np.where(has, lo, 0)))
    hi = np.where(has, hi, lo - 1)
    if np.any(np.diff(lo) < 0) or np.any(np.diff(hi) < 0):
        return None
    suffix = np.zeros((n_out, n_used + 1))
    suffix[:, :n_used] = np.cumsum(band[:, ::-1], axis=1)[:, ::-1]
    x = np.arange(n_used + 1)
    start = np.searchsorted(lo, x, side="left")  # first output with lo >= x: wholly after x
    cut = np.searchsorted(hi, x, side="left")  # first output with hi >= x: cut at x if < start
    k = max(1, int((start - cut).max()))
    partial_j = cut[:, None] + np.arange(k)[None, :]
    inside = partial_j < start[:, None]
    partial_j = np.minimum(partial_j, n_out - 1)
    partial_w = np.where(inside, suffix[partial_j, x[:, None]], 0.0)
    t = torch.from_numpy
    partial_j = np.ascontiguousarray(np.where(inside, partial_j, 0).T)
    return _Runs(
        t(start), t(partial_j), t(np.ascontiguousarray(partial_w.T)), t(suffix[:, 0].copy())
    )


@lru_cache(maxsize=256)
def axis_plan(n_in: int, n_out: int, resampler: Resampler, start: float, length: float) -> AxisPlan:
    """The (cached) plan of one axis: :func:`axis_weights` of the box ``[start, start+length)``."""
    aw = axis_weights(n_in, n_out, start=start, length=length, resampler=resampler)
    return _plan(aw, n_in)


# --------------------------------------------------------------------------- the two passes
def _runs_on(runs: _Runs, dev) -> _Runs:
    f32 = torch.float32
    return _Runs(
        runs.start.to(dev),
        runs.partial_j.to(dev),
        runs.partial_w.to(dev, f32),
        runs.total.to(dev, f32),
    )


def _first_pass(part, acc, k: int, w: int, target, weight, runs, run_path, ignore_index) -> None:
    """Add the weights of ``part`` (rows of checked labels) into ``acc``, a flat ``(rows, k, w)``
    buffer whose channel ``k - 1`` takes the ignored pixels.

    Two equivalent ways; whichever touches fewer elements is used: once per pixel and phase, or
    once per run of equal labels and its edges (label maps are piecewise constant). Labels become
    channel numbers only here, on the pixels read, never on the whole map.
    """
    n_rows, cols = part.shape
    per_pixel = n_rows * cols * target.shape[0]
    # On a GPU the run path's host syncs (counting runs, sizing their outputs) cost more than the
    # per-pixel adds they save: measured 0.1-0.9x against 1.1-3.2x (docs/benchmarks, CUDA sweep).
    on_cpu = part.device.type == "cpu"
    if runs is not None and (run_path == "always" or (run_path == "auto" and on_cpu)):
        starts = torch.ones_like(part, dtype=torch.bool)
        torch.ne(part[:, 1:], part[:, :-1], out=starts[:, 1:])
        n_runs = int(starts.sum())
        # each run element costs a gather besides its add; a pixel phase costs about one add
        per_run = 2 * (n_runs * (2 * runs.partial_j.shape[0] + 4) + n_rows * w) + n_rows * cols // 4
        if run_path == "always" or per_run < per_pixel:
            _runs_pass(part, starts, runs, acc, k, w, ignore_index)
            return
    flat = codes_of(part, k - 1, ignore_index).mul_(w)  # part is this block's own copy
    flat += (torch.arange(n_rows, device=part.device) * (k * w)).view(n_rows, 1)
    previous = 0
    for t in range(target.shape[0]):
        flat += target[t] - previous
        previous = target[t]
        acc.index_add_(0, flat.view(-1), weight[t].expand(n_rows, cols).reshape(-1))


def _runs_pass(part, starts, runs: _Runs, acc, k: int, w: int, ignore_index) -> None:
    n_rows, cols = part.shape
    dev = part.device
    first = starts.view(-1).nonzero().squeeze(1)  # flat start of every run, in order
    row = first // cols
    a = first - row * cols
    b = (torch.cat([first[1:], first.new_tensor([n_rows * cols])]) - row * cols).clamp_(max=cols)
    code = codes_of(part.reshape(-1).index_select(0, first), k - 1, ignore_index)
    base = (row * k + code) * w  # (row, code, output 0)
    # outputs lying wholly inside a run get their whole weight
    j0 = runs.start.index_select(0, a)
    length = runs.start.index_select(0, b) - j0
    run_of = torch.repeat_interleave(torch.arange(len(first), device=dev), length)
    offset = (j0 - length.cumsum(0) + length).index_select(0, run_of)
    j = torch.arange(len(run_of), device=dev).add_(offset)
    acc.index_add_(0, base.index_select(0, run_of).add_(j), runs.total.index_select(0, j))
    # outputs cut by a run's left edge get their weight from there on, minus that from its end on
    for t in range(runs.partial_j.shape[0]):
        pj, pw = runs.partial_j[t], runs.partial_w[t]
        acc.index_add_(0, pj.index_select(0, a).add_(base), pw.index_select(0, a))
        acc.index_add_(0, pj.index_select(0, b).add_(base), pw.index_select(0, b).neg_())


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

    Pass 1 walks the input pixels once per phase of ``px`` and adds each weight straight into the
    channel its label names, giving ``(N, rows, C + 1, w)`` partial sums. Pass 2 is a weighted sum of
    those rows along ``py``, which ``embedding_bag`` does in one fused call. Both run per block of
    output rows.
    """
    transpose = py.band_index.shape[1] * len(px.used) < px.band_index.shape[1] * len(py.used)
    if transpose:  # pass 1 along the rows is cheaper: same code on the transposed map
        labels, py, px = labels.transpose(1, 2), px, py
    dev, f32 = labels.device, torch.float32
    n, h, w, k = labels.shape[0], py.n_out, px.n_out, num_classes + 1
    out = torch.zeros(n, num_classes, h, w, dtype=f32, device=dev)
    if len(px.used) == 0 or len(py.used) == 0:  # the box lies wholly outside the image
        return out.transpose(2, 3).contiguous() if transpose else out
    if len(px.used) < labels.shape[2]:
        labels = labels.index_select(2, px.used.to(dev))
    cols = labels.shape[2]
    target, weight = px.target.to(dev), px.weight.to(dev, f32)
    runs = _runs_on(px.runs, dev) if px.runs is not None else None
    band_index, band_weight = py.band_index.to(dev), py.band_weight.to(dev, f32)
    used_rows = py.used.to(dev)
    rows_per_out = max(1.0, len(py.used) / h) + py.band_index.shape[1]
    budget = fast.block_bytes_on(dev.type)
    block = max(1, int(budget / (4 * n * k * w * rows_per_out)))
    for i0 in range(0, h, block):
        bags = band_index[i0 : i0 + block]
        host_bags = py.band_index[i0 : i0 + block]  # the row span, read without a device sync
        lo, hi = int(host_bags.min()), int(host_bags.max()) + 1
        rows = hi - lo
        part = labels.index_select(1, used_rows[lo:hi]).reshape(n * rows, cols)
        acc = torch.zeros(n * rows * k * w, dtype=f32, device=dev)
        _first_pass(part, acc, k, w, target, weight, runs, fast.run_path, ignore_index)
        bags = (bags - lo) + (torch.arange(n, device=dev) * rows).view(n, 1, 1)
        summed = torch.nn.functional.embedding_bag(
            bags.view(-1, bags.shape[-1]),
            acc.view(n * rows, k * w),
            per_sample_weights=band_weight[i0 : i0 + block].repeat(n, 1),
            mode="sum",
        )
        b = summed.shape[0] // n
        out[:, :, i0 : i0 + b] = summed.view(n, b, k, w)[:, :, :num_classes].transpose(1, 2)
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
