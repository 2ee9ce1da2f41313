"""Loader throughput of a torchvision ``transforms.v2`` pipeline: ``SoftLabel`` against ``Mask``.

The same CamVid training images (decoded from PNG in the workers each time) go through
``RandomResizedCrop((90, 120)) + RandomHorizontalFlip`` with the label either as a
:class:`softseg.integrations.torchvision.SoftLabel` (soft labels, float ``(11, 90, 120)``) or as a
``tv_tensors.Mask`` (nearest, the usual way), in a ``DataLoader`` with 2 workers and batch 8. The
two are measured alternately; it prints samples per second and ``soft / nearest = R`` (target:
R >= 0.8).

    python benchmarks/bench_v2_loader.py --root ../shared/data/camvid --images 64 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from softseg.integrations.torchvision import SoftLabel

NUM_CLASSES, VOID = 11, 11  # CamVid's 11 classes; label 11 is void


class CamVidV2(Dataset):
    """``(image, label)`` pairs through a v2 pipeline; ``soft=True`` wraps labels in SoftLabel."""

    def __init__(self, root: Path, images: int, soft: bool, size: tuple[int, int]) -> None:
        self.images = sorted((root / "train").glob("*.png"))[:images]
        self.labels = [root / "trainannot" / p.name for p in self.images]
        self.soft = soft
        self.pipeline = v2.Compose(
            [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = tv_tensors.Image(
            torch.from_numpy(np.array(Image.open(self.images[i]))).permute(2, 0, 1)
        )
        labels = torch.from_numpy(np.array(Image.open(self.labels[i])))
        if self.soft:
            image, label = self.pipeline(
                image, SoftLabel(labels, num_classes=NUM_CLASSES, ignore_index=VOID)
            )
            return image.as_subclass(torch.Tensor), label.soft()
        image, mask = self.pipeline(image, tv_tensors.Mask(labels))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def samples_per_second(ds: Dataset, args: argparse.Namespace) -> float:
    loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers)
    t0 = time.perf_counter()
    n = sum(x.shape[0] for x, _ in loader)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/camvid")
    parser.add_argument("--images", type=int, default=64, help="first N training images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seeds the workers' crop draws")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # each epoch's worker seeds come from here: repeatable crops
    root = Path(args.root)
    sets = {m: CamVidV2(root, args.images, m == "soft", (90, 120)) for m in ("nearest", "soft")}
    if not len(sets["soft"]):
        raise SystemExit(f"no images under {root / 'train'}")
    samples_per_second(sets["soft"], args)  # warm the page cache
    rates: dict[str, list[float]] = {"nearest": [], "soft": []}
    for _ in range(args.rounds):
        for method, ds in sets.items():
            rates[method].append(samples_per_second(ds, args))
    med = {m: statistics.median(r) for m, r in rates.items()}
    for m, r in rates.items():
        print(f"{m:8s} {med[m]:7.1f} samples/s  (rounds: {', '.join(f'{x:.1f}' for x in r)})")
    print(f"soft / nearest = {med['soft'] / med['nearest']:.2f}")


if __name__ == "__main__":
    main()
