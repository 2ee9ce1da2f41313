import warnings

import pytest
import torch

from softseg.train.losses import soft_cross_entropy
from softseg.train.models import (
    MODELS,
    TinySegNet,
    count_parameters,
    create_model,
    pad_to_multiple,
    required_divisor,
    unpad,
)

# timm's CI-sized ResNet (about 0.5 M parameters): builds and runs every decoder in milliseconds,
# offline, through smp's "tu-" wrapper. The real encoders are covered by the slow test.
SMALL = "tu-test_resnet"
SMP_ARCHS = sorted(a for a in MODELS if a != "tiny")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # smp/timm deprecation chatter
        yield


def test_the_expected_architectures_are_registered():
    expected = {"unet", "fpn", "deeplabv3", "deeplabv3plus", "pspnet", "linknet", "segformer"}
    assert expected | {"unetplusplus", "tiny"} == set(MODELS)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_each_arch_builds_and_gives_logits(arch):
    torch.manual_seed(0)
    model = create_model(arch, SMALL, num_classes=4, in_channels=3).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, 64, 64))
    stride = 4 if arch == "tiny" else 1
    assert logits.shape == (2, 4, 64 // stride, 64 // stride)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_padding_to_the_required_divisor_makes_any_size_work(arch):
    model = create_model(arch, SMALL, num_classes=3, in_channels=1).eval()
    image = torch.randn(1, 1, 20, 30)
    padded, pads = pad_to_multiple(image, required_divisor(model))
    with torch.inference_mode():
        logits = model(padded)
    if arch == "tiny":
        assert logits.shape[-2:] == (padded.shape[-2] // 4, padded.shape[-1] // 4)
    else:
        assert unpad(logits, pads).shape == (1, 3, 20, 30)


def test_required_divisor_values():
    assert required_divisor(create_model("tiny", num_classes=2)) == 4
    assert required_divisor(create_model("tiny", num_classes=2, output_stride=8)) == 8
    assert required_divisor(create_model("fpn", SMALL, num_classes=2)) == 32
    assert required_divisor(create_model("deeplabv3plus", SMALL, num_classes=2)) == 16
    assert required_divisor(create_model("unet", SMALL, num_classes=2)) == 1  # resizes skips itself
    assert required_divisor(torch.nn.Conv2d(3, 2, 1)) == 1


def test_default_model_builds_with_resnet18():
    model = create_model(num_classes=3).eval()
    assert type(model).__name__ == "Unet"
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.slow
@pytest.mark.parametrize("arch", SMP_ARCHS)
def test_each_arch_with_resnet18(arch):
    model = create_model(arch, "resnet18", num_classes=4).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4, 64, 64)


# --------------------------------------------------------------------------- errors
def test_unknown_names_raise():
    with pytest.raises(ValueError, match=r"unknown arch 'unet3d'.*'deeplabv3plus'.*'tiny'"):
        create_model("unet3d", num_classes=2)
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet19'.*'resnet18'.*'mobilenet_v2'"):
        create_model("unet", "resnet19", num_classes=2)
    with pytest.raises(ValueError, match="unknown encoder 'tu-no_such_net'"):
        create_model("fpn", "tu-no_such_net", num_classes=2)
    create_model("tiny", "resnet19", num_classes=2)  # the tiny model has no encoder to pick


def test_no_downloads():
    with pytest.raises(ValueError, match="encoder_weights must be None"):
        create_model("unet", num_classes=2, encoder_weights="imagenet")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("unet", num_classes=0)


# --------------------------------------------------------------------------- the tiny model
@pytest.mark.parametrize("stride", [2, 4, 8])
def test_tiny_output_stride(stride):
    model = TinySegNet(3, 5, width=8, output_stride=stride).eval()
    assert model.output_stride == stride
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 48)).shape == (2, 5, 64 // stride, 48 // stride)
        # sizes that are not multiples round up, like any stride-2 convolution with padding 1
        assert model(torch.randn(1, 3, 66, 45)).shape[-2:] == (-(-66 // stride), -(-45 // stride))
    with pytest.raises(ValueError, match="output_stride must be 2, 4 or 8, got 16"):
        TinySegNet(3, 5, output_stride=16)


def test_tiny_trains_against_full_resolution_labels():
    """The loss brings 32x32 labels down to the 8x8 logits; a few steps fit one batch."""
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=3, width=8)
    images = torch.randn(2, 3, 32, 32)
    labels = (images[:, 0] > 0).long() + (images[:, 1] > 1).long()
    labels[:, :4] = 255
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = soft_cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_count_parameters():
    model = TinySegNet(3, 2, width=4, output_stride=2)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    for p in model.features.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 4 * 2 + 2  # the 1x1 classifier


# --------------------------------------------------------------------------- padding
def test_pad_to_multiple_and_unpad():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    padded, pads = pad_to_multiple(x, 4, value=-1.0)
    assert padded.shape == (2, 3, 8, 8) and pads == (0, 1, 0, 3)
    assert torch.equal(padded[..., :5, :7], x)
    assert (padded[..., 5:, :] == -1).all() and (padded[..., :, 7:] == -1).all()
    assert torch.equal(unpad(padded, pads), x)
    same, none = pad_to_multiple(x[..., :4, :4], 4)
    assert none == (0, 0, 0, 0) and same.shape[-2:] == (4, 4)
    labels, pads = pad_to_multiple(torch.zeros(5, 7, dtype=torch.uint8), 8, value=255)
    assert labels.dtype == torch.uint8 and labels.shape == (8, 8) and labels[7, 7] == 255
    with pytest.raises(ValueError, match="multiple must be positive, got 0"):
        pad_to_multiple(x, 0)
