"""Mapillary Vistas v1.2: 65 evaluated classes plus "unlabeled", read from the dataset's config.

>>> info = mapillary_info()  # no root: generated names and colours
>>> info.num_classes, info.classes[0]
(65, 'class_0')
"""

from __future__ import annotations

import json
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

__all__ = ["MAPILLARY_NUM_LABELS", "MapillaryVistas", "mapillary_info"]

MAPILLARY_NUM_LABELS = 66  # v1.2: 65 evaluated classes + "unlabeled"


def mapillary_info(root: str | Path | None = None) -> DatasetInfo:
    """Mapillary Vistas v1.2 classes: from ``<root>/config.json`` when present, else generated.

    The last label of the config (``unlabeled`` in v1.2) is the ignore label.
    """
    config = Path(root) / "config.json" if root is not None else None
    if config is None or not config.is_file():
        n = MAPILLARY_NUM_LABELS - 1
        return DatasetInfo("mapillary", tuple(f"class_{i}" for i in range(n)), generated_colors(n))
    try:
        labels = json.loads(config.read_text())["labels"]
        names = tuple(str(lb.get("readable", lb.get("name"))) for lb in labels[:-1])
        colors = tuple(tuple(int(v) for v in lb["color"]) for lb in labels[:-1])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"cannot read Mapillary class list from {config}: {err!r}; expected "
            '{"labels": [{"readable": name, "color": [r, g, b]}, ...]}'
        ) from err
    return DatasetInfo("mapillary", names, colors)  # type: ignore[arg-type]


class MapillaryVistas(SegmentationFolder):
    """Mapillary Vistas v1.2: ``<root>/<split>/images/*.jpg`` with ``<root>/<split>/labels/*.png``.

    ``split`` is ``training``/``validation`` or ``train``/``val``. Class names and colours come from
    ``<root>/config.json`` when it exists.
    """

    SPLITS = ("training", "validation", "testing")
    LAYOUT = "<root>/<split>/images/*.jpg with labels <root>/<split>/labels/*.png"

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = existing_dir(Path(root), "Mapillary Vistas root", self.LAYOUT)
        info = mapillary_info(root)
        present = [s for s in self.SPLITS if (root / s / "images").is_dir()]
        split = resolve_split(split, TRAIN_VAL_ALIASES, present, root, self.LAYOUT)
        images = glob_nonempty(root / split / "images", "*.jpg")
        pairs = pair_with(images, lambda p: root / split / "labels" / f"{p.stem}.png")
        # Raw label n (the last, "unlabeled") is the ignore label.
        mapping = LabelMapping.identity(info.num_classes, ignore=(info.num_classes,))
        super().__init__(pairs, info, mapping)
        self.split = split
