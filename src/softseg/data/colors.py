"""Class colours: :func:`colorize` draws a hard or soft label map in them, and
:func:`generated_colors` makes a palette for datasets that ship none.

A soft pixel is the mixture ``sum_c p_c * color_c`` of its class colours, so mass lost to ignored
pixels darkens it towards black, as ignored pixels are black in hard maps.

>>> colorize(np.array([[0, 1, 255]]), [(255, 0, 0), (0, 0, 255)]).tolist()
[[[255, 0, 0], [0, 0, 255], [0, 0, 0]]]
>>> len(generated_colors(150)), len(set(generated_colors(150))) > 100
(150, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["Color", "colorize", "generated_colors"]

ArrayLike = torch.Tensor | np.ndarray
Color = tuple[int, int, int]


def generated_colors(n: int) -> tuple[Color, ...]:
    """``n`` deterministic, well-spread RGB colours (for datasets that ship none).

    Spreads hues by the golden ratio and cycles two brightness levels, so neighbouring ids differ.
    """
    colors = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.65
        colors.append(_hsv_to_rgb(hue, 0.75, value))
    return tuple(colors)


def _hsv_to_rgb(h: float, s: float, v: float) -> Color:
    k = np.array([5.0, 3.0, 1.0])
    k = (k + h * 6.0) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return tuple(int(round(x * 255)) for x in rgb)  # type: ignore[return-value]


def _numpy(x: Any) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _palette(colors: Sequence[Sequence[float]]) -> np.ndarray:
    """``colors`` as a float ``(K, 3)`` array of values in ``[0, 255]``."""
    palette = np.asarray(colors, dtype=np.float64)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) == 0:
        raise ValueError(
            f"colors must be a non-empty list of RGB triples, got shape {palette.shape}"
        )
    if palette.min() < 0 or palette.max() > 255:
        raise ValueError(
            f"colors must lie in [0, 255], got values from {palette.min()} to {palette.max()}"
        )
    return palette


def _colorize_hard(labels: np.ndarray, palette: np.ndarray, ignore_index: int | None) -> np.ndarray:
    ignored = (
        labels == ignore_index if ignore_index is not None else np.zeros(labels.shape, dtype=bool)
    )
    valid = labels[~ignored]
    bad = valid[(valid < 0) | (valid >= len(palette))]
    if bad.size:
        raise ValueError(
            f"label value {int(bad[0])} has no colour: expected 0..{len(palette) - 1} "
            f"or the ignore index {ignore_index}"
        )
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    out[~ignored] = palette[valid].round().astype(np.uint8)
    return out


def _colorize_soft(soft: np.ndarray, palette: np.ndarray) -> np.ndarray:
    if soft.shape[0] > len(palette):
        raise ValueError(
            f"soft labels have {soft.shape[0]} classes but only {len(palette)} colours were given"
        )
    # missing mass (ignored pixels) contributes no colour, i.e. black
    mix = np.einsum("chw,ck->hwk", soft.astype(np.float64), palette[: soft.shape[0]])
    # negative kernel lobes can push a channel slightly outside [0, 255]
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def colorize(
    label_or_soft: ArrayLike,
    colors: Sequence[Sequence[float]],
    ignore_index: int | None = 255,
) -> np.ndarray:
    """RGB ``uint8 (H, W, 3)`` picture of a label map.

    Args:
        label_or_soft: a hard map ``(H, W)`` of integer classes (``ignore_index`` drawn black) or
            a soft map ``(C, H, W)`` of float class proportions (drawn as ``sum_c p_c * color_c``,
            so the share of ignored pixels is black).
        colors: one RGB triple (0..255) per class.
        ignore_index: the ignored label of hard maps, or ``None``.
    """
    x = _numpy(label_or_soft)
    palette = _palette(colors)
    if x.ndim == 2:
        if not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
            raise ValueError(
                f"a 2-D label map must hold integer classes, got dtype {x.dtype}; soft labels "
                "are (C, H, W)"
            )
        return _colorize_hard(x.astype(np.int64), palette, ignore_index)
    if x.ndim == 3:
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"a 3-D soft label map must be float, got dtype {x.dtype}")
        return _colorize_soft(x, palette)
    raise ValueError(
        f"expected a hard label map (H, W) or soft labels (C, H, W), got shape {tuple(x.shape)}"
    )
