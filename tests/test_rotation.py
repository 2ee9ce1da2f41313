"""Opt-in random rotation in TrainTransform: one warp for image and label, off by default."""

import math

import pytest
import torch
import torch.nn.functional as F

from softseg.data.base import DatasetInfo
from softseg.ops.resample import resized_crop_image, soft_resized_crop
from softseg.ops.sparse import dense_from_topk
from softseg.train.config import TrainConfig, config_differences
from softseg.train.inputs import train_transform
from softseg.train.transforms import (
    MEAN,
    STD,
    TrainTransform,
    normalize,
    sample_generator,
    supersampling,
    warp_pair,
)

C = 3


def blocks(seed=0, ignore=False):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (10, 12), generator=g).repeat_interleave(6, 0)
    labels = labels.repeat_interleave(5, 1)  # (60, 60)
    if ignore:
        labels[torch.rand(labels.shape, generator=g) < 0.2] = 255
    return labels


def one_hot(labels):
    return F.one_hot(labels.clamp(max=C - 1), C).permute(2, 0, 1).float() * (labels < C)


def unnormalize(x):
    return x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


@pytest.mark.parametrize("index", range(4))
def test_rotation_off_is_todays_transform_and_draws_nothing_more(index):
    """rotation=0: the same draws and the same arrays as the axis-aligned path alone."""
    labels = blocks(index)
    image = torch.rand(3, *labels.shape, generator=torch.Generator().manual_seed(index))
    t = TrainTransform(C, 3.0, (12, 16), scale_range=(0.5, 2.0), jitter=0.0, rotation=0.0)
    g = sample_generator(0, 1, index)
    x, y = t(image, labels, g)
    # the same sample by hand: box (3 draws), flip (1 draw), one resample each
    h = sample_generator(0, 1, index)
    box = t.sample_box(*labels.shape, h)
    flip = bool(torch.rand(1, generator=h) < 0.5)
    x0 = normalize(resized_crop_image(image, *box, (12, 16), fill=MEAN))
    y0 = soft_resized_crop(labels, *box, (12, 16), C)
    x0, y0 = (x0.flip(-1), y0.flip(-1)) if flip else (x0, y0)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert torch.equal(g.get_state(), h.get_state())  # no extra random number was drawn
    rotated = TrainTransform(C, 3.0, (12, 16), scale_range=(0.5, 2.0), jitter=0.0, rotation=10.0)
    g2 = sample_generator(0, 1, index)
    rotated(image, labels, g2)
    torch.rand(1, generator=h)  # the rotation draws exactly one number more
    assert torch.equal(g2.get_state(), h.get_state())


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("factor", [1.0, 2.5, 4.0])
def test_rotated_image_of_the_one_hot_is_the_soft_label(index, factor):
    """A 3-class label whose image *is* its one-hot (uint8 0/255): after rotation, crop, scale,
    supersampling and flip the image is the soft label, plus the mean colour where the sample fell
    outside the frame (the missing mass)."""
    labels = blocks(index)
    image = (one_hot(labels) * 255).to(torch.uint8)
    t = TrainTransform(C, factor, (12, 12), scale_range=(0.7, 1.4), rotation=45.0)
    x, y = t(image, labels, sample_generator(3, 0, index))
    assert y.shape == (C, 12, 12)
    missing = 1 - y.sum(0, keepdim=True)
    expected = y + missing * torch.tensor(MEAN).view(3, 1, 1)
    torch.testing.assert_close(unnormalize(x), expected, atol=2e-6, rtol=0)
    assert float(missing.max()) <= 1 + 1e-6 and float(missing.min()) >= -1e-6


@pytest.mark.parametrize("supersample", [1, 2, 3, 4])
@pytest.mark.parametrize("angle", [-170.0, -30.0, 0.0, 12.5, 90.0])
def test_warp_pair_is_one_operator_with_ignored_pixels(supersample, angle):
    labels = blocks(1, ignore=True)
    x, y = warp_pair(one_hot(labels), labels, (5.5, -3.0, 40.0, 52.0), angle, (10, 13), C,
                     supersample=supersample)  # fmt: skip
    assert x.shape == y.shape == (C, 10, 13)
    torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_supersampling_antialiases_a_fine_pattern():
    """A 1-pixel checkerboard shrunk 4x: every output pixel should hold half of each class.
    Sampled at the output grid it aliases (4 taps); supersampled 4x it averages 64 taps."""
    i, j = torch.meshgrid(torch.arange(96), torch.arange(96), indexing="ij")
    labels = (i + j) % 2
    box, size = (16.0, 16.0, 64.0, 64.0), (16, 16)
    assert supersampling(box, size, 8) == 4 and supersampling(box, size, 2) == 2
    errors = {}
    for s in (1, 4):
        y = warp_pair(one_hot(labels), labels, box, 17.0, size, C, supersample=s)[1]
        errors[s] = float((y[0] - 0.5).abs().max())
    assert errors[4] < 0.05 < errors[1], errors


def test_supersampling_factor():
    assert supersampling((0, 0, 32, 32), (32, 32), 4) == 1  # native resolution: no supersampling
    assert supersampling((0, 0, 64, 30), (32, 32), 4) == 2  # the larger shrink decides
    assert supersampling((0, 0, 2.5 * 32, 32), (32, 32), 4) == 3  # rounded up
    assert supersampling((0, 0, 320, 320), (32, 32), 4) == 4  # capped


def test_nearest_label_with_rotation_is_a_hard_mask_with_ignore_outside():
    labels = blocks(2, ignore=True)
    image = torch.rand(3, *labels.shape)
    t = TrainTransform(C, 2.0, (20, 20), label_method="nearest", rotation=60.0, hflip=False)
    g = sample_generator(0, 0, 0)
    _, y = t(image, labels, g)
    assert y.dtype == torch.int64 and y.shape == (20, 20)
    assert set(y.unique().tolist()) <= {*range(C), 255}
    # at angle 0 and an odd integer factor every sample is a pixel centre: the nearest crop
    _, y0 = warp_pair(image, labels, (9, 6, 42, 42), 0.0, (14, 14), C, method="nearest")
    assert torch.equal(y0, labels[10:51:3, 7:48:3])


def test_corners_outside_the_frame_carry_no_mass():
    labels = torch.zeros(40, 40, dtype=torch.long)
    _, y = warp_pair(one_hot(labels), labels, (0, 0, 40, 40), 45.0, (20, 20), C, supersample=2)
    mass = y.sum(0)
    assert float(mass[0, 0]) == 0.0 and float(mass[10, 10]) == pytest.approx(1.0)
    assert torch.equal(y.argmax(0), torch.zeros(20, 20, dtype=torch.long))


def test_topk_with_rotation():
    labels = blocks(4)
    image = torch.rand(3, *labels.shape)
    t = TrainTransform(C, 2.0, (16, 16), rotation=30.0, topk=C)
    idx, w = t(image, labels, sample_generator(0, 0, 5))[1]
    dense = TrainTransform(C, 2.0, (16, 16), rotation=30.0)(
        image, labels, sample_generator(0, 0, 5)
    )
    assert idx.shape == w.shape == (C, 16, 16)
    torch.testing.assert_close(dense_from_topk(idx, w, C), dense[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(label_method="mode"), "label_method 'mode'"),
        (dict(image_kernel="area"), "image_kernel"),
        (dict(label_kernel="box"), "label_kernel"),
        (dict(rotation=-1.0), "rotation"),
        (dict(rotation=math.nan), "rotation"),
        (dict(rotation=181.0), "rotation"),
        (dict(max_supersample=0), "max_supersample"),
    ],
)
def test_bad_rotation_settings(kwargs, match):
    base = dict(num_classes=C, factor=2.0, crop_size=(8, 8), rotation=10.0)
    with pytest.raises(ValueError, match=match):
        TrainTransform(**(base | kwargs))


def test_mode_and_area_still_work_without_rotation():
    TrainTransform(C, 2.0, (8, 8), label_method="mode", image_kernel="area")


def test_config_field_defaults_resumes_and_reaches_the_transform():
    old = TrainConfig.from_dict({"factor": 4})  # a config written before the field existed
    assert old.rotation == 0.0
    new = TrainConfig(factor=4, rotation=15.0)
    assert "rotation" in config_differences(old, new)
    assert TrainConfig.from_dict(new.as_json()).rotation == 15.0
    with pytest.raises(ValueError, match="`rotation`"):
        TrainConfig(rotation=200.0)
    info = DatasetInfo("x", tuple("abc"), ((0, 0, 0),) * 3, 255)
    assert train_transform(new, info, (8, 8)).rotation == 15.0
    assert train_transform(old, info, (8, 8)).rotation == 0.0
