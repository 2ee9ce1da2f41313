"""Write docs/results.md from the study's stored results (docs/results/camvid/).

    .venv/bin/python docs/results/make_report.py

Everything numeric comes from ``cells/*/result.json``: this script regenerates the tables and the
two summary plots from them (as ``softseg compare`` does after its cells), then writes the page
with the set-up, the commands and the status. The labels-and-predictions figure needs the trained
checkpoints, so only ``softseg compare`` draws it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

# a sibling script: its directory is on sys.path
from xseq_report import ACROSS_HEAD, across_factor_rows, load, made_by, overview, recipe

from softseg.atomic import atomic_write_text
from softseg.study.grid import load_results
from softseg.study.plots import plot_class_gains, plot_miou_vs_compute, plot_miou_vs_factor
from softseg.study.report import write_tables
from softseg.study.stats import compare_to_baseline, summarize

HERE = Path(__file__).resolve().parent
GRID = HERE / "camvid"
PIXEL_GRID = HERE / "camvid_pixel_weights"
WHOLE_GRID = HERE / "camvid_fullframe"
ROTATION_GRID = HERE / "camvid_rotation"
# cross-sequence folds with one thing changed: folder -> the run_xseq.sh variable that changes it
GPU_FOLDS = HERE / "camvid_gpu"  # run_gpu.sh's folds (JPEG copy), never mixed with the CPU cells
XSEQ_VARIANTS = {"camvid_xseq_noweights": "CLASS_WEIGHTS=none", "camvid_xseq_fpn": "ARCH=fpn"}
# hand-written analysis that this page carries verbatim (the numbers in them come from
# xseq_report.py and softseg eval; edit them there, not in results.md)
SECTIONS = HERE / "sections"
# where the study grid ran (its cells predate result.json's `machine`); not this machine's
STUDY_MACHINE, STUDY_TORCH = "x86_64, AMD EPYC, 2 cores, CPU only", "2.14.1+cu130"
WHOLE_SCORES = (("boundary_miou", 2), ("ece", 2), ("nll", 3))  # summarize keys, decimals
REPRODUCED = HERE / "reproduced"  # result.json of cells rerun from a clean clone, named by cell
OUT = HERE.parent / "results.md"
METHODS = ("nearest", "mode", "soft", "soft-area")
PLANNED = {8.0: 3, 4.0: 3, 2.0: 3, 1.0: 1}  # factor -> seeds

INTRO = """# Evidence on CamVid: soft labels against nearest and majority labels

Does down-sampling the label with the image's own filter (soft labels) train better models than
the usual nearest-neighbour or majority (mode) label down-sampling, at the same resolution and
the same compute? One model and one schedule for every cell; only the labels differ.

## Set-up

- Data: CamVid (SegNet layout, `../shared/data/camvid`), 367 `train` frames, scored on the 101
  `val` frames at the full 360x480 label resolution (logits up-sampled), 11 classes, void ignored.
- Factors 8, 4, 2 (45x60, 90x120, 180x240 whole frames, padded with void up to multiples of the
  encoder's stride of 32) with seeds 0, 1, 2; factor 1 (native 360x480) trains on random 192x256
  crops, the window a factor-2 frame trains in, with seed 0.
- Methods: `nearest`, `mode` (majority of the footprint), `soft` (bilinear + antialias, the
  image's own operator), `soft-area` (box filter). Images are always bilinear + antialias.
- Model and schedule, the same for every cell: LinkNet with a ResNet-18 encoder from scratch (no
  pretrained weights), AdamW lr 2e-3, poly schedule, 40 epochs, batch 8, weight decay 1e-4, random
  scale 0.75-1.5 + crop + flip + colour jitter, soft cross-entropy with median-frequency class
  weights computed from the full-resolution training labels, applied per class inside soft labels
  (`--weight-mode class`; see "Class weights and soft labels" below for why `softseg` now defaults
  to `pixel`, and for that variant's numbers). The settings are recorded in
  `docs/results/camvid/grid.json`; `softseg compare` refuses to add cells with other settings.
- Hardware: the study's cells ran on {hardware}, torch {torch} (as this page recorded while they
  ran). Times are per cell on that machine; other work ran beside it at times, so read them as
  rough. Sections added later ran on 2-core CPU machines that are not always the same CPU (the
  rotation cells on an Intel Xeon): their times compare only within a section, and cells finished
  since 2026-11-26 record their machine in `result.json` (`machine`). Every number on this page is
  from a CPU. A GPU table, if one is made, comes from a JPEG copy of CamVid that fits the 64 MiB a
  GPU lease may carry (`docs/results/run_gpu.sh`) and stays apart from these.

## Commands

```bash
make test                              # builds .venv
bash docs/results/run_study.sh         # the whole grid, resumable: finished cells are skipped
.venv/bin/python docs/results/make_report.py   # this page from docs/results/camvid*/
.venv/bin/python docs/results/label_ceiling.py  # the label-ceiling table (a few minutes)
bash docs/results/run_weight_mode.sh   # the class-weighting investigation (x8, x4)
# one cell from a clean clone, e.g. soft labels at factor 8, seed 0, into a fresh directory:
.venv/bin/softseg compare --dataset camvid --root ../shared/data/camvid --methods soft \\
  --factors 8 --seeds 0 --arch linknet --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \\
  --class-weights median-frequency --weight-mode class --max-pixels 43200 --workers 1 \\
  --device cpu --out /tmp/check
```
"""

FINER_TITLE = "Against nearest at twice the resolution (median train time per epoch)"
THIN = ("pole", "sign", "fence", "pedestrian", "bicyclist")
CEILING_INTRO = """## Label ceiling

What each label method lets a perfect model score: the `val` labels made at the factor the way
training labels are (whole frames) and scored at full resolution the way predictions are (bilinear
up-sampling, argmax), without a model. With median-frequency weights a label is first re-weighted
to `w_c t_c / sum_k w_k t_k`, the optimum of the weighted loss the study trains with (one-hot
labels do not change; `--weight-mode pixel` leaves the optimum at the label, so its ceiling is the
unweighted one). mIoU %, from `.venv/bin/python docs/results/label_ceiling.py`:
"""

WEIGHT_MODE_INTRO = """## Class weights and soft labels

The label ceiling shows the study's class weighting costing soft labels most of their advantage:
weighted by class, a soft label's optimum moves to `w_c t_c / sum_k w_k t_k`, so a pixel that is
10% pole (median-frequency weight 4.8) and 90% tree (0.42) is best predicted as pole. One-hot
labels are not moved. `--weight-mode pixel` weighs each pixel by the mean class weight of its
label instead and keeps the optimum at the soft label; for one-hot labels it is the same loss.
The study's recipe with that one change (`bash docs/results/run_weight_mode.sh`; mIoU %,
mean ± std (seeds)):
"""


WHOLE_FRAME_INTRO = """## Whole frames at x1 against shrunk training (issue 16)

The study's factor 1 is not a full-resolution baseline: it trains on 192x256 crops of the 360x480
frames (`--max-pixels 43200`), which cut context, and scores below factor 2 for every method.
These cells train on whole frames (padded to 384x480) at x1 with the pixel-weighting recipe
(`bash docs/results/run_fullframe.sh`: LinkNet/ResNet-18 from scratch, 40 epochs, median-frequency
weights per pixel, train -> val, so in-sequence like the study). At x1 soft and nearest labels
differ only where the random scale (0.75-1.5) resamples a frame. Below them, the shrunk cells of
the pixel-weighting recipe against whole-frame nearest, with the median time per epoch of each
where it trained: the paper's claim is accuracy at a fraction of the compute. The shrunk cells
trained on the study's AMD EPYC, the whole-frame cells on the machine their `result.json` names,
so their seconds compare only roughly; `benchmarks/bench_train_cost.py` measures the cost of each
factor side by side on one machine. mIoU %, mean ± std (seeds):
"""


ROTATION_INTRO = """## Rotation augmentation (issue 13)

Does warping labels coherently change the soft-vs-nearest gap? `bash docs/results/run_rotation.sh`
trains the pixel-weighting recipe at x4 (train -> val, in-sequence) with a random rotation of up
to 10 degrees warped with the crop as one operator: soft labels through the image's bilinear warp
(supersampled by the shrink factor, at most 4x per axis, and averaged, as the image), nearest
labels through nearest neighbour. Three seeds per method, against the same recipe without rotation (soft: the
pixel-weighting cells; nearest: the study's, the same loss for one-hot labels). mIoU %, mean ±
std (seeds); the other scores are of the rotated cells (the cells without rotation predate them):
"""


def main() -> None:
    results = load_results(GRID)
    write_tables(results, GRID)
    rows = summarize(results)
    if rows:
        plot_miou_vs_factor(rows, GRID / "miou_vs_factor.png")
        plot_miou_vs_compute(rows, GRID / "miou_vs_compute.png")
    if {"soft", "nearest"} <= {r["method"] for r in results}:
        plot_class_gains(rows, GRID / "class_gains.png")
    done = {(r["method"], float(r["factor"]), int(r["seed"])) for r in results}
    planned = [(m, f, s) for f, n in PLANNED.items() for s in range(n) for m in METHODS]
    missing = [c for c in planned if c not in done]
    hours = sum(float(r.get("train_time_s") or 0.0) for r in results) / 3600
    per_factor = ", ".join(
        f"x{f:g}: {sum(c[1] == f for c in planned if c in done)}/{sum(c[1] == f for c in planned)}"
        for f in PLANNED
    )
    status = [
        "## Status",
        "",
        f"{len(done)} of {len(planned)} planned cells finished ({per_factor}); "
        f"{hours:.1f} h of training in all." + ("" if missing else " The grid is complete."),
    ]
    summary = (GRID / "summary.md").read_text() if (GRID / "summary.md").exists() else ""
    body = "\n".join(
        "#" + line if line.startswith("## ") else line
        for line in summary.splitlines()
        if not line.startswith("# Results")
    )
    figures = [
        ("mIoU against factor (mean and std over seeds)", "miou_vs_factor.png"),
        ("mIoU against training time per epoch (the same 2 CPU cores for every cell; points "
         "labelled by factor): which labels buy accuracy most cheaply", "miou_vs_compute.png"),
        ("Per-class IoU gain of soft over nearest", "class_gains.png"),
    ] + [
        (f"One val frame: nearest and soft labels at {p.stem.split('_', 3)[-1].replace('_', ', ')} "
         "and the full-resolution predictions of the models trained on them (seed 0)", p.name)
        for p in sorted(GRID.glob("labels_and_predictions_*.png"))
    ]  # fmt: skip
    plots = ["## Plots", ""] + [
        f"{title}:\n\n![{title}](results/camvid/{name})\n"
        for title, name in figures
        if (GRID / name).exists()
    ]
    text = INTRO.format(hardware=STUDY_MACHINE, torch=STUDY_TORCH)
    head, setup = text.split("## Set-up", 1)  # the reading note goes before the set-up
    text = head + (SECTIONS / "preamble.md").read_text().rstrip() + "\n\n## Set-up" + setup
    finer = "\n".join(_against_finer(rows, rows, "### " + FINER_TITLE))
    text += "\n" + "\n".join(status) + "\n\n## Tables\n" + body + "\n" + finer + "\n\n"
    text += "\n".join(plots)
    text += "\n" + _reproduction_section(results, rows)
    text += "\n" + _ceiling_section() + "\n" + _weight_mode_section(rows)
    pixel = load_results(PIXEL_GRID) if PIXEL_GRID.exists() else []
    pixel_rows = summarize(pixel) if pixel else []
    later = [_whole_frame_section(pixel_rows, rows), (SECTIONS / "xseq.md").read_text(),
             _xseq_variants_section(), _gpu_section(), _rotation_section(pixel_rows, rows)]  # fmt: skip
    text = text.rstrip() + "".join("\n\n" + part.rstrip() for part in later if part)
    atomic_write_text(OUT, text.rstrip() + "\n")
    print(f"wrote {OUT} ({len(done)} cells)")


def _gpu_section() -> str:
    """The folds trained on a GPU from the JPEG copy of CamVid: a table of their own."""
    cells = load(GPU_FOLDS)
    if not cells:
        return ""
    path = f"docs/results/{GPU_FOLDS.name}"
    across, _ = across_factor_rows(cells)
    out = ["## Cross-sequence folds on one GPU, whole frames at x1", "",
           f"Recipe: {recipe(GPU_FOLDS)}. {made_by(GPU_FOLDS, path)} (full tables: `{path}/summary.md`, "
           f"rewritten by `.venv/bin/python docs/results/xseq_report.py {path}`). Not comparable "
           "cell for cell with the CPU tables (JPEG frames, another card's arithmetic); compare "
           "within this table. Soft against nearest at the same factor, as above:", "",
           *overview(GPU_FOLDS), "",
           "Soft labels at a coarser factor against nearest at the finer one. s / epoch: median "
           "training time per epoch on the card, three cells side by side, so bound by the data "
           "loaders as much as by the GPU: a rough guide to cost only.", "",
           *ACROSS_HEAD, *across]  # fmt: skip
    return "\n".join(out)


def _xseq_variants_section() -> str:
    """One digest table per variant of the cross-sequence folds that has finished cells."""
    out = ["## Cross-sequence variants: without class weights, a second decoder", "",
           "The folds above with one setting changed, three seeds per fold as they finish (a fold "
           "appears once both methods have a seed). Each table: mIoU of both methods (mean ± std, "
           "seeds), then soft - nearest for every score, **bold** where it exceeds the seed noise "
           "2·sqrt(s_a²/n_a + s_b²/n_b); pooled rows weigh each fold the same. ECE in points, "
           "lower is better, as is NLL. Boundary mIoU: trimap within 3 px of label edges."]  # fmt: skip
    found = False
    for name, setting in XSEQ_VARIANTS.items():
        folder = HERE / name
        if not any(folder.glob("heldout_*/cells/*/result.json")):
            continue
        found = True
        path = f"docs/results/{name}"
        out += ["", f"### {recipe(folder)}", "",
                f"`HELDOUT=<sequence> FACTORS=<4 or 8> {setting} OUT={path} bash "
                f"docs/results/run_xseq.sh` (resumable), then `.venv/bin/python "
                f"docs/results/xseq_report.py {path}` (full tables: `{path}/summary.md`):", "",
                *overview(folder)]  # fmt: skip
    return "\n".join(out) if found else ""


def _reproduction_section(results: list[dict], rows: list[dict]) -> str:
    """Cells rerun from a clean clone (``reproduced/<cell>.json``) against the study's."""
    files = sorted(REPRODUCED.glob("*.json")) if REPRODUCED.exists() else []
    if not files:
        return ""
    study = {(r["method"], float(r["factor"]), int(r["seed"])): r for r in results}
    noise = {(r["method"], float(r["factor"])): r["miou_std"] for r in rows}
    lines = ["## Reproduction from a clean clone", "",
             "Cells rerun with the command above in a fresh `git clone` (its own `.venv`):", "",
             "| cell | study mIoU | rerun mIoU | difference | seed std of the cell's method |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for path in files:
        rerun = json.loads(path.read_text())
        key = (rerun["method"], float(rerun["factor"]), int(rerun["seed"]))
        if key not in study:
            continue
        a, b = float(study[key]["miou"]), float(rerun["miou"])
        std = noise.get(key[:2])
        lines.append(f"| {path.stem} | {a:.4f} | {b:.4f} | {b - a:+.4f} | "
                     + ("–" if std is None else f"{std:.2f}") + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _ceiling_section() -> str:
    """The label-ceiling tables of ``label_ceiling.py`` (empty until it has run)."""
    path = GRID / "label_ceiling.csv"
    if not path.exists():
        return ""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    scores = {(float(r["factor"]), r["method"], r["class_weights"]): r for r in rows}
    factors = sorted({k[0] for k in scores}, reverse=True)
    weightings = list(dict.fromkeys(k[2] for k in scores))
    lines = [CEILING_INTRO, "| factor | class weights | " + " | ".join(METHODS) + " |",
             "|---|---|" + "---:|" * len(METHODS)]  # fmt: skip
    for factor in factors:
        for w in weightings:
            cells = [scores[(factor, m, w)]["miou"] for m in METHODS]
            lines.append(f"| x{factor:g} | {w} | " + " | ".join(cells) + " |")
    lines += ["", f"IoU of the thin and small classes at x{factors[0]:g}:", "",
              "| method | class weights | " + " | ".join(THIN) + " |",
              "|---|---|" + "---:|" * len(THIN)]  # fmt: skip
    for w in weightings:
        for m in METHODS:
            row = scores[(factors[0], m, w)]
            lines.append(f"| {m} | {w} | " + " | ".join(row[c] for c in THIN) + " |")
    return "\n".join(lines) + "\n"


def _weight_mode_section(study_rows: list[dict]) -> str:
    """The cells of ``run_weight_mode.sh`` beside the study's (empty until one exists)."""
    results = load_results(PIXEL_GRID) if PIXEL_GRID.exists() else []
    if not results:
        return ""
    write_tables(results, PIXEL_GRID)
    rows = summarize(results)
    factors = sorted({float(r["factor"]) for r in rows}, reverse=True)
    study = {(float(r["factor"]), r["method"]): r for r in study_rows}
    pixel = {(float(r["factor"]), r["method"]): r for r in rows}
    lines = [WEIGHT_MODE_INTRO,
             "| factor | method | class weighting (the study) | pixel weighting |",
             "|---|---|---:|---:|"]  # fmt: skip
    for factor in factors:
        for method in ("nearest", "soft", "soft-area"):
            cells = [_mean_std(study.get((factor, method))), _mean_std(pixel.get((factor, method)))]
            if method == "nearest" and (factor, method) not in pixel:
                cells[1] = "not rerun (one-hot: the same loss)"
            lines.append(f"| x{factor:g} | {method} | " + " | ".join(cells) + " |")
    # one-hot labels: both weight modes are the same loss, so where this grid has no nearest cells
    # the study's are its baseline (the factors where it has them show the two agree exactly)
    nearest = [pixel.get((f, "nearest")) or study.get((f, "nearest")) for f in factors]
    nearest = [r for r in nearest if r is not None]
    soft_rows = [r for r in rows if r["method"] != "nearest"]
    lines += ["", "Against nearest at the same factor (2σ = twice the standard error):", ""]
    for v in compare_to_baseline(soft_rows + nearest):
        if v["diff"] is not None:
            lines.append(f"- x{v['factor']:g} {v['method']}: {_versus(v)}")
    lines += _against_finer(soft_rows, study_rows, FINER_TITLE + ":")
    same = _same_nearest_cells(results, load_results(GRID))
    if same:
        lines += ["", f"Nearest cells whose mIoU equals the study's to the last digit: {same}."]
    # not class_gains.png: softseg compare redraws that from this grid's own nearest cells (x8 only)
    gains = PIXEL_GRID / "class_gains_all_factors.png"
    plot_class_gains(soft_rows + nearest, gains)
    title = "Per-class IoU gain of pixel-weighted soft labels over nearest"
    lines += ["", f"{title}:", "", f"![{title}](results/{PIXEL_GRID.name}/{gains.name})"]
    lines += ["", "Per-class IoU of these cells: `docs/results/camvid_pixel_weights/summary.md`."]
    return "\n".join(lines) + "\n"


def _against_finer(rows: list[dict], study_rows: list[dict], heading: str) -> list[str]:
    """The paper's point: labels at a factor against the study's nearest at twice the resolution.

    ``rows`` are ``summarize`` rows of the methods to pair (nearest's own rows are skipped); each
    line gives the difference, its noise verdict and both median train times per epoch; the
    lines come under ``heading`` (none at all without a pair).
    """
    nearest = {float(r["factor"]): r for r in study_rows if r["method"] == "nearest"}

    def name(f: float) -> str:  # the study's factor 1 trains on crops: say so where it is paired
        return "x1 nearest (192x256 crops)" if f == 2 else f"x{f / 2:g} nearest"

    lines = _against_nearest(rows, lambda f: nearest.get(f / 2), name)
    return ["", heading, "", *lines] if lines else []


def _against_nearest(rows: list[dict], baseline_for, name_for) -> list[str]:
    """One line per non-nearest row against ``baseline_for(factor)`` (a nearest ``summarize`` row
    or None), named ``name_for(factor)``: difference, noise verdict, median train s per epoch."""
    rows = [r for r in rows if r["method"] != "nearest"]
    # each baseline relabelled with its paired rows' factor, so that the same test pairs them
    bases = {f: baseline_for(f) for f in {float(r["factor"]) for r in rows}}
    bases = [{**b, "factor": f} for f, b in bases.items() if b is not None]
    times = {(float(r["factor"]), r["method"]): r["epoch_time_s_median"] for r in rows + bases}
    lines = []
    for v in compare_to_baseline(rows + bases):
        if v["diff"] is not None:
            f = v["factor"]
            lines.append(
                f"- x{f:g} {v['method']} against {name_for(f)}: {_versus(v)}; "
                f"{_seconds(times[(f, v['method'])])} against {_seconds(times[(f, 'nearest')])} "
                "per epoch"
            )
    return lines


def _seconds(t: float | None) -> str:
    return "–" if t is None else f"{t:.1f} s"


def _whole_frame_section(pixel_rows: list[dict], study_rows: list[dict]) -> str:
    """Whole-frame x1 cells (``run_fullframe.sh``) and the shrunk cells against their nearest."""
    results = load_results(WHOLE_GRID) if WHOLE_GRID.exists() else []
    if not results:
        return ""
    write_tables(results, WHOLE_GRID)
    rows = summarize(results)
    lines = [WHOLE_FRAME_INTRO, "| method | mIoU | boundary mIoU | ECE % | NLL | s / epoch | "
             "train min |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['method']} x{r['factor']:g} | {_mean_std(r)} | "
            + " | ".join(_fmt_mean(r.get(f"{k}_mean"), d) for k, d in WHOLE_SCORES)
            + f" | {_seconds(r['epoch_time_s_median'])} | "
            + _fmt_mean(_div(r.get("train_time_s_mean"), 60), 1)
            + " |"
        )
    near = next((r for r in rows if r["method"] == "nearest"), None)
    if near is not None:
        # shrunk training of the pixel-weighting recipe, and the study's nearest cells (one-hot:
        # the same loss under either weighting), against nearest on whole frames
        shrunk = [r for r in pixel_rows if float(r["factor"]) > 1] + [
            {**r, "method": "nearest (shrunk)"} for r in study_rows
            if r["method"] == "nearest" and float(r["factor"]) > 1
        ]  # fmt: skip
        lines += ["", "Against nearest on whole frames at x1, with the time each takes:", ""]
        paired = sorted(shrunk + rows, key=lambda r: float(r["factor"]))
        lines += _against_nearest(paired, lambda f: near, lambda f: "whole-frame x1 nearest")
    lines += ["", f"Per-class IoU: `docs/results/{WHOLE_GRID.name}/summary.md`."]
    return "\n".join(lines) + "\n"


def _rotation_section(pixel_rows: list[dict], study_rows: list[dict]) -> str:
    """Issue 13: the x4 cells trained with rotation (``run_rotation.sh``) against the same
    recipe without it, and whether rotation changes the soft-vs-nearest gap."""
    results = load_results(ROTATION_GRID) if ROTATION_GRID.exists() else []
    lines = [ROTATION_INTRO]
    if not results:
        return "\n".join([*lines, "", "Not run yet."]) + "\n"
    write_tables(results, ROTATION_GRID)
    rotated = {r["method"]: r for r in summarize(results) if float(r["factor"]) == 4}
    # without rotation: pixel-weighted soft cells; nearest from the study (one-hot: same loss)
    plain = {"soft": _row(pixel_rows, "soft", 4), "nearest": _row(study_rows, "nearest", 4)}
    lines += ["| labels | without rotation | with rotation | boundary mIoU | ECE % | NLL | "
              "s / epoch |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for m in ("nearest", "soft"):
        r = rotated.get(m)
        scores = [_fmt_mean(r and r.get(f"{k}_mean"), d) for k, d in WHOLE_SCORES]
        time = _seconds(r and r["epoch_time_s_median"])
        lines.append(f"| {m} | {_mean_std(plain.get(m))} | {_mean_std(r)} | "
                     + " | ".join(scores) + f" | {time} |")  # fmt: skip
    gaps = [_gap(rows.get("soft"), rows.get("nearest")) for rows in (plain, rotated)]
    if None not in gaps:
        (g0, v0), (g1, v1) = gaps
        noise = 2 * (v0 + v1) ** 0.5
        lines += ["", f"Soft - nearest: {g0:+.2f} without rotation (2σ {2 * v0**0.5:.2f}), "
                  f"{g1:+.2f} with it (2σ {2 * v1**0.5:.2f}); rotation changes the gap by "
                  f"{g1 - g0:+.2f}, 2σ {noise:.2f}: "
                  + ("larger than noise." if abs(g1 - g0) > noise else "within noise.")]  # fmt: skip
    lines += ["", f"Per-class IoU: `docs/results/{ROTATION_GRID.name}/summary.md`."]
    notes = SECTIONS / "rotation.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def _row(rows: list[dict], method: str, factor: float) -> dict | None:
    return next((r for r in rows if r["method"] == method and float(r["factor"]) == factor), None)


def _gap(soft: dict | None, nearest: dict | None) -> tuple[float, float] | None:
    """Mean mIoU of soft minus nearest and the variance of that difference, by the same test as
    every other verdict here (None without two seeds on each side)."""
    if soft is None or nearest is None:
        return None
    (v,) = compare_to_baseline([soft, nearest])
    return None if v["threshold"] is None else (v["diff"], (v["threshold"] / 2) ** 2)


def _fmt_mean(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _div(x: float | None, d: float) -> float | None:
    return None if x is None else x / d


def _versus(v: dict) -> str:
    """One ``compare_to_baseline`` verdict: difference, noise threshold, verdict."""
    if v["threshold"] is None:
        return f"{v['diff']:+.2f} (one seed on a side: no noise estimate)"
    return f"{v['diff']:+.2f}, 2σ {v['threshold']:.2f}: {v['verdict']}"


def _mean_std(row: dict | None) -> str:
    if row is None:
        return "–"
    std = "" if row["miou_std"] is None else f" ± {row['miou_std']:.2f}"
    return f"{row['miou_mean']:.2f}{std} ({row['n']})"


def _same_nearest_cells(pixel: list[dict], study: list[dict]) -> str:
    """Which nearest cells of the two grids agree exactly (one-hot targets: the same loss)."""
    by_cell = {(r["factor"], r["seed"]): r["miou"] for r in study if r["method"] == "nearest"}
    pairs = [(r, by_cell.get((r["factor"], r["seed"]))) for r in pixel if r["method"] == "nearest"]
    pairs = [(r, m) for r, m in pairs if m is not None]
    if not pairs:
        return ""
    equal = [f"x{r['factor']:g} seed {r['seed']}" for r, m in pairs if r["miou"] == m]
    return f"{len(equal)} of {len(pairs)}" + (f" ({', '.join(equal)})" if equal else "")


if __name__ == "__main__":
    main()
