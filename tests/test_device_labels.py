"""Soft labels made in the training step from the workers' integer label windows
(``soft_labels_in="step"``) are the workers' soft labels: sample by sample, and over a whole run."""

import json
from pathlib import Path

import pytest
import torch

from conftest import SMALL_RUN
from softseg.data import build_dataset
from softseg.ops.sparse import dense_from_topk
from softseg.train.config import TrainConfig, config_differences
from softseg.train.inputs import LabelWindows, collate_samples, soft_from_windows, soft_in_step
from softseg.train.loop import train
from softseg.train.transforms import LabelWindow, TrainTransform, sample_generator

SMALL = SMALL_RUN | {"val_split": None}
C = 5
#: torch computes source coordinates in float32 (so does softseg, to match it): a box shifted to
#: its window's origin rounds them apart by up to an ulp of a frame coordinate (~4e-6 at 60 px)
ATOL = 1e-5


def _pairs(n: int = 8, size=(40, 56)):
    """Random images and labels (with ignored pixels), not one frame size repeated."""
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        h, w = size[0] + 3 * i, size[1] - 2 * i
        label = torch.randint(0, C, (h, w), generator=g, dtype=torch.uint8)
        label[torch.rand(h, w, generator=g) < 0.1] = 255
        out.append((torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8), label))
    return out


def _both(pairs, device, **kw):
    """The worker path's samples, and the step path's batch made on ``device``."""
    worker = TrainTransform(C, **kw)
    step = TrainTransform(C, soft_in_step=True, **kw)
    made, shipped = [], []
    for i, (image, label) in enumerate(pairs):
        made.append(worker(image, label, sample_generator(3, 1, i)))
        shipped.append(step(image, label, sample_generator(3, 1, i)))
    return step, made, shipped, soft_from_windows(step, collate_samples(shipped)[1], device)


CASES = [
    dict(factor=3.0, crop_size=(8, 12), scale_range=(0.5, 2.0)),  # windows and padded boxes
    dict(factor=1.5, crop_size=(16, 16), scale_range=(0.8, 1.2), image_kernel="bicubic"),
    dict(factor=2.0, crop_size=(10, 14), scale_range=(0.6, 1.6), label_kernel="box"),
    dict(factor=2.5, crop_size=(12, 12), scale_range=(0.5, 1.5), antialias=False),
    dict(factor=0.5, crop_size=(24, 24), scale_range=(0.9, 1.1)),  # enlarging
]


@pytest.mark.parametrize("kw", CASES)
def test_step_batch_equals_the_workers_samples(kw):
    pairs = _pairs()
    _, made, shipped, soft = _both(pairs, torch.device("cpu"), jitter=0.2, **kw)
    flips = [bool(y.flip) for _, y in shipped]
    assert any(flips) and not all(flips)  # the batch checks both kinds of sample
    for (x_w, y_w), (x_s, y_s), s in zip(made, shipped, soft, strict=True):
        assert torch.equal(x_w, x_s)  # the same draws: image, flip and jitter alike
        assert isinstance(y_s, LabelWindow) and y_s.window.dtype == torch.uint8
        torch.testing.assert_close(s, y_w, rtol=0, atol=ATOL)
    # the windows ship the pixels the filters read, not whole frames
    shipped_px = sum(y.window.numel() for _, y in shipped)
    assert shipped_px < sum(label.numel() for _, label in pairs)


def test_step_batch_keeps_the_top_k():
    kw = dict(factor=3.0, crop_size=(8, 12), scale_range=(0.5, 2.0), topk=2)
    _, made, _, (indices, weights) = _both(_pairs(), torch.device("cpu"), **kw)
    assert indices.shape == weights.shape == (8, 2, 8, 12)
    for n, (_, (idx, w)) in enumerate(made):
        # ties (zero weights) may list other classes: compare the labels they stand for
        dense = dense_from_topk(indices[n], weights[n], C)
        torch.testing.assert_close(dense, dense_from_topk(idx, w, C), rtol=0, atol=ATOL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_batch_on_cuda_equals_the_workers_samples():
    kw = dict(factor=3.0, crop_size=(8, 12), scale_range=(0.5, 2.0))
    _, made, _, soft = _both(_pairs(), torch.device("cuda"), **kw)
    assert soft.device.type == "cuda"
    torch.testing.assert_close(soft.cpu(), torch.stack([y for _, y in made]), rtol=0, atol=ATOL)


def test_collate_pads_windows_and_keeps_their_sizes():
    t = TrainTransform(C, 3.0, (8, 12), scale_range=(0.5, 2.0), soft_in_step=True)
    batch = [
        t(image, label, sample_generator(0, 0, i)) for i, (image, label) in enumerate(_pairs())
    ]
    x, y = collate_samples(batch)
    assert x.shape == (8, 3, 8, 12) and isinstance(y, LabelWindows)
    for n, (_, one) in enumerate(batch):
        h, w = y.sizes[n].tolist()
        assert torch.equal(y.windows[n, :h, :w], one.window)
    assert y.boxes.dtype == torch.float64 and y.flips.dtype == torch.bool


def _losses(run: Path) -> list[float]:
    return [
        json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.parametrize("extra", [{}, {"topk": 2, "label_kernel": "bicubic"}])
def test_run_with_step_labels_matches_run_with_worker_labels(tmp_path, extra):
    runs = {}
    for where in ("worker", "step"):
        cfg = TrainConfig(out=str(tmp_path / where), soft_labels_in=where, **(SMALL | extra))
        train(cfg, progress=False)
        runs[where] = tmp_path / where
    a, b = (_losses(runs[w]) for w in ("worker", "step"))
    assert len(a) == 2
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-5, atol=0)
    wa, wb = (torch.load(runs[w] / "checkpoint.pt", weights_only=True)["model"] for w in runs)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)


def test_where_soft_labels_are_made():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not soft_in_step(TrainConfig(), cpu)  # auto: the workers on the CPU
    assert soft_in_step(TrainConfig(), cuda)
    assert soft_in_step(TrainConfig(soft_labels_in="step"), cpu)
    assert not soft_in_step(TrainConfig(soft_labels_in="worker"), cuda)
    assert not soft_in_step(TrainConfig(labels="nearest", soft_labels_in="step"), cuda)
    assert not soft_in_step(TrainConfig(rotation=10.0), cuda)  # the warp stays in the workers


def test_bad_settings_are_refused_and_old_configs_read_as_worker():
    with pytest.raises(ValueError, match="soft_labels_in.*'gpu'"):
        TrainConfig(soft_labels_in="gpu")
    with pytest.raises(ValueError, match="soft_labels_in.*rotation"):
        TrainConfig(soft_labels_in="step", rotation=10.0)
    with pytest.raises(ValueError, match="soft_in_step.*'nearest'"):
        TrainTransform(C, 2.0, (8, 8), label_method="nearest", soft_in_step=True)
    old = TrainConfig().as_json()
    del old["soft_labels_in"]
    assert TrainConfig.from_dict(old).soft_labels_in == "worker"
    # where the labels are made may change on resume: the same labels
    assert config_differences(TrainConfig(), TrainConfig(soft_labels_in="step")) == {}


def test_synthetic_labels_ship_as_uint8():
    # the loader's win: integer windows in the dataset's dtype, no float maps
    _, label, _ = build_dataset("synthetic", None, "train", num_images=1, size=(48, 96))[0]
    assert label.dtype == torch.uint8
