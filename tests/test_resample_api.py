"""The public soft label and image functions as an API: argument errors, the resampler= argument,
and the fast path against the package's dense reference."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import softseg
import softseg.ops.resample as R
from conftest import (
    CONV_KERNELS,
    IGNORE,
    as_np,
    label_maps,
    make_labels,
    maybe_clamp,
    one_hot,
    reference_resize,
    sizes,
    torch_aa_bug,
)
from softseg.ops import Resampler
from softseg.ops._fast import FastPath

SETTINGS = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=12, deadline=None)


# --------------------------------------------------------------------------- errors
LAB = np.zeros((6, 7), dtype=np.int64)


def test_error_label_out_of_range():
    lab = LAB.copy()
    lab[2, 3] = 9
    with pytest.raises(ValueError, match=r"9.*\[0, 4\)"):
        softseg.soft_downsample(lab, (3, 3), 4)
    lab[2, 3] = -3
    with pytest.raises(ValueError, match=r"-3"):
        softseg.soft_downsample(lab, (3, 3), 4)
    lab[2, 3] = IGNORE  # the ignore value is fine
    softseg.soft_downsample(lab, (3, 3), 4)
    with pytest.raises(ValueError, match=r"255"):
        softseg.soft_downsample(lab, (3, 3), 4, ignore_index=None)
    with pytest.raises(ValueError, match=r"255"):
        softseg.soft_downsample(lab, (3, 3), 4, ignore_index=0)


@pytest.mark.parametrize(
    "bad", [LAB.astype(np.float32), torch.zeros((6, 7)), torch.zeros((6, 7), dtype=torch.bool),
            LAB.astype(bool), torch.zeros((6, 7), dtype=torch.float64)],
)  # fmt: skip
def test_error_float_and_bool_labels(bad):
    with pytest.raises(ValueError, match=r"(?i)integer"):
        softseg.soft_downsample(bad, (3, 3), 4)
    with pytest.raises(ValueError, match=r"(?i)(float|bool)"):
        softseg.soft_resized_crop(bad, 0, 0, 6, 7, (3, 3), 4)


@pytest.mark.parametrize("size", [0, (0, 3), (3, 0), (-1, 2), (2, -5)])
def test_error_bad_size(size):
    with pytest.raises(ValueError, match=r"size.*positive"):
        softseg.soft_downsample(LAB, size, 4)
    with pytest.raises(ValueError, match=r"size.*positive"):
        softseg.resize_image(torch.zeros(1, 6, 7), size)


@pytest.mark.parametrize("hw", [(0, 3), (3, 0), (-2, 3), (3, -0.5)])
def test_error_bad_crop(hw):
    h, w = hw
    with pytest.raises(ValueError, match=r"positive height and width.*" + re.escape(f"({h}, {w})")):
        softseg.soft_resized_crop(LAB, 0, 0, h, w, (2, 2), 4)
    with pytest.raises(ValueError, match=r"positive height and width"):
        softseg.resized_crop_image(torch.zeros(1, 6, 7), 0, 0, h, w, (2, 2))


@pytest.mark.parametrize(
    "kernel,convention",
    [("hamming", "torch"), ("lanczos", "torch"), ("cubic", "torch"), ("linear", "pil"),
     ("nearest-exact", "torch"), ("gaussian", "pil")],
)  # fmt: skip
def test_error_unknown_kernel(kernel, convention):
    with pytest.raises(ValueError, match=rf"{kernel}.*{convention}"):
        softseg.soft_downsample(LAB, (3, 3), 4, kernel=kernel, convention=convention)
    with pytest.raises(ValueError, match=rf"{kernel}.*{convention}"):
        softseg.resize_image(torch.zeros(1, 6, 7), (3, 3), kernel=kernel, convention=convention)


@pytest.mark.parametrize("C", [0, -3])
def test_error_num_classes(C):
    with pytest.raises(ValueError, match=rf"num_classes must be positive, got {C}"):
        softseg.soft_downsample(LAB, (3, 3), C)


def test_error_empty_labels_crop():
    with pytest.raises(ValueError, match=r"empty.*\(0, 7\)"):
        softseg.soft_resized_crop(np.zeros((0, 7), dtype=np.int64), 0, 0, 1, 1, (3, 3), 2)


def test_error_empty_labels_downsample():
    with pytest.raises(ValueError, match=r"empty.*\(0, 7\)"):
        softseg.soft_downsample(np.zeros((0, 7), dtype=np.int64), (3, 3), 2)


def test_error_unknown_convention():
    with pytest.raises(ValueError, match=r"opencv"):
        softseg.soft_downsample(LAB, (3, 3), 4, convention="opencv")


def _dims_message(shape):
    return r"\(H, W\) or \(N, H, W\).*" + re.escape(str(shape))


@pytest.mark.parametrize("shape", [(7,), (1, 2, 6, 7), ()])
def test_error_label_dims_crop(shape):
    labels = np.zeros(shape, dtype=np.int64)
    with pytest.raises(ValueError, match=_dims_message(shape)):
        softseg.soft_resized_crop(labels, 0, 0, 2, 2, (3, 3), 4)


def test_error_label_dims_4d():
    labels = np.zeros((1, 2, 6, 7), dtype=np.int64)
    with pytest.raises(ValueError, match=_dims_message(labels.shape)):
        softseg.soft_downsample(labels, (3, 3), 4)


def test_error_label_dims_1d():
    labels = np.zeros((7,), dtype=np.int64)
    with pytest.raises(ValueError, match=_dims_message(labels.shape)):
        softseg.soft_downsample(labels, (3, 3), 4)


# --------------------------------------------------------------------------- fast path = reference
@st.composite
def piecewise_labels(draw, max_hw: int = 30, max_classes: int = 5):
    """Blocky maps with some ignored pixels: long runs, so both first passes get real work."""
    H, W = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    C = draw(st.integers(1, max_classes))
    block = draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    labels = torch.randint(0, C, (H // block + 1, W // block + 1), generator=g)
    labels = labels.repeat_interleave(block, 0).repeat_interleave(block, 1)[:H, :W].contiguous()
    labels[torch.rand(H, W, generator=g) < 0.1] = IGNORE
    return labels, C


@st.composite
def resamplers(draw, kernels=None):
    convention = draw(st.sampled_from(["torch", "pil"]))
    kernel = draw(st.sampled_from(kernels or softseg.KERNELS[convention]))
    flags = st.booleans() if convention == "torch" else st.just(False)
    return Resampler(kernel, draw(st.booleans()), draw(flags), convention)


@settings(max_examples=40, deadline=None)
@given(lab_c=piecewise_labels(), size=sizes, rs=resamplers(), crop=st.booleans(), data=st.data())
def test_fast_paths_equal_the_reference(lab_c, size, rs, crop, data):
    """Every way the fast path can run (per pixel, per run, one block or many) gives the dense
    reference ``Wy @ one_hot @ Wx.T``, crops included."""
    labels, C = lab_c
    H, W = labels.shape
    box = (0.0, 0.0, float(H), float(W))
    if crop:
        box = tuple(data.draw(st.floats(lo, hi)) for lo, hi in
                    [(-5, H), (-5, W), (0.5, H + 5), (0.5, W + 5)])  # fmt: skip
    ref = softseg.ops.soft_resized_crop_reference(labels, *box, size, C, resampler=rs)
    assert ref.dtype == torch.float64 and ref.shape == (C, *size)
    paths = (FastPath("never"), FastPath("always"), FastPath("auto", block_bytes=1))
    for fast in (*paths, FastPath(tap_path="always"), FastPath(tap_path="never")):
        out = R._soft_labels(labels, box, size, C, IGNORE, rs, fast)
        torch.testing.assert_close(out.double(), ref, atol=2e-6, rtol=0, msg=f"{fast}")
    public = softseg.soft_resized_crop(labels, *box, size, C, resampler=rs)
    torch.testing.assert_close(public.double(), ref, atol=2e-6, rtol=0)


@FEW
@given(lab_c=label_maps(max_hw=20), n=st.integers(1, 3), size=sizes, rs=resamplers())
def test_reference_batch_and_downsample(lab_c, n, size, rs):
    lab, C = lab_c
    batch = torch.from_numpy(np.stack([lab] * n))
    ref = softseg.ops.soft_downsample_reference(batch, size, C, resampler=rs)
    assert ref.shape == (n, C, *size)
    torch.testing.assert_close(
        softseg.soft_downsample(batch, size, C, resampler=rs).double(), ref, atol=2e-6, rtol=0
    )


@SETTINGS
@given(lab_c=label_maps(), size=sizes, conv_kernel=st.sampled_from(CONV_KERNELS))
def test_reference_is_interpolate_of_the_one_hot(lab_c, size, conv_kernel):
    """The reference itself against the ground truth: torch / PIL on the one-hot map."""
    lab, C = lab_c
    convention, kernel = conv_kernel
    if torch_aa_bug(kernel, True, convention):
        assume(lab.shape[1] > 1 and size[1] > 1)
    ref = softseg.ops.soft_downsample_reference(lab, size, C, kernel=kernel, convention=convention)
    raw = reference_resize(one_hot(lab, C), size, convention, kernel)
    np.testing.assert_allclose(as_np(ref), maybe_clamp(raw, kernel), atol=1e-4)


def test_fast_path_settings_are_checked():
    with pytest.raises(ValueError, match=r"run_path.*'sometimes'"):
        FastPath("sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"block_bytes must be positive, got 0"):
        FastPath(block_bytes=0)
    with pytest.raises(ValueError, match="tap_path"):
        FastPath(tap_path="sometimes")  # type: ignore[arg-type]
    assert FastPath().block_bytes_on("cuda") > FastPath().block_bytes_on("cpu")
    assert FastPath(block_bytes=123).block_bytes_on("cuda") == 123


# --------------------------------------------------------------------------- resampler=
@pytest.mark.parametrize("conv_kernel", CONV_KERNELS)
def test_resampler_argument_equals_loose_arguments(conv_kernel):
    convention, kernel = conv_kernel
    lab = make_labels(np.random.default_rng(7), 13, 11, 3, "blocks", 0.2)
    img = torch.from_numpy(one_hot(lab, 3))
    rs = Resampler(kernel, antialias=False, convention=convention)
    loose = dict(kernel=kernel, antialias=False, convention=convention)
    box = (-1.5, 2.0, 9.0, 12.25)
    pairs = [
        (softseg.soft_downsample(lab, (5, 4), 3, **loose),
         softseg.soft_downsample(lab, (5, 4), 3, resampler=rs)),
        (softseg.soft_resized_crop(lab, *box, (5, 4), 3, **loose),
         softseg.soft_resized_crop(lab, *box, (5, 4), 3, resampler=rs)),
        (softseg.resize_image(img, (5, 4), **loose), softseg.resize_image(img, (5, 4), resampler=rs)),
        (softseg.resized_crop_image(img, *box, (5, 4), **loose),
         softseg.resized_crop_image(img, *box, (5, 4), resampler=rs)),
    ]  # fmt: skip
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resampler_and_loose_arguments_together_are_refused():
    rs = Resampler("bicubic")
    img = torch.zeros(1, 6, 7)
    calls = [
        lambda: softseg.soft_downsample(LAB, (3, 3), 4, resampler=rs, kernel="bicubic"),
        lambda: softseg.soft_resized_crop(LAB, 0, 0, 3, 3, (3, 3), 4, resampler=rs, antialias=True),
        lambda: softseg.resize_image(img, (3, 3), resampler=rs, convention="torch"),
        lambda: softseg.resized_crop_image(img, 0, 0, 3, 3, (3, 3), resampler=rs, align_corners=False),
        lambda: softseg.ops.soft_downsample_reference(LAB, (3, 3), 4, resampler=rs, kernel="area"),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(ValueError, match="not both"):
            call()
    with pytest.raises(TypeError, match="resampler must be a Resampler"):
        softseg.soft_downsample(LAB, (3, 3), 4, resampler="bicubic")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kernel", ["nearest", "area", "bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [False, True])
def test_cuda_soft_labels_equal_the_cpu_ones(kernel, antialias):
    # the GPU takes other paths (per-pixel first pass, larger blocks): same numbers, up to float32
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 7, (2, 97, 131), generator=g, dtype=torch.uint8)
    labels[:, 10:20, 30:60] = IGNORE
    labels[:, :, 50:53] = 3  # a thin pole, long runs beside noise
    args = (40.5, -3.25, 60.0, 140.0, (29, 41), 7)
    opts = dict(kernel=kernel, antialias=antialias, ignore_index=IGNORE)
    cpu = softseg.soft_resized_crop(labels, *args, **opts)
    gpu = softseg.soft_resized_crop(labels.cuda(), *args, **opts)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-6, rtol=0)
    whole = softseg.soft_downsample(labels.cuda(), (24, 33), 7, **opts)
    torch.testing.assert_close(
        whole.cpu(), softseg.soft_downsample(labels, (24, 33), 7, **opts), atol=2e-6, rtol=0
    )


# --------------------------------------------------------------------------- argument types
@pytest.mark.parametrize("size", [2.7, (4.9, 4.9), (4.0, 4), True, (3, True), "3x3", (3,), None])
def test_error_size_must_be_integers(size):
    with pytest.raises(TypeError, match=r"size must be an int or a pair"):
        softseg.soft_downsample(LAB, size, 4)
    with pytest.raises(TypeError, match=r"size must be an int or a pair"):
        softseg.resize_image(torch.zeros(1, 6, 7), size)


def test_sizes_of_numpy_and_torch_integers_are_accepted():
    expected = softseg.soft_downsample(LAB, (3, 2), 4)
    for size in (np.array([3, 2]), torch.Size([3, 2]), (np.int64(3), torch.tensor(2))):
        assert torch.equal(softseg.soft_downsample(LAB, size, 4), expected)


@pytest.mark.parametrize("C", [5.0, True, "5", None])
def test_error_num_classes_must_be_an_int(C):
    with pytest.raises(TypeError, match=r"num_classes must be an int"):
        softseg.soft_downsample(LAB, (3, 3), C)
    with pytest.raises(TypeError, match=r"num_classes must be an int"):
        R.soft_downsample_reference(LAB, (3, 3), C)


def test_error_box_absurdly_larger_than_input_and_output():
    lab = torch.zeros(8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"crop box height 1e\+09 is over 64 times"):
        softseg.soft_resized_crop(lab, 0, 0, 1e9, 8, 4, 5)  # would need > 22 GB of filter taps
    with pytest.raises(ValueError, match=r"crop box width .* over 64 times"):
        softseg.resized_crop_image(torch.zeros(1, 8, 8), 0, 0, 8, 1e7, 4)
    with pytest.raises(ValueError, match=r"over 64 times"):
        R.soft_resized_crop_reference(lab, 0, 0, 8, 1e6, 4, 5)
    # up to the bound a box is fine, and the part outside the map carries no mass
    soft = softseg.soft_resized_crop(lab, 0, 0, 64 * 8, 8, (4, 4), 5, kernel="area")
    assert soft.shape == (5, 4, 4) and float(soft[:, 1:].sum()) == 0.0


@pytest.mark.parametrize("box", [(float("nan"), 0, 4, 4), (0, float("-inf"), 4, 4),
                                 (0, 0, float("inf"), 4)])  # fmt: skip
def test_error_non_finite_box(box):
    with pytest.raises(ValueError, match=r"(finite|over 64 times)"):
        softseg.soft_resized_crop(LAB, *box, (2, 2), 4)
