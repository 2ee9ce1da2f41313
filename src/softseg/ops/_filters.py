"""The continuous 1-D filters of PIL (and of torch's antialiased path); private to :mod:`.kernels`.

Each filter is a function of the distance in input pixels (at scale 1), with its support.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(x), 0.0, None)


def _box(x: np.ndarray) -> np.ndarray:
    # PIL's box is half-open on the left: a pixel centre exactly on the edge belongs to the right.
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _cubic(a: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
        return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))

    return f


def _hamming(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    px = np.pi * x
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.sin(px) / px * (0.54 + 0.46 * np.cos(px))
    return np.where(x == 0.0, 1.0, np.where(x >= 1.0, 0.0, w))


def _sinc(x: np.ndarray) -> np.ndarray:
    px = np.pi * x
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x == 0.0, 1.0, np.sin(px) / px)


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where((x >= -3.0) & (x < 3.0), _sinc(x) * _sinc(x / 3.0), 0.0)


#: name -> (filter, support in input pixels at scale 1)
FILTERS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "box": (_box, 0.5),
    "bilinear": (_triangle, 1.0),
    "hamming": (_hamming, 1.0),
    "bicubic": (_cubic(-0.5), 2.0),
    "lanczos": (_lanczos, 3.0),
}
