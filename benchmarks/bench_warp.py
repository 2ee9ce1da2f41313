"""soft_grid_sample against the obvious implementation: full one-hot, then F.grid_sample.

Each case rotates (10 degrees), scales (1.25) and crops the label map through one grid at the output
resolution (``resized_warp_grid``). Prints, per case and mode, the median time of each side (timed
interleaved, on one thread), the peak extra memory of each and the ratios, plus the largest
difference between the two. Peak memory on the CPU is the rise of the peak resident set (VmHWM,
reset before the call) in a fresh child process per measurement; on CUDA it is
``torch.cuda.max_memory_allocated`` above the inputs.

    python benchmarks/bench_warp.py                       # CPU, all cases, bilinear and bicubic
    python benchmarks/bench_warp.py --repeat 1 --cases small --no-memory   # smoke test
    python benchmarks/bench_warp.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from peak_memory import peak_bytes

from softseg.ops.grids import resized_warp_grid, rotation_affine
from softseg.ops.warp import soft_grid_sample

IGNORE = 255
# name: (input (H, W), output (h, w), classes)
CASES = {
    "cityscapes": ((1024, 2048), (512, 1024), 19),
    "cityscapes-quarter": ((1024, 2048), (256, 512), 19),
    "ade20k": ((512, 683), (512, 512), 150),
    "small": ((96, 128), (48, 64), 19),
}
MODES = ("bilinear", "bicubic")


def street_like_labels(shape, num_classes, seed=0):
    """Blocks of random classes, thin vertical structures (1-3 px) and ignored rectangles."""
    g = torch.Generator().manual_seed(seed)
    H, W = shape
    block = max(4, min(H, W) // 32)
    coarse = torch.randint(0, num_classes, (H // block + 1, W // block + 1), generator=g)
    labels = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)[:H, :W].clone()
    for x in torch.randint(0, W - 3, (W // 40 + 1,), generator=g).tolist():
        width = int(torch.randint(1, 4, (1,), generator=g))
        labels[H // 4 :, x : x + width] = int(torch.randint(0, num_classes, (1,), generator=g))
    for y, x in torch.randint(0, min(H, W) - H // 20 - 1, (6, 2), generator=g).tolist():
        labels[y : y + H // 20, x : x + W // 20] = IGNORE
    return labels.to(torch.uint8 if num_classes < IGNORE else torch.int64)


def make_inputs(case, device="cpu"):
    shape, size, classes = CASES[case]
    H, W = shape
    theta = rotation_affine(10.0, 1.25, size=shape)
    box = (H / 8, W / 8, 3 * H / 4, 3 * W / 4)
    grid = resized_warp_grid(shape, size, theta=theta, box=box)
    return street_like_labels(shape, classes).to(device), grid.to(device), classes


def reference(labels, grid, num_classes, mode):
    """The obvious way: a float one-hot at full resolution (ignore as a dropped extra channel)."""
    codes = labels.long().masked_fill(labels.long() == IGNORE, num_classes)
    onehot = F.one_hot(codes, num_classes + 1)[..., :num_classes].permute(2, 0, 1)[None].float()
    raw = F.grid_sample(onehot, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if mode != "bicubic":
        return raw
    valid = raw.sum(1, keepdim=True).clamp_(0.0, 1.0)  # same clamp as softseg
    pos = raw.clamp_(min=0.0)
    total = pos.sum(1, keepdim=True)
    return pos.mul_(torch.where(total > 0, valid / total.clamp(min=1e-12), 0.0))


def ours(labels, grid, num_classes, mode):
    return soft_grid_sample(labels, grid, num_classes, mode=mode, ignore_index=IGNORE)


FUNCS = {"reference": reference, "softseg": ours}


def prepare_call(which, case, mode, device):
    """Inputs of one side on ``device`` and the call whose peak memory is measured."""
    labels, grid, classes = make_inputs(case, device)
    return lambda: FUNCS[which](labels, grid, classes, mode)


def median_times(case, mode, device, repeat):
    labels, grid, classes = make_inputs(case, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = {name: [] for name in FUNCS}
    outs = {name: fn(labels, grid, classes, mode) for name, fn in FUNCS.items()}  # warm-up
    for _ in range(repeat):
        for name, fn in FUNCS.items():
            sync()
            t0 = time.perf_counter()
            fn(labels, grid, classes, mode)
            sync()
            times[name].append(time.perf_counter() - t0)
    err = (outs["reference"] - outs["softseg"]).abs().max().item()
    return {name: statistics.median(t) for name, t in times.items()}, err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls of each side")
    parser.add_argument(
        "--cases", nargs="+", default=["cityscapes", "cityscapes-quarter", "ade20k"],
        choices=list(CASES),
    )  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=["nearest", *MODES])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = (
        f"{'case':<20}{'mode':<10}{'ref ms':>9}{'ours ms':>9}{'speedup':>9}"
        f"{'ref MB':>9}{'ours MB':>9}{'mem ratio':>10}{'max err':>10}"
    )
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}")
    print(header)
    print("-" * len(header))
    for case in args.cases:
        for mode in args.modes:
            t, err = median_times(case, mode, args.device, args.repeat)
            row = f"{case:<20}{mode:<10}{t['reference'] * 1e3:>9.1f}{t['softseg'] * 1e3:>9.1f}"
            row += f"{t['reference'] / t['softseg']:>8.1f}x"
            if args.no_memory:
                row += f"{'-':>9}{'-':>9}{'-':>10}"
            else:
                ref_b = peak_bytes(
                    prepare_call, ("reference", case, mode, args.device), args.device
                )
                our_b = peak_bytes(prepare_call, ("softseg", case, mode, args.device), args.device)
                row += f"{ref_b / 2**20:>9.1f}{our_b / 2**20:>9.1f}{our_b / ref_b:>10.3f}"
            print(row + f"{err:>10.1e}", flush=True)


if __name__ == "__main__":
    main()
