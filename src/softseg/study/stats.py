"""Statistics over a grid's cells: per (method, factor) summaries and noise verdicts against a baseline.

A cell's result is a dict with at least ``method``, ``factor``, ``seed``, ``miou`` and ``per_class``;
the timing fields and the newer scores (:data:`EXTRA_SCORES`: boundary mIoU, ECE, NLL) are optional,
so results written before those existed summarise too, with ``None`` where nothing reports them.

>>> rows = summarize([
...     {"method": "nearest", "factor": 4, "seed": s, "miou": 40.0 + s, "per_class": {}}
...     for s in (0, 1, 2)
... ])
>>> rows[0]["miou_mean"], rows[0]["miou_std"], rows[0]["ece_mean"]
(41.0, 1.0, None)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "BASELINE",
    "CELL_FIELDS",
    "EXTRA_SCORES",
    "TIMING_FIELDS",
    "class_names",
    "compare_to_baseline",
    "factor_str",
    "summarize",
]

BASELINE = "nearest"
"""The method every other one is compared against in ``summary.md``."""

CELL_FIELDS = ("method", "factor", "seed")
TIMING_FIELDS = ("train_time_s", "epoch_time_s", "peak_memory_mb")
EXTRA_SCORES = ("boundary_miou", "ece", "nll")
"""Scores summarised as mean and std like mIoU where cells report them (cells from before
softseg scored boundaries and calibration lack them): boundary mIoU (%), ECE (%), NLL (nats)."""

VERDICT_LARGER = "larger than noise"
VERDICT_WITHIN = "within noise"
VERDICT_NA = "n/a"


def factor_str(factor: float) -> str:
    """``4.0 -> "4"``, ``1.5 -> "1.5"``: a factor in cell keys and tables.

    repr keeps every digit, so distinct factors never share a key (``%g`` would round to 6 digits).

    >>> factor_str(4.0), factor_str(1.5)
    ('4', '1.5')
    """
    text = repr(float(factor))
    return text[:-2] if text.endswith(".0") else text


def _numbers(values: Iterable[Any]) -> list[float]:
    """The values that are not ``None``, as floats."""
    return [float(v) for v in values if v is not None]


def _mean(values: Iterable[Any]) -> float | None:
    """Mean of the numbers among ``values`` (``None`` skipped); ``None`` if there are none."""
    numbers = _numbers(values)
    return statistics.fmean(numbers) if numbers else None


def _mean_std_n(values: Iterable[Any]) -> tuple[float | None, float | None, int]:
    """Mean, sample std (``ddof=1``; ``None`` below 2 values) and count of the non-``None`` values."""
    numbers = _numbers(values)
    mean = statistics.fmean(numbers) if numbers else None
    std = statistics.stdev(numbers) if len(numbers) > 1 else None
    return mean, std, len(numbers)


def class_names(results: Iterable[Mapping[str, Any]]) -> list[str]:
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


def _summary_row(
    method: str, factor: float, group: Sequence[Mapping[str, Any]], classes: Sequence[str]
) -> dict[str, Any]:
    """The summary of one (method, factor) group of cells; see :func:`summarize`."""
    mean, std, n = _mean_std_n(r["miou"] for r in group)
    row: dict[str, Any] = {
        "method": method,
        "factor": factor,
        "n": n,
        "miou_mean": mean,
        "miou_std": std,
        "per_class": {c: _mean((r.get("per_class") or {}).get(c) for r in group) for c in classes},
    }
    for score in EXTRA_SCORES:
        values = (r.get(score) for r in group)
        row[f"{score}_mean"], row[f"{score}_std"], row[f"{score}_n"] = _mean_std_n(values)
    for field in TIMING_FIELDS:
        row[f"{field}_mean"] = _mean(r.get(field) for r in group)
    # a cell that shared its machine runs slow; the median over seeds shrugs one off
    epoch_times = _numbers(r.get("epoch_time_s") for r in group)
    row["epoch_time_s_median"] = statistics.median(epoch_times) if epoch_times else None
    return row


def summarize(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, factor), ordered by factor, then method in order of appearance.

    Each row: ``method``, ``factor``, ``n`` (seeds), ``miou_mean``, ``miou_std`` (sample std,
    ``ddof=1``; ``None`` for a single seed), ``per_class`` (name -> mean IoU over the seeds that
    have one, ``None`` if none has); for each score ``s`` of :data:`EXTRA_SCORES`, ``s_mean``,
    ``s_std`` and ``s_n`` over the seeds that report it (``None``, ``None``, 0 when none does);
    ``train_time_s_mean``, ``epoch_time_s_mean`` and ``peak_memory_mb_mean`` (means over the
    seeds that report them), and ``epoch_time_s_median``.
    """
    methods = _method_order(results)
    classes = class_names(results)
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault((str(result["method"]), float(result["factor"])), []).append(result)
    order = sorted(groups, key=lambda mf: (mf[1], methods.index(mf[0])))
    return [_summary_row(m, f, groups[(m, f)], classes) for m, f in order]


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
