"""One-dimensional resampling kernels, exactly as torch and PIL define them.

Every resampler softseg supports is separable: resizing an axis of length ``n_in`` to ``n_out`` is a
linear map ``y[i] = sum_k weight[i, k] * x[index[i, k]]``. :func:`axis_weights` builds that map in banded
form (a few taps per output pixel), for a whole axis or for a crop box along it. The same band is then
applied to images (:func:`softseg.resize_image`) and to integer label maps
(:func:`softseg.soft_downsample`), which is what makes the pair coherent. :class:`Resampler` names
one such operator: kernel, antialiasing, corner alignment and convention.

Conventions
-----------
``"torch"`` reproduces :func:`torch.nn.functional.interpolate`: ``nearest`` (``floor(i * scale)``),
``area`` (adaptive average pooling), ``bilinear`` and ``bicubic`` (a = -0.75) with ``align_corners``,
and with ``antialias=True`` the widened filters torch borrowed from PIL (bicubic then uses a = -0.5).

``"pil"`` reproduces ``PIL.Image.resize`` on mode ``F`` images: ``nearest`` (``floor((i + 0.5) * scale)``),
``box``, ``bilinear``, ``hamming``, ``bicubic`` (a = -0.5) and ``lanczos`` (a = 3), always antialiased.

``"cv2"`` reproduces ``cv2.resize`` on float32 images: ``nearest`` (``INTER_NEAREST``,
``floor(i * scale)``), ``area`` (``INTER_AREA``: coverage averages when no axis enlarges, OpenCV's
two-tap rule on both axes otherwise), ``bilinear``, ``bicubic`` (a = -0.75) and ``lanczos``
(``INTER_LANCZOS4``, a = 4), which never antialias and replicate the border (the rules are listed in
the private ``_opencv`` module).

Crop boxes and padding
----------------------
A box ``[start, start + length)`` (fractional allowed) sets the sampling grid: output pixel ``i`` is
centred at ``start + (i + 0.5) * length / n_out``. The filter reads the whole image, so a box is
exactly "resize the full image, then crop", and for ``convention="pil"`` exactly
``PIL.Image.resize(size, box=...)``. Where the box leaves the image, the image is taken as padded up to
the box; taps on padding are reported in ``outside`` so that labels can treat them as ignored and
images as a fill value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from ._filters import FILTERS
from ._opencv import cv2_bands

__all__ = [
    "KERNELS",
    "NEGATIVE_LOBE_KERNELS",
    "AxisWeights",
    "Convention",
    "Resampler",
    "axis_weights",
]

Convention = Literal["torch", "pil", "cv2"]
KERNELS: dict[Convention, tuple[str, ...]] = {
    "torch": ("nearest", "area", "box", "bilinear", "bicubic"),
    "pil": ("nearest", "area", "box", "bilinear", "hamming", "bicubic", "lanczos"),
    "cv2": ("nearest", "area", "box", "bilinear", "bicubic", "lanczos"),
}
#: Kernels whose negative lobes can push a resampled one-hot outside [0, 1].
NEGATIVE_LOBE_KERNELS = frozenset({"bicubic", "lanczos"})
#: Two names for one averaging filter (torch's ``mode="area"``, PIL's ``BOX``): stored as the second.
_ALIASES = {"area": "box"}


@dataclass(frozen=True)
class Resampler:
    """Which separable resampler: the operator applied to images and, through soft labels, to labels.

    Args:
        kernel: one of ``KERNELS[convention]``. ``"area"`` and ``"box"`` are one filter (torch's
            adaptive average pooling, PIL's box); it is stored as ``"box"``.
        antialias: widen ``bilinear``/``bicubic`` when down-sampling (``convention="torch"``; PIL
            always antialiases and ignores this, as ``nearest`` and ``box`` do). OpenCV never
            antialiases its interpolating kernels, so with ``convention="cv2"`` only ``area`` admits
            ``True``: ``INTER_AREA`` itself; ``False`` there is INTER_AREA's enlarging rule on
            every axis. ``None``: the convention's default (``True``; for ``"cv2"``, ``True`` for
            ``area`` only).
        align_corners: torch's ``align_corners`` for ``bilinear``/``bicubic`` without antialias
            (``convention="cv2"`` has none: it must stay ``False``).
        convention: ``"torch"`` (``F.interpolate``), ``"pil"`` (``PIL.Image.resize``) or ``"cv2"``
            (``cv2.resize`` on float32 images).

    >>> Resampler("area")
    Resampler(kernel='box', antialias=True, align_corners=False, convention='torch')
    >>> Resampler("lanczos", convention="pil").negative_lobes
    True
    >>> Resampler("bicubic", convention="cv2").antialias
    False
    >>> Resampler("lanczos")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: kernel 'lanczos' is not available with convention='torch'; expected one of (...)
    """

    kernel: str = "bilinear"
    antialias: bool | None = None
    align_corners: bool = False
    convention: Convention = "torch"

    def __post_init__(self) -> None:
        if not isinstance(self.convention, str) or self.convention not in KERNELS:
            raise ValueError(
                f"convention must be one of {sorted(KERNELS)}, got {self.convention!r}"
            )
        if not isinstance(self.kernel, str) or self.kernel not in KERNELS[self.convention]:
            raise ValueError(
                f"kernel {self.kernel!r} is not available with convention={self.convention!r}; "
                f"expected one of {KERNELS[self.convention]}"
            )
        kernel = _ALIASES.get(self.kernel, self.kernel)
        if self.antialias is None:
            object.__setattr__(self, "antialias", self.convention != "cv2" or kernel == "box")
        for name in ("antialias", "align_corners"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise TypeError(f"{name} must be a bool, got {value!r}")
            object.__setattr__(self, name, bool(value))
        object.__setattr__(self, "kernel", kernel)
        if self.convention == "cv2":
            self._check_cv2()

    def _check_cv2(self) -> None:
        if self.align_corners:
            raise ValueError(
                "align_corners=True has no meaning with convention='cv2': cv2.resize always "
                "samples pixel centres (align_corners=False)"
            )
        if self.antialias and self.kernel != "box":
            raise ValueError(
                f"antialias=True is not available for kernel {self.kernel!r} with "
                "convention='cv2': cv2.resize never antialiases INTER_NEAREST, INTER_LINEAR, "
                "INTER_CUBIC or INTER_LANCZOS4; pass antialias=False (the cv2 default) or shrink "
                "with kernel='area' (INTER_AREA)"
            )

    def for_resize(self, in_hw: tuple[float, float], out_hw: tuple[int, int]) -> Resampler:
        """The resampler both axes use when a box of ``in_hw`` pixels becomes ``out_hw``.

        Itself, except OpenCV's ``INTER_AREA``: when either axis enlarges, cv2 switches *both*
        axes to its enlarging rule (``antialias=False``), so an axis alone cannot tell.

        >>> Resampler("area", convention="cv2").for_resize((8, 8), (4, 16)).antialias
        False
        >>> Resampler("area", convention="cv2").for_resize((8, 8), (4, 8)).antialias
        True
        """
        cv2_area = self.convention == "cv2" and self.kernel == "box" and self.antialias
        if cv2_area and any(o > i for i, o in zip(in_hw, out_hw, strict=True)):
            return replace(self, antialias=False)
        return self

    @property
    def negative_lobes(self) -> bool:
        """Whether the kernel can give a resampled one-hot negative weights (bicubic, lanczos)."""
        return self.kernel in NEGATIVE_LOBE_KERNELS

    @classmethod
    def resolve(
        cls,
        resampler: Resampler | None = None,
        *,
        kernel: str | None = None,
        antialias: bool | None = None,
        align_corners: bool | None = None,
        convention: Convention | None = None,
    ) -> Resampler:
        """The resampler a public function was given: ``resampler`` itself, or one built from the
        loose keyword arguments (``None``: the field's default). Giving both is an error.

        >>> Resampler.resolve(kernel="bicubic", antialias=False)
        Resampler(kernel='bicubic', antialias=False, align_corners=False, convention='torch')
        >>> Resampler.resolve(Resampler("box", convention="pil")).convention
        'pil'
        """
        loose = {
            "kernel": kernel,
            "antialias": antialias,
            "align_corners": align_corners,
            "convention": convention,
        }
        given = {name: value for name, value in loose.items() if value is not None}
        if resampler is None:
            return cls(**given)
        if not isinstance(resampler, Resampler):
            raise TypeError(f"resampler must be a Resampler, got {type(resampler).__name__}")
        if given:
            raise ValueError(
                f"give either resampler= or the keyword arguments {sorted(loose)}, not both; "
                f"got resampler={resampler!r} and {given}"
            )
        return resampler


@dataclass(frozen=True)
class AxisWeights:
    """A banded resampling matrix along one axis.

    ``index`` and ``weight`` have shape ``(n_out, taps)``: output ``i`` is
    ``sum_k weight[i, k] * x[index[i, k]]``. Taps that fall on padding outside the image have weight 0
    here (and a valid dummy index); their summed weight per output is ``outside``, shape ``(n_out,)``.
    """

    index: torch.Tensor
    weight: torch.Tensor
    outside: torch.Tensor

    @property
    def taps(self) -> int:
        return self.index.shape[1]

    def to(self, device: torch.device, dtype: torch.dtype) -> AxisWeights:
        """The same band on ``device``, weights in ``dtype``."""
        return AxisWeights(
            self.index.to(device), self.weight.to(device, dtype), self.outside.to(device, dtype)
        )

    def to_dense(self, n_in: int) -> torch.Tensor:
        """The band as a dense ``(n_out, n_in)`` matrix in the weights' dtype (repeated taps add).

        >>> axis_weights(4, 2, "box").to_dense(4)
        tensor([[0.5000, 0.5000, 0.0000, 0.0000],
                [0.0000, 0.0000, 0.5000, 0.5000]], dtype=torch.float64)
        """
        n_out = self.index.shape[0]
        dense = torch.zeros(n_out, n_in, dtype=self.weight.dtype, device=self.weight.device)
        return dense.scatter_add_(1, self.index, self.weight)


# --------------------------------------------------------------------------- band construction
def _band(lo_tap: np.ndarray, weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-tap columns ``(lo_tap + k, weights[k])`` into ``(n_out, taps)`` arrays."""
    taps = len(weights)
    index = lo_tap[:, None] + np.arange(taps)[None, :]
    return index, np.stack(weights, axis=1)


def _filtered(center: np.ndarray, scale: float, name: str, lo: int, hi: int, stretch: bool):
    """PIL's (and torch's antialiased) scheme: a filter centred on each output, normalised to 1.

    ``stretch``: widen the filter by the scale factor when down-sampling (antialiasing).
    """
    fn, support = FILTERS[name]
    dtype = center.dtype.type  # float32 for torch (its float kernels), float64 for PIL
    filterscale = dtype(max(scale, 1.0) if stretch else 1.0)
    support = dtype(support) * filterscale
    # int() in C truncates towards zero; floor agrees wherever the clamp to ``lo`` does not apply.
    xmin = np.maximum(np.floor(center - support + dtype(0.5)), lo).astype(np.int64)
    xmax = np.minimum(np.floor(center + support + dtype(0.5)), hi).astype(np.int64)
    taps = max(int((xmax - xmin).max()), 1)
    index = xmin[:, None] + np.arange(taps)[None, :]
    raw = fn((index.astype(dtype) - center[:, None] + dtype(0.5)) * (dtype(1.0) / filterscale))
    raw = np.where(index < xmax[:, None], raw, dtype(0.0))
    total = raw.sum(axis=1, keepdims=True)
    weight = np.divide(raw, total, out=np.zeros_like(raw), where=total != 0.0)
    return index, weight


def _torch_nearest(n_out: int, start: float, length: float):
    # torch picks floor(X * scale) in float32 for output X of the map it is given. A box at a
    # whole pixel is that map cut (or padded) first, so the same float32 bits plus the offset; a
    # box at a fraction continues the grid of the whole map, X = start/scale + i.
    f32 = np.float32
    i = np.arange(n_out, dtype=f32)
    scale32 = f32(length) / f32(n_out) if float(length).is_integer() else f32(length / n_out)
    if float(start).is_integer():
        index = int(start) + np.floor(i * scale32).astype(np.int64)
    else:
        grid = (start / (length / n_out) + np.arange(n_out)).astype(f32)
        index = np.floor(grid * scale32).astype(np.int64)
    return index[:, None], np.ones((n_out, 1))


def _torch_area(n_out: int, start: float, length: float, hi: int):
    # adaptive average pooling: equal weights over [floor(i*L/n), ceil((i+1)*L/n)).
    if float(start).is_integer() and float(length).is_integer():
        L, s = int(length), int(start)
        a = (np.arange(n_out) * L) // n_out + s
        b = -((-(np.arange(1, n_out + 1) * L)) // n_out) + s
    else:
        edges = np.round(start + np.arange(n_out + 1) * (length / n_out), 9)
        a, b = np.floor(edges[:-1]).astype(np.int64), np.ceil(edges[1:]).astype(np.int64)
    taps = int((b - a).max())
    index = a[:, None] + np.arange(taps)[None, :]
    inside = index < b[:, None]
    weight = inside / (b - a)[:, None]
    return np.minimum(index, hi - 1), weight


def _torch_interpolated(rs: Resampler, n_out: int, start: float, length: float, lo: int, hi: int):
    # torch computes source coordinates and weights of float images in float32: so do we, or
    # a non-integer scale puts the last outputs 1e-5 apart.
    f32 = np.float32
    i = np.arange(n_out, dtype=f32)
    if rs.align_corners:
        scale = f32(length - 1) / f32(n_out - 1) if n_out > 1 else f32(0.0)
    else:
        scale = f32(length) / f32(n_out)
    start = f32(start)
    if rs.antialias:
        # torch's antialiased path is PIL's scheme (bicubic with a = -0.5 there too).
        center = start + scale * (i + f32(0.5))
        return _filtered(center, float(scale), rs.kernel, lo, hi, stretch=True)
    src = start + scale * i if rs.align_corners else start + scale * (i + f32(0.5)) - f32(0.5)
    if rs.kernel == "bilinear":
        src = np.maximum(src, f32(lo))  # torch clamps the left border only; the right by index
        x0 = np.floor(src)
        t = src - x0
        index, weight = _band(x0.astype(np.int64), [f32(1.0) - t, t])
    else:  # bicubic, a = -0.75
        x0 = np.floor(src)
        t = src - x0
        a = f32(-0.75)
        near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731
        far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731
        index, weight = _band(
            x0.astype(np.int64) - 1, [far(t + 1), near(t), near(1 - t), far(2 - t)]
        )
    return np.clip(index, lo, hi - 1), weight


def _pil_bands(kernel: str, n_out: int, start: float, length: float, lo: int, hi: int):
    # PIL refuses boxes that leave the image; such a box is PIL's on the image padded by whole
    # pixels, so compute there, box shifted by the padding: the same float sums as PIL's, which
    # break exact ties (a filter edge on a pixel centre, a nearest sample on an edge) alike.
    pad = max(0, math.ceil(-start))
    # PIL reads the box as float32 numbers
    start, end = float(np.float32(start + pad)), float(np.float32(start + pad + length))
    scale = (end - start) / n_out
    if kernel == "nearest":
        # PIL walks the grid by repeated addition in double precision and truncates
        steps = np.full(n_out, scale)
        steps[0] = start + scale * 0.5
        src = np.cumsum(steps)
        return np.floor(src).astype(np.int64)[:, None] - pad, np.ones((n_out, 1))
    center = start + scale * (np.arange(n_out) + 0.5)
    index, weight = _filtered(center, scale, kernel, lo + pad, hi + pad, stretch=True)
    return index - pad, weight


def _bands(rs: Resampler, n_out: int, start: float, length: float, lo: int, hi: int):
    if rs.convention == "cv2":
        return cv2_bands(rs.kernel, rs.antialias, n_out, start, length, hi)
    if rs.convention == "pil":
        return _pil_bands(rs.kernel, n_out, start, length, lo, hi)
    if rs.kernel == "nearest":
        return _torch_nearest(n_out, start, length)
    if rs.kernel == "box":
        return _torch_area(n_out, start, length, hi)
    return _torch_interpolated(rs, n_out, start, length, lo, hi)


def axis_weights(
    n_in: int,
    n_out: int,
    kernel: str | None = None,
    *,
    convention: Convention | None = None,
    antialias: bool | None = None,
    align_corners: bool | None = None,
    start: float = 0.0,
    length: float | None = None,
    resampler: Resampler | None = None,
) -> AxisWeights:
    """Banded weights that resample an axis of ``n_in`` pixels (box ``[start, start+length)``,
    default the whole axis) to ``n_out``.

    The resampler is ``resampler`` or the loose arguments (defaults as in :class:`Resampler`).
    Returns float64 weights on the CPU; see :class:`AxisWeights`.

    >>> aw = axis_weights(4, 2, "bilinear", antialias=False)
    >>> aw.index.tolist(), aw.weight.tolist()
    ([[0, 1], [2, 3]], [[0.5, 0.5], [0.5, 0.5]])
    >>> axis_weights(4, 2, "box", start=-2.0).outside.tolist()  # the first output is all padding
    [1.0, 0.0]
    """
    rs = Resampler.resolve(
        resampler, kernel=kernel, antialias=antialias, align_corners=align_corners,
        convention=convention,
    )  # fmt: skip
    length = float(n_in) if length is None else float(length)
    lo = min(0, math.floor(start))
    hi = max(n_in, math.ceil(start + length))
    index, weight = _bands(rs, n_out, start, length, lo, hi)
    index = np.clip(index, lo, hi - 1)
    inside = (index >= 0) & (index < n_in)
    outside = np.where(inside, 0.0, weight).sum(axis=1)
    weight = np.where(inside, weight, 0.0)
    index = np.clip(index, 0, n_in - 1)
    return AxisWeights(
        torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float64)),
        torch.from_numpy(np.ascontiguousarray(outside, dtype=np.float64)),
    )
