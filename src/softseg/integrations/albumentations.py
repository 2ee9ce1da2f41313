"""Soft labels through Albumentations 2.x pipelines: :class:`SoftCompose`, a drop-in ``A.Compose``.

Pass the integer label as ``label=`` beside the image; the result holds ``"soft_label"``, a float32
``(C, h, w)`` tensor equal to what the same pipeline does to the label's float one-hot treated as an
image (same random parameters, the image's interpolation, ignored pixels and padding with zero
mass), computed without building that one-hot at the input resolution.

>>> import albumentations as A
>>> import numpy as np
>>> from softseg.integrations.albumentations import SoftCompose
>>> image = np.random.rand(64, 96, 3).astype(np.float32)
>>> labels = np.random.randint(0, 5, (64, 96))
>>> pipeline = SoftCompose([A.RandomResizedCrop((32, 48)), A.HorizontalFlip()], num_classes=5)
>>> out = pipeline(image=image, label=labels)
>>> out["image"].shape, tuple(out["soft_label"].shape)
((32, 48, 3), (5, 32, 48))

Why a ``Compose`` subclass that replays parameters. Albumentations offers three extension points:
new target types need every transform to learn them (``targets`` is per class), per-transform
subclasses would have to shadow each transform users already write, and ``additional_targets``
only maps new keys onto the existing ``image``/``mask`` functions, which would resize the label
with OpenCV at full resolution on ``C`` channels (the one-hot we avoid). What every transform
already exposes is the parameters it drew, ``get_applied_params()``. So :class:`SoftCompose` runs the
ordinary ``A.Compose`` on everything else (image, masks, boxes), then replays each applied geometric
transform on the label with those parameters: crops, pads and flips move the integer map exactly
(padding becomes ignore, or follows the border mode), the first resize turns it soft with
:func:`softseg.soft_downsample` (``convention="cv2"``, the operator of ``cv2.resize``), the first
warp with :func:`softseg.soft_grid_sample` at OpenCV's own source positions (module
``_albumentations_warps``), and later steps run Albumentations' own functions on the now small
float label. Transforms are checked when the pipeline is built: unsupported geometric transforms
raise ``TypeError`` naming the transform.

Supported: ``Resize``, ``RandomScale``, ``LongestMaxSize``, ``SmallestMaxSize``, ``RandomCrop``,
``CenterCrop``, ``Crop``, ``PadIfNeeded``, ``Pad``, ``RandomResizedCrop``, ``RandomSizedCrop``,
``HorizontalFlip``, ``VerticalFlip`` (exact classes), with ``INTER_NEAREST``, ``INTER_LINEAR``,
``INTER_AREA``, ``INTER_CUBIC`` or ``INTER_LANCZOS4`` and ``area_for_downscale``; the warps
``Affine`` (rotate, shear, scale, translate, ``fit_output``), ``Rotate`` (``crop_border`` too),
``SafeRotate``, ``ShiftScaleRotate``, ``Perspective`` (``keep_size``, ``fit_output``) and
``ElasticTransform`` with ``INTER_NEAREST``, ``INTER_LINEAR``, ``INTER_AREA`` (OpenCV warps it as
linear) or ``INTER_CUBIC`` and any of their border modes (``BORDER_CONSTANT`` is no mass outside the
image, the others copy label pixels as the one-hot's would be copied); any pixel-level
(``ImageOnlyTransform``) transform and ``ToTensorV2`` (the label comes out ``(C, h, w)`` either
way); nesting in ``Compose``, ``OneOf`` and ``Sequential``. Cubic and Lanczos negative lobes are
clamped after each resize or warp (:func:`softseg.ops.clamp_negative_lobes`), so the label stays a
distribution.

Exactness: crops, pads, flips and resizes match the one-hot pipeline to float rounding (2e-5).
Warps (OpenCV 5, measured) sample the label at OpenCV's own float32 source positions, its older
1/32-pixel path for a 2-class one-hot included; only the last partial SIMD block of a row rounds
positions differently, by up to one float32 ulp (``|x| * 6e-8`` px at position ``|x|``), which
moves a weight by as much and may, rarely, flip a nearest tie there: 3e-5 per class at 300 x 400,
6e-5 at 512 x 640 with ``fit_output``. OpenCV 4 rounds all float32 warp positions to 1/32 px;
not reproduced, so there the soft label may differ by up to 1/64 px of weight per axis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.core.composition import BaseCompose
from albumentations.core.transforms_interface import BasicTransform, ImageOnlyTransform
from albumentations.pytorch import ToTensorV2

from ..ops.labels import check_label_values, clamp_negative_lobes
from ..ops.resample import soft_downsample
from ._albumentations_warps import NO_MASS as _NO_MASS
from ._albumentations_warps import WARPS, check_warp

__all__ = ["SUPPORTED_TRANSFORMS", "SoftCompose"]

#: OpenCV interpolation flags the label can follow, and softseg's kernel for each.
_KERNEL_OF_FLAG = {
    cv2.INTER_NEAREST: "nearest",
    cv2.INTER_LINEAR: "bilinear",
    cv2.INTER_AREA: "area",
    cv2.INTER_CUBIC: "bicubic",
    cv2.INTER_LANCZOS4: "lanczos",
}
_NESTING = (A.Compose, A.OneOf, A.Sequential)  # compositions that apply children in list order


class _Label:
    """The label on its way through the pipeline: hard ``(H, W)`` int32 until the first resize,
    then soft ``(H, W, C)`` float32 (OpenCV's layout, so Albumentations' functions apply to it)."""

    def __init__(self, hard: np.ndarray, num_classes: int) -> None:
        self.data = hard
        self.num_classes = num_classes

    @property
    def is_soft(self) -> bool:
        return self.data.dtype == np.float32

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.data.shape[:2])

    def crop(self, x_min: int, y_min: int, x_max: int, y_max: int) -> None:
        self.data = np.ascontiguousarray(self.data[y_min:y_max, x_min:x_max])

    def flip(self, axis: int) -> None:
        self.data = np.ascontiguousarray(np.flip(self.data, axis))

    def pad(self, top: int, bottom: int, left: int, right: int, border_mode: int) -> None:
        # a constant border is no mass in the one-hot (fill 0), whatever the image's fill; other
        # modes copy pixels, which the hard map does exactly
        fill = _NO_MASS if not self.is_soft else 0.0
        out = fgeometric.pad_with_params(self.data, top, bottom, left, right, border_mode, fill)
        self.data = out if out.ndim == self.data.ndim else out[..., None]

    def resize(self, size: tuple[int, int], flag: int) -> None:
        if size == self.size:  # fgeometric.resize returns such an image untouched
            return
        kernel = _KERNEL_OF_FLAG[flag]
        if self.is_soft:
            out = fgeometric.resize(self.data, size, flag)
            soft = torch.from_numpy(out if out.ndim == 3 else out[..., None]).permute(2, 0, 1)
        else:
            soft = soft_downsample(
                torch.from_numpy(self.data), size, self.num_classes, ignore_index=_NO_MASS,
                kernel=kernel, convention="cv2",
            )  # fmt: skip
        if kernel in ("bicubic", "lanczos"):
            soft = clamp_negative_lobes(soft.contiguous())
        self.data = np.ascontiguousarray(soft.permute(1, 2, 0).numpy(), dtype=np.float32)

    def soft(self) -> torch.Tensor:
        """float32 ``(C, H, W)``; a label never resized becomes its one-hot."""
        if self.is_soft:
            return torch.from_numpy(self.data).permute(2, 0, 1).contiguous()
        data = torch.from_numpy(self.data)
        return soft_downsample(
            data, self.size, self.num_classes, ignore_index=_NO_MASS, kernel="area"
        )


# --------------------------------------------------------------------------- replay of one transform
def _image_flag(t: BasicTransform, before: tuple[int, int], after: tuple[int, int]) -> int:
    """The flag the transform resized the *image* with (``area_for_downscale`` switches to AREA)."""
    shrinks = after[0] < before[0] or after[1] < before[1]
    if getattr(t, "area_for_downscale", None) in ("image", "image_mask") and shrinks:
        return cv2.INTER_AREA
    return t.interpolation


def _resize(t: BasicTransform, label: _Label, params: dict, out: tuple[int, int]) -> None:
    label.resize(out, _image_flag(t, label.size, out))


def _crop_and_pad(t: BasicTransform, label: _Label, params: dict, out: tuple[int, int]) -> None:
    pad = params.get("pad_params")
    if pad is not None:
        label.pad(
            pad["pad_top"], pad["pad_bottom"], pad["pad_left"], pad["pad_right"], t.border_mode
        )
    label.crop(*params["crop_coords"])


def _pad(t: BasicTransform, label: _Label, params: dict, out: tuple[int, int]) -> None:
    p = params
    label.pad(p["pad_top"], p["pad_bottom"], p["pad_left"], p["pad_right"], t.border_mode)


def _resized_crop(t: BasicTransform, label: _Label, params: dict, out: tuple[int, int]) -> None:
    label.crop(*params["crop_coords"])
    size = tuple(t.size)
    label.resize(size, _image_flag(t, label.size, size))


Replay = Callable[[BasicTransform, _Label, dict, tuple[int, int]], None]
#: The transforms :class:`SoftCompose` follows (exact classes: a subclass may change the geometry).
SUPPORTED_TRANSFORMS: dict[type, Replay] = {
    A.Resize: _resize,
    A.RandomScale: _resize,
    A.LongestMaxSize: _resize,
    A.SmallestMaxSize: _resize,
    A.RandomCrop: _crop_and_pad,
    A.CenterCrop: _crop_and_pad,
    A.Crop: _crop_and_pad,
    A.PadIfNeeded: _pad,
    A.Pad: _pad,
    A.RandomResizedCrop: _resized_crop,
    A.RandomSizedCrop: _resized_crop,
    A.HorizontalFlip: lambda t, label, params, out: label.flip(1),
    A.VerticalFlip: lambda t, label, params, out: label.flip(0),
    # moves no pixels, but replayed in order: its input shape is the size the step before made
    ToTensorV2: lambda t, label, params, out: None,
    **WARPS,  # Affine and its subclasses, Perspective, ElasticTransform: _albumentations_warps
}


def _leaves(transforms: Sequence[Any]) -> Iterator[BasicTransform]:
    """The transforms in the order they can apply, refusing what the label cannot follow."""
    for t in transforms:
        if type(t) in _NESTING:
            yield from _leaves(t.transforms)
        elif isinstance(t, BaseCompose):
            raise TypeError(
                f"SoftCompose cannot follow {type(t).__name__}: it may apply its transforms in a "
                "random order; nest in Compose, OneOf or Sequential instead"
            )
        elif isinstance(t, ImageOnlyTransform):
            continue  # pixel-level: the label is untouched, as masks are
        elif type(t) not in SUPPORTED_TRANSFORMS:
            names = ", ".join(sorted(c.__name__ for c in SUPPORTED_TRANSFORMS))
            raise TypeError(
                f"{type(t).__name__} is not supported by SoftCompose: soft labels follow the "
                f"transforms {names}. Leave it out, or warp the integer label as a mask (nearest) "
                "with a plain A.Compose."
            )
        elif type(t) in WARPS:
            check_warp(t)
            yield t
        else:
            flag = getattr(t, "interpolation", cv2.INTER_LINEAR)
            if flag not in _KERNEL_OF_FLAG:
                raise ValueError(
                    f"{type(t).__name__} has interpolation={flag!r}; soft labels follow "
                    f"INTER_NEAREST, INTER_LINEAR, INTER_AREA, INTER_CUBIC and INTER_LANCZOS4 only"
                )
            yield t


class SoftCompose(A.Compose):
    """``A.Compose`` that also turns an integer ``label=`` into soft labels (``"soft_label"``).

    Args:
        transforms: as for ``A.Compose``; geometric transforms must be in
            :data:`SUPPORTED_TRANSFORMS` (checked here, ``TypeError`` naming the transform).
        num_classes: ``C``; valid labels are ``0 .. C-1``.
        ignore_index: label value with no class mass (``None``: every pixel must be a class).
        **kwargs: the other ``A.Compose`` arguments (``additional_targets``, ``bbox_params``,
            ``p``, ``seed``, ...).

    Call it as ``A.Compose`` with ``image=`` (``(H, W)`` or ``(H, W, channels)``) and
    ``label=``, an integer ``(H, W)`` array or tensor; the output dict adds ``"soft_label"``,
    float32 ``(C, h, w)`` torch tensor (channel sum = valid mass in ``[0, 1]``). Without ``label=``
    it is a plain ``A.Compose``.
    """

    def __init__(
        self,
        transforms: Sequence[Any],
        *,
        num_classes: int,
        ignore_index: int | None = 255,
        **kwargs: Any,
    ) -> None:
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        super().__init__(transforms, **kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._geometric = list(_leaves(self.transforms))

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
        if "label" not in data:
            return super().__call__(*args, force_apply=force_apply, **data)
        label = _Label(self._hard_label(data.pop("label"), data.get("image")), self.num_classes)
        for t in self._geometric:
            t.params = {}  # a transform skipped this call (OneOf, p) must not show stale params
        out = super().__call__(*args, force_apply=force_apply, **data)
        applied = [t for t in self._geometric if t.get_applied_params()]
        for i, t in enumerate(applied):
            # the size this step produced: what the next step saw, or the final image's
            nxt = applied[i + 1].get_applied_params()["shape"] if i + 1 < len(applied) else None
            size = tuple(nxt[:2]) if nxt is not None else tuple(out["image"].shape[:2])
            SUPPORTED_TRANSFORMS[type(t)](t, label, t.get_applied_params(), size)
        out["soft_label"] = label.soft()
        return out

    def _hard_label(self, label: Any, image: Any) -> np.ndarray:
        """``label`` as int32 ``(H, W)`` with ignored pixels at -1, checked against the image."""
        arr = label.numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"label must be an integer (H, W) map, got dtype {arr.dtype} and shape {arr.shape}"
            )
        if image is None or tuple(np.shape(image)[:2]) != arr.shape:
            got = None if image is None else tuple(np.shape(image)[:2])
            raise ValueError(f"label shape {arr.shape} must match image=(H, W, ...), got {got}")
        tensor = torch.from_numpy(np.ascontiguousarray(arr)).long()
        check_label_values(tensor, self.num_classes, self.ignore_index, what="label")
        if self.ignore_index is None:
            return tensor.int().numpy()
        return torch.where(tensor == self.ignore_index, _NO_MASS, tensor).int().numpy()
