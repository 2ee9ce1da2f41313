"""soft_resized_crop_batch against (a) a loop of soft_resized_crop and (b) crop, one-hot, F.interpolate.

The training-step case: a batch of label maps, each with its own random scale-and-crop box, turned
into soft labels at the training resolution. Every repeat draws fresh boxes (as training does, so
no side profits from cached plans), the same for all sides, and times the sides interleaved.
Boxes are whole pixels so that (b) is defined; (b) crops first, so its filters stop at the box
edge, where softseg's (and the loop's) read on into the map: its "max diff" column shows that
border effect, not an error. Peak memory on the CPU is the rise of the peak resident set (VmHWM,
reset before the call) in a fresh child process per side; on CUDA ``max_memory_allocated`` above
the inputs.

    python benchmarks/bench_batch.py --repeat 1          # smoke test
    python benchmarks/bench_batch.py                     # CPU, both cases, 5 repeats
    python benchmarks/bench_batch.py --device cuda --batch 32
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from peak_memory import peak_bytes

from softseg.ops.batch import soft_resized_crop_batch
from softseg.ops.resample import soft_resized_crop

IGNORE = 255
# name: (map shapes, cycled over the batch; classes; output (h, w); output scale of a full map)
CASES = {
    "cityscapes": ([(1024, 2048)], 19, (256, 512), 0.25),
    "ade20k": ([(512, 683), (683, 512), (512, 512), (384, 512), (427, 640)], 150, (256, 256), 0.5),
    "small": ([(96, 192), (128, 256)], 19, (32, 64), 0.25),
}


# --------------------------------------------------------------------------- inputs
def scene(shape, num_classes, seed):
    """A street-like map: horizontal bands (sky, facades, road), rectangles on them, thin poles
    (1-3 px) and ignored patches; uint8."""
    g = np.random.default_rng(seed)
    H, W = shape
    bands = np.sort(g.integers(0, H, 3))
    rows = np.searchsorted(bands, np.arange(H))
    lab = np.broadcast_to(g.integers(0, num_classes, 4)[rows][:, None], (H, W)).copy()
    for _ in range(60):
        y, x = g.integers(0, H), g.integers(0, W)
        dy, dx = g.integers(4, H // 6 + 5), g.integers(4, W // 8 + 5)
        lab[y : y + dy, x : x + dx] = g.integers(0, num_classes)
    for x in g.integers(0, W - 3, W // 50 + 1):
        lab[g.integers(0, H // 2) :, x : x + g.integers(1, 4)] = g.integers(0, num_classes)
    for _ in range(5):
        y, x = g.integers(0, H - H // 16), g.integers(0, W - W // 16)
        lab[y : y + H // 16, x : x + W // 16] = IGNORE
    return torch.from_numpy(lab.astype(np.uint8))


def make_labels(case, batch, device):
    """One ``(N, H, W)`` tensor when the shapes agree, else a list of maps."""
    shapes, classes, _, _ = CASES[case]
    maps = [scene(shapes[i % len(shapes)], classes, i).to(device) for i in range(batch)]
    return torch.stack(maps) if len(shapes) == 1 else maps


def draw_boxes(labels, case, seed):
    """Random scale (0.5-2 around the case's scale) and position per map; whole pixels; a box
    larger than its map keeps the map inside (the rest is padding, ignored)."""
    _, _, (h, w), scale = CASES[case]
    g = np.random.default_rng(seed)
    boxes = []
    for lab in labels:
        H, W = lab.shape
        s = scale * g.uniform(0.5, 2.0)
        bh, bw = round(h / s), round(w / s)
        top = g.integers(min(0, H - bh), max(0, H - bh) + 1)
        left = g.integers(min(0, W - bw), max(0, W - bw) + 1)
        boxes.append([top, left, bh, bw])
    return np.asarray(boxes, dtype=np.float64)


# --------------------------------------------------------------------------- the three sides
def ours(labels, boxes, case):
    _, classes, size, _ = CASES[case]
    return soft_resized_crop_batch(labels, boxes, size, classes)


def loop(labels, boxes, case):
    _, classes, size, _ = CASES[case]
    pairs = zip(labels, boxes.tolist(), strict=True)
    return torch.stack([soft_resized_crop(lab, *box, size, classes) for lab, box in pairs])


def onehot(labels, boxes, case):
    """Crop (padding with ignore), one-hot in float32, F.interpolate (bilinear, antialias)."""
    _, classes, size, _ = CASES[case]
    outs = []
    for lab, (top, left, bh, bw) in zip(labels, boxes.astype(int).tolist(), strict=True):
        H, W = lab.shape
        crop = torch.full((bh, bw), classes, dtype=torch.long, device=lab.device)
        y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + bh, H), min(left + bw, W)
        if y1 > y0 and x1 > x0:
            part = lab[y0:y1, x0:x1].long()
            crop[y0 - top : y1 - top, x0 - left : x1 - left] = part.masked_fill(
                part == IGNORE, classes
            )
        hot = torch.zeros(1, classes + 1, bh, bw, device=lab.device).scatter_(
            1, crop[None, None], 1.0
        )
        outs.append(F.interpolate(hot[:, :classes], size=size, mode="bilinear", antialias=True))
    return torch.cat(outs)


SIDES = {"softseg batch": ours, "loop": loop, "one-hot": onehot}


# --------------------------------------------------------------------------- measurements
def prepare_call(side, case, batch, device):
    """Inputs of one side on ``device`` and the call whose peak memory is measured."""
    labels = make_labels(case, batch, device)
    boxes = draw_boxes(labels, case, 0)
    return lambda: SIDES[side](labels, boxes, case)


def timings(case, batch, device, repeat):
    """Median seconds per side over ``repeat`` fresh draws, and the largest differences from ours."""
    labels = make_labels(case, batch, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    outs = {name: fn(labels, draw_boxes(labels, case, 0), case) for name, fn in SIDES.items()}
    diffs = {name: (out - outs["softseg batch"]).abs().max().item() for name, out in outs.items()}
    del outs
    times = {name: [] for name in SIDES}
    for r in range(repeat):
        boxes = draw_boxes(labels, case, 1 + r)
        for name, fn in SIDES.items():
            sync()
            t0 = time.perf_counter()
            fn(labels, boxes, case)
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, diffs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=5, help="timed draws of each side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cases", nargs="+", default=["cityscapes", "ade20k"], choices=list(CASES))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"batch={args.batch} repeat={args.repeat}")  # fmt: skip
    header = (
        f"{'case':<12}{'side':<15}{'ms':>9}{'x ours':>8}{'peak MB':>9}{'x ours':>8}{'max diff':>10}"
    )
    print(header)
    print("-" * len(header))
    for case in args.cases:
        t, diffs = timings(case, args.batch, args.device, args.repeat)
        mem = {}
        if not args.no_memory:
            mem = {
                name: peak_bytes(prepare_call, (name, case, args.batch, args.device), args.device)
                for name in SIDES
            }
        for name in SIDES:
            row = f"{case:<12}{name:<15}{t[name] * 1e3:>9.1f}{t[name] / t['softseg batch']:>8.2f}"
            if mem:
                row += f"{mem[name] / 2**20:>9.1f}{mem[name] / mem['softseg batch']:>8.2f}"
            else:
                row += f"{'-':>9}{'-':>8}"
            print(row + f"{diffs[name]:>10.1e}", flush=True)


if __name__ == "__main__":
    main()
