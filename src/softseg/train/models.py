"""Segmentation networks: segmentation-models-pytorch architectures and one tiny builtin.

Every model maps an image ``(N, in_channels, H, W)`` to logits ``(N, num_classes, h, w)``. The smp
models return ``h, w = H, W``; the builtin ``"tiny"`` model stops at ``H / output_stride`` and has
no up-sampling head, so its logits are smaller than its input and the loss brings the labels down
to them (:func:`softseg.train.losses.soft_cross_entropy`), which is what soft labels are for.

Nothing is downloaded: smp models are always built with ``encoder_weights=None``.

Default: ``create_model()`` builds ``"unet"`` with ``"resnet18"`` (14.3 M parameters). One training
step (forward, soft cross-entropy against 128x160 labels, backward) for a batch of 8 images of
128x160 with 11 classes, on 2 CPU threads, torch 2.14.1, best of 5 on a machine shared with other
jobs (medians there were 3-5x higher):

    unet/resnet18 1.42 s        unet/mobilenet_v2 1.18 s       unet/efficientnet-b0 1.38 s
    unet/tu-mobilenetv3_small_100 0.92 s                       fpn/resnet18 1.22 s
    linknet/resnet18 0.89 s     tiny 0.08 s

The lighter encoders gain at most 1.5x on CPU, so the conventional pair stays the default;
``"tiny"`` is the one for quick experiments and tests.

Input sizes: most smp models need ``H`` and ``W`` divisible by their encoder's output stride (32
for the usual encoders, 16 or 8 for the dilated DeepLab ones); :func:`required_divisor` says by
what, and :func:`pad_to_multiple` / :func:`unpad` pad an evaluation image and crop its prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import SegmentationModel
from torch import nn

__all__ = [
    "MODELS",
    "TinySegNet",
    "count_parameters",
    "create_model",
    "pad_to_multiple",
    "required_divisor",
    "unpad",
]


# --------------------------------------------------------------------------- the builtin model
def conv_bn_relu(c_in: int, c_out: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """A 3x3 convolution, batch norm and ReLU; padding keeps ``ceil(size / stride)``."""
    return nn.Sequential(
        # no conv bias: the batch norm right after it has its own
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinySegNet(nn.Module):
    """A few conv-bn-relu blocks and a 1x1 classifier; logits at ``1 / output_stride`` of the input.

    Each of the ``log2(output_stride)`` stages halves the resolution with a strided convolution and
    doubles the width; two dilated blocks at the end widen the receptive field without more
    down-sampling. An ``(N, in_channels, H, W)`` input gives logits ``(N, num_classes, ceil(H / s),
    ceil(W / s))`` with ``s = output_stride``; there is deliberately no up-sampling, so training
    pairs it with labels brought down to the logits' size.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 1, *, width: int = 16, output_stride: int = 4
    ) -> None:
        super().__init__()
        if output_stride not in (2, 4, 8):
            raise ValueError(f"output_stride must be 2, 4 or 8, got {output_stride}")
        if width <= 0 or in_channels <= 0 or num_classes <= 0:
            raise ValueError(
                "width, in_channels and num_classes must be positive, got "
                f"{width}, {in_channels}, {num_classes}"
            )
        self.output_stride = output_stride
        layers: list[nn.Module] = []
        c_in, c = in_channels, width
        for stage in range(int(math.log2(output_stride))):
            c = width * 2**stage
            layers += [conv_bn_relu(c_in, c, stride=2), conv_bn_relu(c, c)]
            c_in = c
        layers += [conv_bn_relu(c, c, dilation=2), conv_bn_relu(c, c, dilation=4)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, ceil(H / s), ceil(W / s))`` of ``(N, in_channels, H, W)``."""
        return self.classifier(self.features(x))


def tiny(
    *,
    encoder_name: str | None = None,
    encoder_weights: str | None = None,
    in_channels: int = 3,
    classes: int = 1,
    width: int = 16,
    output_stride: int = 4,
) -> TinySegNet:
    """:class:`TinySegNet` behind the smp calling convention, so :data:`MODELS` is uniform.

    ``encoder_name`` is accepted and ignored (the model has no exchangeable encoder);
    ``encoder_weights`` must be ``None`` because there are no pretrained weights for it.
    """
    if encoder_weights is not None:
        raise ValueError(f"the tiny model has no pretrained weights, got {encoder_weights!r}")
    return TinySegNet(in_channels, classes, width=width, output_stride=output_stride)


#: Architecture name -> constructor taking ``encoder_name``, ``encoder_weights``, ``in_channels``,
#: ``classes`` and architecture-specific keywords. All smp ones exist in smp 0.6.0, which also has
#: ``manet``, ``pan``, ``upernet`` and ``dpt`` (the last needs a ViT encoder); they are left out.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": smp.Unet,
    "unetplusplus": smp.UnetPlusPlus,
    "fpn": smp.FPN,
    "deeplabv3": smp.DeepLabV3,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "pspnet": smp.PSPNet,
    "linknet": smp.Linknet,
    "segformer": smp.Segformer,
    "tiny": tiny,
}


# --------------------------------------------------------------------------- building
def _check_encoder(encoder: str) -> None:
    if encoder in smp.encoders.get_encoder_names():
        return
    # smp also wraps any timm backbone as "tu-<timm name>"; timm knows its names offline
    if encoder.startswith("tu-") and timm.is_model(encoder[3:]):
        return
    raise ValueError(
        f"unknown encoder {encoder!r}; expected one of {smp.encoders.get_encoder_names()} "
        "or 'tu-<timm model name>'"
    )


def create_model(
    arch: str = "unet",
    encoder: str = "resnet18",
    num_classes: int = 1,
    in_channels: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """Build ``MODELS[arch]`` with randomly initialised weights (never downloads anything).

    Args:
        arch: a key of :data:`MODELS`.
        encoder: an smp encoder name (``smp.encoders.get_encoder_names()``) or ``"tu-<timm name>"``;
            ignored by ``"tiny"``.
        num_classes: number of output channels ``C``.
        in_channels: image channels.
        **kwargs: passed to the constructor (e.g. ``decoder_channels``, or ``width`` and
            ``output_stride`` for ``"tiny"``); ``encoder_weights`` other than ``None`` is refused.

    Returns:
        A module mapping ``(N, in_channels, H, W)`` to logits ``(N, num_classes, h, w)``.
    """
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(MODELS)}")
    if num_classes <= 0 or in_channels <= 0:
        raise ValueError(
            f"num_classes and in_channels must be positive, got {num_classes} and {in_channels}"
        )
    weights = kwargs.pop("encoder_weights", None)
    if weights is not None:
        raise ValueError(f"encoder_weights must be None (no downloads here), got {weights!r}")
    constructor = MODELS[arch]
    if isinstance(constructor, type) and issubclass(constructor, SegmentationModel):
        _check_encoder(encoder)
    return constructor(
        encoder_name=encoder,
        encoder_weights=None,
        in_channels=in_channels,
        classes=num_classes,
        **kwargs,
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- input sizes
def required_divisor(model: nn.Module) -> int:
    """The number ``H`` and ``W`` must be multiples of for ``model`` to accept an input.

    ``TinySegNet``: its output stride (any size runs, but only multiples give logits that tile
    the input exactly). smp models that check their input: the encoder's output stride (32, or
    16 / 8 for dilated encoders). smp's ``Unet`` resizes its skip features itself and needs
    nothing (1); other modules are assumed to need nothing either.
    """
    if isinstance(model, TinySegNet):
        return model.output_stride
    if isinstance(model, SegmentationModel):
        return int(model.encoder.output_stride) if model.requires_divisible_input_shape else 1
    return 1


def pad_to_multiple(
    x: torch.Tensor, multiple: int, value: float = 0.0
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad the last two dims of ``x`` (``(..., H, W)``) at the bottom and right up to multiples.

    Returns the padded tensor and the pads in :func:`torch.nn.functional.pad` order
    ``(left, right, top, bottom)`` (left and top are 0). Pad labels with the ignore value so the
    padding is never scored, and crop predictions back with :func:`unpad`.
    """
    if multiple <= 0:
        raise ValueError(f"multiple must be positive, got {multiple}")
    if x.dim() < 2:
        raise ValueError(f"x must be (..., H, W), got shape {tuple(x.shape)}")
    H, W = x.shape[-2:]
    pads = (0, -W % multiple, 0, -H % multiple)
    if pads == (0, 0, 0, 0):
        return x, pads
    return F.pad(x, pads, mode="constant", value=value), pads


def unpad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: drop ``pads = (left, right, top, bottom)`` from ``x``."""
    left, right, top, bottom = pads
    H, W = x.shape[-2:]
    return x[..., top : H - bottom, left : W - right]
