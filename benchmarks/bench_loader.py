"""Data-loading throughput: soft labels against nearest labels, same loader, same workers.

Each round loads the same CamVid training images through the training pipeline (random scale,
crop, flip, jitter, down-sampling) once with ``--labels nearest`` and once with ``--labels soft``,
alternating, and prints samples per second and the ratio (target: soft >= 0.8x nearest).

``--soft-labels-in step`` measures the path the engine takes on an accelerator: the workers ship
integer label windows and the step makes the batch's soft labels with one batched call. The
loader ratio then shows the workers' side only (target: >= 0.95x nearest), so the benchmark also
times whole training steps, soft against nearest on the CPU: loader, soft labels (made in the
step, in series with the model: nothing hidden), forward, backward and optimiser step of
``--arch``. It does so for ``worker`` too, to compare the two; ``--train-images 0`` skips it.

    python benchmarks/bench_loader.py --root ../shared/data/camvid --factor 4 --workers 2
    python benchmarks/bench_loader.py --factor 4 --soft-labels-in step --arch linknet
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from softseg.data import build_dataset
from softseg.train.inputs import (
    AugmentedDataset,
    FirstN,
    LabelWindows,
    collate_samples,
    soft_from_windows,
)
from softseg.train.losses import SoftCrossEntropy
from softseg.train.models import create_model, required_divisor
from softseg.train.transforms import TrainTransform


def batches(ds, method, args, crop, images):
    """The loader of the first ``images`` samples and its transform (soft labels in the step
    when ``--soft-labels-in step``)."""
    in_step = method == "soft" and args.soft_labels_in == "step"
    transform = TrainTransform(
        ds.info.num_classes, args.factor, crop, label_method=method, scale_range=(0.75, 1.5),
        jitter=0.1, soft_in_step=in_step,
    )  # fmt: skip
    loader = DataLoader(
        AugmentedDataset(FirstN(ds, images), transform, seed=0), batch_size=args.batch_size,
        num_workers=args.workers, shuffle=False, drop_last=False, collate_fn=collate_samples,
    )  # fmt: skip
    return loader, transform


def samples_per_second(ds, method, args, crop) -> float:
    """Loader throughput: samples as the workers ship them (windows, for soft in the step)."""
    loader, _ = batches(ds, method, args, crop, args.images)
    t0 = time.perf_counter()
    n = sum(x.shape[0] for x, _ in loader)
    return n / (time.perf_counter() - t0)


def steps_per_second(ds, method, args, crop) -> float:
    """Training throughput in samples/s: loader, targets (made here for soft in the step),
    forward, loss, backward and optimiser step of a fresh ``--arch`` model."""
    torch.manual_seed(0)
    model = create_model(args.arch, args.encoder, num_classes=ds.info.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SoftCrossEntropy(ignore_index=ds.info.ignore_index)
    loader, transform = batches(ds, method, args, crop, args.train_images)
    cpu, n = torch.device("cpu"), 0
    t0 = time.perf_counter()
    for x, y in loader:
        if isinstance(y, LabelWindows):
            y = soft_from_windows(transform, y, cpu)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def median_rates(measure, ds, args, crop) -> tuple[float, float]:
    """Median over ``--rounds`` of ``measure`` for nearest and soft, alternating."""
    rates = {"nearest": [], "soft": []}
    for _ in range(args.rounds):
        for method in rates:
            rates[method].append(measure(ds, method, args, crop))
    return statistics.median(rates["nearest"]), statistics.median(rates["soft"])


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
    parser.add_argument("--soft-labels-in", choices=("worker", "step"), default="worker")
    parser.add_argument("--arch", default="tiny", help="model of the timed training steps")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument(
        "--train-images", type=int, default=32, help="images per training-step timing (0: none)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = build_dataset(args.dataset, args.root, args.split)
    divisor = required_divisor(create_model(args.arch, args.encoder, num_classes=2))
    _, label, _ = ds[0]
    # the frame at the factor, rounded up to the model's divisor (for the loader too: same work)
    crop = tuple(-(-int(-(-s // args.factor)) // divisor) * divisor for s in label.shape[-2:])
    samples_per_second(ds, "soft", args, crop)  # warm the page cache
    near, soft = median_rates(samples_per_second, ds, args, crop)
    print(
        f"{args.dataset} {args.split}: {min(len(ds), args.images)} images, factor "
        f"{args.factor:g}, crop {crop[0]}x{crop[1]}, {args.workers} workers, batch "
        f"{args.batch_size}, soft labels in the {args.soft_labels_in}, median of {args.rounds}"
    )
    target = 0.95 if args.soft_labels_in == "step" else 0.80
    print(f"loader nearest {near:8.1f} samples/s")
    print(f"loader soft    {soft:8.1f} samples/s")
    print(f"soft / nearest = {soft / near:.2f}x (loader; target >= {target:.2f}x)")
    if args.train_images > 0:
        near, soft = median_rates(steps_per_second, ds, args, crop)
        print(f"train step ({args.arch}, {args.train_images} images, CPU) nearest {near:.2f}, "
              f"soft {soft:.2f} samples/s")  # fmt: skip
        print(f"train step soft / nearest = {soft / near:.2f}x")


if __name__ == "__main__":
    main()
