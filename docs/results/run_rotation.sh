#!/usr/bin/env bash
# Issue 13: does warping labels coherently change the soft-vs-nearest gap? The pixel-weighting
# study recipe at factor 4 (as docs/results/run_weight_mode.sh: LinkNet/ResNet-18 from scratch,
# 40 epochs, batch 8, lr 2e-3, median-frequency weights applied per pixel, CamVid train -> val),
# plus a random rotation of up to 10 degrees warped with the crop as one operator: soft labels go
# through the image's bilinear warp (supersampled), nearest labels through nearest neighbour.
# Compare with the same cells without rotation in docs/results/camvid_pixel_weights.
# Resumable: rerun it and finished cells are skipped.
#   bash docs/results/run_rotation.sh
#   SEEDS=0 bash docs/results/run_rotation.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${SOFTSEG_PYTHON:-.venv/bin/python}
for s in ${SEEDS:-0 1 2}; do
  "$PY" -m softseg compare --dataset camvid --root ../shared/data/camvid \
    --methods soft,nearest --factors 4 --seeds "$s" --rotation 10 \
    --arch linknet --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \
    --class-weights median-frequency --weight-mode pixel \
    --max-pixels 43200 --workers 1 --device cpu --out docs/results/camvid_rotation
done
