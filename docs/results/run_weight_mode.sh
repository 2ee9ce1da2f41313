#!/usr/bin/env bash
# Investigation beside the CamVid study (docs/results.md, "Class weights and soft labels"): the
# study's recipe with --weight-mode pixel, which keeps each soft label's optimum where the study's
# class weighting moves it, at factors 8, 4 and 2. Nearest labels are one-hot, for which both modes are
# the same loss, so its cells must reproduce the study's nearest cells: checked at factor 8, and the
# other factors compare against the study's nearest cells. Resumable like run_study.sh. Factor 2
# came last (issue 16: the default's numbers at x2).
#   bash docs/results/run_weight_mode.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
run() {  # methods factors
  .venv/bin/softseg compare --dataset camvid --root ../shared/data/camvid \
    --methods "$1" --factors "$2" --seeds "${SEEDS:-0,1,2}" \
    --arch linknet --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \
    --class-weights median-frequency --weight-mode pixel \
    --max-pixels 43200 --workers 1 --device cpu --out docs/results/camvid_pixel_weights
}
# soft labels first (the point of the experiment), the one-hot check after
run soft,soft-area 8
run nearest 8
run soft,soft-area 4
run soft,soft-area 2
