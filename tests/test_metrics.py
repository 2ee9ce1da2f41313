import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from softseg.metrics import (
    SegmentationMetrics,
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
        (torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long), r"pred values .* \[3, 3\]"),
        (torch.full((2, 2), -1), torch.zeros(2, 2, dtype=torch.long), "pred values"),
        (torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 7), "target"),
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
