"""Loss targets: the three forms a soft cross-entropy accepts, checked and brought to the logits.

- dense soft targets, float ``(N, C, H, W)``, channel sum = valid mass in ``[0, 1]``;
- sparse top-k soft targets, a pair ``(indices, weights)`` of two ``(N, k, H, W)`` tensors
  (:func:`softseg.topk_soft_labels`);
- integer class maps ``(N, H, W)`` with an ignore value.

Targets larger than the logits are brought down to them with the soft down-sampling that made the
images (:func:`softseg.soft_downsample` / :func:`softseg.resize_image`), and are dense after that;
logits are never up-sampled, and targets smaller than the logits are refused. Targets already at
the logits' size keep their form: integer and sparse ones are gathered by the loss, never expanded
to ``C`` channels.
"""

from __future__ import annotations

import torch

from ..ops.kernels import NEGATIVE_LOBE_KERNELS
from ..ops.labels import check_label_values, clamp_negative_lobes
from ..ops.resample import resize_image, soft_downsample
from ..ops.sparse import dense_from_topk

__all__ = ["Target", "is_integer", "target_at_logits"]

#: A training target in any of the three forms (see the module docstring).
Target = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def is_integer(t: torch.Tensor) -> bool:
    """Whether ``t`` holds integers (class indices): not floating, complex or boolean."""
    return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


def _check_batch(n_target: int, n_logits: int, what: str) -> None:
    if n_target != n_logits:
        raise ValueError(f"{what} has batch size {n_target} but the logits have {n_logits}")


def _needs_resizing(size: tuple[int, ...], logits_size: tuple[int, int]) -> bool:
    """Whether a target of ``size`` must be brought down to ``logits_size`` (refuses smaller)."""
    size = tuple(size)
    if size == logits_size:
        return False
    if size[0] < logits_size[0] or size[1] < logits_size[1]:
        raise ValueError(
            f"target size {size} is smaller than the logits size {logits_size} in at least one "
            "dimension; the loss only brings targets down to the logits, never up-samples them or "
            "the logits, so give targets at least at the logits' resolution"
        )
    return True


def _check_sparse(target: tuple | list, n: int, num_classes: int) -> tuple[torch.Tensor, ...]:
    """``(indices, weights)`` of a sparse target, both ``(N, k, H, W)``, indices in ``[0, C)``."""
    if len(target) != 2:
        raise ValueError(f"a sparse target is a pair (indices, weights), got {len(target)} items")
    indices, mass = target
    if indices.shape != mass.shape or indices.dim() != 4:
        raise ValueError(
            "sparse target indices and weights must both be (N, k, H, W), got "
            f"{tuple(indices.shape)} and {tuple(mass.shape)}"
        )
    if not is_integer(indices):
        raise ValueError(f"sparse target indices must be integers, got dtype {indices.dtype}")
    if not mass.dtype.is_floating_point:
        raise ValueError(f"sparse target weights must be floating, got dtype {mass.dtype}")
    _check_batch(indices.shape[0], n, "the sparse target")
    lo, hi = (int(v) for v in torch.aminmax(indices))
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"sparse target indices must lie in [0, {num_classes}), got values in [{lo}, {hi}]"
        )
    return indices, mass


def _check_dense(target: torch.Tensor, n: int, num_classes: int) -> None:
    if target.dtype == torch.bool or not target.dtype.is_floating_point:
        raise ValueError(
            f"target must be float soft labels or integer class indices, got dtype {target.dtype}"
        )
    if target.dim() != 4:
        raise ValueError(
            f"dense soft targets must be (N, C, H, W), got shape {tuple(target.shape)} "
            "(integer class maps (N, H, W) need an integer dtype)"
        )
    if target.shape[1] != num_classes:
        raise ValueError(
            f"dense target has {target.shape[1]} channels but the logits have {num_classes}"
        )
    _check_batch(target.shape[0], n, "the dense target")
    # class mass is never negative; caught here, it would surface as an "infinite loss" later
    lowest = float(target.detach().min()) if target.numel() else 0.0
    if lowest < 0:
        raise ValueError(f"soft targets are class masses in [0, 1]; got a value of {lowest:g}")


def target_at_logits(
    target: Target,
    logits: torch.Tensor,
    *,
    ignore_index: int | None,
    kernel: str = "bilinear",
    antialias: bool = True,
) -> Target:
    """``target`` checked against ``logits`` ``(N, C, h, w)`` and brought to ``(h, w)``.

    Returns an integer map ``(N, h, w)``, a sparse pair at ``(h, w)`` with float weights, or a dense
    target ``(N, C, h, w)``, on the logits' device; floats in at least float32 (the loss's
    precision). Larger targets are soft down-sampled with ``kernel`` and ``antialias`` and come
    back dense.

    >>> logits = torch.zeros(1, 3, 2, 2)
    >>> labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]])
    >>> target_at_logits(labels, logits, ignore_index=255, kernel="area")[0, :, 1, 1].tolist()
    [0.0, 0.0, 0.0]
    >>> target_at_logits(labels[:, ::2, ::2], logits, ignore_index=255).dtype
    torch.int64
    """
    n, num_classes, h, w = logits.shape
    dtype = torch.promote_types(logits.dtype, torch.float32)
    if isinstance(target, (tuple, list)):
        indices, mass = _check_sparse(target, n, num_classes)
        if not _needs_resizing(indices.shape[-2:], (h, w)):
            return indices.to(logits.device), mass.to(logits.device, dtype)
        target = dense_from_topk(indices, mass, num_classes)
    elif not isinstance(target, torch.Tensor):
        raise TypeError(
            f"target must be a tensor or an (indices, weights) pair, got {type(target).__name__}"
        )
    elif is_integer(target):
        if target.dim() != 3:
            raise ValueError(f"integer targets must be (N, H, W), got shape {tuple(target.shape)}")
        _check_batch(target.shape[0], n, "the integer target")
        if not _needs_resizing(target.shape[-2:], (h, w)):
            check_label_values(target, num_classes, ignore_index, what="integer targets")
            return target.to(logits.device)
        return soft_downsample(
            target, (h, w), num_classes, ignore_index=ignore_index, kernel=kernel,
            antialias=antialias,
        ).to(logits.device, dtype)  # fmt: skip
    else:
        _check_dense(target, n, num_classes)
    if _needs_resizing(target.shape[-2:], (h, w)):
        target = resize_image(target, (h, w), kernel=kernel, antialias=antialias)
        if kernel in NEGATIVE_LOBE_KERNELS:
            # the rule soft_downsample applies; out of place: a dense target may carry a graph
            target = clamp_negative_lobes(target)
    return target.to(logits.device, dtype)
