"""Private kernels of :mod:`softseg.integrations.torchvision` on plain tensors (no ``SoftLabel``).

- :func:`move_pixels`: crops, pads, flips and right-angle turns of a hard label. Most only move
  pixels, so torchvision's image kernel runs on the integer map itself (a view where it gives
  one: no copy, no dtype change). Only an op that pads with torchvision's fill 0 (a crop reaching
  outside the map, a center crop larger than it) runs on codes ``label + 1`` with 0 for ignored
  pixels, so that its padding becomes ignore: no mass, as padding has in the one-hot.
- :func:`warp_mode`, :func:`grid_warp`: a hard label through torchvision's sampling grid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional import _geometry as _tvg

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
