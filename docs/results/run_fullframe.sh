#!/usr/bin/env bash
# Issue 16, a fair full-resolution baseline: nearest and soft labels trained on whole 360x480
# CamVid frames at factor 1 (no --max-pixels: each batch is whole frames, padded to 384x480), with
# the pixel-weighting recipe of run_weight_mode.sh (LinkNet/ResNet-18 from scratch, 40 epochs,
# batch 8, lr 2e-3, median-frequency weights per pixel, train -> val). docs/results/make_report.py
# sets the shrunk cells against these, with the time per epoch of each. A cell is about 4.5x an
# x2 cell: ~175 s an epoch, about 2 hours a cell on 2 idle CPU cores (Intel Xeon). Resumable: rerun
# it and an interrupted cell continues from its last epoch, finished cells are skipped.
#   bash docs/results/run_fullframe.sh
#   SEEDS=0 bash docs/results/run_fullframe.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${SOFTSEG_PYTHON:-.venv/bin/python}
for s in ${SEEDS:-0 1 2}; do
  "$PY" -m softseg compare --dataset camvid --root ../shared/data/camvid \
    --methods nearest,soft --factors 1 --seeds "$s" \
    --arch linknet --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \
    --class-weights median-frequency --weight-mode pixel \
    --workers 1 --device cpu --out docs/results/camvid_fullframe
done
