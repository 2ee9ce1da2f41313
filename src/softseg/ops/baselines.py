"""The usual hard label down-sampling, for comparison: nearest neighbour and majority vote (mode).

Both return integer maps of the input dtype, with ``ignore_index`` where no class can be assigned.
"""

from __future__ import annotations

import numpy as np
import torch

from .kernels import Convention, Resampler
from .labels import as_label_tensor
from .resample import Size, _check_box, _pair, _plans, soft_resized_crop

__all__ = ["nearest_downsample", "nearest_resized_crop", "mode_downsample", "mode_resized_crop"]


def nearest_resized_crop(
    labels: torch.Tensor | np.ndarray,
    top: float,
    left: float,
    height: float,
    width: float,
    size: Size,
    *,
    ignore_index: int = 255,
    convention: Convention = "torch",
) -> torch.Tensor:
    """Nearest-neighbour labels of a crop box, on the grid of :func:`softseg.soft_resized_crop`.

    ``convention="torch"`` picks ``floor(i * scale)`` like ``F.interpolate(mode="nearest")``;
    ``"pil"`` picks ``floor((i + 0.5) * scale)`` like ``Image.resize(resample=NEAREST)``;
    ``"cv2"`` picks ``floor(i * scale)`` in OpenCV's arithmetic, like ``cv2.INTER_NEAREST``. Output
    pixels that fall on padding outside the image get ``ignore_index``.

    >>> import torch
    >>> nearest_resized_crop(torch.tensor([[0, 0, 1, 1]]), 0, -2, 1, 4, (1, 2)).tolist()
    [[255, 0]]
    """
    labels = as_label_tensor(labels)
    size = _pair(size)
    box = _check_box(top, left, height, width)
    rs = Resampler("nearest", antialias=False, convention=convention)
    py, px = _plans(labels.shape[-2:], box, size, rs)
    rows, cols = py.axis.index[:, 0].to(labels.device), px.axis.index[:, 0].to(labels.device)
    out = labels.index_select(-2, rows).index_select(-1, cols)
    off_y, off_x = py.axis.outside.to(labels.device) > 0, px.axis.outside.to(labels.device) > 0
    if bool(off_y.any() or off_x.any()):
        out = out.masked_fill(off_y[:, None] | off_x[None, :], ignore_index)
    return out


def nearest_downsample(
    labels: torch.Tensor | np.ndarray,
    size: Size,
    *,
    ignore_index: int = 255,
    convention: Convention = "torch",
) -> torch.Tensor:
    """Nearest-neighbour label map at ``size`` (the usual way labels are shrunk).

    >>> import torch
    >>> nearest_downsample(torch.tensor([[0, 0, 1, 1], [0, 2, 1, 255]]), (1, 2)).tolist()
    [[0, 1]]
    """
    labels = as_label_tensor(labels)
    H, W = labels.shape[-2:]
    return nearest_resized_crop(
        labels, 0, 0, H, W, size, ignore_index=ignore_index, convention=convention
    )


def mode_resized_crop(
    labels: torch.Tensor | np.ndarray,
    top: float,
    left: float,
    height: float,
    width: float,
    size: Size,
    num_classes: int,
    *,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Majority class of each output pixel's footprint (the pixels ``F.interpolate(mode="area")``
    averages); ignored pixels do not vote, ties go to the lowest class index, and a footprint with
    no valid pixel gets ``ignore_index``.

    >>> import torch
    >>> labels = torch.tensor([[0, 0, 1, 1], [0, 2, 1, 255]])
    >>> mode_resized_crop(labels, 0, 1, 2, 2, (1, 1), 3).tolist()  # reads [[0, 1], [2, 1]]
    [[1]]
    """
    labels = as_label_tensor(labels)
    size = _pair(size)
    box = _check_box(top, left, height, width)
    area = Resampler("area", antialias=False)
    share = soft_resized_crop(
        labels, *box, size, num_classes, ignore_index=ignore_index, resampler=area
    )
    # Area weights are 1/footprint size; scaling back gives exact integer counts, so equal
    # counts compare equal and argmax (first maximum) breaks ties towards the lowest index.
    py, px = _plans(labels.shape[-2:], box, size, area)
    footprint = _footprint(py.axis.weight)[:, None] * _footprint(px.axis.weight)[None, :]
    counts = torch.round(share * footprint.to(share.device, share.dtype))
    best = counts.argmax(dim=-3)
    return best.to(labels.dtype).masked_fill(counts.sum(dim=-3) == 0, ignore_index)


def _footprint(weight: torch.Tensor) -> torch.Tensor:
    """Pixels each output of an area band averages (padding included): all taps weigh 1/n."""
    top = weight.max(1).values
    return torch.where(top > 0, torch.round(1.0 / top.clamp(min=1e-12)), torch.ones_like(top))


def mode_downsample(
    labels: torch.Tensor | np.ndarray,
    size: Size,
    num_classes: int,
    *,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Majority-vote label map at ``size``; see :func:`mode_resized_crop`. Only down-samples.

    >>> import torch
    >>> mode_downsample(torch.tensor([[0, 0, 1, 1], [0, 2, 1, 255]]), (1, 2), 3).tolist()
    [[0, 1]]
    """
    labels = as_label_tensor(labels)
    H, W = labels.shape[-2:]
    h, w = _pair(size)
    if h > H or w > W:
        raise ValueError(
            f"mode down-sampling needs an output no larger than the input {(H, W)}, got {(h, w)}"
        )
    return mode_resized_crop(labels, 0, 0, H, W, (h, w), num_classes, ignore_index=ignore_index)
