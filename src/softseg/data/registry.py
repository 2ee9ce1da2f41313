"""Datasets by name, and split expressions that join splits and keep frames by name prefix.

Constructors live in the plain dict :data:`DATASETS`; :func:`build_dataset` picks one by name and
reads a split expression: ``"train"``, ``"train+val"`` (the frames of both, in that order) or
``"train+val:0001TP,0006R0"`` (only the frames whose file name starts with one of the prefixes:
CamVid names its frames by driving sequence, Cityscapes by city).

>>> parse_split("train+val:0016E5")
(['train', 'val'], ['0016E5'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .ade20k import ADE20K
from .base import SegmentationFolder
from .camvid import CamVid
from .cityscapes import Cityscapes
from .folder import FolderDataset
from .mapillary import MapillaryVistas
from .synthetic import synthetic_split

__all__ = ["DATASETS", "build_dataset", "parse_split", "select_frames"]

SPLIT_SYNTAX = (
    "SPLIT[+SPLIT...][:PREFIX[,PREFIX...]], e.g. 'train', 'train+val' or 'train+val:0001TP,0006R0'"
)


def _synthetic(root: str | Path | None = None, split: str = "train", **kwargs: Any) -> Dataset:
    """Synthetic scenes take no root: generated, not read (see :func:`synthetic_split`)."""
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
    """Build a dataset by name from :data:`DATASETS`, reading ``split`` as a split expression.

    ``root`` is required for every dataset except ``"synthetic"``, which ignores it and takes
    ``num_images``, ``size`` and ``seed`` through ``kwargs``. Joined or filtered splits
    (``"train+val"``, ``"train:0001TP"``) need a dataset read from disk.
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
    name prefixes. Blanks around names are dropped.

    Raises:
        TypeError: ``split`` is not a string.
        ValueError: an empty split or prefix, or a split named twice.

    >>> parse_split("val")
    (['val'], [])
    """
    if not isinstance(split, str):
        raise TypeError(f"split must be a string such as 'train', got {type(split).__name__}")
    body, sep, tail = split.partition(":")
    parts = [p.strip() for p in body.split("+")]
    prefixes = [p.strip() for p in tail.split(",")] if sep else []
    if not all(parts) or (sep and not all(prefixes)):
        raise ValueError(f"bad split {split!r}: expected {SPLIT_SYNTAX}")
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise ValueError(
            f"bad split {split!r}: {', '.join(map(repr, repeated))} named more than once; "
            "each frame would be counted twice"
        )
    return parts, prefixes


def select_frames(
    datasets: Sequence[Dataset], prefixes: Sequence[str], split: str
) -> SegmentationFolder:
    """The frames of ``datasets`` in order, kept if their image name starts with one of ``prefixes``.

    Args:
        datasets: splits of one dataset read from disk (:class:`SegmentationFolder`).
        prefixes: name prefixes to keep; empty keeps every frame.
        split: the split expression, for the error messages and the result's ``split``.

    Raises:
        ValueError: a dataset not read from disk, or a prefix that starts no frame's name (a typo
            would otherwise drop a whole sequence silently).
    """
    if not datasets or not all(isinstance(d, SegmentationFolder) for d in datasets):
        raise ValueError(
            f"split {split!r}: joining or filtering splits needs datasets read from disk, "
            f"got {[type(d).__name__ for d in datasets]}"
        )
    pairs = [pair for d in datasets for pair in d.pairs]
    if prefixes:
        names = [image.name for image, _ in pairs]
        unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
        if unknown:
            spread = sorted(names)[:: max(1, len(names) // 3)][:3]  # from across the splits
            examples = ", ".join(map(repr, spread))
            raise ValueError(
                f"split {split!r}: no image name starts with {', '.join(map(repr, unknown))} "
                f"(names look like {examples})"
            )
        keep = tuple(prefixes)
        pairs = [pair for pair, name in zip(pairs, names, strict=True) if name.startswith(keep)]
    first = datasets[0]
    merged = SegmentationFolder(pairs, first.info, first.mapping)
    merged.split = split
    return merged
