#!/usr/bin/env bash
# The CamVid study of docs/results.md: label methods x factors x seeds, one model and schedule for
# every cell (class weights applied per class inside soft labels: the default before pixel
# weighting replaced it, kept so that every cell of the grid is trained alike). Resumable: rerun it
# and finished cells are skipped (their result.json is kept), an interrupted cell continues from its
# last epoch. Run from the project root with .venv built.
#   bash docs/results/run_study.sh              # the whole grid (cheapest factors first)
#   FACTORS="4" SEEDS="0" FACTORS_ONLY=1 bash docs/results/run_study.sh   # a part, e.g. one seed
set -euo pipefail
cd "$(dirname "$0")/../.."
FACTORS=${FACTORS:-"8 4 2"}
SEEDS=${SEEDS:-"0,1,2"}
for f in $FACTORS; do
  .venv/bin/softseg compare --dataset camvid --root ../shared/data/camvid \
    --methods nearest,mode,soft,soft-area --factors "$f" --seeds "$SEEDS" \
    --arch linknet --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \
    --class-weights median-frequency --weight-mode class \
    --max-pixels 43200 --workers 1 --device cpu --out docs/results/camvid
done
# factor 1 (native 360x480) trains on random crops of 43200 pixels (a factor-2 frame, 180x240),
# rounded up to the encoder's stride: 192x256, the window a padded factor-2 frame trains in
# (frames of factors 2, 4 and 8 are at most 43200 pixels, so they train on whole frames); mode
# last: at ~25 min a cell, the comparisons of soft labels against nearest come first
if [ -z "${FACTORS_ONLY:-}" ]; then
  .venv/bin/softseg compare --dataset camvid --root ../shared/data/camvid \
    --methods nearest,soft,soft-area,mode --factors 1 --seeds 0 \
    --arch linknet --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \
    --class-weights median-frequency --weight-mode class \
    --max-pixels 43200 --workers 1 --device cpu --out docs/results/camvid
fi
