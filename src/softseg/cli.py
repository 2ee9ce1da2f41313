"""The ``softseg`` command line: train, eval, predict, compare, retention and demo."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Train semantic segmentation at reduced resolution with soft labels that match the image "
    "resampling, and compare them with nearest-neighbour and majority labels.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)

Dataset = Annotated[
    str, typer.Option(help="camvid, cityscapes, ade20k, mapillary, folder or synthetic.")
]
Root = Annotated[str | None, typer.Option(help="Dataset directory (not needed for synthetic).")]
ClassWeights = Annotated[str, typer.Option(help="Loss class weights: none or median-frequency.")]
WeightMode = Annotated[
    str,
    typer.Option(
        help="How class weights meet soft labels: pixel (weighs each pixel by the mean weight of "
        "its label, optimum unmoved) or class (weighs each class's share, which moves the loss's "
        "optimum towards weighted classes). The same for hard labels."
    ),
]


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HxW such as 96x128, got {text!r}") from None
    return h, w


def _split(text: str, kind, option: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated values, got {text!r}") from None
    if not values:
        raise typer.BadParameter(f"{option} is empty")
    return values


# Library errors name arguments in backticks (`batch_size`, `resume=True`); the command line
# knows them as flags: the name in kebab case, except for these.
_FLAG_OF = {"json_path": "--json"}
_ARGUMENT = re.compile(r"`([a-z][a-z0-9_]*)(?:=True)?`")


def _as_flags(message: str) -> str:
    """``message`` with each `argument` written as the command-line flag that sets it."""
    return _ARGUMENT.sub(lambda m: _FLAG_OF.get(m[1], "--" + m[1].replace("_", "-")), message)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {_as_flags(str(err))}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


ROTATION_HELP = (
    "Random rotation up to DEG degrees (uniform in [-DEG, DEG]), warped with the crop as one "
    "operator for image and label; 0, the default, is off."
)
SOFT_LABELS_IN = "Soft labels made in: worker, step (batched, on the model's device) or auto."
FIT_OFFSETS_HELP = (
    "Decode with per-class logit offsets fit to maximise mIoU on this split ('run': the run's own "
    "training split, the sensible choice; same syntax as --split); recorded in --json."
)


@app.command(
    epilog="Examples:\n\n"
    "    softseg train --dataset camvid --root ../shared/data/camvid --factor 4 --labels soft "
    "--epochs 20 --seed 0 --out runs/camvid_soft_x4\n\n"
    "    softseg train --dataset synthetic --factor 8 --labels nearest --arch tiny --out runs/syn\n\n"
    "    torchrun --nproc-per-node 2 -m softseg train --dataset camvid --root DATA --out runs/ddp"
)
def train(
    out: Annotated[str, typer.Option(help="Run directory (config, checkpoint, metrics log).")],
    dataset: Dataset = "synthetic",
    root: Root = None,
    factor: Annotated[float, typer.Option(help="Down-sampling factor of the frames.")] = 4.0,
    crop: Annotated[
        str | None,
        typer.Option(help="Training window HxW at the reduced size (default: frame/factor)."),
    ] = None,
    labels: Annotated[
        str, typer.Option(help="Label down-sampling: soft, nearest or mode.")
    ] = "soft",
    image_kernel: Annotated[
        str, typer.Option(help="Image kernel: bilinear, bicubic, area, nearest.")
    ] = "bilinear",
    label_kernel: Annotated[
        str | None, typer.Option(help="Soft-label kernel (default: the image kernel).")
    ] = None,
    antialias: Annotated[bool, typer.Option(help="Antialias when shrinking.")] = True,
    scale: Annotated[tuple[float, float], typer.Option(help="Random scale range.")] = (0.75, 1.5),
    hflip: Annotated[bool, typer.Option(help="Random horizontal flips.")] = True,
    jitter: Annotated[float, typer.Option(help="Colour jitter strength (image only).")] = 0.1,
    rotation: Annotated[float, typer.Option(help=ROTATION_HELP, metavar="DEG")] = 0.0,
    topk: Annotated[
        int | None, typer.Option(help="Keep soft labels as top-k sparse targets.")
    ] = None,
    arch: Annotated[
        str, typer.Option(help="Model architecture (unet, fpn, deeplabv3plus, tiny, ...).")
    ] = "unet",
    encoder: Annotated[str, typer.Option(help="smp encoder (no pretrained weights).")] = "resnet18",
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = "adamw",
    schedule: Annotated[str, typer.Option(help="poly, cosine or constant.")] = "poly",
    warmup_epochs: float = 0.0,
    label_smoothing: float = 0.0,
    class_weights: ClassWeights = "none",
    weight_mode: WeightMode = "pixel",
    seed: int = 0,
    workers: Annotated[int, typer.Option(help="Data loader processes.")] = 2,
    soft_labels_in: Annotated[str, typer.Option(help=SOFT_LABELS_IN)] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool, typer.Option(help="Mixed precision (CUDA).")] = False,
    compile: Annotated[bool, typer.Option(help="torch.compile the model (CUDA).")] = False,
    deterministic: Annotated[
        bool, typer.Option(help="Bit-reproducible CUDA kernels (slower); the CPU always is.")
    ] = False,
    eval_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = 1,
    train_split: str = "train",
    val_split: Annotated[str, typer.Option(help="Validation split ('' to skip).")] = "val",
    limit_train: Annotated[
        int | None, typer.Option(help="Use only the first N training images.")
    ] = None,
    limit_val: Annotated[
        int | None, typer.Option(help="Use only the first N validation images.")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its checkpoint.")
    ] = False,
) -> None:
    """Train a model with soft, nearest or mode labels at a reduced resolution."""
    from .train.config import TrainConfig
    from .train.loop import train as run_training
    from .train.runtime import finish_distributed

    try:
        cfg = TrainConfig(
            out=out, dataset=dataset, root=root, train_split=train_split,
            val_split=val_split or None, factor=factor, crop=_size(crop), labels=labels,
            image_kernel=image_kernel, label_kernel=label_kernel, antialias=antialias,
            scale=tuple(scale), hflip=hflip, jitter=jitter, rotation=rotation, topk=topk,
            arch=arch, encoder=encoder, soft_labels_in=soft_labels_in,
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            optimizer=optimizer, schedule=schedule, warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing, class_weights=_none(class_weights),
            weight_mode=weight_mode, seed=seed, workers=workers, device=device, amp=amp,
            compile=compile, deterministic=deterministic, eval_every=eval_every,
            limit_train=limit_train, limit_val=limit_val,
        )  # fmt: skip
        record = run_training(cfg, resume=resume)
    except (ValueError, FileExistsError, FileNotFoundError, FloatingPointError) as err:
        _fail(err)
    finish_distributed()
    typer.echo(json.dumps({k: v for k, v in record.items() if k != "val_per_class"}, indent=2))


def _none(value: str) -> str | None:
    return None if value.lower() == "none" else value


@app.command(
    name="eval",
    epilog="Example:\n\n    softseg eval runs/camvid_soft_x4 --dataset camvid "
    "--root ../shared/data/camvid --split val --json runs/camvid_soft_x4/val.json",
)
def eval_(
    run_dir: Annotated[str, typer.Argument(help="A directory written by softseg train.")],
    dataset: Annotated[str | None, typer.Option(help="Dataset (default: the run's).")] = None,
    root: Root = None,
    split: str = "val",
    factor: Annotated[float | None, typer.Option(help="Input factor (default: the run's).")] = None,
    json_path: Annotated[str | None, typer.Option("--json", help="Write the scores here.")] = None,
    device: str = "auto",
    limit: Annotated[int | None, typer.Option(help="Score only the first N images.")] = None,
    prior_correction: Annotated[
        float,
        typer.Option(help="Decode with the training labels' class prior divided out (0-1)."),
    ] = 0.0,
    fit_offsets_on: Annotated[str | None, typer.Option(help=FIT_OFFSETS_HELP)] = None,
    fit_offsets_frames: Annotated[
        int | None, typer.Option(help="Evenly spaced frames to fit the offsets on [default: 60].")
    ] = None,
) -> None:
    """Score a run's checkpoint at the original label resolution; prints a per-class table."""
    from .atomic import atomic_write_text
    from .train.evaluate import evaluate_run, score_table
    from .train.offsets import DEFAULT_FRAMES, evaluate_with_fitted_offsets

    options = dict(
        dataset=dataset, root=root, split=split, factor=factor, device=device, limit=limit,
        prior_correction=prior_correction,
    )  # fmt: skip
    try:
        if fit_offsets_on is not None:
            frames = DEFAULT_FRAMES if fit_offsets_frames is None else fit_offsets_frames
            result = evaluate_with_fitted_offsets(run_dir, fit_offsets_on, frames, **options)
        elif fit_offsets_frames is not None:
            raise ValueError(f"`fit_offsets_frames` {fit_offsets_frames} needs `fit_offsets_on`")
        else:
            result = evaluate_run(run_dir, **options)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    typer.echo(score_table(result))
    if result["pixel_acc"] is None:
        typer.secho(
            "warning: no labelled pixel in these images: every score is absent (null)",
            fg=typer.colors.YELLOW, err=True,
        )  # fmt: skip
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")


@app.command(
    epilog="Example:\n\n    softseg predict runs/camvid_soft_x4 ../shared/data/camvid/val --out preds"
)
def predict(
    run_dir: Annotated[str, typer.Argument(help="A directory written by softseg train.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files or folders of images.")],
    out: Annotated[str, typer.Option(help="Where the masks and overlays go.")] = "predictions",
    alpha: Annotated[float, typer.Option(help="Mask opacity in the overlay.")] = 0.5,
    device: str = "auto",
) -> None:
    """Colourised masks (<name>_mask.png) and overlays (<name>_overlay.png) for images."""
    from .train.predict import predict_paths

    try:
        written = predict_paths(run_dir, inputs, out, alpha=alpha, device=device)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    typer.echo(f"wrote {len(written)} masks and overlays to {out}")


@app.command(
    epilog="Example (the study of docs/results.md):\n\n"
    "    softseg compare --dataset camvid --root ../shared/data/camvid "
    "--methods nearest,mode,soft,soft-area --factors 2,4,8 --seeds 0,1,2 --arch linknet "
    "--epochs 40 --lr 2e-3 --class-weights median-frequency --max-pixels 43200 --out runs/grid"
    "\n\n    (docs/results/run_study.sh runs this grid, and factor 1, into docs/results/camvid)"
)
def compare(
    out: Annotated[
        str, typer.Option(help="Grid directory (cells/, results.csv, summary.md, plots).")
    ],
    dataset: Dataset = "synthetic",
    root: Root = None,
    methods: Annotated[
        str,
        typer.Option(help="Comma-separated: nearest, mode, soft, soft-KERNEL (e.g. soft-area)."),
    ] = "nearest,soft",
    factors: Annotated[str, typer.Option(help="Comma-separated down-sampling factors.")] = "4",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    max_pixels: Annotated[
        int | None,
        typer.Option(
            help="Frames larger than this many pixels at a factor train on random crops of this "
            "many, rounded up to the model's stride (as whole frames are padded)."
        ),
    ] = None,
    arch: str = "unet",
    encoder: str = "resnet18",
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 1e-3,
    scale: Annotated[tuple[float, float], typer.Option(help="Random scale range.")] = (0.75, 1.5),
    rotation: Annotated[float, typer.Option(help=ROTATION_HELP, metavar="DEG")] = 0.0,
    image_kernel: str = "bilinear",
    class_weights: ClassWeights = "none",
    weight_mode: WeightMode = "pixel",
    workers: int = 2,
    soft_labels_in: Annotated[str, typer.Option(help=SOFT_LABELS_IN)] = "auto",
    device: str = "auto",
    train_split: Annotated[
        str,
        typer.Option(help="Training split; 'a+b' joins splits, ':P1,P2' keeps names starting so."),
    ] = "train",
    eval_split: Annotated[
        str, typer.Option(help="Split scored at full resolution (same syntax as --train-split).")
    ] = "val",
    limit_train: int | None = None,
) -> None:
    """Run a grid of label methods x factors x seeds, resumable cell by cell, with tables and plots."""
    from dataclasses import asdict

    from .data import build_dataset
    from .study.cell import CELL_CONFIG_FIELDS, check_grid, train_cell
    from .study.figures import labels_and_predictions_figure, trained_factors
    from .study.grid import check_settings, grid, load_results, run_grid
    from .study.plots import plot_class_gains, plot_miou_vs_compute, plot_miou_vs_factor
    from .study.stats import summarize
    from .train.config import CHECKPOINT, WHERE_IT_RUNS, TrainConfig, same_path

    try:  # everything is checked before anything is written or trained
        base = TrainConfig(
            dataset=dataset, root=root, arch=arch, encoder=encoder, epochs=epochs,
            batch_size=batch_size, lr=lr, scale=tuple(scale), rotation=rotation,
            image_kernel=image_kernel, soft_labels_in=soft_labels_in,
            class_weights=_none(class_weights), weight_mode=weight_mode, workers=workers,
            device=device, train_split=train_split, val_split=None, limit_train=limit_train,
        )  # fmt: skip
        cells = grid(
            _split(methods, str, "--methods"), _split(factors, float, "--factors"),
            _split(seeds, int, "--seeds"),
        )  # fmt: skip
        # every setting but where it runs and what each cell sets: cells must be comparable
        shared = {k: v for k, v in asdict(base).items() if k not in WHERE_IT_RUNS}
        settings = dict(
            out_dir=out, settings={**shared, "max_pixels": max_pixels, "eval_split": eval_split},
            defaults=asdict(TrainConfig.from_dict({})),  # what a grid that lacks a key meant
            per_cell=CELL_CONFIG_FIELDS, same={"root": same_path},
        )  # fmt: skip
        check_settings(**settings, record=False)
        check_grid(base, cells, eval_split=eval_split, max_pixels=max_pixels)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)

    def run_cell(cell, cell_dir: Path) -> dict:
        try:
            return train_cell(base, cell, cell_dir, eval_split=eval_split, max_pixels=max_pixels)
        finally:  # recorded once a cell has trained an epoch: a call that fails at once leaves none
            if (cell_dir / "run" / CHECKPOINT).exists():
                check_settings(**settings)

    try:
        run_grid(cells, out, run_cell)
    except (ValueError, RuntimeError) as err:
        _fail(err)
    everything = load_results(out)  # also cells of earlier calls into the same directory
    rows = summarize(everything)
    plot_miou_vs_factor(rows, Path(out) / "miou_vs_factor.png")
    plot_miou_vs_compute(rows, Path(out) / "miou_vs_compute.png")
    if {"soft", "nearest"} <= {r["method"] for r in everything}:
        plot_class_gains(rows, Path(out) / "class_gains.png")
        # named by the factors it shows: checkpoints are not kept forever, and a later call that
        # finds fewer of them must not overwrite a figure that shows more
        seed = min(c.seed for c in cells)
        shown = trained_factors(out, sorted({r["factor"] for r in everything}), seed)
        name = "labels_and_predictions_" + "_".join(f"x{f:g}" for f in shown) + ".png"
        labels_and_predictions_figure(
            out, build_dataset(dataset, root, eval_split), shown, Path(out) / name, seed=seed
        )
    typer.echo((Path(out) / "summary.md").read_text())


@app.command(
    epilog="Example:\n\n    softseg retention --dataset camvid --root ../shared/data/camvid "
    "--split train --factors 4,8 --png retention.png"
)
def retention(
    dataset: Dataset = "synthetic",
    root: Root = None,
    split: str = "train",
    factors: Annotated[str, typer.Option(help="Comma-separated factors to report.")] = "4,8",
    limit: Annotated[int | None, typer.Option(help="Use the first N label maps.")] = None,
    png: Annotated[str | None, typer.Option(help="Plot the last factor's table here.")] = None,
) -> None:
    """How much of each class's mass nearest, mode and soft down-sampling keep."""
    from .data import build_dataset
    from .study.plots import plot_retention
    from .study.retention import dataset_retention, retention_table

    table = {}
    try:
        ds = build_dataset(dataset, root, split)
        for f in _split(factors, float, "--factors"):
            table = dataset_retention(ds, f, limit=limit)
            typer.echo(f"factor {f:g}:\n{retention_table(table, ds.info.classes)}\n")
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    if png:
        typer.echo(f"wrote {plot_retention(table, ds.info.classes, png)}")


@app.command(epilog="Example:\n\n    softseg demo --out runs/demo")
def demo(
    out: Annotated[str, typer.Option(help="Where tables, runs and figures go.")] = "runs/demo",
    factor: float = 4.0,
    epochs: int = 25,
    arch: str = "linknet",
    class_weights: ClassWeights = "median-frequency",
) -> None:
    """The embedded default: class retention and a nearest-vs-soft training on synthetic streets."""
    from .study.demo import run_demo

    run_demo(
        out, factor=factor, epochs=epochs, arch=arch, class_weights=_none(class_weights),
        echo=typer.echo,
    )  # fmt: skip


def main() -> None:
    """Entry point of the ``softseg`` console script."""
    app(prog_name="softseg")


if __name__ == "__main__":
    sys.exit(main())
