"""Per-class logit offsets fit on training frames (issue 16): the fit, its wiring and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from softseg.cli import app
from softseg.train.evaluate import evaluate_run
from softseg.train.offsets import (
    decoded_miou,
    fit_class_offsets,
    fit_run_offsets,
    spaced_indices,
)

LEGACY_RUN = Path(__file__).resolve().parent / "fixtures" / "legacy_v0_1" / "run"


def thin_class_pixels(margin: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes over 30 pixels; class 2 (the thin one) is always second, by ``margin``, to
    the class that is right elsewhere."""
    labels = torch.tensor([0] * 12 + [1] * 12 + [2] * 6)
    logits = torch.zeros(3, labels.numel())
    logits[0, :12] = 3.0
    logits[1, 12:24] = 3.0
    logits[0, 24:] = 2.0  # the thin class's pixels are called class 0...
    logits[2, 24:] = 2.0 - margin  # ...by `margin`
    logits[2, :24] = -1.0  # and the thin class is far behind on the others' pixels
    logits[1, :12] = 2.75  # class 1 is close behind class 0: lowering class 0 cannot help
    return logits, labels


def test_a_class_always_second_by_a_margin_gets_an_offset_above_it():
    logits, labels = thin_class_pixels(0.5)
    before = decoded_miou(logits, labels, 3, None)
    offsets = fit_class_offsets(logits, labels, 3, None)
    assert before == pytest.approx(100 * (12 / 18 + 1) / 3)  # class 2 never predicted
    assert float(offsets[2]) > 0.5
    assert float(offsets[2]) - float(offsets[0]) > 0.5  # what moves the decision is the gap
    assert decoded_miou(logits, labels, 3, None, offsets) == pytest.approx(100.0)
    # the grid's value at the margin ties, and the tie goes to class 0 (argmax takes the first)
    tie = fit_class_offsets(logits, labels, 3, None, grid=[0.0, 0.5], rounds=1)
    assert tie.tolist() == [0.0, 0.0, 0.0]


def test_the_fit_never_scores_below_no_offsets_and_is_deterministic():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=gen)  # (N, C, H, W) of noise
    labels = torch.randint(0, 5, (2, 6, 7), generator=gen)
    labels[0, 0] = 255  # ignored
    before = decoded_miou(logits, labels, 5)
    first = fit_class_offsets(logits, labels, 5)
    assert decoded_miou(logits, labels, 5, offsets=first) >= before
    assert torch.equal(first, fit_class_offsets(logits, labels, 5))
    # a grid without any useful value keeps every offset at 0
    logits, labels = thin_class_pixels(0.5)
    assert fit_class_offsets(logits, labels, 3, None, grid=[-1.0, 0.0]).tolist() == [0, 0, 0]


def test_the_fit_agrees_with_a_plain_search_on_float16_logits():
    """The histogram over first winning grid values gives what trying each value does."""
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(4, 500, generator=gen) * 2).half()
    labels = torch.randint(0, 4, (500,), generator=gen)
    grid = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    fitted = fit_class_offsets(logits, labels, 4, None, grid=grid, rounds=1)
    offsets = torch.zeros(4)
    best = decoded_miou(logits, labels, 4, None, offsets)
    for c in range(4):  # the same coordinate ascent, one argmax per grid value
        for value in sorted(grid, key=lambda v: (abs(v), v)):
            trial = offsets.clone()
            trial[c] = value
            score = decoded_miou(logits, labels, 4, None, trial)
            if score > best:
                best, offsets = score, trial
    assert torch.equal(fitted, offsets)


def test_bad_arguments_are_refused():
    logits, labels = thin_class_pixels()
    with pytest.raises(ValueError, match="include 0"):
        fit_class_offsets(logits, labels, 3, None, grid=[0.5, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        fit_class_offsets(logits, labels, 3, None, grid=[1.0, 0.0])
    with pytest.raises(ValueError, match="rounds"):
        fit_class_offsets(logits, labels, 3, None, rounds=0)
    with pytest.raises(ValueError, match="num_classes is 4"):
        fit_class_offsets(logits, labels, 4, None)
    with pytest.raises(ValueError, match="fit_offsets_frames"):
        spaced_indices(10, 0)
    assert spaced_indices(3, 5) == [0, 1, 2]
    assert spaced_indices(100, 4) == [0, 25, 50, 75]


def test_evaluate_run_applies_given_offsets_and_refuses_two_remedies():
    plain = evaluate_run(LEGACY_RUN, split="val", limit=2, device="cpu", progress=False)
    classes = list(plain["per_class"])
    shift = [0.0] * len(classes)
    shift[1] = 100.0  # class 1 everywhere
    moved = evaluate_run(
        LEGACY_RUN, split="val", limit=2, device="cpu", progress=False, class_offsets=shift
    )
    assert plain["class_offsets"] is None
    assert moved["class_offsets"] == dict(zip(classes, shift, strict=True))
    predicted = [c for c, iou in moved["per_class"].items() if iou]
    assert predicted == [classes[1]]
    with pytest.raises(ValueError, match="prior_correction"):
        evaluate_run(
            LEGACY_RUN, split="val", device="cpu", prior_correction=1.0, class_offsets=shift
        )
    with pytest.raises(ValueError, match="one per class"):
        evaluate_run(LEGACY_RUN, split="val", device="cpu", class_offsets=[0.0])


def test_fit_run_offsets_records_what_it_was_fit_on():
    offsets, record = fit_run_offsets(LEGACY_RUN, "run", 3, device="cpu", progress=False)
    assert record["split"] == "train" and record["frames"] == 3
    assert len(record["frame_names"]) == 3 and record["pixels"] > 0
    assert record["miou_after"] >= record["miou_before"]
    assert set(record["per_class_after"]) == set(record["per_class_before"])
    assert offsets.shape == (len(evaluate_run(LEGACY_RUN, limit=1, progress=False)["iou"]),)


def invoke(*args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_cli_eval_fits_offsets_on_the_training_split_and_records_them(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(LEGACY_RUN, run)
    out = tmp_path / "fit.json"
    code, text = invoke("eval", run, "--split", "val", "--limit", "2", "--device", "cpu",
                        "--fit-offsets-on", "run", "--fit-offsets-frames", "2", "--json", out)  # fmt: skip
    assert code == 0, text
    scores = json.loads(out.read_text())
    assert set(scores["class_offsets"]) == set(scores["per_class"])
    fit = scores["class_offsets_fit"]
    assert fit["split"] == "train" and fit["frames"] == 2
    assert fit["miou_after"] >= fit["miou_before"]


@pytest.mark.parametrize(
    "args,message",
    [(["--fit-offsets-on", "run", "--prior-correction", "1"], "--prior-correction 1.0 and "
      "--fit-offsets-on 'run'"),
     (["--fit-offsets-on", "run", "--fit-offsets-frames", "0"], "--fit-offsets-frames"),
     (["--fit-offsets-frames", "5"], "--fit-offsets-frames 5 needs --fit-offsets-on"),
     (["--fit-offsets-on", "nosuchsplit"], "--fit-offsets-on 'nosuchsplit'")],
)  # fmt: skip
def test_cli_eval_refuses_bad_offset_options(args, message):
    code, text = invoke("eval", LEGACY_RUN, "--split", "val", "--device", "cpu", *args)
    assert code == 2 and message in text and "Traceback" not in text
