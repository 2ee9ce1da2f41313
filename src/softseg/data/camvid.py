"""CamVid in the SegNet distribution: 11 classes plus void, 480x360 frames.

>>> CAMVID_INFO.num_classes, CAMVID_INFO.classes[2]
(11, 'pole')
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    IGNORE_INDEX,
    DatasetInfo,
    LabelMapping,
    SegmentationFolder,
    existing_dir,
    glob_nonempty,
    pair_with,
    resolve_split,
)

__all__ = ["CAMVID_INFO", "CAMVID_MAPPING", "CamVid"]

CAMVID_INFO = DatasetInfo(
    name="camvid",
    classes=(
        "sky", "building", "pole", "road", "sidewalk", "tree",
        "sign", "fence", "car", "pedestrian", "bicyclist",
    ),
    # The colours of the SegNet tutorial's CamVid palette.
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
)  # fmt: skip
# Raw 11 is "void"; 255 is accepted too, for masks already written in train-id form.
CAMVID_MAPPING = LabelMapping.identity(11, ignore=(11, IGNORE_INDEX))


class CamVid(SegmentationFolder):
    """CamVid in the SegNet layout: ``<root>/<split>/*.png`` with ``<root>/<split>annot/*.png``."""

    SPLITS = ("train", "val", "test")
    LAYOUT = "<root>/<split>/*.png with labels <root>/<split>annot/*.png"

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = existing_dir(Path(root), "CamVid root", self.LAYOUT)
        present = [s for s in self.SPLITS if (root / s).is_dir() and (root / f"{s}annot").is_dir()]
        split = resolve_split(split, {}, present, root, self.LAYOUT)
        images = glob_nonempty(root / split, "*.png")
        pairs = pair_with(images, lambda p: root / f"{split}annot" / p.name)
        super().__init__(pairs, CAMVID_INFO, CAMVID_MAPPING)
        self.split = split
