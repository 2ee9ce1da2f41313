"""softseg.ops.labels: the label dtype policy, the one label range check, the negative-lobe clamp."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import clamp_rescale
from softseg.ops.labels import as_label_tensor, check_label_values, clamp_negative_lobes


# --------------------------------------------------------------------------- as_label_tensor
@pytest.mark.parametrize(
    "dtype, expected",
    [(np.uint8, torch.uint8), (np.int8, torch.int8), (np.int16, torch.int16),
     (np.int32, torch.int32), (np.int64, torch.int64), (np.uint16, torch.int64),
     (np.uint32, torch.int64)],
)  # fmt: skip
def test_as_label_tensor_dtypes(dtype, expected):
    arr = np.arange(6, dtype=dtype).reshape(2, 3)
    out = as_label_tensor(arr)
    assert out.dtype == expected and out.tolist() == arr.tolist()
    assert as_label_tensor(torch.from_numpy(arr.astype(np.int32))).dtype == torch.int32


def test_as_label_tensor_refuses():
    with pytest.raises(TypeError, match="torch.Tensor or numpy array, got list"):
        as_label_tensor([[0, 1]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer class indices, got dtype torch.float32"):
        as_label_tensor(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, H, W\), got shape \(2, 2, 2, 2\)"):
        as_label_tensor(torch.zeros(2, 2, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must not be empty, got shape \(0, 3\)"):
        as_label_tensor(np.zeros((0, 3), dtype=np.int64))


# --------------------------------------------------------------------------- check_label_values
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int64])
def test_check_label_values_accepts_classes_and_ignore(dtype):
    labels = torch.tensor([[0, 1, 2], [255, 2, 0]], dtype=dtype)
    check_label_values(labels, 3, 255)
    check_label_values(labels, 256, None)  # 255 is a class there
    check_label_values(labels[labels != 255], 3, None)
    check_label_values(torch.zeros(0, 4, dtype=dtype), 3, None)  # nothing to check


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 255), min_size=1, max_size=12),
    num_classes=st.integers(1, 255),
    ignore_index=st.one_of(st.none(), st.integers(0, 300)),
)
def test_check_label_values_uint8_agrees_with_the_rule(values, num_classes, ignore_index):
    """uint8 maps take a two-reduction shortcut (classes below, one ignore value above): it
    must accept and refuse exactly what the definition does."""
    labels = torch.tensor(values, dtype=torch.uint8).view(1, -1)
    valid = all(v < num_classes or v == ignore_index for v in values)
    if valid:
        check_label_values(labels, num_classes, ignore_index)
    else:
        with pytest.raises(ValueError, match="outside"):
            check_label_values(labels, num_classes, ignore_index)


@pytest.mark.parametrize("num_classes", [1, 19, 150, 254, 255])
@pytest.mark.parametrize("ignore_index", [19, 200, 254, 255])
def test_check_label_values_uint8_edges(num_classes, ignore_index):
    """The values next to the class range and to the ignore value, one by one."""
    edges = {0, num_classes - 1, num_classes, ignore_index - 1, ignore_index, ignore_index + 1}
    for value in edges:
        if not 0 <= value <= 255:
            continue
        labels = torch.tensor([[0, value, min(ignore_index, 255)]], dtype=torch.uint8)
        ok = all(v < num_classes or v == ignore_index for v in labels.flatten().tolist())
        if ok:
            check_label_values(labels, num_classes, ignore_index)
        else:
            with pytest.raises(ValueError, match="outside"):
                check_label_values(labels, num_classes, ignore_index)


def test_check_label_values_message():
    labels = torch.tensor([[0, 7, 7], [255, -2, 1]])
    message = (
        "targets hold 3 pixels with values [-2, 7] outside [0, 3) and not equal to ignore_index=255"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        check_label_values(labels, 3, 255, what="targets")
    with pytest.raises(
        ValueError, match=r"^labels hold 4 pixels with values \[-2, 7, 255\] outside \[0, 3\)$"
    ):
        check_label_values(labels, 3, None)
    # an ignore value inside [0, C) exempts that class
    with pytest.raises(ValueError, match=r"values \[-2, 7, 255\].*ignore_index=1"):
        check_label_values(labels, 3, 1)


def test_check_label_values_lists_at_most_eight_values():
    labels = torch.arange(20).view(4, 5)
    with pytest.raises(
        ValueError, match=re.escape("12 pixels with values [8, 9, 10, 11, 12, 13, 14, 15] outside")
    ):
        check_label_values(labels, 8, None)


@pytest.mark.parametrize("num_classes", [0, -1])
def test_check_label_values_num_classes(num_classes):
    with pytest.raises(ValueError, match=f"num_classes must be positive, got {num_classes}"):
        check_label_values(torch.zeros(2, 2, dtype=torch.long), num_classes, None)


# --------------------------------------------------------------------------- clamp_negative_lobes
@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
    seed=st.integers(0, 2**16),
)
def test_clamp_negative_lobes_matches_the_rule(shape, seed):
    raw = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    raw = raw * 0.3 + 0.2
    before = raw.clone()
    out = clamp_negative_lobes(raw)
    assert torch.equal(raw, before)  # out of place by default
    np.testing.assert_allclose(out.numpy(), clamp_rescale(raw.numpy()), atol=1e-12)
    assert float(out.min()) >= 0.0
    same = clamp_negative_lobes(raw, inplace=True)
    assert same.data_ptr() == raw.data_ptr()
    np.testing.assert_allclose(same.numpy(), out.numpy(), atol=1e-12)


def test_clamp_negative_lobes_cases():
    soft = torch.tensor([[0.5, -0.1], [0.6, -0.2], [-0.1, 0.1]], dtype=torch.float64).view(3, 2, 1)
    out = clamp_negative_lobes(soft)[:, :, 0]
    # pixel 0: mass 1.0 (clipped from 1.0), positives 1.1 -> rescaled; pixel 1: mass < 0 -> zeros
    torch.testing.assert_close(out[:, 0], torch.tensor([0.5, 0.6, 0.0], dtype=torch.float64) / 1.1)
    torch.testing.assert_close(out[:, 1], torch.zeros(3, dtype=torch.float64))
    untouched = torch.tensor([0.25, 0.5]).view(2, 1, 1)
    torch.testing.assert_close(clamp_negative_lobes(untouched), untouched)


def test_clamp_negative_lobes_keeps_gradients_and_checks_dims():
    soft = torch.tensor([0.9, 0.3, -0.2]).view(1, 3, 1, 1).requires_grad_()
    clamp_negative_lobes(soft).sum().backward()
    assert soft.grad is not None and soft.grad.shape == soft.shape
    with pytest.raises(ValueError, match=r"\(\.\.\., C, h, w\), got shape \(3, 4\)"):
        clamp_negative_lobes(torch.zeros(3, 4))
