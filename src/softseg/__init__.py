"""softseg: train semantic segmentation at reduced resolution without throwing label information away.

Shrink the label map with the same linear operator that shrinks the image, and each low-resolution
pixel carries the class proportions of exactly the input pixels that made its colour.

>>> import torch, softseg
>>> labels = torch.randint(0, 19, (1024, 2048))
>>> soft = softseg.soft_downsample(labels, (256, 512), num_classes=19)   # (19, 256, 512)
>>> image = softseg.resize_image(torch.rand(3, 1024, 2048), (256, 512))  # the matching image
>>> loss = softseg.soft_cross_entropy(torch.randn(1, 19, 256, 512), soft[None])

The package reads as the pipeline: :mod:`softseg.ops` (the resampling core, which imports nothing
else of softseg), :mod:`softseg.data` (datasets), :mod:`softseg.train` (augmentation, loss,
metrics, models, the loop), :mod:`softseg.study` (comparison grids, reports, figures) and
:mod:`softseg.cli` on top.
"""

from typing import Any

from .data import build_dataset
from .ops.baselines import (
    mode_downsample,
    mode_resized_crop,
    nearest_downsample,
    nearest_resized_crop,
)
from .ops.batch import soft_resized_crop_batch
from .ops.grids import (
    affine_grid,
    displacement_grid,
    homography_grid,
    resized_warp_grid,
    rotation_affine,
)
from .ops.kernels import KERNELS, Resampler, axis_weights
from .ops.resample import resize_image, resized_crop_image, soft_downsample, soft_resized_crop
from .ops.retention import class_retention
from .ops.sparse import dense_from_topk, topk_soft_labels
from .ops.warp import soft_grid_sample, warp_image
from .train.losses import SoftCrossEntropy, soft_cross_entropy
from .train.metrics import SegmentationMetrics
from .train.transforms import EvalTransform, TrainTransform

__version__ = "0.1.0"

__all__ = [
    "KERNELS",
    "EvalTransform",
    "Resampler",
    "SegmentationMetrics",
    "SoftCrossEntropy",
    "TrainTransform",
    "affine_grid",
    "axis_weights",
    "build_dataset",
    "class_retention",
    "create_model",
    "dense_from_topk",
    "displacement_grid",
    "homography_grid",
    "mode_downsample",
    "mode_resized_crop",
    "nearest_downsample",
    "nearest_resized_crop",
    "resize_image",
    "resized_crop_image",
    "resized_warp_grid",
    "rotation_affine",
    "soft_cross_entropy",
    "soft_downsample",
    "soft_grid_sample",
    "soft_resized_crop",
    "soft_resized_crop_batch",
    "topk_soft_labels",
    "warp_image",
]


def __getattr__(name: str) -> Any:
    # segmentation-models-pytorch takes seconds to import: load the model factory on first use
    if name == "create_model":
        from .train.models import create_model

        return create_model
    raise AttributeError(f"module 'softseg' has no attribute {name!r}")
