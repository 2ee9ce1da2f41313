"""Adding interpolation taps into soft labels, once per pixel where a pixel's taps agree.

Private to :mod:`softseg.ops`. A soft label pixel is ``sum_t weight_t * onehot(label_t)`` over
the ``T`` input pixels (taps) it reads. Label maps are piecewise constant, so most output pixels
read ``T`` taps of one class: for those one add of the summed weight does the work of ``T``. Only
pixels whose taps disagree (near class edges) add tap by tap.
"""

from __future__ import annotations

import torch

#: Taps one call of :func:`soft_from_taps` may hold (an int64 slot and a float32 weight each).
MAX_TAPS = 1 << 22


def codes_of(taps: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """Checked labels as int64 channel numbers, the ignore value as ``num_classes``. May write
    into ``taps`` when it is already int64: pass a copy of the caller's labels."""
    codes = taps.long()
    if ignore_index is None:
        return codes
    if ignore_index >= num_classes:  # checked labels: the ignore value is the only one this high
        return codes.clamp_(max=num_classes)
    return codes.masked_fill_(codes == ignore_index, num_classes)


def add_taps(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
    """``out.index_add_(0, target.view(-1), weight.view(-1))``, merging the taps that agree.

    ``out``: flat float32 accumulator, written in place. ``target``: int64 ``(T, P)``, where in
    ``out`` tap ``t`` of pixel ``p`` adds (its channel's slot for that pixel), so a pixel's taps
    agree exactly when they name one class. ``weight``: float32 ``(T, P)``.
    """
    if target.shape[0] == 1:
        out.index_add_(0, target[0], weight[0])
        return
    same = (target == target[:1]).all(0)
    # every pixel adds its summed weight at its first tap; pixels whose taps disagree add zero
    # there, then tap by tap. Summed in tap order, as tap-by-tap adds would: bit for bit the
    # same numbers whatever the batch or chunk
    total = weight[0].clone()
    for t in range(1, weight.shape[0]):
        total += weight[t]
    out.index_add_(0, target[0], total.mul_(same))
    mixed = (~same).nonzero().squeeze(1)
    if len(mixed):
        out.index_add_(
            0, target.index_select(1, mixed).view(-1), weight.index_select(1, mixed).view(-1)
        )


def soft_from_taps(
    labels: torch.Tensor,
    rows: tuple[torch.Tensor, torch.Tensor],
    cols: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    ignore_index: int | None,
) -> torch.Tensor:
    """Soft labels ``(N, C, h, w)`` of checked labels ``(N, H, W)`` read tap by tap.

    ``rows``/``cols``: ``(index, weight)`` of shape ``(h, Ty)`` / ``(w, Tx)``, input rows and
    columns (in range) and their weights. Output pixel ``(i, j)`` adds ``wy[i, a] * wx[j, b]``
    into the class of input ``(iy[i, a], ix[j, b])``. Work is ``h * w * Ty * Tx`` reads, which
    beats the row passes of :mod:`softseg.ops._fast` for narrow kernels that never widen (nearest,
    OpenCV's, non-antialiased bilinear and bicubic).
    """
    (iy, wy), (ix, wx) = rows, cols
    n, h, w, k = labels.shape[0], iy.shape[0], ix.shape[0], num_classes + 1
    dev = labels.device
    slot = torch.arange(h * w, device=dev).view(1, h, w) + (
        torch.arange(n, device=dev) * (k * h * w)
    ).view(n, 1, 1)
    targets, weights = [], []
    for a in range(iy.shape[1]):
        tap_rows = labels.index_select(1, iy[:, a])
        for b in range(ix.shape[1]):
            codes = codes_of(tap_rows.index_select(2, ix[:, b]), num_classes, ignore_index)
            targets.append(codes.mul_(h * w).add_(slot).view(-1))
            weights.append((wy[:, a, None] * wx[None, :, b]).expand(n, h, w).reshape(-1))
    out = torch.zeros(n * k * h * w, dtype=torch.float32, device=dev)
    add_taps(out, torch.stack(targets), torch.stack(weights))
    soft = out.view(n, k, h, w)[:, :num_classes]
    return soft if n == 1 else soft.contiguous()


def taps_pay(fast, labels: torch.Tensor, py, px, num_classes: int) -> bool:
    """Whether :func:`soft_from_taps` should replace the row passes for these axis plans.

    ``fast`` is the :class:`softseg.ops._fast.FastPath` (its ``tap_path``); ``py``/``px`` the
    row and column plans. On one CPU thread (``benchmarks/bench_downsample.py``, Cityscapes and
    ADE20K sizes at x2, x4, x8) reading taps won for up to 4 taps per output, and for up to 64
    where its reads stayed under 1/30 of the row passes' work (input pixels read times
    ``C + 1``, their partial sums grow with the classes); near that line the two tie. Measured on
    CPUs only, so devices keep the row passes unless asked.
    """
    if len(py.used) == 0 or len(px.used) == 0:  # a box wholly outside: nothing to read
        return False
    if fast.tap_path != "auto":
        return fast.tap_path == "always"
    if fast.run_path != "auto" or labels.device.type != "cpu":
        return False
    taps = py.band_index.shape[1] * px.band_index.shape[1]
    reads = labels.shape[0] * py.n_out * px.n_out * taps
    passes = labels.shape[0] * len(py.used) * len(px.used) * (num_classes + 1)
    return reads <= MAX_TAPS and (taps <= 4 or (taps <= 64 and 30 * reads <= passes))
