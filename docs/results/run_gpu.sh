#!/usr/bin/env bash
# Issue 16 on one GPU: the whole-frame x1 baseline against shrunk training, per unit of training
# time, from the compact JPEG copy of CamVid (docs/results/pack_camvid.py). GPU cells go in their
# own table (docs/results/camvid_gpu/), labelled with the card and the re-encoding, never mixed with
# the CPU cells. Recipe: the pixel-weighting study's (LinkNet/ResNet-18 from scratch, 40 epochs,
# batch 8, lr 2e-3, median-frequency weights per pixel, train -> val); x1 on whole frames, x2 and x4
# as the CPU study (--max-pixels 43200 crops nothing there). Seed-major, so a budget cut leaves
# whole seeds: x1 nearest, x1 soft, x2 nearest, x2 soft, x4 nearest, x4 soft per seed.
# Resumable: finished cells (result.json) are skipped, so a later lease continues the grid.
#
# Here, once per lease (CPU, ~10 s; the copy and the smp wheel are ignored by git):
#   .venv/bin/python docs/results/pack_camvid.py ../shared/data/camvid .gpu_data/camvid
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     -d .whl segmentation_models_pytorch==0.6.0
# Then on the device (run, carry [".gpu_data", ".whl"], timeout_s 600):
#   BUDGET_S=500 bash docs/results/run_gpu.sh
# and unpack $OUT/camvid_gpu.tar.gz here into docs/results/. A CPU dry run of the script itself:
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
deadline=$((SECONDS + ${BUDGET_S:-500}))
extra=()
[ -n "${LIMIT_TRAIN:-}" ] && extra+=(--limit-train "$LIMIT_TRAIN")
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
for s in ${SEEDS:-0 1 2}; do
  for f in 1 2 4; do
    for m in nearest soft; do
      left=$((deadline - SECONDS))
      if [ "$left" -lt 60 ]; then echo "budget spent before ${m}_f${f}_s${s}"; break 3; fi
      # whole frames at x1 (no crop); x2 and x4 frames are within the study's 43200-pixel budget
      budget=(--max-pixels 43200); [ "$f" = 1 ] && budget=()
      timeout "$left" "$PY" -m softseg compare --dataset camvid --root "$ROOT" \
        --methods "$m" --factors "$f" --seeds "$s" "${budget[@]}" "${extra[@]}" \
        --arch linknet --encoder resnet18 --epochs "${EPOCHS:-40}" --batch-size 8 --lr 2e-3 \
        --class-weights median-frequency --weight-mode pixel \
        --workers "${WORKERS:-12}" --device "${DEVICE:-cuda}" --out "$GRID/x$f" \
        || echo "cell ${m}_f${f}_s${s} stopped (exit $?)"
    done
  done
done
if [ -n "${OUT:-}" ]; then  # the device's return folder
  tar --exclude=checkpoint.pt -czf "$OUT/camvid_gpu.tar.gz" -C "$(dirname "$GRID")" "$(basename "$GRID")"
  ls -la "$OUT"
fi
