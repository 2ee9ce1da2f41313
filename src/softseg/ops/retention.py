"""How much of each class survives a label down-sampling method (the paper's rare-class analysis).

The reference is the true class mix of every output pixel's footprint: the soft label made with the
image's kernel. A method keeps, in each output pixel, at most what its label says and at most what is
really there, so ``retention[c] = sum(min(q_c, p_c)) / sum(p_c)`` over output pixels, where ``p`` is the
true mix and ``q`` the method's label (one-hot for hard methods). Soft labels keep 100% by construction;
nearest and mode lose most on thin and small classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .baselines import mode_downsample, nearest_downsample
from .labels import as_label_tensor
from .resample import Size, soft_downsample

__all__ = ["class_retention", "METHODS"]

METHODS = ("nearest", "mode", "soft")


def one_hot_labels(hard: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """``(..., C, h, w)`` float one-hot of a hard map ``(..., h, w)``; ignored pixels all zero.

    >>> import torch
    >>> one_hot_labels(torch.tensor([[1, 255]]), 2, 255).tolist()
    [[[0.0, 0.0]], [[1.0, 0.0]]]
    """
    codes = hard.long().masked_fill(hard.long() == ignore_index, num_classes)
    onehot = torch.nn.functional.one_hot(codes, num_classes + 1)[..., :num_classes]
    return onehot.movedim(-1, -3).float()


def class_retention(
    labels: torch.Tensor | np.ndarray,
    size: Size,
    num_classes: int,
    methods: Sequence[str] = METHODS,
    *,
    ignore_index: int = 255,
    kernel: str = "bilinear",
    antialias: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-class share (0..1) of the true class mass each method keeps at ``size``.

    Args:
        labels: ``(H, W)`` or ``(N, H, W)`` integer map (a batch is pooled).
        size: the low resolution ``(h, w)``.
        methods: any of ``"nearest"``, ``"mode"``, ``"soft"``.
        kernel, antialias: the image resampler, which defines the true mix of each output pixel.

    Returns:
        ``{method: float64 tensor (C,)}``; NaN for classes absent from ``labels``.

    A one-pixel-wide pole (class 1) at a quarter of the resolution: nearest misses it entirely.

    >>> import torch
    >>> labels = torch.zeros(8, 8, dtype=torch.long)
    >>> labels[:, 5] = 1
    >>> kept = class_retention(labels, (2, 2), 2)
    >>> kept["nearest"].tolist(), kept["soft"].tolist()
    ([1.0, 0.0], [1.0, 1.0])
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected any of {METHODS}")
    labels = as_label_tensor(labels)
    opts = dict(ignore_index=ignore_index, kernel=kernel, antialias=antialias)
    truth = soft_downsample(labels, size, num_classes, **opts)
    made = {
        "soft": lambda: truth,
        "nearest": lambda: one_hot_labels(
            nearest_downsample(labels, size, ignore_index=ignore_index), num_classes, ignore_index
        ),
        "mode": lambda: one_hot_labels(
            mode_downsample(labels, size, num_classes, ignore_index=ignore_index),
            num_classes,
            ignore_index,
        ),
    }
    class_dim = truth.dim() - 3
    pool = [d for d in range(truth.dim()) if d != class_dim]
    mass = truth.double().sum(pool)
    out = {}
    for method in methods:
        kept = torch.minimum(made[method](), truth).double().sum(pool)
        out[method] = torch.where(mass > 0, kept / mass.clamp(min=1e-300), float("nan"))
    return out
