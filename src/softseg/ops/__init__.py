"""The core: soft label resampling and its baselines. Imports nothing from the rest of softseg.

- :mod:`.kernels`: the 1-D filters of torch and PIL as banded weights for an axis or a crop box,
  and :class:`Resampler`, the value that names one of them.
- :mod:`.resample`: soft labels and their paired image resampling (the idea of softseg), with the
  dense reference the fast path must equal.
- :mod:`.labels`: the label dtype policy, the label range check and the negative-lobe clamp.
- :mod:`.baselines`: nearest and majority label down-sampling, for comparison.
- :mod:`.sparse`, :mod:`.retention`: top-k soft labels; how much of each class survives.
- :mod:`.warp` and :mod:`.grids`: soft labels through any sampling grid (rotation, affine,
  perspective, elastic) and the grids themselves.
- :mod:`.batch`: soft labels of a whole batch, one crop box per sample (for the training step).
"""

from .baselines import mode_downsample, mode_resized_crop, nearest_downsample, nearest_resized_crop
from .batch import soft_resized_crop_batch
from .grids import (
    affine_grid,
    crop_affine,
    displacement_grid,
    homography_grid,
    resized_warp_grid,
    rotation_affine,
)
from .kernels import (
    KERNELS,
    NEGATIVE_LOBE_KERNELS,
    AxisWeights,
    Convention,
    Resampler,
    axis_weights,
)
from .labels import as_label_tensor, check_label_values, clamp_negative_lobes
from .resample import (
    resize_image,
    resized_crop_image,
    soft_downsample,
    soft_downsample_reference,
    soft_resized_crop,
    soft_resized_crop_reference,
)
from .retention import METHODS, class_retention, one_hot_labels
from .sparse import dense_from_topk, index_dtype, topk_soft_labels
from .warp import soft_grid_sample, warp_image

__all__ = [
    "KERNELS",
    "METHODS",
    "NEGATIVE_LOBE_KERNELS",
    "AxisWeights",
    "Convention",
    "Resampler",
    "affine_grid",
    "as_label_tensor",
    "axis_weights",
    "check_label_values",
    "clamp_negative_lobes",
    "class_retention",
    "crop_affine",
    "dense_from_topk",
    "displacement_grid",
    "homography_grid",
    "index_dtype",
    "mode_downsample",
    "mode_resized_crop",
    "nearest_downsample",
    "nearest_resized_crop",
    "one_hot_labels",
    "resize_image",
    "resized_crop_image",
    "resized_warp_grid",
    "rotation_affine",
    "soft_downsample",
    "soft_downsample_reference",
    "soft_grid_sample",
    "soft_resized_crop",
    "soft_resized_crop_batch",
    "soft_resized_crop_reference",
    "topk_soft_labels",
    "warp_image",
]
