"""Data-loading throughput: soft labels against nearest labels, same loader, same workers.

Each round loads the same CamVid training images through the training pipeline (random scale,
crop, flip, jitter, down-sampling) once with ``--labels nearest`` and once with ``--labels soft``,
alternating, and prints samples per second and the ratio (target: soft >= 0.8x nearest).

    python benchmarks/bench_loader.py --root ../shared/data/camvid --factor 4 --workers 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from softseg.data import build_dataset
from softseg.train.inputs import AugmentedDataset, FirstN
from softseg.train.transforms import TrainTransform


def samples_per_second(ds, method, args) -> float:
    info = ds.info
    _, label, _ = ds[0]
    crop = tuple(-(-s // int(args.factor)) for s in label.shape[-2:])
    transform = TrainTransform(
        info.num_classes,
        args.factor,
        crop,
        label_method=method,
        scale_range=(0.75, 1.5),
        jitter=0.1,
    )
    loader = DataLoader(
        AugmentedDataset(ds, transform, seed=0), batch_size=args.batch_size,
        num_workers=args.workers, shuffle=False, drop_last=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    n = sum(x.shape[0] for x, _ in loader)
    return n / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="camvid")
    parser.add_argument("--root", default="../shared/data/camvid")
    parser.add_argument("--split", default="train")
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=160, help="images per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = build_dataset(args.dataset, args.root, args.split)
    ds = FirstN(ds, args.images)
    rates = {"nearest": [], "soft": []}
    samples_per_second(ds, "soft", args)  # warm the page cache
    for _ in range(args.rounds):
        for method in rates:
            rates[method].append(samples_per_second(ds, method, args))
    near, soft = (statistics.median(rates[m]) for m in ("nearest", "soft"))
    print(
        f"{args.dataset} {args.split}: {len(ds)} images, factor {args.factor:g}, "
        f"{args.workers} workers, batch {args.batch_size}, median of {args.rounds} rounds"
    )
    print(f"nearest {near:8.1f} samples/s")
    print(f"soft    {soft:8.1f} samples/s")
    print(f"soft / nearest = {soft / near:.2f}x (target >= 0.80x)")


if __name__ == "__main__":
    main()
