"""Tiny on-disk datasets in each real layout, written with PIL for tests/test_datasets.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 8, 12


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> Path:
    """An RGB image; JPEG or PNG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def write_label(path: Path, values, size: tuple[int, int] = (H, W)) -> Path:
    """A single-channel 8-bit PNG whose pixels cycle through ``values`` in raster order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = np.resize(np.asarray(values, dtype=np.uint8), size[0] * size[1])
    Image.fromarray(flat.reshape(size)).save(path)  # 2-D uint8 -> mode L
    return path


def label_values(values, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """What :func:`write_label` stores, for comparisons."""
    return np.resize(np.asarray(values, dtype=np.uint8), size[0] * size[1]).reshape(size)


def make_camvid(
    root: Path, splits=(("train", 3), ("val", 2)), values=(0, 3, 10, 11), sequences=("0001TP",)
) -> Path:
    """``n`` frames per split and per driving sequence, named ``<sequence>_<split>_<i>.png``."""
    for split, n in splits:
        for sequence in sequences:
            for i in range(n):
                name = f"{sequence}_{split}_{i:03d}.png"
                write_image(root / split / name, seed=i)
                write_label(root / f"{split}annot" / name, values)
    return root


def make_cityscapes(root: Path, split: str = "train", values=(0, 7, 26, 33, 1)) -> Path:
    for city, n in (("aachen", 2), ("bremen", 1)):
        for i in range(n):
            base = f"{city}_{i:06d}_000019"
            write_image(root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", seed=i)
            write_label(root / "gtFine" / split / city / f"{base}_gtFine_labelIds.png", values)
    return root


def make_ade20k(root: Path, values=(0, 1, 150)) -> Path:
    """``root/ADEChallengeData2016/...`` with 3 training and 2 validation JPEGs."""
    base = root / "ADEChallengeData2016"
    for split, n in (("training", 3), ("validation", 2)):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write_image(base / "images" / split / f"{stem}.jpg", seed=i)
            write_label(base / "annotations" / split / f"{stem}.png", values)
    return root


def make_mapillary(root: Path, with_config: bool = True, values=(0, 64, 65)) -> Path:
    for split, n in (("training", 2), ("validation", 3)):
        for i in range(n):
            stem = f"img{split[0]}{i}"
            write_image(root / split / "images" / f"{stem}.jpg", seed=i)
            write_label(root / split / "labels" / f"{stem}.png", values)
    if with_config:
        labels = [
            {"name": f"group--label{i}", "readable": f"Label {i}", "color": [i, 2 * i, 3 * i]}
            for i in range(65)
        ]
        labels.append({"name": "void--unlabeled", "readable": "Unlabeled", "color": [0, 0, 0]})
        (root / "config.json").write_text(json.dumps({"labels": labels}))
    return root
