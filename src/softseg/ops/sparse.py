"""Sparse soft labels: keep the ``k`` heaviest classes of each pixel.

Most output pixels mix one to three classes, so ``k`` small indices and weights store a soft label
map in a fraction of the dense ``C x h x w`` floats, on disk or in a batch.
"""

from __future__ import annotations

import torch

__all__ = ["topk_soft_labels", "dense_from_topk", "index_dtype"]


def index_dtype(num_classes: int) -> torch.dtype:
    """The smallest integer dtype that holds class indices ``0 .. num_classes - 1``.

    >>> index_dtype(19), index_dtype(300)
    (torch.uint8, torch.int16)
    """
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if num_classes - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def topk_soft_labels(soft: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` heaviest classes of each pixel of ``soft`` ``(..., C, h, w)``.

    Returns ``(indices, weights)``, both ``(..., k, h, w)``: indices in :func:`index_dtype`, weights in
    the dtype of ``soft``, heaviest first. The round trip through :func:`dense_from_topk` is exact
    when ``k`` is at least the number of classes present in any pixel.

    >>> import torch
    >>> soft = torch.tensor([0.7, 0.1, 0.2]).view(3, 1, 1)
    >>> indices, weights = topk_soft_labels(soft, 2)
    >>> indices.flatten().tolist(), weights.flatten()
    ([0, 2], tensor([0.7000, 0.2000]))
    """
    if soft.dim() < 3:
        raise ValueError(f"soft labels must be (..., C, h, w), got shape {tuple(soft.shape)}")
    num_classes = soft.shape[-3]
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be in [1, {num_classes}] for {num_classes} classes, got {k}")
    weights, indices = soft.topk(k, dim=-3)
    return indices.to(index_dtype(num_classes)), weights


def dense_from_topk(indices: torch.Tensor, weights: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dense soft labels ``(..., C, h, w)`` from the ``(indices, weights)`` of :func:`topk_soft_labels`.

    >>> import torch
    >>> indices, weights = torch.tensor([[[2]], [[0]]]), torch.tensor([[[0.6]], [[0.4]]])
    >>> dense_from_topk(indices, weights, 3).flatten()
    tensor([0.4000, 0.0000, 0.6000])
    """
    if indices.shape != weights.shape:
        raise ValueError(
            f"indices and weights must have one shape, got {tuple(indices.shape)} "
            f"and {tuple(weights.shape)}"
        )
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_classes):
        raise ValueError(
            f"indices must lie in [0, {num_classes}), got values in "
            f"[{int(indices.min())}, {int(indices.max())}]"
        )
    shape = list(indices.shape)
    shape[-3] = num_classes
    dense = torch.zeros(shape, dtype=weights.dtype, device=weights.device)
    return dense.scatter_add_(-3, indices.long(), weights)
