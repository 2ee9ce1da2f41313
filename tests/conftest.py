"""Shared references and hypothesis strategies for the softseg core tests.

Everything here is an independent re-statement of what the library promises: references go through
``torch.nn.functional.interpolate`` and ``PIL.Image.resize`` directly, never through softseg. (The
dense matrix form of softseg's own weights is the package's: ``AxisWeights.to_dense``, and its
dense soft label reference is ``softseg.ops.soft_resized_crop_reference``.)
Test modules import these helpers with ``from conftest import ...`` (the tests folder is on
``sys.path`` under pytest's default import mode).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from PIL import Image

IGNORE = 255

TORCH_KERNELS = ("nearest", "area", "box", "bilinear", "bicubic")
PIL_KERNELS = ("nearest", "area", "box", "bilinear", "hamming", "bicubic", "lanczos")
NEGATIVE_LOBES = frozenset({"bicubic", "lanczos"})
NONNEG_TORCH = tuple(k for k in TORCH_KERNELS if k not in NEGATIVE_LOBES)
NONNEG_PIL = tuple(k for k in PIL_KERNELS if k not in NEGATIVE_LOBES)
AA_MODES = ("bilinear", "bicubic")
CONV_KERNELS = [("torch", k) for k in TORCH_KERNELS] + [("pil", k) for k in PIL_KERNELS]
NONNEG_CONV_KERNELS = [("torch", k) for k in NONNEG_TORCH] + [("pil", k) for k in NONNEG_PIL]

PIL_FILTER = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "area": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


# --------------------------------------------------------------------------- one-hot
def one_hot(labels, num_classes: int, ignore_index: int | None = IGNORE) -> np.ndarray:
    """Float64 one-hot ``(..., C, H, W)``; ignored pixels are all zero."""
    lab = np.asarray(labels).astype(np.int64)
    classes = np.arange(num_classes).reshape((num_classes, 1, 1))
    out = (lab[..., None, :, :] == classes).astype(np.float64)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        out[..., ignore_index, :, :] = 0.0
    return out


def valid_mask(labels, ignore_index: int | None = IGNORE) -> np.ndarray:
    lab = np.asarray(labels)
    if ignore_index is None:
        return np.ones(lab.shape, dtype=np.float64)
    return (lab != ignore_index).astype(np.float64)


# --------------------------------------------------------------------------- torch reference
def torch_resize(x, size, kernel: str, antialias: bool = True, align_corners: bool = False):
    """``F.interpolate`` of a float array ``(..., H, W)`` (every leading plane independently)."""
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    lead, (H, W) = t.shape[:-2], t.shape[-2:]
    mode = "area" if kernel in ("area", "box") else kernel
    kwargs = {}
    if mode in AA_MODES:
        kwargs = dict(antialias=antialias, align_corners=align_corners)
    out = F.interpolate(t.reshape(1, -1, H, W), size=tuple(size), mode=mode, **kwargs)
    return out.reshape(*lead, *size).double().numpy()


def torch_soft_ref(labels, size, num_classes, kernel, antialias=True, align_corners=False,
                   ignore_index=IGNORE):  # fmt: skip
    return torch_resize(one_hot(labels, num_classes, ignore_index), size, kernel, antialias,
                        align_corners)  # fmt: skip


# --------------------------------------------------------------------------- PIL reference
def pil_resize(x, size, kernel: str, box=None) -> np.ndarray:
    """PIL ``Image.resize((w, h), filter, box)`` on each plane of ``(..., H, W)`` as mode F."""
    arr = np.asarray(x, dtype=np.float32)
    lead, (H, W) = arr.shape[:-2], arr.shape[-2:]
    h, w = size
    planes = []
    for plane in arr.reshape(-1, H, W):
        im = Image.fromarray(np.ascontiguousarray(plane), mode="F")
        kwargs = {} if box is None else {"box": tuple(float(b) for b in box)}
        planes.append(np.asarray(im.resize((w, h), resample=PIL_FILTER[kernel], **kwargs)))
    return np.stack(planes).astype(np.float64).reshape(*lead, h, w)


def pil_soft_ref(labels, size, num_classes, kernel, ignore_index=IGNORE, box=None):
    return pil_resize(one_hot(labels, num_classes, ignore_index), size, kernel, box=box)


def torch_aa_bug(kernel: str, antialias: bool, convention: str = "torch") -> bool:
    """Whether the reference would go through torch's antialiased interpolate, which is wrong when
    the input or output width is 1 (so such shapes are skipped there)."""
    return convention == "torch" and antialias and kernel in AA_MODES


def reference_resize(x, size, convention, kernel, antialias=True, align_corners=False, box=None):
    """``torch_resize`` or ``pil_resize`` (with an optional PIL box) by convention."""
    if convention == "torch":
        assert box is None
        return torch_resize(x, size, kernel, antialias, align_corners)
    return pil_resize(x, size, kernel, box=box)


# --------------------------------------------------------------------------- post-processing
def clamp_rescale(raw: np.ndarray) -> np.ndarray:
    """Clamp negative lobes at 0, then rescale each pixel to its valid mass ``clip(sum, 0, 1)``."""
    raw = np.asarray(raw, dtype=np.float64)
    valid = np.clip(raw.sum(axis=-3, keepdims=True), 0.0, 1.0)
    pos = np.maximum(raw, 0.0)
    total = pos.sum(axis=-3, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, pos * valid / safe, 0.0)


def maybe_clamp(raw: np.ndarray, kernel: str) -> np.ndarray:
    return clamp_rescale(raw) if kernel in NEGATIVE_LOBES else raw


def as_np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


# --------------------------------------------------------------------------- strategies
def make_labels(rng: np.random.Generator, H: int, W: int, C: int, style: str, p_ignore: float,
                ignore_index: int = IGNORE) -> np.ndarray:  # fmt: skip
    if style == "noise":
        lab = rng.integers(0, C, (H, W))
    elif style == "blocks":
        bh, bw = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        coarse = rng.integers(0, C, (math.ceil(H / bh), math.ceil(W / bw)))
        lab = np.repeat(np.repeat(coarse, bh, axis=0), bw, axis=1)[:H, :W]
    elif style == "stripes":
        lab = np.full((H, W), int(rng.integers(0, C)))
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(0, C))
            if rng.random() < 0.5:
                lab[int(rng.integers(0, H)), :] = c
            else:
                lab[:, int(rng.integers(0, W))] = c
    else:  # constant
        lab = np.full((H, W), int(rng.integers(0, C)))
    lab = lab.astype(np.int64)
    if p_ignore > 0:
        lab[rng.random((H, W)) < p_ignore] = ignore_index
    return lab


@st.composite
def label_maps(draw, max_hw: int = 40, max_classes: int = 6, ignore: bool = True,
               min_w: int = 1, min_h: int = 1):  # fmt: skip
    """``(labels (H, W) int64 numpy, num_classes)``: noise, blocks, thin stripes or constant."""
    H = draw(st.integers(min_h, max_hw))
    W = draw(st.integers(min_w, max_hw))
    C = draw(st.integers(1, max_classes))
    style = draw(st.sampled_from(["noise", "blocks", "stripes", "constant"]))
    p_ignore = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0])) if ignore else 0.0
    seed = draw(st.integers(0, 2**32 - 1))
    return make_labels(np.random.default_rng(seed), H, W, C, style, p_ignore), C


sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))


#: A training run small enough for a test: synthetic scenes, the tiny model, two epochs.
SMALL_RUN = dict(
    dataset="synthetic",
    dataset_options={"num_images": 8, "size": (48, 96)},
    factor=2.0,
    arch="tiny",
    batch_size=4,
    workers=0,
    epochs=2,
    scale=(0.75, 1.25),
)


def results_script(name: str):
    """``docs/results/<name>.py`` as a module (the study's scripts are not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
