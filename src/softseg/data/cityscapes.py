"""Cityscapes fine annotations: 34 label ids mapped to the 19 evaluated train ids.

>>> int(CITYSCAPES_MAPPING.lut[26]), CITYSCAPES_INFO.classes[13]
(13, 'car')
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    DatasetInfo,
    LabelMapping,
    SegmentationFolder,
    existing_dir,
    glob_nonempty,
    pair_with,
    resolve_split,
)

__all__ = ["CITYSCAPES_INFO", "CITYSCAPES_MAPPING", "Cityscapes"]

CITYSCAPES_INFO = DatasetInfo(
    name="cityscapes",
    classes=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
        "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
        "truck", "bus", "train", "motorcycle", "bicycle",
    ),
    colors=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
        (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
)  # fmt: skip
_CITYSCAPES_EVAL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
# Label ids 0..33 are defined; the ones not evaluated are ignored. 255 covers id -1 (license
# plate) written as an unsigned byte.
CITYSCAPES_MAPPING = LabelMapping.from_dict(
    {raw: i for i, raw in enumerate(_CITYSCAPES_EVAL_IDS)},
    ignore=[v for v in range(34) if v not in _CITYSCAPES_EVAL_IDS] + [255],
)


class Cityscapes(SegmentationFolder):
    """Cityscapes fine annotations.

    ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png``; label ids map to the 19 train ids.
    """

    SPLITS = ("train", "val", "test")
    LAYOUT = (
        "<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png with labels "
        "<root>/gtFine/<split>/<city>/*_gtFine_labelIds.png"
    )

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = existing_dir(Path(root), "Cityscapes root", self.LAYOUT)
        images_root = existing_dir(root / "leftImg8bit", "Cityscapes images", self.LAYOUT)
        present = [s for s in self.SPLITS if (images_root / s).is_dir()]
        split = resolve_split(split, {}, present, images_root, self.LAYOUT)
        images = glob_nonempty(images_root / split, "*/*_leftImg8bit.png")

        def label_for(image: Path) -> Path:
            base = image.name[: -len("_leftImg8bit.png")]
            return root / "gtFine" / split / image.parent.name / f"{base}_gtFine_labelIds.png"

        super().__init__(pair_with(images, label_for), CITYSCAPES_INFO, CITYSCAPES_MAPPING)
        self.split = split
