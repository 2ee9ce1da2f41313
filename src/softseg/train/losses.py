"""Soft cross-entropy: train on per-pixel class distributions, normalised by the valid mass.

For logits ``z`` ``(N, C, h, w)`` and a target distribution ``t`` ``(N, C, h, w)`` whose channel sum
``m`` is the valid fraction of each pixel (``1 - m`` is ignored), with class weights ``w_c``::

    loss = - sum_{n,c,i,j} w_c t_c log_softmax(z)_c  /  sum_{n,i,j} sum_c w_c t_c

The denominator is the class-weighted valid mass of the whole batch, so ignored mass neither adds
to the loss nor dilutes it, and a one-hot target (or an integer map with ``ignore_index``) gives
exactly ``F.cross_entropy(z, labels, weight=w, ignore_index=...)``.

Class weights inside a soft target also move the loss's optimum from ``t`` to ``w_c t_c / sum_k
w_k t_k``: a pixel that is 10% pole and 90% tree is then predicted mostly pole when pole weighs ten
times tree. ``weight_mode="pixel"`` weighs each pixel by the mean class weight of its mass,
``w_bar = sum_c w_c t_c / m``, and keeps the target as it is::

    loss = - sum_{n,i,j} w_bar sum_c t_c log_softmax(z)_c  /  sum_{n,i,j} sum_c w_c t_c

Pixels holding rare classes count more, the optimum stays ``t``, and for one-hot targets both
modes are the same loss.

Three target forms are accepted and meet in one kernel that never builds a dense one-hot:

- dense soft targets, float ``(N, C, H, W)``;
- sparse top-k soft targets, a tuple ``(indices, weights)`` of two ``(N, k, H, W)`` tensors
  (:func:`softseg.topk_soft_labels`);
- integer class maps ``(N, H, W)`` with ``ignore_index``.

Targets larger than the logits are brought down to them with the soft down-sampling that made the
images (:func:`softseg.soft_downsample` / :func:`softseg.resize_image`); logits are never
up-sampled, and targets smaller than the logits are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.kernels import NEGATIVE_LOBE_KERNELS
from ..ops.resample import resize_image, soft_downsample
from ..ops.sparse import dense_from_topk

__all__ = ["SoftCrossEntropy", "median_frequency_weights", "soft_cross_entropy"]

Target = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
Reduction = Literal["mean", "sum", "none"]
WeightMode = Literal["class", "pixel"]
_REDUCTIONS = ("mean", "sum", "none")
WEIGHT_MODES = ("class", "pixel")


# --------------------------------------------------------------------------- argument checking
def _check_options(reduction: str, weight_mode: str, label_smoothing: float) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if weight_mode not in WEIGHT_MODES:
        raise ValueError(f"weight_mode must be one of {WEIGHT_MODES}, got {weight_mode!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")


def _is_int(t: torch.Tensor) -> bool:
    return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 4:
        raise ValueError(f"logits must be (N, C, h, w), got shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if logits.numel() == 0:
        raise ValueError(f"logits must not be empty, got shape {tuple(logits.shape)}")


def _check_batch(n_target: int, n_logits: int, what: str) -> None:
    if n_target != n_logits:
        raise ValueError(f"{what} has batch size {n_target} but the logits have {n_logits}")


def _check_indices(indices: torch.Tensor, num_classes: int) -> None:
    lo, hi = (int(v) for v in torch.aminmax(indices))
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"sparse target indices must lie in [0, {num_classes}), got values in [{lo}, {hi}]"
        )


def _check_labels(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        raise ValueError(
            f"integer targets hold {int(bad.sum())} pixels with values {values} outside "
            f"[0, {num_classes}) and not equal to ignore_index={ignore_index}"
        )


def _target_size(size: tuple[int, int], logits_size: tuple[int, int]) -> bool:
    """Whether a target of ``size`` must be brought down to ``logits_size`` (refuses smaller)."""
    if size == logits_size:
        return False
    if size[0] < logits_size[0] or size[1] < logits_size[1]:
        raise ValueError(
            f"target size {size} is smaller than the logits size {logits_size} in at least one "
            "dimension; the loss only brings targets down to the logits, never up-samples them or "
            "the logits, so give targets at least at the logits' resolution"
        )
    return True


def _clamp_negative_lobes(soft: torch.Tensor) -> torch.Tensor:
    """Clamp a signed kernel's negatives at zero and rescale each pixel to its valid mass.

    The same rule :func:`softseg.soft_downsample` applies, so dense and integer targets resized with
    ``bicubic`` stay identical; out of place, because a dense target may be part of a graph.
    """
    valid = soft.sum(1, keepdim=True).clamp(0.0, 1.0)
    soft = soft.clamp(min=0.0)
    total = soft.sum(1, keepdim=True)
    return soft * torch.where(total > 0, valid / total.clamp(min=1e-12), 0.0)


# --------------------------------------------------------------------------- the kernel
def _soft_ce_terms(
    logp: torch.Tensor,
    target: Target,
    weight: torch.Tensor | None,
    ignore_index: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel ``(sum_c w_c t_c logp_c, sum_c w_c t_c, sum_c t_c)``, each ``(N, h, w)``.

    ``target`` is already at the resolution of ``logp`` ``(N, C, h, w)`` and in its dtype (integer
    maps stay integer). Sparse and integer targets are gathered, never expanded to ``C`` channels.
    ``weight=None`` means all ones.
    """
    if isinstance(target, tuple):  # sparse: (indices, weights), (N, k, h, w)
        indices, mass = target
        indices = indices.long()
        picked = logp.gather(1, indices)
        weighted = mass if weight is None else mass * weight[indices]
        return (weighted * picked).sum(1), weighted.sum(1), mass.sum(1)
    if _is_int(target):  # (N, h, w) class indices
        if ignore_index is None:
            valid = torch.ones_like(target, dtype=torch.bool)
        else:
            valid = target != ignore_index
        safe = target.long().masked_fill(~valid, 0)  # any real class; its weight is zeroed below
        picked = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        mass = valid.to(logp.dtype)
        weighted = mass if weight is None else mass * weight[safe]
        return weighted * picked, weighted, mass
    # dense soft targets (N, C, h, w)
    weighted = target if weight is None else target * weight.view(1, -1, 1, 1)
    return (weighted * logp).sum(1), weighted.sum(1), target.sum(1)


def soft_cross_entropy(
    logits: torch.Tensor,
    target: Target,
    *,
    ignore_index: int | None = 255,
    weight: torch.Tensor | None = None,
    weight_mode: WeightMode = "class",
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    kernel: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Cross-entropy between logits and soft (or hard) targets, normalised by the valid mass.

    Args:
        logits: float ``(N, C, h, w)``.
        target: one of
            dense soft targets, float ``(N, C, H, W)``, channel sum = valid mass in ``[0, 1]``
            (not checked: that would cost a pass over the target);
            sparse top-k targets, a tuple ``(indices, weights)``, both ``(N, k, H, W)``, indices of
            any integer dtype (duplicates add up);
            integer class targets ``(N, H, W)``, ``ignore_index`` marking ignored pixels.
            ``(H, W)`` may exceed ``(h, w)``: the target is then soft down-sampled to ``(h, w)``
            with ``kernel`` and ``antialias`` (integer maps with :func:`softseg.soft_downsample`,
            dense ones with :func:`softseg.resize_image`, sparse ones densified first).
        ignore_index: label value of ignored pixels in integer targets (``None``: none).
        weight: optional class weights ``(C,)``, non-negative.
        weight_mode: ``"class"`` weighs each class's share of the target (the optimum becomes the
            re-weighted target); ``"pixel"`` weighs each pixel by the mean weight of its target
            and keeps the optimum at the target. The same for one-hot targets without smoothing.
            The default keeps ``F.cross_entropy``'s meaning; ``softseg train`` uses ``"pixel"``,
            which the CamVid study found far better for soft targets (``docs/results.md``).
        label_smoothing: ``eps`` in ``[0, 1]``; each pixel's target becomes
            ``(1 - eps) * t + eps * m / C`` with ``m = sum_c t_c`` its valid mass, so ignored mass
            stays ignored.
        reduction: ``"mean"`` (sum over the batch / class-weighted valid mass), ``"sum"`` (the
            un-normalised sum) or ``"none"`` (the un-normalised per-pixel loss, ``(N, h, w)``).
        kernel, antialias: the down-sampling operator for larger targets (as for the images).

    Returns:
        A scalar (``"mean"``, ``"sum"``) or ``(N, h, w)`` map, in float32 for half-precision
        logits and in the logits' dtype otherwise. With zero valid mass ``"mean"`` gives a zero
        connected to the logits (zero gradient), not NaN.

    Raises:
        ValueError: on shapes, sizes, dtypes, class counts or label values that do not fit.
        FloatingPointError: when the result is not finite (NaN or inf in the logits or targets).

    With integer targets this equals ``F.cross_entropy(logits, target, weight=weight,
    ignore_index=ignore_index, label_smoothing=eps, reduction=reduction)`` (checked against torch
    2.14) in every case but one: ``"mean"`` with both class weights and ``eps > 0``. There torch
    divides by the weights of the true classes, ``sum_pixels w_y``, while this function divides by
    the smoothed target's class-weighted mass, ``sum_pixels ((1 - eps) w_y + eps / C * sum_c w_c)``,
    so the loss stays a weighted mean of per-pixel cross-entropies; the summed loss is the same.
    """
    _check_logits(logits)
    _check_options(reduction, weight_mode, label_smoothing)
    N, C, h, w = logits.shape
    # half-precision log-probabilities lose too much; compute in at least float32
    dtype = torch.promote_types(logits.dtype, torch.float32)
    device = logits.device
    if weight is not None:
        weight = torch.as_tensor(weight)
        if weight.shape != (C,):
            raise ValueError(
                f"weight must have shape ({C},) for {C} classes, got {tuple(weight.shape)}"
            )
        weight = weight.to(device, dtype)
        if bool((weight < 0).any()):
            raise ValueError(f"weight must be non-negative, got {weight.tolist()}")

    # ---- bring the target to the logits' size and dtype
    if isinstance(target, (tuple, list)):
        if len(target) != 2:
            raise ValueError(
                f"a sparse target is a pair (indices, weights), got {len(target)} items"
            )
        indices, mass = target
        if indices.shape != mass.shape or indices.dim() != 4:
            raise ValueError(
                "sparse target indices and weights must both be (N, k, H, W), got "
                f"{tuple(indices.shape)} and {tuple(mass.shape)}"
            )
        if not _is_int(indices):
            raise ValueError(f"sparse target indices must be integers, got dtype {indices.dtype}")
        if not mass.dtype.is_floating_point:
            raise ValueError(f"sparse target weights must be floating, got dtype {mass.dtype}")
        _check_batch(indices.shape[0], N, "the sparse target")
        _check_indices(indices, C)
        if _target_size(tuple(indices.shape[-2:]), (h, w)):
            target = dense_from_topk(indices, mass, C)  # then resized as a dense target below
        else:
            target = (indices.to(device), mass.to(device, dtype))
    elif not isinstance(target, torch.Tensor):
        raise TypeError(
            f"target must be a tensor or an (indices, weights) pair, got {type(target).__name__}"
        )
    elif _is_int(target):
        if target.dim() != 3:
            raise ValueError(f"integer targets must be (N, H, W), got shape {tuple(target.shape)}")
        _check_batch(target.shape[0], N, "the integer target")
        if _target_size(tuple(target.shape[-2:]), (h, w)):
            target = soft_downsample(
                target, (h, w), C, ignore_index=ignore_index, kernel=kernel, antialias=antialias
            )
        else:
            _check_labels(target, C, ignore_index)
            target = target.to(device)
    elif target.dtype == torch.bool or not target.dtype.is_floating_point:
        raise ValueError(
            f"target must be float soft labels or integer class indices, got dtype {target.dtype}"
        )
    elif target.dim() != 4:
        raise ValueError(
            f"dense soft targets must be (N, C, H, W), got shape {tuple(target.shape)} "
            "(integer class maps (N, H, W) need an integer dtype)"
        )

    if isinstance(target, torch.Tensor) and target.dtype.is_floating_point:  # dense
        if target.shape[1] != C:
            raise ValueError(f"dense target has {target.shape[1]} channels but the logits have {C}")
        _check_batch(target.shape[0], N, "the dense target")
        if _target_size(tuple(target.shape[-2:]), (h, w)):
            target = resize_image(target, (h, w), kernel=kernel, antialias=antialias)
            if kernel in NEGATIVE_LOBE_KERNELS:
                target = _clamp_negative_lobes(target)
        target = target.to(device, dtype)

    # ---- the loss
    logp = F.log_softmax(logits.to(dtype), dim=1)
    pixel_weight = None
    if weight is not None and weight_mode == "pixel":
        # each pixel weighs the mean class weight of its mass; the target itself stays unweighted
        _, weighted_mass, mass = _soft_ce_terms(logp, target, weight, ignore_index)
        pixel_weight = weighted_mass / mass.clamp(min=torch.finfo(dtype).tiny)
        weight = None
    true_term, true_mass, mass = _soft_ce_terms(logp, target, weight, ignore_index)
    if label_smoothing > 0:
        eps = float(label_smoothing)
        # the uniform part eps * m / C of the target, weighted: (eps / C) * m * sum_c w_c (logp_c)
        uniform_term = logp.sum(1) if weight is None else (logp * weight.view(1, -1, 1, 1)).sum(1)
        class_weight = float(C) if weight is None else weight.sum()
        pixel = -((1 - eps) * true_term + (eps / C) * mass * uniform_term)
        pixel_mass = (1 - eps) * true_mass + (eps / C) * mass * class_weight
    else:
        pixel, pixel_mass = -true_term, true_mass
    if pixel_weight is not None:
        pixel, pixel_mass = pixel_weight * pixel, pixel_weight * pixel_mass

    if reduction == "none":
        loss = pixel
    elif reduction == "sum":
        loss = pixel.sum()
    else:
        # Zero mass means every term of the sum is 0 * (finite log-prob): the sum is exactly 0 and
        # its gradient too, so dividing by a clamped mass gives a connected zero without a branch.
        loss = pixel.sum() / pixel_mass.sum().clamp(min=torch.finfo(dtype).tiny)

    finite = torch.isfinite(loss)
    if not bool(finite.all()):  # the one cheap check; diagnose only on failure
        value = loss.detach()[~finite].flatten()[0].item()
        bad = int((~torch.isfinite(logits)).sum())
        cause = f"{bad} non-finite logits" if bad else "non-finite target values or class weights"
        raise FloatingPointError(f"non-finite loss ({value}): {cause}")
    return loss


class SoftCrossEntropy(nn.Module):
    """Module form of :func:`soft_cross_entropy`; class weights are a buffer (they follow ``.to``).

    ``forward(logits, target)``: logits ``(N, C, h, w)``; target dense ``(N, C, H, W)``, sparse
    ``(indices, weights)`` each ``(N, k, H, W)``, or integer ``(N, H, W)``.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        *,
        ignore_index: int | None = 255,
        weight: torch.Tensor | None = None,
        weight_mode: WeightMode = "class",
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
        kernel: str = "bilinear",
        antialias: bool = True,
    ) -> None:
        super().__init__()
        _check_options(reduction, weight_mode, label_smoothing)
        self.ignore_index = ignore_index
        self.weight_mode = weight_mode
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction
        self.kernel = kernel
        self.antialias = antialias
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight).float())

    def forward(self, logits: torch.Tensor, target: Target) -> torch.Tensor:
        return soft_cross_entropy(
            logits,
            target,
            ignore_index=self.ignore_index,
            weight=self.weight,
            weight_mode=self.weight_mode,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            kernel=self.kernel,
            antialias=self.antialias,
        )

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, weight_mode={self.weight_mode!r}, "
            f"label_smoothing={self.label_smoothing}, "
            f"reduction={self.reduction!r}, kernel={self.kernel!r}, antialias={self.antialias}"
        )


def median_frequency_weights(
    labels: Iterable[torch.Tensor], num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Median frequency balancing (Eigen & Fergus 2015; SegNet's CamVid setting): ``(C,)`` weights.

    ``freq_c`` is the pixel count of class ``c`` over the pixels of the maps in which ``c`` occurs,
    and ``w_c = median(freq) / freq_c``: rare classes weigh more, a class of median frequency 1.
    Classes absent from every map get weight 0 (they can be in no target); ignored pixels count
    for nothing.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    present_in = torch.zeros(num_classes, dtype=torch.float64)  # pixels of maps holding c
    for label in labels:
        flat = torch.as_tensor(label).reshape(-1).long()
        if ignore_index is not None:
            flat = flat[flat != ignore_index]
        bad = (flat < 0) | (flat >= num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"label values {torch.unique(flat[bad])[:8].tolist()} outside [0, {num_classes})"
                + ("" if ignore_index is None else f" and not the ignore value {ignore_index}")
            )
        here = torch.bincount(flat, minlength=num_classes).double()
        counts += here
        present_in += (here > 0).double() * flat.numel()
    seen = counts > 0
    if not bool(seen.any()):
        raise ValueError("no labelled pixels: cannot compute class frequencies")
    freq = torch.where(seen, counts / present_in.clamp(min=1), 0.0)
    median = freq[seen].median()
    return torch.where(seen, median / freq.clamp(min=1e-12), 0.0).float()
