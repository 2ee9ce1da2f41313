"""Joint image/label augmentation that keeps the pair coherent.

All geometry (down-sampling factor, random scale, random crop with padding) is one crop box in input
pixels, resampled once: the image with :func:`softseg.resized_crop_image`, the label with the same
operator (``soft``) or with the usual hard methods (``nearest``, ``mode``). Flips are applied to both
after resampling; photometric jitter touches the image only. An opt-in random rotation
(``rotation``) joins the crop box into one affine warp, sampled once for both (see
:func:`warp_pair`). Randomness comes from a
``torch.Generator`` the caller seeds, so a sample is a pure function of (seed, epoch, index), whatever
the worker that makes it: that is what lets a killed run resume exactly.

Shapes: image ``(3, H, W)`` uint8 or float in [0, 1]; label ``(H, W)`` integer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ..ops.baselines import mode_resized_crop, nearest_resized_crop
from ..ops.grids import resized_warp_grid, rotation_affine
from ..ops.kernels import Resampler, axis_weights
from ..ops.resample import resized_crop_image, soft_resized_crop
from ..ops.sparse import topk_soft_labels
from ..ops.warp import MODES as WARP_MODES
from ..ops.warp import soft_grid_sample, warp_image
from .targets import Target

LabelMethod = Literal["soft", "nearest", "mode"]
LABEL_METHODS: tuple[str, ...] = ("soft", "nearest", "mode")

#: ImageNet statistics, which the segmentation-models-pytorch encoders expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends on (seed, epoch, index) only, for reproducible augmentation."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def normalize(image: torch.Tensor) -> torch.Tensor:
    """Image in [0, 1] ``(..., 3, H, W)`` to encoder input (ImageNet mean and std)."""
    mean = torch.tensor(MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image - mean) / std


def _to_unit(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255.0 if not image.dtype.is_floating_point else image


def resample_label(
    label: torch.Tensor,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    method: str,
    num_classes: int,
    *,
    kernel: str = "bilinear",
    antialias: bool = True,
    ignore_index: int = 255,
) -> torch.Tensor:
    """One label method on one crop box: soft ``(C, h, w)`` float, or hard ``(h, w)`` int64."""
    if method == "soft":
        return soft_resized_crop(
            label, *box, size, num_classes,
            ignore_index=ignore_index, kernel=kernel, antialias=antialias,
        )  # fmt: skip
    if method == "nearest":
        return nearest_resized_crop(label, *box, size, ignore_index=ignore_index).long()
    if method == "mode":
        return mode_resized_crop(label, *box, size, num_classes, ignore_index=ignore_index).long()
    raise ValueError(f"label method must be one of {LABEL_METHODS}, got {method!r}")


class LabelWindow(NamedTuple):
    """What a worker ships when soft labels are made in the training step (``soft_in_step``):
    the integer label pixels the crop's filter reads, the box relative to them, and the flip.

    ``window`` ``(h, w)`` in the label's dtype (``uint8`` is 20-150x smaller than the ``(C, h, w)``
    float soft label), ``box`` ``(4,)`` float64 ``(top, left, height, width)`` in window pixels,
    ``flip`` a 0-d bool tensor: flip the soft label after resampling, as the worker path does.
    """

    window: torch.Tensor
    box: torch.Tensor
    flip: torch.Tensor


#: Extra input pixels kept on each side of a window's taps: the filter's whole support is
#: already inside the taps; the margin only guards float ties at a tap's edge.
WINDOW_MARGIN = 2


def _tap_span(n_in: int, n_out: int, start: float, length: float, rs: Resampler) -> tuple[int, int]:
    """The input range ``[lo, hi)`` that every tap of the box's band lies in, widened by
    :data:`WINDOW_MARGIN` within ``[0, n_in)``. A box reaching past the border has taps clipped to
    it, so the range then reaches the border and the window keeps the frame's border handling."""
    index = axis_weights(n_in, n_out, start=start, length=length, resampler=rs).index
    lo = max(0, int(index.min()) - WINDOW_MARGIN)
    return lo, min(n_in, int(index.max()) + 1 + WINDOW_MARGIN)


def label_window(
    label: torch.Tensor,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    resampler: Resampler,
) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """The part of ``label`` ``(H, W)`` that ``soft_resized_crop(label, *box, size, ...)`` reads
    (a copy) and the box relative to it: the same soft label, up to float32 rounding, comes from
    the window and the shifted box, because every tap lies inside the window, and the window ends
    where the frame does whenever a tap is clipped to the frame's border.

    >>> label = torch.arange(100).view(10, 10) % 3
    >>> window, rel = label_window(label, (4.0, 4.0, 2.0, 2.0), (1, 1), Resampler())
    >>> tuple(window.shape), rel  # taps 3..6 (the antialiased filter), then the margin of 2
    ((8, 8), (3.0, 3.0, 2.0, 2.0))
    """
    top, left, height, width = box
    r0, r1 = _tap_span(label.shape[-2], size[0], top, height, resampler)
    c0, c1 = _tap_span(label.shape[-1], size[1], left, width, resampler)
    # integer offsets: the shifted box is exact in float64
    return label[r0:r1, c0:c1].clone(), (top - r0, left - c0, height, width)


def supersampling(box: tuple[float, float, float, float], size: tuple[int, int], cap: int) -> int:
    """Samples per output pixel and axis that antialias a warp of ``box`` to ``size``: the input
    pixels per output pixel, rounded up, at least 1 and at most ``cap``."""
    per_pixel = max(box[2] / size[0], box[3] / size[1])
    return max(1, min(int(cap), math.ceil(per_pixel - 1e-9)))  # 1e-9: exact factors stay exact


def warp_pair(
    image: torch.Tensor, label: torch.Tensor, box: tuple[float, float, float, float],
    angle: float, size: tuple[int, int], num_classes: int, *, method: str = "soft",
    image_kernel: str = "bilinear", label_kernel: str | None = None, supersample: int = 1,
    fill: float | tuple[float, ...] = 0.0, ignore_index: int = 255,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Rotate by ``angle`` degrees about the frame centre, then resized-crop ``box``, as one warp.

    ``image`` ``(K, H, W)`` float goes through :func:`softseg.warp_image` (outside: ``fill``) and a
    ``soft`` label through :func:`softseg.soft_grid_sample` with the *same* grid, so the soft label
    is the image operator applied to the one-hot. ``grid_sample`` does not antialias (each output
    pixel reads 4 taps whatever the shrink factor), so the grid is built at ``supersample`` times
    ``size`` and both results are average-pooled ``supersample x supersample``: one linear operator
    for both, and the pair stays exact. ``nearest`` is the usual mask warp: the label read with
    ``mode="nearest"`` at the output grid, ``ignore_index`` outside.

    Returns the image ``(K, h, w)`` and the label: soft ``(C, h, w)`` or hard ``(h, w)`` int64.

    >>> label = torch.randint(0, 3, (40, 40))
    >>> onehot = torch.nn.functional.one_hot(label, 3).permute(2, 0, 1).float()
    >>> x, y = warp_pair(onehot, label, (4, 4, 32, 32), 30.0, (8, 8), 3, supersample=4)
    >>> torch.allclose(x, y, atol=1e-6)
    True
    """
    if method not in ("soft", "nearest"):
        raise ValueError(f"method must be 'soft' or 'nearest' with a rotation, got {method!r}")
    H, W = label.shape[-2:]
    theta = rotation_affine(angle, size=(H, W))
    s = int(supersample)
    fine = (size[0] * s, size[1] * s)
    grid = resized_warp_grid((H, W), fine, theta=theta, box=box)
    x = _pool(warp_image(image, grid, mode=image_kernel, fill=fill)[0], s)
    if method == "soft":
        kernel = label_kernel or image_kernel
        y = soft_grid_sample(label, grid, num_classes, mode=kernel, ignore_index=ignore_index)
        return x, _pool(y[0], s)
    grid = grid if s == 1 else resized_warp_grid((H, W), size, theta=theta, box=box)
    hit = soft_grid_sample(label, grid, num_classes, mode="nearest", ignore_index=ignore_index)[0]
    # a nearest sample is a one-hot, or empty where it reads outside or an ignored pixel
    return x, torch.where(hit.sum(0) > 0.5, hit.argmax(0), ignore_index).long()


def _pool(x: torch.Tensor, s: int) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(x.unsqueeze(0), s)[0] if s > 1 else x


@dataclass
class TrainTransform:
    """Random scale, crop, flip and jitter at a reduced resolution, coherent for image and label.

    The full frame is shrunk by ``factor`` and then by a random scale ``s`` from ``scale_range``
    (``s > 1`` enlarges); a ``crop_size`` window of that is taken at a random position, padded where the
    scaled frame is smaller (image with the mean colour, label with ignore). The window is mapped back
    to one box in the input, which is resampled once.

    Args:
        num_classes: classes of the dataset.
        factor: down-sampling factor of the full frame (1 = native resolution).
        crop_size: ``(h, w)`` of the training window in output pixels.
        label_method: ``soft`` (same operator as the image), ``nearest`` or ``mode``.
        image_kernel: resampling kernel of the image (torch convention).
        label_kernel: kernel of the soft labels; ``None`` uses the image's (coherent pairs).
        antialias: antialiased image (and soft label) resampling when shrinking.
        scale_range: random scale range; ``(1, 1)`` disables it.
        hflip: flip both horizontally with probability 1/2.
        jitter: strength of brightness/contrast/saturation jitter of the image (0 disables).
        topk: return soft labels in the sparse ``(indices, weights)`` form with ``k`` classes.
        ignore_index: the label value to ignore.
        rotation: maximum random rotation in degrees (angle uniform in ``[-rotation, rotation]``);
            0, the default, is off and draws no random number, so samples stay as without it.
            On, rotation and crop box are one warp (:func:`warp_pair`): kernels ``nearest``,
            ``bilinear`` or ``bicubic``; label methods ``soft`` or ``nearest``; with
            ``antialias`` the warp is supersampled by the shrink factor (capped at
            ``max_supersample``) and average-pooled, for image and soft label alike.
        max_supersample: the cap on that supersampling (per axis).
        soft_in_step: ship a :class:`LabelWindow` for ``soft`` labels instead of the soft label
            (or its top-k): the training step makes the whole batch's soft labels at once
            (:func:`softseg.train.inputs.soft_from_windows`), flip and top-k included. Every
            random draw is the same as without it. Not with ``rotation`` > 0.
    """

    num_classes: int
    factor: float
    crop_size: tuple[int, int]
    label_method: str = "soft"
    image_kernel: str = "bilinear"
    label_kernel: str | None = None
    antialias: bool = True
    scale_range: tuple[float, float] = (1.0, 1.0)
    hflip: bool = True
    jitter: float = 0.0
    topk: int | None = None
    ignore_index: int = 255
    rotation: float = 0.0
    max_supersample: int = 4
    soft_in_step: bool = False

    def __post_init__(self) -> None:
        if self.label_method not in LABEL_METHODS:
            raise ValueError(
                f"label_method must be one of {LABEL_METHODS}, got {self.label_method!r}"
            )
        if not self.factor > 0:
            raise ValueError(f"factor must be positive, got {self.factor}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        if min(self.crop_size) <= 0:
            raise ValueError(f"crop_size must be positive, got {self.crop_size}")
        if not 0 <= self.rotation <= 180:  # also refuses nan
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation!r}")
        if not (isinstance(self.max_supersample, int) and self.max_supersample >= 1):
            raise ValueError(f"max_supersample must be an int >= 1, got {self.max_supersample!r}")
        if self.rotation > 0:
            _check_warp(self.label_method, self.image_kernel, self.label_kernel)
        if self.soft_in_step and (self.label_method != "soft" or self.rotation > 0):
            raise ValueError(
                "soft_in_step makes axis-aligned soft labels in the training step: it needs "
                f"label_method 'soft' and rotation 0, got {self.label_method!r} and "
                f"{self.rotation!r} (the rotated warp is made in the workers)"
            )

    def sample_box(self, height: int, width: int, g: torch.Generator):
        """The random crop box in input pixels for a ``height x width`` frame."""
        lo, hi = self.scale_range
        # log-uniform, so that 0.5 and 2 are equally likely around 1
        s = math.exp(
            math.log(lo) + (math.log(hi) - math.log(lo)) * float(torch.rand(1, generator=g))
        )
        px = self.factor / s  # input pixels per output pixel
        ch, cw = self.crop_size
        full_h, full_w = height / px, width / px
        top = _offset(full_h, ch, g)
        left = _offset(full_w, cw, g)
        return (top * px, left * px, ch * px, cw * px)

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, g: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Target]:
        g = g if g is not None else torch.Generator().manual_seed(0)
        if image.shape[-2:] != label.shape[-2:]:
            raise ValueError(
                f"image {tuple(image.shape[-2:])} and label {tuple(label.shape[-2:])} differ in size"
            )
        box = self.sample_box(*label.shape[-2:], g)
        flip = self.hflip and bool(torch.rand(1, generator=g) < 0.5)
        flip_label, topk = True, self.topk
        if self.rotation > 0:  # only then a draw: rotation-free samples stay as they were
            angle = self.rotation * (2.0 * float(torch.rand(1, generator=g)) - 1.0)
            s = supersampling(box, self.crop_size, self.max_supersample) if self.antialias else 1
            x, y = warp_pair(
                _to_unit(image), label, box, angle, self.crop_size, self.num_classes,
                method=self.label_method, image_kernel=self.image_kernel,
                label_kernel=self.label_kernel, supersample=s, fill=MEAN,
                ignore_index=self.ignore_index,
            )  # fmt: skip
        elif self.soft_in_step:
            x = resized_crop_image(
                _to_unit(image), *box, self.crop_size,
                kernel=self.image_kernel, antialias=self.antialias, fill=MEAN,
            )  # fmt: skip
            window, rel = label_window(label, box, self.crop_size, self.label_resampler)
            y = LabelWindow(window, torch.tensor(rel, dtype=torch.float64), torch.tensor(flip))
            flip_label, topk = False, None  # both done in the step, after the batched op
        else:
            x = resized_crop_image(
                _to_unit(image), *box, self.crop_size,
                kernel=self.image_kernel, antialias=self.antialias, fill=MEAN,
            )  # fmt: skip
            y = resample_label(
                label, box, self.crop_size, self.label_method, self.num_classes,
                kernel=self.label_kernel or self.image_kernel, antialias=self.antialias,
                ignore_index=self.ignore_index,
            )  # fmt: skip
        if flip:
            x = x.flip(-1)
            y = y.flip(-1) if flip_label else y
        if self.jitter > 0:
            x = _jitter(x.clamp(0.0, 1.0), self.jitter, g)
        if topk is not None and self.label_method == "soft":
            y = topk_soft_labels(y, topk)
        return normalize(x), y

    @property
    def label_resampler(self) -> Resampler:
        """The resampler of the soft labels (torch convention), as the worker path uses it."""
        kernel = self.label_kernel or self.image_kernel
        return Resampler.resolve(None, kernel=kernel, antialias=self.antialias)


def _check_warp(method: str, image_kernel: str, label_kernel: str | None) -> None:
    if method == "mode":
        raise ValueError(
            "label_method 'mode' does not work with rotation > 0 (the majority vote is defined "
            "on axis-aligned blocks only); use 'soft' or 'nearest'"
        )
    for name, kernel in (("image_kernel", image_kernel), ("label_kernel", label_kernel)):
        if kernel is not None and kernel not in WARP_MODES:
            raise ValueError(
                f"{name} must be one of {WARP_MODES} with rotation > 0 (grid_sample's modes), "
                f"got {kernel!r}"
            )


def _offset(full: float, crop: int, g: torch.Generator) -> float:
    """Random window start along one axis; negative (padding before) when the frame is smaller."""
    slack = full - crop
    u = float(torch.rand(1, generator=g))
    return u * slack  # in [0, slack] when larger, [slack, 0] (padding) when smaller


def _jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    def factor() -> float:
        return 1.0 + strength * (2.0 * float(torch.rand(1, generator=g)) - 1.0)

    x = TF.adjust_brightness(x, factor())
    x = TF.adjust_contrast(x, factor())
    return TF.adjust_saturation(x, factor())


@dataclass
class EvalTransform:
    """The evaluation input: the whole frame shrunk by ``factor``; the label stays at full size,
    because scores are computed at the original label resolution."""

    factor: float
    image_kernel: str = "bilinear"
    antialias: bool = True

    def transform_image(self, image: torch.Tensor) -> torch.Tensor:
        """The model input for an image alone (prediction): ``(3, H, W)`` to ``(3, H/f, W/f)``.

        >>> x = EvalTransform(4).transform_image(torch.zeros(3, 64, 96, dtype=torch.uint8))
        >>> tuple(x.shape)
        (3, 16, 24)
        """
        H, W = image.shape[-2:]
        size = (max(1, round(H / self.factor)), max(1, round(W / self.factor)))
        x = resized_crop_image(
            _to_unit(image), 0, 0, H, W, size, kernel=self.image_kernel, antialias=self.antialias
        )
        return normalize(x)

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model input and the label, untouched but as int64 ``(H, W)``."""
        return self.transform_image(image), label.long()
