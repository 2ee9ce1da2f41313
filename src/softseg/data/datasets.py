"""Segmentation datasets in their standard on-disk layouts.

Every dataset yields ``(image, label, name)``: ``image`` a ``uint8`` tensor ``(3, H, W)`` in RGB,
``label`` a ``uint8`` tensor ``(H, W)`` of train ids with ``255`` for ignore, and ``name`` the image
file's stem. Raw label values are turned into train ids through a :class:`LabelMapping`, and any raw
value the dataset does not define is an error rather than a silent ignore: a wrong folder or a
corrupted mask should stop training, not quietly remove classes from it.

Constructors live in the plain dict :data:`DATASETS`; :func:`build_dataset` picks one by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

__all__ = [
    "ADE20K",
    "ADE20K_INFO",
    "CAMVID_INFO",
    "CITYSCAPES_INFO",
    "CamVid",
    "Cityscapes",
    "DATASETS",
    "DatasetInfo",
    "FolderDataset",
    "LabelMapping",
    "MapillaryVistas",
    "SegmentationFolder",
    "build_dataset",
    "folder_info",
    "generated_colors",
    "load_image",
    "load_label",
    "mapillary_info",
]

IGNORE_INDEX = 255
Color = tuple[int, int, int]


# --------------------------------------------------------------------------- dataset description
@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's train ids mean.

    Attributes:
        name: short dataset name, e.g. ``"camvid"``.
        classes: class names, indexed by train id.
        colors: one RGB triple per class, for colourised masks.
        ignore_index: the label value that carries no loss and is not scored (255 everywhere here).
    """

    name: str
    classes: tuple[str, ...]
    colors: tuple[Color, ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.colors) != len(self.classes):
            raise ValueError(
                f"DatasetInfo {self.name!r}: {len(self.classes)} classes but {len(self.colors)} "
                "colors; give exactly one RGB triple per class"
            )
        for i, c in enumerate(self.colors):
            if len(c) != 3 or any(not 0 <= int(v) <= 255 for v in c):
                raise ValueError(
                    f"DatasetInfo {self.name!r}: color {i} ({self.classes[i]!r}) is {c!r}; "
                    "expected three ints in 0..255"
                )
        if 0 <= self.ignore_index < len(self.classes):
            raise ValueError(
                f"DatasetInfo {self.name!r}: ignore_index {self.ignore_index} is also the train id "
                f"of class {self.classes[self.ignore_index]!r}; it must lie outside "
                f"0..{len(self.classes) - 1}"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (train ids ``0 .. num_classes - 1``)."""
        return len(self.classes)

    @property
    def label_dtype(self) -> torch.dtype:
        """``uint8`` while every train id and the ignore value fit in a byte, else ``int64``."""
        fits = self.num_classes <= 255 and 0 <= self.ignore_index <= 255
        return torch.uint8 if fits else torch.int64


def generated_colors(n: int) -> tuple[Color, ...]:
    """``n`` deterministic, well-spread RGB colours (for datasets that ship none).

    Spreads hues by the golden ratio and cycles two brightness levels, so neighbouring ids differ.
    """
    colors = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.65
        colors.append(_hsv_to_rgb(hue, 0.75, value))
    return tuple(colors)


def _hsv_to_rgb(h: float, s: float, v: float) -> Color:
    k = np.array([5.0, 3.0, 1.0])
    k = (k + h * 6.0) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return tuple(int(round(x * 255)) for x in rgb)  # type: ignore[return-value]


# --------------------------------------------------------------------------- label mapping
@dataclass(frozen=True)
class LabelMapping:
    """Raw 8-bit label values -> train ids.

    Attributes:
        lut: 256-entry ``uint8`` lookup table; values not mapped to a class hold 255 (ignore).
        known: 256-entry ``bool`` mask of the raw values the dataset defines (mapped to a class or
            deliberately to ignore). Anything else found in a label file is reported as an error.
    """

    lut: np.ndarray
    known: np.ndarray = field(default_factory=lambda: np.ones(256, dtype=bool))

    def __post_init__(self) -> None:
        if self.lut.shape != (256,) or self.lut.dtype != np.uint8:
            raise ValueError(
                f"LabelMapping.lut must be a uint8 array of shape (256,), got "
                f"{self.lut.dtype} {self.lut.shape}"
            )
        if self.known.shape != (256,) or self.known.dtype != bool:
            raise ValueError(f"LabelMapping.known must be bool (256,), got {self.known.shape}")

    @classmethod
    def from_dict(cls, to_train_id: Mapping[int, int], ignore: Iterable[int] = ()) -> LabelMapping:
        """Map each raw value in ``to_train_id`` to its train id and each of ``ignore`` to 255."""
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        known = np.zeros(256, dtype=bool)
        for raw, train_id in to_train_id.items():
            lut[raw] = train_id
            known[raw] = True
        for raw in ignore:
            known[raw] = True
        return cls(lut, known)

    @classmethod
    def identity(cls, num_classes: int, ignore: Iterable[int] = (IGNORE_INDEX,)) -> LabelMapping:
        """Raw values ``0 .. num_classes - 1`` are train ids already; ``ignore`` values -> 255."""
        return cls.from_dict({i: i for i in range(num_classes)}, ignore)


# --------------------------------------------------------------------------- file loading
def _open(path: Path) -> Image.Image:
    """Open and decode ``path`` now, so a broken file fails here with its name in the message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err


def load_image(path: str | Path) -> torch.Tensor:
    """Read any PIL-readable image as an RGB ``uint8`` tensor ``(3, H, W)``."""
    img = _open(Path(path))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


# Modes holding one value per pixel. "P" is palette-indexed: the stored index is the label value.
_SINGLE_CHANNEL_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def load_label(path: str | Path) -> torch.Tensor:
    """Read a single-channel label file as stored (no mapping), as an ``(H, W)`` tensor.

    8-bit files give ``uint8``; 16/32-bit files give ``int64``. A colour (RGB) mask is refused:
    colour-coded masks must be converted to class indices first.
    """
    path = Path(path)
    img = _open(path)
    if img.mode not in _SINGLE_CHANNEL_MODES:
        raise ValueError(
            f"label file {path} has PIL mode {img.mode!r} with {len(img.getbands())} channels; "
            "labels must be single-channel images of class indices (mode L, P or I). "
            "Is this a colourised mask rather than the index mask?"
        )
    arr = np.asarray(img)
    if arr.dtype == bool or arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.uint8, copy=True))
    return torch.from_numpy(arr.astype(np.int64))


def _value_list(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values)} distinct)" if len(values) > limit else "")


# --------------------------------------------------------------------------- base dataset
class SegmentationFolder(Dataset):
    """Pairs of (image file, label file), read and checked on access.

    Args:
        pairs: ``(image_path, label_path)`` per sample.
        info: what the train ids mean.
        mapping: raw label value -> train id. A bare 256-entry ``uint8`` array is accepted as a
            lookup table (every raw value then counts as defined). ``None``: raw values are train
            ids already, and must lie in ``0 .. num_classes - 1`` or equal ``info.ignore_index``.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path]],
        info: DatasetInfo,
        mapping: LabelMapping | np.ndarray | None = None,
    ) -> None:
        if len(pairs) == 0:
            raise ValueError(f"{type(self).__name__} for {info.name!r} got no (image, label) pairs")
        if isinstance(mapping, np.ndarray):
            mapping = LabelMapping(mapping)
        self.pairs = [(Path(i), Path(lb)) for i, lb in pairs]
        self.info = info
        self.mapping = mapping

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image_path, label_path = self.pairs[index]
        image = load_image(image_path)
        label = self._train_ids(load_label(label_path), label_path)
        if image.shape[1:] != label.shape:
            raise ValueError(
                f"image and label sizes differ: {image_path} is {image.shape[2]}x{image.shape[1]} "
                f"(WxH) but {label_path} is {label.shape[1]}x{label.shape[0]}"
            )
        return image, label, image_path.stem

    def _train_ids(self, raw: torch.Tensor, path: Path) -> torch.Tensor:
        """Map raw values to train ids, refusing values the dataset does not define."""
        info = self.info
        arr = raw.numpy()
        if self.mapping is None:
            present = np.unique(arr) if arr.dtype != np.uint8 else _present_bytes(arr)
            outside = (present < 0) | (present >= info.num_classes)
            bad = present[outside & (present != info.ignore_index)]
            if bad.size:
                raise ValueError(
                    f"label file {path} holds value(s) {_value_list(bad)} outside the "
                    f"{info.num_classes} classes of {info.name!r}: valid values are "
                    f"0..{info.num_classes - 1} and {info.ignore_index} (ignore)"
                )
            return raw.to(info.label_dtype)
        if arr.dtype != np.uint8:
            present = np.unique(arr)
            bad = present[(present < 0) | (present > 255)]
            if bad.size:
                raise ValueError(
                    f"label file {path} holds value(s) {_value_list(bad)}; {info.name!r} labels "
                    "are 8-bit (raw values 0..255)"
                )
            arr = arr.astype(np.uint8)
        present = _present_bytes(arr)
        bad = present[~self.mapping.known[present]]
        if bad.size:
            defined = np.flatnonzero(self.mapping.known)
            raise ValueError(
                f"label file {path} holds raw value(s) {_value_list(bad)} that {info.name!r} does "
                f"not define: valid raw values are {_ranges(defined)}"
            )
        # A caller's bare lookup table may send a raw value to a train id that does not exist.
        mapped = self.mapping.lut[present]
        wrong = (mapped >= info.num_classes) & (mapped != IGNORE_INDEX)
        if wrong.any():
            raise ValueError(
                f"label file {path}: raw value(s) {_value_list(present[wrong])} map to train "
                f"id(s) {_value_list(mapped[wrong])}, outside 0..{info.num_classes - 1} and "
                f"{IGNORE_INDEX} (ignore); fix the label mapping"
            )
        return torch.from_numpy(self.mapping.lut[arr]).to(info.label_dtype)


def _present_bytes(arr: np.ndarray) -> np.ndarray:
    # A 256-bin histogram is much cheaper than np.unique's sort on a full frame.
    return np.flatnonzero(np.bincount(arr.ravel(), minlength=256))


def _ranges(values: np.ndarray) -> str:
    """``[0,1,2,3,7,8]`` -> ``"0..3, 7..8"``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}..{v}")
            start = None
    return ", ".join(parts)


# --------------------------------------------------------------------------- layout helpers
def _existing_dir(path: Path, what: str, layout: str = "") -> Path:
    if not path.is_dir():
        hint = f"; expected layout: {layout}" if layout else ""
        raise FileNotFoundError(f"{what}: directory {path} does not exist{hint}")
    return path


def _glob_nonempty(directory: Path, pattern: str) -> list[Path]:
    """Files under ``directory`` matching ``pattern``, sorted; an empty result is an error."""
    found = sorted(p for p in directory.glob(pattern) if p.is_file())
    if not found:
        raise FileNotFoundError(f"empty split: no files matching {pattern!r} under {directory}")
    return found


def _pair_with(images: list[Path], label_for: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    """Pair each image with its label; a missing label is an error naming both files."""
    pairs = []
    for image in images:
        label = label_for(image)
        if not label.is_file():
            raise FileNotFoundError(f"image {image} has no label file: expected {label}")
        pairs.append((image, label))
    return pairs


def _resolve_split(
    split: str, aliases: Mapping[str, str], present: Sequence[str], where: Path, layout: str
) -> str:
    name = aliases.get(split, split)
    if name not in present:
        listed = ", ".join(repr(s) for s in present) or "none"
        raise ValueError(
            f"split {split!r} not found under {where}; splits present: {listed} "
            f"(expected layout: {layout})"
        )
    return name


# --------------------------------------------------------------------------- CamVid
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
        root = _existing_dir(Path(root), "CamVid root", self.LAYOUT)
        present = [s for s in self.SPLITS if (root / s).is_dir() and (root / f"{s}annot").is_dir()]
        split = _resolve_split(split, {}, present, root, self.LAYOUT)
        images = _glob_nonempty(root / split, "*.png")
        pairs = _pair_with(images, lambda p: root / f"{split}annot" / p.name)
        super().__init__(pairs, CAMVID_INFO, CAMVID_MAPPING)
        self.split = split


# --------------------------------------------------------------------------- Cityscapes
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
        root = _existing_dir(Path(root), "Cityscapes root", self.LAYOUT)
        images_root = _existing_dir(root / "leftImg8bit", "Cityscapes images", self.LAYOUT)
        present = [s for s in self.SPLITS if (images_root / s).is_dir()]
        split = _resolve_split(split, {}, present, images_root, self.LAYOUT)
        images = _glob_nonempty(images_root / split, "*/*_leftImg8bit.png")

        def label_for(image: Path) -> Path:
            base = image.name[: -len("_leftImg8bit.png")]
            return root / "gtFine" / split / image.parent.name / f"{base}_gtFine_labelIds.png"

        super().__init__(_pair_with(images, label_for), CITYSCAPES_INFO, CITYSCAPES_MAPPING)
        self.split = split


# --------------------------------------------------------------------------- ADE20K
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
_TRAIN_VAL_ALIASES = {"train": "training", "val": "validation"}


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
        root = _existing_dir(Path(root), "ADE20K root", self.LAYOUT)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        if not (root / "images").is_dir():
            raise FileNotFoundError(
                f"ADE20K root {root} holds neither ADEChallengeData2016/ nor images/; point "
                "root at ADEChallengeData2016 or at the folder containing it"
            )
        present = [s for s in self.SPLITS if (root / "images" / s).is_dir()]
        split = _resolve_split(split, _TRAIN_VAL_ALIASES, present, root / "images", self.LAYOUT)
        images = _glob_nonempty(root / "images" / split, "*.jpg")
        pairs = _pair_with(images, lambda p: root / "annotations" / split / f"{p.stem}.png")
        super().__init__(pairs, ADE20K_INFO, ADE20K_MAPPING)
        self.split = split


# --------------------------------------------------------------------------- Mapillary Vistas
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
        root = _existing_dir(Path(root), "Mapillary Vistas root", self.LAYOUT)
        info = mapillary_info(root)
        present = [s for s in self.SPLITS if (root / s / "images").is_dir()]
        split = _resolve_split(split, _TRAIN_VAL_ALIASES, present, root, self.LAYOUT)
        images = _glob_nonempty(root / split / "images", "*.jpg")
        pairs = _pair_with(images, lambda p: root / split / "labels" / f"{p.stem}.png")
        # Raw label n (the last, "unlabeled") is the ignore label.
        mapping = LabelMapping.identity(info.num_classes, ignore=(info.num_classes,))
        super().__init__(pairs, info, mapping)
        self.split = split


# --------------------------------------------------------------------------- generic folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def folder_info(root: str | Path) -> tuple[DatasetInfo, int]:
    """Read ``<root>/classes.yaml`` (or ``.json``); return the info and the raw ignore value.

    Accepted contents: a list of names, or ``{classes: [...], colors: [[r,g,b], ...],
    ignore_index: 255}`` with ``colors`` and ``ignore_index`` optional.
    """
    root = Path(root)
    candidates = [root / "classes.yaml", root / "classes.yml", root / "classes.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"folder dataset {root} needs a class list: create {root / 'classes.yaml'} holding a "
            "list of class names, or {classes: [...], colors: [[r,g,b], ...], ignore_index: 255}"
        )
    try:
        if path.suffix == ".json":
            spec: Any = json.loads(path.read_text())
        else:
            import yaml  # only needed for this layout

            spec = yaml.safe_load(path.read_text())
    except Exception as err:  # yaml and json raise unrelated exception types
        raise ValueError(f"cannot parse class list {path}: {err}") from err
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


class FolderDataset(SegmentationFolder):
    """A plain folder: ``<root>/[<split>/]images/*`` and ``<root>/[<split>/]masks/*.png``.

    Images and masks are paired by file stem. If ``<root>/<split>/images`` exists it is used,
    otherwise ``<root>/images`` serves every split. Classes come from ``<root>/classes.yaml`` or
    ``classes.json`` (see :func:`folder_info`); the ignore value is remapped to 255.
    """

    LAYOUT = "<root>/[<split>/]images/<stem>.<png|jpg|...> with <root>/[<split>/]masks/<stem>.png"

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = _existing_dir(Path(root), "folder dataset root", self.LAYOUT)
        info, raw_ignore = folder_info(root)
        base = root / split if (root / split / "images").is_dir() else root
        what = f"folder dataset split {split!r}"
        image_dir = _existing_dir(base / "images", what, self.LAYOUT)
        mask_dir = _existing_dir(base / "masks", what, self.LAYOUT)
        pattern = "*{" + ",".join(IMAGE_SUFFIXES) + "}"
        images = [p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise FileNotFoundError(f"empty split: no files matching {pattern!r} under {image_dir}")
        by_stem: dict[str, Path] = {}
        for image in images:
            if image.stem in by_stem:
                raise ValueError(
                    f"two images share the stem {image.stem!r}: {by_stem[image.stem]} and {image}; "
                    "stems must be unique to pair images with masks"
                )
            by_stem[image.stem] = image
        masks = {p.stem: p for p in mask_dir.glob("*.png")}
        missing = sorted(set(by_stem) - set(masks))
        if missing:
            raise FileNotFoundError(
                f"no mask in {mask_dir} for image stem(s) {', '.join(missing[:10])} "
                f"(expected e.g. {mask_dir / (missing[0] + '.png')})"
            )
        orphans = sorted(set(masks) - set(by_stem))
        if orphans:
            raise FileNotFoundError(
                f"mask(s) without an image in {image_dir}: {', '.join(orphans[:10])}"
            )
        pairs = [(by_stem[s], masks[s]) for s in sorted(by_stem)]
        ignore = {raw_ignore, IGNORE_INDEX} if raw_ignore <= 255 else {IGNORE_INDEX}
        mapping = (
            LabelMapping.identity(info.num_classes, ignore=ignore)
            if info.num_classes <= 255
            else None  # wide labels: raw values are train ids, checked by range
        )
        super().__init__(pairs, info, mapping)
        self.split = split


# --------------------------------------------------------------------------- by name
def _synthetic(root: str | Path | None = None, split: str = "train", **kwargs: Any) -> Dataset:
    # Imported here because synthetic.py takes CAMVID_INFO from this module.
    from .synthetic import synthetic_split

    return synthetic_split(split, **kwargs)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "mapillary": MapillaryVistas,
    "folder": FolderDataset,
    "synthetic": _synthetic,
}


def build_dataset(
    name: str, root: str | Path | None = None, split: str = "train", **kwargs: Any
) -> Dataset:
    """Build a dataset by name from :data:`DATASETS`.

    ``root`` is required for every dataset except ``"synthetic"``, which ignores it and takes
    ``num_images``, ``size`` and ``seed`` through ``kwargs``.
    """
    key = name.lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    if key != "synthetic" and root is None:
        raise ValueError(f"dataset {name!r} reads files from disk: pass root=<its directory>")
    parts, prefixes = parse_split(split)
    if len(parts) == 1 and not prefixes:
        return DATASETS[key](root, split, **kwargs)
    return select_frames([DATASETS[key](root, p, **kwargs) for p in parts], prefixes, split)


def parse_split(split: str) -> tuple[list[str], list[str]]:
    """``"train+val:0001TP,0006R0"`` -> ``(["train", "val"], ["0001TP", "0006R0"])``.

    A split expression joins splits with ``+`` and may end in ``:`` and a comma-separated list of
    name prefixes that keeps only the frames whose file name starts with one of them (CamVid names
    its frames by driving sequence, Cityscapes by city).

    >>> parse_split("train+val:0016E5")
    (['train', 'val'], ['0016E5'])
    """
    body, sep, tail = split.partition(":")
    parts = [p.strip() for p in body.split("+")]
    prefixes = [p.strip() for p in tail.split(",")] if sep else []
    if not all(parts) or (sep and not all(prefixes)):
        raise ValueError(
            f"bad split {split!r}: expected SPLIT[+SPLIT...][:PREFIX[,PREFIX...]], "
            "e.g. 'train', 'train+val' or 'train+val:0001TP,0006R0'"
        )
    return parts, prefixes


def select_frames(
    datasets: Sequence[Dataset], prefixes: Sequence[str], split: str
) -> SegmentationFolder:
    """The frames of ``datasets`` (in order) whose image name starts with one of ``prefixes``."""
    if not all(isinstance(d, SegmentationFolder) for d in datasets):
        raise ValueError(f"split {split!r}: joining or filtering splits needs datasets read from disk")
    pairs = [pair for d in datasets for pair in d.pairs]
    if prefixes:
        pairs = [p for p in pairs if p[0].name.startswith(tuple(prefixes))]
        if not pairs:
            raise ValueError(
                f"split {split!r} selects no frame: no image name starts with "
                f"{', '.join(map(repr, prefixes))}"
            )
    first = datasets[0]
    merged = SegmentationFolder(pairs, first.info, first.mapping)
    merged.split = split
    return merged
