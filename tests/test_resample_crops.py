"""soft_resized_crop / resized_crop_image: crop boxes against PIL boxes, resize-then-crop, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import softseg
from conftest import (
    CONV_KERNELS,
    IGNORE,
    NONNEG_CONV_KERNELS,
    PIL_KERNELS,
    as_np,
    label_maps,
    maybe_clamp,
    one_hot,
    pil_resize,
    pil_soft_ref,
    sizes,
    torch_aa_bug,
    torch_resize,
    torch_soft_ref,
)

SETTINGS = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=12, deadline=None)


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


def covering_crop(lab_c, size, conv_kernel, antialias, data):
    """A box reaching past the image (integer for PIL, whose box must be whole pixels there) and
    the soft crop of it."""
    lab, C = lab_c
    H, W = lab.shape
    convention, kernel = conv_kernel
    draw = integer_outer_boxes if convention == "pil" else covering_boxes
    box = data.draw(draw(H, W))
    out = softseg.soft_resized_crop(
        lab, *box, size, C, kernel=kernel, antialias=antialias, convention=convention
    )
    return box, out


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
    (top, left, height, width), out = covering_crop(lab_c, size, conv_kernel, antialias, data)
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
    (top, left, height, width), out = covering_crop(lab_c, size, conv_kernel, antialias, data)
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


def test_soft_crop_outside_tie_found_by_hypothesis():
    # PIL box 13 -> 6 rows from top=-5: output 3's filter edge lies exactly on the centre of row 1,
    # which PIL's half-open box leaves out on the padded map (row 6 there). Computed on the
    # unshifted box the edge came out as 1.9999999999999998 and took the row in (0.333 of class 1).
    lab = np.array([[0], [1]])
    out = softseg.soft_resized_crop(lab, -5, 0, 13, 1, (6, 1), 2, kernel="area", convention="pil")
    padded, (t2, l2, h2, w2) = pad_to_box(lab, -5, 0, 13, 1, IGNORE)
    ref = pil_soft_ref(padded, (6, 1), 2, "area", box=(l2, t2, l2 + w2, t2 + h2))
    assert ref[1, 3, 0] == 0.0
    np.testing.assert_allclose(as_np(out), ref, atol=1e-6)


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
