"""SoftLabel through torchvision transforms v2 equals the same pipeline on the float one-hot."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from conftest import IGNORE, label_maps, one_hot
from softseg.integrations.torchvision import SoftLabel
from softseg.ops import Resampler, _fast, clamp_negative_lobes, soft_downsample_reference
from softseg.ops._fast import FastPath
from softseg.ops.resample import _soft_labels

MODES = st.sampled_from([InterpolationMode.BILINEAR, InterpolationMode.NEAREST])
SIDE = st.integers(2, 24)
HW = st.tuples(SIDE, SIDE)


@st.composite
def geometric(draw):
    """One supported transform with its arguments; sizes stay >= 2 (torch's antialiased
    interpolate is wrong for width-1 inputs or outputs, which softseg is not)."""
    kind = draw(st.sampled_from(sorted(_MAKERS)))
    return _MAKERS[kind](draw)


_MAKERS = {
    "resize": lambda d: v2.Resize(d(HW), interpolation=d(MODES), antialias=d(st.booleans())),
    "resize_short": lambda d: v2.Resize(d(SIDE), max_size=d(st.sampled_from([None, 40]))),
    "random_resize": lambda d: v2.RandomResize(d(st.integers(4, 12)), d(st.integers(13, 30))),
    "shortest": lambda d: v2.RandomShortestSize([d(st.integers(4, 20)), 8], max_size=40),
    "rrc": lambda d: v2.RandomResizedCrop(d(HW), interpolation=d(MODES), antialias=True),
    "crop": lambda d: v2.RandomCrop(d(HW), padding=d(st.sampled_from([None, 2])), pad_if_needed=True),
    "center": lambda d: v2.CenterCrop(d(HW)),
    "pad": lambda d: v2.Pad(d(st.integers(1, 3)), padding_mode=d(st.sampled_from(["constant", "edge"]))),
    "hflip": lambda d: v2.RandomHorizontalFlip(),
    "vflip": lambda d: v2.RandomVerticalFlip(),
    "jitter": lambda d: v2.ScaleJitter((d(SIDE) + 8, d(SIDE) + 8), scale_range=(0.3, 1.5)),
    "zoom_out": lambda d: v2.RandomZoomOut(side_range=(1.0, 2.0)),
    "colour": lambda d: v2.ColorJitter(0.4, 0.4, 0.4),
}  # fmt: skip

WARP_MODES = st.sampled_from([InterpolationMode.BILINEAR, InterpolationMode.NEAREST])
FILL = st.sampled_from([0, 0.5, None])
ANGLE = st.floats(0.0, 180.0)
_WARPS = {
    "rotate": lambda d: v2.RandomRotation(
        d(ANGLE), interpolation=d(WARP_MODES), expand=d(st.booleans()), fill=d(FILL),
        center=d(st.sampled_from([None, [2.0, 5.5], [-3, 30]])),
    ),
    "rotate_right": lambda d: v2.RandomRotation((90, 90), expand=d(st.booleans())),
    "affine": lambda d: v2.RandomAffine(
        d(ANGLE), translate=d(st.sampled_from([None, (0.3, 0.2)])),
        scale=d(st.sampled_from([None, (0.5, 1.8)])),
        shear=d(st.sampled_from([None, 20, (-10, 10, -30, 30)])),
        interpolation=d(WARP_MODES), fill=d(FILL), center=d(st.sampled_from([None, [4.0, 1.0]])),
    ),
    "perspective": lambda d: v2.RandomPerspective(
        d(st.floats(0.0, 1.0)), p=1.0, interpolation=d(WARP_MODES), fill=d(FILL)
    ),
    "elastic": lambda d: v2.ElasticTransform(
        # sigma <= 1.1: torchvision blurs the displacement with a kernel of 8 sigma + 1 < 10 px
        d(st.floats(0.0, 80.0)), d(st.floats(0.3, 1.1)), interpolation=d(WARP_MODES), fill=d(FILL)
    ),
}  # fmt: skip


@st.composite
def warps(draw):
    """One of v2's warps with random parameters."""
    return _WARPS[draw(st.sampled_from(sorted(_WARPS)))](draw)


class OneHot(tv_tensors.TVTensor):
    """The reference: a float one-hot that v2 treats as an image for geometry (torchvision's own
    image kernels) and passes through colour transforms, as it does masks."""


for _op, _image_kernel in [
    (F.resize, F.resize_image), (F.resized_crop, F.resized_crop_image), (F.crop, F.crop_image),
    (F.center_crop, F.center_crop_image), (F.pad, F.pad_image),
    (F.horizontal_flip, F.horizontal_flip_image), (F.vertical_flip, F.vertical_flip_image),
]:  # fmt: skip
    F.register_kernel(_op, OneHot)(
        lambda x, *a, _k=_image_kernel, **kw: OneHot(_k(x.as_subclass(torch.Tensor), *a, **kw))
    )


def _warp_one_hot(kernel):
    """v2's image warp on the one-hot; the transform's ``fill`` is the image's: outside the label
    there is no class, so the one-hot is filled with 0 (``None`` stays ``None``)."""

    def warp(x, *args, fill=None, **kwargs):
        fill = None if fill is None else 0.0
        return OneHot(kernel(x.as_subclass(torch.Tensor), *args, fill=fill, **kwargs))

    return warp


for _op, _image_kernel in [
    (F.rotate, F.rotate_image), (F.affine, F.affine_image),
    (F.perspective, F.perspective_image), (F.elastic, F.elastic_image),
]:  # fmt: skip
    F.register_kernel(_op, OneHot)(_warp_one_hot(_image_kernel))


def run_both(pipeline, lab: np.ndarray, C: int, seed: int):
    """The pipeline on (image, SoftLabel) and on (image, one-hot), with the same draws."""
    image = tv_tensors.Image(torch.rand(3, *lab.shape, generator=torch.Generator().manual_seed(0)))
    onehot = OneHot(torch.from_numpy(one_hot(lab, C)).float())
    torch.manual_seed(seed)
    img_a, label = pipeline(image, SoftLabel(torch.from_numpy(lab), num_classes=C))
    torch.manual_seed(seed)
    img_b, ref = pipeline(image, onehot)
    torch.testing.assert_close(img_a, img_b)  # the draws matched
    return label, ref.as_subclass(torch.Tensor)


def torchvision_defines(pipeline, lab: np.ndarray, C: int, seed: int) -> bool:
    """Whether torchvision itself warps the one-hot with these draws: a perspective of a map shrunk
    to a pixel or two is degenerate (its least-squares fit fails, or its grid holds nan), and the
    image fails there too. softseg raises a clear error in those cases instead."""
    image = tv_tensors.Image(torch.rand(3, *lab.shape, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(seed)
    try:
        _, ref = pipeline(image, OneHot(torch.from_numpy(one_hot(lab, C)).float()))
    except torch.linalg.LinAlgError:
        return False
    return bool(torch.isfinite(ref).all())


@settings(max_examples=80, deadline=None)
@given(
    lab_c=label_maps(max_hw=32, min_h=10, min_w=10),
    steps=st.lists(geometric(), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
)
def test_pipeline_equals_the_pipeline_on_the_one_hot(lab_c, steps, seed):
    lab, C = lab_c
    label, ref = run_both(v2.Compose(steps), lab, C, seed)
    assert isinstance(label, SoftLabel) and label.num_classes == C
    soft = label.soft()
    assert soft.shape == ref.shape and soft.dtype == torch.float32
    torch.testing.assert_close(soft, ref, atol=1e-5, rtol=0)
    assert float(soft.sum(0).max()) <= 1 + 1e-5  # a distribution over classes, with missing mass


@settings(max_examples=30, deadline=None)
@given(lab_c=label_maps(max_hw=32, min_h=10, min_w=10), size=HW, antialias=st.booleans())
def test_bicubic_is_the_clamped_one_hot_resize(lab_c, size, antialias):
    lab, C = lab_c
    resize = v2.Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=antialias)
    label, ref = run_both(resize, lab, C, 0)
    expected = clamp_negative_lobes(ref) if tuple(size) != lab.shape else ref
    torch.testing.assert_close(label.soft(), expected, atol=1e-5, rtol=0)


@settings(max_examples=150, deadline=None)
@given(
    lab_c=label_maps(max_hw=40),
    size=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    kernel=st.sampled_from(["nearest", "bilinear", "bicubic"]),
    antialias=st.booleans(),
    layout=st.sampled_from(["plain", "uint8", "batch", "view"]),
)
def test_the_first_resize_equals_the_reference(lab_c, size, kernel, antialias, layout):
    """The first resize of a hard label is the core operator (softseg.soft_downsample, whose CPU
    first pass sums runs of equal labels where that is cheaper): any map, size and mode, uint8
    or int64, single or batched, contiguous or a crop's strided view, against the dense reference;
    the run pass forced on gives the same."""
    lab, C = lab_c
    labels = torch.from_numpy(lab)
    if layout == "uint8":
        labels = labels.to(torch.uint8)
    elif layout == "batch":
        labels = torch.stack([labels, labels.flip(0)])
    elif layout == "view":
        labels = torch.nn.functional.pad(labels, (2, 3, 1, 0), value=IGNORE)[1:, 2:-3]
    rs = Resampler(kernel, antialias=antialias and kernel != "nearest")
    expected = soft_downsample_reference(labels, size, C, ignore_index=IGNORE, resampler=rs)
    mode = InterpolationMode(kernel)
    label = SoftLabel(labels, num_classes=C, ignore_index=IGNORE)
    soft = F.resize(label, list(size), interpolation=mode, antialias=antialias).soft()
    assert soft.shape == expected.shape and soft.dtype == torch.float32
    if tuple(size) != tuple(labels.shape[-2:]):  # else torchvision returns the label untouched
        torch.testing.assert_close(soft.double(), expected, atol=2e-6, rtol=0)
    box = (0.0, 0.0, *map(float, labels.shape[-2:]))
    runs = _soft_labels(labels, box, size, C, IGNORE, rs, FastPath("always"))
    torch.testing.assert_close(runs.double(), expected, atol=2e-6, rtol=0)


def test_the_first_resize_sums_runs_where_that_is_cheaper(monkeypatch):
    """Blocky maps take the core's run pass on the CPU, maps dense in boundaries its per-pixel
    pass; both give the dense reference."""
    blocks = (torch.arange(12).view(3, 4) % 4).repeat_interleave(20, 0).repeat_interleave(20, 1)
    noise = torch.randint(0, 4, (60, 80), generator=torch.Generator().manual_seed(0))
    calls = []
    monkeypatch.setattr(
        _fast, "runs_pass", lambda *a, run=_fast.runs_pass: calls.append(1) or run(*a)
    )
    for labels, by_runs in [(blocks, True), (noise, False)]:
        calls.clear()
        label = SoftLabel(labels.to(torch.uint8), num_classes=4, ignore_index=IGNORE)
        soft = F.resize(label, [9, 13], antialias=True).soft()
        assert bool(calls) == by_runs
        expected = soft_downsample_reference(labels, (9, 13), 4, kernel="bilinear", antialias=True)
        torch.testing.assert_close(soft.double(), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("bad", [3, 7])  # the spare channel's number, and beyond it
def test_resize_refuses_labels_that_bypassed_the_check(bad):
    like = SoftLabel(torch.zeros(2, 2, dtype=torch.uint8), num_classes=3)
    label = SoftLabel.wrap(torch.tensor([[0, bad], [1, IGNORE]], dtype=torch.uint8), like)
    with pytest.raises(ValueError, match=rf"values \[{bad}\]"):
        F.resize(label, [1, 1])


def test_crops_inside_are_views_and_crops_outside_pad_with_ignore():
    data = torch.tensor([[0, 1, 2], [2, 1, 0]], dtype=torch.uint8)
    label = SoftLabel(data, num_classes=3, ignore_index=7)
    inside = F.crop(label, 0, 1, 2, 2)
    assert inside.dtype == torch.uint8 and inside.data_ptr() == data[:, 1:].data_ptr()  # no copy
    outside = F.crop(label, -1, 1, 2, 3)
    assert outside.dtype == torch.uint8 and outside.tolist() == [[7, 7, 7], [1, 2, 7]]
    assert F.center_crop(label, [2, 1]).tolist() == [[1], [1]]
    assert F.pad(label, [1, 0, 0, 0], padding_mode="edge").tolist() == [[0, 0, 1, 2], [2, 2, 1, 0]]


def test_first_resize_makes_it_soft_and_crops_keep_it_hard():
    label = SoftLabel(torch.tensor([[0, 1, 1, 255]] * 4), num_classes=2)
    cropped = v2.CenterCrop((2, 6))(label)
    assert not cropped.is_soft and cropped.tolist()[0] == [255, 0, 1, 1, 255, 255]
    soft = v2.Resize((2, 2), antialias=False)(label)
    assert soft.is_soft and soft.shape == (2, 2, 2)
    # the right output pixel averages class 1 and the ignored pixel: half its mass is missing
    torch.testing.assert_close(soft.soft()[:, 0].sum(0), torch.tensor([1.0, 0.5]))


@settings(max_examples=120, deadline=None)
@given(
    lab_c=label_maps(max_hw=32, min_h=10, min_w=10),
    warp=warps(),
    before=st.lists(geometric(), max_size=2),
    seed=st.integers(0, 2**31),
)
def test_warps_equal_the_warp_of_the_one_hot(lab_c, warp, before, seed):
    """Rotation, affine, perspective and elastic on a hard label (soft_grid_sample on
    torchvision's grid) or on a label made soft by an earlier resize (the float image kernel)."""
    lab, C = lab_c
    if isinstance(warp, v2.ElasticTransform):  # its displacement blur needs >= 10 pixels
        before = [*before, v2.Pad(5)]
    pipeline = v2.Compose([*before, warp])
    assume(torchvision_defines(pipeline, lab, C, seed))
    label, ref = run_both(pipeline, lab, C, seed)
    soft = label.soft()
    assert soft.shape == ref.shape and soft.dtype == torch.float32
    torch.testing.assert_close(soft, ref, atol=1e-5, rtol=0)


def test_bilinear_rotation_weighs_the_border_like_the_image():
    """torchvision blends fill by a sampled mask m: image = m * (sampled - fill) + fill. An image of
    ones samples to m, so it reads m with fill None and m * m with fill 0; a one-class label's mass
    does the same, and it ignores the image's fill value (padding has no class)."""
    label = SoftLabel(torch.zeros(16, 16, dtype=torch.long), num_classes=1)
    image = tv_tensors.Image(torch.ones(3, 16, 16))
    out = {}
    for fill in (None, 0.0, (0.2, 0.4, 0.6)):
        rotate = v2.RandomRotation((30, 30), interpolation=InterpolationMode.BILINEAR, fill=fill)
        out_image, out_label = rotate(image, label)
        out[fill] = out_label.soft()[0]
        if fill in (None, 0.0):
            torch.testing.assert_close(out[fill], out_image[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[(0.2, 0.4, 0.6)], out[0.0])
    m = out[None]
    assert bool(((m > 0.1) & (m < 0.9)).any())  # the border is crossed: m * m differs from m
    torch.testing.assert_close(out[0.0], m * m, atol=1e-6, rtol=0)


def test_warps_of_a_batch_and_a_uint8_label():
    labels = torch.randint(0, 3, (2, 12, 14), dtype=torch.uint8)
    label = SoftLabel(labels, num_classes=3)
    out = F.rotate(label, 33.0, InterpolationMode.BILINEAR, expand=True, fill=0)
    assert out.shape[:2] == (2, 3) and out.is_soft
    single = F.rotate(SoftLabel(labels[1], num_classes=3), 33.0, "bilinear", expand=True, fill=0)
    torch.testing.assert_close(out[1].as_subclass(torch.Tensor), single.as_subclass(torch.Tensor))


def test_right_angle_rotations_stay_hard():
    label = SoftLabel(torch.tensor([[0, 1], [2, 255]]), num_classes=3)
    turned = F.rotate(label, 90.0)
    assert not turned.is_soft and turned.tolist() == [[1, 255], [0, 2]]


@pytest.mark.parametrize("mode", [InterpolationMode.BICUBIC, InterpolationMode.NEAREST_EXACT])
def test_warp_with_an_unsupported_mode_raises(mode):
    label = SoftLabel(torch.zeros(8, 8, dtype=torch.long), num_classes=2)
    with pytest.raises(ValueError, match="interpolation="):
        F.rotate(label, 30.0, mode)
    with pytest.raises(ValueError, match="displacement"):
        F.elastic(label, torch.zeros(1, 4, 4, 2))


def test_unsupported_crops_raise():
    label = SoftLabel(torch.zeros(16, 16, dtype=torch.long), num_classes=2)
    with pytest.raises(TypeError, match=r"F\.five_crop \(used by v2\.FiveCrop\)"):
        v2.FiveCrop(8)(tv_tensors.Image(torch.rand(3, 16, 16)), label)


def test_photometric_transforms_pass_it_through():
    image = tv_tensors.Image(torch.rand(3, 12, 12))
    label = SoftLabel(torch.randint(0, 3, (12, 12)), num_classes=3)
    photometric = v2.Compose(
        [v2.ColorJitter(0.5, 0.5, 0.5, 0.1), v2.RandomGrayscale(1.0), v2.GaussianBlur(3),
         v2.Normalize([0.5] * 3, [0.2] * 3), v2.RandomErasing(1.0)]
    )  # fmt: skip
    out_image, out_label = photometric(image, label)
    assert not torch.equal(out_image, image)
    assert type(out_label) is SoftLabel and torch.equal(out_label, label)


@pytest.mark.parametrize("mode", [InterpolationMode.NEAREST_EXACT, "box"])
def test_interpolation_without_a_float_image_operator_raises(mode):
    label = SoftLabel(torch.zeros(8, 8, dtype=torch.long), num_classes=2)
    with pytest.raises(ValueError, match="interpolation="):
        F.resize(label, [4, 4], interpolation=mode)


def test_metadata_survives_copies_and_pickling():
    label = SoftLabel(torch.randint(0, 4, (6, 5)), num_classes=4, ignore_index=-1)
    for copied in (
        label.clone(),
        label.to("cpu"),
        copy.deepcopy(label),
        pickle.loads(pickle.dumps(label)),
    ):
        assert type(copied) is SoftLabel and (copied.num_classes, copied.ignore_index) == (4, -1)
    assert "num_classes=4" in repr(label)


def test_batched_labels_and_uint8_padding():
    labels = torch.randint(0, 3, (2, 10, 10), dtype=torch.uint8)
    label = SoftLabel(labels, num_classes=3, ignore_index=IGNORE)
    padded = v2.Pad(2)(label)
    assert padded.dtype == torch.uint8 and int(padded[0, 0, 0]) == IGNORE
    soft = v2.Resize((5, 5))(padded)
    assert soft.shape == (2, 3, 5, 5)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        (torch.zeros(4, 4, dtype=torch.long), {"num_classes": 0}, ValueError, "num_classes"),
        (torch.full((4, 4), 7), {"num_classes": 3}, ValueError, r"values \[7\]"),
        (torch.zeros(2, 4, 4), {"num_classes": 3}, ValueError, "C = num_classes = 3"),
        (torch.zeros(4, dtype=torch.long), {"num_classes": 3}, ValueError, r"\(H, W\)"),
        (torch.zeros(4, 4, dtype=torch.long), {"num_classes": 3, "ignore_index": None}, TypeError, "ignore"),
    ],
)  # fmt: skip
def test_construction_errors(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        SoftLabel(data, **kwargs)
