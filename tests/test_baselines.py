"""Hard label baselines: nearest neighbour (torch and PIL grids) and majority vote."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import softseg
from conftest import IGNORE, label_maps, make_labels, sizes

SETTINGS = settings(max_examples=25, deadline=None)


def torch_nearest_ref(lab: np.ndarray, size) -> np.ndarray:
    t = torch.from_numpy(lab.astype(np.float32))[None, None]
    return F.interpolate(t, size=tuple(size), mode="nearest")[0, 0].numpy().astype(np.int64)


def pil_nearest_ref(lab: np.ndarray, size, mode: str) -> np.ndarray:
    arr = lab.astype(np.uint8 if mode == "L" else np.int32)
    im = Image.fromarray(arr)
    assert im.mode == mode
    h, w = size
    return np.asarray(im.resize((w, h), resample=Image.Resampling.NEAREST)).astype(np.int64)


def mode_ref(lab: np.ndarray, size, num_classes: int, ignore_index: int = IGNORE) -> np.ndarray:
    """Brute force majority vote over each output's area footprint."""
    H, W = lab.shape
    h, w = size
    out = np.empty((h, w), dtype=np.int64)
    for i in range(h):
        r0, r1 = (i * H) // h, -(-((i + 1) * H) // h)
        for j in range(w):
            c0, c1 = (j * W) // w, -(-((j + 1) * W) // w)
            block = lab[r0:r1, c0:c1].ravel().tolist()
            counts = [block.count(c) for c in range(num_classes)]
            best = max(counts)
            out[i, j] = ignore_index if best == 0 else counts.index(best)
    return out


# --------------------------------------------------------------------------- nearest
@SETTINGS
@given(lab_c=label_maps(), size=sizes, dtype=st.sampled_from([np.uint8, np.int32, np.int64]))
def test_nearest_matches_torch(lab_c, size, dtype):
    lab, _ = lab_c
    labels = torch.from_numpy(lab.astype(dtype))
    out = softseg.nearest_downsample(labels, size)
    assert out.dtype == labels.dtype and out.shape == size
    np.testing.assert_array_equal(out.long().numpy(), torch_nearest_ref(lab, size))


@SETTINGS
@given(lab_c=label_maps(), size=sizes, mode=st.sampled_from(["I", "L"]))
def test_nearest_matches_pil(lab_c, size, mode):
    lab, _ = lab_c
    out = softseg.nearest_downsample(lab, size, convention="pil")
    np.testing.assert_array_equal(out.long().numpy(), pil_nearest_ref(lab, size, mode))


@SETTINGS
@given(lab_c=label_maps(), size=sizes, convention=st.sampled_from(["torch", "pil"]))
def test_nearest_agrees_with_soft_nearest(lab_c, size, convention):
    lab, C = lab_c
    hard = softseg.nearest_downsample(lab, size, convention=convention)
    soft = softseg.soft_downsample(lab, size, C, kernel="nearest", convention=convention)
    # the soft nearest label is the one-hot of the hard one (ignore -> all zero)
    codes = hard.long().masked_fill(hard.long() == IGNORE, C)
    expected = F.one_hot(codes, C + 1)[..., :C].permute(2, 0, 1).float()
    torch.testing.assert_close(soft, expected, rtol=0, atol=0)


@SETTINGS
@given(lab_c=label_maps(), size=sizes, data=st.data())
def test_nearest_crop_matches_pil_box(lab_c, size, data):
    lab, _ = lab_c
    H, W = lab.shape
    # box edges on a 1/16 grid (exact in float32, as PIL parses the box)
    t0, t1 = sorted((data.draw(st.integers(0, 16 * H)), data.draw(st.integers(0, 16 * H))))
    l0, l1 = sorted((data.draw(st.integers(0, 16 * W)), data.draw(st.integers(0, 16 * W))))
    t1, l1 = max(t1, t0 + 1), max(l1, l0 + 1)
    if t1 > 16 * H:
        t0, t1 = 16 * H - 1, 16 * H
    if l1 > 16 * W:
        l0, l1 = 16 * W - 1, 16 * W
    top, left, height, width = t0 / 16, l0 / 16, (t1 - t0) / 16, (l1 - l0) / 16
    out = softseg.nearest_resized_crop(lab, top, left, height, width, size, convention="pil")
    h, w = size
    im = Image.fromarray(lab.astype(np.int32))
    box = (left, top, left + width, top + height)
    ref = np.asarray(im.resize((w, h), resample=Image.Resampling.NEAREST, box=box))
    np.testing.assert_array_equal(out.numpy(), ref)


def test_nearest_batch_equals_items():
    rng = np.random.default_rng(3)
    batch = np.stack([make_labels(rng, 17, 23, 5, "noise", 0.2) for _ in range(3)])
    out = softseg.nearest_downsample(torch.from_numpy(batch), (6, 9))
    assert out.shape == (3, 6, 9)
    for i in range(3):
        np.testing.assert_array_equal(out[i].numpy(), torch_nearest_ref(batch[i], (6, 9)))


def test_nearest_crop_outside_is_ignore():
    lab = np.arange(16, dtype=np.int64).reshape(4, 4)
    out = softseg.nearest_resized_crop(lab, -2, 0, 8, 4, (8, 4), ignore_index=99)
    np.testing.assert_array_equal(out[:2].numpy(), np.full((2, 4), 99))
    np.testing.assert_array_equal(out[2:6].numpy(), lab)
    np.testing.assert_array_equal(out[6:].numpy(), np.full((2, 4), 99))


def test_nearest_rejects_float_labels():
    with pytest.raises(ValueError, match="float"):
        softseg.nearest_downsample(torch.zeros(4, 4), (2, 2))


DIMS = r"\(H, W\) or \(N, H, W\)"


def test_mode_rejects_4d_labels():
    with pytest.raises(ValueError, match=DIMS + r".*\(1, 2, 6, 7\)"):
        softseg.mode_downsample(np.zeros((1, 2, 6, 7), dtype=np.int64), (3, 3), 2)


def test_nearest_rejects_4d_labels():
    with pytest.raises(ValueError, match=DIMS):
        softseg.nearest_downsample(np.zeros((1, 2, 6, 7), dtype=np.int64), (3, 3))


@pytest.mark.parametrize("method", ["nearest", "mode"])
def test_hard_methods_reject_1d_labels(method):
    lab = np.zeros(7, dtype=np.int64)
    with pytest.raises(ValueError, match=DIMS + r".*\(7,\)"):
        if method == "nearest":
            softseg.nearest_downsample(lab, (3, 3))
        else:
            softseg.mode_downsample(lab, (1, 1), 2)


# --------------------------------------------------------------------------- mode
@SETTINGS
@given(lab_c=label_maps(max_hw=30), data=st.data())
def test_mode_matches_brute_force(lab_c, data):
    lab, C = lab_c
    H, W = lab.shape
    size = (data.draw(st.integers(1, H)), data.draw(st.integers(1, W)))
    out = softseg.mode_downsample(torch.from_numpy(lab), size, C)
    assert out.dtype == torch.int64 and out.shape == size
    np.testing.assert_array_equal(out.numpy(), mode_ref(lab, size, C))


@SETTINGS
@given(
    H=st.integers(2, 24),
    W=st.integers(2, 24),
    C=st.integers(2, 4),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_mode_with_many_ties(H, W, C, seed, data):
    # two classes in a fine checkerboard plus ignore: ties happen in most even footprints
    rng = np.random.default_rng(seed)
    lab = ((np.arange(H)[:, None] + np.arange(W)[None, :]) % 2 * (C - 1)).astype(np.int64)
    lab[rng.random((H, W)) < 0.2] = IGNORE
    size = (data.draw(st.integers(1, H)), data.draw(st.integers(1, W)))
    out = softseg.mode_downsample(lab.astype(np.uint8), size, C)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.long().numpy(), mode_ref(lab, size, C))


def test_mode_hand_cases():
    lab = np.array(
        [
            [0, 1, 2, 2, 255, 255],
            [1, 0, 1, 2, 255, 3],
        ]
    )
    out = softseg.mode_downsample(lab, (1, 3), 4)
    # tie 0/1 -> 0; 2 wins 3 to 1; only one valid vote (3) among ignored pixels
    np.testing.assert_array_equal(out.numpy(), [[0, 2, 3]])
    all_ignored = np.full((4, 4), IGNORE)
    all_ignored[0, 0] = 1
    out = softseg.mode_downsample(all_ignored, (2, 2), 2, ignore_index=IGNORE)
    np.testing.assert_array_equal(out.numpy(), [[1, IGNORE], [IGNORE, IGNORE]])


def test_mode_custom_ignore_and_batch():
    rng = np.random.default_rng(5)
    batch = np.stack([make_labels(rng, 13, 11, 3, "noise", 0.4, ignore_index=7) for _ in range(2)])
    out = softseg.mode_downsample(torch.from_numpy(batch), (4, 5), 3, ignore_index=7)
    assert out.shape == (2, 4, 5)
    for i in range(2):
        np.testing.assert_array_equal(out[i].numpy(), mode_ref(batch[i], (4, 5), 3, ignore_index=7))


@SETTINGS
@given(lab_c=label_maps(max_hw=20))
def test_mode_identity_at_same_size(lab_c):
    lab, C = lab_c
    out = softseg.mode_downsample(lab, lab.shape, C)
    np.testing.assert_array_equal(out.numpy(), lab)


@pytest.mark.parametrize("size", [(9, 4), (4, 9), (9, 9)])
def test_mode_refuses_upsampling(size):
    lab = np.zeros((8, 8), dtype=np.int64)
    expected = r"no larger than the input \(8, 8\), got " + re.escape(str(size))
    with pytest.raises(ValueError, match=expected):
        softseg.mode_downsample(lab, size, 2)
