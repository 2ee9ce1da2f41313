"""softseg.soft_downsample against the obvious implementation: one-hot, then F.interpolate
(``--convention cv2``: one-hot, then ``cv2.resize`` per channel).

Prints, per case and kernel, the median time of each (measured side by side, interleaved, on one
thread) and the peak extra memory of each, with the ratios. Peak memory on the CPU is the rise of the
process's peak resident set (VmHWM, reset before the call) in a fresh child process per measurement,
so that neither side profits from memory the allocator kept from the other; on CUDA it is
``torch.cuda.max_memory_allocated`` above the inputs.

    python benchmarks/bench_downsample.py                 # CPU, both cases, all torch kernels
    python benchmarks/bench_downsample.py --device cuda
    python benchmarks/bench_downsample.py --device cuda --block-mb 8 --run-path never  # a sweep point
    python benchmarks/bench_downsample.py --convention cv2   # OpenCV's operators (CPU)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from peak_memory import peak_bytes

from softseg.ops import Resampler
from softseg.ops import resample as ops_resample
from softseg.ops._fast import FastPath

# (name, input (H, W), output (h, w), classes)
CASES = {
    "cityscapes": ((1024, 2048), (256, 512), 19),
    "ade20k": ((512, 683), (128, 171), 150),
}
# (label, interpolate mode, antialias)
KERNELS = [
    ("nearest", "nearest", False),
    ("area", "area", False),
    ("bilinear", "bilinear", False),
    ("bilinear-aa", "bilinear", True),
    ("bicubic", "bicubic", False),
    ("bicubic-aa", "bicubic", True),
]
# OpenCV's kernels under softseg's names (label, cv2 flag name); cv2 never antialiases
CV2_KERNELS = [
    ("nearest", "INTER_NEAREST"),
    ("area", "INTER_AREA"),
    ("bilinear", "INTER_LINEAR"),
    ("bicubic", "INTER_CUBIC"),
    ("lanczos", "INTER_LANCZOS4"),
]
IGNORE = 255


def street_like_labels(shape, num_classes, seed=0):
    """A piecewise-constant map: regions of random classes, 1-3 px poles, and ignored patches."""
    g = torch.Generator().manual_seed(seed)
    H, W = shape
    coarse = torch.randint(0, num_classes, (H // 32 + 1, W // 32 + 1), generator=g)
    labels = coarse.repeat_interleave(32, 0).repeat_interleave(32, 1)[:H, :W].clone()
    for _ in range(W // 40):  # thin vertical structures
        x = int(torch.randint(0, W - 3, (1,), generator=g))
        width = int(torch.randint(1, 4, (1,), generator=g))
        labels[H // 4 :, x : x + width] = int(torch.randint(0, num_classes, (1,), generator=g))
    for _ in range(6):  # void patches
        y, x = (
            int(torch.randint(0, H - 40, (1,), generator=g)),
            int(torch.randint(0, W - 60, (1,), generator=g)),
        )
        labels[y : y + 40, x : x + 60] = IGNORE
    return labels.to(torch.uint8 if num_classes < 255 else torch.int64)


def reference(labels, size, num_classes, mode, antialias, fast):
    """The obvious way: a one-hot map at full resolution (ignore as a dropped extra channel)."""
    codes = labels.long().masked_fill(labels.long() == IGNORE, num_classes)
    onehot = F.one_hot(codes, num_classes + 1)[..., :num_classes].permute(2, 0, 1)[None].float()
    extra = (
        {"antialias": antialias, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
    )
    return F.interpolate(onehot, size=size, mode=mode, **extra)[0]


def reference_cv2(labels, size, num_classes, flag_name, antialias, fast):
    """The obvious way with OpenCV: a float32 one-hot, then ``cv2.resize`` on each channel."""
    import cv2

    codes = labels.numpy()
    onehot = (codes[None] == np.arange(num_classes, dtype=codes.dtype)[:, None, None]).astype(
        np.float32
    )
    flag = getattr(cv2, flag_name)
    return torch.from_numpy(
        np.stack([cv2.resize(plane, size[::-1], interpolation=flag) for plane in onehot])
    )


def ours(labels, size, num_classes, mode, antialias, fast):
    """softseg.soft_downsample, with the fast path's settings of this run (``fast``)."""
    rs = Resampler(mode, antialias=antialias)
    box = (0, 0, *labels.shape[-2:])
    return ops_resample._soft_labels(labels, box, size, num_classes, IGNORE, rs, fast)


def ours_cv2(labels, size, num_classes, flag_name, antialias, fast):
    """softseg.soft_downsample with ``convention="cv2"`` and the kernel named like ``flag_name``."""
    kernel = dict((flag, label) for label, flag in CV2_KERNELS)[flag_name]
    rs = Resampler(kernel, convention="cv2")
    box = (0, 0, *labels.shape[-2:])
    return ops_resample._soft_labels(labels, box, size, num_classes, IGNORE, rs, fast)


FUNCS = {
    "torch": {"reference": reference, "softseg": ours},
    "cv2": {"reference": reference_cv2, "softseg": ours_cv2},
}


def prepare_call(which, case, mode, antialias, fast, device, convention="torch"):
    """Inputs of one side on ``device`` and the call whose peak memory is measured."""
    shape, size, classes = CASES[case]
    labels = street_like_labels(shape, classes).to(device)
    return lambda: FUNCS[convention][which](labels, size, classes, mode, antialias, fast)


def median_times(case, mode, antialias, device, repeat, fast, convention="torch"):
    shape, size, classes = CASES[case]
    labels = street_like_labels(shape, classes).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    funcs = FUNCS[convention]
    times = {name: [] for name in funcs}
    outs = {}
    for name, fn in funcs.items():  # warm-up (weights are cached after the first call)
        outs[name] = fn(labels, size, classes, mode, antialias, fast)
    for _ in range(repeat):
        for name, fn in funcs.items():
            sync()
            t0 = time.perf_counter()
            fn(labels, size, classes, mode, antialias, fast)
            sync()
            times[name].append(time.perf_counter() - t0)
    ref, got = outs["reference"], outs["softseg"]
    # softseg clamps the negative lobes; compare where nothing was clamped
    if mode in ("bicubic", "INTER_CUBIC", "INTER_LANCZOS4"):
        keep = (ref >= 0).all(0) & (ref.sum(0) <= 1)
        err = (ref - got).abs().amax(0)[keep].max().item()
    else:
        err = (ref - got).abs().max().item()
    return {name: statistics.median(t) for name, t in times.items()}, err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls of each side")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    parser.add_argument(
        "--block-mb", type=int, help="softseg's partial-sum block on this device (tuning sweeps)"
    )
    parser.add_argument(
        "--run-path",
        choices=["auto", "always", "never"],
        help="softseg's first pass (tuning sweeps)",
    )
    parser.add_argument(
        "--convention",
        default="torch",
        choices=list(FUNCS),
        help="torch: against one-hot + F.interpolate; cv2: against one-hot + cv2.resize per channel",
    )
    args = parser.parse_args()
    if args.convention == "cv2" and args.device != "cpu":
        parser.error("--convention cv2 runs on the CPU only (OpenCV's resize is a CPU function)")
    fast = FastPath(
        run_path=args.run_path or "auto",
        block_bytes=None if args.block_mb is None else args.block_mb << 20,
    )
    torch.set_num_threads(1)
    if args.convention == "cv2":
        import cv2

        cv2.setNumThreads(1)  # one thread on both sides
        kernels = [(label, flag, False) for label, flag in CV2_KERNELS]
    else:
        kernels = KERNELS
    header = (
        f"{'case':<11}{'kernel':<13}{'ref ms':>9}{'ours ms':>9}{'speedup':>9}"
        f"{'ref MB':>9}{'ours MB':>9}{'mem ratio':>10}{'max err':>10}"
    )
    print(
        f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"block_mb={fast.block_bytes_on(args.device) >> 20} run_path={fast.run_path} "
        f"convention={args.convention}"
    )
    print(header)
    print("-" * len(header))
    for case in args.cases:
        for label, mode, antialias in kernels:
            t, err = median_times(
                case, mode, antialias, args.device, args.repeat, fast, args.convention
            )
            row = f"{case:<11}{label:<13}{t['reference'] * 1e3:>9.1f}{t['softseg'] * 1e3:>9.1f}"
            row += f"{t['reference'] / t['softseg']:>8.1f}x"
            if args.no_memory:
                row += f"{'-':>9}{'-':>9}{'-':>10}"
            else:
                ref_b = peak_bytes(
                    prepare_call,
                    ("reference", case, mode, antialias, fast, args.device, args.convention),
                    args.device,
                )
                our_b = peak_bytes(
                    prepare_call,
                    ("softseg", case, mode, antialias, fast, args.device, args.convention),
                    args.device,
                )
                row += f"{ref_b / 2**20:>9.1f}{our_b / 2**20:>9.1f}{our_b / ref_b:>10.3f}"
            print(row + f"{err:>10.1e}", flush=True)


if __name__ == "__main__":
    main()
