"""Geometric warps for :class:`softseg.integrations.albumentations.SoftCompose` (private).

``A.Affine``, ``A.Rotate`` and ``A.SafeRotate`` warp with ``cv2.warpAffine``, ``A.Perspective`` with
``cv2.warpPerspective`` and ``A.ElasticTransform`` with ``cv2.remap``; all three read each output
pixel at a source position (pixel centres at integers) and interpolate there. A hard label is
sampled at those very positions by :func:`softseg.soft_grid_sample`, which is the same operator on
the one-hot: ``INTER_NEAREST`` (ties to even, as OpenCV), ``INTER_LINEAR`` (and ``INTER_AREA``,
which OpenCV's warps run as linear) and ``INTER_CUBIC`` (a = -0.75, as OpenCV; negative lobes
clamped afterwards). A soft label (after a resize) is warped by Albumentations' own functions.

Exactness (all measured with OpenCV 5.0 against the one-hot through the same ``A`` pipeline).
OpenCV 5 warps 1, 3 and 4 channel float32 images with float weights at float32 positions (no 1/32
``INTER_TAB_SIZE`` table): ``warpAffine`` computes a row's ``y * m1 + m2`` in float32 and adds
``x * m0`` with one rounding (a fused multiply-add), reproduced here, so nearest picks the same
pixels even at ties; ``warpPerspective`` divides such rows; ``remap`` reads the given float32
maps. Its last partial SIMD block of a row rounds positions differently by up to one float32 ulp
(``|x| * 6e-8`` px), moving a weight by as much: measured differences reach 2.5e-5 per class on
inputs up to 90 px (outputs up to about 200 px), the tests allow 5e-5, and the term grows with
``|x|``. A 2-class one-hot is a 2-channel image, which OpenCV 5 still warps (nearest and linear)
by its older path: positions in fixed point, rounded to 1/32 px; that path is reproduced too (exact
to float rounding). Cubic warps clamp source positions to ``[-b, 2b]``, ``b = max(n, 16)`` on an
axis of ``n`` pixels, before the border mode applies; reproduced as well.

Border modes: ``BORDER_CONSTANT`` is no mass outside the image (whatever ``fill``/``fill_mask``,
as for padding); ``REPLICATE``, ``REFLECT``, ``REFLECT_101`` and ``WRAP`` copy label content, so
positions are folded by the mode's period and the integer label padded by that mode (``np.pad``),
which copies the one-hot's pixels exactly.
"""

from __future__ import annotations

from typing import Any, Protocol

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.core.transforms_interface import BasicTransform

from ..ops.labels import clamp_negative_lobes
from ..ops.warp import soft_grid_sample

__all__ = ["WARPS", "check_warp"]

NO_MASS = -1  # the hard label's value for ignored pixels (as in albumentations.py)
#: OpenCV flags a warp can follow, and the grid_sample mode of each (AREA warps as LINEAR)
_MODE_OF_FLAG = {
    cv2.INTER_NEAREST: "nearest",
    cv2.INTER_LINEAR: "bilinear",
    cv2.INTER_AREA: "bilinear",
    cv2.INTER_CUBIC: "bicubic",
}
#: numpy's name for each border mode that copies content (np.pad pads integer labels exactly)
_NP_PAD = {
    cv2.BORDER_REPLICATE: "edge",
    cv2.BORDER_REFLECT: "symmetric",
    cv2.BORDER_REFLECT_101: "reflect",
    cv2.BORDER_WRAP: "wrap",
}
_MARGIN = 5  # pixels of padding around a folded position: covers bicubic's 4 taps with room


class _Label(Protocol):
    data: np.ndarray
    num_classes: int

    @property
    def is_soft(self) -> bool: ...


def check_warp(t: BasicTransform) -> None:
    """Refuse a warp whose interpolation or border mode the label cannot follow."""
    name = type(t).__name__
    if t.interpolation not in _MODE_OF_FLAG:
        raise ValueError(
            f"{name} has interpolation={t.interpolation!r}; soft labels follow warps with "
            "INTER_NEAREST, INTER_LINEAR, INTER_AREA (OpenCV warps it as linear) or INTER_CUBIC"
        )
    if t.border_mode != cv2.BORDER_CONSTANT and t.border_mode not in _NP_PAD:
        raise ValueError(
            f"{name} has border_mode={t.border_mode!r}; soft labels follow BORDER_CONSTANT, "
            "BORDER_REPLICATE, BORDER_REFLECT, BORDER_REFLECT_101 or BORDER_WRAP"
        )


# --------------------------------------------------------------------------- OpenCV's positions
# OpenCV 5 warps 1, 3 and 4 channel float32 images at float32 positions with float weights; with 2
# channels (Albumentations hands OpenCV 2 only for a 2-channel image: a 2-class one-hot) nearest
# and linear take OpenCV's older path, which rounds positions to 1/32 px (INTER_TAB_SIZE) first.
_TAB = 32  # INTER_TAB_SIZE
_AB = 1024  # warpAffine's fixed-point scale (AB_BITS = 10)


def _rows(inverse: np.ndarray, hw: tuple[int, int]) -> list[np.ndarray]:
    """``x * m0 + y * m1 + m2`` for each row of ``inverse`` at every output pixel, float32, with
    OpenCV 5's rounding: ``y * m1 + m2`` in float32 per row, then one fused multiply-add."""
    m = inverse.astype(np.float32)
    x = np.arange(hw[1], dtype=np.float32)[None, :].astype(np.float64)
    y = np.arange(hw[0], dtype=np.float32)[:, None]
    # float32 products are exact in float64, so one float32 rounding of the sum is the fma's
    return [(x * np.float64(r[0]) + (y * r[1] + r[2]).astype(np.float64)).astype(np.float32)
            for r in m]  # fmt: skip


def _fixed_rows(inverse: np.ndarray, hw: tuple[int, int], nearest: bool) -> list[np.ndarray]:
    """OpenCV's older warpAffine: per-row and per-column terms rounded to 1/1024 px, summed in
    integers, then floored to whole pixels (nearest, after adding one half) or to 1/32 px."""
    x, y = np.arange(hw[1], dtype=np.float64)[None, :], np.arange(hw[0], dtype=np.float64)[:, None]
    half = _AB // 2 if nearest else _AB // _TAB // 2
    out = []
    for r in inverse:
        fixed = np.rint((r[1] * y + r[2]) * _AB) + half + np.rint(r[0] * x * _AB)
        out.append(np.floor(fixed / _AB) if nearest else np.floor(fixed / (_AB // _TAB)) / _TAB)
    return out


def _tabulated(pos: np.ndarray, nearest: bool) -> np.ndarray:
    """OpenCV's older remap / warpPerspective: positions rounded (to even) to 1/32 px."""
    pos = np.asarray(pos, np.float64)
    return np.rint(pos) if nearest else np.rint(pos * _TAB) / _TAB


def _old_path(label: _Label, flag: int) -> bool:
    """Whether OpenCV warps this label's one-hot by its older, 1/32 px path (measured, OpenCV 5)."""
    return label.num_classes == 2 and flag != cv2.INTER_CUBIC


def _affine_positions(matrix: np.ndarray, hw: tuple[int, int], flag: int, old: bool):
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64)[:2])
    if old:
        return _fixed_rows(inverse, hw, flag == cv2.INTER_NEAREST)
    return _rows(inverse, hw)


def _perspective_positions(matrix: np.ndarray, hw: tuple[int, int], flag: int, old: bool):
    ok, inverse = cv2.invert(np.asarray(matrix, np.float64))  # warpPerspective's DECOMP_LU
    if not ok:
        raise ValueError(f"perspective matrix is singular: {matrix.tolist()}")
    if old:  # in float64, the row term first as OpenCV sums it
        cols, rows = np.arange(hw[1], dtype=np.float64), np.arange(hw[0], dtype=np.float64)[:, None]
        x, y, w = (r[0] * cols + (r[1] * rows + r[2]) for r in inverse)
    else:
        x, y, w = _rows(inverse, hw)
    with np.errstate(divide="ignore", invalid="ignore"):
        sx, sy = x / w, y / w  # a point at infinity is sent far outside by _fold
    if old:
        return _tabulated(sx, flag == cv2.INTER_NEAREST), _tabulated(sy, flag == cv2.INTER_NEAREST)
    return sx, sy


# --------------------------------------------------------------------------- the hard label
def _fold(pos: np.ndarray, n: int, border: int, cubic: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """Positions on an axis of ``n`` pixels moved to where the mode's periodic extension repeats
    them, and the padding ``(before, after)`` the label then needs so every tap reads content."""
    pos = np.nan_to_num(pos, nan=-1e6, posinf=1e6, neginf=-1e6)
    if cubic:  # OpenCV 5's cubic warps clamp positions to [-b, 2b], b = max(n, 16) (measured)
        b = max(n, 16)
        pos = np.clip(pos, -b, 2 * b)
    if border == cv2.BORDER_CONSTANT:  # no padding: taps outside carry no mass
        return np.clip(pos, -_MARGIN, n + _MARGIN), (0, 0)
    period = {cv2.BORDER_WRAP: n, cv2.BORDER_REFLECT: 2 * n, cv2.BORDER_REFLECT_101: 2 * n - 2}
    p = period.get(border, 0)
    if p <= 0:  # REPLICATE (or REFLECT_101 of one pixel): beyond 3 px every tap reads the edge
        return np.clip(pos, -3.0, n + 2.0), (_MARGIN, _MARGIN)
    # exact: positions are float32 values, the period an integer, so the taps' fractions stay
    return pos - np.floor(pos / p) * p, (_MARGIN, max(p - n, 0) + _MARGIN)


def _sample_hard(label: _Label, sx: np.ndarray, sy: np.ndarray, flag: int, border: int) -> None:
    """The hard label sampled at OpenCV's positions: soft ``(h, w, C)`` float32 from here on."""
    mode = _MODE_OF_FLAG[flag]
    sx, sy = sx.astype(np.float64), sy.astype(np.float64)
    if mode == "nearest":  # rounded here (ties to even, as OpenCV): the grid can't flip a tie
        sx, sy = np.rint(sx), np.rint(sy)
    hard = label.data
    (n_y, n_x) = hard.shape
    sx, pad_x = _fold(sx, n_x, border, mode == "bicubic")
    sy, pad_y = _fold(sy, n_y, border, mode == "bicubic")
    if border != cv2.BORDER_CONSTANT:
        hard = np.pad(hard, (pad_y, pad_x), mode=_NP_PAD[border])
        sx, sy = sx + pad_x[0], sy + pad_y[0]
    n_y, n_x = hard.shape
    # float64 grid (align_corners=False): pixel centre k is at (2k + 1) / n - 1
    grid = np.stack(((2 * sx + 1) / n_x - 1, (2 * sy + 1) / n_y - 1), axis=-1)
    soft = soft_grid_sample(
        torch.from_numpy(np.ascontiguousarray(hard)), torch.from_numpy(grid)[None],
        label.num_classes, mode=mode, ignore_index=NO_MASS,
    )[0]  # fmt: skip
    label.data = np.ascontiguousarray(soft.permute(1, 2, 0).numpy(), dtype=np.float32)


def _finish_soft(label: _Label, out: np.ndarray, flag: int) -> None:
    """Store a soft label warped by OpenCV (a single class comes back without its channel axis)."""
    out = out if out.ndim == 3 else out[..., None]
    if flag == cv2.INTER_CUBIC:  # as after a cubic resize: the label stays a distribution
        soft = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).contiguous()
        out = clamp_negative_lobes(soft).permute(1, 2, 0).numpy()
    label.data = np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------- replays
def _affine(t: BasicTransform, label: _Label, params: dict, out: tuple[int, int]) -> None:
    matrix = params["matrix"]
    if fgeometric.is_identity_matrix(matrix):  # Albumentations returns the input untouched
        return
    hw = tuple(int(np.round(v)) for v in params.get("output_shape", params["shape"][:2]))
    if label.is_soft:
        warped = fgeometric.warp_affine(label.data, matrix, t.interpolation, 0, t.border_mode, hw)
        _finish_soft(label, warped, t.interpolation)
    else:
        xy = _affine_positions(matrix, hw, t.interpolation, _old_path(label, t.interpolation))
        _sample_hard(label, *xy, t.interpolation, t.border_mode)
    if getattr(t, "crop_border", False):  # Rotate: the largest upright box inside the rotation
        rows = slice(params["y_min"], params["y_max"])
        label.data = np.ascontiguousarray(label.data[rows, params["x_min"] : params["x_max"]])


def _perspective(t: BasicTransform, label: _Label, params: dict, out: tuple[int, int]) -> None:
    matrix, max_w, max_h = params["matrix"], params["max_width"], params["max_height"]
    if label.is_soft:
        warped = fgeometric.perspective(
            label.data, matrix, max_w, max_h, 0, t.border_mode, t.keep_size, t.interpolation
        )
        _finish_soft(label, warped, t.interpolation)
        return
    hw = (max_h, max_w)
    if t.keep_size:  # as fgeometric.perspective: scale the output back to the input's size
        height, width = label.data.shape[:2]
        scale = np.array([[width / max_w, 0, 0], [0, height / max_h, 0], [0, 0, 1]])
        matrix, hw = np.dot(scale, matrix), (height, width)
    xy = _perspective_positions(matrix, hw, t.interpolation, _old_path(label, t.interpolation))
    _sample_hard(label, *xy, t.interpolation, t.border_mode)


def _remap(t: BasicTransform, label: _Label, params: dict, out: tuple[int, int]) -> None:
    map_x, map_y = (np.asarray(params[k], np.float32) for k in ("map_x", "map_y"))
    if label.is_soft:
        warped = fgeometric.remap(label.data, map_x, map_y, t.interpolation, t.border_mode, 0)
        _finish_soft(label, warped, t.interpolation)
    elif _old_path(label, t.interpolation):
        nearest = t.interpolation == cv2.INTER_NEAREST
        xy = _tabulated(map_x, nearest), _tabulated(map_y, nearest)
        _sample_hard(label, *xy, t.interpolation, t.border_mode)
    else:
        _sample_hard(label, map_x, map_y, t.interpolation, t.border_mode)


#: warps :class:`SoftCompose` follows (exact classes), and the replay of each
WARPS: dict[type, Any] = {
    A.Affine: _affine,
    A.Rotate: _affine,
    A.SafeRotate: _affine,
    A.ShiftScaleRotate: _affine,  # an Affine subclass that only converts its arguments
    A.Perspective: _perspective,
    A.ElasticTransform: _remap,
}
