"""Sampling grids for :func:`softseg.ops.warp.soft_grid_sample` and ``F.grid_sample``.

Every grid is ``(N, h, w, 2)`` with ``(x, y)`` normalised to ``[-1, 1]`` across the input and maps
each *output* pixel to the *input* position it reads: :func:`affine_grid` (with
:func:`rotation_affine`), :func:`homography_grid`, :func:`displacement_grid` (elastic
deformation), and :func:`resized_warp_grid`, which folds a warp and a resized crop into one grid so
that the label is sampled once.

>>> theta = rotation_affine(90.0)
>>> affine_grid(theta, (2, 2)).shape
torch.Size([1, 2, 2, 2])
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_FAR = 8.0  # |normalised coordinate| beyond which even bicubic taps all fall outside the image


# --------------------------------------------------------------------------- grids
def _size_hw(size, what: str) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)[-2:]
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in hw):
        raise ValueError(f"{what} must be a positive int or (height, width), got {size!r}")
    return int(hw[0]), int(hw[1])


def _as_batch(m: torch.Tensor, rows: int, what: str) -> torch.Tensor:
    m = torch.as_tensor(m)
    m = m.unsqueeze(0) if m.dim() == 2 else m
    if m.dim() != 3 or m.shape[1:] != (rows, 3):
        raise ValueError(f"{what} must be ({rows}, 3) or (N, {rows}, 3), got {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise ValueError(f"{what} holds non-finite values")
    return m if m.dtype == torch.float64 else m.float()


def affine_grid(theta: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """Grid ``(N, h, w, 2)`` of the affine ``theta`` ``(N, 2, 3)`` or ``(2, 3)`` at output ``size``.

    ``F.affine_grid`` conventions: ``theta`` maps normalised *output* coordinates ``(x, y, 1)`` to
    normalised *input* coordinates; ``size`` is ``(h, w)`` (or an ``(N, C, h, w)`` size).
    """
    theta = _as_batch(theta, 2, "theta")
    h, w = _size_hw(size, "size")
    return F.affine_grid(theta, [theta.shape[0], 1, h, w], align_corners=align_corners)


def rotation_affine(
    angle_deg: float, scale: float = 1.0, shear: tuple[float, float] = (0.0, 0.0),
    translate: tuple[float, float] = (0.0, 0.0), *, size=None,
) -> torch.Tensor:  # fmt: skip
    """``theta`` ``(1, 2, 3)`` for :func:`affine_grid` that moves the image *content* forward by
    ``translate . rotate(angle_deg) . shear . scale`` about the image centre.

    ``angle_deg`` turns counter-clockwise as displayed (y down); ``scale > 1`` enlarges; ``shear``
    ``(sx, sy)`` in degrees is ``[[1, tan sx], [tan sy, 1]]``; ``translate`` is in normalised units
    (1.0 = half the width / height). Normalised coordinates stretch a non-square image, so pass its
    ``size`` ``(H, W)`` to make rotation and shear rigid in pixels. theta is the inverse map.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    a, sx, sy = (math.radians(v) for v in (angle_deg, *shear))
    c, s, tx, ty = math.cos(a), math.sin(a), math.tan(sx), math.tan(sy)
    forward = torch.tensor([[c, s], [-s, c]], dtype=torch.float64) @ torch.tensor(
        [[1.0, tx], [ty, 1.0]], dtype=torch.float64
    )
    h, w = _size_hw(size, "size") if size is not None else (1, 1)
    aspect = torch.diag(torch.tensor([w / 2, h / 2], dtype=torch.float64))  # normalised -> pixels
    forward = torch.linalg.inv(aspect) @ (scale * forward) @ aspect
    if abs(float(torch.linalg.det(forward))) < 1e-12:
        raise ValueError(f"shear {shear} makes the transform singular")
    inverse = torch.linalg.inv(forward)
    shift = -inverse @ torch.tensor(translate, dtype=torch.float64).view(2, 1)
    return torch.cat((inverse, shift), dim=1).float().unsqueeze(0)


def _normalise(xy: torch.Tensor, in_size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Input pixel coordinates (pixel ``(i, j)`` centred at ``(j, i)``) -> grid coordinates."""
    H, W = in_size
    dims = torch.tensor([W, H], dtype=xy.dtype, device=xy.device)
    out = xy * 2 / (dims - 1).clamp(min=1) - 1 if align_corners else (xy * 2 + 1) / dims - 1
    return out.clamp_(-_FAR, _FAR).float()  # huge or sentinel positions stay wholly outside


def _pixel_centres(h: int, w: int, dtype, device) -> torch.Tensor:
    """``(h, w, 2)``: the ``(x, y)`` of every pixel centre."""
    ys, xs = (torch.arange(n, dtype=dtype, device=device) for n in (h, w))
    return torch.stack((xs.expand(h, w), ys.view(h, 1).expand(h, w)), dim=-1)


def homography_grid(
    H: torch.Tensor, in_size, out_size, align_corners: bool = False
) -> torch.Tensor:
    """Grid ``(N, h, w, 2)`` of a homography ``H`` ``(3, 3)`` or ``(N, 3, 3)`` in pixel coordinates.

    ``H`` maps *output* pixel ``(x, y, 1)`` (column, row; pixel centres at integers) to the *input*
    pixel it reads, homogeneously. Pass ``torch.linalg.inv`` of a forward (input -> output)
    homography. Points mapped to infinity or behind the camera (``w <= 0``) read nothing.

    >>> from softseg.ops.warp import soft_grid_sample, warp_image
    >>> shift = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]])  # output x reads input x + 1
    >>> grid = homography_grid(shift, (1, 3), (1, 3))
    >>> soft_grid_sample(torch.tensor([[0, 1, 2]]), grid, 3).argmax(1), grid[0, 0, 2]
    (tensor([[[1, 2, 0]]]), tensor([1.3333, 0.0000]))
    """
    m = torch.as_tensor(H, dtype=torch.float64)
    m = m.unsqueeze(0) if m.dim() == 2 else m
    if m.dim() != 3 or m.shape[1:] != (3, 3) or not bool(torch.isfinite(m).all()):
        raise ValueError(f"H must be a finite (3, 3) or (N, 3, 3) matrix, got {tuple(m.shape)}")
    in_hw, (h, w) = _size_hw(in_size, "in_size"), _size_hw(out_size, "out_size")
    xy1 = F.pad(_pixel_centres(h, w, m.dtype, m.device), (0, 1), value=1.0)
    mapped = torch.einsum("nij,hwj->nhwi", m, xy1)
    den = mapped[..., 2:]
    ahead = den > 1e-12 * mapped[..., :2].abs().amax(-1, keepdim=True).clamp(min=1.0)
    xy = torch.where(ahead, mapped[..., :2] / torch.where(ahead, den, 1.0), -1e9)
    return _normalise(xy, in_hw, align_corners)


def displacement_grid(
    flow: torch.Tensor, align_corners: bool = False, *, channels_last: bool | None = None
) -> torch.Tensor:
    """Grid ``(N, h, w, 2)`` from a displacement field in pixels (elastic deformation).

    Output pixel ``(i, j)`` reads input position ``(x, y) = (j + dx, i + dy)``, in an input of the
    same ``(h, w)``. ``flow`` is ``(N, h, w, 2)`` or ``(N, 2, h, w)`` (or without ``N``) holding
    ``(dx, dy)``; ``channels_last`` settles the layout when both readings fit.

    >>> from softseg.ops.warp import soft_grid_sample, warp_image
    >>> flow = torch.zeros(1, 1, 3, 2)
    >>> flow[..., 0] = 1.0  # everything reads one pixel to the right
    >>> soft_grid_sample(torch.tensor([[0, 1, 2]]), displacement_grid(flow), 3).argmax(1)
    tensor([[[1, 2, 0]]])
    """
    f = torch.as_tensor(flow)
    f = f.unsqueeze(0) if f.dim() == 3 else f
    last, first = f.dim() == 4 and f.shape[-1] == 2, f.dim() == 4 and f.shape[1] == 2
    if channels_last is None:
        if last and first:
            raise ValueError(f"flow shape {tuple(f.shape)} is ambiguous; pass channels_last")
        channels_last = last
    if not (last if channels_last else first) or not f.dtype.is_floating_point:
        raise ValueError(f"flow must be float (N, h, w, 2) or (N, 2, h, w), got {tuple(f.shape)}")
    f = f if channels_last else f.permute(0, 2, 3, 1)
    if not bool(torch.isfinite(f).all()):
        raise ValueError("flow holds non-finite values")
    h, w = f.shape[1:3]
    xy = _pixel_centres(h, w, torch.float64, f.device) + f.double()
    return _normalise(xy, (h, w), align_corners)


# --------------------------------------------------------------------------- warp + resized crop
def crop_affine(in_size, box, align_corners: bool = False) -> torch.Tensor:
    """``theta`` ``(1, 2, 3)`` of the resized crop of ``box = (top, left, height, width)``.

    The box is in input pixels, as in :func:`softseg.soft_resized_crop`: with ``align_corners``
    False output pixel ``j`` of ``w`` is centred at ``left + (j + 0.5) * width / w``; with True the
    first and last output pixels sit on the pixel centres ``left`` and ``left + width - 1``.
    """
    H, W = _size_hw(in_size, "in_size")
    top, left, height, width = (float(v) for v in box)
    if not (height > 0 and width > 0):
        raise ValueError(f"box must have positive height and width, got {box!r}")
    # normalised = 2 * x / n - 1 on pixel edges, or 2 * x / (n - 1) - 1 on pixel centres
    k = 1 if align_corners else 0
    (ax, bx), (ay, by) = (
        ((length - k) / max(n - k, 1), (2 * start + length - k) / max(n - k, 1) - 1)
        for start, length, n in ((left, width, W), (top, height, H))
    )
    return torch.tensor([[[ax, 0.0, bx], [0.0, ay, by]]])


def resized_warp_grid(in_size, size, *, theta=None, box=None, align_corners=False) -> torch.Tensor:
    """One grid ``(N, h, w, 2)`` for "warp by ``theta``, then resized crop of ``box`` to ``size``".

    Order: first the affine ``theta`` (as ``F.affine_grid(theta, (N, C, H, W))``, the warped image
    keeping the input size ``in_size``), then the crop ``box = (top, left, height, width)`` in the
    *warped* image's pixels (default: all of it), resampled to ``size``. Composing both into a grid
    at the output resolution samples the input once instead of twice. ``grid_sample`` does not
    antialias: a shrinking grid reads 4 (16) taps per output pixel whatever the scale, unlike
    ``F.interpolate(antialias=True)``, so for large factors down-scale first with
    :func:`softseg.soft_downsample`; either way image and label alias alike and stay paired.

    >>> from softseg.ops.warp import soft_grid_sample, warp_image
    >>> labels = torch.randint(0, 5, (64, 64))
    >>> theta, box = rotation_affine(30.0), (8, 8, 48, 48)
    >>> grid = resized_warp_grid((64, 64), (16, 16), theta=theta, box=box)
    >>> soft = soft_grid_sample(labels, grid, 5)           # the label, sampled once
    >>> image = F.one_hot(labels, 5).permute(2, 0, 1).float()
    >>> torch.allclose(warp_image(image, grid), soft, atol=1e-5)  # the image, by the same grid
    True
    """
    box = box if box is not None else (0, 0, *_size_hw(in_size, "in_size"))
    composed = crop = crop_affine(in_size, box, align_corners)
    if theta is not None:
        theta = _as_batch(theta, 2, "theta")
        crop = torch.cat((crop, torch.tensor([[[0.0, 0.0, 1.0]]])), dim=1).to(theta)
        composed = theta @ crop.expand(theta.shape[0], 3, 3)
    return affine_grid(composed, size, align_corners=align_corners)
