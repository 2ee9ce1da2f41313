"""``convention="cv2"`` against OpenCV itself: ``cv2.resize`` of each class indicator (float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import softseg
from conftest import IGNORE, as_np, label_maps, maybe_clamp, one_hot, sizes
from softseg.ops import resample as R
from softseg.ops._fast import FastPath
from softseg.ops.kernels import Resampler

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")

INTER = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
SETTINGS = settings(max_examples=60, deadline=None)


def cv2_resize(planes: np.ndarray, size: tuple[int, int], kernel: str) -> np.ndarray:
    """``cv2.resize`` of every plane of ``(..., H, W)`` as float32, to ``size = (h, w)``."""
    arr = np.asarray(planes, dtype=np.float32)
    lead, (H, W) = arr.shape[:-2], arr.shape[-2:]
    out = [
        cv2.resize(np.ascontiguousarray(p), size[::-1], interpolation=INTER[kernel])
        for p in arr.reshape(-1, H, W)
    ]
    return np.stack(out).astype(np.float64).reshape(*lead, *size)


@SETTINGS
@given(lab_c=label_maps(), size=sizes, kernel=st.sampled_from(sorted(INTER)))
def test_soft_downsample_is_cv2_resize_of_the_one_hot(lab_c, size, kernel):
    """Up- and down-sampling, integer and non-integer factors, INTER_AREA's mixed case."""
    lab, C = lab_c
    ref = maybe_clamp(cv2_resize(one_hot(lab, C), size, kernel), kernel)
    out = softseg.soft_downsample(torch.from_numpy(lab), size, C, kernel=kernel, convention="cv2")
    np.testing.assert_allclose(as_np(out), ref, atol=1e-5, rtol=0)


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    size=sizes,
    kernel=st.sampled_from(sorted(INTER)),
    seed=st.integers(0, 2**31),
)
def test_resize_image_is_cv2_resize(shape, size, kernel, seed):
    """Images, negative lobes included (no clamp on images), channels last in OpenCV."""
    image = torch.from_numpy(np.random.default_rng(seed).random((3, *shape), dtype=np.float32))
    out = softseg.resize_image(image, size, kernel=kernel, convention="cv2")
    hwc = np.ascontiguousarray(image.numpy().transpose(1, 2, 0))
    ref = cv2.resize(hwc, size[::-1], interpolation=INTER[kernel]).reshape(*size, 3)
    np.testing.assert_allclose(out.numpy(), ref.transpose(2, 0, 1), atol=1e-5, rtol=0)


@settings(max_examples=15, deadline=None)
@given(
    n_in=st.integers(1, 2048),
    n_out=st.integers(1, 2048),
    kernel=st.sampled_from(sorted(INTER)),
    vertical=st.booleans(),
)
def test_axis_weights_on_long_axes(n_in, n_out, kernel, vertical):
    """Frame-sized axes, where float32 positions would drift by 1e-4: ``cv2.resize`` of the
    identity image along one axis is the axis matrix itself (or its transpose)."""
    eye = np.eye(n_in, dtype=np.float32)
    dsize = (n_in, n_out) if vertical else (n_out, n_in)
    ref = cv2.resize(eye, dsize, interpolation=INTER[kernel])
    ref = ref if vertical else ref.T
    dense = softseg.axis_weights(n_in, n_out, kernel, convention="cv2").to_dense(n_in)
    np.testing.assert_allclose(dense.numpy(), ref, atol=5e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(lab_c=label_maps(max_hw=30), size=sizes, kernel=st.sampled_from(sorted(INTER)))
def test_fast_paths_equal_the_reference(lab_c, size, kernel):
    lab, C = lab_c
    labels = torch.from_numpy(lab)
    rs = Resampler(kernel, convention="cv2")
    ref = softseg.ops.soft_downsample_reference(labels, size, C, resampler=rs)
    box = (0.0, 0.0, *map(float, lab.shape))
    paths = (FastPath("never"), FastPath("always"), FastPath("auto", block_bytes=1))
    for fast in (*paths, FastPath(tap_path="always"), FastPath(tap_path="never")):
        out = R._soft_labels(labels, box, size, C, IGNORE, rs, fast)
        torch.testing.assert_close(out.double(), ref, atol=2e-6, rtol=0, msg=f"{fast}")


@SETTINGS
@given(
    lab_c=label_maps(max_hw=24),
    full=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    kernel=st.sampled_from(sorted(INTER)),
    data=st.data(),
)
def test_crop_is_resize_then_crop(lab_c, full, kernel, data):
    """A box on the grid of a whole resize to ``full`` is that resize, cropped."""
    lab, C = lab_c
    (H, W), (hf, wf) = lab.shape, full
    h, w = data.draw(st.integers(1, hf)), data.draw(st.integers(1, wf))
    oy, ox = data.draw(st.integers(0, hf - h)), data.draw(st.integers(0, wf - w))
    box = (oy * H / hf, ox * W / wf, h * H / hf, w * W / wf)
    out = softseg.soft_resized_crop(lab, *box, (h, w), C, kernel=kernel, convention="cv2")
    whole = maybe_clamp(cv2_resize(one_hot(lab, C), full, kernel), kernel)
    ref = whole[:, oy : oy + h, ox : ox + w]
    keep = off_ties(kernel, (H, W), full, (oy, ox), (h, w))
    np.testing.assert_allclose(as_np(out)[:, keep], ref[:, keep], atol=1e-5, rtol=0)


def off_ties(kernel, in_hw, full_hw, offset, size) -> np.ndarray:
    """Output pixels ``(h, w)`` of a crop at ``offset`` of a resize ``in_hw -> full_hw`` whose
    source pixel is not an exact tie.

    Nearest and INTER_AREA's enlarging rule pick a pixel by an output's left edge; an edge exactly
    on a pixel edge rounds either way in OpenCV's floating point, and differently again once the
    grid is shifted by a crop or padding, so those outputs are left out of the comparison.
    """
    (H, W), (hf, wf), (oy, ox), (h, w) = in_hw, full_hw, offset, size
    if not (kernel == "nearest" or (kernel == "area" and (hf > H or wf > W))):
        return np.ones((h, w), dtype=bool)
    ties = ((oy + np.arange(h)) * H % hf == 0)[:, None] | ((ox + np.arange(w)) * W % wf == 0)
    return ~ties


@SETTINGS
@given(
    lab_c=label_maps(max_hw=24),
    pads=st.tuples(*[st.integers(0, 6)] * 4),
    size=sizes,
    kernel=st.sampled_from(sorted(INTER)),
)
def test_box_outside_the_image_is_ignore_padding(lab_c, pads, size, kernel):
    """A box over the image padded by whole pixels: OpenCV on the indicator padded with zeros."""
    lab, C = lab_c
    (H, W), (top, bottom, left, right) = lab.shape, pads
    padded = np.pad(one_hot(lab, C), ((0, 0), (top, bottom), (left, right)))
    box = (-top, -left, H + top + bottom, W + left + right)
    out = softseg.soft_resized_crop(lab, *box, size, C, kernel=kernel, convention="cv2")
    ref = maybe_clamp(cv2_resize(padded, size, kernel), kernel)
    keep = off_ties(kernel, padded.shape[1:], size, (0, 0), size)
    np.testing.assert_allclose(as_np(out)[:, keep], ref[:, keep], atol=1e-5, rtol=0)


@SETTINGS
@given(lab_c=label_maps(), size=sizes)
def test_nearest_baseline_is_cv2_inter_nearest(lab_c, size):
    lab, _ = lab_c
    ref = cv2.resize(lab.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)
    out = softseg.nearest_downsample(lab.astype(np.uint8), size, convention="cv2")
    np.testing.assert_array_equal(out.numpy(), ref.reshape(size))


def test_nearest_reads_floor_of_i_times_scale():
    """Not centre based: 5 -> 3 reads pixels 0, 1, 3 (a centre rule would read 0, 2, 4)."""
    labels = torch.arange(5).view(1, 5)
    out = softseg.nearest_downsample(labels, (1, 3), convention="cv2")
    assert out.tolist() == [[0, 1, 3]]


def test_area_shrinks_by_coverage_and_enlarges_like_opencv():
    labels = torch.tensor([[0, 1, 1, 0, 0]])
    shrink = softseg.soft_downsample(labels, (1, 3), 2, kernel="area", convention="cv2")
    # outputs cover [0, 5/3), [5/3, 10/3), [10/3, 5): class 1 holds 0.4, 0.8 and 0 of them
    np.testing.assert_allclose(shrink[1, 0].numpy(), [0.4, 0.8, 0.0], atol=1e-6)
    # enlarging the other axis switches both axes to OpenCV's two-tap rule
    mixed = softseg.soft_downsample(labels, (2, 3), 2, kernel="area", convention="cv2")
    np.testing.assert_allclose(mixed[1, 0].numpy(), [0.4, 1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel": "bilinear", "antialias": True}, r"antialias=True.*'bilinear'.*'cv2'"),
        ({"kernel": "nearest", "antialias": True}, r"antialias=True.*INTER_NEAREST"),
        ({"kernel": "bicubic", "align_corners": True}, r"align_corners=True.*'cv2'"),
        ({"kernel": "hamming"}, r"'hamming'.*convention='cv2'"),
    ],
)
def test_cv2_resampler_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        softseg.soft_downsample(
            torch.zeros(4, 4, dtype=torch.long), 2, 2, convention="cv2", **kwargs
        )


def test_cv2_defaults():
    assert Resampler("bilinear", convention="cv2").antialias is False
    assert Resampler("area", convention="cv2") == Resampler("box", antialias=True, convention="cv2")
    assert Resampler("lanczos", convention="cv2").negative_lobes
