"""A resumable grid of training runs and its result tables.

A grid is every combination of label method (``"nearest"``, ``"mode"``, ``"soft"``, ...),
down-sampling factor and seed. :func:`run_grid` gives each combination (a :class:`Cell`) its own
directory ``out_dir/cells/<key>/`` and keeps the cell's scores in ``result.json`` there. A cell
whose ``result.json`` exists is finished and is never run again, so an interrupted or partly failed
grid is resumed by calling :func:`run_grid` again with the same arguments.

>>> cells = grid(["nearest", "soft"], [2, 4], seeds=[0, 1, 2])
>>> results = run_grid(cells, "runs/cityscapes", train_one)   # train_one(cell, cell_dir) -> dict
>>> summarize(results)[0]["miou_mean"]

After every finished cell the tables are rewritten (so a partial grid already has them):

* ``results.csv``: one row per cell;
* ``summary.csv``: one row per (method, factor): seed count, mIoU mean and std, per-class means;
* ``summary.md``: the same in Markdown, plus, per factor, whether each method differs from
  ``"nearest"`` by more than the seed noise.

Every file is written atomically (temporary file in the same directory, then :func:`os.replace`),
so a crash never leaves a truncated ``result.json`` that would later pass for a finished cell.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import operator
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

__all__ = [
    "BASELINE",
    "REQUIRED_KEYS",
    "Cell",
    "check_settings",
    "compare_to_baseline",
    "grid",
    "load_results",
    "run_grid",
    "summarize",
    "write_tables",
]

logger = logging.getLogger(__name__)

BASELINE = "nearest"
"""The method every other one is compared against in ``summary.md``."""

REQUIRED_KEYS = ("miou", "per_class", "train_time_s", "epoch_time_s", "peak_memory_mb")
"""What a ``run_cell`` result must contain."""

RESULT_FILE = "result.json"
CELL_FIELDS = ("method", "factor", "seed")
TIMING_FIELDS = ("train_time_s", "epoch_time_s", "peak_memory_mb")

VERDICT_LARGER = "larger than noise"
VERDICT_WITHIN = "within noise"
VERDICT_NA = "n/a"


# --------------------------------------------------------------------------- cells
def _factor_str(factor: float) -> str:
    """``4.0 -> "4"``, ``1.5 -> "1.5"``.

    repr keeps every digit, so distinct factors never share a key (``%g`` would round to 6 digits).
    """
    text = repr(float(factor))
    return text[:-2] if text.endswith(".0") else text


def _safe_name(text: str) -> str:
    """``text`` with everything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: a label method at a down-sampling factor with a seed."""

    method: str
    factor: float
    seed: int

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty string, got {self.method!r}")
        try:
            factor = float(self.factor)
        except (TypeError, ValueError):
            raise ValueError(f"factor must be a number, got {self.factor!r}") from None
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"factor must be a finite positive number, got {self.factor!r}")
        # numpy integers are fine (they have __index__); floats such as 1.5 and bools are not
        if isinstance(self.seed, bool) or not hasattr(type(self.seed), "__index__"):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        # frozen dataclass: normalise through object.__setattr__ so 4 and 4.0 make equal cells
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "seed", operator.index(self.seed))

    @property
    def key(self) -> str:
        """Filesystem-safe id, e.g. ``soft-area_f4_s0``."""
        return f"{_safe_name(self.method)}_f{_factor_str(self.factor)}_s{self.seed}"

    def fields(self) -> dict[str, Any]:
        """``{"method", "factor", "seed"}`` as stored in ``result.json``."""
        return {"method": self.method, "factor": self.factor, "seed": self.seed}


def grid(methods: Iterable[str], factors: Iterable[float], seeds: Iterable[int]) -> list[Cell]:
    """Every (method, factor, seed) cell, ordered by factor, then seed, then method.

    Each argument keeps its own order (so ``methods=["nearest", "soft"]`` runs nearest first at
    each factor and seed); repeated values are dropped. Seeds outside methods: a grid stopped
    part way has every method of the seeds it finished, so they compare on equal terms.
    """
    methods, factors, seeds = list(methods), list(factors), list(seeds)
    cells: dict[str, Cell] = {}
    for factor in factors:
        for seed in seeds:
            for method in methods:
                cell = Cell(method, factor, seed)
                cells.setdefault(cell.key, cell)
    return list(cells.values())


# --------------------------------------------------------------------------- results
def _jsonable(value: Any) -> Any:
    """``value`` with NaN/inf as ``None`` and numpy/torch scalars and arrays as plain Python."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return _jsonable(value.tolist())
    return value  # json.dumps names the type if it cannot be stored


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_result(result: Any, cell: Cell) -> dict[str, Any]:
    """The ``run_cell`` result as a plain dict, or a ``ValueError`` saying what is wrong with it."""
    if not isinstance(result, Mapping):
        kind = type(result).__name__
        raise ValueError(f"run_cell returned {kind} for {cell.key}; expected a dict")
    result = _jsonable(result)
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError(f"result of {cell.key} lacks {missing}; expected all of {REQUIRED_KEYS}")
    miou = result["miou"]
    if not _is_number(miou) or not 0.0 <= miou <= 100.0:
        raise ValueError(f"miou of {cell.key} is {miou!r}; expected a percentage in [0, 100]")
    per_class = result["per_class"]
    if not isinstance(per_class, dict):
        raise ValueError(f"per_class of {cell.key} is {type(per_class).__name__}; expected a dict")
    bad = {k: v for k, v in per_class.items() if v is not None and not _is_number(v)}
    if bad:
        raise ValueError(
            f"per_class of {cell.key} has non-numeric IoUs {bad}; expected numbers or None"
        )
    return result


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}; expected a JSON object")
    return data


def _sort_key(result: Mapping[str, Any]) -> tuple:
    return (float(result["factor"]), str(result["method"]), int(result["seed"]))


def load_results(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished cell's ``result.json`` under ``out_dir/cells``, by factor, method, seed."""
    cells_dir = Path(out_dir) / "cells"
    results = [_read_json(p) for p in sorted(cells_dir.glob(f"*/{RESULT_FILE}"))]
    for result in results:
        missing = [k for k in CELL_FIELDS if k not in result]
        if missing:
            raise ValueError(f"a result.json under {cells_dir} lacks the cell fields {missing}")
    return sorted(results, key=_sort_key)


def _load_finished(cell: Cell, path: Path) -> dict[str, Any] | None:
    """The stored result of ``cell``, or ``None`` if it has none (or an unreadable one)."""
    if not path.exists():
        return None
    try:
        result = _read_json(path)
    except (OSError, ValueError) as err:
        # only a file written outside run_grid can be broken (ours are atomic): run the cell again
        logger.warning("ignoring unreadable %s (%s); %s will be run again", path, err, cell.key)
        return None
    stored = {k: result.get(k) for k in CELL_FIELDS}
    if stored != cell.fields():
        raise ValueError(
            f"{path} belongs to {stored}, not to {cell.fields()}: two method names map to the "
            f"same directory {cell.key!r}; rename one of them"
        )
    return result


SETTINGS_FILE = "grid.json"


def check_settings(
    out_dir: str | os.PathLike,
    settings: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
    per_cell: Iterable[str] = (),
) -> None:
    """Record the settings every cell of ``out_dir`` shares, or check them against the record.

    A study may be run a part at a time; this refuses to mix cells trained with other settings
    (model, schedule, data) into one table. A setting missing from the record (an option added
    after the grid was started) counts as its value in ``defaults``, the behaviour it had then.
    Keys in ``per_cell`` (each cell sets its own) are neither recorded nor compared: records
    written before they were excluded carry placeholder values there.

    Raises:
        ValueError: naming each setting that differs from the one on record.
    """
    path = Path(out_dir) / SETTINGS_FILE
    per_cell = set(per_cell)
    settings = _jsonable({k: v for k, v in settings.items() if k not in per_cell})
    if not path.exists():
        atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
        return
    implied = {k: v for k, v in _jsonable(dict(defaults or {})).items() if k in settings}
    recorded = implied | {k: v for k, v in _read_json(path).items() if k not in per_cell}
    diffs = [
        f"{k}={settings.get(k)!r} (recorded: {recorded.get(k)!r})"
        for k in sorted(set(settings) | set(recorded))
        if settings.get(k) != recorded.get(k)
    ]
    if diffs:
        raise ValueError(
            f"{out_dir} holds a grid trained with other settings: {'; '.join(diffs)}. "
            f"Use another --out, or the settings in {path}."
        )


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def run_grid(
    cells: Sequence[Cell],
    out_dir: str | os.PathLike,
    run_cell: Callable[[Cell, Path], Mapping[str, Any]],
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every unfinished cell, keep its result, and keep the tables up to date.

    The tables cover every finished cell under ``out_dir``, also those of earlier calls with other
    cells: a study can be run a part at a time into one directory.

    Args:
        cells: the grid (see :func:`grid`); their keys must differ.
        out_dir: where ``cells/<key>/result.json`` and the tables go.
        run_cell: trains one cell in the given (existing) directory and returns at least
            :data:`REQUIRED_KEYS` (``miou`` in percent, ``per_class`` name -> IoU percent or
            ``None``, times in seconds, memory in MB); anything else it returns is kept too.
        progress: print a line per cell to stderr.

    Returns:
        The results of all cells in ``cells`` order, each with its cell's method, factor and seed.

    Raises:
        RuntimeError: after every cell had its turn, if any raised (or returned an invalid
            result). Nothing is stored for those, so calling again retries exactly them.
    """
    cells = list(cells)
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.key in seen:
            raise ValueError(
                f"cells {seen[cell.key]} and {cell} share the directory key {cell.key!r}"
            )
        seen[cell.key] = cell
    out_dir = Path(out_dir)
    paths = {c.key: out_dir / "cells" / c.key / RESULT_FILE for c in cells}

    # load everything finished first, so tables written after the first new cell are complete
    done = {c.key: r for c in cells if (r := _load_finished(c, paths[c.key])) is not None}
    failed: list[tuple[Cell, str]] = []
    n = len(cells)
    for i, cell in enumerate(cells, 1):
        if cell.key in done:
            _say(progress, f"[{i}/{n}] {cell.key}: finished earlier, skipped")
            continue
        _say(progress, f"[{i}/{n}] {cell.key}: running")
        start = time.perf_counter()
        try:
            paths[cell.key].parent.mkdir(parents=True, exist_ok=True)
            result = _check_result(run_cell(cell, paths[cell.key].parent), cell)
            # the cell's own fields win over anything run_cell reported under the same names
            result = {**cell.fields(), **{k: v for k, v in result.items() if k not in CELL_FIELDS}}
            text = json.dumps(result, indent=2, allow_nan=False) + "\n"
            atomic_write_text(paths[cell.key], text)
        except Exception as err:  # noqa: BLE001 - one bad cell must not stop the grid
            reason = f"{type(err).__name__}: {err}"
            logger.error("cell %s failed: %s", cell.key, reason, exc_info=True)
            _say(progress, f"[{i}/{n}] {cell.key}: FAILED ({reason})")
            failed.append((cell, reason))
            continue
        done[cell.key] = result
        took = time.perf_counter() - start
        _say(progress, f"[{i}/{n}] {cell.key}: done in {took:.1f} s, mIoU {result['miou']:.2f}")
        write_tables(load_results(out_dir), out_dir)

    # also when nothing ran (everything finished earlier), so the tables always exist
    write_tables(load_results(out_dir), out_dir)
    if failed:
        listing = "; ".join(f"{c.key} ({reason})" for c, reason in failed)
        raise RuntimeError(
            f"{len(failed)} of {n} cells failed: {listing}. Nothing was stored for them; "
            "run the grid again to retry only these."
        )
    return [done[c.key] for c in cells]


# --------------------------------------------------------------------------- statistics
def _mean(values: Iterable[Any]) -> float | None:
    """Mean of the numbers among ``values`` (``None`` skipped); ``None`` if there are none."""
    numbers = [float(v) for v in values if v is not None]
    return statistics.fmean(numbers) if numbers else None


def _class_names(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every class name in the results' ``per_class``, in order of first appearance."""
    names: dict[str, None] = {}
    for result in results:
        for name in result.get("per_class") or {}:
            names.setdefault(name, None)
    return list(names)


def _method_order(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """Methods in order of appearance, the baseline first (tables read against it)."""
    methods = list(dict.fromkeys(str(r["method"]) for r in results))
    return sorted(methods, key=lambda m: m != BASELINE)  # stable: the rest keep their order


def summarize(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, factor), ordered by factor, then method in order of appearance.

    Each row: ``method``, ``factor``, ``n`` (seeds), ``miou_mean``, ``miou_std`` (sample std,
    ``ddof=1``; ``None`` for a single seed), ``per_class`` (name -> mean IoU over the seeds that
    have one, ``None`` if none has), ``train_time_s_mean``, ``epoch_time_s_mean`` and
    ``peak_memory_mb_mean`` (means over the seeds that report them), and
    ``epoch_time_s_median``.
    """
    methods = _method_order(results)
    classes = _class_names(results)
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault((str(result["method"]), float(result["factor"])), []).append(result)
    rows = []
    for method, factor in sorted(groups, key=lambda mf: (mf[1], methods.index(mf[0]))):
        group = groups[(method, factor)]
        mious = [float(r["miou"]) for r in group]
        row: dict[str, Any] = {
            "method": method,
            "factor": factor,
            "n": len(group),
            "miou_mean": statistics.fmean(mious),
            "miou_std": statistics.stdev(mious) if len(mious) > 1 else None,
            "per_class": {
                c: _mean((r.get("per_class") or {}).get(c) for r in group) for c in classes
            },
        }
        for field in TIMING_FIELDS:
            row[f"{field}_mean"] = _mean(r.get(field) for r in group)
        # a cell that shared its machine runs slow; the median over seeds shrugs one off
        epoch_times = [float(r["epoch_time_s"]) for r in group if r.get("epoch_time_s") is not None]
        row["epoch_time_s_median"] = statistics.median(epoch_times) if epoch_times else None
        rows.append(row)
    return rows


def compare_to_baseline(
    rows: Sequence[Mapping[str, Any]], baseline: str = BASELINE
) -> list[dict[str, Any]]:
    """Whether each method's mean mIoU differs from ``baseline``'s by more than the seed noise.

    The threshold is ``2 * sqrt(std_a^2 / n_a + std_b^2 / n_b)``, about a 2-sigma Welch test.
    Returns one dict per (factor, method other than ``baseline``) with ``factor``, ``method``,
    ``diff`` (method minus baseline, ``None`` without a baseline), ``threshold`` (``None`` when
    either side has fewer than 2 seeds) and ``verdict``: ``"larger than noise"``,
    ``"within noise"`` or ``"n/a"``.
    """
    by_key = {(r["method"], float(r["factor"])): r for r in rows}
    out = []
    for row in rows:
        if row["method"] == baseline:
            continue
        factor = float(row["factor"])
        base = by_key.get((baseline, factor))
        item: dict[str, Any] = {"factor": factor, "method": row["method"], "diff": None,
                                "threshold": None, "verdict": VERDICT_NA}  # fmt: skip
        if base is not None:
            item["diff"] = row["miou_mean"] - base["miou_mean"]
            if row["n"] >= 2 and base["n"] >= 2:
                noise = row["miou_std"] ** 2 / row["n"] + base["miou_std"] ** 2 / base["n"]
                item["threshold"] = 2.0 * math.sqrt(noise)
                larger = abs(item["diff"]) > item["threshold"]
                item["verdict"] = VERDICT_LARGER if larger else VERDICT_WITHIN
        out.append(item)
    return out


# --------------------------------------------------------------------------- tables
def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _results_csv(results: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> str:
    header = [*CELL_FIELDS, "miou", *TIMING_FIELDS, *(f"iou_{c}" for c in classes)]
    rows = []
    for r in results:
        per_class = r.get("per_class") or {}
        cell = [r["method"], _factor_str(r["factor"]), r["seed"], r["miou"]]
        timings = [r.get(f) for f in TIMING_FIELDS]
        rows.append([*cell, *timings, *(per_class.get(c) for c in classes)])
    return _csv_text(header, rows)


def _summary_csv(rows: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> str:
    stats = ["n", "miou_mean", "miou_std", *(f"{f}_mean" for f in TIMING_FIELDS)]
    header = ["method", "factor", *stats, *(f"iou_{c}" for c in classes)]
    lines = [[r["method"], _factor_str(r["factor"]), *(r[s] for s in stats),
              *(r["per_class"].get(c) for c in classes)] for r in rows]  # fmt: skip
    return _csv_text(header, lines)


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _miou_cell(row: Mapping[str, Any] | None) -> str:
    """``"mean ± std (n)"``; the std reads ``n/a`` for a single seed."""
    if row is None:
        return "–"
    std = "n/a" if row["miou_std"] is None else _fmt(row["miou_std"])
    return f"{_fmt(row['miou_mean'])} ± {std} ({row['n']})"


def _compute_cell(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "–"
    values = (row.get(k) for k in ("epoch_time_s_mean", "train_time_s_mean", "peak_memory_mb_mean"))
    epoch, total, memory = (None if v is None else float(v) for v in values)
    parts = (
        "–" if epoch is None else f"{epoch:.1f} s",
        "–" if total is None else f"{total / 60:.1f} min",
        "–" if memory is None else f"{memory:.0f} MB",
    )
    return " / ".join(parts)


def _verdict_text(item: Mapping[str, Any]) -> str:
    if item["diff"] is None:
        return f"{item['method']} n/a (no baseline run)"
    if item["threshold"] is None:
        return f"{item['method']} {_fmt(item['diff'], True)} (n/a: fewer than 2 seeds)"
    return (f"{item['method']} {_fmt(item['diff'], True)} "
            f"({item['verdict']}, 2σ = {_fmt(item['threshold'])})")  # fmt: skip


def _summary_md(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], baseline: str) -> str:
    if not rows:
        return "# Results\n\nNo finished cells yet.\n"
    methods = list(dict.fromkeys(r["method"] for r in rows))
    factors = sorted({float(r["factor"]) for r in rows})
    by_key = {(r["method"], float(r["factor"])): r for r in rows}
    lines = ["# Results", "", "## mIoU (%): mean ± std (seeds)", ""]
    lines += _md_table(
        ["method", *(f"factor {_factor_str(f)}" for f in factors)],
        ([m, *(_miou_cell(by_key.get((m, f))) for f in factors)] for m in methods),
    )
    lines += ["", "## Compute per cell: train s/epoch, total train min, peak memory MB", ""]
    lines += _md_table(
        ["method", *(f"factor {_factor_str(f)}" for f in factors)],
        ([m, *(_compute_cell(by_key.get((m, f))) for f in factors)] for m in methods),
    )
    for f in factors:
        present = [m for m in methods if (m, f) in by_key]
        lines += ["", f"## Per-class IoU (%), factor {_factor_str(f)}: mean over seeds", ""]
        lines += _md_table(
            ["class", *present],
            ([c, *(_fmt(by_key[(m, f)]["per_class"].get(c)) for m in present)] for c in classes),
        )
    lines += ["", f"## Against {baseline} (|diff| > 2·sqrt(std_a²/n_a + std_b²/n_b))", ""]
    verdicts = compare_to_baseline(rows, baseline)
    for f in factors:
        items = [_verdict_text(v) for v in verdicts if v["factor"] == f]
        if (baseline, f) not in by_key:
            text = f"n/a (no {baseline} runs)"
        else:
            text = "; ".join(items) if items else "no other methods"
        lines.append(f"- factor {_factor_str(f)} vs {baseline}: {text}")
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
    classes = _class_names(results)
    rows = summarize(results)
    texts = {
        "results.csv": _results_csv(results, classes),
        "summary.csv": _summary_csv(rows, classes),
        "summary.md": _summary_md(rows, classes, baseline),
    }
    return {name: atomic_write_text(out_dir / name, text) for name, text in texts.items()}
