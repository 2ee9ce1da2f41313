"""Label map helpers shared by every part of softseg: one dtype policy, one range check, one clamp.

- :func:`as_label_tensor`: an ``(H, W)`` or ``(N, H, W)`` integer map as a tensor, refusing floats.
- :func:`check_label_values`: every value is a class ``0 .. C-1`` or the ignore value.
- :func:`clamp_negative_lobes`: the rule that keeps a signed kernel's soft labels a distribution.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_label_tensor", "check_label_values", "clamp_negative_lobes"]

_TORCH_LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_NUMPY_LABEL_DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.int64)


def as_label_tensor(labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A non-empty ``(H, W)`` or ``(N, H, W)`` integer label map as a tensor.

    Integer dtypes that torch computes with are kept (uint8 stays uint8: cheaper); others (uint16,
    uint32, ...) become int64. Floats and booleans are refused rather than cast, because a float map
    is usually an image or soft labels passed by mistake.

    >>> import numpy as np
    >>> as_label_tensor(np.array([[0, 1], [2, 255]], dtype=np.uint8)).dtype
    torch.uint8
    >>> as_label_tensor(np.zeros((2, 2), dtype=np.uint16)).dtype
    torch.int64
    """
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must hold integers, got a numpy array of dtype {labels.dtype}"
            )
        if labels.dtype not in _NUMPY_LABEL_DTYPES:
            labels = labels.astype(np.int64)
        if any(stride < 0 for stride in labels.strides):  # flipped views: torch refuses them
            labels = labels.copy()
        labels = torch.from_numpy(labels)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"labels must be a torch.Tensor or numpy array, got {type(labels).__name__}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must hold integer class indices, got dtype {labels.dtype}; "
            "convert with labels.long() if the values really are class indices"
        )
    if labels.dim() not in (2, 3):
        raise ValueError(f"labels must be (H, W) or (N, H, W), got shape {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise ValueError(f"labels must not be empty, got shape {tuple(labels.shape)}")
    return labels if labels.dtype in _TORCH_LABEL_DTYPES else labels.long()


def check_label_values(
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int | None,
    *,
    what: str = "labels",
) -> None:
    """Raise ``ValueError`` unless every value of ``labels`` is in ``[0, num_classes)`` or equals
    ``ignore_index`` (``None``: no value is exempt).

    Any shape and integer dtype; an empty tensor passes. The message names ``what``, how many
    pixels are wrong and (up to 8 of) their values. One ``aminmax`` pass when all is well.

    >>> import torch
    >>> check_label_values(torch.tensor([[0, 2], [255, 1]]), 3, 255)
    >>> check_label_values(torch.tensor([[0, 7]]), 3, 255, what="targets")
    Traceback (most recent call last):
        ...
    ValueError: targets hold 1 pixels with values [7] outside [0, 3) and not equal to ignore_index=255
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if labels.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(labels))
    if lo >= 0 and hi < num_classes:
        return
    if _uint8_only_ignore_above(labels, num_classes, ignore_index, hi):
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None and lo <= ignore_index <= hi:
        bad &= labels != ignore_index
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        exempt = "" if ignore_index is None else f" and not equal to ignore_index={ignore_index}"
        raise ValueError(
            f"{what} hold {int(bad.sum())} pixels with values {values} "
            f"outside [0, {num_classes}){exempt}"
        )


def _uint8_only_ignore_above(
    labels: torch.Tensor, num_classes: int, ignore_index: int | None, hi: int
) -> bool:
    """Whether a uint8 map holds only classes and an ignore value above them, in two cheap passes.

    The common case (PNG labels, void 255) would otherwise need boolean masks over the whole map,
    20x slower than a reduction. Subtracting ``C`` wraps classes to ``256 - C .. 255`` and the
    ignore value to ``ignore - C``; any other value at most ``ignore`` lands below that.
    """
    if labels.dtype != torch.uint8 or ignore_index is None:
        return False
    if not num_classes <= ignore_index <= 255 or hi > ignore_index:
        return False
    return int((labels - num_classes).min()) >= ignore_index - num_classes


def clamp_negative_lobes(soft: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """Clamp the negative class weights of soft labels ``(..., C, h, w)`` at zero, then rescale each
    pixel so its classes sum to its valid mass ``clip(sum, 0, 1)`` again.

    Kernels with negative lobes (bicubic, lanczos) give a resampled one-hot slightly negative
    weights near edges; this keeps the result a (sub-)distribution with the same total. Pixels whose
    clamped weights are all zero become all zero. ``inplace=False`` (the default) leaves ``soft``
    untouched, which a tensor in an autograd graph needs.

    >>> import torch
    >>> clamp_negative_lobes(torch.tensor([1.2, -0.2]).view(2, 1, 1)).flatten().tolist()
    [1.0, 0.0]
    >>> clamp_negative_lobes(torch.tensor([0.6, 0.5, -0.3]).view(3, 1, 1)).flatten()
    tensor([0.4364, 0.3636, 0.0000])
    """
    if soft.dim() < 3:
        raise ValueError(f"soft labels must be (..., C, h, w), got shape {tuple(soft.shape)}")
    valid = soft.sum(-3, keepdim=True).clamp_(0.0, 1.0)
    soft = soft.clamp_(min=0.0) if inplace else soft.clamp(min=0.0)
    total = soft.sum(-3, keepdim=True)
    scale = torch.where(total > 0, valid / total.clamp(min=1e-12), 0.0)
    return soft.mul_(scale) if inplace else soft * scale
