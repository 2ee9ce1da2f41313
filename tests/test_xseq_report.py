"""``docs/results/xseq_report.py``: the cross-sequence tables, checked against numbers by hand."""

import json
from pathlib import Path

import pytest

from conftest import results_script

GRID = {"arch": "linknet", "encoder": "resnet18", "epochs": 40,
        "class_weights": "median-frequency", "weight_mode": "pixel"}  # fmt: skip


def _cell(
    folder: Path, held: str, method: str, factor: int, seed: int, miou: float,
    *, per_factor: bool = False, gpu: str | None = None,
) -> None:  # fmt: skip
    """One finished cell; ``per_factor`` puts it in run_gpu.sh's ``heldout_<held>/x<f>/`` grid."""
    grid = folder / f"heldout_{held}" / (f"x{factor}" if per_factor else "")
    cell = grid / "cells" / f"{method}_f{factor}_s{seed}"
    cell.mkdir(parents=True)
    result = {"method": method, "factor": factor, "seed": seed, "miou": miou,
              "per_class": {"pole": miou / 10}, "epoch_time_s": 10.0 * seed + factor,
              "machine": {"cpu": "x86_64", "gpu": gpu}}  # fmt: skip
    (cell / "result.json").write_text(json.dumps(result))
    (grid / "grid.json").write_text(json.dumps(GRID))


def test_fold_pooled_and_across_factor_rows_by_hand(tmp_path):
    for method, factor, held, mious in [
        ("nearest", 4, "A", [10, 12]),  # mean 11, std sqrt(2)
        ("soft", 4, "A", [13, 15]),  # +3, variance 2/2 + 2/2 = 2, 2σ 2.83: beyond
        ("nearest", 4, "B", [20, 20]),
        ("soft", 4, "B", [20, 22]),  # +1, variance 0 + 1 = 1, 2σ 2.00: within
        ("nearest", 8, "A", [9, 9]),
        ("soft", 8, "A", [11, 13]),  # mean 12: against nearest x4 of A, +1, 2σ 2.83
    ]:
        for seed, miou in enumerate(mious):
            _cell(tmp_path, held, method, factor, seed, miou)
    _cell(tmp_path, "A", "soft", 4, 2, 100.0)  # nearest has no seed 2: left out of the pair

    text = results_script("xseq_report").report(tmp_path)

    assert (
        "| A | x4 | 11.00 ± 1.41 (2) | 14.00 ± 1.41 (2) | +3.00 | beyond noise (2σ 2.83) |" in text
    )
    assert (
        "| B | x4 | 20.00 ± 0.00 (2) | 21.00 ± 1.41 (2) | +1.00 | within noise (2σ 2.00) |" in text
    )
    # pooled x4: mean of +3 and +1, noise 2 * sqrt(2 + 1) / 2
    assert "| x4 | 2 | +2.00 | beyond noise (2σ 1.73) |" in text
    assert (
        "| A | x8 | 9.00 ± 0.00 (2) | 12.00 ± 1.41 (2) | +3.00 | beyond noise (2σ 2.00) |" in text
    )
    # soft at x8 against nearest at x4 (fold A only: B has no x8); s / epoch = median of seeds
    assert (
        "| A | x4 | 11.00 ± 1.41 (2) | 9.0 | x8 | 12.00 ± 1.41 (2) | 13.0 | +1.00 "
        "| within noise (2σ 2.83) |"
    ) in text
    assert "| x8 | 1 | +1.00 | within noise (2σ 2.83) |" in text
    assert "| A | x4 | s0: +3.00, s1: +3.00 |" in text
    assert "pole IoU" in text and "| A | x4 | 1.10 ± 0.14 (2) | 1.40 ± 0.14 (2) | +0.30 |" in text


def test_folds_with_different_recipes_are_refused(tmp_path):
    _cell(tmp_path, "A", "nearest", 4, 0, 10.0)
    _cell(tmp_path, "B", "nearest", 4, 0, 10.0)
    (tmp_path / "heldout_B" / "grid.json").write_text(json.dumps({**GRID, "arch": "fpn"}))
    with pytest.raises(SystemExit, match=r"differ in.*fpn"):
        results_script("xseq_report").report(tmp_path)


def test_recipe_names_the_variant_a_grid_recorded(tmp_path):
    _cell(tmp_path, "A", "nearest", 4, 0, 10.0)
    (tmp_path / "heldout_A" / "grid.json").write_text(json.dumps({**GRID, "class_weights": None}))
    assert "linknet/resnet18 from scratch, 40 epochs, no class weights." in (
        results_script("xseq_report").report(tmp_path)
    )
    (tmp_path / "heldout_A" / "grid.json").write_text(json.dumps({**GRID, "arch": "fpn"}))
    assert "fpn/resnet18 from scratch, 40 epochs, median-frequency class weights (pixel)." in (
        results_script("xseq_report").report(tmp_path)
    )


def test_overview_marks_differences_beyond_noise_and_pools_only_shared_folds(tmp_path):
    for method, factor, held, mious in [
        ("nearest", 4, "A", [10, 12]),
        ("soft", 4, "A", [13, 15]),  # +3, 2σ 2.83: bold; pole +0.30, 2σ 0.28: bold
        ("nearest", 4, "B", [20, 20]),
        ("soft", 4, "B", [20, 22]),  # +1, 2σ 2.00: plain; pole +0.10, 2σ 0.20: plain
        ("nearest", 8, "A", [9, 9]),
        ("soft", 8, "A", [11, 13]),  # the only x8 fold: no pooled x8 row
    ]:
        for seed, miou in enumerate(mious):
            _cell(tmp_path, held, method, factor, seed, miou)
    _cell(tmp_path, "C", "nearest", 4, 0, 50.0)  # soft has no seed here yet: no row, not pooled

    rows = results_script("xseq_report").overview(tmp_path)

    # the cells carry mIoU and pole only: the other scores' columns stay empty
    assert (
        "| A | x4 | 11.00 ± 1.41 (2) | 14.00 ± 1.41 (2) | **+3.00** |  | **+0.30** |  |  |  |"
        in rows
    )
    assert "| B | x4 | 20.00 ± 0.00 (2) | 21.00 ± 1.41 (2) | +1.00 |  | +0.10 |  |  |  |" in rows
    # pooled x4: mIoU +2.00 against 2σ 1.73, pole +0.20 against 2 * sqrt(0.02 + 0.01) / 2 = 0.17
    assert "| pooled (2 folds) | x4 | | | **+2.00** |  | **+0.20** |  |  |  |" in rows
    assert not any(row.startswith(("| C ", "| pooled (1")) or "| x8 | | |" in row for row in rows)
    assert sum(row.startswith("| A | x8 |") for row in rows) == 1


def test_gpu_grids_one_per_factor_are_read_and_labelled_with_the_card(tmp_path):
    # run_gpu.sh: heldout_A/x1/ (whole frames) and heldout_A/x2/ (crops) are separate grids
    for method, factor, mious in [("nearest", 1, [30, 34]), ("nearest", 2, [31, 33]),
                                  ("soft", 2, [33, 35])]:  # fmt: skip
        for seed, miou in enumerate(mious):
            _cell(tmp_path, "A", method, factor, seed, miou, per_factor=True, gpu="H100")
    script = results_script("xseq_report")

    text = script.report(tmp_path)

    assert "Trained on H100 from the JPEG (quality 95) copy of CamVid" in text
    assert "| A | x2 | 32.00 ± 1.41 (2) | 34.00 ± 1.41 (2) | +2.00 | within noise (2σ 2.83) |" in (
        text
    )
    # soft at x2 against nearest at x1 (whole frames): 34 - 32, 2σ = 2 * sqrt(8 / 2 + 2 / 2)
    assert (
        "| A | x1 | 32.00 ± 2.83 (2) | 6.0 | x2 | 34.00 ± 1.41 (2) | 7.0 | +2.00 "
        "| within noise (2σ 4.47) |"
    ) in text
    _cell(tmp_path, "B", "nearest", 1, 0, 30.0, per_factor=True)  # a CPU cell among GPU ones
    with pytest.raises(SystemExit, match="mixes GPU and CPU cells"):
        script.report(tmp_path)
