"""class_retention: how much of each class's true mass a label down-sampling method keeps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import softseg
from conftest import IGNORE, label_maps, one_hot, torch_resize

SETTINGS = settings(max_examples=20, deadline=None)
small_sizes = st.tuples(st.integers(1, 20), st.integers(1, 20))


def present_classes(lab: np.ndarray, C: int) -> np.ndarray:
    return np.isin(np.arange(C), lab[lab != IGNORE])


@SETTINGS
@given(lab_c=label_maps(), size=small_sizes)
def test_soft_keeps_everything(lab_c, size):
    lab, C = lab_c
    H, W = lab.shape
    if size[0] <= H and size[1] <= W:
        ret = softseg.class_retention(lab, size, C)
        assert set(ret) == {"nearest", "mode", "soft"}
    else:  # mode only down-samples
        with pytest.raises(ValueError, match="no larger than the input"):
            softseg.class_retention(lab, size, C)
        ret = softseg.class_retention(lab, size, C, methods=("nearest", "soft"))
        assert set(ret) == {"nearest", "soft"}
    present = present_classes(lab, C)
    for name, values in ret.items():
        assert values.shape == (C,) and values.dtype == torch.float64
        v = values.numpy()
        assert np.all(np.isnan(v[~present])), name
        assert not np.any(np.isnan(v[present])), name
        assert np.all((v[present] >= 0.0) & (v[present] <= 1.0 + 1e-9)), name
    np.testing.assert_allclose(ret["soft"].numpy()[present], 1.0, atol=1e-6)


@SETTINGS
@given(
    lab_c=label_maps(min_w=2),
    size=st.tuples(st.integers(1, 20), st.integers(2, 20)),
    batch=st.booleans(),
)
def test_nearest_retention_formula(lab_c, size, batch):
    """retention[c] = sum(min(onehot(nearest), truth)) / sum(truth), pooled over a batch, with the
    truth from torch's antialiased bilinear interpolate and the nearest map from torch."""
    lab, C = lab_c
    labs = np.stack([lab, lab[::-1].copy()]) if batch else lab[None]
    truth = torch_resize(one_hot(labs, C), size, "bilinear", antialias=True)  # (N, C, h, w)
    near = F.interpolate(torch.from_numpy(labs).float()[:, None], size=size, mode="nearest")
    near = near[:, 0].numpy().astype(np.int64)
    hard = one_hot(near, C)
    kept = np.minimum(hard, truth).sum(axis=(0, 2, 3))
    mass = truth.sum(axis=(0, 2, 3))
    expected = np.where(mass > 0, kept / np.where(mass > 0, mass, 1.0), np.nan)
    ret = softseg.class_retention(labs if batch else lab, size, C, methods=("nearest",))
    assert set(ret) == {"nearest"}
    np.testing.assert_allclose(ret["nearest"].numpy(), expected, atol=1e-5, equal_nan=True)


def pole_map():
    lab = np.zeros((32, 32), dtype=np.int64)
    lab[:, 13] = 1  # a 1-pixel-wide vertical pole
    lab[20:, 20:] = 2  # a big block, well kept by everyone
    return lab


@pytest.mark.parametrize("kernel", ["bilinear", "area", "bicubic"])
def test_thin_pole_is_lost_by_hard_methods(kernel):
    ret = softseg.class_retention(pole_map(), (8, 8), 3, kernel=kernel)
    soft, near, mode = (ret[m].numpy() for m in ("soft", "nearest", "mode"))
    np.testing.assert_allclose(soft, 1.0, atol=1e-6)
    assert near[1] < 0.5 * soft[1]
    assert mode[1] < 0.5 * soft[1]
    # the block survives the hard methods far better than the pole
    assert near[2] > 0.5 and mode[2] > 0.5
    assert near[2] > near[1] + 0.3 and mode[2] > mode[1] + 0.3


def test_absent_class_and_ignore():
    lab = pole_map()
    lab[:4] = IGNORE
    ret = softseg.class_retention(lab, (8, 8), 5)  # classes 3 and 4 absent
    for values in ret.values():
        v = values.numpy()
        assert math.isnan(v[3]) and math.isnan(v[4])
        assert not np.isnan(v[:3]).any()


def test_unknown_method():
    with pytest.raises(ValueError, match=r"unknown methods \['bilinear'\].*nearest"):
        softseg.class_retention(pole_map(), (8, 8), 3, methods=("soft", "bilinear"))


@SETTINGS
@given(lab_c=label_maps(max_hw=24), size=small_sizes)
def test_mode_retention_bounded_and_nonnegative(lab_c, size):
    lab, C = lab_c
    H, W = lab.shape
    assume(size[0] <= H and size[1] <= W)  # mode only down-samples
    ret = softseg.class_retention(lab, size, C, methods=("mode", "soft"))
    present = present_classes(lab, C)
    m, s = ret["mode"].numpy()[present], ret["soft"].numpy()[present]
    assert np.all((m >= 0.0) & (m <= s + 1e-9))
