"""Frames read ahead by loader workers score and count exactly as frames read one at a time."""

from __future__ import annotations

import pytest
import torch

from softseg.data import build_dataset
from softseg.train.config import TrainConfig
from softseg.train.evaluate import evaluate_model
from softseg.train.inputs import class_weights, read_ahead


@pytest.fixture(scope="module")
def frames():
    return build_dataset("synthetic", split="val", num_images=5, size=(32, 48))


def _name(image: torch.Tensor, label: torch.Tensor, name: str) -> str:
    return name


def test_read_ahead_keeps_the_order_asked_for(frames):
    order = [3, 0, 4, 1]
    here = list(read_ahead(frames, order, _name))
    ahead = list(read_ahead(frames, order, _name, workers=2))
    assert here == ahead == [frames[i][2] for i in order]
    # without a step, the dataset's own items, tensors intact
    image, label, name = next(read_ahead(frames, [2], workers=1))
    assert torch.equal(image, frames[2][0]) and torch.equal(label, frames[2][1])
    assert name == frames[2][2]


def test_scores_and_class_weights_do_not_depend_on_the_workers(frames):
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, frames.info.num_classes, 3, padding=1)  # depends on the image
    scores = [
        evaluate_model(model, frames, 2.0, device=torch.device("cpu"), progress=False, workers=w)
        for w in (0, 2)
    ]
    assert scores[0]["miou"] == scores[1]["miou"] and scores[0]["nll"] == scores[1]["nll"]
    assert scores[0]["per_class"] == scores[1]["per_class"]
    weights = [
        class_weights(TrainConfig(class_weights="median-frequency", workers=w), frames, False)
        for w in (0, 2)
    ]
    assert torch.equal(weights[0], weights[1]) and weights[0].sum() > 0
