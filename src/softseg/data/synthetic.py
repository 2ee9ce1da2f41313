"""Synthetic street scenes: a deterministic, download-free stand-in for CamVid.

Each sample is drawn from ``(seed, index)`` alone, so the dataset needs no storage and any worker
can regenerate any item. Scenes are built to stress label down-sampling the way real street data
does: large regions (sky, road, buildings) next to thin poles one to three pixels wide, small signs,
pedestrians and a bit of void. Image colour is a noisy function of the class (a base colour per
class, jittered per object, plus low-frequency texture and pixel noise), so a model can learn it.
The class list and palette are CamVid's, so models and plots carry over.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import IGNORE_INDEX, DatasetInfo
from .camvid import CAMVID_INFO

__all__ = ["SYNTHETIC_INFO", "SYNTHETIC_SPLITS", "SyntheticStreets", "synthetic_split"]

SYNTHETIC_INFO: DatasetInfo = replace(CAMVID_INFO, name="synthetic")

SKY, BUILDING, POLE, ROAD, SIDEWALK, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)
VOID = IGNORE_INDEX

# Photo-like base colours (deliberately not the plotting palette). Row 11 is void.
_BASE_RGB = np.array(
    [
        [150, 185, 225],  # sky
        [150, 115, 95],  # building
        [55, 55, 65],  # pole: dark metal, so it stands out against sky and facades
        [105, 100, 105],  # road
        [180, 170, 155],  # sidewalk
        [60, 115, 50],  # tree
        [225, 195, 40],  # sign
        [125, 95, 65],  # fence
        [150, 35, 35],  # car
        [195, 135, 105],  # pedestrian
        [40, 70, 170],  # bicyclist
        [20, 20, 20],  # void
    ],
    dtype=np.float32,
)
# Per-object colour spread (std per channel) and texture amplitude, per class; last entry void.
_OBJECT_JITTER = np.array([8, 25, 8, 8, 12, 15, 15, 15, 45, 30, 20, 30], dtype=np.float32)
_TEXTURE = np.array([6, 14, 4, 10, 10, 22, 4, 10, 8, 10, 8, 6], dtype=np.float32)
_PIXEL_NOISE = 5.0

# Split defaults: disjoint seeds so validation scenes never repeat training scenes.
SYNTHETIC_SPLITS: dict[str, tuple[int, int]] = {  # split -> (seed, num_images)
    "train": (0, 64),
    "val": (1000, 16),
    "test": (2000, 16),
}


class _Canvas:
    """Label map plus a per-pixel object id; each object gets its own colour when painted."""

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = h, w, rng
        self.label = np.full((h, w), SKY, dtype=np.uint8)
        self.obj = np.zeros((h, w), dtype=np.int64)
        # Per object: its class row in the tables above and a brightness factor.
        self.object_rows: list[int] = [SKY]
        self.object_shades: list[float] = [1.0]

    def new_object(self, cls: int, shade: float = 1.0) -> int:
        self.object_rows.append(11 if cls == VOID else cls)
        self.object_shades.append(shade)
        return len(self.object_rows) - 1

    def _box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        ya, yb = max(int(round(y0)), 0), min(int(round(y1)), self.h)
        xa, xb = max(int(round(x0)), 0), min(int(round(x1)), self.w)
        if ya >= yb or xa >= xb:
            return None
        return slice(ya, yb), slice(xa, xb)

    def rect(self, y0: float, y1: float, x0: float, x1: float, cls: int, obj: int) -> None:
        box = self._box(y0, y1, x0, x1)
        if box is not None:
            self.label[box] = cls
            self.obj[box] = obj

    def ellipse(self, cy: float, cx: float, ry: float, rx: float, cls: int, obj: int) -> None:
        box = self._box(cy - ry, cy + ry + 1, cx - rx, cx + rx + 1)
        if box is None:
            return
        ys = np.arange(box[0].start, box[0].stop, dtype=np.float32)[:, None]
        xs = np.arange(box[1].start, box[1].stop, dtype=np.float32)[None, :]
        inside = ((ys - cy) / max(ry, 0.5)) ** 2 + ((xs - cx) / max(rx, 0.5)) ** 2 <= 1.0
        self.label[box][inside] = cls
        self.obj[box][inside] = obj


class SyntheticStreets(Dataset):
    """Deterministic synthetic street scenes with CamVid classes.

    Args:
        num_images: dataset length.
        size: ``(H, W)`` of every sample.
        seed: scene family; sample ``i`` depends only on ``(seed, i)``.

    Items are ``(image, label, name)`` like the file datasets: ``uint8 (3, H, W)``,
    ``uint8 (H, W)`` with 255 for void, and ``"synthetic_s<seed>_<index>"``.
    """

    info: DatasetInfo = SYNTHETIC_INFO

    def __init__(self, num_images: int, size: tuple[int, int] = (256, 512), seed: int = 0) -> None:
        if int(num_images) < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        h, w = (int(s) for s in size)
        if h < 32 or w < 32:
            raise ValueError(f"size must be at least (32, 32) to hold a street scene, got {size}")
        self.num_images, self.size, self.seed = int(num_images), (h, w), int(seed)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} synthetic images")
        index %= self.num_images
        rng = np.random.default_rng([self.seed, index])
        image, label = _render(rng, *self.size)
        name = f"synthetic_s{self.seed}_{index:05d}"
        return torch.from_numpy(image), torch.from_numpy(label), name


def synthetic_split(
    split: str = "train",
    num_images: int | None = None,
    size: tuple[int, int] = (256, 512),
    seed: int | None = None,
) -> SyntheticStreets:
    """:class:`SyntheticStreets` with the split's default seed and length (``SYNTHETIC_SPLITS``)."""
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(
            f"unknown synthetic split {split!r}; known: {', '.join(SYNTHETIC_SPLITS)} "
            "(or pass seed= for another scene family)"
        )
    default_seed, default_n = SYNTHETIC_SPLITS[split]
    return SyntheticStreets(
        default_n if num_images is None else num_images,
        size,
        default_seed if seed is None else seed,
    )


# --------------------------------------------------------------------------- scene drawing
def _render(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    c = _Canvas(h, w, rng)
    u = rng.uniform
    horizon = h * u(0.38, 0.5)
    vx = w * u(0.38, 0.62)
    road_k, walk_k = u(0.35, 0.6), u(0.12, 0.25)

    def road_half(y: float) -> float:  # perspective: widths grow linearly below the horizon
        return max(y - horizon, 0.0) / (h - horizon) * w * road_k + 1.0

    def walk_half(y: float) -> float:
        return road_half(y) + max(y - horizon, 0.0) / (h - horizon) * w * walk_k + 1.0

    _buildings(c, horizon)
    _ground(c, horizon, vx, road_k, walk_k)
    for _ in range(rng.integers(0, 3)):
        _fence(c, horizon, vx, walk_half)
    for _ in range(rng.integers(1, 5)):
        _tree(c, horizon)
    for _ in range(rng.integers(1, 5)):
        _car(c, horizon, vx, road_half)
    for _ in range(rng.integers(1, 5)):
        _pedestrian(c, horizon, vx, road_half, walk_half)
    if rng.random() < 0.5:
        _bicyclist(c, horizon, vx, road_half)
    # Poles last (but before void) so every scene keeps its thin structures.
    for _ in range(rng.integers(2, 6)):
        _pole(c, horizon, vx, road_half, walk_half)
    _void(c)
    return _paint(c), c.label


def _buildings(c: _Canvas, horizon: float) -> None:
    x = 0.0
    while x < c.w:
        width = c.w * c.rng.uniform(0.06, 0.2)
        if c.rng.random() < 0.8:
            roof = c.rng.uniform(0.05 * c.h, horizon - 0.05 * c.h)
            obj = c.new_object(BUILDING)
            c.rect(roof, c.h, x, x + width, BUILDING, obj)
            if c.rng.random() < 0.6:  # a grid of darker windows, still labelled building
                box = c._box(roof + 4, horizon, x + 3, x + width - 3)
                if box is not None:
                    py, px = int(c.rng.integers(8, 16)), int(c.rng.integers(8, 16))
                    ys = np.arange(box[0].start, box[0].stop)[:, None] - box[0].start
                    xs = np.arange(box[1].start, box[1].stop)[None, :] - box[1].start
                    window = (ys % py < py // 2) & (xs % px < px // 2)
                    c.obj[box][window] = c.new_object(BUILDING, shade=0.55)
        x += width


def _ground(c: _Canvas, horizon: float, vx: float, road_k: float, walk_k: float) -> None:
    y0 = int(np.ceil(horizon))
    ys = np.arange(y0, c.h, dtype=np.float32)[:, None]
    xs = np.arange(c.w, dtype=np.float32)[None, :]
    t = (ys - horizon) / (c.h - horizon)
    dx = np.abs(xs - vx)
    road = dx < t * c.w * road_k + 1.0
    walk = ~road & (dx < t * c.w * (road_k + walk_k) + 2.0)
    rows = slice(y0, c.h)
    label, obj = c.label[rows], c.obj[rows]
    # Beyond the sidewalk, gaps between buildings show more pavement, not sky.
    beyond = ~road & ~walk & (label == SKY)
    walk_id = c.new_object(SIDEWALK)
    label[walk | beyond] = SIDEWALK
    obj[walk | beyond] = walk_id
    label[road] = ROAD
    obj[road] = c.new_object(ROAD)
    # Dashed centre line: road class, bright paint.
    dash = road & (dx < t * 4.0 + 0.5) & ((ys.astype(np.int32) // 10) % 2 == 0)
    obj[dash] = c.new_object(ROAD, shade=2.2)


def _fence(c: _Canvas, horizon: float, vx: float, walk_half) -> None:
    bottom = horizon + (c.h - horizon) * c.rng.uniform(0.05, 0.3)
    height = c.h * c.rng.uniform(0.04, 0.1)
    side = c.rng.choice((-1, 1))
    edge = vx + side * walk_half(bottom)
    length = c.w * c.rng.uniform(0.1, 0.3)
    x0, x1 = (edge, edge + length) if side > 0 else (edge - length, edge)
    obj = c.new_object(FENCE)
    c.rect(bottom - height, bottom, x0, x1, FENCE, obj)
    box = c._box(bottom - height, bottom, x0, x1)
    if box is not None:  # vertical slats
        xs = np.arange(box[1].start, box[1].stop)
        c.obj[box][:, xs % 5 < 2] = c.new_object(FENCE, shade=0.7)


def _tree(c: _Canvas, horizon: float) -> None:
    cx = c.rng.uniform(0, c.w)
    r = c.h * c.rng.uniform(0.05, 0.14)
    cy = c.rng.uniform(0.2 * c.h, horizon)
    obj = c.new_object(TREE)
    trunk = max(2.0, r * 0.15)
    c.rect(cy, cy + r * 2.2, cx - trunk / 2, cx + trunk / 2, TREE, obj)
    for _ in range(c.rng.integers(3, 6)):  # a crown from a few overlapping blobs
        c.ellipse(
            cy + c.rng.normal(0, r * 0.3),
            cx + c.rng.normal(0, r * 0.4),
            r * c.rng.uniform(0.5, 0.9),
            r * c.rng.uniform(0.6, 1.0),
            TREE,
            obj,
        )


def _car(c: _Canvas, horizon: float, vx: float, road_half) -> None:
    bottom = horizon + (c.h - horizon) * c.rng.uniform(0.15, 0.95)
    t = (bottom - horizon) / (c.h - horizon)
    width = t * c.w * c.rng.uniform(0.12, 0.22) + 6
    height = width * c.rng.uniform(0.45, 0.6)
    cx = vx + road_half(bottom) * c.rng.uniform(-0.8, 0.8)
    obj = c.new_object(CAR)
    c.rect(bottom - height * 0.6, bottom, cx - width / 2, cx + width / 2, CAR, obj)
    c.rect(bottom - height, bottom - height * 0.55, cx - width / 3, cx + width / 3, CAR, obj)
    glass = c.new_object(CAR, shade=0.45)  # windows: still car, darker
    top, mid = bottom - height * 0.92, bottom - height * 0.6
    c.rect(top, mid, cx - width / 4, cx + width / 4, CAR, glass)


def _pedestrian(c: _Canvas, horizon: float, vx: float, road_half, walk_half) -> None:
    bottom = horizon + (c.h - horizon) * c.rng.uniform(0.05, 0.7)
    t = (bottom - horizon) / (c.h - horizon)
    side = c.rng.choice((-1, 1))
    inner, outer = road_half(bottom), walk_half(bottom)
    cx = vx + side * (inner + (outer - inner) * c.rng.uniform(0.2, 0.8))
    height = t * c.h * c.rng.uniform(0.2, 0.3) + 8
    obj = c.new_object(PEDESTRIAN)
    c.ellipse(bottom - height * 0.45, cx, height * 0.45, height * 0.14, PEDESTRIAN, obj)
    c.ellipse(bottom - height * 0.92, cx, height * 0.08, height * 0.07, PEDESTRIAN, obj)


def _bicyclist(c: _Canvas, horizon: float, vx: float, road_half) -> None:
    bottom = horizon + (c.h - horizon) * c.rng.uniform(0.2, 0.8)
    t = (bottom - horizon) / (c.h - horizon)
    cx = vx + road_half(bottom) * c.rng.choice((-0.85, 0.85))
    height = t * c.h * c.rng.uniform(0.25, 0.35) + 8
    obj = c.new_object(BICYCLIST)
    c.ellipse(bottom - height * 0.2, cx, height * 0.2, height * 0.35, BICYCLIST, obj)  # bike
    c.ellipse(bottom - height * 0.6, cx, height * 0.3, height * 0.12, BICYCLIST, obj)  # rider


def _pole(c: _Canvas, horizon: float, vx: float, road_half, walk_half) -> None:
    bottom = horizon + (c.h - horizon) * c.rng.uniform(0.05, 0.5)
    side = c.rng.choice((-1, 1))
    inner, outer = road_half(bottom), walk_half(bottom)
    x = vx + side * (inner + (outer - inner) * c.rng.uniform(0.3, 0.8))
    x = min(max(x, 0.0), c.w - 3.0)
    width = int(c.rng.integers(1, 4))  # 1-3 px: what nearest-neighbour down-sampling loses
    top = max(2.0, bottom - c.h * c.rng.uniform(0.3, 0.55))
    x0 = int(x)
    c.rect(top, bottom, x0, x0 + width, POLE, c.new_object(POLE))
    if c.rng.random() < 0.6:  # a small sign near the top
        sh, sw = c.rng.uniform(3, 8), c.rng.uniform(3, 9)
        sy = top + c.rng.uniform(0, 10)
        offset = c.rng.choice((-sw, 0.0, width))
        c.rect(sy, sy + sh, x0 + offset, x0 + offset + sw, SIGN, c.new_object(SIGN))


def _void(c: _Canvas) -> None:
    if c.rng.random() < 0.5:  # an ego-vehicle strip along the bottom edge
        c.rect(c.h - c.rng.integers(1, 7), c.h, 0, c.w, VOID, c.new_object(VOID))
    for _ in range(c.rng.integers(0, 3)):
        r = c.rng.uniform(2, 6)
        c.ellipse(c.rng.uniform(0, c.h), c.rng.uniform(0, c.w), r, r, VOID, c.new_object(VOID))


def _paint(c: _Canvas) -> np.ndarray:
    """Object colours + class-scaled low-frequency texture + sky gradient + pixel noise.

    Returns ``uint8 (3, H, W)``. Plain numpy in float32: torch's intra-op threads cost more than
    they save on arrays this small, and a data-loading worker should stay on one core anyway.
    """
    h, w = c.h, c.w
    rng = c.rng
    rows = np.asarray(c.object_rows)
    jitter = rng.normal(0.0, 1.0, (len(rows), 3)).astype(np.float32) * _OBJECT_JITTER[rows, None]
    # Mostly a brightness change, a little hue change: objects of a class still look alike.
    jitter = 0.7 * jitter.mean(axis=1, keepdims=True) + 0.3 * jitter
    colors = _BASE_RGB[rows] * np.asarray(c.object_shades, dtype=np.float32)[:, None] + jitter

    cls_row = np.where(c.label == VOID, 11, c.label)
    shift = _smooth_noise(rng, h, w, cell=8) * _TEXTURE[cls_row]
    # Sky brightens towards the horizon, as in daylight photos.
    gradient = np.linspace(-15.0, 20.0, h, dtype=np.float32)[:, None]
    shift += np.where(c.label == SKY, gradient, np.float32(0.0))
    image = np.take(colors, c.obj, axis=0)  # (H, W, 3); much faster than colors.T[:, obj]
    image += shift[..., None]
    # Uniform noise with the spread of a Gaussian of std _PIXEL_NOISE; far cheaper to draw.
    noise = rng.random((h, w, 3), dtype=np.float32)
    noise -= 0.5
    noise *= _PIXEL_NOISE * 12**0.5
    image += noise
    np.clip(image, 0, 255, out=image)
    return np.ascontiguousarray(image.astype(np.uint8).transpose(2, 0, 1))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Unit-variance-ish noise varying over ``cell`` pixels: a coarse grid, bilinearly enlarged."""
    coarse = rng.standard_normal((h // cell + 2, w // cell + 2), dtype=np.float32)

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n, dtype=np.float32) + 0.5) / cell
        i0 = pos.astype(np.int64)
        return i0, i0 + 1, pos - i0

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    rows = coarse[y0] * (1 - fy)[:, None] + coarse[y1] * fy[:, None]  # (h, w_coarse)
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx
