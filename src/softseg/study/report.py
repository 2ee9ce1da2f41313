"""The result tables of a grid: ``results.csv``, ``summary.csv`` and ``summary.md``.

* ``results.csv``: one row per cell (scores, timings, per-class IoU);
* ``summary.csv``: one row per (method, factor): seed count, mIoU, boundary mIoU, ECE and NLL
  mean and std, mean timings, per-class means;
* ``summary.md``: the same in Markdown, plus, per factor, whether each method differs from
  ``"nearest"`` by more than the seed noise.

Missing values (a class without an IoU, a timing or score a cell does not report, such as the
boundary and calibration scores of cells written before softseg computed them) are empty cells in
the CSVs and ``–`` in the Markdown. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from .stats import (
    BASELINE,
    CELL_FIELDS,
    EXTRA_SCORES,
    TIMING_FIELDS,
    class_names,
    compare_to_baseline,
    factor_str,
    summarize,
)

__all__ = ["MISSING", "write_tables"]

MISSING = "–"
"""What ``summary.md`` shows for a value no cell reports."""

# how the extra scores read in summary.md: title and decimals
_SCORE_FORMATS = {"boundary_miou": ("boundary mIoU (%)", 2), "ece": ("ECE (%)", 2),
                  "nll": ("NLL (nats)", 3)}  # fmt: skip


# --------------------------------------------------------------------------- CSV
def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _results_csv(results: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> str:
    measured = ("miou", *EXTRA_SCORES, *TIMING_FIELDS)
    header = [*CELL_FIELDS, *measured, *(f"iou_{c}" for c in classes)]
    rows = []
    for r in results:
        per_class = r.get("per_class") or {}
        cell = [r["method"], factor_str(r["factor"]), r["seed"]]
        rows.append([*cell, *(r.get(f) for f in measured), *(per_class.get(c) for c in classes)])
    return _csv_text(header, rows)


def _summary_csv(rows: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> str:
    scores = [f"{s}_{stat}" for s in EXTRA_SCORES for stat in ("mean", "std")]
    stats = ["n", "miou_mean", "miou_std", *scores, *(f"{f}_mean" for f in TIMING_FIELDS)]
    header = ["method", "factor", *stats, *(f"iou_{c}" for c in classes)]
    lines = [[r["method"], factor_str(r["factor"]), *(r.get(s) for s in stats),
              *(r["per_class"].get(c) for c in classes)] for r in rows]  # fmt: skip
    return _csv_text(header, lines)


# --------------------------------------------------------------------------- Markdown
def _fmt(value: float | None, signed: bool = False, digits: int = 2) -> str:
    if value is None:
        return MISSING
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _mean_std_cell(mean: float | None, std: float | None, n: int, digits: int = 2) -> str:
    """``"mean ± std (n)"``; the std reads ``n/a`` for a single value, all of it ``–`` for none."""
    if mean is None:
        return MISSING
    return (
        f"{_fmt(mean, digits=digits)} ± {'n/a' if std is None else _fmt(std, digits=digits)} ({n})"
    )


def _miou_cell(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return MISSING
    return _mean_std_cell(row["miou_mean"], row["miou_std"], row["n"])


def _compute_cell(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return MISSING
    values = (row.get(k) for k in ("epoch_time_s_mean", "train_time_s_mean", "peak_memory_mb_mean"))
    epoch, total, memory = (None if v is None else float(v) for v in values)
    parts = (
        MISSING if epoch is None else f"{epoch:.1f} s",
        MISSING if total is None else f"{total / 60:.1f} min",
        MISSING if memory is None else f"{memory:.0f} MB",
    )
    return " / ".join(parts)


def _verdict_text(item: Mapping[str, Any]) -> str:
    if item["diff"] is None:
        return f"{item['method']} n/a (no baseline run)"
    if item["threshold"] is None:
        return f"{item['method']} {_fmt(item['diff'], True)} (n/a: fewer than 2 seeds)"
    return (f"{item['method']} {_fmt(item['diff'], True)} "
            f"({item['verdict']}, 2σ = {_fmt(item['threshold'])})")  # fmt: skip


def _by_factor_table(
    rows: Sequence[Mapping[str, Any]],
    cell: Callable[[Mapping[str, Any] | None], str],
    methods: Sequence[str],
    factors: Sequence[float],
) -> list[str]:
    """A table with a row per method and a column per factor, each entry ``cell(row or None)``."""
    by_key = {(r["method"], float(r["factor"])): r for r in rows}
    return _md_table(
        ["method", *(f"factor {factor_str(f)}" for f in factors)],
        ([m, *(cell(by_key.get((m, f))) for f in factors)] for m in methods),
    )


def _scores_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Boundary mIoU, ECE and NLL per (method, factor); nothing when no cell reports any."""
    if not any(r.get(f"{s}_n") for r in rows for s in EXTRA_SCORES):
        return []
    titles = [title for title, _ in _SCORE_FORMATS.values()]
    lines = ["", "## Boundary and calibration: mean ± std (seeds)", ""]
    lines += _md_table(
        ["method", "factor", *titles],
        ([r["method"], factor_str(r["factor"]),
          *(_mean_std_cell(r.get(f"{s}_mean"), r.get(f"{s}_std"), r.get(f"{s}_n", 0), d)
            for s, (_, d) in _SCORE_FORMATS.items())] for r in rows),
    )  # fmt: skip
    if any(not r.get(f"{s}_n") for r in rows for s in EXTRA_SCORES):
        lines += ["", f"{MISSING}: no cell of the group recorded it (cells trained before softseg "
                      "scored boundaries and calibration record mIoU only)."]  # fmt: skip
    return lines


def _verdict_lines(
    rows: Sequence[Mapping[str, Any]], factors: Sequence[float], baseline: str
) -> list[str]:
    present = {(r["method"], float(r["factor"])) for r in rows}
    verdicts = compare_to_baseline(rows, baseline)
    lines = ["", f"## Against {baseline} (|diff| > 2·sqrt(std_a²/n_a + std_b²/n_b))", ""]
    for f in factors:
        items = [_verdict_text(v) for v in verdicts if v["factor"] == f]
        if (baseline, f) not in present:
            text = f"n/a (no {baseline} runs)"
        else:
            text = "; ".join(items) if items else "no other methods"
        lines.append(f"- factor {factor_str(f)} vs {baseline}: {text}")
    return lines


def _summary_md(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], baseline: str) -> str:
    if not rows:
        return "# Results\n\nNo finished cells yet.\n"
    methods = list(dict.fromkeys(r["method"] for r in rows))
    factors = sorted({float(r["factor"]) for r in rows})
    lines = ["# Results", "", "## mIoU (%): mean ± std (seeds)", ""]
    lines += _by_factor_table(rows, _miou_cell, methods, factors)
    lines += _scores_section(rows)
    lines += ["", "## Compute per cell: train s/epoch, total train min, peak memory MB", ""]
    lines += _by_factor_table(rows, _compute_cell, methods, factors)
    by_key = {(r["method"], float(r["factor"])): r for r in rows}
    for f in factors:
        present = [m for m in methods if (m, f) in by_key]
        lines += ["", f"## Per-class IoU (%), factor {factor_str(f)}: mean over seeds", ""]
        lines += _md_table(
            ["class", *present],
            ([c, *(_fmt(by_key[(m, f)]["per_class"].get(c)) for m in present)] for c in classes),
        )
    lines += _verdict_lines(rows, factors, baseline)
    return "\n".join(lines) + "\n"


def write_tables(
    results: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    baseline: str = BASELINE,
) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.csv`` and ``summary.md`` into ``out_dir`` (atomically).

    Per-class IoUs become ``iou_<class>`` columns; missing values are empty cells in the CSVs and
    ``–`` in the Markdown. Returns ``{file name: path}``.
    """
    out_dir = Path(out_dir)
    classes = class_names(results)
    rows = summarize(results)
    texts = {
        "results.csv": _results_csv(results, classes),
        "summary.csv": _summary_csv(rows, classes),
        "summary.md": _summary_md(rows, classes, baseline),
    }
    return {name: atomic_write_text(out_dir / name, text) for name, text in texts.items()}
