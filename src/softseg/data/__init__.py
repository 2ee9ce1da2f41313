"""Segmentation datasets: real layouts on disk (CamVid, Cityscapes, ADE20K, Mapillary Vistas, a
plain folder) and synthetic street scenes, all yielding ``(image uint8 (3,H,W), label (H,W), name)``
with 255 as the ignore value.

>>> from softseg.data import build_dataset
>>> ds = build_dataset("synthetic", split="val", num_images=2, size=(64, 128))
>>> image, label, name = ds[0]
>>> tuple(image.shape), tuple(label.shape), ds.info.num_classes
((3, 64, 128), (64, 128), 11)
"""

from .datasets import (
    ADE20K,
    ADE20K_INFO,
    CAMVID_INFO,
    CITYSCAPES_INFO,
    DATASETS,
    CamVid,
    Cityscapes,
    DatasetInfo,
    FolderDataset,
    LabelMapping,
    MapillaryVistas,
    SegmentationFolder,
    build_dataset,
    folder_info,
    generated_colors,
    load_image,
    load_label,
    mapillary_info,
)
from .synthetic import SYNTHETIC_INFO, SyntheticStreets, synthetic_split

__all__ = [
    "ADE20K",
    "ADE20K_INFO",
    "CAMVID_INFO",
    "CITYSCAPES_INFO",
    "DATASETS",
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
    "synthetic_split",
]
