#!/usr/bin/env bash
# GPU figures and checks, run in one go on a lent CUDA machine (docs/benchmarks/*_cuda.txt).
# Needs torch with CUDA there; segmentation-models-pytorch may come as a wheel in .whl/, fetched
# beforehand with `pip download --no-deps -d .whl segmentation-models-pytorch==0.6.0`.
#   OUT=/some/dir bash docs/benchmarks/gpu_check.sh
# Steps: the test suite on a machine that has CUDA (the CUDA-only tests run instead of skipping),
# the soft down-sampling benchmark on the GPU, and a short soft-vs-nearest training on synthetic
# streets on the GPU (with and without mixed precision) to time an epoch of each.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
  || export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, segmentation_models_pytorch as smp; print('torch', torch.__version__, 'smp', smp.__version__, torch.cuda.get_device_name())"
  nproc
} 2>&1 | tee "$OUT/machine.txt"

# the suite, with the CUDA-only tests collected; 16 cores there, so spread it
timeout 170 python3 -m pytest -q -p no:cacheprovider -n 8 -rs --tb=short > "$OUT/pytest_cuda.txt" 2>&1
tail -5 "$OUT/pytest_cuda.txt"

# the defaults, then the sweep that chose softseg's CUDA block size and first pass
timeout 60 python3 benchmarks/bench_downsample.py --device cuda --repeat 20 2>&1 \
  | tee "$OUT/bench_downsample_cuda.txt"
for block in 8 256 1024; do
  for path in auto never; do
    timeout 30 python3 benchmarks/bench_downsample.py --device cuda --repeat 10 --no-memory \
      --block-mb "$block" --run-path "$path" 2>&1
  done
done | tee "$OUT/bench_downsample_cuda_sweep.txt"

# one epoch is timed after a warm-up epoch; the metrics log gives epoch_time_s per epoch
# ("deterministic" is fp32 with --deterministic: its cost, and a check that it runs on CUDA)
for amp in no-amp deterministic; do
  for labels in nearest soft; do
    timeout 40 python3 -m softseg train --dataset synthetic --labels "$labels" --factor 2 \
      --arch linknet --encoder resnet18 --epochs 3 --batch-size 16 --device cuda --"$amp" \
      --workers 4 --out "/tmp/train_${labels}_${amp}" >/dev/null 2>&1 \
      || echo "train $labels $amp failed: rc $?"
    python3 - "$labels" "$amp" "/tmp/train_${labels}_${amp}/metrics.jsonl" <<'PY' 2>&1 | tee -a "$OUT/train_cuda.txt"
import json, sys
labels, amp, path = sys.argv[1:]
rows = [json.loads(line) for line in open(path)]
times = [r["epoch_time_s"] for r in rows[1:]]
print(f"{labels:8s} {amp:13s} epochs={len(rows)} epoch_s(after warm-up)={sum(times)/len(times):.2f} "
      f"peak_mb={rows[-1]['peak_memory_mb']:.0f} final_loss={rows[-1]['train_loss']:.3f}")
PY
  done
done
