"""A plain segmentation-models-pytorch loop on soft labels (no pretrained weights).

Soft labels come from ``softseg.soft_resized_crop`` (one random box per sample, its image from
``softseg.resized_crop_image`` with the same operator) and from the torchvision v2 ``SoftLabel``
pipeline; the loss is checked against the soft cross-entropy written out by hand.
"""

from __future__ import annotations

import pytest
import torch

smp = pytest.importorskip(
    "segmentation_models_pytorch", reason="segmentation-models-pytorch is missing"
)

import softseg  # noqa: E402

C, IGNORE, OUT = 4, 255, (32, 32)


def _sample(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(3, 96, 128, generator=g)
    labels = torch.randint(0, C, (12, 16), generator=g).repeat_interleave(8, 0)
    labels = labels.repeat_interleave(8, 1)
    labels[:4] = IGNORE
    return image, labels


def _crop_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(4):
        image, labels = _sample(g)
        top, left = (float(v) for v in torch.rand(2, generator=g) * torch.tensor([40.0, 60.0]))
        side = 40 + float(torch.rand((), generator=g)) * 50  # may reach past the image: no mass
        box = (top, left, side, side)
        images.append(softseg.resized_crop_image(image, *box, OUT, fill=0.0))
        targets.append(softseg.soft_resized_crop(labels, *box, OUT, C, ignore_index=IGNORE))
    return torch.stack(images), torch.stack(targets)


def _small_unet() -> torch.nn.Module:
    # no pretrained weights (nothing is downloaded); a shallow decoder keeps the test fast on CPU
    return smp.Unet(
        "resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8), classes=C
    )


def _hand_soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * logits.log_softmax(1)).sum() / target.sum()


def test_unet_loop_on_soft_resized_crops() -> None:
    torch.manual_seed(0)
    model = _small_unet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, soft = _crop_batch(0)
    assert soft.shape == (4, C, *OUT) and ((soft > 0.01) & (soft < 0.99)).any()
    losses = []
    for _ in range(6):
        logits = model(images)
        loss = softseg.soft_cross_entropy(logits, soft)
        torch.testing.assert_close(loss, _hand_soft_ce(logits, soft))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_unet_step_on_torchvision_soft_labels() -> None:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from softseg.integrations.torchvision import SoftLabel

    torch.manual_seed(0)
    pipeline = v2.Compose([v2.RandomResizedCrop(OUT, antialias=True), v2.RandomHorizontalFlip()])
    g = torch.Generator().manual_seed(1)
    pairs = [pipeline(tv_tensors.Image(im), SoftLabel(lb, num_classes=C)) for im, lb in
             (_sample(g) for _ in range(2))]  # fmt: skip
    images = torch.stack([im.as_subclass(torch.Tensor) for im, _ in pairs])
    soft = torch.stack([label.soft() for _, label in pairs])
    model = _small_unet()
    logits = model(images)
    loss = softseg.soft_cross_entropy(logits, soft)
    torch.testing.assert_close(loss, _hand_soft_ce(logits, soft))
    loss.backward()
    assert all(p.grad is not None for p in model.segmentation_head.parameters())
