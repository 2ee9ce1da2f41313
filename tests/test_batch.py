"""soft_resized_crop_batch: one pass over a batch equals soft_resized_crop on every sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import IGNORE, make_labels
from softseg.ops import _fast
from softseg.ops import batch as batch_mod
from softseg.ops.batch import soft_resized_crop_batch
from softseg.ops.kernels import KERNELS, Resampler
from softseg.ops.resample import soft_downsample, soft_resized_crop

TOL = 1e-5
# every resampler soft_resized_crop takes: kernel x antialias x align_corners x convention
RESAMPLERS = [
    Resampler(kernel, antialias=aa, align_corners=ac, convention="torch")
    for kernel in KERNELS["torch"]
    for aa in (True, False)
    for ac in ((False, True) if kernel in ("bilinear", "bicubic") else (False,))
] + [Resampler(kernel, convention="pil") for kernel in KERNELS["pil"]]


# --------------------------------------------------------------------------- helpers
def random_batch(seed: int, n: int, num_classes: int, max_hw: int = 30, dtype=torch.uint8,
                 shape=None):  # fmt: skip
    """``n`` maps of one (random) size (block, stripe and noise styles, ignore patches)."""
    rng = np.random.default_rng(seed)
    H, W = shape or (int(v) for v in rng.integers(2, max_hw, 2))
    styles = ["noise", "blocks", "stripes", "constant"]
    maps = [
        make_labels(rng, H, W, num_classes, styles[i % 4], [0.0, 0.2, 1.0][i % 3]) for i in range(n)
    ]
    return torch.from_numpy(np.stack(maps)).to(dtype)


def random_boxes(seed: int, shapes) -> np.ndarray:
    """Boxes inside, partly outside, wholly outside, fractional and whole-pixel, per map shape."""
    rng = np.random.default_rng(seed + 1000)
    rows = []
    for i, (H, W) in enumerate(shapes):
        kind = i % 4
        if kind == 0:  # inside, fractional
            top, left = rng.uniform(0, H / 2), rng.uniform(0, W / 2)
            box = [top, left, rng.uniform(0.5, H - top), rng.uniform(0.5, W - left)]
        elif kind == 1:  # partly outside
            box = [
                rng.uniform(-H, H),
                rng.uniform(-W, W),
                rng.uniform(1, 2 * H),
                rng.uniform(1, 2 * W),
            ]
        elif kind == 2:  # whole pixels, larger than the map
            box = [-2.0, -1.0, H + 4.0, W + 3.0]
        else:  # wholly outside on some draws
            box = [rng.uniform(-3 * H, -H), rng.uniform(0, W), H / 2, W / 2]
        rows.append(box)
    return np.asarray(rows)


def per_sample(maps, boxes, size, num_classes, **kwargs) -> list[torch.Tensor]:
    return [
        soft_resized_crop(m, *box, size, num_classes, **kwargs)
        for m, box in zip(maps, boxes.tolist(), strict=True)
    ]


def assert_matches(out: torch.Tensor, expected: list[torch.Tensor]) -> None:
    assert out.dtype == torch.float32
    assert out.shape[0] == len(expected)
    for n, ref in enumerate(expected):
        assert out[n].shape == ref.shape
        err = (out[n] - ref).abs().max().item()
        assert err <= TOL, f"sample {n}: max error {err}"


@pytest.fixture(params=[False, True], ids=["columns first", "rows first"])
def order(request, monkeypatch):
    """Force one order of the two passes (the planner picks by estimated cost)."""
    monkeypatch.setattr(batch_mod, "_transposed", lambda *args: request.param)
    return request.param


# --------------------------------------------------------------------------- equality
@pytest.mark.parametrize("rs", RESAMPLERS, ids=repr)
def test_matches_per_sample_for_every_resampler(rs):
    seed = RESAMPLERS.index(rs)
    C = [1, 3, 7, 20][seed % 4]
    labels = random_batch(seed, 6, C)
    boxes = random_boxes(3, [labels.shape[1:]] * 6)
    size = (5, 7)
    out = soft_resized_crop_batch(labels, boxes, size, C, resampler=rs)
    assert_matches(out, per_sample(labels, boxes, size, C, resampler=rs))


@pytest.mark.parametrize("num_classes", [1, 2, 5, 20])
@pytest.mark.parametrize("size", [(1, 1), (4, 9), (23, 6)])
def test_matches_per_sample_in_both_orders(order, num_classes, size):
    labels = random_batch(num_classes * 31 + size[0], 5, num_classes, max_hw=40)
    boxes = random_boxes(num_classes, [labels.shape[1:]] * 5)
    for kernel in ("bilinear", "bicubic"):
        out = soft_resized_crop_batch(labels, boxes, size, num_classes, kernel=kernel)
        assert_matches(out, per_sample(labels, boxes, size, num_classes, kernel=kernel))


@pytest.mark.parametrize("block_bytes", [1, 3000, 40_000, 1 << 30])
def test_blocking_changes_nothing(block_bytes):
    """From one output row per block to the whole batch in one block."""
    labels = random_batch(7, 5, 4, max_hw=40)
    boxes = random_boxes(7, [labels.shape[1:]] * 5)
    rs = Resampler("bilinear")
    fast = _fast.FastPath(block_bytes=block_bytes)
    out = batch_mod._soft_batch(labels, boxes, (9, 11), 4, None, IGNORE, rs, fast)
    assert_matches(out, per_sample(labels, boxes, (9, 11), 4))


def test_block_budget_bounds_the_partial_sums(monkeypatch):
    seen = []
    real = _fast._batch_first_pass

    def spy(*args):
        acc = real(*args)
        seen.append(acc.numel() * acc.element_size())
        return acc

    monkeypatch.setattr(_fast, "_batch_first_pass", spy)
    labels = random_batch(11, 6, 5, shape=(60, 50))
    boxes = np.tile([0.0, 0.0, *labels.shape[1:]], (6, 1))
    budget = 64_000
    fast = _fast.FastPath(block_bytes=budget)
    out = batch_mod._soft_batch(labels, boxes, (20, 20), 5, None, IGNORE, Resampler(), fast)
    assert_matches(out, per_sample(labels, boxes, (20, 20), 5))
    assert len(seen) > 1 and max(seen) <= budget


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 5),
    num_classes=st.integers(1, 20),
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    rs=st.sampled_from(RESAMPLERS),
)
def test_random_batches_match_per_sample(seed, n, num_classes, size, rs):
    labels = random_batch(seed, n, num_classes)
    boxes = random_boxes(seed, [labels.shape[1:]] * n)
    out = soft_resized_crop_batch(labels, boxes, size, num_classes, resampler=rs)
    assert_matches(out, per_sample(labels, boxes, size, num_classes, resampler=rs))


def test_one_box_for_all_is_soft_downsample():
    labels = random_batch(5, 4, 6, max_hw=33)
    H, W = labels.shape[1:]
    out = soft_resized_crop_batch(labels, [[0, 0, H, W]] * 4, (7, 5), 6, kernel="area")
    ref = soft_downsample(labels, (7, 5), 6, kernel="area")
    assert (out - ref).abs().max().item() <= TOL


# --------------------------------------------------------------------------- sizes and lists
def ragged_maps(seed: int, n: int, num_classes: int):
    rng = np.random.default_rng(seed)
    return [
        make_labels(
            rng, int(rng.integers(2, 30)), int(rng.integers(2, 30)), num_classes, "blocks", 0.1
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("rs", [Resampler("bilinear"), Resampler("bicubic", antialias=False),
                                Resampler("box", convention="pil")], ids=repr)  # fmt: skip
def test_list_of_maps_matches_each_map(rs):
    maps = ragged_maps(1, 6, 5)
    boxes = random_boxes(2, [m.shape for m in maps])
    out = soft_resized_crop_batch(
        [torch.from_numpy(m) for m in maps], boxes, (6, 8), 5, resampler=rs
    )
    assert_matches(out, per_sample(maps, boxes, (6, 8), 5, resampler=rs))


def test_padded_tensor_with_sizes_never_reads_the_padding():
    """Filters at a map's true border see its end, not the padding, whatever the padding holds."""
    maps = ragged_maps(4, 5, 3)
    H, W = max(m.shape[0] for m in maps), max(m.shape[1] for m in maps)
    boxes = np.array([[0.0, 0.0, *m.shape] for m in maps])  # filters reach past the border
    expected = per_sample(maps, boxes, (5, 5), 3, kernel="bicubic", antialias=False)
    for fill in (IGNORE, 0, 2):
        padded = np.full((5, H, W), fill, dtype=np.int64)
        for i, m in enumerate(maps):
            padded[i, : m.shape[0], : m.shape[1]] = m
        sizes = [m.shape for m in maps]
        out = soft_resized_crop_batch(
            padded, boxes, (5, 5), 3, sizes=sizes, kernel="bicubic", antialias=False
        )
        assert_matches(out, expected)


def test_without_sizes_the_padded_map_is_the_map():
    maps = ragged_maps(6, 4, 3)
    H, W = max(m.shape[0] for m in maps), max(m.shape[1] for m in maps)
    padded = np.full((4, H, W), IGNORE, dtype=np.int64)
    for i, m in enumerate(maps):
        padded[i, : m.shape[0], : m.shape[1]] = m
    boxes = np.array([[0.0, 0.0, *m.shape] for m in maps])
    out = soft_resized_crop_batch(padded, boxes, (4, 4), 3)
    assert_matches(out, per_sample(padded, boxes, (4, 4), 3))


# --------------------------------------------------------------------------- labels and dtypes
@pytest.mark.parametrize("ignore_index", [None, 255, 1, -1])
def test_ignore_values(ignore_index):
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 4, (3, 12, 10))
    if ignore_index is not None and not 0 <= ignore_index < 4:
        labels[rng.random(labels.shape) < 0.3] = ignore_index
    boxes = random_boxes(9, [labels.shape[1:]] * 3)
    out = soft_resized_crop_batch(labels, boxes, (4, 5), 4, ignore_index=ignore_index)
    assert_matches(out, per_sample(labels, boxes, (4, 5), 4, ignore_index=ignore_index))
    if ignore_index == 1:
        assert out[:, 1].abs().max().item() == 0.0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_label_dtypes(dtype):
    labels = random_batch(13, 3, 6, dtype=dtype)
    boxes = random_boxes(13, [labels.shape[1:]] * 3)
    out = soft_resized_crop_batch(labels, boxes, (3, 4), 6)
    assert_matches(out, per_sample(labels, boxes, (3, 4), 6))


def test_more_classes_than_uint8_holds():
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 9, 9))).to(torch.uint8)
    boxes = np.array([[0.5, 0.0, 8.0, 9.0], [-1.0, 1.0, 9.0, 7.0]])
    out = soft_resized_crop_batch(labels, boxes, (3, 3), 300)
    assert_matches(out, per_sample(labels, boxes, (3, 3), 300))
    assert out[:, 255].abs().max().item() == 0.0  # 255 is the ignore value, not class 255


def test_input_forms_agree():
    labels = random_batch(21, 3, 4)
    boxes = random_boxes(21, [labels.shape[1:]] * 3)
    ref = soft_resized_crop_batch(labels, boxes, 4, 4)
    assert ref.shape == (3, 4, 4, 4)
    for lab in (labels.numpy(), list(labels), [m.numpy() for m in labels]):
        for box in (torch.from_numpy(boxes).float().double(), boxes.tolist()):
            assert torch.equal(soft_resized_crop_batch(lab, box, (4, 4), 4), ref)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(labels=torch.zeros(4, 5, dtype=torch.long)), r"\(N, H, W\) batch or a list"),
        (dict(labels=torch.zeros(2, 4, 5)), "integer class indices"),
        (dict(labels=[]), "at least one map"),
        (dict(labels=[torch.zeros(2, 4, 5, dtype=torch.long)]), r"labels\[0\] must be an \(H, W\)"),
        (dict(boxes=[[0, 0, 1, 1]]), "one box per sample: 2 samples, got 1"),
        (dict(boxes=[[0, 0, 1], [0, 0, 1]]), r"shape \(N, 4\)"),
        (dict(boxes=[[0, 0, 1, 1], [0, float("nan"), 1, 1]]), r"finite, got boxes\[1\]"),
        (dict(boxes=[[0, 0, 1, 1], [0, 0, 0, 1]]), r"positive height and width, got boxes\[1\]"),
        (dict(boxes=[[0, 0, 1, -2], [0, 0, 1, 1]]), r"positive height and width, got boxes\[0\]"),
        (dict(boxes="abc"), "array of numbers"),
        (dict(size=(0, 3)), "size must be positive"),
        (dict(size=(2.5, 3)), "size must be"),
        (dict(size=(1, 2, 3)), "size must be"),
        (dict(num_classes=0), "num_classes must be a positive int"),
        (dict(num_classes=2.0), "num_classes must be a positive int"),
        (dict(labels=torch.full((2, 4, 5), 7)), r"values \[7\] outside \[0, 3\)"),
        (dict(sizes=[[4, 5]]), r"sizes must be 2 integer"),
        (dict(sizes=[[4, 5], [5, 5]]), r"sizes\[1\] must lie in \[1, 4\] x \[1, 5\]"),
        (dict(sizes=[[4.0, 5.0], [4.0, 5.0]]), "sizes must be 2 integer"),
        (dict(labels=[torch.zeros(4, 5, dtype=torch.long)] * 2, sizes=[[4, 5]] * 2), "sizes=None"),
        (dict(kernel="lanczos"), "not available with convention='torch'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    args = dict(labels=torch.zeros(2, 4, 5, dtype=torch.long), boxes=[[0, 0, 4, 5]] * 2,
                size=(2, 2), num_classes=3)  # fmt: skip
    args.update(kwargs)
    labels, boxes, size, num_classes = (
        args.pop(k) for k in ("labels", "boxes", "size", "num_classes")
    )
    with pytest.raises(ValueError, match=message):
        soft_resized_crop_batch(labels, boxes, size, num_classes, **args)


def test_resampler_and_loose_arguments_exclude_each_other():
    with pytest.raises(ValueError, match="not both"):
        soft_resized_crop_batch(
            torch.zeros(1, 3, 3, dtype=torch.long), [[0, 0, 3, 3]], 2, 2,
            resampler=Resampler(), kernel="area",
        )  # fmt: skip


# --------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_and_queues_without_syncs():
    labels = random_batch(17, 6, 19, max_hw=60)
    boxes = random_boxes(17, [labels.shape[1:]] * 6)
    cpu = soft_resized_crop_batch(labels, boxes, (13, 17), 19, kernel="bicubic")
    gpu_labels = labels.cuda()
    gpu = soft_resized_crop_batch(gpu_labels, boxes, (13, 17), 19, kernel="bicubic")
    assert gpu.device == gpu_labels.device and gpu.dtype == torch.float32
    assert (gpu.cpu() - cpu).abs().max().item() <= TOL
    # after the label check, planning and queueing the work never waits for the device
    rs, fast = Resampler("bilinear"), _fast.FastPath(block_bytes=50_000)
    rows = [batch_mod._axis(labels.shape[1], 13, rs, b[0], b[2]) for b in boxes.tolist()]
    cols = [batch_mod._axis(labels.shape[2], 17, rs, b[1], b[3]) for b in boxes.tolist()]
    by, bx = batch_mod._band(rows), batch_mod._band(cols)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = batch_mod._soft_from_bands(gpu_labels, by, bx, 19, IGNORE, fast)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref = soft_resized_crop_batch(labels, boxes, (13, 17), 19, kernel="bilinear")
    assert (out.cpu() - ref).abs().max().item() <= TOL
