"""A resumable grid of training runs.

A grid is every combination of label method (``"nearest"``, ``"mode"``, ``"soft"``, ...),
down-sampling factor and seed. :func:`run_grid` gives each combination (a :class:`Cell`) its own
directory ``out_dir/cells/<key>/`` and keeps the cell's scores in ``result.json`` there. A cell
whose ``result.json`` exists is finished and is never run again, so an interrupted or partly failed
grid is resumed by calling :func:`run_grid` again with the same arguments. After every finished
cell the tables of :mod:`.report` are rewritten, so a partial grid already has them.

Every file is written atomically (temporary file in the same directory, then :func:`os.replace`),
so a crash never leaves a truncated ``result.json`` that would later pass for a finished cell.

>>> [c.key for c in grid(["nearest", "soft"], [4], seeds=[0, 1])]
['nearest_f4_s0', 'soft_f4_s0', 'nearest_f4_s1', 'soft_f4_s1']
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text, remove_stale_temps
from .report import write_tables
from .stats import CELL_FIELDS, factor_str

__all__ = [
    "REQUIRED_KEYS",
    "RESULT_FILE",
    "SETTINGS_FILE",
    "Cell",
    "check_settings",
    "grid",
    "load_results",
    "run_grid",
]

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("miou", "per_class", "train_time_s", "epoch_time_s", "peak_memory_mb")
"""What a ``run_cell`` result must contain."""

RESULT_FILE = "result.json"
SETTINGS_FILE = "grid.json"


# --------------------------------------------------------------------------- cells
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
        return f"{_safe_name(self.method)}_f{factor_str(self.factor)}_s{self.seed}"

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


# --------------------------------------------------------------------------- settings
def check_settings(
    out_dir: str | os.PathLike,
    settings: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
    per_cell: Iterable[str] = (),
    *,
    record: bool = True,
    same: Mapping[str, Callable[[Any, Any], bool]] | None = None,
) -> None:
    """Record the settings every cell of ``out_dir`` shares, or check them against the record.

    A study may be run a part at a time; this refuses to mix cells trained with other settings
    (model, schedule, data) into one table. A setting missing from the record (an option added
    after the grid was started) counts as its value in ``defaults``, the behaviour it had then.
    Keys in ``per_cell`` (each cell sets its own) are neither recorded nor compared: records
    written before they were excluded carry placeholder values there.

    Args:
        record: write the settings when there is no record yet; ``False`` only checks, so that a
            call whose cells all fail leaves no record behind (``softseg compare`` records once
            a cell has trained).
        same: per key, when two values count as equal although they differ (e.g. two spellings
            of one dataset directory).

    Raises:
        ValueError: naming each setting that differs from the one on record.
    """
    path = Path(out_dir) / SETTINGS_FILE
    per_cell = set(per_cell)
    settings = _jsonable({k: v for k, v in settings.items() if k not in per_cell})
    if not path.exists():
        if record:
            atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
        return
    implied = {k: v for k, v in _jsonable(dict(defaults or {})).items() if k in settings}
    recorded = implied | {k: v for k, v in _read_json(path).items() if k not in per_cell}
    equal = dict(same or {})
    diffs = [
        f"{k}={settings.get(k)!r} (recorded: {recorded.get(k)!r})"
        for k in sorted(set(settings) | set(recorded))
        if settings.get(k) != recorded.get(k)
        and not (k in equal and equal[k](settings.get(k), recorded.get(k)))
    ]
    if diffs:
        raise ValueError(
            f"{out_dir} holds a grid trained with other settings: {'; '.join(diffs)}. "
            f"Use another --out, or the settings in {path}."
        )


# --------------------------------------------------------------------------- running
def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _check_keys(cells: Sequence[Cell]) -> None:
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.key in seen:
            raise ValueError(
                f"cells {seen[cell.key]} and {cell} share the directory key {cell.key!r}"
            )
        seen[cell.key] = cell


def _run_cell(
    cell: Cell, path: Path, run_cell: Callable[[Cell, Path], Mapping[str, Any]]
) -> dict[str, Any]:
    """Run one cell in ``path``'s directory and store its checked result at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = _check_result(run_cell(cell, path.parent), cell)
    # the cell's own fields win over anything run_cell reported under the same names
    result = {**cell.fields(), **{k: v for k, v in result.items() if k not in CELL_FIELDS}}
    atomic_write_text(path, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


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
    _check_keys(cells)
    out_dir = Path(out_dir)
    paths = {c.key: out_dir / "cells" / c.key / RESULT_FILE for c in cells}
    for directory in (out_dir, *(p.parent for p in paths.values())):
        remove_stale_temps(directory)  # what a kill inside an atomic write left behind
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
            done[cell.key] = _run_cell(cell, paths[cell.key], run_cell)
        except Exception as err:  # noqa: BLE001 - one bad cell must not stop the grid
            reason = f"{type(err).__name__}: {err}"
            logger.error("cell %s failed: %s", cell.key, reason, exc_info=True)
            _say(progress, f"[{i}/{n}] {cell.key}: FAILED ({reason})")
            failed.append((cell, reason))
            continue
        took, miou = time.perf_counter() - start, done[cell.key]["miou"]
        _say(progress, f"[{i}/{n}] {cell.key}: done in {took:.1f} s, mIoU {miou:.2f}")
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
