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
    _any_case,
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
    """CamVid in the SegNet layout: ``<root>/<split>/*.png`` with ``<root>/<split>annot/*.png``.

    Images may instead be JPEGs (``<split>/*.jpg``, labels still ``<split>annot/<stem>.png``): the
    compact copy ``docs/results/pack_camvid.py`` writes to carry CamVid where 122 MB of PNGs do not
    fit. A split holds one or the other, never both.
    """

    SPLITS = ("train", "val", "test")
    LAYOUT = "<root>/<split>/*.png (or *.jpg) with labels <root>/<split>annot/<stem>.png"

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = existing_dir(Path(root), "CamVid root", self.LAYOUT)
        present = [s for s in self.SPLITS if (root / s).is_dir() and (root / f"{s}annot").is_dir()]
        split = resolve_split(split, {}, present, root, self.LAYOUT)
        images = _images(root / split)
        pairs = pair_with(images, lambda p: root / f"{split}annot" / f"{p.stem}.png")
        super().__init__(pairs, CAMVID_INFO, CAMVID_MAPPING)
        self.split = split


def _images(directory: Path) -> list[Path]:
    """The PNG frames of ``directory``, or its JPEG frames where there are no PNGs."""
    png, jpg = (sorted(directory.glob(_any_case(pattern))) for pattern in ("*.png", "*.jpg"))
    if png and jpg:
        raise ValueError(
            f"{directory} holds both PNG ({len(png)}) and JPEG ({len(jpg)}) frames; expected one "
            "format per split (a compact JPEG copy belongs in its own root)"
        )
    return glob_nonempty(directory, "*.jpg" if jpg else "*.png")
