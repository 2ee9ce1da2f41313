"""Soft labels: resample a label map with exactly the operator that resamples its image.

For a separable resampler with row weights ``Wy`` and column weights ``Wx`` the soft label of class
``c`` is ``Wy @ [labels == c] @ Wx.T``: the weight class ``c`` has in each output pixel's filter. Doing
that literally needs the one-hot map, ``C x H x W`` floats (150 MB for one Cityscapes frame). Here the
first pass runs straight from the integer map: each tap scatters its weight into the channel its label
names, giving ``C x H x w`` partial sums; the second pass is an ordinary banded pass over those. Ignored
pixels, and padding outside the image, scatter into a spare channel that is dropped, so they carry no
mass and the channel sum of the result is the valid fraction of each output pixel.

Shapes follow torchvision: labels ``(H, W)`` or ``(N, H, W)``, images ``(..., C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .kernels import KERNELS, NEGATIVE_LOBE_KERNELS, AxisWeights, Convention, axis_weights

Size = int | Sequence[int]

__all__ = [
    "soft_downsample",
    "soft_resized_crop",
    "resize_image",
    "resized_crop_image",
    "as_label_tensor",
]


# --------------------------------------------------------------------------- argument checking
def _pair(size: Size, what: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"{what} must be a positive int or (height, width), got {size!r}")
    return size  # type: ignore[return-value]


def _check_kernel(kernel: str, convention: str) -> None:
    if convention not in KERNELS:
        raise ValueError(f"convention must be one of {sorted(KERNELS)}, got {convention!r}")
    if kernel not in KERNELS[convention]:
        raise ValueError(
            f"kernel {kernel!r} is not available with convention={convention!r}; "
            f"expected one of {KERNELS[convention]}"
        )


_TORCH_LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def as_label_tensor(labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A non-empty ``(H, W)`` or ``(N, H, W)`` integer label map as a tensor.

    Integer dtypes that torch computes with are kept (uint8 stays uint8: cheaper); others become
    int64. Floats and booleans are refused rather than cast.
    """
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must hold integers, got a numpy array of dtype {labels.dtype}"
            )
        if labels.dtype not in (np.uint8, np.int8, np.int16, np.int32, np.int64):
            labels = labels.astype(np.int64)
        if any(stride < 0 for stride in labels.strides):  # flipped views: torch refuses them
            labels = labels.copy()
        labels = torch.from_numpy(labels)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"labels must be a torch.Tensor or numpy array, got {type(labels).__name__}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must hold integer class indices, got dtype {labels.dtype}; "
            "convert with labels.long() if the values really are class indices"
        )
    if labels.dim() not in (2, 3):
        raise ValueError(f"labels must be (H, W) or (N, H, W), got shape {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise ValueError(f"labels must not be empty, got shape {tuple(labels.shape)}")
    return labels if labels.dtype in _TORCH_LABEL_DTYPES else labels.long()


def _checked_codes(
    labels: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """Labels with the ignore value replaced by ``num_classes`` (the spare channel), checked."""
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if num_classes > torch.iinfo(labels.dtype).max:
        labels = labels.long()
    lo, hi = (int(v) for v in torch.aminmax(labels))
    ignored = None
    if ignore_index is not None and lo <= ignore_index <= hi:
        ignored = labels == ignore_index
    if lo < 0 or hi >= num_classes:  # something is out of range, unless it is all ignore
        bad = (labels < 0) | (labels >= num_classes)
        if ignored is not None:
            bad &= ~ignored
        if bool(bad.any()):
            values = torch.unique(labels[bad])[:8].tolist()
            expected = f"[0, {num_classes})" + (
                f" or the ignore value {ignore_index}" if ignore_index is not None else ""
            )
            raise ValueError(
                f"labels hold {int(bad.sum())} pixels with values {values} outside {expected}"
            )
    return labels if ignored is None else labels.masked_fill(ignored, num_classes)


# --------------------------------------------------------------------------- weights
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
class _AxisPlan:
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


def _plan(aw: AxisWeights, n_in: int) -> _AxisPlan:
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
    return _AxisPlan(aw, t(used), t(target), t(weight), t(band_index), aw.weight.clone(), runs)


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
def _cached_plan(n_in, n_out, kernel, convention, antialias, align_corners, start, length):
    aw = axis_weights(
        n_in,
        n_out,
        kernel,
        convention=convention,
        antialias=antialias,
        align_corners=align_corners,
        start=start,
        length=length,
    )
    return _plan(aw, n_in)


def _plans(shape_hw, box, size, kernel, antialias, align_corners, convention):
    (H, W), (top, left, height, width), (h, w) = shape_hw, box, size
    opts = (kernel, convention, bool(antialias), bool(align_corners))
    return (
        _cached_plan(H, h, *opts, float(top), float(height)),
        _cached_plan(W, w, *opts, float(left), float(width)),
    )


def _check_box(top, left, height, width) -> tuple[float, float, float, float]:
    if not (height > 0 and width > 0):
        raise ValueError(f"crop box must have positive height and width, got ({height}, {width})")
    return float(top), float(left), float(height), float(width)


# --------------------------------------------------------------------------- the two passes
def _dense_pass(x: torch.Tensor, aw: AxisWeights, dim: int) -> torch.Tensor:
    """``sum_k weight[:, k] * x.index_select(dim, index[:, k])`` without materialising the taps."""
    view = [1] * x.dim()
    view[dim] = -1
    out = None
    for k in range(aw.taps):
        term = x.index_select(dim, aw.index[:, k]).mul_(aw.weight[:, k].view(view))
        out = term if out is None else out.add_(term)
    return out


def _runs_on(runs: _Runs, dev) -> _Runs:
    f32 = torch.float32
    return _Runs(
        runs.start.to(dev),
        runs.partial_j.to(dev),
        runs.partial_w.to(dev, f32),
        runs.total.to(dev, f32),
    )


def _first_pass(part, acc, k: int, w: int, target, weight, runs) -> None:
    """Add the weights of ``part`` (rows of codes) into ``acc``, a flat ``(rows, k, w)`` buffer.

    Two equivalent ways; whichever touches fewer elements is used: once per pixel and phase, or
    once per run of equal codes and its edges (label maps are piecewise constant).
    """
    n_rows, cols = part.shape
    per_pixel = n_rows * cols * target.shape[0]
    # On a GPU the run path's host syncs (counting runs, sizing their outputs) cost more than the
    # per-pixel adds they save: measured 0.1-0.9x against 1.1-3.2x (docs/benchmarks, CUDA sweep).
    on_cpu = part.device.type == "cpu"
    if runs is not None and (_RUN_PATH == "always" or (_RUN_PATH == "auto" and on_cpu)):
        starts = torch.ones_like(part, dtype=torch.bool)
        torch.ne(part[:, 1:], part[:, :-1], out=starts[:, 1:])
        n_runs = int(starts.sum())
        # each run element costs a gather besides its add; a pixel phase costs about one add
        per_run = 2 * (n_runs * (2 * runs.partial_j.shape[0] + 4) + n_rows * w) + n_rows * cols // 4
        if _RUN_PATH == "always" or per_run < per_pixel:
            _runs_pass(part, starts, runs, acc, k, w)
            return
    flat = part.long() * w  # a new tensor: never write into the caller's labels
    flat += (torch.arange(n_rows, device=part.device) * (k * w)).view(n_rows, 1)
    previous = 0
    for t in range(target.shape[0]):
        flat += target[t] - previous
        previous = target[t]
        acc.index_add_(0, flat.view(-1), weight[t].expand(n_rows, cols).reshape(-1))


def _runs_pass(part, starts, runs: _Runs, acc, k: int, w: int) -> None:
    n_rows, cols = part.shape
    dev = part.device
    first = starts.view(-1).nonzero().squeeze(1)  # flat start of every run, in order
    row = first // cols
    a = first - row * cols
    b = (torch.cat([first[1:], first.new_tensor([n_rows * cols])]) - row * cols).clamp_(max=cols)
    base = (row * k + part.reshape(-1).index_select(0, first).long()) * w  # (row, code, output 0)
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


#: "auto" picks the cheaper first pass (per pixel on GPUs); tests force "always" or "never" to
#: check both agree.
_RUN_PATH = "auto"

#: Bytes of partial sums held at once; blocks of output rows keep the buffer this small, which
#: keeps it in the allocator's reusable heap (no page faults) and in cache. A GPU has neither
#: concern but pays a few kernel launches per block, so it takes far larger blocks.
_BLOCK_BYTES = {"cpu": 8 << 20, "cuda": 256 << 20}


def _soft_from_codes(codes: torch.Tensor, py: _AxisPlan, px: _AxisPlan, num_classes: int):
    """Soft labels ``(N, C, h, w)`` from codes ``(N, H, W)`` (ignored pixels coded ``C``).

    Pass 1 walks the input pixels once per phase of ``px`` and adds each weight straight into the
    channel its code names, giving ``(N, rows, C + 1, w)`` partial sums. Pass 2 is a weighted sum of
    those rows along ``py``, which ``embedding_bag`` does in one fused call. Both run per block of
    output rows.
    """
    transpose = py.band_index.shape[1] * len(px.used) < px.band_index.shape[1] * len(py.used)
    if transpose:  # pass 1 along the rows is cheaper: same code on the transposed map
        codes, py, px = codes.transpose(1, 2), px, py
    dev, f32 = codes.device, torch.float32
    n, h, w, k = codes.shape[0], py.n_out, px.n_out, num_classes + 1
    out = torch.zeros(n, num_classes, h, w, dtype=f32, device=dev)
    if len(px.used) == 0 or len(py.used) == 0:  # the box lies wholly outside the image
        return out.transpose(2, 3).contiguous() if transpose else out
    if len(px.used) < codes.shape[2]:
        codes = codes.index_select(2, px.used.to(dev))
    cols = codes.shape[2]
    target, weight = px.target.to(dev), px.weight.to(dev, f32)
    runs = _runs_on(px.runs, dev) if px.runs is not None else None
    band_index, band_weight = py.band_index.to(dev), py.band_weight.to(dev, f32)
    used_rows = py.used.to(dev)
    rows_per_out = max(1.0, len(py.used) / h) + py.band_index.shape[1]
    budget = _BLOCK_BYTES.get(dev.type, _BLOCK_BYTES["cpu"])
    block = max(1, int(budget / (4 * n * k * w * rows_per_out)))
    for i0 in range(0, h, block):
        bags = band_index[i0 : i0 + block]
        host_bags = py.band_index[i0 : i0 + block]  # the row span, read without a device sync
        lo, hi = int(host_bags.min()), int(host_bags.max()) + 1
        rows = hi - lo
        part = codes.index_select(1, used_rows[lo:hi]).reshape(n * rows, cols)
        acc = torch.zeros(n * rows * k * w, dtype=f32, device=dev)
        _first_pass(part, acc, k, w, target, weight, runs)
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


def _clamp_negative_lobes(soft: torch.Tensor) -> torch.Tensor:
    """Clamp a signed kernel's result at zero and rescale each pixel back to its valid mass."""
    valid = soft.sum(1, keepdim=True).clamp_(0.0, 1.0)
    soft = soft.clamp_(min=0.0)
    total = soft.sum(1, keepdim=True)
    return soft.mul_(torch.where(total > 0, valid / total.clamp(min=1e-12), 0.0))


# --------------------------------------------------------------------------- public API
def soft_resized_crop(
    labels: torch.Tensor | np.ndarray,
    top: float,
    left: float,
    height: float,
    width: float,
    size: Size,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    kernel: str = "bilinear",
    antialias: bool = True,
    align_corners: bool = False,
    convention: Convention = "torch",
) -> torch.Tensor:
    """Soft labels of the box ``[top, top+height) x [left, left+width)`` resampled to ``size``.

    The box is in input pixel coordinates and may be fractional or reach outside the image; the part
    outside counts as ignored (no class mass). The operator equals :func:`resized_crop_image` on the
    image, and is "resize the whole map, then crop" (for ``convention="pil"``: ``Image.resize(box=...)``).

    Args:
        labels: integer ``(H, W)`` or ``(N, H, W)`` tensor or array of class indices.
        top, left, height, width: the crop box in input pixels.
        size: output ``(h, w)`` (or one int for a square).
        num_classes: ``C``; valid labels are ``0 .. C-1``.
        ignore_index: label value that carries no class mass (``None``: every pixel must be a class).
        kernel, antialias, align_corners, convention: the resampler, as in :mod:`softseg.ops.kernels`.

    Returns:
        float32 ``(C, h, w)`` or ``(N, C, h, w)`` on the labels' device. Channel sums are the valid
        mass in ``[0, 1]``. For ``bicubic`` and ``lanczos`` the negative lobes are clamped at zero and
        each pixel rescaled to its valid mass, so the result stays a distribution.
    """
    labels = as_label_tensor(labels)
    size = _pair(size)
    _check_kernel(kernel, convention)
    box = _check_box(top, left, height, width)
    codes = _checked_codes(labels, num_classes, ignore_index)
    batched = codes.dim() == 3
    codes = codes if batched else codes.unsqueeze(0)
    py, px = _plans(codes.shape[-2:], box, size, kernel, antialias, align_corners, convention)
    soft = _soft_from_codes(codes, py, px, num_classes)
    if kernel in NEGATIVE_LOBE_KERNELS:
        soft = _clamp_negative_lobes(soft)
    else:  # sums of signed run terms can leave -1e-8 where the answer is 0
        soft = soft.clamp_(min=0.0)
    return soft if batched else soft[0]


def soft_downsample(
    labels: torch.Tensor | np.ndarray,
    size: Size,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    kernel: str = "bilinear",
    antialias: bool = True,
    align_corners: bool = False,
    convention: Convention = "torch",
) -> torch.Tensor:
    """Soft labels of the whole map at ``size``: per output pixel, each class's weight in its filter.

    With ``convention="torch"`` this equals ``F.interpolate(one_hot(labels), size, mode=kernel,
    antialias=antialias, align_corners=align_corners)`` (``area``/``box``: ``mode="area"``); with
    ``convention="pil"`` it equals ``PIL.Image.resize(size[::-1], resample=kernel)`` applied to each
    class's indicator image in mode ``F``. See :func:`soft_resized_crop` for arguments and return value.
    """
    labels = as_label_tensor(labels)
    H, W = labels.shape[-2:]
    return soft_resized_crop(
        labels, 0, 0, H, W, size, num_classes,
        ignore_index=ignore_index, kernel=kernel, antialias=antialias,
        align_corners=align_corners, convention=convention,
    )  # fmt: skip


def resized_crop_image(
    image: torch.Tensor,
    top: float,
    left: float,
    height: float,
    width: float,
    size: Size,
    *,
    kernel: str = "bilinear",
    antialias: bool = True,
    align_corners: bool = False,
    convention: Convention = "torch",
    fill: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Resample the box of an image ``(..., C, H, W)`` to ``size`` with the operator of
    :func:`soft_resized_crop`; the image is padded with ``fill`` (one value or one per channel)
    where the box leaves it.

    Floating images keep their dtype; integer images come back as float32 (unrounded), because a
    rounded image would no longer match its soft label exactly.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() < 2:
        raise ValueError(f"image must be (..., H, W), got shape {tuple(image.shape)}")
    size = _pair(size)
    _check_kernel(kernel, convention)
    box = _check_box(top, left, height, width)
    x = image if image.dtype.is_floating_point else image.float()
    py, px = _plans(x.shape[-2:], box, size, kernel, antialias, align_corners, convention)
    wy, wx = (p.axis.to(x.device, x.dtype) for p in (py, px))
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    if fill_t.dim() == 1:
        fill_t = fill_t.view(-1, 1, 1)
    out = _dense_pass(x, wx, dim=-1)
    if bool(wx.outside.any()):
        out = out + fill_t * wx.outside
    out = _dense_pass(out, wy, dim=-2)
    if bool(wy.outside.any()):
        # a padded row is all fill, and the horizontal pass keeps it at fill * (total weight)
        row_total = wx.weight.sum(1) + wx.outside
        out = out + fill_t * wy.outside.view(-1, 1) * row_total
    return out


def resize_image(
    image: torch.Tensor,
    size: Size,
    *,
    kernel: str = "bilinear",
    antialias: bool = True,
    align_corners: bool = False,
    convention: Convention = "torch",
) -> torch.Tensor:
    """Resample a whole image ``(..., C, H, W)`` to ``size`` with the operator of :func:`soft_downsample`.

    ``convention="torch"`` matches ``F.interpolate``; ``"pil"`` matches ``PIL.Image.resize`` on mode ``F``.
    """
    H, W = image.shape[-2:]
    return resized_crop_image(
        image, 0, 0, H, W, size,
        kernel=kernel, antialias=antialias, align_corners=align_corners, convention=convention,
    )  # fmt: skip
