"""Run directories and grid folders written by softseg 0.1 still work through the CLI.

``tests/fixtures/legacy_v0_1/`` holds what the previous layout wrote (synthetic data, arch tiny,
factor 4, one epoch): ``run/`` from ``softseg train`` and ``grid/`` from ``softseg compare``.
Everything is copied to ``tmp_path`` first, so the fixtures are never changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import softseg.study.cell
from softseg.cli import app

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_v0_1"

# grid.json key -> compare option, for the settings the compare command takes
COMPARE_OPTIONS = {
    "dataset": "--dataset", "arch": "--arch", "encoder": "--encoder", "epochs": "--epochs",
    "batch_size": "--batch-size", "lr": "--lr", "image_kernel": "--image-kernel",
    "class_weights": "--class-weights", "weight_mode": "--weight-mode",
    "train_split": "--train-split", "eval_split": "--eval-split", "limit_train": "--limit-train",
    "max_pixels": "--max-pixels",
}  # fmt: skip


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(LEGACY, tmp_path / "legacy"))


def invoke(args: list[str]):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"softseg {' '.join(map(str, args))}:\n{result.output}"
    return result


def test_eval_of_a_legacy_run_writes_scores(legacy, tmp_path):
    out = tmp_path / "val.json"
    res = invoke(["eval", legacy / "run", "--split", "val", "--limit", "2", "--device", "cpu",
                  "--json", out])  # fmt: skip
    scores = json.loads(out.read_text())
    assert 0.0 <= scores["miou"] <= 100.0
    assert set(scores["per_class"]) >= {"sky", "pole", "bicyclist"}  # CamVid's classes
    assert scores["split"] == "val" and scores["factor"] == 4.0
    assert "mIoU" in res.output


def test_predict_with_a_legacy_run_writes_masks(legacy, tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for i, size in enumerate([(64, 96), (40, 72)]):
        path = tmp_path / "images" / f"street{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        images.append(path)
    out = tmp_path / "predictions"
    invoke(["predict", legacy / "run", *images, "--out", out, "--device", "cpu"])
    for image in images:
        mask = out / f"{image.stem}_mask.png"
        with Image.open(mask) as m, Image.open(image) as im:
            assert m.size == im.size  # masks at the image's own resolution
        assert (out / f"{image.stem}_overlay.png").is_file()


def _compare_args(grid_dir: Path) -> list[str]:
    """The compare command line that asks for the settings recorded in ``grid.json``."""
    settings = json.loads((grid_dir / "grid.json").read_text())
    cells = [json.loads(p.read_text()) for p in sorted(grid_dir.glob("cells/*/result.json"))]
    args = ["compare", "--out", grid_dir, "--workers", "0", "--device", "cpu",
            "--methods", ",".join(sorted({c["method"] for c in cells})),
            "--factors", ",".join(sorted({f"{c['factor']:g}" for c in cells})),
            "--seeds", ",".join(sorted({str(c["seed"]) for c in cells})),
            "--scale", *map(str, settings["scale"])]  # fmt: skip
    for key, option in COMPARE_OPTIONS.items():
        value = settings[key]
        if value is not None:
            args += [option, str(value)]
        elif key == "class_weights":
            args += [option, "none"]
    return args


def test_compare_into_a_legacy_grid_trains_nothing_and_rewrites_the_tables(legacy, monkeypatch):
    grid_dir = legacy / "grid"
    stored = {p: p.read_bytes() for p in grid_dir.glob("cells/*/result.json")}
    assert len(stored) == 2
    (grid_dir / "summary.md").write_text("stale\n")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(softseg.study.cell, "train", no_training)
    res = invoke(_compare_args(grid_dir))
    summary = (grid_dir / "summary.md").read_text()
    assert summary != "stale\n" and summary in res.output
    assert "| nearest | 0.27 ± n/a (1) |" in summary and "| soft | 0.27 ± n/a (1) |" in summary
    assert "boundary mIoU (%)" in summary  # the legacy cells carry boundary and calibration scores
    assert {p: p.read_bytes() for p in stored} == stored  # results kept as they were
    assert (grid_dir / "labels_and_predictions_x4.png").stat().st_size > 0  # legacy checkpoints
