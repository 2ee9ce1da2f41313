"""A plain folder of images and index masks, with its class list in ``classes.yaml``.

<root>/classes.yaml            # [road, car, ...] or {classes: [...], colors: [...], ignore_index: 0}
<root>/[<split>/]images/<stem>.<png|jpg|...>
<root>/[<split>/]masks/<stem>.png
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from .base import (
    IGNORE_INDEX,
    IMAGE_SUFFIXES,
    DatasetInfo,
    LabelMapping,
    SegmentationFolder,
    existing_dir,
)
from .colors import generated_colors

__all__ = ["FolderDataset", "folder_info"]


def _read_class_list(root: Path) -> tuple[Path, Any]:
    """The first of ``classes.yaml``/``.yml``/``.json`` under ``root`` and its parsed contents."""
    candidates = [root / "classes.yaml", root / "classes.yml", root / "classes.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"folder dataset {root} needs a class list: create {root / 'classes.yaml'} holding a "
            "list of class names, or {classes: [...], colors: [[r,g,b], ...], ignore_index: 255}"
        )
    try:
        if path.suffix == ".json":
            return path, json.loads(path.read_text())
        import yaml  # only needed for this layout

        return path, yaml.safe_load(path.read_text())
    except Exception as err:  # yaml and json raise unrelated exception types
        raise ValueError(f"cannot parse class list {path}: {err}") from err


def folder_info(root: str | Path) -> tuple[DatasetInfo, int]:
    """Read ``<root>/classes.yaml`` (or ``.json``); return the info and the raw ignore value.

    Accepted contents: a list of names, or ``{classes: [...], colors: [[r,g,b], ...],
    ignore_index: 255}`` with ``colors`` and ``ignore_index`` optional.
    """
    root = Path(root)
    path, spec = _read_class_list(root)
    if isinstance(spec, list):
        spec = {"classes": spec}
    names = spec.get("classes") if isinstance(spec, dict) else None
    if not isinstance(names, list) or not names:
        raise ValueError(
            f"class list {path} must be a non-empty list of names or a mapping with a 'classes' "
            f"list; got {type(spec).__name__}"
        )
    names = tuple(str(c) for c in names)
    colors = spec.get("colors")
    colors = generated_colors(len(names)) if colors is None else tuple(tuple(c) for c in colors)
    raw_ignore = int(spec.get("ignore_index", IGNORE_INDEX))
    try:
        info = DatasetInfo(root.name or "folder", names, colors, raw_ignore)  # validates
    except ValueError as err:
        raise ValueError(f"class list {path}: {err}") from err
    if info.num_classes > 255:
        return info, raw_ignore  # wide labels keep their own ignore value (255 is a class there)
    return replace(info, ignore_index=IGNORE_INDEX), raw_ignore


def _images_by_stem(image_dir: Path) -> dict[str, Path]:
    """The images in ``image_dir`` by file stem; none, or two sharing a stem, is an error."""
    images = [p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        pattern = "*{" + ",".join(IMAGE_SUFFIXES) + "}"
        raise FileNotFoundError(f"empty split: no files matching {pattern!r} under {image_dir}")
    by_stem: dict[str, Path] = {}
    for image in images:
        if image.stem in by_stem:
            raise ValueError(
                f"two images share the stem {image.stem!r}: {by_stem[image.stem]} and {image}; "
                "stems must be unique to pair images with masks"
            )
        by_stem[image.stem] = image
    return by_stem


def _pair_by_stem(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """Every image with the mask of the same stem; a missing mask or image is an error."""
    images = _images_by_stem(image_dir)
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() == ".png"}
    missing = sorted(set(images) - set(masks))
    if missing:
        raise FileNotFoundError(
            f"no mask in {mask_dir} for image stem(s) {', '.join(missing[:10])} "
            f"(expected e.g. {mask_dir / (missing[0] + '.png')})"
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise FileNotFoundError(
            f"mask(s) without an image in {image_dir}: {', '.join(orphans[:10])}"
        )
    return [(images[s], masks[s]) for s in sorted(images)]


class FolderDataset(SegmentationFolder):
    """A plain folder: ``<root>/[<split>/]images/*`` and ``<root>/[<split>/]masks/*.png``.

    Images and masks are paired by file stem. If ``<root>/<split>/images`` exists it is used,
    otherwise ``<root>/images`` serves every split. Classes come from ``<root>/classes.yaml`` or
    ``classes.json`` (see :func:`folder_info`); the ignore value is remapped to 255.
    """

    LAYOUT = "<root>/[<split>/]images/<stem>.<png|jpg|...> with <root>/[<split>/]masks/<stem>.png"

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = existing_dir(Path(root), "folder dataset root", self.LAYOUT)
        info, raw_ignore = folder_info(root)
        base = root / split if (root / split / "images").is_dir() else root
        what = f"folder dataset split {split!r}"
        image_dir = existing_dir(base / "images", what, self.LAYOUT)
        mask_dir = existing_dir(base / "masks", what, self.LAYOUT)
        ignore = {raw_ignore, IGNORE_INDEX} if raw_ignore <= 255 else {IGNORE_INDEX}
        mapping = (
            LabelMapping.identity(info.num_classes, ignore=ignore)
            if info.num_classes <= 255
            else None  # wide labels: raw values are train ids, checked by range
        )
        super().__init__(_pair_by_stem(image_dir, mask_dir), info, mapping)
        self.split = split
