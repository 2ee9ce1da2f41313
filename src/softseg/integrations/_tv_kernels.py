"""Private kernels of :mod:`softseg.integrations.torchvision` on plain tensors (no ``SoftLabel``).

- :func:`move_pixels`: crops, pads, flips and right-angle turns of a hard label. Most only move
  pixels, so torchvision's image kernel runs on the integer map itself (a view where it gives
  one: no copy, no dtype change). Only an op that pads with torchvision's fill 0 (a crop reaching
  outside the map, a center crop larger than it) runs on codes ``label + 1`` with 0 for ignored
  pixels, so that its padding becomes ignore: no mass, as padding has in the one-hot.
- :func:`soft_resize`: the first resize of a hard label, :func:`softseg.soft_downsample`'s
  operator summed along runs of equal labels with tables cheap enough to build per sample.
- :func:`warp_mode`, :func:`grid_warp`: a hard label through torchvision's sampling grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional import _geometry as _tvg

from ..ops.kernels import Resampler, axis_weights
from ..ops.labels import check_label_values, clamp_negative_lobes
from ..ops.resample import soft_downsample
from ..ops.warp import soft_grid_sample

Op = Callable[[torch.Tensor], torch.Tensor]


def move_pixels(
    data: torch.Tensor, ignore_index: int, op: Op, pads_with_zero: bool
) -> torch.Tensor:
    """``op`` (an image kernel on ``(..., 1, H, W)``) applied to a hard label ``(H, W)`` or
    ``(N, H, W)``; ``pads_with_zero``: whether ``op`` pads with 0, which must become ignore."""
    if not pads_with_zero:
        return op(data.unsqueeze(-3)).squeeze(-3)
    codes = torch.where(data == ignore_index, 0, data.long() + 1).unsqueeze(-3)
    out = op(codes).squeeze(-3)
    return torch.where(out == 0, ignore_index, out - 1).to(data.dtype)


def crop_reads_outside(shape_hw: torch.Size, top: int, left: int, height: int, width: int) -> bool:
    """Whether ``F.crop_image`` pads: its box leaves the ``(H, W)`` map."""
    H, W = shape_hw
    return top < 0 or left < 0 or top + height > H or left + width > W


def warp_mode(interpolation: InterpolationMode | str | int) -> str:
    """The ``grid_sample`` mode of a warp's interpolation: v2 warps tensors with NEAREST or
    BILINEAR only, so a label admits those two."""
    mode = _tvg._check_interpolation(interpolation)
    if mode not in (InterpolationMode.NEAREST, InterpolationMode.BILINEAR):
        raise ValueError(
            f"SoftLabel warps with the image's grid_sample mode, which v2 allows as NEAREST or "
            f"BILINEAR on tensors; got interpolation={interpolation!r}"
        )
    return mode.value


def grid_warp(
    data: torch.Tensor,
    num_classes: int,
    ignore_index: int,
    grid: torch.Tensor,
    mode: str,
    fill: Any,
    image_op: Callable[[torch.Tensor, Any], torch.Tensor],
) -> torch.Tensor:
    """A label through ``grid`` ``(1, h, w, 2)``: a soft label stays a float image under
    torchvision's ``image_op`` (fill 0: no mass); a hard one is sampled by
    :func:`soft_grid_sample`, then weighted by torchvision's fill mask when ``fill`` is set."""
    fill0 = None if fill is None else 0.0  # the label's padding is "no mass", whatever the image's
    if data.dtype.is_floating_point:
        return image_op(data, fill0)
    batch = data.shape[0] if data.dim() == 3 else 1
    kw = dict(mode=mode, align_corners=False, ignore_index=ignore_index)
    soft = soft_grid_sample(data, grid.expand(batch, -1, -1, -1), num_classes, **kw)
    if fill is not None and mode == "bilinear":  # torchvision: m * (sampled - fill) + fill
        ones = torch.ones(1, 1, *data.shape[-2:], dtype=grid.dtype, device=grid.device)
        soft = soft * torch.nn.functional.grid_sample(ones, grid, mode, "zeros", False)
    # nearest: torchvision's mask is 0 exactly where a sample reads outside, which has no mass
    return soft if data.dim() == 3 else soft[0]


# --------------------------------------------------------------------------- resize of a hard label
# The first resize of a hard label, one sample at a time on the CPU (a v2 pipeline's usual case).
# It is :func:`softseg.soft_downsample`'s operator (the same banded weights, from
# :func:`softseg.ops.kernels.axis_weights`), summed along runs of equal labels with tables cheap
# enough to build per sample: random crops give every sample its own sizes, so plans rarely repeat.
#
# Along an axis, output ``j`` reads inputs ``lo_j ..`` with weights whose sum from input ``x`` on
# is ``S_j(x)`` (``total_j`` for ``x <= lo_j``). A run ``[a, b)`` of label ``c`` adds
# ``S_j(a) - S_j(b)`` to class ``c``: that is ``total_j`` when the run holds ``lo_j``, plus the
# partial sums ``Q_j(a) - Q_j(b)`` where ``Q_j(x) = S_j(x)`` for ``lo_j < x < lo_j + span``, else 0.
# So each output adds its total to the class at ``lo_j``, and each boundary between two runs at
# ``x`` adds ``Q_j(x)`` to the new run's class and takes it from the old one's, for the few outputs
# it cuts: pass 1 reads the map once (neighbour comparisons) and writes per output and per
# boundary, never per pixel. Pass 2 is the banded weighted sum of its rows (``embedding_bag``).

#: Most partial-sum elements (rows x (C + 1) x outputs) this path holds; beyond, the blocked core.
MAX_ACC_ELEMENTS = 1 << 22
#: Most run boundaries per pixel read: beyond, the core's per-pixel pass is cheaper (CPU, 300x400
#: to 90x120: 1.1 against 1.5 ms at 0.09 boundaries per pixel, 2.0 against 1.4 ms at 0.12;
#: CamVid crops have about 0.02).
MAX_BOUNDARY_FRACTION = 0.1


@dataclass(frozen=True)
class _RunAxis:
    """One axis as runs read it: ``lo``/``total`` ``(n_out,)``, and per boundary position
    ``x`` in ``0 .. n_in`` the outputs ``cut_j[x]`` it cuts with ``cut_q[x]`` (0 in padding)."""

    lo: np.ndarray
    total: np.ndarray
    cut_j: np.ndarray
    cut_q: np.ndarray


@dataclass(frozen=True)
class _BagAxis:
    """The second axis: the inputs any output reads (``used``) and per output its taps as
    positions into ``used`` (``bags``) with their float32 ``weights``, both ``(n_out, taps)``."""

    used: np.ndarray
    bags: torch.Tensor
    weights: torch.Tensor


@lru_cache(maxsize=1024)
def _weights(n_in: int, n_out: int, rs: Resampler) -> tuple[np.ndarray, np.ndarray]:
    aw = axis_weights(n_in, n_out, resampler=rs)
    return aw.index.numpy(), aw.weight.numpy()


@lru_cache(maxsize=1024)
def _run_axis(n_in: int, n_out: int, rs: Resampler) -> _RunAxis | None:
    index, weight = _weights(n_in, n_out, rs)
    lo = index.min(1)  # dead taps included: every weight lies at or after it
    span = int((index.max(1) - lo).max()) + 1
    if np.any(np.diff(lo) < 0):  # the outputs a boundary cuts would not be one range
        return None
    flat = (np.arange(n_out)[:, None] * span + (index - lo[:, None])).ravel()
    local = np.bincount(flat, weights=weight.ravel(), minlength=n_out * span)
    suffix = np.cumsum(local.reshape(n_out, span)[:, ::-1], axis=1)[:, ::-1]  # S_j(lo_j + m)
    # a boundary at x cuts the outputs with x - span < lo_j < x: one range, as lo ascends
    x = np.arange(n_in + 1)
    first = np.searchsorted(lo, x - span, side="right")
    count = np.searchsorted(lo, x, side="left") - first
    j = first[:, None] + np.arange(max(1, int(count.max())))
    inside = j < (first + count)[:, None]
    j = np.where(inside, j, 0)
    q = np.where(inside, suffix[j, np.clip(x[:, None] - lo[j], 0, span - 1)], 0.0)
    f32 = np.float32
    return _RunAxis(lo, suffix[:, 0].astype(f32), j, q.astype(f32))


@lru_cache(maxsize=1024)
def _bag_axis(n_in: int, n_out: int, rs: Resampler) -> _BagAxis:
    index, weight = _weights(n_in, n_out, rs)
    used = np.flatnonzero(np.bincount(index[weight != 0.0], minlength=n_in))  # sorted, unique
    if len(used) == 0:  # no weight at all: any row will do, it is multiplied by 0
        used = np.zeros(1, dtype=np.int64)
    position = np.minimum(np.searchsorted(used, index), len(used) - 1)
    return _BagAxis(used, torch.from_numpy(position), torch.from_numpy(weight).float())


@lru_cache(maxsize=64)
def _byte_codes(num_classes: int, ignore_index: int) -> np.ndarray:
    """Channel number of every uint8 value: the class, ``num_classes`` for ignore, else -1."""
    table = np.full(256, -1, dtype=np.int64)
    table[: min(num_classes, 256)] = np.arange(min(num_classes, 256))
    if 0 <= ignore_index <= 255:
        table[ignore_index] = num_classes
    return table


def _codes(values: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray | None:
    """Gathered labels as int64 channel numbers (ignore: ``num_classes``), or ``None`` if any is
    neither a class nor the ignore value."""
    if values.dtype == np.uint8:
        codes = np.take(_byte_codes(num_classes, ignore_index), values)  # faster than [values]
    else:
        v = values.astype(np.int64)
        codes = np.where(
            v == ignore_index, num_classes, np.where((v >= 0) & (v < num_classes), v, -1)
        )
    return None if codes.size and codes.min() < 0 else codes


def _run_pass(flat: np.ndarray, W: int, x: np.ndarray, ax: _RunAxis, num_classes, ignore_index):
    """Partial sums ``(C + 1, R, w)`` (float32) along ``ax`` of the label rows ``flat``
    (``R * W``, row-major) whose runs start at ``x`` (flat, row starts left out), or ``None`` if
    a label is out of range. Class-major, so that pass 2 writes ``(C, h, w)``."""
    R, K, w = flat.size // W, num_classes + 1, len(ax.lo)
    at_lo = flat.reshape(R, W)[:, ax.lo]
    codes = _codes(np.concatenate([flat[x], flat[x - 1], at_lo.ravel()]), num_classes, ignore_index)
    if codes is None:
        return None
    n = len(x)
    # each output's total weight goes to the class at its first input (one write per output)
    at_lo = torch.from_numpy(codes[2 * n :]).view(1, R, w)
    acc = torch.zeros(K, R, w).scatter_(0, at_lo, torch.from_numpy(ax.total).expand(1, R, w))
    # a boundary adds Q to the new run's class and takes it as much from the old one's
    r, col = np.divmod(x, W)
    j, q = np.take(ax.cut_j, col, axis=0), np.take(ax.cut_q, col, axis=0)
    index = (codes[: 2 * n].reshape(2, n) * R + r) * w
    index = index[:, :, None] + j
    value = np.stack([q, -q])
    acc.view(-1).index_add_(0, torch.from_numpy(index).view(-1), torch.from_numpy(value).view(-1))
    return acc


def soft_resize(
    data: torch.Tensor,
    size: tuple[int, int],
    num_classes: int,
    ignore_index: int,
    kernel: str,
    antialias: bool,
) -> torch.Tensor:
    """:func:`softseg.soft_downsample` of a checked hard label ``(H, W)`` or ``(N, H, W)`` to
    ``size``, with torch's ``kernel`` and ``antialias``: float32 ``(C, h, w)`` or ``(N, C, h, w)``.

    On the CPU, within :data:`MAX_ACC_ELEMENTS`, it sums runs of equal labels (see above);
    elsewhere it is ``soft_downsample`` itself.
    """
    rs = Resampler(kernel, antialias=antialias)
    soft = None
    if data.device.type == "cpu":
        soft = _soft_by_runs(data, size, num_classes, ignore_index, rs)
    if soft is None:
        return soft_downsample(data, size, num_classes, ignore_index=ignore_index, resampler=rs)
    # sums of signed partial terms can leave -1e-8 where the answer is 0
    return clamp_negative_lobes(soft, inplace=True) if rs.negative_lobes else soft.clamp_(min=0.0)


def _soft_by_runs(data, size, num_classes: int, ignore_index: int, rs: Resampler):
    """The soft labels unclamped, or ``None`` where this path does not apply."""
    lab = data if data.dim() == 3 else data.unsqueeze(0)
    (N, H, W), (h, w), K = lab.shape, size, num_classes + 1
    # the first pass runs along rows; transposed when that keeps the partial sums (rows read x
    # outputs along a row) smaller. An axis reads at most min(inputs, outputs x taps) inputs.
    reads = [min(n, m * _weights(n, m, rs)[0].shape[1]) for n, m in ((H, h), (W, w))]
    transpose = reads[1] * h < reads[0] * w
    if transpose:
        lab, (H, W), (h, w) = lab.transpose(1, 2), (W, H), (w, h)
    by, ax = _bag_axis(H, h, rs), _run_axis(W, w, rs)
    R = len(by.used)
    if ax is None or N == 0 or N * R * K * w > MAX_ACC_ELEMENTS:
        return None
    if by.used[-1] - by.used[0] + 1 == R:  # consecutive rows: a view
        rows = lab[:, int(by.used[0]) : int(by.used[-1]) + 1]
    else:
        rows = lab.index_select(1, torch.from_numpy(by.used))
    flat = rows.reshape(N * R, W).contiguous().numpy().reshape(-1)
    x = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # run starts, flat
    x = x[x % W != 0]  # but for row starts
    if len(x) > MAX_BOUNDARY_FRACTION * flat.size:
        return None
    acc = _run_pass(flat, W, x, ax, num_classes, ignore_index)
    if acc is None:  # a label out of range: say which
        check_label_values(data, num_classes, ignore_index)
        return None
    # pass 2 per class and sample: row blocks k * N + n of the class-major partial sums
    bags = by.bags.unsqueeze(0) + (torch.arange(K * N) * R).view(K * N, 1, 1)
    summed = torch.nn.functional.embedding_bag(
        bags.view(K * N * h, -1), acc.view(K * N * R, w),
        per_sample_weights=by.weights.repeat(K * N, 1), mode="sum",
    )  # fmt: skip
    soft = summed.view(K, N, h, w)[:num_classes].transpose(0, 1)
    soft = (soft.transpose(2, 3) if transpose else soft).contiguous()
    return soft if data.dim() == 3 else soft[0]
