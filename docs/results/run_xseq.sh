#!/usr/bin/env bash
# Evidence II (issue 16): does the gain of soft labels carry to scenes the model has not seen?
# CamVid's train+val frames come from three driving sequences (0001TP 62 frames, 0006R0 101,
# 0016E5 305); each fold trains on two of them and scores on every frame of the third. The recipe
# is the study's with pixel weighting (softseg's default): LinkNet/ResNet-18 from scratch, 40
# epochs, batch 8, lr 2e-3, median-frequency class weights applied per pixel. Order of value:
# factor 4, then 8; within a factor one seed across all folds before the next seed. Resumable:
# rerun it and finished cells are skipped, an interrupted cell continues from its last epoch.
#   bash docs/results/run_xseq.sh                     # everything
#   FACTORS="4" SEEDS="0" bash docs/results/run_xseq.sh
# SOFTSEG_PYTHON picks the interpreter (default .venv/bin/python), e.g. one that imports a frozen
# copy of the package while the working tree changes. Variants of the recipe (issue 16), each into
# its own folder, tabled by `docs/results/xseq_report.py FOLDER`:
#   CLASS_WEIGHTS=none OUT=docs/results/camvid_xseq_noweights bash docs/results/run_xseq.sh
#   ARCH=fpn FACTORS=4 OUT=docs/results/camvid_xseq_fpn bash docs/results/run_xseq.sh
# HELDOUT picks the folds (default all three), e.g. HELDOUT=0016E5 for the cheapest fold to train
# (163 frames) with the most frames to score (305): a first read of a variant at a third the cost.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${SOFTSEG_PYTHON:-.venv/bin/python}
OUT=${OUT:-docs/results/camvid_xseq}
SEQUENCES=(0001TP 0006R0 0016E5)
for f in ${FACTORS:-4 8}; do
  for s in ${SEEDS:-0 1 2}; do
    for held in ${HELDOUT:-${SEQUENCES[*]}}; do
      train=$(printf '%s\n' "${SEQUENCES[@]}" | grep -v "$held" | paste -sd,)
      "$PY" -m softseg compare --dataset camvid --root ../shared/data/camvid \
        --train-split "train+val:$train" --eval-split "train+val:$held" \
        --methods nearest,soft --factors "$f" --seeds "$s" \
        --arch "${ARCH:-linknet}" --encoder resnet18 --epochs 40 --batch-size 8 --lr 2e-3 \
        --class-weights "${CLASS_WEIGHTS:-median-frequency}" --weight-mode pixel \
        --max-pixels 43200 --workers 1 --device cpu --out "$OUT/heldout_$held"
    done
  done
done
