"""The joint augmentation keeps image and label coherent through every transform."""

import pytest
import torch

import softseg
from softseg.ops.sparse import dense_from_topk
from softseg.train.transforms import MEAN, STD, EvalTransform, TrainTransform, sample_generator

C = 5


def scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = (
        torch.randint(0, C, (9, 12), generator=g).repeat_interleave(7, 0).repeat_interleave(6, 1)
    )
    labels[:, 20] = 2  # a 1-pixel pole
    palette = torch.rand(C, 3, generator=g)
    image = palette[labels].permute(2, 0, 1)  # colour is a function of the label
    return image, labels, palette


def unnormalize(x):
    return x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


@pytest.mark.parametrize("kernel", ["bilinear", "area", "nearest"])
@pytest.mark.parametrize("index", range(6))
def test_soft_label_explains_the_image_after_every_transform(kernel, index):
    image, labels, palette = scene()
    t = TrainTransform(C, 3.0, (24, 20), image_kernel=kernel, scale_range=(0.5, 2.0), hflip=True)
    x, y = t(image, labels, sample_generator(7, 1, index))
    x = unnormalize(x)
    mass = y.sum(0)
    # every output pixel's colour = its class mixture of palette colours + padding in the mean colour
    expected = torch.einsum("chw,cd->dhw", y, palette) + (1 - mass) * torch.tensor(MEAN).view(
        3, 1, 1
    )
    assert torch.allclose(x, expected, atol=1e-5)
    assert (mass <= 1 + 1e-5).all() and (y >= 0).all()


def test_padding_is_ignored_mass_and_mean_colour():
    image, labels, _ = scene()
    t = TrainTransform(C, 1.0, (200, 200), scale_range=(1.0, 1.0), hflip=False)  # crop > frame
    x, y = t(image, labels, sample_generator(0, 0, 0))
    mass = y.sum(0)
    assert (mass < 1e-6).float().mean() > 0.5  # most of the window is padding
    pad = mass < 1e-6
    assert torch.allclose(
        unnormalize(x)[:, pad], torch.tensor(MEAN).view(3, 1).expand(3, int(pad.sum())), atol=1e-5
    )


@pytest.mark.parametrize("method", ["nearest", "mode"])
def test_hard_methods_use_the_same_box(method):
    image, labels, palette = scene()
    t = TrainTransform(
        C, 2.0, (16, 16), label_method=method, image_kernel="nearest", scale_range=(0.7, 1.4)
    )
    x, y = t(image, labels, sample_generator(3, 0, 5))
    assert y.dtype == torch.int64 and y.shape == (16, 16)
    valid = y != 255
    if method == "nearest":  # nearest image and nearest label read the same pixel
        colours = palette[y[valid]].T
        assert torch.allclose(unnormalize(x)[:, valid], colours, atol=1e-5)
    assert set(y[valid].unique().tolist()) <= set(range(C))


def test_same_seed_epoch_index_same_sample_and_flip_is_shared():
    image, labels, _ = scene()
    t = TrainTransform(C, 2.0, (16, 16), scale_range=(0.5, 2.0), jitter=0.3)
    a = t(image, labels, sample_generator(1, 2, 3))
    b = t(image, labels, sample_generator(1, 2, 3))
    c = t(image, labels, sample_generator(1, 3, 3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_jitter_changes_image_only():
    image, labels, _ = scene()
    base = TrainTransform(C, 2.0, (16, 16), jitter=0.0)
    jit = TrainTransform(C, 2.0, (16, 16), jitter=0.5)
    x0, y0 = base(image, labels, sample_generator(0, 0, 1))
    x1, y1 = jit(image, labels, sample_generator(0, 0, 1))
    assert torch.equal(y0, y1) and not torch.allclose(x0, x1)


def test_topk_targets_round_trip():
    image, labels, _ = scene()
    dense = TrainTransform(C, 3.0, (16, 16))(image, labels, sample_generator(0, 0, 0))[1]
    idx, w = TrainTransform(C, 3.0, (16, 16), topk=C)(image, labels, sample_generator(0, 0, 0))[1]
    assert torch.allclose(dense_from_topk(idx, w, C), dense)


def test_eval_transform_keeps_full_label():
    image, labels, _ = scene()
    x, y = EvalTransform(3.0)(image, labels)
    assert x.shape == (3, 21, 24) and torch.equal(y, labels.long())


def test_eval_transform_of_an_image_alone_is_the_model_input_of_the_pair():
    image, labels, _ = scene()  # a float image in [0, 1]
    transform = EvalTransform(3.0, image_kernel="bicubic", antialias=False)
    alone = transform.transform_image(image)
    assert torch.equal(alone, transform(image, labels)[0])
    expected = softseg.resize_image(image, (21, 24), kernel="bicubic", antialias=False)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(alone, (expected - mean) / std)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(label_method="bilinear"), "label_method"),
        (dict(factor=0), "factor"),
        (dict(scale_range=(2.0, 1.0)), "scale_range"),
        (dict(crop_size=(0, 4)), "crop_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    base = dict(num_classes=C, factor=2.0, crop_size=(8, 8))
    with pytest.raises(ValueError, match=match):
        TrainTransform(**(base | kwargs))


def test_image_label_size_mismatch():
    image, labels, _ = scene()
    with pytest.raises(ValueError, match="differ in size"):
        TrainTransform(C, 2.0, (8, 8))(image[:, :-1], labels, sample_generator(0, 0, 0))
