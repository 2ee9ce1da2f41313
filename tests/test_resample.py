"""soft_downsample / soft_resized_crop / resize_image / resized_crop_image against torch and PIL."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import (
    AA_MODES,
    IGNORE,
    NEGATIVE_LOBES,
    NONNEG_PIL,
    NONNEG_TORCH,
    PIL_KERNELS,
    TORCH_KERNELS,
    as_np,
    label_maps,
    make_labels,
    maybe_clamp,
    one_hot,
    pil_resize,
    pil_soft_ref,
    sizes,
    torch_resize,
    torch_soft_ref,
    valid_mask,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import softseg

SETTINGS = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=12, deadline=None)

CONV_KERNELS = [("torch", k) for k in TORCH_KERNELS] + [("pil", k) for k in PIL_KERNELS]
NONNEG_CONV_KERNELS = [("torch", k) for k in NONNEG_TORCH] + [("pil", k) for k in NONNEG_PIL]


def torch_aa_bug(kernel: str, antialias: bool, convention: str = "torch") -> bool:
    """Whether the reference would go through torch's antialiased interpolate, which is wrong when
    the input or output width is 1 (so such shapes are skipped there)."""
    return convention == "torch" and antialias and kernel in AA_MODES


def reference_resize(x, size, convention, kernel, antialias=True, align_corners=False, box=None):
    if convention == "torch":
        assert box is None
        return torch_resize(x, size, kernel, antialias, align_corners)
    return pil_resize(x, size, kernel, box=box)


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


# --------------------------------------------------------------------------- crop geometry
@st.composite
def inner_boxes(draw, H, W):
    """A fractional box inside [0, H] x [0, W] with positive size, on a 1/16 pixel grid.

    The grid keeps every edge exact in float32, which is how PIL parses a box (see
    test_pil_box_is_parsed_as_float32 for what happens otherwise)."""
    t0, t1 = sorted(draw(st.tuples(st.integers(0, 16 * H), st.integers(0, 16 * H))))
    l0, l1 = sorted(draw(st.tuples(st.integers(0, 16 * W), st.integers(0, 16 * W))))
    if t1 - t0 < 4:
        t0 = min(t0, 16 * H - 4)
        t1 = t0 + 4
    if l1 - l0 < 4:
        l0 = min(l0, 16 * W - 4)
        l1 = l0 + 4
    return t0 / 16, l0 / 16, (t1 - t0) / 16, (l1 - l0) / 16


@SETTINGS
@given(lab_c=label_maps(), size=sizes, kernel=st.sampled_from(PIL_KERNELS), data=st.data())
def test_soft_resized_crop_matches_pil_box(lab_c, size, kernel, data):
    lab, C = lab_c
    H, W = lab.shape
    top, left, height, width = data.draw(inner_boxes(H, W))
    out = softseg.soft_resized_crop(
        lab, top, left, height, width, size, C, kernel=kernel, convention="pil"
    )
    box = (left, top, left + width, top + height)
    ref = maybe_clamp(pil_soft_ref(lab, size, C, kernel, box=box), kernel)
    np.testing.assert_allclose(as_np(out), ref, atol=1e-4)
    img = torch.rand((2, H, W), generator=torch.Generator().manual_seed(H * 41 + W))
    out_img = softseg.resized_crop_image(
        img, top, left, height, width, size, kernel=kernel, convention="pil"
    )
    np.testing.assert_allclose(
        as_np(out_img), pil_resize(img.numpy(), size, kernel, box), atol=1e-4
    )


@pytest.mark.parametrize("kernel", ["box", "nearest"])
def test_pil_box_is_parsed_as_float32(kernel):
    lab = np.array([[0, 1]])
    left, right = 0.327, 1.673  # output 12 of 25 is centred exactly on the edge 1.0 in float64
    ref = pil_soft_ref(lab, (1, 25), 2, kernel, box=(left, 0, right, 1))
    out = softseg.soft_resized_crop(
        lab, 0, left, 1, right - left, (1, 25), 2, kernel=kernel, convention="pil"
    )
    np.testing.assert_array_equal(as_np(out), ref)


def _hits_integer(o0: int, n: int, N: int, Ns: int) -> bool:
    """Whether a shifted nearest grid samples exactly on an input pixel edge: there the float32
    rounding of ``start + i * scale`` and of ``(o0 + i) * scale`` may pick different pixels."""
    return o0 > 0 and any(((o0 + i) * N) % Ns == 0 for i in range(n))


@SETTINGS
@given(
    lab_c=label_maps(),
    full=sizes,
    kernel=st.sampled_from(["nearest", "bilinear", "bicubic"]),
    antialias=st.booleans(),
    data=st.data(),
)
def test_torch_crop_is_resize_then_crop(lab_c, full, kernel, antialias, data):
    lab, C = lab_c
    H, W = lab.shape
    Hs, Ws = full
    if torch_aa_bug(kernel, antialias):
        assume(W > 1 and Ws > 1)
    r0 = data.draw(st.integers(0, Hs - 1))
    c0 = data.draw(st.integers(0, Ws - 1))
    h = data.draw(st.integers(1, Hs - r0))
    w = data.draw(st.integers(1, Ws - c0))
    if kernel == "nearest":  # exact edge hits: see test_torch_nearest_crop_on_exact_pixel_edge
        assume(not _hits_integer(r0, h, H, Hs) and not _hits_integer(c0, w, W, Ws))
    top, height, left, width = r0 * H / Hs, h * H / Hs, c0 * W / Ws, w * W / Ws
    out = softseg.soft_resized_crop(
        lab, top, left, height, width, (h, w), C, kernel=kernel, antialias=antialias
    )
    full_ref = maybe_clamp(torch_soft_ref(lab, full, C, kernel, antialias), kernel)
    np.testing.assert_allclose(as_np(out), full_ref[:, r0 : r0 + h, c0 : c0 + w], atol=1e-5)
    img = torch.rand((3, H, W), generator=torch.Generator().manual_seed(H * 41 + W))
    out_img = softseg.resized_crop_image(
        img, top, left, height, width, (h, w), kernel=kernel, antialias=antialias
    )
    ref_img = torch_resize(img, full, kernel, antialias)[:, r0 : r0 + h, c0 : c0 + w]
    np.testing.assert_allclose(as_np(out_img), ref_img, atol=1e-5)


def test_torch_nearest_crop_on_exact_pixel_edge():
    # full resize 1x2 -> 1x38 samples column floor(j * 2/38); window columns 8..19 (j = 19 -> 1.0)
    lab = torch.tensor([[0, 1]])
    full = torch_resize(one_hot(lab.numpy(), 2), (1, 38), "nearest")[:, :, 8:20]
    assert full[1, 0, 11] == 1.0  # torch: pixel 1
    left, width = 8 * 2 / 38, 12 * 2 / 38
    out = softseg.soft_resized_crop(lab, 0, left, 1, width, (1, 12), 2, kernel="nearest")
    np.testing.assert_array_equal(as_np(out), full)


@st.composite
def integer_outer_boxes(draw, H, W, max_pad=8):
    """An integer box that may reach outside the image (but overlaps the padded range)."""
    top = draw(st.integers(-max_pad, H - 1))
    left = draw(st.integers(-max_pad, W - 1))
    height = draw(st.integers(1, H + max_pad - top))
    width = draw(st.integers(1, W + max_pad - left))
    return top, left, height, width


@st.composite
def covering_boxes(draw, H, W, max_pad=8):
    """An integer box holding the whole image: padded up to the box, the box is the full map."""
    pt, pb, pl, pr = (draw(st.integers(0, max_pad)) for _ in range(4))
    return -pt, -pl, H + pt + pb, W + pl + pr


def pad_to_box(x, top, left, height, width, value):
    """Pad the last two dims of ``x`` exactly up to the box; return it and the shifted box."""
    H, W = x.shape[-2:]
    pt, pl = max(0, -top), max(0, -left)
    pb, pr = max(0, top + height - H), max(0, left + width - W)
    widths = [(0, 0)] * (x.ndim - 2) + [(pt, pb), (pl, pr)]
    return np.pad(x, widths, constant_values=value), (top + pt, left + pl, height, width)


@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 25), st.integers(1, 25)),
    size=st.tuples(st.integers(1, 25), st.integers(1, 25)),
    conv_kernel=st.sampled_from(CONV_KERNELS),
    antialias=st.booleans(),
    fill=st.sampled_from([0.0, 1.0, -2.5, 0.25]),
    per_channel=st.booleans(),
    data=st.data(),
)
def test_image_fill_equals_explicit_padding(
    shape, size, conv_kernel, antialias, fill, per_channel, data
):
    H, W = shape
    convention, kernel = conv_kernel
    top, left, height, width = data.draw(integer_outer_boxes(H, W))
    img = torch.rand(
        (2, H, W), generator=torch.Generator().manual_seed(H * 41 + W), dtype=torch.float64
    )
    fills = [fill, fill + 1.0] if per_channel else fill
    out = softseg.resized_crop_image(
        img, top, left, height, width, size, kernel=kernel, antialias=antialias,
        convention=convention, fill=fills,
    )  # fmt: skip
    padded = np.concatenate(
        [pad_to_box(img[i : i + 1].numpy(), top, left, height, width, f)[0]
         for i, f in enumerate(fills if per_channel else [fill, fill])]
    )  # fmt: skip
    _, (t2, l2, h2, w2) = pad_to_box(img.numpy(), top, left, height, width, 0)
    ref = softseg.resized_crop_image(
        torch.from_numpy(padded), t2, l2, h2, w2, size, kernel=kernel, antialias=antialias,
        convention=convention,
    )  # fmt: skip
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


@SETTINGS
@given(
    lab_c=label_maps(max_hw=25, ignore=False),
    size=st.tuples(st.integers(1, 25), st.integers(1, 25)),
    conv_kernel=st.sampled_from(NONNEG_CONV_KERNELS),
    antialias=st.booleans(),
    data=st.data(),
)
def test_label_mass_outside_the_image_is_lost(lab_c, size, conv_kernel, antialias, data):
    lab, C = lab_c
    H, W = lab.shape
    convention, kernel = conv_kernel
    if convention == "pil":
        top, left, height, width = data.draw(integer_outer_boxes(H, W))
    else:
        top, left, height, width = data.draw(covering_boxes(H, W))
    out = softseg.soft_resized_crop(
        lab, top, left, height, width, size, C, kernel=kernel, antialias=antialias,
        convention=convention,
    )  # fmt: skip
    outside, (t2, l2, h2, w2) = pad_to_box(np.zeros((H, W)), top, left, height, width, 1.0)
    # the outside fraction of every output pixel, resampled independently of softseg
    if convention == "pil":
        box = (l2, t2, l2 + w2, t2 + h2)
        frac = pil_resize(outside, size, kernel, box=box)
        tol = 1e-4
    else:
        # the padded map is exactly the box here: a plain interpolate of it
        assert (t2, l2, h2, w2) == (0, 0, *outside.shape)
        if torch_aa_bug(kernel, antialias):
            assume(outside.shape[1] > 1 and size[1] > 1)
        frac = torch_resize(outside, size, kernel, antialias)
        tol = 1e-5
    sums = as_np(out).sum(0)
    np.testing.assert_allclose(sums, 1.0 - frac, atol=tol)
    assert np.all(sums[frac > 1e-3] < 1.0 - 1e-3 + tol)


@SETTINGS
@given(
    lab_c=label_maps(max_hw=25),
    size=st.tuples(st.integers(1, 25), st.integers(1, 25)),
    conv_kernel=st.sampled_from(CONV_KERNELS),
    antialias=st.booleans(),
    data=st.data(),
)
def test_soft_crop_outside_equals_ignore_padding(lab_c, size, conv_kernel, antialias, data):
    lab, C = lab_c
    H, W = lab.shape
    convention, kernel = conv_kernel
    if convention == "pil":
        top, left, height, width = data.draw(integer_outer_boxes(H, W))
    else:
        top, left, height, width = data.draw(covering_boxes(H, W))
    out = softseg.soft_resized_crop(
        lab, top, left, height, width, size, C, kernel=kernel, antialias=antialias,
        convention=convention,
    )  # fmt: skip
    padded, (t2, l2, h2, w2) = pad_to_box(lab, top, left, height, width, IGNORE)
    if convention == "pil":
        raw = pil_soft_ref(padded, size, C, kernel, box=(l2, t2, l2 + w2, t2 + h2))
        tol = 1e-4
    else:
        if torch_aa_bug(kernel, antialias):
            assume(padded.shape[1] > 1 and size[1] > 1)
        raw = torch_soft_ref(padded, size, C, kernel, antialias)
        tol = 1e-5
    np.testing.assert_allclose(as_np(out), maybe_clamp(raw, kernel), atol=tol)


@st.composite
def any_boxes(draw, H, W):
    top = round(draw(st.floats(-0.3, 1.0)) * H, 2)
    left = round(draw(st.floats(-0.3, 1.0)) * W, 2)
    height = round(draw(st.floats(0.05, 1.3)) * H, 2) + 0.1
    width = round(draw(st.floats(0.05, 1.3)) * W, 2) + 0.1
    return top, left, height, width


@SETTINGS
@given(
    lab_c=label_maps(ignore=False),
    size=sizes,
    conv_kernel=st.sampled_from(NONNEG_CONV_KERNELS),
    antialias=st.booleans(),
    align_corners=st.booleans(),
    data=st.data(),
)
def test_image_and_label_are_coherent(lab_c, size, conv_kernel, antialias, align_corners, data):
    lab, C = lab_c
    H, W = lab.shape
    convention, kernel = conv_kernel
    top, left, height, width = data.draw(any_boxes(H, W))
    palette = torch.rand((C, 3), generator=torch.Generator().manual_seed(C), dtype=torch.float64)
    image = palette[torch.from_numpy(lab)].permute(2, 0, 1).contiguous()  # (3, H, W)
    opts = dict(
        kernel=kernel, antialias=antialias, align_corners=align_corners, convention=convention
    )
    out_img = softseg.resized_crop_image(image, top, left, height, width, size, fill=0.0, **opts)
    out_soft = softseg.soft_resized_crop(lab, top, left, height, width, size, C, **opts)
    mixed = torch.einsum("cd,chw->dhw", palette, out_soft.double())
    torch.testing.assert_close(out_img, mixed, rtol=0, atol=1e-5)


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


# --------------------------------------------------------------------------- the two first passes
@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    convention=st.sampled_from(["torch", "pil"]),
    crop=st.booleans(),
)
def test_run_and_pixel_first_passes_agree(monkeypatch_module, data, convention, crop):
    """The per-run first pass (piecewise-constant maps) equals the per-pixel one, crops included."""
    import softseg.ops.resample as R

    H, W = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 30))
    h, w = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 30))
    C = data.draw(st.integers(1, 5))
    block = data.draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    labels = torch.randint(0, C, (H // block + 1, W // block + 1), generator=g)
    labels = labels.repeat_interleave(block, 0).repeat_interleave(block, 1)[:H, :W].contiguous()
    labels[torch.rand(H, W, generator=g) < 0.1] = 255
    kernel = data.draw(st.sampled_from(softseg.KERNELS[convention]))
    antialias = data.draw(st.booleans()) if convention == "torch" else True
    box = (0.0, 0.0, float(H), float(W))
    if crop:
        box = (
            data.draw(st.floats(-5, H)),
            data.draw(st.floats(-5, W)),
            data.draw(st.floats(0.5, H + 5)),
            data.draw(st.floats(0.5, W + 5)),
        )
    out = {}
    for path in ("never", "always"):
        monkeypatch_module.setattr(R, "_RUN_PATH", path)
        out[path] = softseg.soft_resized_crop(
            labels, *box, (h, w), C, kernel=kernel, antialias=antialias, convention=convention
        )
    torch.testing.assert_close(out["always"], out["never"], atol=2e-6, rtol=0)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


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
