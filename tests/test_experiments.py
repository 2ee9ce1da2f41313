"""`softseg compare` end to end on a tiny synthetic grid: cells, tables, plots and the figure."""

import json

import pytest
import torch
from typer.testing import CliRunner

from softseg.cli import app
from softseg.data import DatasetInfo, build_dataset
from softseg.study.cell import CELL_CONFIG_FIELDS, crop_for, method_options
from softseg.study.figures import labels_and_predictions_figure
from softseg.study.retention import dataset_label_ceiling


def test_method_options_and_crop():
    assert method_options("soft-area") == {"labels": "soft", "label_kernel": "area"}
    assert method_options("nearest") == {"labels": "nearest", "label_kernel": None}
    assert crop_for((360, 480), 4, 10800) is None  # the whole 90x120 frame fits
    assert crop_for((360, 480), 1, 43200) == (180, 240)  # factor 1 on crops of a factor-2 frame
    # rounded up to the model's divisor, as whole factor-2 frames are padded (180x240 -> 192x256)
    assert crop_for((360, 480), 1, 43200, divisor=32) == (192, 256)


def test_unknown_method_names_the_choices_and_writes_nothing(tmp_path):
    out = tmp_path / "grid"
    res = CliRunner().invoke(app, ["compare", "--out", str(out), "--methods", "nearest,soft-magic"])
    assert res.exit_code == 2
    assert "unknown method 'soft-magic'" in res.output and "soft-<kernel>" in res.output
    assert not out.exists()


def test_compare_grid_writes_tables_plots_and_figure(tmp_path):
    out = tmp_path / "grid"
    args = ["compare", "--out", str(out), "--methods", "nearest,soft", "--factors", "8",
            "--seeds", "0", "--arch", "tiny", "--epochs", "1", "--limit-train", "8",
            "--batch-size", "4", "--workers", "0", "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in ("results.csv", "summary.csv", "summary.md", "miou_vs_factor.png",
                 "class_gains.png", "labels_and_predictions_x8.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "cells" / "soft_f8_s0" / "result.json").read_text())
    recorded = json.loads((out / "grid.json").read_text())  # what the cells share, nothing per cell
    assert recorded["epochs"] == 1 and not set(CELL_CONFIG_FIELDS) & set(recorded)
    assert 0 <= result["miou"] <= 100 and "pole" in result["per_class"]
    assert result["epochs"] == 1 and result["train_time_s"] > 0
    # timings only compare between cells of one machine: each cell says which it ran on
    machine = result["machine"]
    assert machine["cpu_cores"] >= 1 and machine["gpu"] is None
    assert machine["torch"] == torch.__version__ and machine["cpu"]  # Linux: /proc/cpuinfo
    # boundary and calibration scores are kept per cell and summarised per method and factor
    assert 0 <= result["boundary_miou"] <= 100 and result["ece"] >= 0 and result["nll"] > 0
    assert "| method | factor | boundary mIoU (%) | ECE (%) | NLL (nats) |" in res.output
    # a second run finds every cell done and trains nothing
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "soft" in again.output


def test_max_pixels_windows_fit_the_model_divisor(tmp_path):
    # x8 synthetic frames are 32x64 (2048 px); a 1000-pixel window is 22x44, which the tiny
    # model (output stride 4) cannot take: the cell trains on 24x44, as padded whole frames do
    out = tmp_path / "grid"
    args = ["compare", "--out", str(out), "--methods", "soft", "--factors", "8", "--seeds", "0",
            "--arch", "tiny", "--epochs", "1", "--limit-train", "4",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--max-pixels", "1000"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    result = json.loads((out / "cells" / "soft_f8_s0" / "result.json").read_text())
    assert result["crop"] == [24, 44]


def test_figure_skips_factors_without_both_cells(tmp_path):
    val = build_dataset("synthetic", split="val")
    assert labels_and_predictions_figure(tmp_path, val, [4, 8], tmp_path / "f.png") is None
    assert not (tmp_path / "f.png").exists()


def test_compare_refuses_to_mix_settings_in_one_grid(tmp_path):
    out = tmp_path / "grid"
    (out).mkdir()
    (out / "grid.json").write_text('{"epochs": 99}')
    res = CliRunner().invoke(app, ["compare", "--out", str(out), "--epochs", "1"])
    assert res.exit_code == 2 and "epochs=1 (recorded: 99)" in res.output


class _OneFrame:
    """A 32x32 frame: background, a one-pixel vertical line (class 1) and a 16x16 block (class 2)."""

    info = DatasetInfo("toy", ("bg", "line", "block"), ((0, 0, 0), (255, 0, 0), (0, 255, 0)))

    def __len__(self):
        return 1

    def __getitem__(self, i):
        label = torch.zeros(32, 32, dtype=torch.uint8)
        label[:, 13] = 1
        label[8:24, 18:30] = 2
        label[0, :4] = 255
        return torch.zeros(3, 32, 32, dtype=torch.uint8), label, "toy"


def test_label_ceiling_is_exact_at_factor_one_and_loses_the_line_to_soft_argmax():
    frame = _OneFrame()
    at_one = dataset_label_ceiling(frame, 1)
    assert all(s["miou"] == 100.0 for s in at_one.values())
    at_four = dataset_label_ceiling(frame, 4, ("nearest", "soft", "soft-area"))
    # a one-pixel line holds at most a third of any factor-4 footprint: never the argmax of a soft
    # label, and not on the sampled columns (4j + 2) of nearest
    assert all(s["per_class"]["line"] == 0.0 for s in at_four.values())
    assert at_four["soft-area"]["per_class"]["block"] > 90.0
    # class weights move the weighted loss's optimum towards the line: it becomes visible
    weighted = dataset_label_ceiling(frame, 4, ("soft",), class_weights=torch.tensor([1.0, 20, 1]))
    assert weighted["soft"]["per_class"]["line"] > 10.0


def test_label_ceiling_names_an_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'soft-magic'"):
        dataset_label_ceiling(_OneFrame(), 4, ("soft-magic",))
