"""Decoding with the class prior divided out (issue 16's thin-class remedy): offsets and wiring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from softseg.cli import app
from softseg.data import build_dataset
from softseg.train.evaluate import class_frequencies, evaluate_model, prior_offset
from softseg.train.losses import median_frequency_weights, soft_cross_entropy

LEGACY_RUN = Path(__file__).resolve().parent / "fixtures" / "legacy_v0_1" / "run"


class FixedLogits(torch.nn.Module):
    """Logits that prefer class 0 by a little everywhere, so a prior offset can flip them."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.bias = torch.zeros(num_classes)
        self.bias[0] = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        return self.bias.view(1, -1, 1, 1).expand(n, -1, h, w).clone()


def test_offset_flips_a_frequent_class_to_a_rare_one():
    freq = torch.tensor([0.9, 0.1], dtype=torch.float64)
    logits = torch.tensor([0.5, 0.0])  # class 0 by 0.5 nats
    assert int(logits.argmax()) == 0
    assert int((logits + prior_offset(freq, 1.0)).argmax()) == 1  # log(0.9/0.1) = 2.2 > 0.5
    assert int((logits + prior_offset(freq, 0.2)).argmax()) == 0  # 0.2 * 2.2 = 0.44 < 0.5
    assert torch.equal(prior_offset(freq, 0.0), torch.zeros(2))
    with pytest.raises(ValueError, match="strength"):
        prior_offset(freq, -1.0)


def test_evaluate_model_adds_the_offset_before_scoring():
    ds = build_dataset("synthetic", split="val", num_images=2, size=(32, 64))
    model = FixedLogits(ds.info.num_classes)
    plain = evaluate_model(model, ds, 2.0, device=torch.device("cpu"), progress=False)
    shift = torch.zeros(ds.info.num_classes)
    shift[3] = 1.0  # class 3 now wins everywhere
    moved = evaluate_model(
        model, ds, 2.0, device=torch.device("cpu"), progress=False, logit_offset=shift
    )
    freq = class_frequencies(ds)
    assert plain["pixel_acc"] == pytest.approx(100 * float(freq[0]))
    assert moved["pixel_acc"] == pytest.approx(100 * float(freq[3]))


def test_cli_eval_with_prior_correction(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(LEGACY_RUN, run)
    scores = {}
    for strength in ("0", "1"):
        out = tmp_path / f"s{strength}.json"
        res = CliRunner().invoke(
            app,
            ["eval", str(run), "--split", "val", "--limit", "2", "--device", "cpu",
             "--prior-correction", strength, "--json", str(out)],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        scores[strength] = json.loads(out.read_text())
    assert scores["1"]["prior_correction"] == 1.0 and scores["0"]["prior_correction"] == 0.0
    assert scores["1"]["iou"] != scores["0"]["iou"]  # the offsets changed the decisions
    bad = CliRunner().invoke(app, ["eval", str(run), "--prior-correction", "-1"])
    assert bad.exit_code != 0 and "--prior-correction" in bad.output


def test_weighted_cross_entropy_learns_the_weighted_posterior():
    """Why prior correction over-corrects class-weighted models (prior_offset's docstring): where
    a share p_c of the pixels of one input is labelled c, the weighted loss is least at
    q_c ∝ w_c p_c, i.e. the model's logits already hold log w_c."""
    p = torch.tensor([0.7, 0.2, 0.1])
    w = torch.tensor([0.5, 2.0, 4.0])
    labels = torch.tensor([0] * 7 + [1] * 2 + [2]).view(1, 1, 10)  # one input, ten labellings
    for weight_mode in ("pixel", "class"):  # the same loss for one-hot labels
        grads = []
        for start in ((w * p).log(), p.log()):
            z = start.clone().requires_grad_()  # one score vector shared by the ten pixels
            logits = z.view(1, 3, 1, 1).expand(1, 3, 1, 10)
            soft_cross_entropy(logits, labels, weight=w, weight_mode=weight_mode).backward()
            grads.append(z.grad.abs().max())
        assert grads[0] < 1e-6  # log(w p) is the optimum...
        assert grads[1] > 1e-2  # ...and the unweighted posterior is not


def test_median_frequency_weights_times_the_prior_is_the_presence():
    """w_c * share_c = median * (share of pixels in maps holding c): the same for every class that
    is in every map, so dividing the prior out of such a model's scores counts it twice."""
    maps = [torch.tensor([0] * 6 + [1] * 3 + [2]), torch.tensor([0] * 5 + [1] * 4 + [2])]
    counts = torch.bincount(torch.cat(maps), minlength=3).double()
    product = median_frequency_weights(maps, 3, None).double() * counts / counts.sum()
    assert torch.allclose(product, product[0].expand(3), rtol=1e-6)
    maps[1] = torch.tensor([0] * 6 + [1] * 4)  # class 2 now in half of the maps
    counts = torch.bincount(torch.cat(maps), minlength=3).double()
    product = median_frequency_weights(maps, 3, None).double() * counts / counts.sum()
    assert float(product[2] / product[0]) == pytest.approx(0.5)
