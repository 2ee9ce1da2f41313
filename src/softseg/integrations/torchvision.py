"""Soft labels through torchvision ``transforms.v2``: the :class:`SoftLabel` ``tv_tensors`` type.

Put a :class:`SoftLabel` beside the image and v2's own geometric transforms resample it with the
image's operator, as soft labels: the result is what the pipeline does to the label's float one-hot
(ignored pixels and padding carry no mass), but the one-hot is never built at the input resolution.

>>> import torch
>>> from torchvision import tv_tensors
>>> from torchvision.transforms import v2
>>> from softseg.integrations.torchvision import SoftLabel
>>> image = tv_tensors.Image(torch.rand(3, 64, 96))
>>> label = SoftLabel(torch.randint(0, 5, (64, 96)), num_classes=5, ignore_index=255)
>>> pipeline = v2.Compose([v2.RandomResizedCrop((32, 48), antialias=True), v2.RandomHorizontalFlip()])
>>> image, label = pipeline(image, label)
>>> label.soft().shape
torch.Size([5, 32, 48])

How it works. A label starts *hard*: the integer map ``(H, W)`` (or ``(N, H, W)``). Crops, pads,
center crops and flips move its pixels exactly (padding is ignore, whatever ``fill`` the image gets,
because a padded one-hot has no mass). The first resize (``Resize``, ``RandomResizedCrop``,
``RandomResize``, ``RandomShortestSize``, ``ScaleJitter``, ...) turns it *soft*: a float32
``(C, h, w)`` computed straight from the integer map with :func:`softseg.soft_downsample`, the
operator of ``F.interpolate`` that torchvision applies to the image. Later ops treat the soft label
as torchvision treats a float image (padding with 0: no mass). :meth:`SoftLabel.soft` gives the
soft label in either state.

Interpolation: ``NEAREST``, ``BILINEAR`` and ``BICUBIC`` (the modes torchvision supports on float
tensors), with the transform's ``antialias``. Bicubic negative lobes are clamped after each resize
(:func:`softseg.ops.clamp_negative_lobes`), so the label stays a distribution.

Warps (``RandomRotation``, ``RandomAffine``, ``RandomPerspective``, ``ElasticTransform``) build the
very grid torchvision builds for the image (its own grid helpers: inverse affine matrix, centre,
``expand``, perspective coefficients, displacement) and sample a hard label with
:func:`softseg.soft_grid_sample` (``NEAREST`` or ``BILINEAR``, the modes v2 warps tensors with).
Outside the image carries no mass. torchvision blends ``fill`` in by a sampled mask ``m`` as
``m * (sampled - fill) + fill``, so the image content weighs ``m`` times its taps; the label gets
the same weight (``m * sampled``), which is that formula on the one-hot with ``fill = 0``. Five and
ten crops raise ``TypeError`` naming the op; photometric transforms pass a :class:`SoftLabel`
through untouched, as they do masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

# torchvision's own grid builders: the label must be sampled at exactly the image's positions
from torchvision.transforms.v2.functional import _geometry as _tvg

from ..ops.labels import check_label_values, clamp_negative_lobes
from ..ops.resample import soft_downsample
from ._tv_kernels import crop_reads_outside, grid_warp, move_pixels, warp_mode

__all__ = ["SUPPORTED_OPS", "UNSUPPORTED_OPS", "SoftLabel"]

_KERNEL_OF_MODE = {
    InterpolationMode.NEAREST: "nearest",
    InterpolationMode.BILINEAR: "bilinear",
    InterpolationMode.BICUBIC: "bicubic",
}


class SoftLabel(tv_tensors.TVTensor):
    """A segmentation label that v2 transforms resample into soft labels.

    Args:
        data: integer label map ``(H, W)`` or ``(N, H, W)`` (hard), or a float soft label
            ``(C, H, W)`` or ``(N, C, H, W)`` (soft) with ``C == num_classes``.
        num_classes: ``C``; valid labels are ``0 .. C-1``.
        ignore_index: the label value that carries no class mass (also what padding becomes while
            the label is hard).
        device: where to put the data.

    ``num_classes`` and ``ignore_index`` travel with the label through the transforms (and through
    ``.to()``, ``.clone()``, pickling).

    >>> label = SoftLabel(torch.tensor([[0, 1], [255, 1]]), num_classes=2)
    >>> label.is_soft, label.soft()[:, 1, :].tolist()
    (False, [[0.0, 0.0], [0.0, 1.0]])
    """

    num_classes: int
    ignore_index: int

    def __new__(
        cls,
        data: Any,
        *,
        num_classes: int,
        ignore_index: int = 255,
        device: torch.device | str | None = None,
    ) -> SoftLabel:
        tensor = cls._to_tensor(data, device=device, requires_grad=False)
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        if tensor.dtype.is_floating_point:
            if tensor.dim() not in (3, 4) or tensor.shape[-3] != num_classes:
                raise ValueError(
                    f"a float SoftLabel must be (C, H, W) or (N, C, H, W) with C = num_classes = "
                    f"{num_classes}, got shape {tuple(tensor.shape)}"
                )
        else:
            tensor = _checked_labels(tensor, num_classes, ignore_index)
        return cls._wrap(tensor, num_classes=num_classes, ignore_index=ignore_index)

    @classmethod
    def _wrap(cls, tensor: torch.Tensor, *, num_classes: int, ignore_index: int) -> SoftLabel:
        label = tensor.as_subclass(cls)
        label.num_classes = num_classes
        label.ignore_index = ignore_index
        return label

    @classmethod
    def wrap(cls, tensor: torch.Tensor, like: SoftLabel, **kwargs: Any) -> SoftLabel:
        """``tensor`` as a :class:`SoftLabel` with the metadata of ``like``."""
        return cls._wrap(tensor, num_classes=like.num_classes, ignore_index=like.ignore_index)

    @classmethod
    def _wrap_output(
        cls, output: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        # .to(), .clone(), .detach() keep the type: restore the metadata from the first SoftLabel
        like = next(
            (a for a in (*args, *(kwargs or {}).values()) if isinstance(a, SoftLabel)), None
        )
        if isinstance(output, torch.Tensor) and like is not None:
            return cls.wrap(output, like)
        if isinstance(output, tuple | list):
            return type(output)(cls._wrap_output(part, args, kwargs) for part in output)
        return output

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        return self._make_repr(num_classes=self.num_classes, ignore_index=self.ignore_index)

    @property
    def is_soft(self) -> bool:
        """Whether the label has been resampled into a float soft label yet."""
        return self.dtype.is_floating_point

    def soft(self) -> torch.Tensor:
        """The soft label as a plain float tensor ``(C, H, W)`` (``(N, C, H, W)`` for a batch).

        A hard label becomes its one-hot at its current size (ignored pixels all zero).
        """
        data = self.as_subclass(torch.Tensor)
        if data.dtype.is_floating_point:
            return data
        return soft_downsample(
            data, tuple(data.shape[-2:]), self.num_classes, ignore_index=self.ignore_index,
            kernel="area",
        )  # fmt: skip


def _checked_labels(tensor: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    if tensor.dtype == torch.bool or tensor.dtype.is_complex or tensor.dim() not in (2, 3):
        raise ValueError(
            f"a hard SoftLabel must be an integer (H, W) or (N, H, W) map, got dtype "
            f"{tensor.dtype} and shape {tuple(tensor.shape)}"
        )
    check_label_values(tensor, num_classes, ignore_index)
    info = torch.iinfo(tensor.dtype)
    if not info.min <= ignore_index <= info.max:  # padding must be able to write the ignore value
        tensor = tensor.long()
    return tensor


# --------------------------------------------------------------------------- kernels
def _rewrap(tensor: torch.Tensor, like: SoftLabel) -> SoftLabel:
    return SoftLabel.wrap(tensor, like)


def _index_op(
    label: SoftLabel, op: Callable[[torch.Tensor], torch.Tensor], pads_with_zero: bool = False
) -> SoftLabel:
    """Apply torchvision's image kernel ``op`` (a crop, pad or flip) to the label; for a hard one,
    ``pads_with_zero`` says whether ``op`` pads with 0, which must become ignore (no mass)."""
    data = label.as_subclass(torch.Tensor)
    if data.dtype.is_floating_point:
        return _rewrap(op(data), label)
    return _rewrap(move_pixels(data, label.ignore_index, op, pads_with_zero), label)


def _mode(interpolation: InterpolationMode | str, antialias: bool | None):
    if isinstance(interpolation, str):
        interpolation = InterpolationMode(interpolation)
    if interpolation not in _KERNEL_OF_MODE:
        raise ValueError(
            f"SoftLabel resizes with the image's operator, which must be one of "
            f"{[m.name for m in _KERNEL_OF_MODE]} (torchvision's float image modes); "
            f"got interpolation={interpolation!r}"
        )
    # torchvision's resize_image: antialias None means False, and nearest never antialiases
    antialias = bool(antialias) and interpolation != InterpolationMode.NEAREST
    return interpolation, antialias


def _resize(
    label: SoftLabel,
    size: list[int] | None,
    interpolation: InterpolationMode | str = InterpolationMode.BILINEAR,
    max_size: int | None = None,
    antialias: bool | None = True,
) -> SoftLabel:
    mode, antialias = _mode(interpolation, antialias)
    data = label.as_subclass(torch.Tensor)
    H, W = data.shape[-2:]
    # torchvision's own size rule (size, max_size), read off an empty image
    new_hw = tuple(F.resize_image(torch.empty(0, H, W), size, max_size=max_size).shape[-2:])
    if new_hw == (H, W):  # torchvision returns such an image untouched
        return label
    kernel = _KERNEL_OF_MODE[mode]
    if not data.dtype.is_floating_point:
        soft = soft_downsample(
            data, new_hw, label.num_classes, ignore_index=label.ignore_index, kernel=kernel,
            antialias=antialias,
        )  # fmt: skip
        return _rewrap(soft, label)
    soft = F.resize_image(data, list(new_hw), interpolation=mode, antialias=antialias)
    if kernel == "bicubic":
        soft = clamp_negative_lobes(soft, inplace=True)
    return _rewrap(soft, label)


def _resized_crop(
    label: SoftLabel,
    top: int,
    left: int,
    height: int,
    width: int,
    size: list[int],
    interpolation: InterpolationMode | str = InterpolationMode.BILINEAR,
    antialias: bool | None = True,
) -> SoftLabel:
    # torchvision's resized_crop_image is crop_image, then resize_image: the same here
    cropped = _crop(label, top, left, height, width)
    return _resize(cropped, size, interpolation=interpolation, antialias=antialias)


def _crop(label: SoftLabel, top: int, left: int, height: int, width: int) -> SoftLabel:
    outside = crop_reads_outside(label.shape[-2:], top, left, height, width)
    return _index_op(label, lambda x: F.crop_image(x, top, left, height, width), outside)


def _center_crop(label: SoftLabel, output_size: list[int]) -> SoftLabel:
    h, w = _tvg._center_crop_parse_output_size(output_size)
    pads = h > label.shape[-2] or w > label.shape[-1]
    return _index_op(label, lambda x: F.center_crop_image(x, output_size), pads)


def _pad(
    label: SoftLabel,
    padding: list[int],
    fill: Any = None,
    padding_mode: str = "constant",
) -> SoftLabel:
    # ``fill`` is the image's: a padded label has no mass, which a hard label writes as ignore
    value = 0 if label.is_soft else label.ignore_index
    return _index_op(label, lambda x: F.pad_image(x, padding, value, padding_mode=padding_mode))


def _get_size(label: SoftLabel) -> list[int]:
    return list(label.shape[-2:])


# --------------------------------------------------------------------------- warps
def _grid_warp(label: SoftLabel, grid: torch.Tensor, mode: str, fill: Any, image_op) -> SoftLabel:
    data = label.as_subclass(torch.Tensor)
    args = (label.num_classes, label.ignore_index, grid, mode, fill, image_op)
    return _rewrap(grid_warp(data, *args), label)


def _rotate(
    label: SoftLabel, angle: float, interpolation: InterpolationMode | str | int = "nearest",
    expand: bool = False, center: list[float] | None = None, fill: Any = None,
) -> SoftLabel:  # fmt: skip
    H, W = label.shape[-2:]
    turns, square = angle % 360, expand or H == W
    if center is None and (turns in (0, 180) or (square and turns in (90, 270))):
        # torchvision's exact fast paths (copy, rot90) move pixels: so do they here
        return _index_op(label, lambda x: F.rotate_image(x, angle, expand=expand))
    mode = warp_mode(interpolation)
    centre = [0.0, 0.0] if center is None else [center[0] - W / 2, center[1] - H / 2]
    matrix = _tvg._get_inverse_affine_matrix(centre, -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
    ow, oh = _tvg._compute_affine_output_size(matrix, W, H) if expand else (W, H)
    theta = torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3)
    grid = _tvg._affine_grid(theta, w=W, h=H, ow=ow, oh=oh)

    def image_op(x: torch.Tensor, fill0: Any) -> torch.Tensor:
        return F.rotate_image(x, angle, mode, expand=expand, center=center, fill=fill0)

    return _grid_warp(label, grid, mode, fill, image_op)


def _affine(
    label: SoftLabel, angle: float, translate: list[float], scale: float, shear: list[float],
    interpolation: InterpolationMode | str | int = "nearest", fill: Any = None,
    center: list[float] | None = None,
) -> SoftLabel:  # fmt: skip
    mode = warp_mode(interpolation)
    args = _tvg._affine_parse_args(angle, translate, scale, shear, InterpolationMode(mode), center)
    angle, translate, shear, center, (H, W) = (*args, label.shape[-2:])
    centre = [0.0, 0.0] if center is None else [center[0] - W / 2, center[1] - H / 2]
    matrix = _tvg._get_inverse_affine_matrix(
        centre, angle, [float(t) for t in translate], scale, shear
    )
    theta = torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3)
    grid = _tvg._affine_grid(theta, w=W, h=H, ow=W, oh=H)

    def image_op(x: torch.Tensor, fill0: Any) -> torch.Tensor:
        return F.affine_image(x, angle, translate, scale, shear, mode, fill0, center)

    return _grid_warp(label, grid, mode, fill, image_op)


def _perspective(
    label: SoftLabel, startpoints: list[list[int]] | None, endpoints: list[list[int]] | None,
    interpolation: InterpolationMode | str | int = "bilinear", fill: Any = None,
    coefficients: list[float] | None = None,
) -> SoftLabel:  # fmt: skip
    mode = warp_mode(interpolation)
    coeffs = _tvg._perspective_coefficients(startpoints, endpoints, coefficients)
    H, W = label.shape[-2:]
    grid = _tvg._perspective_grid(coeffs, ow=W, oh=H, dtype=torch.float32, device=label.device)

    def image_op(x: torch.Tensor, fill0: Any) -> torch.Tensor:
        return F.perspective_image(x, None, None, mode, fill0, coefficients=coeffs)

    return _grid_warp(label, grid, mode, fill, image_op)


def _elastic(
    label: SoftLabel, displacement: torch.Tensor,
    interpolation: InterpolationMode | str | int = "bilinear", fill: Any = None,
) -> SoftLabel:  # fmt: skip
    mode = warp_mode(interpolation)
    H, W = label.shape[-2:]
    if not isinstance(displacement, torch.Tensor) or displacement.shape != (1, H, W, 2):
        raise ValueError(
            f"displacement must be a (1, {H}, {W}, 2) tensor, got "
            f"{getattr(displacement, 'shape', type(displacement).__name__)}"
        )
    identity = _tvg._create_identity_grid((H, W), device=label.device, dtype=torch.float32)
    grid = identity.add_(displacement.to(dtype=torch.float32, device=label.device))

    def image_op(x: torch.Tensor, fill0: Any) -> torch.Tensor:
        return F.elastic_image(x, displacement, mode, fill0)

    return _grid_warp(label, grid, mode, fill, image_op)


#: v2 functionals a :class:`SoftLabel` supports, and the kernels registered for them.
SUPPORTED_OPS: dict[Callable, Callable] = {
    F.resize: _resize,
    F.resized_crop: _resized_crop,
    F.crop: _crop,
    F.center_crop: _center_crop,
    F.pad: _pad,
    F.horizontal_flip: lambda label: _index_op(label, F.horizontal_flip_image),
    F.vertical_flip: lambda label: _index_op(label, F.vertical_flip_image),
    F.get_size: _get_size,
    F.rotate: _rotate,
    F.affine: _affine,
    F.perspective: _perspective,
    F.elastic: _elastic,
}

#: Geometric v2 functionals that would otherwise pass a SoftLabel through unchanged (silently
#: misaligned with its image), with the transforms that call them.
UNSUPPORTED_OPS: dict[Callable, str] = {
    F.five_crop: "FiveCrop",
    F.ten_crop: "TenCrop",
}


def _refuse(op: Callable, users: str) -> Callable:
    def kernel(label: SoftLabel, *args: Any, **kwargs: Any) -> SoftLabel:
        raise TypeError(
            f"F.{op.__name__} (used by v2.{users}) is not supported for SoftLabel: soft labels "
            "follow one image at a time (resizes, crops, pads, flips and warps). Apply the crops to "
            "the integer label as a tv_tensors.Mask instead, or leave this transform out."
        )

    return kernel


for _op, _kernel in SUPPORTED_OPS.items():
    F.register_kernel(_op, SoftLabel)(_kernel)
for _op, _users in UNSUPPORTED_OPS.items():
    F.register_kernel(_op, SoftLabel)(_refuse(_op, _users))
