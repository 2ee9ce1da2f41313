#!/usr/bin/env bash
# Issue 16 on one GPU, from the compact JPEG copy of CamVid (docs/results/pack_camvid.py). GPU
# cells go in their own tables (docs/results/camvid_gpu/), labelled with the card and the
# re-encoding, never mixed with the CPU cells. Recipe: the pixel-weighting study's (LinkNet/ResNet-18
# from scratch, 40 epochs, batch 8, lr 2e-3, median-frequency weights per pixel); x1 on whole
# frames, x2 and x4 as the CPU study (--max-pixels 43200 crops nothing there).
#   default          train -> val (in-sequence), the whole-frame x1 baseline against shrunk training
#   HELDOUT="0016E5 0006R0 0001TP"
#                    the cross-sequence folds of run_xseq.sh (train on the other two sequences'
#                    train+val frames, score every frame of the held-out one), fold by fold
# CELLS orders the cells within a seed as method:factor (default: x1, x2, x4, nearest then soft).
# The seeds run side by side (one process each; the GPU and 16 cores have room for three), so a
# budget cut leaves whole folds with every seed. Resumable: finished cells (result.json) are
# skipped, so a later lease continues the grid; a cell cut by the budget is lost.
#
# Here, once per lease (CPU, ~10 s; the copy and the smp wheel are ignored by git):
#   .venv/bin/python docs/results/pack_camvid.py ../shared/data/camvid .gpu_data/camvid
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     -d .whl segmentation_models_pytorch==0.6.0
# Then on the device (run, carry [".gpu_data", ".whl"], timeout_s 600):
#   BUDGET_S=500 OUT=$OUT bash docs/results/run_gpu.sh
#   HELDOUT="0016E5 0006R0 0001TP" CELLS="nearest:1 nearest:2 soft:2 nearest:4 soft:4" \
#     BUDGET_S=530 OUT=$OUT bash docs/results/run_gpu.sh      # what the first lease ran
# and unpack $OUT/camvid_gpu.tar.gz here into docs/results/. Cost seen on that lease (H100, three
# seeds side by side): an x1 cell 206 s, an x2 cell 230-245 s, of which training was 75 s and 49 s;
# the rest went to class frequencies and scoring, serial in each main process at 4-7 frames/s
# (here one process does 100+/s), so OpenMP threads are now capped per process and both read
# their frames through the run's loader workers (softseg.train.inputs.read_ahead; untested there).
# A CPU dry run of the script itself:
#   DEVICE=cpu EPOCHS=1 LIMIT_TRAIN=8 SEEDS=0 GPU_OUT=/tmp/gpu_try bash docs/results/run_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${SOFTSEG_PYTHON:-python3}
if ! "$PY" -c "import segmentation_models_pytorch" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
ROOT=${ROOT:-.gpu_data/camvid}
GRID=${GPU_OUT:-docs/results/camvid_gpu}
SEQUENCES=(0001TP 0006R0 0016E5)
deadline=$((SECONDS + ${BUDGET_S:-500}))
# three processes and their loader workers share 16 cores: spinning OpenMP pools would fight
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
extra=()
[ -n "${LIMIT_TRAIN:-}" ] && extra+=(--limit-train "$LIMIT_TRAIN")
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"

run_seed() {  # run_seed SEED: every fold's cells for one seed, in order, until the budget is spent
  local s=$1 held splits out m f left budget
  for held in ${HELDOUT:-valsplit}; do
    if [ "$held" = valsplit ]; then
      splits=(); out=$GRID
    else
      splits=(--train-split "train+val:$(printf '%s\n' "${SEQUENCES[@]}" | grep -v "$held" | paste -sd,)"
              --eval-split "train+val:$held")
      out=$GRID/heldout_$held
    fi
    for cell in ${CELLS:-nearest:1 soft:1 nearest:2 soft:2 nearest:4 soft:4}; do
      m=${cell%%:*}; f=${cell##*:}
      left=$((deadline - SECONDS))
      if [ "$left" -lt 60 ]; then echo "budget spent before $held ${m}_f${f}_s${s}"; return; fi
      # whole frames at x1 (no crop); x2 and x4 frames are within the study's 43200-pixel budget
      budget=(--max-pixels 43200); [ "$f" = 1 ] && budget=()
      timeout "$left" "$PY" -m softseg compare --dataset camvid --root "$ROOT" "${splits[@]}" \
        --methods "$m" --factors "$f" --seeds "$s" "${budget[@]}" "${extra[@]}" \
        --arch linknet --encoder resnet18 --epochs "${EPOCHS:-40}" --batch-size 8 --lr 2e-3 \
        --class-weights median-frequency --weight-mode pixel \
        --workers "${WORKERS:-5}" --device "${DEVICE:-cuda}" --out "$out/x$f" \
        >> "$GRID/log_s$s.txt" 2>&1 || echo "$held ${m}_f${f}_s${s} stopped (exit $?)"
      echo "$(date +%T) $held $(tr '\r' '\n' < "$GRID/log_s$s.txt" | grep -aE 'done in|FAILED' | tail -n 1)"
    done
  done
}

mkdir -p "$GRID"
# a warm device keeps ignored files (checkpoints) but not a cell's run/config.json beside them,
# and a checkpoint without its config cannot resume: start such a cell afresh
find "$GRID" -name checkpoint.pt | while read -r ckpt; do
  [ -f "$(dirname "$ckpt")/config.json" ] || { echo "removing orphan $ckpt"; rm -f "$ckpt"; }
done
for s in ${SEEDS:-0 1 2}; do run_seed "$s" & done
wait
if [ -n "${OUT:-}" ]; then  # the device's return folder
  tar --exclude=checkpoint.pt -czf "$OUT/camvid_gpu.tar.gz" -C "$(dirname "$GRID")" "$(basename "$GRID")"
  ls -la "$OUT"
fi
