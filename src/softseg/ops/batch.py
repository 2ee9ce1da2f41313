"""Soft labels for a whole batch at once, each sample with its own crop box: for the training step.

Random scale-and-crop augmentation gives every sample of a batch its own box. Resampling them one
by one (:func:`softseg.ops.resample.soft_resized_crop` in a loop) costs a Python round, plan
building and a handful of kernel launches per sample; on an accelerator that dominates.
:func:`soft_resized_crop_batch` builds every sample's banded axis weights on the host (``(N, h,
taps)`` and ``(N, w, taps)``: small), plans the work in blocks, sends all tables in one copy, then
runs both separable passes on the whole batch. It never forms a full-resolution one-hot: the work
goes in chunks of consecutive input rows (any samples' chunks in one block), and a block's partial
sums ``(chunks, rows, C + 1, w)`` stay within the block budget of ``softseg.ops._fast.FastPath``
(at least one chunk per block: one output row's input rows of one sample).

Maps of different sizes come as a list (or padded into one tensor with ``sizes`` giving each true
size): filters that reach past a map's true border treat that border exactly as the per-sample
call does, never reading the padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from numbers import Integral

import numpy as np
import torch

from . import _fast
from .kernels import AxisWeights, Convention, Resampler, axis_weights
from .labels import as_label_tensor, check_label_values, clamp_negative_lobes

__all__ = ["soft_resized_crop_batch"]

LabelMap = torch.Tensor | np.ndarray
Boxes = torch.Tensor | np.ndarray | Sequence[Sequence[float]]


# --------------------------------------------------------------------------- argument checking
def _out_size(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, Integral) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in pair):
        raise ValueError(f"size must be a positive int or (height, width) of ints, got {size!r}")
    if min(pair) <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(pair[0]), int(pair[1])


def _stack_maps(maps: Sequence[LabelMap]) -> tuple[torch.Tensor, np.ndarray]:
    """A list of ``(H_i, W_i)`` maps as one ``(N, H, W)`` tensor (padding never read) and sizes."""
    if len(maps) == 0:
        raise ValueError("labels must hold at least one map, got an empty list")
    tensors = [as_label_tensor(m) for m in maps]
    for i, t in enumerate(tensors):
        if t.dim() != 2:
            raise ValueError(f"labels[{i}] must be an (H, W) map, got shape {tuple(t.shape)}")
        if t.device != tensors[0].device:
            raise ValueError(
                f"labels must all be on one device, got {tensors[0].device} and {t.device} "
                f"(labels[{i}])"
            )
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    sizes = np.array([t.shape for t in tensors], dtype=np.int64)
    H, W = (int(v) for v in sizes.max(axis=0))
    batch = torch.zeros(len(tensors), H, W, dtype=dtype, device=tensors[0].device)
    for i, t in enumerate(tensors):
        batch[i, : t.shape[0], : t.shape[1]] = t
    return batch, sizes


def _check_sizes(sizes, n: int, H: int, W: int) -> np.ndarray:
    if isinstance(sizes, torch.Tensor):
        sizes = sizes.detach().cpu().numpy()
    arr = np.asarray(sizes)
    if arr.shape != (n, 2) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"sizes must be {n} integer (height, width) pairs, shape ({n}, 2), "
            f"got shape {arr.shape} of dtype {arr.dtype}"
        )
    bad = (arr[:, 0] < 1) | (arr[:, 0] > H) | (arr[:, 1] < 1) | (arr[:, 1] > W)
    if bad.any():
        i = int(bad.argmax())
        raise ValueError(
            f"sizes[{i}] must lie in [1, {H}] x [1, {W}] (the labels' shape), got {arr[i].tolist()}"
        )
    return arr.astype(np.int64)


def _as_batch(labels, sizes) -> tuple[torch.Tensor, np.ndarray]:
    """Labels ``(N, H, W)`` and each sample's true ``(H_i, W_i)``."""
    if isinstance(labels, list | tuple):
        if sizes is not None:
            raise ValueError("sizes is taken from the maps of a list; pass sizes=None")
        return _stack_maps(labels)
    labels = as_label_tensor(labels)
    if labels.dim() != 3:
        raise ValueError(
            f"labels must be an (N, H, W) batch or a list of (H, W) maps, "
            f"got shape {tuple(labels.shape)}"
        )
    n, H, W = labels.shape
    if sizes is None:
        return labels, np.tile(np.array([[H, W]], dtype=np.int64), (n, 1))
    return labels, _check_sizes(sizes, n, H, W)


def _check_boxes(boxes: Boxes, n: int) -> np.ndarray:
    """Boxes as float64 ``(N, 4)`` rows ``(top, left, height, width)``, finite, positive size."""
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"boxes must be an (N, 4) array of numbers, got {boxes!r}") from err
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"boxes must have shape (N, 4) (top, left, height, width), got {arr.shape}"
        )
    if arr.shape[0] != n:
        raise ValueError(f"boxes must hold one box per sample: {n} samples, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        i = int((~np.isfinite(arr)).any(axis=1).argmax())
        raise ValueError(f"boxes must be finite, got boxes[{i}] = {arr[i].tolist()}")
    if (arr[:, 2:] <= 0).any():
        i = int((arr[:, 2:] <= 0).any(axis=1).argmax())
        raise ValueError(
            f"boxes must have positive height and width, got boxes[{i}] = {arr[i].tolist()}"
        )
    return arr


# --------------------------------------------------------------------------- planning
@lru_cache(maxsize=1024)
def _axis(n_in: int, n_out: int, rs: Resampler, start: float, length: float) -> AxisWeights:
    # a batch of one fixed box (a plain down-sample) builds each band once
    return axis_weights(n_in, n_out, start=start, length=length, resampler=rs)


def _band(bands: list[AxisWeights]) -> _fast.BatchBand:
    """The :class:`~softseg.ops._fast.BatchBand` of one axis from each sample's band."""
    n, n_out = len(bands), bands[0].index.shape[0]
    index = np.zeros((n, n_out, max(aw.taps for aw in bands)), dtype=np.int64)
    weight = np.zeros(index.shape)
    for s, aw in enumerate(bands):
        index[s, :, : aw.taps], weight[s, :, : aw.taps] = aw.index.numpy(), aw.weight.numpy()
    live = weight != 0.0
    # rows without a live tap (wholly on padding) keep their first, clipped, tap
    index = np.where(live, index, np.take_along_axis(index, live.argmax(2)[..., None], axis=2))
    stride = int(index.max()) + 1
    keyed = index + stride * np.arange(n)[:, None, None]
    keys = np.unique(keyed)  # (sample, input) pairs in order
    counts = np.bincount(keys // stride, minlength=n)
    offset = np.cumsum(counts) - counts
    position = np.searchsorted(keys, keyed) - offset[:, None, None]
    used = np.repeat((keys[offset + counts - 1] % stride)[:, None], counts.max(), axis=1)
    used[keys // stride, np.arange(len(keys)) - offset[keys // stride]] = keys % stride
    # input-centric form: merge repeated (input, output) pairs (clamped border taps), then give
    # the j-th output an input feeds to phase j
    s, o, k = np.nonzero(live)
    pairs, inverse = np.unique(
        (s * used.shape[1] + position[s, o, k]) * n_out + o, return_inverse=True
    )
    merged = np.bincount(inverse, weights=weight[s, o, k], minlength=len(pairs))
    group = pairs // n_out  # sample * n_used + input position, ascending
    phase = np.arange(len(pairs)) - np.searchsorted(group, group)
    target = np.zeros((n, int(phase.max(initial=0)) + 1, used.shape[1]), dtype=np.int64)
    spread = np.zeros(target.shape)
    cell = (group // used.shape[1], phase, group % used.shape[1])
    target[cell], spread[cell] = pairs % n_out, merged
    return _fast.BatchBand(used, counts, position, weight, target, spread)


def _cost(by: _fast.BatchBand, bx: _fast.BatchBand, k: int) -> float:
    """Rough nanoseconds (CPU) of both passes with ``bx`` first: about 5 per scattered add
    (with its share of gathering), 0.2 per multiply-add of pass 2."""
    first = by.counts.sum() * bx.used.shape[1] * bx.target.shape[1]
    return 5.0 * first + 0.2 * by.position.shape[0] * by.n_out * by.taps * k * bx.n_out


def _envelopes(by: _fast.BatchBand) -> tuple[np.ndarray, np.ndarray]:
    """Monotone bounds ``(N, n_out)`` of the inputs each output and every later (``lo``) or
    earlier (``hi``) one reads, so that one search bounds a chunk whatever the band's shape."""
    lo = np.minimum.accumulate(by.position.min(2)[:, ::-1], axis=1)[:, ::-1]
    return lo, np.maximum.accumulate(by.position.max(2), axis=1)


def _chunks(by: _fast.BatchBand, rows: int) -> list[tuple[int, int, int, int]]:
    """Split each sample's outputs along ``by`` into runs ``[i0, i1)`` whose bands all lie in
    the ``rows`` used inputs from ``base`` on: ``(sample, i0, i1, base)``, sample by sample.
    ``rows`` must cover every output's envelope (see :func:`_blocks`)."""
    lo, hi = _envelopes(by)
    chunks = []
    for n in range(lo.shape[0]):
        i0 = 0
        while i0 < by.n_out:
            i1 = int(np.searchsorted(hi[n], lo[n, i0] + rows, side="left"))
            chunks.append((n, i0, i1, int(lo[n, i0])))
            i0 = i1
    return chunks


def _block(by: _fast.BatchBand, chunks, rows: int, n_rows: int, n_cols: int) -> _fast.BatchBlock:
    """The tables of one block of chunks; ``n_rows``: rows per sample in the flat label map."""
    samples = np.array([c[0] for c in chunks])
    base = np.array([c[3] for c in chunks])
    take = np.minimum(base[:, None] + np.arange(rows), by.counts[samples, None] - 1)
    flat_rows = np.take_along_axis(by.used[samples], take, axis=1) + samples[:, None] * n_rows
    bags = [by.position[n, i0:i1] - b + m * rows for m, (n, i0, i1, b) in enumerate(chunks)]
    return _fast.BatchBlock(
        samples=samples,
        rows=flat_rows,
        bags=np.concatenate(bags),
        weights=np.concatenate([by.weight[n, i0:i1] for n, i0, i1, _ in chunks]),
        spans=tuple((n, i0, i1) for n, i0, i1, _ in chunks),
        n_cols=int(n_cols),
    )


def _blocks(by, bx, k: int, labels: torch.Tensor, budget: int) -> list[_fast.BatchBlock]:
    """Chunks of used rows of ``labels`` ``(N, H, W)``, grouped into blocks whose work buffers
    (partial sums, codes, label rows) fit ``budget`` bytes where they can."""
    reads = (int(bx.used.max() - bx.used.min()) + 1) * labels.element_size()
    per_row = 4 * k * bx.n_out + 9 * bx.used.shape[1] + reads
    lo, hi = _envelopes(by)
    span = int((hi - lo).max()) + 1  # no chunk can be shorter
    # long chunks waste less on the rows their neighbours read as well, hence at least 4 spans
    rows = max(span, min(max(budget // per_row, 4 * span), int(by.counts.max())))
    chunks = _chunks(by, rows)
    per_block = max(1, budget // (rows * per_row))
    blocks = []
    for c in range(0, len(chunks), per_block):
        group = chunks[c : c + per_block]
        n_cols = max(bx.counts[n] for n, *_ in group)
        blocks.append(_block(by, group, rows, labels.shape[1], n_cols))
    return blocks


def _transposed(labels: torch.Tensor, by, bx, k: int) -> bool:
    """Whether pass 1 had better run along the rows, on the transposed map: the estimate of
    :func:`_cost` plus that order's copy of the map and its output written across rows (about
    5 ns per label and per output value on a CPU)."""
    extra = 5.0 * (labels.numel() + labels.shape[0] * (k - 1) * by.n_out * bx.n_out)
    return _cost(bx, by, k) + extra < _cost(by, bx, k)


def _soft_from_bands(labels, by, bx, num_classes, ignore_index, fast) -> torch.Tensor:
    """Soft labels ``(N, C, h, w)`` of checked ``labels`` under per-sample bands, in the cheaper
    of the two orders (the other one is the same work on the transposed map)."""
    k, dev = num_classes + 1, labels.device
    out = torch.empty(
        labels.shape[0], num_classes, by.n_out, bx.n_out, dtype=torch.float32, device=dev
    )
    view = out
    if _transposed(labels, by, bx, k):
        labels, by, bx, view = labels.transpose(1, 2).contiguous(), bx, by, out.transpose(2, 3)
    blocks = _blocks(by, bx, k, labels, fast.block_bytes_on(dev.type))
    _fast.soft_from_batch_blocks(labels, blocks, bx, view, ignore_index)
    return out


# --------------------------------------------------------------------------- the operator
def _soft_batch(
    labels, boxes, size, num_classes, sizes, ignore_index, rs: Resampler, fast: _fast.FastPath
) -> torch.Tensor:
    """:func:`soft_resized_crop_batch` with the resampler resolved and the fast path's settings."""
    if not isinstance(num_classes, Integral) or isinstance(num_classes, bool) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    labels, true_sizes = _as_batch(labels, sizes)
    h, w = _out_size(size)
    box = _check_boxes(boxes, labels.shape[0])
    check_label_values(labels, num_classes, ignore_index)
    rows, cols = [], []
    for (top, left, height, width), (H, W) in zip(box.tolist(), true_sizes.tolist(), strict=True):
        rows.append(_axis(H, h, rs, top, height))
        cols.append(_axis(W, w, rs, left, width))
    soft = _soft_from_bands(labels, _band(rows), _band(cols), int(num_classes), ignore_index, fast)
    if rs.negative_lobes:
        return clamp_negative_lobes(soft, inplace=True)
    return soft


def soft_resized_crop_batch(
    labels: LabelMap | Sequence[LabelMap],
    boxes: Boxes,
    size: int | Sequence[int],
    num_classes: int,
    *,
    sizes: torch.Tensor | np.ndarray | Sequence[Sequence[int]] | None = None,
    ignore_index: int | None = 255,
    kernel: str | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    convention: Convention | None = None,
    resampler: Resampler | None = None,
) -> torch.Tensor:
    """Soft labels of one crop box per sample, all resampled to ``size`` in one batched pass.

    Sample ``n`` of the result equals ``soft_resized_crop(labels[n], *boxes[n], size, num_classes,
    ...)`` (to float32 rounding) with the same resampler: boxes may be fractional and reach outside
    the map, where they read ignored pixels (no class mass).

    Args:
        labels: integer ``(N, H, W)`` tensor or array, or a list of ``(H_i, W_i)`` maps (one device).
        boxes: ``(N, 4)`` rows ``(top, left, height, width)`` in input pixels (tensor, array or
            nested sequence; read on the host).
        size: output ``(h, w)`` (or one int for a square).
        num_classes: ``C``; valid labels are ``0 .. C-1``.
        sizes: for a padded ``(N, H, W)`` tensor, each sample's true ``(H_i, W_i)`` ``(N, 2)``:
            the map is ``labels[n, :H_i, :W_i]``, the padding is never read (whatever it holds, it
            must pass the label check). ``None``: every map is the whole ``(H, W)``. Given by the
            maps for a list.
        ignore_index: label value that carries no class mass (``None``: every pixel is a class).
        kernel, antialias, align_corners, convention: the resampler, default ``"bilinear"``,
            ``True``, ``False``, ``"torch"``; see :class:`~softseg.ops.kernels.Resampler`.
        resampler: the resampler as one object, instead of the four arguments above.

    Returns:
        float32 ``(N, C, h, w)`` on the labels' device; channel sums are the valid mass in
        ``[0, 1]`` (negative lobes clamped as in ``soft_resized_crop``).

    The label range check reads one minimum and maximum back from the device; the work after it
    queues without further host synchronisation.

    >>> import torch
    >>> from softseg.ops.resample import soft_resized_crop
    >>> maps = [torch.tensor([[0, 1]]), torch.tensor([[1, 1, 2, 255]])]
    >>> boxes = [[0, 0, 1, 2], [0, 2, 1, 2]]
    >>> soft_resized_crop_batch(maps, boxes, (1, 1), 3, kernel="area")[:, :, 0, 0].tolist()
    [[0.5, 0.5, 0.0], [0.0, 0.0, 0.5]]
    >>> labels = torch.randint(0, 4, (2, 12, 16))
    >>> boxes = torch.tensor([[0.0, 0.0, 12.0, 16.0], [-2.0, 3.5, 9.0, 10.0]])
    >>> soft = soft_resized_crop_batch(labels, boxes, (6, 8), 4, kernel="bicubic")
    >>> soft.shape
    torch.Size([2, 4, 6, 8])
    >>> one = soft_resized_crop(labels[1], -2.0, 3.5, 9.0, 10.0, (6, 8), 4, kernel="bicubic")
    >>> bool((soft[1] - one).abs().max() < 1e-5)
    True
    """
    rs = Resampler.resolve(
        resampler, kernel=kernel, antialias=antialias, align_corners=align_corners,
        convention=convention,
    )  # fmt: skip
    return _soft_batch(labels, boxes, size, num_classes, sizes, ignore_index, rs, _fast.FastPath())
