"""Hardening (issue 15): resume, validation of every CLI value, bad data, damaged files, leftovers.

CLI behaviour is checked through ``softseg.cli.app`` (typer's CliRunner), always in ``tmp_path``.
The data is a tiny folder dataset (two classes, 32x48 frames) and the model the builtin ``tiny``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from softseg import atomic
from softseg.cli import app
from softseg.data import CamVid, FolderDataset, load_image
from softseg.train.config import TrainConfig, config_differences, same_path
from softseg.train.loop import train

FAST = ["--arch", "tiny", "--factor", "2", "--batch-size", "2", "--workers", "0"]


def cli(*args) -> tuple[int, str]:
    """Exit code and everything the command printed (stdout and stderr)."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # a traceback is a failure of its own: show it
    return res.exit_code, res.output


def folder_dataset(root: Path, n: int = 4, void: bool = False, suffix: str = ".png") -> Path:
    """Two classes, a bright square on a dark ground; ``void``: every mask pixel is 255."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.json").write_text(json.dumps({"classes": ["ground", "square"]}))
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        mask = torch.zeros(32, 48, dtype=torch.uint8)
        top, left = (int(v) for v in torch.randint(0, 16, (2,), generator=g))
        mask[top : top + 16, left : left + 24] = 1
        image = (mask * 200 + 20).expand(3, -1, -1).permute(1, 2, 0).contiguous()
        Image.fromarray(image.numpy()).save(root / "images" / f"f{i}{suffix}", format="PNG")
        Image.fromarray((mask * 0 + 255 if void else mask).numpy()).save(
            root / "masks" / f"f{i}{suffix}", format="PNG"
        )
    return root


def train_args(out, root, *extra) -> list:
    return ["train", "--out", out, "--dataset", "folder", "--root", root, *FAST,
            "--val-split", "", "--device", "cpu", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A trained one-epoch run and its dataset (``run.parent / "data"``)."""
    base = tmp_path_factory.mktemp("trained")
    data = folder_dataset(base / "data")
    cfg = TrainConfig(
        out=str(base / "run"), dataset="folder", root=str(data), arch="tiny", factor=2,
        batch_size=2, workers=0, epochs=1, val_split=None, device="cpu",
    )  # fmt: skip
    train(cfg, progress=False)
    return base / "run"


# --------------------------------------------------------------------------- 1. resume
def test_resume_accepts_settings_of_where_and_how_fast_and_other_spellings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths below are inside tmp_path
    folder_dataset(tmp_path / "data")
    code, out = cli(*train_args("runs/x", "data", "--epochs", "1"))
    assert code == 0, out
    # the same run: another spelling of out and root, other device, validation and loader settings
    code, out = cli(*train_args("./runs//x", str(tmp_path / "data"), "--epochs", "2", "--resume",
                                "--eval-every", "3", "--limit-val", "1"))  # fmt: skip
    assert code == 0, out
    assert (tmp_path / "runs/x/metrics.jsonl").read_text().count("\n") == 2
    # a moved run directory is the same run too
    (tmp_path / "runs/x").rename(tmp_path / "moved")
    code, out = cli(*train_args("moved", "./data/", "--epochs", "3", "--resume"))
    assert code == 0, out
    log = (tmp_path / "moved" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3]


def test_resume_refusal_names_every_differing_key_with_both_values(run, tmp_path):
    code, out = cli(*train_args(run, run.parent / "data", "--epochs", "2", "--resume",
                                "--lr", "0.5", "--seed", "3", "--amp"))  # fmt: skip
    # amp changes the numerics of every step: compared (and here also refused on the CPU)
    assert code == 2 and "Traceback" not in out
    code, out = cli(*train_args(run, run.parent / "data", "--epochs", "2", "--resume",
                                "--lr", "0.5", "--seed", "3"))  # fmt: skip
    assert code == 2 and "error:" in out
    assert "lr (saved 0.001, now 0.5)" in out and "seed (saved 0, now 3)" in out
    assert "--epochs" in out and "--workers" in out  # and says what may change


def test_config_differences_compare_root_as_the_directory_it_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    saved = TrainConfig(root="data", out="a", workers=2, device="auto", limit_val=3)
    asked = replace(saved, root=str(tmp_path / "data"), out="b", workers=0, device="cpu",
                    eval_every=4, limit_val=None, compile=True, deterministic=True)  # fmt: skip
    assert config_differences(saved, asked) == {}
    assert config_differences(saved, replace(asked, root="other", amp=True)) == {
        "root": ("data", "other"), "amp": (False, True)
    }  # fmt: skip
    assert same_path("data", "./data/") and not same_path("data", None)


def test_a_cell_killed_mid_training_resumes_with_other_device_and_workers(tmp_path):
    data = folder_dataset(tmp_path / "data")
    grid_dir = tmp_path / "grid"
    args = ["compare", "--out", grid_dir, "--dataset", "folder", "--root", data, "--methods",
            "soft", "--factors", "2", "--arch", "tiny", "--epochs", "2", "--batch-size", "2",
            "--workers", "0"]  # fmt: skip
    # what compare's cell had written when it was killed after its first epoch
    cell = TrainConfig(
        out=str(grid_dir / "cells" / "soft_f2_s0" / "run"), dataset="folder", root=str(data),
        arch="tiny", factor=2.0, batch_size=2, workers=0, epochs=2, val_split=None,
        label_kernel=None, device="auto", scale=(0.75, 1.5),
    )  # fmt: skip
    train(cell, progress=False, stop_after_epoch=1)
    code, out = cli(*args, "--device", "cpu")
    assert code == 0, out
    result = json.loads((grid_dir / "cells" / "soft_f2_s0" / "result.json").read_text())
    assert result["epochs"] == 2


# --------------------------------------------------------------------------- 2, 3. predict
def test_predict_and_eval_need_no_training_data(run, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.full((32, 48, 3), 200, np.uint8)).save(image)
    code, out = cli("predict", run, image, "--out", tmp_path / "p", "--device", "cpu")
    assert code == 0, out
    assert Image.open(tmp_path / "p" / "x_mask.png").size == (48, 32)


@pytest.mark.parametrize("hw", [(1, 1), (2, 7), (3, 3), (5, 2)])
def test_images_smaller_than_the_model_stride_still_get_a_prediction(run, tmp_path, hw):
    image = tmp_path / "small.png"
    Image.fromarray(np.full((*hw, 3), 220, np.uint8)).save(image)
    code, out = cli("predict", run, image, "--out", tmp_path / "p", "--device", "cpu")
    assert code == 0, out
    assert Image.open(tmp_path / "p" / "small_mask.png").size == hw[::-1]


def test_two_inputs_with_one_output_name_are_refused(run, tmp_path):
    for name in ("dup.jpg", "dup.png"):
        Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(tmp_path / name)
    code, out = cli("predict", run, tmp_path / "dup.jpg", tmp_path / "dup.png",
                    "--out", tmp_path / "p")  # fmt: skip
    assert code == 2 and "dup_mask.png" in out and "dup.jpg" in out and "dup.png" in out
    assert not (tmp_path / "p" / "dup_mask.png").exists()
    # the same file named twice is one input, not a clash
    code, out = cli("predict", run, tmp_path / "dup.png", tmp_path, "--out", tmp_path / "q")
    assert code == 2  # the folder holds dup.jpg too
    code, out = cli("predict", run, tmp_path / "dup.png", tmp_path / "dup.png",
                    "--out", tmp_path / "q")  # fmt: skip
    assert code == 0 and "wrote 1 masks" in out


# --------------------------------------------------------------------------- 4. bad data
def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path):
    grey = (np.arange(4 * 6, dtype=np.uint16).reshape(4, 6) * 2800).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    image = load_image(tmp_path / "g16.png")
    expected = np.rint(grey * (255 / 65535)).astype(np.uint8)
    assert image.shape == (3, 4, 6) and (image[1].numpy() == expected).all()
    assert 0 < int(image.float().mean()) < 255  # neither clipped white nor black
    Image.fromarray(np.full((4, 6), 0.5, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"f\.tif.*floating-point"):
        load_image(tmp_path / "f.tif")


def test_training_on_labels_that_are_all_void_is_an_error(tmp_path):
    data = folder_dataset(tmp_path / "data", void=True)
    code, out = cli(*train_args(tmp_path / "r", data, "--epochs", "2"))
    assert code == 2 and "no labelled pixel" in out and "Traceback" not in out
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_upper_case_suffixes_are_read(tmp_path):
    data = folder_dataset(tmp_path / "folder", suffix=".PNG")
    assert len(FolderDataset(data)) == 4
    camvid = tmp_path / "camvid"
    for split in ("train", "trainannot"):
        (camvid / split).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(camvid / "train" / f"a{i}.PNG", "PNG")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(camvid / "trainannot" / f"a{i}.png")
    assert [name for _, _, name in CamVid(camvid, "train")] == ["a0", "a1"]


def test_labels_without_an_image_are_named(tmp_path):
    camvid = tmp_path / "camvid"
    for split in ("train", "trainannot"):
        (camvid / split).mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(camvid / "trainannot" / name)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(camvid / "train" / "a.png")
    with pytest.raises(FileNotFoundError, match=r"without an image.*trainannot: b\.png"):
        CamVid(camvid, "train")
    data = folder_dataset(tmp_path / "folder")
    (data / "images" / "f2.png").unlink()
    code, out = cli("retention", "--dataset", "folder", "--root", data, "--factors", "2")
    assert code == 2 and "f2" in out and "without an image" in out


def test_retention_of_a_bad_label_is_an_error_line(tmp_path):
    data = folder_dataset(tmp_path / "folder")
    Image.fromarray(np.full((32, 48), 7, np.uint8)).save(data / "masks" / "f1.png")
    code, out = cli("retention", "--dataset", "folder", "--root", data, "--factors", "2")
    assert code == 2 and "error:" in out and "f1.png" in out and "Traceback" not in out


# --------------------------------------------------------------------------- 5. eval
def test_eval_of_a_split_without_labelled_pixels_reports_absent_scores(run, tmp_path):
    void = folder_dataset(tmp_path / "void", n=2, void=True)
    code, out = cli("eval", run, "--root", void, "--split", "val", "--device", "cpu",
                    "--json", tmp_path / "s.json")  # fmt: skip
    assert code == 0, out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["miou"] is None and scores["per_class"] == {"ground": None, "square": None}
    assert "no labelled pixel" in out


def test_eval_averages_over_the_classes_present(run, tmp_path):
    data = folder_dataset(tmp_path / "ground", n=2)
    for mask in (data / "masks").iterdir():
        Image.fromarray(np.zeros((32, 48), np.uint8)).save(mask)  # class 1 absent
    code, out = cli("eval", run, "--root", data, "--split", "val", "--device", "cpu",
                    "--json", tmp_path / "s.json")  # fmt: skip
    assert code == 0, out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["per_class"]["square"] is None
    assert scores["miou"] == pytest.approx(scores["per_class"]["ground"])


# --------------------------------------------------------------------------- 6. compare
def compare_args(out: Path, root, *extra) -> list:
    return ["compare", "--out", out, "--dataset", "folder", "--root", root, "--methods", "soft",
            "--factors", "2", "--arch", "tiny", "--epochs", "1", "--batch-size", "2",
            "--workers", "0", "--device", "cpu", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "bad,message",
    [(["--eval-split", "val:nosuchprefix"], "nosuchprefix"),
     (["--train-split", "train+"], "bad split"),
     (["--arch", "nosucharch"], "nosucharch"),
     (["--max-pixels", "0"], "--max-pixels")],
)  # fmt: skip
def test_compare_checks_everything_before_training_or_recording(tmp_path, bad, message):
    data = folder_dataset(tmp_path / "data")
    grid_dir = tmp_path / "grid"
    code, out = cli(*compare_args(grid_dir, tmp_path / "typo"))
    assert code == 2 and "typo" in out and "Traceback" not in out
    code, out = cli(*compare_args(grid_dir, data, *bad))
    assert code == 2 and message in out and "Traceback" not in out
    assert not (grid_dir / "grid.json").exists() and not (grid_dir / "cells").exists()
    code, out = cli(*compare_args(grid_dir, data))  # the corrected call is not refused
    assert code == 0, out
    assert json.loads((grid_dir / "grid.json").read_text())["root"] == str(data)


# --------------------------------------------------------------------------- 7. CLI values
@pytest.mark.parametrize(
    "extra,flag",
    [(["--eval-every", "0"], "--eval-every"), (["--factor", "0"], "--factor"),
     (["--batch-size", "0"], "--batch-size"), (["--device", "tpu"], "--device"),
     (["--epochs", "0"], "--epochs"), (["--limit-train", "0"], "--limit-train"),
     (["--limit-val", "0"], "--limit-val"), (["--lr", "-1"], "--lr"),
     (["--scale", "2", "1"], "--scale"), (["--crop", "0x8"], "--crop"),
     (["--workers", "-1"], "--workers")],
)  # fmt: skip
def test_cli_refuses_values_no_run_can_use(tmp_path, extra, flag):
    code, out = cli("train", "--out", tmp_path / "r", "--arch", "tiny", *extra)
    assert code == 2 and f"error: {flag}" in out and "Traceback" not in out
    assert not (tmp_path / "r").exists()


def test_eval_and_compare_refuse_bad_numbers(run, tmp_path):
    for args, flag in ((["--factor", "-2"], "--factor"), (["--limit", "0"], "--limit")):
        code, out = cli("eval", run, "--split", "val", "--device", "cpu", *args)
        assert code == 2 and f"error: {flag}" in out
    code, out = cli("compare", "--out", tmp_path / "g", "--factors", "0")
    assert code == 2 and "factor must be a finite positive number" in out
    assert not (tmp_path / "g").exists()


def test_damaged_checkpoints_give_error_lines(run, tmp_path):
    import shutil

    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    blob = (copy / "checkpoint.pt").read_bytes()
    (copy / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    code, out = cli("eval", copy, "--root", run.parent / "data", "--device", "cpu")
    assert code == 2 and "cannot read the checkpoint" in out and "Traceback" not in out
    code, out = cli(*train_args(copy, run.parent / "data", "--epochs", "2", "--resume"))
    assert code == 2 and "cannot read the checkpoint" in out and "Traceback" not in out


def test_resume_where_there_is_no_run_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    code, out = cli(*train_args(tmp_path / "empty", tmp_path, "--resume"))
    assert code == 2 and "nothing to resume" in out
    assert list((tmp_path / "empty").iterdir()) == []


# --------------------------------------------------------------------------- 9. leftovers
def test_temp_files_of_a_killed_write_are_removed_on_the_next_start(tmp_path):
    data = folder_dataset(tmp_path / "data")
    code, out = cli(*train_args(tmp_path / "r", data, "--epochs", "1"))
    assert code == 0, out
    stale = tmp_path / "r" / ".checkpoint.pt.999999999.0123abcd.tmp"  # no such process
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / "r" / f".metrics.jsonl.{os.getpid()}.89abcdef.tmp"  # a running writer
    live.write_bytes(b"")
    code, out = cli(*train_args(tmp_path / "r", data, "--epochs", "2", "--resume"))
    assert code == 0, out
    assert not stale.exists() and live.exists()


def test_atomic_write_makes_the_rename_durable(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.atomic_write_text(tmp_path / "a.txt", "x")
    assert synced == [False, True]  # the file, then its directory


def test_every_checkpoint_load_is_weights_only_and_mapped_to_the_cpu():
    src = Path(__file__).resolve().parents[1] / "src" / "softseg"
    calls = [
        (path.name, m.group(0))
        for path in src.rglob("*.py")
        for m in re.finditer(r"torch\.load\([^)]*\)", path.read_text())
    ]
    assert calls, "no torch.load found: the pattern is stale"
    for name, call in calls:
        assert "weights_only=True" in call and "map_location" in call, (name, call)


# --------------------------------------------------------------------------- 8. loss targets
def test_a_negative_soft_target_is_reported_as_negative_not_as_non_finite():
    from softseg.train.losses import soft_cross_entropy

    target = torch.full((1, 3, 4, 4), -1 / 3)
    with pytest.raises(ValueError, match=r"class masses in \[0, 1\]; got a value of -0\.333"):
        soft_cross_entropy(torch.zeros(1, 3, 4, 4), target)
    target[:] = 1 / 3  # and a valid one still gives a finite loss
    assert torch.isfinite(soft_cross_entropy(torch.zeros(1, 3, 4, 4), target))
