"""softseg.ops.warp: soft labels through sampling grids, against the one-hot F.grid_sample."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from softseg.ops.grids import (
    affine_grid,
    crop_affine,
    displacement_grid,
    homography_grid,
    resized_warp_grid,
    rotation_affine,
)
from softseg.ops.warp import soft_grid_sample, warp_image

IGNORE = 255
SETTINGS = settings(max_examples=60, deadline=None)
FEW = settings(max_examples=25, deadline=None)
# torch warns about F.affine_grid on unit-size outputs with align_corners=True; such sizes are drawn
pytestmark = pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid:UserWarning")


# --------------------------------------------------------------------------- reference
def one_hot(labels: torch.Tensor, num_classes: int, ignore_index=IGNORE) -> torch.Tensor:
    """Float ``(N, C, H, W)`` one-hot of ``(N, H, W)`` labels; ignored pixels are all zero."""
    codes = labels.long()
    if ignore_index is not None:
        codes = torch.where(codes == ignore_index, num_classes, codes)
    return F.one_hot(codes, num_classes + 1)[..., :num_classes].permute(0, 3, 1, 2).float()


def reference(labels, grid, num_classes, mode, align_corners, ignore_index=IGNORE):
    """grid_sample of the full one-hot; bicubic: clamp at 0, rescale to the mass clipped to 0..1."""
    lab = labels if labels.dim() == 3 else labels.unsqueeze(0)
    hot = one_hot(lab, num_classes, ignore_index).expand(grid.shape[0], -1, -1, -1)
    raw = F.grid_sample(hot, grid, mode=mode, padding_mode="zeros", align_corners=align_corners)
    if mode != "bicubic":
        return raw
    valid = raw.sum(1, keepdim=True).clamp(0.0, 1.0)
    pos = raw.clamp(min=0.0)
    total = pos.sum(1, keepdim=True)
    return pos * torch.where(total > 0, valid / total.clamp(min=1e-12), 0.0)


def assert_matches(labels, grid, num_classes, mode, align_corners, ignore_index=IGNORE):
    got = soft_grid_sample(
        labels, grid, num_classes, mode=mode, align_corners=align_corners, ignore_index=ignore_index
    )
    want = reference(labels, grid, num_classes, mode, align_corners, ignore_index)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()
    return got


# --------------------------------------------------------------------------- strategies
@st.composite
def label_maps(draw, batch=None):
    n = draw(st.integers(1, 2)) if batch is None else batch
    h, w = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    num_classes = draw(st.integers(1, 20))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    labels = torch.randint(0, num_classes, (n, h, w), generator=g)
    if draw(st.booleans()):  # blocky regions, as in real maps, so interpolation sees edges
        labels = labels[:, ::3, ::3].repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :h, :w]
    if draw(st.booleans()):  # an ignored patch
        top, left = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        labels[:, top : top + draw(st.integers(1, h)), left : left + draw(st.integers(1, w))] = 255
    dtype = draw(st.sampled_from([torch.uint8, torch.int64, torch.int32]))
    return labels.to(dtype), num_classes


angles = st.floats(-180, 180)
scales = st.floats(0.3, 3.0)
shears = st.tuples(st.floats(-30, 30), st.floats(-30, 30))
shifts = st.tuples(st.floats(-1.2, 1.2), st.floats(-1.2, 1.2))
out_sizes = st.tuples(st.integers(1, 30), st.integers(1, 30))
modes = st.sampled_from(["bilinear", "bicubic"])


@st.composite
def grids(draw, in_hw, batch):
    """A grid from one of the builders, or random positions reaching outside [-1, 1]."""
    kind = draw(st.sampled_from(["affine", "homography", "displacement", "random", "crop"]))
    ac = draw(st.booleans())
    size = draw(out_sizes)
    if kind == "affine":
        theta = rotation_affine(draw(angles), draw(scales), draw(shears), draw(shifts), size=in_hw)
        grid = affine_grid(theta.expand(batch, 2, 3), size, align_corners=ac)
    elif kind == "homography":
        h, w = in_hw
        centre = torch.tensor([[1.0, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]])
        a = math.radians(draw(angles))
        core = torch.tensor(
            [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
        )
        core *= draw(scales)
        core[2, :2] = torch.tensor(draw(st.tuples(st.floats(-0.05, 0.05), st.floats(-0.05, 0.05))))
        core[2, 2] = 1.0
        grid = homography_grid(centre @ core @ torch.linalg.inv(centre), in_hw, size, ac)
        grid = grid.expand(batch, -1, -1, -1)
    elif kind == "displacement":
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        flow = torch.randn(batch, 2, *in_hw, generator=g) * draw(st.floats(0.0, 4.0))
        grid = displacement_grid(flow, ac, channels_last=False)
    elif kind == "random":
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        grid = torch.rand(batch, *size, 2, generator=g) * 3.2 - 1.6
    else:
        h, w = in_hw
        box = (draw(st.floats(-3, h)), draw(st.floats(-3, w)), draw(st.floats(0.5, h + 3)),
               draw(st.floats(0.5, w + 3)))  # fmt: skip
        theta = rotation_affine(draw(angles), draw(scales), size=in_hw)
        grid = resized_warp_grid(in_hw, size, theta=theta.expand(batch, 2, 3), box=box,
                                 align_corners=ac)  # fmt: skip
    return grid.contiguous(), ac


# --------------------------------------------------------------------------- equality
@SETTINGS
@given(data=st.data(), mode=st.sampled_from(["nearest", "bilinear", "bicubic"]))
def test_matches_one_hot_grid_sample(data, mode):
    labels, num_classes = data.draw(label_maps())
    grid, ac = data.draw(grids(tuple(labels.shape[-2:]), labels.shape[0]))
    got = assert_matches(labels, grid, num_classes, mode, ac)
    mass = got.sum(1)
    assert bool((got >= 0).all()) and bool((mass <= 1 + 1e-5).all())


@FEW
@given(data=st.data(), ac=st.booleans())
def test_nearest_matches_on_random_grids(data, ac):
    labels, num_classes = data.draw(label_maps())
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    grid = torch.rand(labels.shape[0], 7, 9, 2, generator=g) * 3 - 1.5
    got = assert_matches(labels, grid, num_classes, "nearest", ac)
    assert set(got.unique().tolist()) <= {0.0, 1.0}


@FEW
@given(data=st.data(), mode=modes)
def test_shared_labels_broadcast_over_grid_batch(data, mode):
    (labels, num_classes), batch = data.draw(label_maps(batch=1)), 3
    grid, ac = data.draw(grids(tuple(labels.shape[-2:]), batch))
    got = assert_matches(labels[0], grid, num_classes, mode, ac)
    for i in range(batch):
        one = soft_grid_sample(labels[0], grid[i : i + 1], num_classes, mode=mode, align_corners=ac)
        assert torch.equal(got[i : i + 1], one)


def test_label_dtypes_and_ignore_choices_agree():
    labels = torch.tensor([[0, 1, 2, 7], [3, 3, 7, 1], [2, 0, 1, 3]])
    grid = affine_grid(rotation_affine(33.0, 0.8), (5, 6))
    want = reference(labels, grid, 4, "bilinear", False, ignore_index=7)
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        got = soft_grid_sample(labels.to(dtype), grid, 4, ignore_index=7)
        assert torch.allclose(got, want, atol=1e-6)
    as_class = soft_grid_sample(labels, grid.double(), 8, ignore_index=None)
    assert torch.allclose(as_class[:, :4], want, atol=1e-6) and as_class[:, 7].sum() > 0
    # an ignore value inside [0, C) wins over the class: that channel stays empty
    assert soft_grid_sample(labels, grid, 8, ignore_index=3)[:, 3].abs().max() == 0


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("ac", [False, True])
def test_large_maps_read_the_same_taps_as_torch(mode, ac):
    # On a 700-pixel axis a float32 ulp is 6e-5 px: the coordinates must round as torch's do.
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 19, (1, 45, 70), generator=g)
    labels = labels.repeat_interleave(8, 1).repeat_interleave(10, 2)  # 360 x 700
    labels[:, 100:140, 200:300] = IGNORE
    theta = rotation_affine(7.0, 1.3, size=(360, 700)).expand(2, 2, 3)
    grid = resized_warp_grid((360, 700), (90, 170), theta=theta, box=(20, 40, 300, 600),
                             align_corners=ac)  # fmt: skip
    grid = torch.cat((grid[:1], torch.rand(1, 90, 170, 2, generator=g) * 2.2 - 1.1))
    assert_matches(labels.to(torch.uint8), grid, 19, mode, ac)


def test_negative_ignore_value():
    labels = torch.tensor([[0, -1, 2], [1, 1, -1]])
    grid = affine_grid(rotation_affine(15.0), (4, 4))
    for mode in ("bilinear", "bicubic"):
        assert_matches(labels, grid, 3, mode, False, ignore_index=-1)
    with pytest.raises(ValueError, match=r"values \[-1\] outside \[0, 3\) and not equal"):
        soft_grid_sample(labels, grid, 3)
    with pytest.raises(ValueError, match=r"values \[255\]"):  # uint8 255 is not -1
        soft_grid_sample(torch.tensor([[0, 255]], dtype=torch.uint8), grid, 3, ignore_index=-1)


def test_outside_samples_carry_no_mass():
    labels = torch.zeros(4, 4, dtype=torch.uint8)
    grid = torch.tensor([[[[-1.0, 0.0], [-1.25, 0.0], [3.0, 3.0], [-30.0, 1e6]]]])
    got = soft_grid_sample(labels, grid, 1)[0, 0, 0]
    assert torch.allclose(got, torch.tensor([0.5, 0.0, 0.0, 0.0]))


# --------------------------------------------------------------------------- pairing with the image
@FEW
@given(data=st.data(), mode=modes)
def test_image_and_label_stay_paired(data, mode):
    labels, num_classes = data.draw(label_maps(batch=1))
    h, w = labels.shape[-2:]
    box = (data.draw(st.floats(-2, h / 2)), data.draw(st.floats(-2, w / 2)), h * 0.7, w * 0.7)
    theta = rotation_affine(data.draw(angles), data.draw(scales), size=(h, w))
    size, ac = data.draw(out_sizes), data.draw(st.booleans())
    grid = resized_warp_grid((h, w), size, theta=theta, box=box, align_corners=ac)
    soft = soft_grid_sample(labels[0], grid, num_classes, mode=mode, align_corners=ac)
    image = warp_image(one_hot(labels, num_classes)[0], grid, mode=mode, align_corners=ac)
    if mode == "bicubic":  # the image keeps its negative lobes; the label clamps them
        valid = image.sum(1, keepdim=True).clamp(0, 1)
        pos = image.clamp(min=0)
        total = pos.sum(1, keepdim=True)
        image = pos * torch.where(total > 0, valid / total.clamp(min=1e-12), 0.0)
    assert torch.allclose(image, soft, atol=1e-5)


@FEW
@given(data=st.data(), mode=st.sampled_from(["nearest", "bilinear", "bicubic"]))
def test_warp_image_pads_with_fill(data, mode):
    h, w, ac = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12)), False
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    image = torch.rand(3, h, w, generator=g)
    fill = [0.5, -2.0, 7.0]
    grid = torch.rand(2, 5, 6, 2, generator=g) * 2.4 - 1.2
    got = warp_image(image, grid, mode=mode, align_corners=ac, fill=fill)
    # independent statement: pad by 4 pixels of fill, move the grid into the padded frame
    pad = 4
    padded = torch.stack([F.pad(image[c], (pad,) * 4, value=fill[c]) for c in range(3)])
    size = torch.tensor([w, h], dtype=torch.float32)
    pixel = ((grid + 1) * size - 1) / 2 + pad
    moved = (pixel * 2 + 1) / (size + 2 * pad) - 1
    want = F.grid_sample(padded.expand(2, -1, -1, -1), moved, mode=mode, align_corners=ac)
    assert torch.allclose(got, want, atol=1e-5)
    assert warp_image(image.to(torch.uint8), grid).dtype == torch.float32


# --------------------------------------------------------------------------- grid builders
def test_affine_grid_is_torchs():
    theta = torch.randn(2, 2, 3)
    for ac in (False, True):
        assert torch.equal(affine_grid(theta, (5, 7), ac), F.affine_grid(theta, [2, 1, 5, 7], ac))
    assert affine_grid(theta[0], 4).shape == (1, 4, 4, 2)


def test_rotation_affine_turns_content_anticlockwise_and_keeps_pixels_square():
    labels = torch.tensor([[0, 1], [2, 3]])
    turned = soft_grid_sample(labels, affine_grid(rotation_affine(90.0), (2, 2)), 4).argmax(1)
    assert turned[0].tolist() == [[1, 3], [0, 2]]
    assert torch.allclose(rotation_affine(0.0), torch.eye(2, 3).unsqueeze(0))
    # scale 2 enlarges: the output shows the central half of the input
    assert torch.allclose(rotation_affine(0.0, 2.0)[0, :, :2], 0.5 * torch.eye(2))
    # on a 10 x 40 image the inverse map is a rotation in pixel units
    lin = rotation_affine(25.0, size=(10, 40))[0, :, :2].double()
    to_px = torch.diag(torch.tensor([20.0, 5.0], dtype=torch.float64))
    rigid = to_px @ lin @ torch.linalg.inv(to_px)
    assert torch.allclose(rigid @ rigid.T, torch.eye(2, dtype=torch.float64), atol=1e-6)
    shifted = rotation_affine(0.0, translate=(0.5, 0.0))  # content moves right: reads from left
    assert torch.allclose(shifted[0, :, 2], torch.tensor([-0.5, 0.0]))


@pytest.mark.parametrize("ac", [False, True])
def test_homography_grid_identity_shift_and_projective(ac):
    identity = homography_grid(torch.eye(3), (6, 9), (6, 9), ac)
    assert torch.allclose(identity, affine_grid(torch.eye(2, 3), (6, 9), ac), atol=1e-6)
    labels = torch.arange(9).repeat(6, 1)
    shift = torch.tensor([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]])
    soft = soft_grid_sample(labels, homography_grid(shift, (6, 9), (6, 9), ac), 9)
    assert torch.equal(soft.argmax(1)[0, :, :7], labels[:, 2:]) and soft[0, :, :, 7:].sum() == 0
    H = torch.tensor([[0.9, 0.1, 1.0], [-0.05, 1.1, 0.5], [0.01, -0.02, 1.0]])
    grid = homography_grid(H, (6, 9), (4, 5), ac)
    y, x = 3, 2
    u, v, s = (H @ torch.tensor([x, y, 1.0])).tolist()
    px = torch.tensor([u / s, v / s])
    dims = torch.tensor([9.0, 6.0])
    want = px * 2 / (dims - 1) - 1 if ac else (px * 2 + 1) / dims - 1
    assert torch.allclose(grid[0, y, x], want, atol=1e-5)
    behind = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, -1]])  # w < 0 everywhere
    assert soft_grid_sample(labels, homography_grid(behind, (6, 9), (3, 3), ac), 9).sum() == 0


def test_displacement_grid_layouts_and_shift():
    flow = torch.zeros(1, 5, 7, 2)
    for ac in (False, True):
        ident = affine_grid(torch.eye(2, 3), (5, 7), ac)
        assert torch.allclose(displacement_grid(flow, ac), ident, atol=1e-6)
    flow[..., 1] = -1.0  # every pixel reads the row above
    labels = torch.arange(5).view(5, 1).repeat(1, 7)
    soft = soft_grid_sample(labels, displacement_grid(flow.permute(0, 3, 1, 2)), 5)
    assert soft[0, :, 0].sum() == 0 and torch.equal(soft.argmax(1)[0, 1:], labels[:-1])
    assert torch.equal(displacement_grid(flow[0]), displacement_grid(flow))
    with pytest.raises(ValueError, match="ambiguous"):
        displacement_grid(torch.zeros(1, 2, 3, 2))
    both = torch.randn(1, 2, 3, 2)
    first = displacement_grid(both, channels_last=False)
    assert torch.equal(first, displacement_grid(both.permute(0, 2, 3, 1), channels_last=True))


@pytest.mark.parametrize("ac", [False, True])
def test_resized_warp_grid_composes_crop_then_theta(ac):
    theta = rotation_affine(20.0, 1.3, (5.0, 0.0), (0.1, -0.2), size=(12, 16))
    box, size = (2.0, 3.0, 8.0, 10.0), (4, 5)
    grid = resized_warp_grid((12, 16), size, theta=theta, box=box, align_corners=ac)
    top, left, height, width = box
    for i, j in ((0, 0), (3, 4), (1, 2)):
        if ac:  # box corners on pixel centres, then pixel -> normalised
            x, y = left + j * (width - 1) / (size[1] - 1), top + i * (height - 1) / (size[0] - 1)
            u, v = 2 * x / 15 - 1, 2 * y / 11 - 1
        else:
            x, y = left + (j + 0.5) * width / size[1], top + (i + 0.5) * height / size[0]
            u, v = 2 * x / 16 - 1, 2 * y / 12 - 1
        want = theta[0] @ torch.tensor([u, v, 1.0])
        assert torch.allclose(grid[0, i, j], want, atol=1e-5)
    full = crop_affine((12, 16), (0, 0, 12, 16), ac)
    assert torch.allclose(full, torch.eye(2, 3).unsqueeze(0), atol=1e-6)


def test_crop_matches_interpolate_inside_the_image():
    # A plain resized crop is F.interpolate(bilinear, no antialias) wherever taps stay inside.
    labels = torch.randint(0, 6, (1, 20, 24))
    soft = soft_grid_sample(labels, resized_warp_grid((20, 24), (8, 6), box=(0, 0, 20, 24)), 6)
    want = F.interpolate(one_hot(labels, 6), (8, 6), mode="bilinear", align_corners=False)
    assert torch.allclose(soft[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], atol=1e-5)


# --------------------------------------------------------------------------- validation
GRID = torch.zeros(1, 2, 2, 2)
LABELS = torch.zeros(3, 3, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": torch.tensor([[0, 5], [1, 2]])}, r"values \[5\] outside \[0, 3\)"),
        ({"labels": torch.tensor([[0, -1], [1, 2]])}, r"values \[-1\]"),
        ({"labels": torch.tensor([[0, 255]]), "ignore_index": None}, r"values \[255\]"),
        ({"labels": torch.zeros(3, 3)}, "integer class indices"),
        ({"labels": torch.zeros(3, 3, dtype=torch.bool)}, "integer class indices"),
        (
            {"labels": torch.zeros(2, 3, 3, dtype=torch.uint8)},
            "batch 2 does not match grid batch 1",
        ),
        ({"labels": torch.zeros(3, dtype=torch.uint8)}, r"\(H, W\) or \(N, H, W\)"),
        ({"grid": torch.full((1, 2, 2, 2), float("nan"))}, "non-finite"),
        ({"grid": torch.zeros(1, 2, 2, 3)}, r"\(N, h, w, 2\)"),
        ({"grid": torch.zeros(2, 2, 2)}, r"\(N, h, w, 2\)"),
        ({"grid": torch.zeros(1, 2, 2, 2, dtype=torch.long)}, "floating point"),
        ({"mode": "area"}, "mode must be one of"),
        ({"num_classes": 0}, "num_classes must be a positive int"),
        ({"num_classes": 2.0}, "num_classes must be a positive int"),
        ({"num_classes": True}, "num_classes must be a positive int"),
        ({"ignore_index": "void"}, "ignore_index must be an int or None"),
    ],
)
def test_soft_grid_sample_refuses_bad_input(kwargs, match):
    args = {"labels": LABELS, "grid": GRID, "num_classes": 3, **kwargs}
    labels, grid, num_classes = args.pop("labels"), args.pop("grid"), args.pop("num_classes")
    with pytest.raises(ValueError, match=match):
        soft_grid_sample(labels, grid, num_classes, **args)


def test_builders_and_image_warp_refuse_bad_input():
    with pytest.raises(TypeError, match="grid must be a torch.Tensor"):
        soft_grid_sample(LABELS, [[0.0, 0.0]], 3)
    with pytest.raises(ValueError, match=r"theta must be \(2, 3\)"):
        affine_grid(torch.eye(3), (2, 2))
    with pytest.raises(ValueError, match="size must be a positive int"):
        affine_grid(torch.eye(2, 3), (0, 2))
    with pytest.raises(ValueError, match="H must be a finite"):
        homography_grid(torch.eye(2), (2, 2), (2, 2))
    with pytest.raises(ValueError, match="flow must be float"):
        displacement_grid(torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="scale must be positive"):
        rotation_affine(10.0, scale=0.0)
    with pytest.raises(ValueError, match="positive height and width"):
        crop_affine((4, 4), (0, 0, 0, 2))
    with pytest.raises(ValueError, match="fill must be one value or one per channel"):
        warp_image(torch.zeros(3, 4, 4), GRID, fill=[1.0, 2.0])
    with pytest.raises(ValueError, match="image batch 2 does not match"):
        warp_image(torch.zeros(2, 3, 4, 4), torch.zeros(3, 2, 2, 2))
    with pytest.raises(ValueError, match="mode must be one of"):
        warp_image(torch.zeros(3, 4, 4), GRID, mode="lanczos")
