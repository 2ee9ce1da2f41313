"""Soft labels: resample a label map with exactly the operator that resamples its image.

For a separable resampler with row weights ``Wy`` (``h x H``) and column weights ``Wx`` (``w x W``),
from :func:`softseg.ops.kernels.axis_weights`, an image plane ``X`` becomes ``Wy @ X @ Wx.T``. Apply
the same to the indicator ``[labels == c]`` of each class and output pixel ``(i, j)`` holds the
weight class ``c`` has in its filter: the soft label. Ignored pixels, and padding where a crop box
leaves the image, belong to no class, so they carry no mass and the channel sum of a soft label is
the valid fraction of its pixel. Kernels with negative lobes (bicubic, lanczos) are clamped back to
a distribution (:func:`softseg.ops.labels.clamp_negative_lobes`).

:func:`soft_resized_crop_reference` computes exactly that, densely: it needs the one-hot map,
``C x H x W`` floats (150 MB in float32 for one Cityscapes frame). :func:`soft_resized_crop` gives
the same numbers (to float32 rounding) without it: each input pixel's weights go straight into the
channel its label names (the private ``_fast`` module). :func:`resized_crop_image` is the operator
on images, so an image and its soft label stay pixel for pixel coherent.

Shapes follow torchvision: labels ``(H, W)`` or ``(N, H, W)``, images ``(..., C, H, W)``. The
resampler is given as :class:`~softseg.ops.kernels.Resampler` or as its loose keyword arguments.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np
import torch

from . import _fast, _taps
from .kernels import AxisWeights, Convention, Resampler, axis_weights
from .labels import as_label_tensor, check_label_values, clamp_negative_lobes

__all__ = [
    "soft_downsample",
    "soft_resized_crop",
    "resize_image",
    "resized_crop_image",
    "soft_downsample_reference",
    "soft_resized_crop_reference",
]

Size = int | Sequence[int]
Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------- argument checking
#: How many times the larger of its input and output sides a box side may span: beyond, a box is a
#: mistake whose filter taps (as many as the box is long) would take gigabytes.
MAX_BOX_RATIO = 64


def _is_index(value: object) -> bool:
    """An integer (also numpy's and 0-d integer tensors), but not a bool or a float."""
    try:
        return not isinstance(value, (bool, np.bool_)) and operator.index(value) is not None
    except TypeError:
        return False


def _pair(size: Size, what: str = "size") -> tuple[int, int]:
    items = (size, size) if _is_index(size) else size
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if len(items) != 2 or not all(_is_index(s) for s in items):
        raise TypeError(f"{what} must be an int or a pair (height, width) of ints, got {size!r}")
    items = tuple(operator.index(s) for s in items)
    if min(items) <= 0:
        raise ValueError(f"{what} must be a positive int or (height, width), got {items!r}")
    return items  # type: ignore[return-value]


def _check_box(top, left, height, width) -> Box:
    if not (height > 0 and width > 0):
        raise ValueError(f"crop box must have positive height and width, got ({height}, {width})")
    box = float(top), float(left), float(height), float(width)
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"crop box (top, left, height, width) must be finite, got {box}")
    return box


def _check_extent(shape_hw: tuple[int, int], box: Box, size: tuple[int, int]) -> None:
    """Refuse a box side over ``MAX_BOX_RATIO`` times the larger of its input and output side."""
    for axis, n_in, length, n_out in (("height", shape_hw[0], box[2], size[0]),
                                      ("width", shape_hw[1], box[3], size[1])):  # fmt: skip
        limit = MAX_BOX_RATIO * max(n_in, n_out)
        if length > limit:
            raise ValueError(
                f"crop box {axis} {length:g} is over {MAX_BOX_RATIO} times the larger of the input "
                f"({n_in}) and output ({n_out}) {axis}s; such a box is a mistake, and its filter "
                "would need memory in proportion to it"
            )


def _check_num_classes(num_classes: object) -> int:
    if not _is_index(num_classes):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    return operator.index(num_classes)


def _codes(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """Checked labels as int64, the ignore value replaced by ``num_classes`` (the spare channel)."""
    check_label_values(labels, num_classes, ignore_index)
    return _taps.codes_of(labels.clone(), num_classes, ignore_index)


def _plans(shape_hw, box: Box, size, rs: Resampler) -> tuple[_fast.AxisPlan, _fast.AxisPlan]:
    """The cached row and column plans of a box; ``.axis`` is the plain :class:`AxisWeights`."""
    _check_extent(tuple(shape_hw), box, size)
    (H, W), (top, left, height, width), (h, w) = shape_hw, box, size
    rs = rs.for_resize((height, width), (h, w))  # cv2's INTER_AREA picks its rule on both axes
    return _fast.axis_plan(H, h, rs, top, height), _fast.axis_plan(W, w, rs, left, width)


def _soft_labels(
    labels, box, size, num_classes, ignore_index, rs: Resampler, fast: _fast.FastPath
) -> torch.Tensor:
    """:func:`soft_resized_crop` with the resampler resolved and the fast path's settings."""
    labels = as_label_tensor(labels)
    size, box = _pair(size), _check_box(*box)
    num_classes = _check_num_classes(num_classes)
    check_label_values(labels, num_classes, ignore_index)
    batched = labels.dim() == 3
    labels = labels if batched else labels.unsqueeze(0)
    py, px = _plans(labels.shape[-2:], box, size, rs)
    tapped = _taps.taps_pay(fast, labels, py, px, num_classes)
    if tapped:
        dev = labels.device
        rows = (py.used[py.band_index].to(dev), py.band_weight.to(dev, torch.float32))
        cols = (px.used[px.band_index].to(dev), px.band_weight.to(dev, torch.float32))
        soft = _taps.soft_from_taps(labels, rows, cols, num_classes, ignore_index)
    else:
        soft = _fast.soft_from_labels(labels, py, px, num_classes, ignore_index, fast)
    if rs.negative_lobes:
        soft = clamp_negative_lobes(soft, inplace=True)
    elif not tapped:  # sums of signed run terms can leave -1e-8 where the answer is 0
        soft = soft.clamp_(min=0.0)
    return soft if batched else soft[0]


# --------------------------------------------------------------------------- soft labels
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
    kernel: str | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    convention: Convention | None = None,
    resampler: Resampler | None = None,
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
        kernel, antialias, align_corners, convention: the resampler, default ``"bilinear"``,
            ``True``, ``False``, ``"torch"``; see :class:`~softseg.ops.kernels.Resampler`.
        resampler: the resampler as one object, instead of the four arguments above.

    Returns:
        float32 ``(C, h, w)`` or ``(N, C, h, w)`` on the labels' device. Channel sums are the valid
        mass in ``[0, 1]``. For ``bicubic`` and ``lanczos`` the negative lobes are clamped at zero and
        each pixel rescaled to its valid mass, so the result stays a distribution.

    >>> import torch
    >>> labels = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    >>> soft_resized_crop(labels, 0, 1, 2, 2, (1, 1), 2, kernel="area")[:, 0, 0].tolist()
    [0.5, 0.5]
    """
    rs = Resampler.resolve(
        resampler, kernel=kernel, antialias=antialias, align_corners=align_corners,
        convention=convention,
    )  # fmt: skip
    box = (top, left, height, width)
    return _soft_labels(labels, box, size, num_classes, ignore_index, rs, _fast.FastPath())


def soft_downsample(
    labels: torch.Tensor | np.ndarray,
    size: Size,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    kernel: str | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    convention: Convention | None = None,
    resampler: Resampler | None = None,
) -> torch.Tensor:
    """Soft labels of the whole map at ``size``: per output pixel, each class's weight in its filter.

    With ``convention="torch"`` this equals ``F.interpolate(one_hot(labels), size, mode=kernel,
    antialias=antialias, align_corners=align_corners)`` (``area``/``box``: ``mode="area"``); with
    ``convention="pil"`` it equals ``PIL.Image.resize(size[::-1], resample=kernel)`` applied to each
    class's indicator image in mode ``F``, and with ``convention="cv2"`` ``cv2.resize`` (``INTER_*``
    of the kernel's name, ``area``: ``INTER_AREA``) applied to each indicator in float32. See
    :func:`soft_resized_crop` for arguments and return value.

    >>> import torch
    >>> labels = torch.tensor([[0, 1, 2, 255]])
    >>> soft_downsample(labels, (1, 2), 3, kernel="area")[:, 0].tolist()
    [[0.5, 0.0], [0.5, 0.0], [0.0, 0.5]]
    """
    labels = as_label_tensor(labels)
    H, W = labels.shape[-2:]
    return soft_resized_crop(
        labels, 0, 0, H, W, size, num_classes,
        ignore_index=ignore_index, kernel=kernel, antialias=antialias,
        align_corners=align_corners, convention=convention, resampler=resampler,
    )  # fmt: skip


# --------------------------------------------------------------------------- the reference
def soft_resized_crop_reference(
    labels: torch.Tensor | np.ndarray,
    top: float,
    left: float,
    height: float,
    width: float,
    size: Size,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    kernel: str | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    convention: Convention | None = None,
    resampler: Resampler | None = None,
) -> torch.Tensor:
    """The slow, literal :func:`soft_resized_crop`: ``Wy @ one_hot(labels) @ Wx.T`` in float64.

    The definition the fast path must equal (to float32 rounding); it builds the dense one-hot
    ``(N, C, H, W)`` and dense weight matrices, so keep it to small maps (tests, checks).
    Arguments as for :func:`soft_resized_crop`; returns float64 ``(C, h, w)`` or ``(N, C, h, w)``.

    >>> import torch
    >>> labels = torch.randint(0, 3, (2, 9, 7))
    >>> fast = soft_resized_crop(labels, -1, 2.5, 8, 6, (4, 3), 3, kernel="bicubic")
    >>> slow = soft_resized_crop_reference(labels, -1, 2.5, 8, 6, (4, 3), 3, kernel="bicubic")
    >>> torch.allclose(fast.double(), slow, atol=1e-6)
    True
    """
    rs = Resampler.resolve(
        resampler, kernel=kernel, antialias=antialias, align_corners=align_corners,
        convention=convention,
    )  # fmt: skip
    labels = as_label_tensor(labels)
    size, box = _pair(size), _check_box(top, left, height, width)
    num_classes = _check_num_classes(num_classes)
    _check_extent(tuple(labels.shape[-2:]), box, size)
    codes = _codes(labels, num_classes, ignore_index)
    # the ignore code num_classes is an extra channel, dropped: ignored pixels weigh nothing
    onehot = torch.nn.functional.one_hot(codes, num_classes + 1)[..., :num_classes]
    onehot = onehot.movedim(-1, -3).to(torch.float64)
    (H, W), (h, w), (top, left, height, width) = labels.shape[-2:], size, box
    rs = rs.for_resize((height, width), (h, w))
    wy = axis_weights(H, h, start=top, length=height, resampler=rs).to_dense(H)
    wx = axis_weights(W, w, start=left, length=width, resampler=rs).to_dense(W)
    soft = wy.to(labels.device) @ onehot @ wx.to(labels.device).T
    return clamp_negative_lobes(soft) if rs.negative_lobes else soft


def soft_downsample_reference(
    labels: torch.Tensor | np.ndarray,
    size: Size,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    kernel: str | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    convention: Convention | None = None,
    resampler: Resampler | None = None,
) -> torch.Tensor:
    """The slow, literal :func:`soft_downsample`; see :func:`soft_resized_crop_reference`.

    >>> import torch
    >>> soft_downsample_reference(torch.tensor([[0, 1]]), (1, 1), 2)[:, 0, 0].tolist()
    [0.5, 0.5]
    """
    labels = as_label_tensor(labels)
    H, W = labels.shape[-2:]
    return soft_resized_crop_reference(
        labels, 0, 0, H, W, size, num_classes,
        ignore_index=ignore_index, kernel=kernel, antialias=antialias,
        align_corners=align_corners, convention=convention, resampler=resampler,
    )  # fmt: skip


# --------------------------------------------------------------------------- images
def _dense_pass(x: torch.Tensor, aw: AxisWeights, dim: int) -> torch.Tensor:
    """``sum_k weight[:, k] * x.index_select(dim, index[:, k])`` without materialising the taps."""
    view = [1] * x.dim()
    view[dim] = -1
    out = None
    for k in range(aw.taps):
        term = x.index_select(dim, aw.index[:, k]).mul_(aw.weight[:, k].view(view))
        out = term if out is None else out.add_(term)
    return out


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() < 2:
        raise ValueError(f"image must be (..., H, W), got shape {tuple(image.shape)}")


def resized_crop_image(
    image: torch.Tensor,
    top: float,
    left: float,
    height: float,
    width: float,
    size: Size,
    *,
    kernel: str | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    convention: Convention | None = None,
    resampler: Resampler | None = None,
    fill: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Resample the box of an image ``(..., C, H, W)`` to ``size`` with the operator of
    :func:`soft_resized_crop`; the image is padded with ``fill`` (one value or one per channel)
    where the box leaves it.

    Floating images keep their dtype; integer images come back as float32 (unrounded), because a
    rounded image would no longer match its soft label exactly.

    >>> import torch
    >>> image = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    >>> resized_crop_image(image, 0, -2, 1, 4, (1, 2), kernel="area", fill=9.0)
    tensor([[[9.0000, 1.5000]]])
    """
    rs = Resampler.resolve(
        resampler, kernel=kernel, antialias=antialias, align_corners=align_corners,
        convention=convention,
    )  # fmt: skip
    _check_image(image)
    x = image if image.dtype.is_floating_point else image.float()
    size, box = _pair(size), _check_box(top, left, height, width)
    py, px = _plans(x.shape[-2:], box, size, rs)
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
    kernel: str | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    convention: Convention | None = None,
    resampler: Resampler | None = None,
) -> torch.Tensor:
    """Resample a whole image ``(..., C, H, W)`` to ``size`` with the operator of :func:`soft_downsample`.

    ``convention="torch"`` matches ``F.interpolate``; ``"pil"`` matches ``PIL.Image.resize`` on mode ``F``.

    >>> import torch
    >>> resize_image(torch.tensor([[[0.0, 1.0, 2.0, 3.0]]]), (1, 2), kernel="area")
    tensor([[[0.5000, 2.5000]]])
    """
    _check_image(image)
    H, W = image.shape[-2:]
    return resized_crop_image(
        image, 0, 0, H, W, size,
        kernel=kernel, antialias=antialias, align_corners=align_corners, convention=convention,
        resampler=resampler,
    )  # fmt: skip
