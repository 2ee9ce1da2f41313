"""Sparse (top-k) soft labels and their round trip."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import softseg
from conftest import label_maps, sizes

SETTINGS = settings(max_examples=25, deadline=None)


def classes_per_pixel(soft: torch.Tensor) -> int:
    return int((soft > 0).sum(dim=-3).max())


def soft_map(lab, size, C, kernel):
    convention = "pil" if kernel in ("hamming", "lanczos") else "torch"
    return softseg.soft_downsample(lab, size, C, kernel=kernel, convention=convention)


kernels = st.sampled_from(["area", "bilinear", "bicubic", "hamming", "lanczos", "nearest"])


@pytest.mark.parametrize(
    "C,dtype",
    [(1, torch.uint8), (5, torch.uint8), (256, torch.uint8), (257, torch.int16),
     (300, torch.int16)],
)  # fmt: skip
def test_index_dtype(C, dtype):
    soft = torch.rand(C, 3, 4)
    indices, weights = softseg.topk_soft_labels(soft, 1)
    assert indices.dtype == dtype
    assert weights.dtype == soft.dtype and weights.shape == indices.shape == (1, 3, 4)
    # the argmax class survives the narrow dtype
    torch.testing.assert_close(indices[0].long(), soft.argmax(0), rtol=0, atol=0)


def test_many_classes_round_trip():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 300, (24, 24))
    lab[:, :8] = 299  # the largest index must survive int16
    soft = softseg.soft_downsample(lab, (6, 6), 300, kernel="area")
    k = classes_per_pixel(soft)
    indices, weights = softseg.topk_soft_labels(soft, k)
    assert indices.dtype == torch.int16 and int(indices.max()) == 299
    dense = softseg.dense_from_topk(indices, weights, 300)
    assert torch.equal(dense, soft)


@SETTINGS
@given(lab_c=label_maps(), size=sizes, kernel=kernels, batch=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]))  # fmt: skip
def test_round_trip_exact_when_k_covers_every_pixel(lab_c, size, kernel, batch, dtype):
    lab, C = lab_c
    soft = soft_map(lab, size, C, kernel).to(dtype)
    if batch:
        soft = torch.stack([soft, soft.flip(-1)])
    needed = max(classes_per_pixel(soft), 1)
    for k in range(needed, C + 1):
        indices, weights = softseg.topk_soft_labels(soft, k)
        assert indices.shape == weights.shape == (*soft.shape[:-3], k, *size)
        assert weights.dtype == dtype and indices.dtype == torch.uint8
        assert bool((weights[..., :-1, :, :] >= weights[..., 1:, :, :]).all())
        dense = softseg.dense_from_topk(indices, weights, C)
        assert dense.dtype == dtype and dense.shape == soft.shape
        assert torch.equal(dense, soft)


@SETTINGS
@given(lab_c=label_maps(max_classes=6), size=sizes, kernel=kernels)
def test_truncation_is_lossy_but_never_larger(lab_c, size, kernel):
    lab, C = lab_c
    soft = soft_map(lab, size, C, kernel)
    needed = classes_per_pixel(soft)
    for k in range(1, min(needed, C + 1)):
        indices, weights = softseg.topk_soft_labels(soft, k)
        assert bool((weights[:-1] >= weights[1:]).all())
        dense = softseg.dense_from_topk(indices, weights, C)
        # every kept entry is exact, every dropped one is 0: never above the original
        assert bool(((dense == soft) | (dense == 0)).all())
        assert bool((dense <= soft).all())
        assert not torch.equal(dense, soft)  # some pixel had more than k classes
        # what is kept is the k heaviest: the mass kept per pixel is the top-k sum
        top = soft.sort(dim=0, descending=True).values[:k].sum(0)
        torch.testing.assert_close(dense.sum(0), top, rtol=0, atol=1e-6)
        assert float((soft - dense).max()) > 0


def test_hand_example():
    soft = torch.tensor([[[0.2]], [[0.5]], [[0.0]], [[0.3]]])  # C=4, one pixel
    indices, weights = softseg.topk_soft_labels(soft, 2)
    assert indices.flatten().tolist() == [1, 3]
    torch.testing.assert_close(weights.flatten(), torch.tensor([0.5, 0.3]))
    dense = softseg.dense_from_topk(indices, weights, 4)
    torch.testing.assert_close(dense.flatten(), torch.tensor([0.0, 0.5, 0.0, 0.3]))


@pytest.mark.parametrize("k", [0, -1, 6, 100])
def test_k_out_of_range(k):
    soft = torch.rand(5, 2, 2)
    with pytest.raises(ValueError, match=re.escape("k must be in [1, 5]") + r".*" + str(k)):
        softseg.topk_soft_labels(soft, k)


def test_soft_dims_checked():
    with pytest.raises(ValueError, match=re.escape("(..., C, h, w)") + r".*\(5, 4\)"):
        softseg.topk_soft_labels(torch.rand(5, 4), 1)


def test_dense_from_topk_errors():
    indices = torch.zeros(2, 3, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"one shape.*\(2, 3, 3\).*\(1, 3, 3\)"):
        softseg.dense_from_topk(indices, torch.ones(1, 3, 3), 4)
    indices[0, 1, 1] = 4
    with pytest.raises(ValueError, match=re.escape("[0, 4)") + r".*\[0, 4\]"):
        softseg.dense_from_topk(indices, torch.ones(2, 3, 3), 4)
