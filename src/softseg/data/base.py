"""What every file dataset shares: class descriptions, label mappings, file reading, the base class.

Every dataset yields ``(image, label, name)``: ``image`` a ``uint8`` tensor ``(3, H, W)`` in RGB,
``label`` a ``uint8`` tensor ``(H, W)`` of train ids with ``255`` for ignore, and ``name`` the image
file's stem. Raw label values are turned into train ids through a :class:`LabelMapping`, and any raw
value the dataset does not define is an error rather than a silent ignore: a wrong folder or a
corrupted mask should stop training, not quietly remove classes from it.

>>> mapping = LabelMapping.from_dict({7: 0, 8: 1}, ignore=(0,))
>>> mapping.lut[[7, 8, 0]].tolist(), bool(mapping.known[9])
([0, 1, 255], False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..ops.labels import check_label_values
from .colors import Color

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "DatasetInfo",
    "LabelMapping",
    "SegmentationFolder",
    "load_image",
    "load_label",
]

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File suffixes read as images (lower case), wherever a folder of images is listed."""

# ADE20K and Mapillary Vistas name their splits training/validation; train/val are accepted too.
TRAIN_VAL_ALIASES = {"train": "training", "val": "validation"}


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
    """Read any PIL-readable image as an RGB ``uint8`` tensor ``(3, H, W)``.

    Images of more than 8 bits per channel are scaled to 8 bits (PIL already does so for 16-bit
    colour; 16-bit grey ``I;16`` here, and 32-bit grey ``I`` holding values above 255 as 16-bit),
    never clipped. Floating-point images (mode ``F``) are refused: their range is unknown.
    """
    path = Path(path)
    img = _open(path)
    if img.mode in _WIDE_GREY_MODES or img.mode == "F":
        grey = _grey_to_bytes(np.asarray(img), img.mode, path)
        return torch.from_numpy(grey).expand(3, -1, -1).contiguous()
    if img.mode != "RGB":
        img = img.convert("RGB")
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


_WIDE_GREY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def _grey_to_bytes(arr: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """A grey image of more than 8 bits as ``uint8`` ``(H, W)``: 16-bit values scaled by 255/65535
    (a mode ``I`` image whose values all fit a byte is taken as it is)."""
    if mode == "F":
        raise ValueError(
            f"image file {path} holds floating-point pixels (PIL mode 'F'), whose range cannot be "
            "told; save it as an 8- or 16-bit image"
        )
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise ValueError(f"image file {path} holds grey values {lo}..{hi}; expected 8 or 16 bits")
    if mode == "I" and hi <= 255:
        return arr.astype(np.uint8)
    return np.rint(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)


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


def _present_values(arr: np.ndarray) -> np.ndarray:
    """The distinct values of ``arr``, sorted."""
    if arr.dtype == np.uint8:
        # A 256-bin histogram is much cheaper than np.unique's sort on a full frame.
        return np.flatnonzero(np.bincount(arr.ravel(), minlength=256))
    return np.unique(arr)


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
        if self.mapping is None:  # raw values are train ids already: a range check suffices
            info = self.info
            what = f"labels in {path} ({info.name!r}, {info.num_classes} classes)"
            check_label_values(raw, info.num_classes, info.ignore_index, what=what)
            return raw.to(info.label_dtype)
        arr = _as_bytes(raw.numpy(), self.info, path)
        _check_mapped(_present_values(arr), self.mapping, self.info, path)
        return torch.from_numpy(self.mapping.lut[arr]).to(self.info.label_dtype)


def _as_bytes(arr: np.ndarray, info: DatasetInfo, path: Path) -> np.ndarray:
    """A wide label read from a 16/32-bit file as bytes, refusing values a byte cannot hold."""
    if arr.dtype == np.uint8:
        return arr
    present = np.unique(arr)
    bad = present[(present < 0) | (present > 255)]
    if bad.size:
        raise ValueError(
            f"label file {path} holds value(s) {_value_list(bad)}; {info.name!r} labels "
            "are 8-bit (raw values 0..255)"
        )
    return arr.astype(np.uint8)


def _check_mapped(
    present: np.ndarray, mapping: LabelMapping, info: DatasetInfo, path: Path
) -> None:
    """Refuse raw values ``mapping`` does not define, or maps to train ids that do not exist."""
    bad = present[~mapping.known[present]]
    if bad.size:
        defined = np.flatnonzero(mapping.known)
        raise ValueError(
            f"label file {path} holds raw value(s) {_value_list(bad)} that {info.name!r} does "
            f"not define: valid raw values are {_ranges(defined)}"
        )
    # A caller's bare lookup table may send a raw value to a train id that does not exist.
    mapped = mapping.lut[present]
    wrong = (mapped >= info.num_classes) & (mapped != IGNORE_INDEX)
    if wrong.any():
        raise ValueError(
            f"label file {path}: raw value(s) {_value_list(present[wrong])} map to train "
            f"id(s) {_value_list(mapped[wrong])}, outside 0..{info.num_classes - 1} and "
            f"{IGNORE_INDEX} (ignore); fix the label mapping"
        )


# --------------------------------------------------------------------------- layout helpers
def existing_dir(path: Path, what: str, layout: str = "") -> Path:
    """``path`` if it is a directory, else a ``FileNotFoundError`` naming ``what`` and ``layout``."""
    if not path.is_dir():
        hint = f"; expected layout: {layout}" if layout else ""
        raise FileNotFoundError(f"{what}: directory {path} does not exist{hint}")
    return path


def _any_case(pattern: str) -> str:
    """A glob pattern matching ``pattern``'s letters in either case: ``"*.png"`` -> ``"*.[pP][nN][gG]"``.

    >>> _any_case("*_a1.png")
    '*_[aA]1.[pP][nN][gG]'
    """
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in pattern)


def glob_nonempty(directory: Path, pattern: str) -> list[Path]:
    """Files under ``directory`` matching ``pattern`` in any letter case (``*.png`` also finds
    ``*.PNG``), sorted; an empty result is an error."""
    found = sorted(p for p in directory.glob(_any_case(pattern)) if p.is_file())
    if not found:
        raise FileNotFoundError(f"empty split: no files matching {pattern!r} under {directory}")
    return found


def _in_any_case(path: Path) -> Path:
    """``path``, or the one file of its directory whose name differs from it only in case."""
    same = [] if path.is_file() else list(path.parent.glob(_any_case(path.name)))
    return same[0] if len(same) == 1 else path


def pair_with(images: list[Path], label_for: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    """Pair each image with its label (its name matched in any letter case).

    A missing label is an error naming both files. So is a label without an image, where labels
    are named after their images (``<stem>.<suffix>``): it means images went missing, and the
    split would silently shrink.
    """
    pairs = []
    for image in images:
        label = _in_any_case(label_for(image))
        if not label.is_file():
            raise FileNotFoundError(f"image {image} has no label file: expected {label}")
        pairs.append((image, label))
    _refuse_orphans(pairs)
    return pairs


def _refuse_orphans(pairs: list[tuple[Path, Path]]) -> None:
    """Refuse labels that share a directory and suffix with paired ones but have no image."""
    if not pairs or any(image.stem != label.stem for image, label in pairs):
        return  # labels not named by their image (Cityscapes): nothing tells an orphan apart
    used: dict[Path, set[str]] = {}
    for _, label in pairs:
        used.setdefault(label.parent, set()).add(label.name)
    suffix = pairs[0][1].suffix
    for directory, names in used.items():
        orphans = sorted(
            p.name for p in directory.glob(_any_case("*" + suffix))
            if p.name not in names and p.is_file()
        )  # fmt: skip
        if orphans:
            shown = ", ".join(orphans[:10]) + (", ..." if len(orphans) > 10 else "")
            raise FileNotFoundError(
                f"{len(orphans)} label file(s) without an image in {directory}: {shown}; restore "
                "their images or remove them (the split would otherwise silently lose these frames)"
            )


def resolve_split(
    split: str, aliases: Mapping[str, str], present: Sequence[str], where: Path, layout: str
) -> str:
    """``split`` (or what ``aliases`` maps it to) if it is among ``present``, else a ValueError."""
    name = aliases.get(split, split)
    if name not in present:
        listed = ", ".join(repr(s) for s in present) or "none"
        raise ValueError(
            f"split {split!r} not found under {where}; splits present: {listed} "
            f"(expected layout: {layout})"
        )
    return name
