"""Segmentation datasets: real layouts on disk (CamVid, Cityscapes, ADE20K, Mapillary Vistas, a
plain folder) and synthetic street scenes, all yielding ``(image uint8 (3,H,W), label (H,W), name)``
with 255 as the ignore value.

Modules: :mod:`.base` (what every file dataset shares), one module per dataset, :mod:`.colors`
(palettes and colourised maps) and :mod:`.registry` (datasets by name, split expressions).

>>> from softseg.data import build_dataset
>>> ds = build_dataset("synthetic", split="val", num_images=2, size=(64, 128))
>>> image, label, name = ds[0]
>>> tuple(image.shape), tuple(label.shape), ds.info.num_classes
((3, 64, 128), (64, 128), 11)
"""

from .ade20k import ADE20K, ADE20K_INFO
from .base import (
    IMAGE_SUFFIXES,
    DatasetInfo,
    LabelMapping,
    SegmentationFolder,
    load_image,
    load_label,
)
from .camvid import CAMVID_INFO, CamVid
from .cityscapes import CITYSCAPES_INFO, Cityscapes
from .colors import generated_colors
from .folder import FolderDataset, folder_info
from .mapillary import MapillaryVistas, mapillary_info
from .registry import DATASETS, build_dataset, parse_split, select_frames
from .synthetic import SYNTHETIC_INFO, SyntheticStreets, synthetic_split

__all__ = [
    "ADE20K",
    "ADE20K_INFO",
    "CAMVID_INFO",
    "CITYSCAPES_INFO",
    "DATASETS",
    "IMAGE_SUFFIXES",
    "SYNTHETIC_INFO",
    "CamVid",
    "Cityscapes",
    "DatasetInfo",
    "FolderDataset",
    "LabelMapping",
    "MapillaryVistas",
    "SegmentationFolder",
    "SyntheticStreets",
    "build_dataset",
    "folder_info",
    "generated_colors",
    "load_image",
    "load_label",
    "mapillary_info",
    "parse_split",
    "select_frames",
    "synthetic_split",
]
