"""softseg: train semantic segmentation at reduced resolution without throwing label information away.

Shrink the label map with the same linear operator that shrinks the image, and each low-resolution
pixel carries the class proportions of exactly the input pixels that made its colour.

>>> import torch, softseg
>>> labels = torch.randint(0, 19, (1024, 2048))
>>> soft = softseg.soft_downsample(labels, (256, 512), num_classes=19)   # (19, 256, 512)
>>> image = softseg.resize_image(torch.rand(3, 1024, 2048), (256, 512))  # the matching image
"""

from .ops.baselines import (
    mode_downsample,
    mode_resized_crop,
    nearest_downsample,
    nearest_resized_crop,
)
from .ops.kernels import KERNELS, axis_weights
from .ops.resample import resize_image, resized_crop_image, soft_downsample, soft_resized_crop
from .ops.retention import class_retention
from .ops.sparse import dense_from_topk, topk_soft_labels

__version__ = "0.1.0"

__all__ = [
    "KERNELS",
    "axis_weights",
    "class_retention",
    "dense_from_topk",
    "mode_downsample",
    "mode_resized_crop",
    "nearest_downsample",
    "nearest_resized_crop",
    "resize_image",
    "resized_crop_image",
    "soft_downsample",
    "soft_resized_crop",
    "topk_soft_labels",
]
