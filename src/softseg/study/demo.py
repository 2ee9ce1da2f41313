"""``softseg demo``: the embedded default job, on synthetic street scenes, in a few CPU minutes.

1. How much of each class survives nearest, mode and soft down-sampling (printed and plotted).
2. The same small model trained with nearest and with soft labels at one factor; the scores of both
   at full label resolution, the per-class gains, and a figure of one scene with both label maps and
   both predictions.
"""

from __future__ import annotations

from pathlib import Path

from ..data import build_dataset
from ..train.config import TrainConfig
from .cell import train_cell
from .figures import labels_and_predictions_figure
from .grid import grid, run_grid
from .plots import plot_class_gains, plot_retention
from .report import write_tables
from .retention import dataset_retention, retention_table
from .stats import summarize


def run_demo(
    out: str | Path = "runs/demo",
    *,
    factor: float = 4.0,
    epochs: int = 25,
    arch: str = "linknet",
    encoder: str = "resnet18",
    train_images: int = 64,
    class_weights: str | None = "median-frequency",
    workers: int = 1,
    progress: bool = True,
    echo=print,
) -> dict:
    """Run the demo into ``out``; returns the summary rows of the training comparison."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    val = build_dataset("synthetic", split="val")
    classes = val.info.classes

    echo(f"== 1. Class mass kept by each label down-sampling ({len(val)} synthetic scenes) ==")
    for f in sorted({factor, 2 * factor}):
        table = dataset_retention(val, f)
        echo(
            f"\nfactor {f:g} ({val[0][1].shape[-2] // int(f)}x{val[0][1].shape[-1] // int(f)} labels):"
        )
        echo(retention_table(table, classes))
        png = plot_retention(table, classes, out / f"retention_x{f:g}.png")
        echo(f"wrote {png}")

    echo(
        f"\n== 2. Training with nearest vs soft labels at factor {factor:g} ({arch}, {epochs} epochs) =="
    )
    base = TrainConfig(
        dataset="synthetic", arch=arch, encoder=encoder, epochs=epochs, batch_size=8, lr=3e-3,
        class_weights=class_weights, workers=workers, device="cpu", val_split=None,
        limit_train=train_images,
    )  # fmt: skip
    cells = grid(["nearest", "soft"], [factor], [0])
    results = run_grid(
        cells, out / "compare", lambda c, d: train_cell(base, c, d, progress=progress)
    )
    rows = summarize(results)
    tables = write_tables(results, out / "compare")
    echo((out / "compare" / "summary.md").read_text())
    echo(f"wrote {', '.join(str(p) for p in tables.values())}")
    echo(f"wrote {plot_class_gains(rows, out / 'class_gains.png')}")

    figure = labels_and_predictions_figure(
        out / "compare", val, [factor], out / "labels_and_predictions.png"
    )
    echo(f"wrote {figure}")
    return {"rows": rows, "image": val[0][2]}
