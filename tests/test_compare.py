"""softseg.study.grid, .stats and .report: cells, the resumable grid, statistics and tables."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from pathlib import Path

import pytest

from softseg import atomic
from softseg.study.grid import Cell, check_settings, grid, load_results, run_grid
from softseg.study.report import write_tables
from softseg.study.stats import EXTRA_SCORES, compare_to_baseline, summarize

CLASSES = ("road", "pole", "sky")


def fake_result(cell: Cell) -> dict:
    """Deterministic scores that differ by method, factor and seed."""
    base = {"nearest": 40.0, "soft": 50.0}.get(cell.method, 45.0)
    miou = base - cell.factor + cell.seed
    return {
        "miou": miou,
        "per_class": {
            "road": miou + 10,
            "pole": None if cell.seed == 0 else miou - 20,
            "sky": miou,
        },  # fmt: skip
        "train_time_s": 10.0 * cell.factor + cell.seed,
        "epoch_time_s": 1.0 * cell.factor,
        "peak_memory_mb": 100.0 + cell.seed,
        "extra": [1, 2],
    }


class Recorder:
    """A ``run_cell`` that counts its calls and fails for the keys in ``fail``."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()

    def __call__(self, cell: Cell, cell_dir: Path) -> dict:
        assert cell_dir.is_dir()
        self.calls.append(cell.key)
        if cell.key in self.fail:
            raise RuntimeError("out of memory")
        return fake_result(cell)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- cells
def test_cell_key_is_filesystem_safe():
    assert Cell("soft-area", 4.0, 0).key == "soft-area_f4_s0"
    assert Cell("nearest", 4, 2).key == "nearest_f4_s2"
    assert Cell("soft", 1.5, 1).key == "soft_f1.5_s1"
    assert Cell("a/b c", 2, 0).key == "a_b_c_f2_s0"
    assert Cell("soft", 4, 0) == Cell("soft", 4.0, 0)


@pytest.mark.parametrize(
    "args, word",
    [
        (("", 2, 0), "method"),
        (("soft", 0, 0), "factor"),
        (("soft", "x", 0), "factor"),
        (("soft", 2, 1.5), "seed"),
        (("soft", float("nan"), 0), "factor"),
    ],  # fmt: skip
)
def test_cell_rejects_bad_fields(args, word):
    with pytest.raises(ValueError, match=word):
        Cell(*args)


def test_grid_order_factor_seed_method():
    cells = grid(["nearest", "soft"], [2, 4], [0, 1])
    assert [c.key for c in cells] == [
        "nearest_f2_s0", "soft_f2_s0", "nearest_f2_s1", "soft_f2_s1",
        "nearest_f4_s0", "soft_f4_s0", "nearest_f4_s1", "soft_f4_s1",
    ]  # fmt: skip
    assert len(grid(["soft", "soft"], [2, 2.0], [0])) == 1


# --------------------------------------------------------------------------- run_grid
def test_run_grid_stores_results_and_skips_finished(tmp_path):
    cells = grid(["nearest", "soft"], [2, 4], [0, 1])
    first = Recorder()
    results = run_grid(cells, tmp_path, first, progress=False)
    assert first.calls == [c.key for c in cells]
    for cell, result in zip(cells, results, strict=True):
        stored = json.loads((tmp_path / "cells" / cell.key / "result.json").read_text())
        assert stored == result
        assert {k: stored[k] for k in ("method", "factor", "seed")} == cell.fields()
        assert stored["miou"] == fake_result(cell)["miou"]
        assert stored["extra"] == [1, 2]
    for name in ("results.csv", "summary.csv", "summary.md"):
        assert (tmp_path / name).stat().st_size > 0

    second = Recorder()
    again = run_grid(cells, tmp_path, second, progress=False)
    assert second.calls == []
    assert again == results

    # a larger grid only runs the new cells
    third = Recorder()
    run_grid(grid(["nearest", "soft"], [2, 4, 8], [0, 1]), tmp_path, third, progress=False)
    assert third.calls == [c.key for c in grid(["nearest", "soft"], [8], [0, 1])]
    assert temp_files(tmp_path) == []


def test_failed_cell_is_reported_and_retried(tmp_path, caplog, capsys):
    cells = grid(["nearest", "soft"], [2], [0, 1])
    broken = Recorder(fail={"soft_f2_s0"})
    with pytest.raises(RuntimeError, match=r"1 of 4 cells failed: soft_f2_s0 \(RuntimeError"):
        run_grid(cells, tmp_path, broken, progress=True)
    assert broken.calls == [c.key for c in cells]  # the others still ran
    assert not (tmp_path / "cells" / "soft_f2_s0" / "result.json").exists()
    assert any("soft_f2_s0" in r.getMessage() for r in caplog.records)
    assert "soft_f2_s0: FAILED (RuntimeError: out of memory)" in capsys.readouterr().err
    # partial tables hold the three finished cells
    assert len(read_csv(tmp_path / "results.csv")) == 3
    assert len(load_results(tmp_path)) == 3

    fixed = Recorder()
    results = run_grid(cells, tmp_path, fixed, progress=False)
    assert fixed.calls == ["soft_f2_s0"]
    assert [r["seed"] for r in results] == [0, 0, 1, 1]
    assert len(read_csv(tmp_path / "results.csv")) == 4


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"miou": 50.0}, "lacks"),
        ("oops", "expected a dict"),
        ({**fake_result(Cell("soft", 2, 0)), "miou": 0.5e3}, r"\[0, 100\]"),
        ({**fake_result(Cell("soft", 2, 0)), "per_class": {"road": "x"}}, "non-numeric"),
    ],  # fmt: skip
)
def test_invalid_result_counts_as_failure(tmp_path, bad, message):
    with pytest.raises(RuntimeError, match=message):
        run_grid([Cell("soft", 2, 0)], tmp_path, lambda c, d: bad, progress=False)
    assert not (tmp_path / "cells" / "soft_f2_s0" / "result.json").exists()


def test_cell_fields_override_and_numpy_values_are_stored(tmp_path):
    np = pytest.importorskip("numpy")

    def run_cell(cell, cell_dir):
        result = fake_result(cell)
        result.update(method="wrong", miou=np.float32(12.5), per_class={"road": float("nan")})
        return result

    (result,) = run_grid([Cell("soft", 2, 3)], tmp_path, run_cell, progress=False)
    fields = (result["method"], result["factor"], result["seed"], result["miou"])
    assert fields == ("soft", 2.0, 3, 12.5)
    assert result["per_class"] == {"road": None}  # NaN is stored as null, JSON stays standard


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="share the directory key"):
        run_grid([Cell("a/b", 2, 0), Cell("a_b", 2, 0)], tmp_path, Recorder(), progress=False)


def test_result_of_another_cell_is_refused(tmp_path):
    run_grid([Cell("a/b", 2, 0)], tmp_path, Recorder(), progress=False)
    with pytest.raises(ValueError, match="rename one"):
        run_grid([Cell("a_b", 2, 0)], tmp_path, Recorder(), progress=False)


def test_unreadable_result_is_run_again(tmp_path):
    cell = Cell("soft", 2, 0)
    path = tmp_path / "cells" / cell.key / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text("{truncated")
    rec = Recorder()
    run_grid([cell], tmp_path, rec, progress=False)
    assert rec.calls == [cell.key]
    assert json.loads(path.read_text())["miou"] == fake_result(cell)["miou"]


# --------------------------------------------------------------------------- atomic writes
def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    atomic.atomic_write_text(path, "old")
    assert path.read_text() == "old"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]  # the temporary file is gone


# --------------------------------------------------------------------------- statistics
def crafted_results() -> list[dict]:
    """nearest 40/42/44, soft 50/52/54 (clearly better), mode 41/43/45 (noise), soft-area 1 seed."""
    out = []
    for method, mious in [("nearest", [40, 42, 44]), ("soft", [50, 52, 54]),
                          ("mode", [41, 43, 45]), ("soft-area", [60])]:  # fmt: skip
        for seed, m in enumerate(mious):
            out.append({"method": method, "factor": 4.0, "seed": seed, "miou": float(m),
                        "per_class": {"road": m + 1.0, "pole": None if seed == 0 else m - 30.0},
                        "train_time_s": 100.0 + seed, "epoch_time_s": 10.0 + seed,
                        "peak_memory_mb": 500.0 + 10 * seed})  # fmt: skip
    return out


def test_summarize_by_hand():
    rows = summarize(crafted_results())
    assert [(r["method"], r["factor"], r["n"]) for r in rows] == [
        ("nearest", 4.0, 3), ("soft", 4.0, 3), ("mode", 4.0, 3), ("soft-area", 4.0, 1)
    ]  # fmt: skip
    nearest, soft, mode, single = rows
    assert nearest["miou_mean"] == pytest.approx(42.0)
    assert nearest["miou_std"] == pytest.approx(2.0)  # sqrt(((-2)^2 + 0 + 2^2) / (3 - 1))
    assert soft["miou_mean"] == pytest.approx(52.0)
    assert single["miou_std"] is None
    assert nearest["per_class"]["road"] == pytest.approx(43.0)
    assert nearest["per_class"]["pole"] == pytest.approx((12.0 + 14.0) / 2)  # seed 0 has no IoU
    assert single["per_class"]["pole"] is None
    assert nearest["epoch_time_s_mean"] == pytest.approx(11.0)
    assert nearest["epoch_time_s_median"] == pytest.approx(11.0)
    slowed = crafted_results()
    slowed[0]["epoch_time_s"] = 40.0  # nearest seed 0 shared its machine
    assert summarize(slowed)[0]["epoch_time_s_median"] == pytest.approx(12.0)  # of 40, 11, 12
    assert summarize(slowed)[0]["epoch_time_s_mean"] == pytest.approx(21.0)
    assert nearest["train_time_s_mean"] == pytest.approx(101.0)
    assert nearest["peak_memory_mb_mean"] == pytest.approx(510.0)


def test_summarize_orders_by_factor_then_baseline_then_method():
    results = [
        {"method": m, "factor": f, "seed": 0, "miou": 1.0, "per_class": {}}
        for f in (8, 2) for m in ("soft", "mode", "nearest")
    ]  # fmt: skip
    assert [(r["factor"], r["method"]) for r in summarize(results)] == [
        (2.0, "nearest"), (2.0, "soft"), (2.0, "mode"),
        (8.0, "nearest"), (8.0, "soft"), (8.0, "mode"),
    ]  # fmt: skip


def test_compare_to_baseline_noise_criterion():
    verdicts = {v["method"]: v for v in compare_to_baseline(summarize(crafted_results()))}
    threshold = 2 * math.sqrt(4 / 3 + 4 / 3)
    assert verdicts["soft"]["diff"] == pytest.approx(10.0)
    assert verdicts["soft"]["threshold"] == pytest.approx(threshold)
    assert verdicts["soft"]["verdict"] == "larger than noise"
    assert verdicts["mode"]["diff"] == pytest.approx(1.0)
    assert verdicts["mode"]["verdict"] == "within noise"
    assert verdicts["soft-area"]["verdict"] == "n/a"
    assert verdicts["soft-area"]["threshold"] is None


# --------------------------------------------------------------------------- tables
def test_tables_contents(tmp_path):
    results = crafted_results()
    paths = write_tables(results, tmp_path)
    assert set(paths) == {"results.csv", "summary.csv", "summary.md"}

    rows = read_csv(tmp_path / "results.csv")
    assert list(rows[0]) == ["method", "factor", "seed", "miou", "boundary_miou", "ece", "nll",
                             "train_time_s", "epoch_time_s", "peak_memory_mb", "iou_road",
                             "iou_pole"]  # fmt: skip
    assert {r["ece"] for r in rows} == {""}  # these cells predate the calibration scores
    assert len(rows) == len(results)
    soft1 = next(r for r in rows if r["method"] == "soft" and r["seed"] == "1")
    assert float(soft1["factor"]) == 4.0
    assert float(soft1["miou"]) == 52.0
    assert float(soft1["iou_road"]) == 53.0
    assert float(soft1["iou_pole"]) == 22.0
    assert float(soft1["epoch_time_s"]) == 11.0
    assert next(r for r in rows if r["method"] == "soft" and r["seed"] == "0")["iou_pole"] == ""

    summary = {r["method"]: r for r in read_csv(tmp_path / "summary.csv")}
    assert list(summary) == ["nearest", "soft", "mode", "soft-area"]
    assert int(summary["nearest"]["n"]) == 3
    assert float(summary["nearest"]["miou_mean"]) == pytest.approx(42.0)
    assert float(summary["nearest"]["miou_std"]) == pytest.approx(2.0)
    assert float(summary["nearest"]["iou_pole"]) == pytest.approx(13.0)
    assert float(summary["mode"]["epoch_time_s_mean"]) == pytest.approx(11.0)
    assert summary["soft-area"]["miou_std"] == ""

    md = (tmp_path / "summary.md").read_text()
    assert "| method | factor 4 |" in md
    assert "| nearest | 42.00 ± 2.00 (3) |" in md
    assert "| soft | 52.00 ± 2.00 (3) |" in md
    assert "| soft-area | 60.00 ± n/a (1) |" in md
    assert "| class | nearest | soft | mode | soft-area |" in md
    assert "| pole | 13.00 | 23.00 | 14.00 | – |" in md
    lines = md.splitlines()
    verdict_line = next(line for line in lines if line.startswith("- factor 4 vs nearest"))
    assert "soft +10.00 (larger than noise, 2σ = 3.27)" in verdict_line
    assert "mode +1.00 (within noise" in verdict_line
    assert "soft-area +18.00 (n/a: fewer than 2 seeds)" in verdict_line
    assert temp_files(tmp_path) == []


def test_tables_with_several_factors_and_missing_baseline(tmp_path):
    results = crafted_results() + [
        {"method": "soft", "factor": 8, "seed": s, "miou": 30.0 + s, "per_class": {},
         "train_time_s": None, "epoch_time_s": 1.0, "peak_memory_mb": None}
        for s in range(2)
    ]  # fmt: skip
    write_tables(results, tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "| method | factor 4 | factor 8 |" in md
    assert "| nearest | 42.00 ± 2.00 (3) | – |" in md
    assert "| soft | 52.00 ± 2.00 (3) | 30.50 ± 0.71 (2) |" in md
    assert "## Per-class IoU (%), factor 8" in md
    compute = md[md.index("## Compute per cell") :]
    assert "| soft | " in compute and " | 1.0 s / – / – |" in compute
    assert "| nearest | " in compute and " | – |" in compute
    assert "- factor 8 vs nearest: n/a (no nearest runs)" in md
    row = next(r for r in read_csv(tmp_path / "summary.csv") if r["factor"] == "8")
    assert row["peak_memory_mb_mean"] == "" and row["iou_road"] == ""
    assert float(row["miou_std"]) == pytest.approx(statistics.stdev([30.0, 31.0]))


# --------------------------------------------------------------------------- boundary and calibration
SCORED = {"nearest": (30.0, 8.0, 0.9), "soft": (36.0, 4.0, 0.6)}  # boundary mIoU, ECE, NLL


def write_fake_grid(out: Path, scored_methods=("soft",)) -> None:
    """``result.json`` of nearest and soft at x4, 3 seeds; only ``scored_methods`` have the newer
    boundary and calibration scores (the others look like cells written before them)."""
    for method in ("nearest", "soft"):
        for seed in range(3):
            result = {"method": method, "factor": 4.0, "seed": seed, "miou": 40.0 + seed,
                      "per_class": {"road": 50.0}, "train_time_s": 10.0, "epoch_time_s": 1.0,
                      "peak_memory_mb": 100.0}  # fmt: skip
            if method in scored_methods:
                boundary, ece, nll = SCORED[method]
                result |= {"boundary_miou": boundary + seed, "ece": ece - seed, "nll": nll,
                           "boundary_per_class": {"road": 20.0}, "boundary_width": 3}  # fmt: skip
            cell_dir = out / "cells" / Cell(method, 4, seed).key
            cell_dir.mkdir(parents=True)
            (cell_dir / "result.json").write_text(json.dumps(result))


def test_summarize_boundary_and_calibration_where_cells_have_them(tmp_path):
    write_fake_grid(tmp_path)
    nearest, soft = summarize(load_results(tmp_path))
    assert soft["boundary_miou_mean"] == pytest.approx(37.0)
    assert soft["boundary_miou_std"] == pytest.approx(1.0)
    assert soft["ece_mean"] == pytest.approx(3.0) and soft["ece_n"] == 3
    assert soft["nll_mean"] == pytest.approx(0.6) and soft["nll_std"] == pytest.approx(0.0)
    for score in EXTRA_SCORES:  # older cells: missing, not zero
        assert (nearest[f"{score}_mean"], nearest[f"{score}_std"], nearest[f"{score}_n"]) == (
            None, None, 0,
        )  # fmt: skip


def test_summarize_mixed_old_and_new_cells_of_one_method():
    results = [{"method": "soft", "factor": 2, "seed": s, "miou": 50.0, "per_class": {}}
               for s in range(3)]  # fmt: skip
    results[1]["ece"] = 5.0  # one seed rerun with a newer softseg
    (row,) = summarize(results)
    assert (row["ece_mean"], row["ece_std"], row["ece_n"]) == (5.0, None, 1)
    assert row["n"] == 3


def test_tables_with_and_without_the_new_scores(tmp_path):
    write_fake_grid(tmp_path)
    write_tables(load_results(tmp_path), tmp_path)
    summary = {r["method"]: r for r in read_csv(tmp_path / "summary.csv")}
    assert float(summary["soft"]["boundary_miou_mean"]) == pytest.approx(37.0)
    assert float(summary["soft"]["ece_std"]) == pytest.approx(1.0)
    assert float(summary["soft"]["nll_mean"]) == pytest.approx(0.6)
    assert [summary["nearest"][f"{s}_{x}"] for s in EXTRA_SCORES for x in ("mean", "std")] == [
        ""
    ] * 6
    cells = read_csv(tmp_path / "results.csv")
    assert {r["nll"] for r in cells if r["method"] == "nearest"} == {""}
    assert {float(r["nll"]) for r in cells if r["method"] == "soft"} == {0.6}
    md = (tmp_path / "summary.md").read_text()
    assert "| method | factor | boundary mIoU (%) | ECE (%) | NLL (nats) |" in md
    assert "| soft | 4 | 37.00 ± 1.00 (3) | 3.00 ± 1.00 (3) | 0.600 ± 0.000 (3) |" in md
    assert "| nearest | 4 | – | – | – |" in md
    assert "–: no cell of the group recorded it" in md


def test_tables_of_a_grid_newer_than_the_new_scores(tmp_path):
    write_fake_grid(tmp_path, scored_methods=("nearest", "soft"))
    write_tables(load_results(tmp_path), tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "| method | factor | boundary mIoU (%) | ECE (%) | NLL (nats) |" in md
    assert "–: no cell" not in md  # nothing missing, nothing to explain


def test_tables_of_a_grid_older_than_the_new_scores(tmp_path):
    write_fake_grid(tmp_path, scored_methods=())
    write_tables(load_results(tmp_path), tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "| nearest | 41.00 ± 1.00 (3) |" in md
    assert "Boundary and calibration" not in md  # no table of dashes only
    row = read_csv(tmp_path / "summary.csv")[0]
    assert row["boundary_miou_mean"] == row["ece_mean"] == row["nll_mean"] == ""


@pytest.mark.parametrize("name", ["camvid", "camvid_pixel_weights"])
def test_committed_grids_still_summarize(tmp_path, name):
    grid_dir = Path(__file__).resolve().parents[1] / "docs" / "results" / name
    results = load_results(grid_dir)
    assert results, f"no cells under {grid_dir}"
    rows = summarize(results)
    assert {r["method"] for r in rows} >= {"nearest", "soft"}
    assert all(r["miou_mean"] > 0 for r in rows)
    # cells from before the calibration metrics summarize with none; newer ones carry theirs
    for r in rows:
        cells = [c for c in results if (c["method"], c["factor"]) == (r["method"], r["factor"])]
        if all(c.get("ece") is None for c in cells):
            assert r["ece_mean"] is None, r
        elif all(c.get("ece") is not None for c in cells):
            assert r["ece_mean"] > 0, r
    write_tables(results, tmp_path)  # into tmp: the committed tables stay as they are
    assert "## mIoU (%)" in (tmp_path / "summary.md").read_text()


def test_empty_tables(tmp_path):
    write_tables([], tmp_path)
    assert read_csv(tmp_path / "results.csv") == []
    assert "No finished cells yet" in (tmp_path / "summary.md").read_text()


def test_load_results_sorted(tmp_path):
    cells = grid(["soft", "nearest"], [4, 2], [1, 0])
    run_grid(cells, tmp_path, Recorder(), progress=False)
    loaded = load_results(tmp_path)
    keys = [(r["factor"], r["method"], r["seed"]) for r in loaded]
    assert keys == sorted(keys)
    assert len(loaded) == len(cells)
    assert load_results(tmp_path / "nowhere") == []


# --------------------------------------------------------------------------- grid settings
def test_check_settings_records_then_refuses_other_settings(tmp_path):
    settings = {"arch": "linknet", "epochs": 20, "scale": (0.75, 1.5)}
    check_settings(tmp_path, settings)
    check_settings(tmp_path, dict(settings))  # the same again (tuples stored as lists) is fine
    with pytest.raises(ValueError, match=r"epochs=10 \(recorded: 20\)"):
        check_settings(tmp_path, {**settings, "epochs": 10})
    assert json.loads((tmp_path / "grid.json").read_text())["epochs"] == 20


def test_check_settings_takes_a_setting_added_later_at_its_default(tmp_path):
    check_settings(tmp_path, {"arch": "linknet"})
    defaults = {"arch": "unet", "weight_mode": "class", "workers": 2}
    check_settings(tmp_path, {"arch": "linknet", "weight_mode": "class"}, defaults=defaults)
    with pytest.raises(ValueError, match=r"weight_mode='pixel' \(recorded: 'class'\)"):
        check_settings(tmp_path, {"arch": "linknet", "weight_mode": "pixel"}, defaults=defaults)


def test_check_settings_neither_records_nor_compares_per_cell_fields(tmp_path):
    check_settings(
        tmp_path, {"arch": "linknet", "factor": 4.0, "seed": 0}, per_cell=("factor", "seed")
    )
    assert json.loads((tmp_path / "grid.json").read_text()) == {"arch": "linknet"}
    # a record written before they were excluded holds placeholders: they do not count
    (tmp_path / "grid.json").write_text('{"arch": "linknet", "factor": 4.0, "labels": "soft"}')
    check_settings(tmp_path, {"arch": "linknet", "factor": 8.0}, per_cell=("factor", "labels"))
    with pytest.raises(ValueError, match=r"arch='unet' \(recorded: 'linknet'\)"):
        check_settings(tmp_path, {"arch": "unet"}, per_cell=("factor", "labels"))


def test_grids_recorded_before_weight_mode_existed_were_class_weighted(tmp_path):
    # the compare CLI's defaults: today's default is pixel, but a grid without the key was not
    from dataclasses import asdict

    from softseg.train.config import TrainConfig

    defaults = asdict(TrainConfig.from_dict({}))
    check_settings(tmp_path, {"arch": "linknet"})
    check_settings(tmp_path, {"arch": "linknet", "weight_mode": "class"}, defaults=defaults)
    with pytest.raises(ValueError, match=r"weight_mode='pixel' \(recorded: 'class'\)"):
        check_settings(tmp_path, {"arch": "linknet", "weight_mode": "pixel"}, defaults=defaults)
