"""soft_downsample / resize_image against torch and PIL: pairing, mass, ignore, inputs, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import softseg
from conftest import (
    AA_MODES,
    CONV_KERNELS,
    IGNORE,
    NEGATIVE_LOBES,
    NONNEG_CONV_KERNELS,
    PIL_KERNELS,
    TORCH_KERNELS,
    as_np,
    label_maps,
    make_labels,
    maybe_clamp,
    one_hot,
    pil_resize,
    pil_soft_ref,
    reference_resize,
    sizes,
    torch_aa_bug,
    torch_resize,
    torch_soft_ref,
    valid_mask,
)

SETTINGS = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=12, deadline=None)


def soft(labels, size, C, convention, kernel, antialias=True, align_corners=False, **kw):
    return softseg.soft_downsample(
        labels, size, C, kernel=kernel, convention=convention, antialias=antialias,
        align_corners=align_corners, **kw,
    )  # fmt: skip


# --------------------------------------------------------------------------- exact pairing
@SETTINGS
@given(
    lab_c=label_maps(),
    size=sizes,
    kernel=st.sampled_from(TORCH_KERNELS),
    antialias=st.booleans(),
    align_corners=st.booleans(),
)
def test_soft_downsample_matches_torch_interpolate(lab_c, size, kernel, antialias, align_corners):
    lab, C = lab_c
    if torch_aa_bug(kernel, antialias):
        assume(lab.shape[1] > 1 and size[1] > 1)
    out = soft(torch.from_numpy(lab), size, C, "torch", kernel, antialias, align_corners)
    assert out.dtype == torch.float32 and out.shape == (C, *size)
    ref = maybe_clamp(torch_soft_ref(lab, size, C, kernel, antialias, align_corners), kernel)
    np.testing.assert_allclose(as_np(out), ref, atol=1e-5)


@FEW
@given(
    lab_c=label_maps(),
    size=sizes,
    kernel=st.sampled_from(AA_MODES),
    one=st.sampled_from(["input", "output", "both", "neither"]),
)
def test_torch_antialias_is_pil_scheme_even_for_width_one(lab_c, size, kernel, one):
    """torch's antialiased bilinear/bicubic is PIL's filter (bicubic a = -0.5 there too), so PIL is
    a reference for the width-1 shapes where torch's own interpolate cannot be trusted."""
    lab, C = lab_c
    if one in ("input", "both"):
        lab = lab[:, :1]
    if one in ("output", "both"):
        size = (size[0], 1)
    out = soft(lab, size, C, "torch", kernel, antialias=True)
    ref = maybe_clamp(pil_soft_ref(lab, size, C, kernel), kernel)
    np.testing.assert_allclose(as_np(out), ref, atol=1e-4)
    img = torch.from_numpy(one_hot(lab, C)).float() * 0.5 + 0.25
    out_img = softseg.resize_image(img, size, kernel=kernel, antialias=True)
    np.testing.assert_allclose(as_np(out_img), pil_resize(img.numpy(), size, kernel), atol=1e-4)


@SETTINGS
@given(lab_c=label_maps(), size=sizes, kernel=st.sampled_from(PIL_KERNELS))
def test_soft_downsample_matches_pil(lab_c, size, kernel):
    lab, C = lab_c
    out = soft(torch.from_numpy(lab), size, C, "pil", kernel)
    assert out.dtype == torch.float32 and out.shape == (C, *size)
    ref = maybe_clamp(pil_soft_ref(lab, size, C, kernel), kernel)
    np.testing.assert_allclose(as_np(out), ref, atol=1e-4)


@pytest.mark.parametrize(
    "shape,size",
    [((32, 32), (8, 8)), ((32, 48), (12, 20)), ((30, 30), (7, 11)), ((7, 9), (20, 25)),
     ((16, 16), (16, 16)), ((10, 12), (30, 36)), ((25, 17), (10, 40))],
)  # fmt: skip
@pytest.mark.parametrize("conv_kernel", CONV_KERNELS)
def test_integer_and_fractional_factors(shape, size, conv_kernel):
    convention, kernel = conv_kernel
    rng = np.random.default_rng(sum(shape) * 100 + sum(size))
    lab = make_labels(rng, *shape, 4, "blocks", 0.1)
    out = as_np(soft(lab, size, 4, convention, kernel))
    if convention == "torch":
        ref = maybe_clamp(torch_soft_ref(lab, size, 4, kernel), kernel)
        np.testing.assert_allclose(out, ref, atol=1e-5)
    else:
        ref = maybe_clamp(pil_soft_ref(lab, size, 4, kernel), kernel)
        np.testing.assert_allclose(out, ref, atol=1e-4)


# --------------------------------------------------------------------------- mass
@SETTINGS
@given(
    lab_c=label_maps(),
    size=sizes,
    conv_kernel=st.sampled_from(CONV_KERNELS),
    antialias=st.booleans(),
    align_corners=st.booleans(),
)
def test_channel_sum_is_valid_mass(lab_c, size, conv_kernel, antialias, align_corners):
    lab, C = lab_c
    convention, kernel = conv_kernel
    if torch_aa_bug(kernel, antialias, convention):
        assume(lab.shape[1] > 1 and size[1] > 1)
    out = as_np(soft(lab, size, C, convention, kernel, antialias, align_corners))
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    raw_valid = reference_resize(
        valid_mask(lab), size, convention, kernel, antialias, align_corners
    )
    tol = 1e-5 if convention == "torch" else 1e-4
    if kernel in NEGATIVE_LOBES:
        # negative lobes clamped, every pixel rescaled to its valid mass clip(sum, 0, 1)
        assert out.min() >= 0.0
        np.testing.assert_allclose(out.sum(0), np.clip(raw_valid, 0.0, 1.0), atol=tol)
    else:
        np.testing.assert_allclose(out.sum(0), raw_valid, atol=tol)
        if not (lab == IGNORE).any():
            np.testing.assert_allclose(out.sum(0), np.ones(size), atol=1e-5)


@FEW
@given(lab_c=label_maps(ignore=False), size=sizes, conv_kernel=st.sampled_from(CONV_KERNELS))
def test_no_ignore_sums_to_one(lab_c, size, conv_kernel):
    lab, C = lab_c
    convention, kernel = conv_kernel
    out = as_np(soft(lab, size, C, convention, kernel, ignore_index=None))
    np.testing.assert_allclose(out.sum(0), np.ones(size), atol=1e-5)
    assert out.min() >= 0.0 and out.max() <= 1 + 1e-6


# --------------------------------------------------------------------------- ignore handling
@FEW
@given(lab_c=label_maps(ignore=False), size=sizes, conv_kernel=st.sampled_from(CONV_KERNELS))
def test_ignore_index_none(lab_c, size, conv_kernel):
    lab, C = lab_c
    convention, kernel = conv_kernel
    a = soft(lab, size, C, convention, kernel, ignore_index=None)
    b = soft(lab, size, C, convention, kernel)  # 255 absent: the same
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    bad = lab.copy()
    bad[0, 0] = IGNORE
    with pytest.raises(ValueError, match="255"):
        soft(bad, size, C, convention, kernel, ignore_index=None)


@pytest.mark.parametrize("conv_kernel", CONV_KERNELS)
@pytest.mark.parametrize("ignore_index", [255, 0, -1])
def test_all_ignore_gives_zeros(conv_kernel, ignore_index):
    convention, kernel = conv_kernel
    lab = np.full((9, 13), ignore_index, dtype=np.int64)
    out = soft(lab, (4, 5), 3, convention, kernel, ignore_index=ignore_index)
    assert out.shape == (3, 4, 5)
    assert torch.count_nonzero(out) == 0


@FEW
@given(
    lab_c=label_maps(),
    size=sizes,
    conv_kernel=st.sampled_from(CONV_KERNELS),
    other=st.sampled_from([-1, 7, 200, 1000]),
)
def test_ignore_value_itself_does_not_matter(lab_c, size, conv_kernel, other):
    lab, C = lab_c
    convention, kernel = conv_kernel
    ignored = lab == IGNORE
    base = soft(lab, size, C, convention, kernel)
    relabel = np.where(ignored, other, lab)
    torch.testing.assert_close(
        soft(relabel, size, C, convention, kernel, ignore_index=other), base, rtol=0, atol=0
    )


@FEW
@given(
    lab_c=label_maps(),
    size=sizes,
    conv_kernel=st.sampled_from(NONNEG_CONV_KERNELS),
    seed=st.integers(0, 2**16),
)
def test_ignored_pixels_class_does_not_leak(lab_c, size, conv_kernel, seed):
    """Give the ignored pixels arbitrary classes: the full map's soft label splits exactly into the
    part of the valid pixels (the original, ignored result) and the part of those pixels alone, so
    whatever class an ignored pixel had, none of it reaches the ignored result."""
    lab, C = lab_c
    convention, kernel = conv_kernel
    ignored = lab == IGNORE
    assume(ignored.any())
    if torch_aa_bug(kernel, True, convention):
        assume(lab.shape[1] > 1 and size[1] > 1)
    base = soft(lab, size, C, convention, kernel)
    classes = np.random.default_rng(seed).integers(0, C, lab.shape)
    revealed = np.where(ignored, classes, lab)
    only_hidden = np.where(ignored, classes, IGNORE)
    total = soft(revealed, size, C, convention, kernel)
    part = soft(only_hidden, size, C, convention, kernel)
    torch.testing.assert_close(base + part, total, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        as_np(part), reference_resize(one_hot(only_hidden, C), size, convention, kernel),
        atol=1e-4,
    )  # fmt: skip


# --------------------------------------------------------------------------- inputs
@FEW
@given(
    lab_c=label_maps(max_hw=20),
    n=st.integers(1, 3),
    size=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    conv_kernel=st.sampled_from(CONV_KERNELS),
    seed=st.integers(0, 2**16),
)
def test_batch_equals_items(lab_c, n, size, conv_kernel, seed):
    lab, C = lab_c
    convention, kernel = conv_kernel
    rng = np.random.default_rng(seed)
    items = [lab] + [make_labels(rng, *lab.shape, C, "noise", 0.2) for _ in range(n - 1)]
    batch = torch.from_numpy(np.stack(items))
    out = soft(batch, size, C, convention, kernel)
    assert out.shape == (n, C, *size) and out.dtype == torch.float32
    for i, item in enumerate(items):
        torch.testing.assert_close(
            out[i], soft(torch.from_numpy(item), size, C, convention, kernel), atol=1e-6, rtol=0
        )


@FEW
@given(lab_c=label_maps(), size=sizes, conv_kernel=st.sampled_from(CONV_KERNELS))
def test_numpy_and_dtypes_agree(lab_c, size, conv_kernel):
    lab, C = lab_c
    convention, kernel = conv_kernel
    base = soft(torch.from_numpy(lab), size, C, convention, kernel)
    for dtype in (np.uint8, np.int16, np.int32, np.int64):
        arr = lab.astype(dtype)
        torch.testing.assert_close(soft(arr, size, C, convention, kernel), base, rtol=0, atol=1e-7)
        t = torch.from_numpy(arr.copy())
        before = t.clone()
        torch.testing.assert_close(soft(t, size, C, convention, kernel), base, rtol=0, atol=1e-7)
        assert torch.equal(t, before) and t.dtype == before.dtype


def test_non_contiguous_tensor_views():
    lab = torch.from_numpy(make_labels(np.random.default_rng(4), 12, 15, 3, "noise", 0.2))
    for view in (lab.T, lab[:, ::2], lab[1::3, 2:]):
        size = (5, 4)
        expected = softseg.soft_downsample(view.contiguous(), size, 3)
        torch.testing.assert_close(softseg.soft_downsample(view, size, 3), expected)


def test_numpy_negative_stride_view():
    lab = make_labels(np.random.default_rng(5), 12, 15, 3, "noise", 0.2)
    flipped = lab[:, ::-1]
    expected = softseg.soft_downsample(flipped.copy(), (5, 4), 3)
    torch.testing.assert_close(softseg.soft_downsample(flipped, (5, 4), 3), expected)


def test_torch_uint16_labels():
    lab = make_labels(np.random.default_rng(6), 12, 15, 3, "noise", 0.2)
    expected = softseg.soft_downsample(lab, (5, 4), 3)
    out = softseg.soft_downsample(torch.from_numpy(lab).to(torch.uint16), (5, 4), 3)
    torch.testing.assert_close(out, expected)


def test_input_not_modified_with_ignore_and_many_classes():
    # ignore pixels get recoded internally; the caller's tensor must not see it
    lab = torch.randint(
        0, 5, (2, 11, 13), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    lab[:, ::3, ::2] = IGNORE
    before = lab.clone()
    for C in (5, 255, 300):
        softseg.soft_downsample(lab, (5, 4), C)
        softseg.soft_resized_crop(lab, -2, 3, 9.5, 14, (4, 4), C, convention="pil")
        assert torch.equal(lab, before)


def test_size_as_int_and_many_classes():
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 300, (20, 20))
    out = softseg.soft_downsample(lab, 5, 300, kernel="area")
    assert out.shape == (300, 5, 5)
    np.testing.assert_allclose(as_np(out), torch_soft_ref(lab, (5, 5), 300, "area"), atol=1e-6)


# --------------------------------------------------------------------------- images
@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)),
    size=sizes,
    kernel=st.sampled_from(TORCH_KERNELS),
    antialias=st.booleans(),
    align_corners=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_resize_image_matches_torch(shape, size, kernel, antialias, align_corners, dtype, seed):
    if torch_aa_bug(kernel, antialias):
        assume(shape[-1] > 1 and size[1] > 1)
    img = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 10 - 3
    img = img.to(dtype)
    out = softseg.resize_image(
        img, size, kernel=kernel, antialias=antialias, align_corners=align_corners
    )
    assert out.dtype == dtype and out.shape == (*shape[:2], *size)
    ref = torch_resize(img.float(), size, kernel, antialias, align_corners)
    np.testing.assert_allclose(as_np(out), ref, atol=1e-4)
    # single image (C, H, W) the same
    single = softseg.resize_image(
        img[0], size, kernel=kernel, antialias=antialias, align_corners=align_corners
    )
    torch.testing.assert_close(single, out[0], rtol=0, atol=1e-6)


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)),
    size=sizes,
    kernel=st.sampled_from(PIL_KERNELS),
    seed=st.integers(0, 2**16),
)
def test_resize_image_matches_pil(shape, size, kernel, seed):
    img = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    out = softseg.resize_image(img, size, kernel=kernel, convention="pil")
    assert out.shape == (shape[0], *size) and out.dtype == torch.float32
    np.testing.assert_allclose(as_np(out), pil_resize(img.numpy(), size, kernel), atol=1e-4)


def test_resize_integer_image_is_unrounded_float():
    img = torch.tensor([[[0, 255, 0, 255]]], dtype=torch.uint8)
    out = softseg.resize_image(img, (1, 2), kernel="area")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[[127.5, 127.5]]]))


def test_torch_image_exact_tiny_cases():
    # hand-computed: area of [0, 1, 2, 3] -> 2 is [0.5, 2.5]; bilinear (no antialias) 4 -> 2 reads
    # centres 0.5 and 2.5, the same; nearest picks floor(i * 2) = 0, 2.
    img = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    for kernel, expected in [("area", [0.5, 2.5]), ("nearest", [0.0, 2.0])]:
        out = softseg.resize_image(img, (1, 2), kernel=kernel)
        torch.testing.assert_close(out, torch.tensor([[expected]]))
    out = softseg.resize_image(img, (1, 2), kernel="bilinear", antialias=False)
    torch.testing.assert_close(out, torch.tensor([[[0.5, 2.5]]]))
