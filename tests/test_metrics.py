import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from softseg.train.metrics import (
    SegmentationMetrics,
    boundary_band,
    confusion_matrix,
    iou_from_confusion,
    mean_accuracy,
    miou,
    pixel_accuracy,
)

# A 2x4 example with one ignored pixel; the pairs (gt, pred) that count are
# (0,0) (0,1) (1,1) (2,2) (1,1) (1,0) (0,0).
TARGET = torch.tensor([[[0, 0, 1, 255], [2, 1, 1, 0]]])
PRED = torch.tensor([[[0, 1, 1, 2], [2, 1, 0, 0]]])
EXPECTED = torch.tensor([[2, 1, 0], [1, 2, 0], [0, 0, 1]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TARGET, 3)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, EXPECTED)
    assert torch.equal(confusion_matrix(PRED[0], TARGET[0], 3), EXPECTED)  # (H, W) too
    assert torch.equal(confusion_matrix(PRED.to(torch.uint8), TARGET.to(torch.uint8), 3), EXPECTED)


def test_scores_by_hand():
    # IoU_0 = 2 / (3 + 3 - 2), IoU_1 = 2 / (3 + 3 - 2), IoU_2 = 1 / 1
    iou = iou_from_confusion(EXPECTED)
    assert iou.dtype == torch.float64
    torch.testing.assert_close(iou, torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64))
    assert miou(EXPECTED).item() == pytest.approx(2 / 3)
    assert pixel_accuracy(EXPECTED).item() == pytest.approx(5 / 7)
    assert mean_accuracy(EXPECTED).item() == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_absent_classes():
    target = torch.tensor([[0, 0], [1, 1]])
    pred = torch.tensor([[0, 3], [1, 1]])  # class 2 nowhere; class 3 predicted, never true
    cm = confusion_matrix(pred, target, 4)
    assert cm.tolist() == [[1, 0, 0, 1], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    iou = iou_from_confusion(cm)
    assert iou[:2].tolist() == [0.5, 1.0]
    assert math.isnan(iou[2]) and iou[3].item() == 0.0
    assert miou(cm).item() == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3, NaN left out
    assert mean_accuracy(cm).item() == pytest.approx(0.75)  # classes 0 and 1 have ground truth
    assert pixel_accuracy(cm).item() == pytest.approx(0.75)
    empty = torch.zeros(3, 3, dtype=torch.int64)
    assert all(math.isnan(f(empty).item()) for f in (miou, pixel_accuracy, mean_accuracy))


def test_ignore_handling():
    target = torch.full((2, 3), 255)
    pred = torch.zeros(2, 3, dtype=torch.long)
    assert confusion_matrix(pred, target, 2).sum() == 0
    target[0, 0] = 1
    assert confusion_matrix(pred, target, 2).tolist() == [[0, 0], [1, 0]]
    # a different ignore value, and none at all
    assert confusion_matrix(pred, torch.ones(2, 3, dtype=torch.long), 2, ignore_index=1).sum() == 0
    assert confusion_matrix(pred, pred, 2, ignore_index=None).tolist() == [[6, 0], [0, 0]]


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (
            torch.full((2, 2), 3),
            torch.zeros(2, 2, dtype=torch.long),
            r"pred hold 4 pixels with values \[3\] outside \[0, 3\)",
        ),
        (torch.full((2, 2), -1), torch.zeros(2, 2, dtype=torch.long), r"pred hold .* \[-1\]"),
        (torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 7), r"target hold .* \[7\]"),
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), "one shape"),
        (torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), "pred must hold integer"),
    ],
)
def test_confusion_matrix_errors(pred, target, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred, target, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_confusion_matrix_on_cuda():
    cm = confusion_matrix(PRED.cuda(), TARGET.cuda(), 3)
    assert cm.device.type == "cuda" and torch.equal(cm.cpu(), EXPECTED)


# --------------------------------------------------------------------------- the accumulator
def test_accumulates_and_reports_percent():
    m = SegmentationMetrics(3, class_names=["road", "car", "sky"])
    m.update(PRED, TARGET)
    m.update(PRED, TARGET)
    assert torch.equal(m.matrix, 2 * EXPECTED)
    out = m.compute()
    assert out["miou"] == pytest.approx(200 / 3)
    assert out["pixel_acc"] == pytest.approx(500 / 7)
    assert out["mean_acc"] == pytest.approx(700 / 9)
    assert out["iou"] == pytest.approx([50.0, 50.0, 100.0])
    assert out["per_class"] == pytest.approx({"road": 50.0, "car": 50.0, "sky": 100.0})
    m.reset()
    assert m.matrix.sum() == 0


def test_compute_is_json_friendly_with_absent_classes():
    m = SegmentationMetrics(4)
    m.update(torch.tensor([[0, 3], [1, 1]]), torch.tensor([[0, 0], [1, 1]]))
    out = m.compute()
    assert out["iou"] == [50.0, 100.0, None, 0.0]
    assert "per_class" not in out
    json.dumps(out, allow_nan=False)
    empty = SegmentationMetrics(2).compute()
    assert empty["miou"] is None and empty["iou"] == [None, None]
    json.dumps(empty, allow_nan=False)


def test_logits_are_upsampled_bilinearly_to_the_labels():
    # class-1 margin -3 .. 1 over two columns; bilinear (align_corners=False) to 8 columns gives
    # -3, -3, -2.5, -1.5, -0.5, 0.5, 1, 1: five pixels of class 0 (nearest would give four)
    logits = torch.tensor([[[[0.0, 0.0]], [[-3.0, 1.0]]]])  # (1, 2, 1, 2)
    target = torch.ones(1, 1, 8, dtype=torch.long)
    m = SegmentationMetrics(2)
    m.update(logits, target)
    assert m.matrix.tolist() == [[0, 0], [5, 3]]


def test_logits_path_equals_manual_interpolation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, 7, generator=g)
    target = torch.randint(0, 4, (3, 20, 27), generator=g)
    target[:, :3] = 255
    m = SegmentationMetrics(4)
    m.update(logits, target)
    up = F.interpolate(logits, size=(20, 27), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(m.matrix, confusion_matrix(up, target, 4))
    m.reset()
    m.update(logits[0], target[0])  # unbatched (C, h, w) with (H, W)
    assert torch.equal(m.matrix, confusion_matrix(up[0], target[0], 4))
    m.reset()
    m.update(up, target)  # integer predictions at the label size are taken as they are
    assert torch.equal(m.matrix, confusion_matrix(up, target, 4))


def test_update_errors():
    m = SegmentationMetrics(3)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="2 channels but num_classes is 3"):
        m.update(torch.zeros(1, 2, 4, 4), target)
    with pytest.raises(ValueError, match="larger than the target"):
        m.update(torch.zeros(1, 3, 8, 4), target)
    with pytest.raises(ValueError, match="differ in shape"):
        m.update(torch.zeros(1, 2, 4, dtype=torch.long), target)
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        m.update(torch.zeros(3, 4, 4), target)
    with pytest.raises(ValueError, match="2 names but num_classes is 3"):
        SegmentationMetrics(3, class_names=["a", "b"])


def test_all_reduce_is_a_no_op_without_a_process_group(tmp_path):
    m = SegmentationMetrics(3)
    m.update(PRED, TARGET)
    m.all_reduce()
    assert torch.equal(m.matrix, EXPECTED)
    # and sums over a (one-process) group when there is one
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        m.all_reduce()
        assert torch.equal(m.matrix, EXPECTED)
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- boundary, calibration
def test_boundary_band_by_hand():
    label = torch.tensor(
        [
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 1, 1],
            [0, 0, 0, 1, 1],
        ]
    )
    # width 1: a pixel is in the band when its 3x3 window (cut at the border) holds a 1 and a 0
    expected = torch.tensor(
        [
            [0, 0, 0, 0, 0],
            [0, 0, 1, 1, 1],
            [0, 0, 1, 1, 1],
            [0, 0, 1, 1, 0],  # the corner's window, cut at the border, holds only 1s
        ],
        dtype=torch.bool,
    )
    assert torch.equal(boundary_band(label, 1), expected)
    assert not boundary_band(label, 0).any()
    assert boundary_band(label, 3).all()  # every window reaches the corner region
    assert torch.equal(boundary_band(label[None], 1)[0], expected)  # (N, H, W) too
    with pytest.raises(ValueError, match="non-negative int"):
        boundary_band(label, -1)


def test_boundary_iou_by_hand():
    # one row: gt 0 0 0 0 1 1 1 1, pred 0 0 0 1 1 1 1 1 (the edge one pixel off)
    gt = torch.tensor([[[0, 0, 0, 0, 1, 1, 1, 1]]])
    pred = torch.tensor([[[0, 0, 0, 1, 1, 1, 1, 1]]])
    m = SegmentationMetrics(2, boundary_width=1)
    m.update(pred, gt)
    out = m.compute()
    # band = columns 3 and 4 (windows that see both values): gt 0,1 / pred 1,1
    # class 0: tp 0, fn 1 -> IoU 0; class 1: tp 1, fp 1 -> IoU 1/2
    assert out["boundary_iou"] == pytest.approx([0.0, 50.0])
    assert out["boundary_miou"] == pytest.approx(25.0)
    # over all pixels: class 0 IoU 3/4, class 1 IoU 4/5
    assert out["iou"] == pytest.approx([75.0, 80.0])
    assert out["ece"] is None and out["nll"] is None  # no logits were counted


def test_calibration_by_hand():
    # two classes, four valid pixels and one ignored; logits give p(class 1) = 0.85 or 0.65
    p = torch.tensor([0.85, 0.85, 0.65, 0.65, 0.5])
    logits = torch.stack([torch.zeros(5), torch.log(p / (1 - p))])[None, :, None, :]  # (1,2,1,5)
    target = torch.tensor([[[1, 0, 1, 1, 255]]])
    m = SegmentationMetrics(2, boundary_width=0, calibration_bins=10)
    m.update(logits, target)
    out = m.compute()
    # bin 8: conf 0.85 x2, one right -> |0.5 - 0.85| * 2; bin 6: conf 0.65 x2, both right
    assert out["ece"] == pytest.approx(100 * (0.35 * 2 + 0.35 * 2) / 4)
    nll = -(math.log(0.85) + math.log(0.15) + 2 * math.log(0.65)) / 4
    assert out["nll"] == pytest.approx(nll, rel=1e-5)
    assert out["boundary_miou"] is None  # width 0: no pixel in the band


def test_calibration_uses_the_full_resolution_softmax():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 8, 10))
    target[0, :2] = 255
    m = SegmentationMetrics(3)
    m.update(logits, target)
    full = F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=False)
    logp = full.log_softmax(1).movedim(1, -1)[target != 255]
    truth = target[target != 255]
    nll = -logp.gather(1, truth[:, None]).mean()
    assert m.compute()["nll"] == pytest.approx(float(nll), rel=1e-5)
