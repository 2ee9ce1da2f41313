"""Soft cross-entropy: train on per-pixel class distributions, normalised by the valid mass.

For logits ``z`` ``(N, C, h, w)`` and a target distribution ``t`` ``(N, C, h, w)`` whose channel sum
``m`` is the valid fraction of each pixel (``1 - m`` is ignored), with class weights ``w_c``, the
default ``weight_mode="pixel"`` weighs each pixel by the mean class weight of its mass,
``w_bar = sum_c w_c t_c / m``, and keeps the target as it is::

    loss = - sum_{n,i,j} w_bar sum_c t_c log_softmax(z)_c  /  sum_{n,i,j} sum_c w_c t_c

The denominator is the class-weighted valid mass of the whole batch, so ignored mass neither adds
to the loss nor dilutes it. Pixels holding rare classes count more and the optimum stays ``t``.

``weight_mode="class"`` puts the weights inside the target instead::

    loss = - sum_{n,c,i,j} w_c t_c log_softmax(z)_c  /  sum_{n,i,j} sum_c w_c t_c

which moves the loss's optimum from ``t`` to ``w_c t_c / sum_k w_k t_k``: a pixel that is 10% pole
and 90% tree is then predicted mostly pole when pole weighs ten times tree (the CamVid study found
this costs soft labels dearly, ``docs/results.md``). For one-hot targets both modes are the same
loss, and an integer map with ``ignore_index`` gives exactly ``F.cross_entropy(z, labels, weight=w,
ignore_index=...)``.

Targets come in three forms (:mod:`softseg.train.targets`): dense ``(N, C, H, W)``, sparse top-k
``(indices, weights)`` and integer ``(N, H, W)``. The loss is computed in three steps, each a
function of its own: bring the target to the logits (:func:`~softseg.train.targets.target_at_logits`),
per-pixel losses with the class weights applied by mode and label smoothing (:func:`pixel_losses`),
and the reduction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .targets import Target, is_integer, target_at_logits

__all__ = [
    "WEIGHT_MODES",
    "SoftCrossEntropy",
    "median_frequency_weights",
    "pixel_losses",
    "soft_cross_entropy",
]

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


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 4:
        raise ValueError(f"logits must be (N, C, h, w), got shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if logits.numel() == 0:
        raise ValueError(f"logits must not be empty, got shape {tuple(logits.shape)}")


def _class_weights(
    weight: torch.Tensor | None, logits: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor | None:
    """``weight`` as ``(C,)`` non-negative values on the logits' device, in ``dtype``."""
    if weight is None:
        return None
    num_classes = logits.shape[1]
    weight = torch.as_tensor(weight)
    if weight.shape != (num_classes,):
        raise ValueError(
            f"weight must have shape ({num_classes},) for {num_classes} classes, "
            f"got {tuple(weight.shape)}"
        )
    weight = weight.to(logits.device, dtype)
    if bool((weight < 0).any()):
        raise ValueError(f"weight must be non-negative, got {weight.tolist()}")
    return weight


# --------------------------------------------------------------------------- the per-pixel terms
def _soft_ce_terms(
    logp: torch.Tensor,
    target: Target,
    weight: torch.Tensor | None,
    ignore_index: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel ``(sum_c w_c t_c logp_c, sum_c w_c t_c, sum_c t_c)``, each ``(N, h, w)``.

    ``target`` is already at the resolution of ``logp`` ``(N, C, h, w)``
    (:func:`~softseg.train.targets.target_at_logits`). Sparse and integer targets are gathered,
    never expanded to ``C`` channels. ``weight=None`` means all ones.
    """
    if isinstance(target, tuple):  # sparse: (indices, weights), (N, k, h, w)
        indices, mass = target
        indices = indices.long()
        picked = logp.gather(1, indices)
        weighted = mass if weight is None else mass * weight[indices]
        return (weighted * picked).sum(1), weighted.sum(1), mass.sum(1)
    if is_integer(target):  # (N, h, w) class indices
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


def _smoothed_terms(
    logp: torch.Tensor,
    target: Target,
    weight: torch.Tensor | None,
    eps: float,
    ignore_index: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel loss and class-weighted mass ``(N, h, w)`` of the target smoothed by ``eps``:
    ``(1 - eps) t + eps m / C``, with ``m`` the pixel's valid mass (ignored mass stays ignored)."""
    true_term, true_mass, mass = _soft_ce_terms(logp, target, weight, ignore_index)
    if eps <= 0:
        return -true_term, true_mass
    num_classes = logp.shape[1]
    # the uniform part eps * m / C of the target, weighted: (eps / C) * m * sum_c w_c logp_c
    uniform_term = logp.sum(1) if weight is None else (logp * weight.view(1, -1, 1, 1)).sum(1)
    class_weight = float(num_classes) if weight is None else weight.sum()
    pixel = -((1 - eps) * true_term + (eps / num_classes) * mass * uniform_term)
    pixel_mass = (1 - eps) * true_mass + (eps / num_classes) * mass * class_weight
    return pixel, pixel_mass


def pixel_losses(
    logp: torch.Tensor,
    target: Target,
    weight: torch.Tensor | None = None,
    *,
    weight_mode: WeightMode = "pixel",
    label_smoothing: float = 0.0,
    ignore_index: int | None = 255,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel loss and its class-weighted valid mass, both ``(N, h, w)``.

    ``logp`` are log-probabilities ``(N, C, h, w)``, ``target`` is at their resolution and on
    their device (:func:`~softseg.train.targets.target_at_logits`), ``weight`` ``(C,)`` or None.
    ``"class"`` weighs each class's share of the target; ``"pixel"`` weighs each pixel's loss and
    mass by the mean weight of its target, leaving the target itself unweighted.

    A pixel a quarter class 0 (weight 4), three quarters class 1 (weight 0), predicted 80/20:

    >>> logp = torch.log(torch.tensor([0.8, 0.2])).view(1, 2, 1, 1)
    >>> t = torch.tensor([0.25, 0.75]).view(1, 2, 1, 1)
    >>> w = torch.tensor([4.0, 0.0])
    >>> [round(float(v), 4) for v in pixel_losses(logp, t, w)]  # mean weight 1: the plain loss
    [1.2629, 1.0]
    >>> [round(float(v), 4) for v in pixel_losses(logp, t, w, weight_mode="class")]  # all class 0
    [0.2231, 1.0]
    """
    pixel_weight = None
    if weight is not None and weight_mode == "pixel":
        _, weighted_mass, mass = _soft_ce_terms(logp, target, weight, ignore_index)
        pixel_weight = weighted_mass / mass.clamp(min=torch.finfo(logp.dtype).tiny)
        weight = None
    pixel, pixel_mass = _smoothed_terms(logp, target, weight, float(label_smoothing), ignore_index)
    if pixel_weight is not None:
        pixel, pixel_mass = pixel_weight * pixel, pixel_weight * pixel_mass
    return pixel, pixel_mass


# --------------------------------------------------------------------------- reduction
def _reduce(pixel: torch.Tensor, pixel_mass: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return pixel
    if reduction == "sum":
        return pixel.sum()
    # Zero mass means every term of the sum is 0 * (finite log-prob): the sum is exactly 0 and its
    # gradient too, so dividing by a clamped mass gives a connected zero without a branch.
    return pixel.sum() / pixel_mass.sum().clamp(min=torch.finfo(pixel.dtype).tiny)


def _check_finite(loss: torch.Tensor, logits: torch.Tensor) -> None:
    finite = torch.isfinite(loss)
    if not bool(finite.all()):  # the one cheap check; diagnose only on failure
        value = loss.detach()[~finite].flatten()[0].item()
        bad = int((~torch.isfinite(logits)).sum())
        cause = f"{bad} non-finite logits" if bad else "non-finite target values or class weights"
        raise FloatingPointError(f"non-finite loss ({value}): {cause}")


def soft_cross_entropy(
    logits: torch.Tensor,
    target: Target,
    *,
    ignore_index: int | None = 255,
    weight: torch.Tensor | None = None,
    weight_mode: WeightMode = "pixel",
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
        weight_mode: ``"pixel"`` (the default) weighs each pixel by the mean weight of its target
            and keeps the optimum at the target; ``"class"`` weighs each class's share of the
            target (the optimum becomes the re-weighted target), ``F.cross_entropy``'s meaning.
            The same for one-hot targets without smoothing.
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
    2.14) without class weights, and with them for ``weight_mode="class"`` in every case but one:
    ``"mean"`` with both class weights and ``eps > 0``. There torch divides by the weights of the
    true classes, ``sum_pixels w_y``, while this function divides by the smoothed target's
    class-weighted mass, ``sum_pixels ((1 - eps) w_y + eps / C * sum_c w_c)``, so the loss stays a
    weighted mean of per-pixel cross-entropies; the summed loss is the same. (``"pixel"`` with
    ``eps > 0`` weighs the whole smoothed pixel by ``w_y``.)

    >>> logits = torch.zeros(1, 3, 2, 2)
    >>> round(soft_cross_entropy(logits, torch.zeros(1, 2, 2, dtype=torch.long)).item(), 4)
    1.0986
    """
    _check_logits(logits)
    _check_options(reduction, weight_mode, label_smoothing)
    # half-precision log-probabilities lose too much; compute in at least float32
    dtype = torch.promote_types(logits.dtype, torch.float32)
    weight = _class_weights(weight, logits, dtype)
    target = target_at_logits(
        target, logits, ignore_index=ignore_index, kernel=kernel, antialias=antialias
    )
    logp = F.log_softmax(logits.to(dtype), dim=1)
    pixel, pixel_mass = pixel_losses(
        logp, target, weight, weight_mode=weight_mode, label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )  # fmt: skip
    loss = _reduce(pixel, pixel_mass, reduction)
    _check_finite(loss, logits)
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
        weight_mode: WeightMode = "pixel",
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
