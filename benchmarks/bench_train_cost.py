"""Training cost per epoch of each (method, factor), measured side by side on one machine.

The per-time comparisons of docs/results.md set cells against each other by their seconds per
epoch, but cells train in different sessions, sometimes on different machines. This benchmark
trains one epoch of each configuration on the same first ``--frames`` training frames with the
study recipe (LinkNet/ResNet-18, batch 8, median-frequency weights per pixel, one loader worker,
whole frames at each factor: what every cell of the pixel-weighting grids and run_fullframe.sh
trains on), round after round, configurations interleaved so that drift in the machine's speed
hits them all alike. It prints the median seconds per epoch of each and its ratio to nearest at
the first factor (x1: whole 360x480 frames).

    python benchmarks/bench_train_cost.py --root ../shared/data/camvid
    python benchmarks/bench_train_cost.py --dataset synthetic --frames 8 --factors 4,8 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from softseg.study.cell import method_options
from softseg.train.config import TrainConfig
from softseg.train.loop import train
from softseg.train.runtime import machine


def epoch_seconds(args, method: str, factor: float, out: Path) -> float:
    """Seconds of one training epoch (the loader, forward, backward and step; not the setup)."""
    cfg = TrainConfig(
        out=str(out), dataset=args.dataset, root=args.root, train_split="train", val_split=None,
        factor=factor, arch=args.arch, encoder="resnet18", epochs=1, batch_size=8, lr=2e-3,
        class_weights="median-frequency", weight_mode="pixel", workers=1, device="cpu",
        limit_train=args.frames, **method_options(method),
    )  # fmt: skip
    return train(cfg, progress=False)["epoch_time_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="camvid")
    p.add_argument("--root", default=None)
    p.add_argument("--arch", default="linknet")
    p.add_argument("--factors", default="1,2,4,8", help="comma-separated; the first is the base")
    p.add_argument("--methods", default="nearest,soft")
    p.add_argument("--frames", type=int, default=40, help="training frames per epoch")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    methods = args.methods.split(",")
    configs = [(m, f) for f in factors for m in methods]
    print(f"{machine(torch.device('cpu'))}; torch threads {torch.get_num_threads()}")
    times: dict[tuple[str, float], list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, (method, factor) in enumerate(configs):
                out = Path(tmp) / f"r{r}_{i}"
                times[method, factor].append(epoch_seconds(args, method, factor, out))
                print(f"round {r + 1}/{args.rounds} {method} x{factor:g}: "
                      f"{times[method, factor][-1]:.2f} s", flush=True)  # fmt: skip
    base = statistics.median(times[methods[0], factors[0]])
    print(f"\n{args.frames} frames an epoch, median of {args.rounds} rounds; "
          f"ratio to {methods[0]} x{factors[0]:g}")  # fmt: skip
    print("| method | factor | s / epoch | s / frame | ratio |\n|---|---|---:|---:|---:|")
    for method, factor in configs:
        t = statistics.median(times[method, factor])
        print(f"| {method} | x{factor:g} | {t:.2f} | {t / args.frames:.3f} | {t / base:.3f} |")


if __name__ == "__main__":
    main()
