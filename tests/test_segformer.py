"""SegFormer (logits at 1/4 of the input) trained on full-resolution integer labels.

``softseg.soft_cross_entropy`` brings integer targets larger than the logits down to the logits'
grid with the soft down-sampling of the images; the test states that reference explicitly
(``soft_downsample`` of the labels, then the soft cross-entropy written out by hand). The model is
randomly initialised from a tiny ``SegformerConfig``: nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

import softseg  # noqa: E402

C, IGNORE = 5, 255


def _tiny_segformer() -> torch.nn.Module:
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2],
        decoder_hidden_size=16, num_labels=C,
    )  # fmt: skip
    return transformers.SegformerForSemanticSegmentation(config)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 64, 96, generator=g)
    blocks = torch.randint(0, C, (2, 8, 12), generator=g).repeat_interleave(8, 1)
    labels = blocks.repeat_interleave(8, 2)  # (2, 64, 96) with boundaries off the 4x4 grid
    labels[:, :, 45:47] = torch.randint(0, C, (2, 64, 2), generator=g)  # thin structures
    labels[:, :5] = IGNORE
    return images, labels


def _hand_soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * logits.log_softmax(1)).sum() / target.sum()


@pytest.mark.parametrize("kernel", ["bilinear", "area"])
def test_loss_on_full_resolution_labels_is_the_soft_reference(kernel: str) -> None:
    torch.manual_seed(0)
    model = _tiny_segformer()
    images, labels = _batch(0)
    logits = model(pixel_values=images).logits
    assert logits.shape == (2, C, 16, 24)  # 1/4 of the input

    loss = softseg.soft_cross_entropy(logits, labels, ignore_index=IGNORE, kernel=kernel)
    soft = softseg.soft_downsample(labels, (16, 24), C, ignore_index=IGNORE, kernel=kernel)
    torch.testing.assert_close(loss, _hand_soft_ce(logits, soft))
    (grad,) = torch.autograd.grad(loss, logits)
    (ref_grad,) = torch.autograd.grad(_hand_soft_ce(logits, soft), logits)
    torch.testing.assert_close(grad, ref_grad)
    # and it is not what the usual nearest down-sampling of the labels gives
    nearest = softseg.nearest_downsample(labels, (16, 24)).long()
    hard = torch.nn.functional.cross_entropy(logits, nearest, ignore_index=IGNORE)
    assert not torch.allclose(loss, hard)


def test_a_few_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = _tiny_segformer()
    images, labels = _batch(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = softseg.soft_cross_entropy(model(pixel_values=images).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
