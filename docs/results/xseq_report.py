"""Tables of the cross-sequence CamVid folds (issue 16) from the cells' result.json files.

    .venv/bin/python docs/results/xseq_report.py [docs/results/camvid_xseq]

Each fold ``heldout_<SEQ>`` trained on the two other sequences and scored every frame of SEQ
(`docs/results/run_xseq.sh`). Prints Markdown and writes it to ``<folder>/summary.md``:

- per fold and factor: mIoU of nearest and soft labels (mean ± std over seeds), their difference
  and whether it exceeds the seed noise, 2·sqrt(s_a²/n_a + s_b²/n_b);
- pooled over the folds (each fold weighs the same): the mean of the per-fold differences, with
  the noise of that mean, 2·sqrt(sum_f var_f) / n_folds; only folds that have both methods count;
- the same pairs of numbers for boundary mIoU (trimap, 3 px), pole and sign IoU, ECE and NLL.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
from pathlib import Path

from softseg.atomic import atomic_write_text
from softseg.study.grid import load_results
from softseg.study.report import write_tables

METHODS = ("nearest", "soft")
# (key in result.json or a per-class name, label, higher is better)
SCORES = (
    ("miou", "mIoU", True),
    ("boundary_miou", "boundary mIoU", True),
    ("pole", "pole IoU", True),
    ("sign", "sign IoU", True),
    ("ece", "ECE %", False),
    ("nll", "NLL", False),
)


def grids(folder: Path) -> list[Path]:
    """Every grid directory of the folds: ``heldout_<SEQ>/`` itself (run_xseq.sh), or one per
    factor, ``heldout_<SEQ>/x<f>/`` (run_gpu.sh: whole frames at x1 and crops at x2 record
    different settings, so they cannot share one grid)."""
    found = [*folder.glob("heldout_*/grid.json"), *folder.glob("heldout_*/x*/grid.json")]
    return sorted(p.parent for p in found)


def load(folder: Path) -> dict[tuple[str, float, str], list[dict]]:
    """``{(held-out sequence, factor, method): [result, ...]}`` sorted by seed."""
    cells: dict[tuple[str, float, str], list[dict]] = {}
    for grid in grids(folder):
        held = grid.relative_to(folder).parts[0].removeprefix("heldout_")
        for path in sorted(grid.glob("cells/*/result.json")):
            r = json.loads(path.read_text())
            cells.setdefault((held, float(r["factor"]), r["method"]), []).append(r)
    for rs in cells.values():
        rs.sort(key=lambda r: r["seed"])
    return cells


def value(result: dict, key: str) -> float | None:
    if key in result:
        return result[key]
    return (result.get("per_class") or {}).get(key)


def stats(results: list[dict], key: str) -> tuple[float, float, int] | None:
    """(mean, std, n) of a score over seeds; std 0 with one seed."""
    xs = [v for r in results if (v := value(r, key)) is not None]
    if not xs:
        return None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), len(xs)


def verdict(diff: float, noise: float | None) -> str:
    if noise is None:
        return "no noise estimate (one seed)"
    return ("beyond noise" if abs(diff) > noise else "within noise") + f" (2σ {noise:.2f})"


def fmt(s: tuple[float, float, int] | None) -> str:
    if s is None:
        return "—"
    mean, std, n = s
    return f"{mean:.2f} ± {std:.2f} ({n})" if n > 1 else f"{mean:.2f} (1)"


def paired(cells, held: str, factor: float) -> list[list[dict]]:
    """Each method's results of the seeds that every method has finished in this fold (a seed
    still running for one method must not shift the other's mean)."""
    runs = [cells.get((held, factor, m), []) for m in METHODS]
    common = set.intersection(*({r["seed"] for r in rs} for rs in runs))
    return [[r for r in rs if r["seed"] in common] for rs in runs]


def difference(a, b) -> tuple[float, float | None, str]:
    """b - a of two (mean, std, n), the variance of that difference (None without two seeds on
    each side) and its verdict."""
    diff = b[0] - a[0]
    var = a[1] ** 2 / a[2] + b[1] ** 2 / b[2] if min(a[2], b[2]) > 1 else None
    return diff, var, verdict(diff, 2 * math.sqrt(var) if var is not None else None)


def folds(cells) -> list[tuple[str, float]]:
    """Every (held-out sequence, factor) that has a cell, in table order (by factor, then fold)."""
    return sorted({(h, f) for h, f, _ in cells}, key=lambda k: (k[1], k[0]))


def fold_rows(cells, key: str) -> tuple[list[str], dict[float, list[tuple[float, float | None]]]]:
    """Markdown rows per (fold, factor), and per factor the (difference, variance) of each fold."""
    rows, per_factor = [], {}
    for held, factor in folds(cells):
        a, b = (stats(rs, key) for rs in paired(cells, held, factor))
        if a is None or b is None:
            rows.append(f"| {held} | x{factor:g} | {fmt(a)} | {fmt(b)} | | |")
            continue
        diff, var, said = difference(a, b)
        rows.append(f"| {held} | x{factor:g} | {fmt(a)} | {fmt(b)} | {diff:+.2f} | {said} |")
        per_factor.setdefault(factor, []).append((diff, var))
    return rows, per_factor


def epoch_seconds(results: list[dict]) -> str:
    times = [r["epoch_time_s"] for r in results if r.get("epoch_time_s")]
    return f"{statistics.median(times):.1f}" if times else "—"


def across_factor_rows(cells) -> tuple[list[str], dict[float, list[tuple[float, float | None]]]]:
    """Soft labels at a coarser factor against nearest at the next finer one, per fold: does the
    cheaper soft model score what the dearer nearest one does on new scenes? Independent runs,
    so every finished seed counts on each side."""
    rows, per_pair = [], {}
    factors = sorted({f for _, f, _ in cells})
    for fine, coarse in itertools.pairwise(factors):
        for held in sorted({h for h, _, _ in cells}):
            near, soft = (
                cells.get((held, fine, "nearest"), []),
                cells.get((held, coarse, "soft"), []),
            )
            a, b = stats(near, "miou"), stats(soft, "miou")
            if a is None or b is None:
                continue
            diff, var, said = difference(a, b)
            rows.append(
                f"| {held} | x{fine:g} | {fmt(a)} | {epoch_seconds(near)} | x{coarse:g} | "
                f"{fmt(b)} | {epoch_seconds(soft)} | {diff:+.2f} | {said} |"
            )
            per_pair.setdefault(coarse, []).append((diff, var))
    return rows, per_pair


ACROSS_HEAD = (
    "| held-out sequence | nearest at | mIoU | s / epoch | soft at | mIoU | s / epoch | "
    "soft - nearest | verdict |",
    "|---|---|---|---|---|---|---|---|---|",
)


def pooled_rows(per_factor: dict[float, list[tuple[float, float | None]]]) -> list[str]:
    """One row per factor: the mean of the folds' differences and the noise of that mean."""
    rows = []
    for factor, diffs in sorted(per_factor.items()):
        diff, noise = pool(diffs)
        rows.append(f"| x{factor:g} | {len(diffs)} | {diff:+.2f} | {verdict(diff, noise)} |")
    return rows


def pool(diffs: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    """The mean of the folds' (difference, variance) pairs and 2σ of that mean (None when a fold
    has no noise estimate)."""
    diff = statistics.mean(d for d, _ in diffs)
    variances = [v for _, v in diffs]
    if any(v is None for v in variances):
        return diff, None
    return diff, 2 * math.sqrt(sum(variances)) / len(diffs)


def seed_rows(cells) -> list[str]:
    """Soft minus nearest mIoU for each (fold, factor, seed) that has both."""
    rows = []
    for held, factor in folds(cells):
        near = {r["seed"]: r["miou"] for r in cells.get((held, factor, "nearest"), [])}
        soft = {r["seed"]: r["miou"] for r in cells.get((held, factor, "soft"), [])}
        diffs = [f"s{s}: {soft[s] - near[s]:+.2f}" for s in sorted(near.keys() & soft.keys())]
        if diffs:
            rows.append(f"| {held} | x{factor:g} | {', '.join(diffs)} |")
    return rows


def recipe(folder: Path) -> str:
    """The recipe the folds share, from their grid.json files (a variant says what it varies)."""
    settings = [json.loads((g / "grid.json").read_text()) for g in grids(folder)]
    keys = ("arch", "encoder", "epochs", "class_weights", "weight_mode")
    found = {tuple(g.get(k) for k in keys) for g in settings}
    if len(found) != 1:
        raise SystemExit(f"folds under {folder} differ in {keys}: {sorted(map(str, found))}")
    arch, encoder, epochs, weights, mode = found.pop()
    # the CLI turns `--class-weights none` into null before a grid records it
    weighting = "no class weights" if weights is None else f"{weights} class weights ({mode})"
    return f"{arch}/{encoder} from scratch, {epochs} epochs, {weighting}"


def made_by(folder: Path, shown: str | None = None) -> str:
    """Where the cells ran and the command that makes them (naming the folder as ``shown``): GPU
    cells come from run_gpu.sh on a JPEG copy of CamVid and never share a table with CPU cells."""
    shown = shown or str(folder)
    cards = {(r.get("machine") or {}).get("gpu") for rs in load(folder).values() for r in rs}
    if cards - {None}:
        if None in cards:
            raise SystemExit(f"{folder} mixes GPU and CPU cells; keep them in separate folders")
        return (
            f"Trained on {', '.join(sorted(cards))} from the JPEG (quality 95) copy of CamVid "
            f"(`docs/results/pack_camvid.py`), by `HELDOUT=<sequence> GPU_OUT={shown} bash "
            "docs/results/run_gpu.sh`; the CPU tables' numbers come from the PNG frames"
        )
    return (
        f"Made by `OUT={shown} bash docs/results/run_xseq.sh` (with the variant's ARCH / "
        "CLASS_WEIGHTS)"
    )


def overview(folder: Path) -> list[str]:
    """A one-table digest of a folder's folds: both methods' mIoU, then soft - nearest for every
    score, in bold where it exceeds the seed noise; pooled rows per factor after the folds."""
    cells = load(folder)
    head = " | ".join(label for _, label, _ in SCORES)
    out = [
        f"| held-out | factor | nearest mIoU | soft mIoU | soft - nearest: {head} |",
        "|---|---|---|---|" + "---:|" * len(SCORES),
    ]
    pooled: dict[float, dict[str, list[tuple[float, float | None]]]] = {}
    for held, factor in folds(cells):
        pairs = {key: [stats(rs, key) for rs in paired(cells, held, factor)] for key, *_ in SCORES}
        if None in pairs["miou"]:
            continue  # one method has no finished seed in this fold yet
        marks = []
        for key, *_ in SCORES:
            if None in pairs[key]:
                marks.append("")  # an older cell without this score
                continue
            diff, var, _ = difference(*pairs[key])
            pooled.setdefault(factor, {}).setdefault(key, []).append((diff, var))
            marks.append(_marked(diff, 2 * math.sqrt(var) if var is not None else None))
        near, soft = (fmt(s) for s in pairs["miou"])
        out.append(f"| {held} | x{factor:g} | {near} | {soft} | {' | '.join(marks)} |")
    for factor, per_key in sorted(pooled.items()):
        n = len(per_key["miou"])
        if n < 2:
            continue  # one fold's row already says it
        # a score some folds lack is not pooled over the others: it would mix fold sets
        marks = [_marked(*pool(per_key[key])) if len(per_key.get(key, [])) == n else ""
                 for key, *_ in SCORES]  # fmt: skip
        out.append(f"| pooled ({n} folds) | x{factor:g} | | | {' | '.join(marks)} |")
    return out


def _marked(diff: float, noise: float | None) -> str:
    text = f"{diff:+.2f}"
    return f"**{text}**" if noise is not None and abs(diff) > noise else text


def report(folder: Path) -> str:
    cells = load(folder)
    if not cells:
        raise SystemExit(f"no result.json under {folder}/heldout_*/cells/: run run_xseq.sh first")
    out = [
        "# CamVid cross-sequence folds: soft against nearest labels",
        "",
        "Each fold trains on two of CamVid's three driving sequences (train+val frames) and "
        f"scores every frame of the third at 360x480. Recipe: {recipe(folder)}. {made_by(folder)}; "
        f"this page by `.venv/bin/python docs/results/xseq_report.py {folder}`. Cells: mean ± std "
        "over seeds (number of seeds); only seeds finished for both methods enter a row.",
    ]
    for key, label, higher in SCORES:
        rows, per_factor = fold_rows(cells, key)
        better = "higher" if higher else "lower"
        out += [
            "",
            f"## {label} ({better} is better)",
            "",
            "| held-out sequence | factor | nearest | soft | soft - nearest | verdict |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
        if per_factor:
            out += [
                "",
                "Pooled over folds (each fold weighs the same):",
                "",
                "| factor | folds | soft - nearest | verdict |",
                "|---|---|---|---|",
                *pooled_rows(per_factor),
            ]
    rows, per_pair = across_factor_rows(cells)
    if rows:
        out += [
            "",
            "## Soft labels at a coarser factor against nearest at the finer one (mIoU)",
            "",
            "Is a soft-label model trained at the coarser factor as good on new scenes as a "
            "nearest-label one at the finer factor? s / epoch: median over seeds of the training "
            "time per epoch (cells ran in different sessions, some beside other work: a rough "
            "guide to cost only).",
            "",
            *ACROSS_HEAD,
            *rows,
            "",
            "Pooled over folds (each fold weighs the same; the factor is the soft one's):",
            "",
            "| factor | folds | soft - nearest | verdict |",
            "|---|---|---|---|",
            *pooled_rows(per_pair),
        ]
    out += [
        "",
        "## mIoU difference per seed",
        "",
        "| held-out sequence | factor | soft - nearest |",
        "|---|---|---|",
        *seed_rows(cells),
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/camvid_xseq")
    # each fold's own tables too, with this code (a grid run by an older frozen copy rewrites
    # them without the newer columns)
    for grid in grids(folder):
        if (grid / "cells").is_dir():
            write_tables(load_results(grid), grid)
    text = report(folder)
    atomic_write_text(folder / "summary.md", text)
    print(text)
