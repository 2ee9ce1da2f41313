"""Joint image/label augmentation that keeps the pair coherent.

All geometry (down-sampling factor, random scale, random crop with padding) is one crop box in input
pixels, resampled once: the image with :func:`softseg.resized_crop_image`, the label with the same
operator (``soft``) or with the usual hard methods (``nearest``, ``mode``). Flips are applied to both
after resampling; photometric jitter touches the image only. Randomness comes from a
``torch.Generator`` the caller seeds, so a sample is a pure function of (seed, epoch, index), whatever
the worker that makes it: that is what lets a killed run resume exactly.

Shapes: image ``(3, H, W)`` uint8 or float in [0, 1]; label ``(H, W)`` integer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ..ops.baselines import mode_resized_crop, nearest_resized_crop
from ..ops.resample import resized_crop_image, soft_resized_crop
from ..ops.sparse import topk_soft_labels
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
            x, y = x.flip(-1), y.flip(-1)
        if self.jitter > 0:
            x = _jitter(x.clamp(0.0, 1.0), self.jitter, g)
        if self.topk is not None and self.label_method == "soft":
            y = topk_soft_labels(y, self.topk)
        return normalize(x), y


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
