"""OpenCV's ``cv2.resize`` as banded axis weights; private to :mod:`softseg.ops.kernels`.

The rules OpenCV follows on float32 images (uint8 images take a fixed-point path instead):

- The scale is ``1 / (n_out / n_in)`` in double precision, computed exactly so.
- ``INTER_NEAREST`` reads input ``floor(i * scale)``: not centre based.
- ``INTER_LINEAR``, ``INTER_CUBIC`` (a = -0.75) and ``INTER_LANCZOS4`` (8 taps) interpolate at
  ``(i + 0.5) * scale - 0.5`` (OpenCV 4.14 and 5.0 alike round the fraction to float32 for
  linear and cubic, the position itself for lanczos), and replicate the border pixels for taps
  outside (``BORDER_REPLICATE``). None of them ever widens its filter: no antialiasing.
- ``INTER_AREA`` when no axis enlarges: each output averages the input interval it covers,
  ``[i * scale, (i + 1) * scale)``, by coverage; OpenCV drops slivers of at most 1e-3 pixel.
- ``INTER_AREA`` when an axis enlarges: on *both* axes two taps, ``floor(i * scale)`` and the next
  pixel, the second weighing ``(i + 1) - (floor(i * scale) + 1) / scale`` (at least 0).

A crop box ``[start, start + length)`` continues the grid of the whole resize (scale
``length / n_out``), so it is "resize the whole image, then crop"; the formulas are written so that
``start = 0`` gives OpenCV's floating-point operations bit for bit (elsewhere the rules that pick a
pixel by an edge snap edges within rounding of a whole pixel onto it). Indices come back unclipped:
the caller clamps them to the (padded) image, which is OpenCV's border replication.
"""

from __future__ import annotations

import numpy as np

_F32 = np.float32


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    # OpenCV's interpolateCubic, in float32; the last weight closes the sum to 1
    a = _F32(-0.75)
    one = _F32(1.0)
    w0 = ((a * (t + one) - 5 * a) * (t + one) + 8 * a) * (t + one) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + one
    w2 = ((a + 2) * (one - t) - (a + 3)) * (one - t) * (one - t) + one
    return [w0, w1, w2, one - w0 - w1 - w2]


def _lanczos4_weights(t: np.ndarray) -> list[np.ndarray]:
    # sinc(d) * sinc(d / 4) at the 8 distances d = t + 3 - k, normalised to sum to 1
    d = t.astype(np.float64)[:, None] + 3.0 - np.arange(8)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.sinc(d) * np.sinc(d / 4.0)
    raw = raw.astype(_F32)
    weight = raw / raw.sum(axis=1, keepdims=True)
    # OpenCV snaps positions within float32 epsilon of a pixel to that pixel
    exact = t < np.finfo(_F32).eps
    weight[exact] = np.eye(8, dtype=_F32)[3]
    return list(weight.T)


def _interpolated(kernel: str, n_out: int, start: float, scale: float):
    i = np.arange(n_out, dtype=np.float64)
    src = ((i + 0.5) * scale - 0.5) + start
    if kernel == "lanczos":  # OpenCV's generic path: the position itself in float32
        src = src.astype(_F32)
    x0 = np.floor(src)
    t = (src - x0).astype(_F32)  # linear and cubic: the fraction in double, then float32
    if kernel == "bilinear":
        first, weights = 0, [_F32(1.0) - t, t]
    elif kernel == "bicubic":
        first, weights = -1, _cubic_weights(t)
    else:
        first, weights = -3, _lanczos4_weights(t)
    index = x0.astype(np.int64)[:, None] + first + np.arange(len(weights))[None, :]
    return index, np.stack(weights, axis=1).astype(np.float64)


def _left_edges(n_out: int, start: float, scale: float) -> np.ndarray:
    """``floor`` of each output's left edge, ``start + i * scale``.

    At ``start = 0`` exactly OpenCV's double product (which can land just below a whole pixel);
    a box elsewhere snaps edges within rounding of a whole pixel onto it, as the exact grid has it.
    """
    left = start + np.arange(n_out, dtype=np.float64) * scale
    if start != 0.0:
        near = np.round(left)
        left = np.where(np.abs(left - near) <= 1e-9 * np.maximum(1.0, np.abs(left)), near, left)
    return np.floor(left)


def _area_interpolated(n_out: int, start: float, scale: float, inv: float):
    # INTER_AREA's enlarging rule: the weight of the second tap is how far the output's right edge
    # passes the first tap's pixel, in output pixels
    i = np.arange(n_out, dtype=np.float64)
    x0 = _left_edges(n_out, start, scale)
    t = ((i + 1.0) - (x0 + 1.0 - start) * inv).astype(_F32)
    t = np.where(t <= 0, _F32(0.0), t - np.floor(t))
    index = x0.astype(np.int64)[:, None] + np.arange(2)[None, :]
    return index, np.stack([_F32(1.0) - t, t], axis=1).astype(np.float64)


def _coverage(n_out: int, start: float, scale: float, hi: int):
    # OpenCV's area table: full pixels at 1 / cell, partial ones at their covered fraction
    i = np.arange(n_out, dtype=np.float64)
    left = i * scale + start
    right = left + scale
    cell = np.minimum(scale, hi - left)
    last = np.minimum(np.floor(right), hi - 1).astype(np.int64)
    first = np.minimum(np.ceil(left).astype(np.int64), last)
    taps = int((last - first).max()) + 2
    index = (first - 1)[:, None] + np.arange(taps)[None, :]
    weight = np.where(index < last[:, None], 1.0 / cell[:, None], 0.0)
    head = first - left
    weight[:, 0] = np.where(head > 1e-3, head / cell, 0.0)
    tail = right - last
    tail_w = np.where(tail > 1e-3, np.minimum(np.minimum(tail, 1.0), cell) / cell, 0.0)
    np.put_along_axis(weight, (last - first + 1)[:, None], tail_w[:, None], axis=1)
    return index, weight.astype(_F32).astype(np.float64)


def cv2_bands(kernel: str, coverage: bool, n_out: int, start: float, length: float, hi: int):
    """``(index, weight)`` of shape ``(n_out, taps)`` for OpenCV's ``kernel`` on the box.

    ``coverage``: for ``"box"`` (``INTER_AREA``), average by coverage when this axis shrinks; False
    gives INTER_AREA's enlarging rule whatever the scale (OpenCV's choice for both axes when either
    enlarges). ``hi``: the end of the (padded) image, where OpenCV's area cells are cut.
    """
    inv = n_out / length
    scale = 1.0 / inv
    if kernel == "nearest":
        return _left_edges(n_out, start, scale).astype(np.int64)[:, None], np.ones((n_out, 1))
    if kernel == "box":
        if coverage and scale >= 1.0:
            return _coverage(n_out, start, scale, hi)
        return _area_interpolated(n_out, start, scale, inv)
    return _interpolated(kernel, n_out, start, scale)
