"""ADE20K SceneParsing (ADEChallengeData2016): 150 classes, stored as 1..150 with 0 for "other".

>>> ADE20K_INFO.num_classes, int(ADE20K_MAPPING.lut[1]), int(ADE20K_MAPPING.lut[0])
(150, 0, 255)
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    TRAIN_VAL_ALIASES,
    DatasetInfo,
    LabelMapping,
    SegmentationFolder,
    existing_dir,
    glob_nonempty,
    pair_with,
    resolve_split,
)
from .colors import generated_colors

__all__ = ["ADE20K", "ADE20K_CLASSES", "ADE20K_INFO", "ADE20K_MAPPING"]

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip
ADE20K_INFO = DatasetInfo("ade20k", ADE20K_CLASSES, generated_colors(len(ADE20K_CLASSES)))
# Stored 1..150 are the classes, 0 is "other" (ignored); nothing above 150 exists.
ADE20K_MAPPING = LabelMapping.from_dict({v: v - 1 for v in range(1, 151)}, ignore=(0,))


class ADE20K(SegmentationFolder):
    """ADE20K SceneParsing: ``ADEChallengeData2016/{images,annotations}/<split>/``.

    ``root`` may be ``ADEChallengeData2016`` itself or the folder holding it; ``split`` is
    ``training``/``validation`` or the aliases ``train``/``val``.
    """

    SPLITS = ("training", "validation")
    LAYOUT = (
        "ADEChallengeData2016/images/<split>/*.jpg with labels "
        "ADEChallengeData2016/annotations/<split>/*.png, split training or validation"
    )

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = existing_dir(Path(root), "ADE20K root", self.LAYOUT)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        if not (root / "images").is_dir():
            raise FileNotFoundError(
                f"ADE20K root {root} holds neither ADEChallengeData2016/ nor images/; point "
                "root at ADEChallengeData2016 or at the folder containing it"
            )
        present = [s for s in self.SPLITS if (root / "images" / s).is_dir()]
        split = resolve_split(split, TRAIN_VAL_ALIASES, present, root / "images", self.LAYOUT)
        images = glob_nonempty(root / "images" / split, "*.jpg")
        pairs = pair_with(images, lambda p: root / "annotations" / split / f"{p.stem}.png")
        super().__init__(pairs, ADE20K_INFO, ADE20K_MAPPING)
        self.split = split
