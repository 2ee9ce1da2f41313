"""The label ceiling of the CamVid study: what each label method lets a perfect model score.

    .venv/bin/python docs/results/label_ceiling.py      # about 6 minutes on one busy core

For every factor and method the `val` labels are made the way training labels are made (whole
frames) and scored at full resolution the way predictions are (bilinear up-sampling, argmax),
without and with the study's median-frequency class weights (which move the optimum of the
weighted loss to ``w_c t_c / sum_k w_k t_k``). Writes ``docs/results/camvid/label_ceiling.csv``;
``make_report.py`` puts it in docs/results.md.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from tqdm import tqdm

from softseg.atomic import atomic_write_text
from softseg.data import build_dataset
from softseg.study.retention import dataset_label_ceiling
from softseg.train.losses import median_frequency_weights

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1].parent / "shared" / "data" / "camvid"
OUT = HERE / "camvid" / "label_ceiling.csv"
FACTORS = (8.0, 4.0, 2.0)
METHODS = ("nearest", "mode", "soft", "soft-area")


def main() -> None:
    train = build_dataset("camvid", str(ROOT), "train")
    val = build_dataset("camvid", str(ROOT), "val")
    info = val.info
    labels = (train[i][1] for i in tqdm(range(len(train)), "class frequencies"))
    weights = median_frequency_weights(labels, info.num_classes, info.ignore_index)
    rows = []
    for factor in tqdm(FACTORS, "factors"):
        for name, w in (("none", None), ("median-frequency", weights)):
            scores = dataset_label_ceiling(val, factor, METHODS, class_weights=w)
            for method, s in scores.items():
                rows.append(
                    {"factor": factor, "method": method, "class_weights": name, "miou": s["miou"]}
                    | s["per_class"]
                )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.2f}" if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(OUT, buffer.getvalue())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    torch.set_num_threads(1)  # it runs beside the study's training
    main()
