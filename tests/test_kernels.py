"""1-D resampling weights (softseg.ops.kernels.axis_weights) against torch and PIL, by identity probes.

Resizing ``eye(n)`` along one axis gives the whole (n_out, n_in) weight matrix: column ``j`` is the
response to a unit impulse at input ``j``. This sidesteps torch's antialias bug for width-1 tensors
(the probe keeps the resized axis in the height).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import softseg
from conftest import (
    AA_MODES,
    NEGATIVE_LOBES,
    PIL_KERNELS,
    TORCH_KERNELS,
    pil_resize,
)
from softseg.ops.kernels import Resampler, axis_weights

lengths = st.integers(1, 40)


def torch_probe(n: int, m: int, mode: str, **kwargs) -> np.ndarray:
    eye = torch.eye(n, dtype=torch.float32)[None, None]
    return F.interpolate(eye, size=(m, n), mode=mode, **kwargs)[0, 0].double().numpy()


def pil_probe(n: int, m: int, kernel: str, box_rows=None) -> np.ndarray:
    box = None if box_rows is None else (0.0, box_rows[0], float(n), box_rows[1])
    return pil_resize(np.eye(n, dtype=np.float32), (m, n), kernel, box=box)


def test_kernel_table():
    assert set(softseg.KERNELS["torch"]) == set(TORCH_KERNELS)
    assert set(softseg.KERNELS["pil"]) == set(PIL_KERNELS)
    assert "hamming" not in softseg.KERNELS["torch"]


@settings(max_examples=40, deadline=None)
@given(n=lengths, m=lengths, mode=st.sampled_from(AA_MODES), align_corners=st.booleans())
def test_antialias_weights_match_torch(n, m, mode, align_corners):
    aw = axis_weights(n, m, mode, antialias=True, align_corners=align_corners)
    ref = torch_probe(n, m, mode, antialias=True, align_corners=align_corners)
    np.testing.assert_allclose(aw.to_dense(n).numpy(), ref, atol=1e-5)
    assert float(aw.outside.abs().max()) == 0.0


@pytest.mark.parametrize("mode", AA_MODES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_antialias_weights_match_torch_small_exhaustive(mode, align_corners):
    # every pair up to 12, including the length-1 cases torch's own image path gets wrong
    for n in range(1, 13):
        for m in range(1, 13):
            aw = axis_weights(n, m, mode, antialias=True, align_corners=align_corners)
            ref = torch_probe(n, m, mode, antialias=True, align_corners=align_corners)
            np.testing.assert_allclose(aw.to_dense(n).numpy(), ref, atol=1e-5, err_msg=f"{n}->{m}")


@settings(max_examples=40, deadline=None)
@given(n=lengths, m=lengths, mode=st.sampled_from(AA_MODES), align_corners=st.booleans())
def test_plain_interpolation_weights_match_torch(n, m, mode, align_corners):
    aw = axis_weights(n, m, mode, antialias=False, align_corners=align_corners)
    ref = torch_probe(n, m, mode, antialias=False, align_corners=align_corners)
    np.testing.assert_allclose(aw.to_dense(n).numpy(), ref, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(n=lengths, m=lengths, kernel=st.sampled_from(["nearest", "area", "box"]))
def test_nearest_and_area_weights_match_torch(n, m, kernel):
    mode = "nearest" if kernel == "nearest" else "area"
    aw = axis_weights(n, m, kernel, convention="torch")
    ref = torch_probe(n, m, mode)
    mat = aw.to_dense(n).numpy()
    if kernel == "nearest":
        np.testing.assert_array_equal(mat, ref)
    else:
        np.testing.assert_allclose(mat, ref, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(n=lengths, m=lengths, kernel=st.sampled_from(PIL_KERNELS))
def test_weights_match_pil(n, m, kernel):
    aw = axis_weights(n, m, kernel, convention="pil")
    ref = pil_probe(n, m, kernel)
    np.testing.assert_allclose(aw.to_dense(n).numpy(), ref, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    m=lengths,
    kernel=st.sampled_from(PIL_KERNELS),
    a=st.integers(0, 640),
    b=st.integers(0, 640),
)
def test_box_weights_match_pil_box(n, m, kernel, a, b):
    # box edges on a 1/16 grid: exact in float32, the precision PIL parses a box with
    start, stop = min(a, b) * n / 640, max(a, b) * n / 640
    start, stop = round(start * 16) / 16, round(stop * 16) / 16
    if stop - start < 0.25:
        stop = min(float(n), start + 0.25)
        start = stop - 0.25
    aw = axis_weights(n, m, kernel, convention="pil", start=start, length=stop - start)
    ref = pil_probe(n, m, kernel, box_rows=(start, stop))
    np.testing.assert_allclose(aw.to_dense(n).numpy(), ref, atol=1e-5)
    assert float(aw.outside.abs().max()) == 0.0


ALL = [("torch", k) for k in TORCH_KERNELS] + [("pil", k) for k in PIL_KERNELS]


@settings(max_examples=40, deadline=None)
@given(
    n=lengths,
    m=lengths,
    conv_kernel=st.sampled_from(ALL),
    antialias=st.booleans(),
    align_corners=st.booleans(),
)
def test_rows_sum_to_one_and_sign(n, m, conv_kernel, antialias, align_corners):
    convention, kernel = conv_kernel
    aw = axis_weights(
        n, m, kernel, convention=convention, antialias=antialias, align_corners=align_corners
    )
    assert aw.index.shape == aw.weight.shape and aw.index.shape[0] == m
    assert aw.outside.shape == (m,)
    assert int(aw.index.min()) >= 0 and int(aw.index.max()) < n
    np.testing.assert_allclose(aw.weight.sum(1).numpy(), np.ones(m), atol=1e-6)
    if kernel not in NEGATIVE_LOBES:
        assert float(aw.weight.min()) >= 0.0


@settings(max_examples=40, deadline=None)
@given(
    n=lengths,
    m=lengths,
    conv_kernel=st.sampled_from(ALL),
    start=st.floats(-20, 40).map(lambda v: round(v, 2)),
    length=st.floats(0.5, 50).map(lambda v: round(v, 2)),
)
def test_outside_plus_inside_is_total_weight(n, m, conv_kernel, start, length):
    convention, kernel = conv_kernel
    aw = axis_weights(n, m, kernel, convention=convention, start=start, length=length)
    total = aw.weight.sum(1) + aw.outside
    np.testing.assert_allclose(total.numpy(), np.ones(m), atol=1e-6)
    assert int(aw.index.min()) >= 0 and int(aw.index.max()) < n
    if kernel not in NEGATIVE_LOBES:
        assert float(aw.outside.min()) >= 0.0
    # a box so far outside that no filter tap can reach the image is all padding
    reach = 3.0 * max(length / m, 1.0) + 2.0
    if start >= n + reach or start + length <= -reach:
        np.testing.assert_allclose(aw.outside.numpy(), np.ones(m), atol=1e-6)
        assert float(aw.weight.abs().max()) == 0.0


def test_box_inside_reads_no_padding():
    # a filter centred inside the image never counts padding, however wide (PIL clamps the support)
    for kernel in PIL_KERNELS:
        aw = axis_weights(10, 3, kernel, convention="pil", start=1.0, length=8.0)
        assert float(aw.outside.abs().max()) == 0.0, kernel


def padded_pil_probe(n: int, m: int, kernel: str, pad: int, length: int) -> np.ndarray:
    """PIL's ``(m, n)`` weights of the box ``[-pad, length - pad)``, read on the image padded by
    ``pad`` rows before (and as many after as the box needs): PIL itself refuses such a box."""
    padded = np.zeros((pad + max(n, length - pad), n), dtype=np.float32)
    padded[pad : pad + n] = np.eye(n, dtype=np.float32)  # row pad + j is input j
    return pil_resize(padded, (m, n), kernel, box=(0.0, 0.0, float(n), float(length)))


@settings(max_examples=60, deadline=None)
@given(
    n=lengths,
    m=lengths,
    kernel=st.sampled_from(PIL_KERNELS),
    pad=st.integers(1, 8),
    extra=st.integers(-8, 8),
)
def test_pil_box_before_the_image_is_pil_on_the_padded_image(n, m, kernel, pad, extra):
    """softseg defines a PIL box that starts before the image as PIL's box on the padded image."""
    length = max(1, n + pad + extra)
    ref = padded_pil_probe(n, m, kernel, pad, length)
    aw = axis_weights(n, m, kernel, convention="pil", start=-pad, length=length)
    np.testing.assert_allclose(aw.to_dense(n).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(aw.outside.numpy(), 1.0 - ref.sum(1), atol=1e-5)


def test_pil_box_filter_ties_before_the_image_exhaustive():
    """The box filter is discontinuous: where its edge lands exactly on a pixel centre, only the
    same float arithmetic as PIL's on the padded image puts that pixel on PIL's side (computed on
    the unshifted box, 6 of these cases came out the other way)."""
    for n, m, pad, extra in itertools.product(range(1, 9), range(1, 9), range(1, 6), range(-5, 6)):
        length = max(1, n + pad + extra)
        ref = padded_pil_probe(n, m, "box", pad, length)
        aw = axis_weights(n, m, "box", convention="pil", start=-pad, length=length)
        np.testing.assert_allclose(
            aw.to_dense(n).numpy(), ref, atol=1e-6, err_msg=f"{(n, m, pad, length)}"
        )


def test_pil_box_tie_before_the_image():
    # 13 rows (5 of padding) to 6: output 3 spans [1.5, 5.83); its filter edge 1.5 is the centre of
    # row 1 exactly, which PIL's half-open box leaves out. Unshifted, the float sum gave 1.99999...
    aw = axis_weights(2, 6, "box", convention="pil", start=-5, length=13)
    assert aw.to_dense(2).numpy()[3].tolist() == [0.0, 0.0]
    assert aw.to_dense(2).numpy()[2].tolist() == [0.5, 0.0]


# --------------------------------------------------------------------------- Resampler
def test_resampler_defaults_and_alias():
    assert Resampler() == Resampler("bilinear", True, False, "torch")
    assert Resampler("area") == Resampler("box") and Resampler("area").kernel == "box"
    assert Resampler("area", convention="pil") == Resampler("box", convention="pil")
    assert Resampler("bicubic").negative_lobes and not Resampler("bilinear").negative_lobes
    assert Resampler(antialias=np.bool_(False)).antialias is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        Resampler().kernel = "nearest"  # type: ignore[misc]
    assert len({Resampler("area"), Resampler("box"), Resampler()}) == 2  # hashable: a cache key


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"kernel": "lanczos"}, ValueError, r"'lanczos'.*convention='torch'.*'bicubic'"),
        ({"kernel": "hamming"}, ValueError, r"'hamming'.*'torch'"),
        ({"kernel": "gaussian", "convention": "pil"}, ValueError, r"'gaussian'.*'pil'.*'lanczos'"),
        (
            {"convention": "opencv"},
            ValueError,
            r"convention must be one of \['cv2', 'pil', 'torch'\].*'opencv'",
        ),
        ({"kernel": None}, ValueError, r"kernel None"),
        ({"antialias": "yes"}, TypeError, r"antialias must be a bool, got 'yes'"),
        ({"align_corners": 1}, TypeError, r"align_corners must be a bool, got 1"),
    ],
)  # fmt: skip
def test_resampler_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Resampler(**kwargs)


def test_resampler_resolve():
    rs = Resampler("bicubic", antialias=False)
    assert Resampler.resolve(rs) is rs
    assert Resampler.resolve() == Resampler()
    assert Resampler.resolve(kernel="area", convention="pil") == Resampler("box", convention="pil")
    with pytest.raises(ValueError, match=r"not both.*kernel"):
        Resampler.resolve(rs, kernel="bicubic")
    with pytest.raises(ValueError, match=r"not both.*antialias"):
        Resampler.resolve(rs, antialias=False)
    with pytest.raises(TypeError, match=r"resampler must be a Resampler, got str"):
        Resampler.resolve("bicubic")  # type: ignore[arg-type]


@pytest.mark.parametrize("conv_kernel", ALL)
def test_axis_weights_accept_a_resampler(conv_kernel):
    convention, kernel = conv_kernel
    rs = Resampler(kernel, antialias=False, convention=convention)
    loose = axis_weights(11, 4, kernel, convention=convention, antialias=False, start=-1.5)
    given_rs = axis_weights(11, 4, resampler=rs, start=-1.5)
    for name in ("index", "weight", "outside"):
        assert torch.equal(getattr(loose, name), getattr(given_rs, name)), name
    with pytest.raises(ValueError, match="not both"):
        axis_weights(11, 4, kernel, resampler=rs)
