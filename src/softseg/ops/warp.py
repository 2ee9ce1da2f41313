"""Soft labels through any geometric warp: the label is sampled by the image's own sampling grid.

Libraries warp images through a grid with bilinear or bicubic interpolation but masks with nearest.
Here one grid drives both: :func:`warp_image` is ``F.grid_sample`` on the image and
:func:`soft_grid_sample` the same operator on the one-hot label, without building that one-hot:
each output pixel reads its 1, 4 or 16 label taps and adds their weights into the classes they
name. Work is ``output pixels x taps + classes x output pixels``.

Grids follow ``grid_sample``: shape ``(N, h, w, 2)``, ``(x, y)`` in ``[-1, 1]`` across the input,
mapping each *output* pixel to the *input* position it reads. Builders: :func:`affine_grid`
(with :func:`rotation_affine`), :func:`homography_grid`, :func:`displacement_grid`, and
:func:`resized_warp_grid` (warp, then resized crop, as one grid: see its example for the
image + label recipe), all in :mod:`softseg.ops.grids`. Samples outside the image carry no
class mass and read ``fill`` in the image.

>>> from softseg.ops.grids import affine_grid, rotation_affine
>>> labels = torch.tensor([[0, 1], [2, 255]], dtype=torch.uint8)
>>> grid = affine_grid(rotation_affine(90.0), (2, 2))  # turn the content a quarter, anticlockwise
>>> soft = soft_grid_sample(labels, grid, 3)[0]
>>> soft.argmax(0), soft.sum(0)  # the ignored pixel moved to the top right: no mass there
(tensor([[1, 0],
        [0, 2]]), tensor([[1., 0.],
        [1., 1.]]))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._taps import add_taps
from .labels import check_label_values, clamp_negative_lobes

MODES = ("nearest", "bilinear", "bicubic")
_CUBIC_A = -0.75  # torch's bicubic grid_sample and interpolate
_CHUNK = 1 << 18  # taps handled at once: temporaries stay in cache, memory stays flat


# --------------------------------------------------------------------------- validation
def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _check_grid(grid: torch.Tensor) -> torch.Tensor:
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"grid must be a torch.Tensor, got {type(grid).__name__}")
    if grid.dim() != 4 or grid.shape[-1] != 2:
        raise ValueError(f"grid must be (N, h, w, 2), got shape {tuple(grid.shape)}")
    if not grid.dtype.is_floating_point:
        raise ValueError(f"grid must be floating point, got dtype {grid.dtype}")
    if not bool(torch.isfinite(grid).all()):
        raise ValueError("grid holds non-finite values (nan or inf); every sample needs a position")
    return grid if grid.dtype == torch.float64 else grid.float()


def _check_labels(labels: torch.Tensor, batch: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    if labels.dim() not in (2, 3) or labels.numel() == 0:
        raise ValueError(f"labels must be non-empty (H, W) or (N, H, W), got {tuple(labels.shape)}")
    labels = labels if labels.dim() == 3 else labels.unsqueeze(0)
    if labels.shape[0] not in (1, batch):
        raise ValueError(f"labels batch {labels.shape[0]} does not match grid batch {batch}")
    return labels


def _ignore_in_use(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> int | None:
    """Validate the label values; return the ignore value if pixels may hold it, else ``None``."""
    integer = isinstance(num_classes, (int, np.integer)) and not isinstance(num_classes, bool)
    if not integer or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if ignore_index is not None and not isinstance(ignore_index, (int, np.integer)):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
    info = torch.iinfo(labels.dtype)
    if ignore_index is not None and not info.min <= ignore_index <= info.max:
        ignore_index = None  # out of the dtype's range (and uint8 == -1 would match 255)
    check_label_values(labels, num_classes, ignore_index)
    if ignore_index is None or 0 <= ignore_index < num_classes:
        return ignore_index
    lo, hi = (int(v) for v in torch.aminmax(labels))
    # validated: a value outside [0, C) can only be the ignore value
    return ignore_index if lo < 0 or hi >= num_classes else None


# --------------------------------------------------------------------------- taps
def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """torch's cubic weights (a = -0.75) of taps ``floor - 1 .. floor + 2``, ``(N, 4, P)``."""
    a = _CUBIC_A
    near = torch.stack((t, 1 - t), dim=1)  # distances <= 1
    far = near + 1  # distances in (1, 2]
    near = ((a + 2) * near - (a + 3)) * near * near + 1
    far = ((a * far - 5 * a) * far + 8 * a) * far - 4 * a
    return torch.stack((far[:, 0], near[:, 0], near[:, 1], far[:, 1]), dim=1)


def _axis_taps(coord: torch.Tensor, size: int, mode: str, align_corners: bool):
    """Indices (clamped into range) and weights (0 outside) ``(N, T, P)`` of the taps of the
    positions ``coord (N, P)`` on an axis of ``size``; taps go first so ops run along pixels."""
    # (coord + 1) * scale - shift with the rounding of torch's CPU kernel (a fused multiply-add):
    # on a 1000-pixel axis a float32 ulp is 6e-5 px, and both sides must read the same taps
    scale, shift = ((size - 1) / 2, 0.0) if align_corners else (size / 2, 0.5)
    x = ((coord + 1).double() * scale - shift).to(coord.dtype)
    x = x.clamp_(-4.0, size + 3.0)  # far-outside stays outside; keeps floor() in int range
    if mode == "nearest":  # round half to even, like grid_sample's nearbyint
        first, weight, offsets = torch.round(x), torch.ones_like(x).unsqueeze(1), (0,)
    else:
        first = torch.floor(x)
        t = x - first
        if mode == "bilinear":
            weight, offsets = torch.stack((1 - t, t), dim=1), (0, 1)
        else:
            weight, offsets = _cubic_weights(t), (-1, 0, 1, 2)
    index = first.long().unsqueeze(1) + torch.tensor(offsets, device=x.device).view(-1, 1)
    weight = weight.float()
    lo, hi = (int(v) for v in torch.aminmax(index))
    if lo < 0 or hi >= size:  # some taps fall outside: they read pixel 0 with weight 0
        inside = (index >= 0) & (index < size)
        index, weight = index.clamp_(0, size - 1), weight.masked_fill_(~inside, 0.0)
    return index, weight


def _read_taps(flat: torch.Tensor, hw, xy: torch.Tensor, mode: str, align_corners: bool):
    """Labels and weights ``(N, T, P)`` of the ``T`` taps of the positions ``xy (N, P, 2)``."""
    H, W = hw
    ix, wx = _axis_taps(xy[..., 0], W, mode, align_corners)
    iy, wy = _axis_taps(xy[..., 1], H, mode, align_corners)
    index = (iy * W).unsqueeze(2) + ix.unsqueeze(1)
    weight = wy.unsqueeze(2) * wx.unsqueeze(1)
    n, p = xy.shape[:2]
    return flat.gather(1, index.view(n, -1)).view(n, -1, p), weight.view(n, -1, p)


def soft_grid_sample(
    labels: torch.Tensor, grid: torch.Tensor, num_classes: int, *, mode: str = "bilinear",
    align_corners: bool = False, ignore_index: int | None = 255,
) -> torch.Tensor:  # fmt: skip
    """Soft labels of ``labels`` sampled at ``grid``: ``grid_sample`` of the one-hot, done sparsely.

    Equals ``F.grid_sample(one_hot, grid, mode, padding_mode="zeros", align_corners)`` where
    ``one_hot`` is the ``(N, C, H, W)`` float one-hot with ignored pixels all zero, so ignored and
    outside samples carry no mass. For ``bicubic`` (a = -0.75, which has negative lobes) the result
    is then clamped at zero and each pixel rescaled to its valid mass (the unclamped class sum,
    clipped to ``[0, 1]``), as :func:`softseg.soft_downsample` does, so it stays a distribution.
    The full-resolution one-hot is never built: memory is the output plus fixed-size tap chunks.

    Args:
        labels: integer ``(H, W)`` (shared by every grid in the batch) or ``(N, H, W)``.
        grid: ``(N, h, w, 2)`` sampling positions, ``(x, y)`` normalised as for ``grid_sample``.
        num_classes: ``C``; valid labels are ``0 .. C-1``.
        mode, align_corners: as for ``grid_sample`` (``mode``: nearest, bilinear or bicubic).
        ignore_index: label value carrying no mass (``None``: every pixel must be a class).

    Returns float32 ``(N, C, h, w)`` on the grid's device, channel sums in ``[0, 1]`` (the valid
    mass). :func:`warp_image` with the same grid is the paired image warp.

    >>> labels = torch.tensor([[0, 1, 2]])
    >>> grid = torch.tensor([[[[-0.5, 0.0], [0.0, 0.0]]]])  # x = -0.5: between pixels 0 and 1
    >>> soft_grid_sample(labels, grid, 3, align_corners=True)[0, :, 0]
    tensor([[0.5000, 0.0000],
            [0.5000, 1.0000],
            [0.0000, 0.0000]])
    """
    _check_mode(mode)
    grid = _check_grid(grid)
    labels = _check_labels(labels, grid.shape[0]).to(grid.device)
    ignore_index = _ignore_in_use(labels, num_classes, ignore_index)
    has_ignore = ignore_index is not None
    n, h, w = grid.shape[:3]
    flat = labels.reshape(labels.shape[0], -1).expand(n, -1)
    # ignored taps go to a spare channel C, dropped at the end (cheaper than masking every tap)
    out = torch.zeros(n, (num_classes + int(has_ignore)) * h * w, device=grid.device)
    taps = {"nearest": 1, "bilinear": 4, "bicubic": 16}[mode]
    step = max(1, _CHUNK // taps)
    xy = grid.reshape(n, h * w, 2)
    for start in range(0, h * w, step):
        part = xy[:, start : start + step]
        codes, weight = _read_taps(flat, labels.shape[-2:], part, mode, align_corners)
        if has_ignore and ignore_index >= num_classes:  # validated: only ignore is >= C
            codes = codes.clamp_(max=num_classes)
        elif has_ignore:
            codes = torch.where(codes == ignore_index, num_classes, codes.long())
        pixel = torch.arange(start, start + part.shape[1], device=grid.device)
        # class-major (N, C, h*w) slot of each tap; taps go first: (T, N * pixels)
        target = codes.long().mul_(h * w).add_(pixel)
        target += (torch.arange(n, device=grid.device) * out.shape[1]).view(n, 1, 1)
        add_taps(out.view(-1), target.transpose(0, 1).reshape(taps, -1),
                 weight.transpose(0, 1).reshape(taps, -1))  # fmt: skip
    out = out.view(n, -1, h, w)[:, :num_classes]
    out = out.contiguous() if n > 1 else out
    return clamp_negative_lobes(out, inplace=True) if mode == "bicubic" else out


def warp_image(
    image: torch.Tensor, grid: torch.Tensor, *, mode: str = "bilinear",
    align_corners: bool = False, fill: float | Sequence[float] = 0.0,
) -> torch.Tensor:  # fmt: skip
    """Warp an image ``(C, H, W)`` or ``(N, C, H, W)`` to ``(N, C, h, w)`` through ``grid``: the
    pair of :func:`soft_grid_sample`.

    ``F.grid_sample`` on the image padded with ``fill`` (one value or one per channel): a sample
    partly outside blends its inside taps with ``fill``. Warping the one-hot of a label with
    ``fill=0`` gives exactly its soft label (for ``bicubic``: before the negative-lobe clamp). A
    ``(C, H, W)`` image is shared by every grid in the batch. Integer images come back as float32.

    >>> image = torch.arange(3.0).view(1, 1, 3)
    >>> grid = torch.tensor([[[[-0.5, 0.0], [2.0, 0.0]]]])
    >>> warp_image(image, grid, align_corners=True, fill=-1.0)
    tensor([[[[ 0.5000, -1.0000]]]])
    """
    _check_mode(mode)
    grid = _check_grid(grid)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() not in (3, 4):
        raise ValueError(f"image must be (C, H, W) or (N, C, H, W), got {tuple(image.shape)}")
    x = image if image.dtype.is_floating_point else image.float()
    x = x.unsqueeze(0) if x.dim() == 3 else x
    if x.shape[0] not in (1, grid.shape[0]):
        raise ValueError(f"image batch {x.shape[0]} does not match grid batch {grid.shape[0]}")
    x = x.expand(grid.shape[0], *x.shape[1:])
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    if fill_t.shape[0] not in (1, x.shape[1]):
        raise ValueError(f"fill must be one value or one per channel ({x.shape[1]}), got {fill!r}")
    # weights sum to 1 in every mode, so sampling (x - fill) and adding fill pads with fill
    shifted = x - fill_t if bool((fill_t != 0).any()) else x
    out = F.grid_sample(shifted, grid.to(x.dtype), mode, "zeros", align_corners)
    return out + fill_t if shifted is not x else out
