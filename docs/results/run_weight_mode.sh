#!/usr/bin/env bash
# Investigation beside the CamVid study (docs/results.md, "Class weights and soft labels"): the
# study's recipe at factor 8 with --weight-mode pixel, which keeps each soft label's optimum where
# the study's class weighting moves it. Nearest labels are one-hot, for which both modes are the
# same loss, so its cells must reproduce the study's nearest cells. Resumable like run_study.sh.
#   bash docs/results/run_weight_mode.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# soft labels first (the point of the experiment), the nearest check after
for methods in soft,soft-area nearest; do
  .venv/bin/softseg compare --dataset camvid --root ../shared/data/camvid \
    --methods "$methods" --factors 8 --seeds "${SEEDS:-0,1,2}" \
    --arch linknet --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \
    --class-weights median-frequency --weight-mode pixel \
    --max-pixels 43200 --workers 1 --device cpu --out docs/results/camvid_pixel_weights
done
