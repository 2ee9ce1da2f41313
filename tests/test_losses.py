import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import softseg
from softseg.train.losses import SoftCrossEntropy, pixel_losses, soft_cross_entropy
from softseg.train.targets import target_at_logits

C = 5


def reference(logits, dense, weight=None, eps=0.0, reduction="mean"):
    """The definition, written out: smoothed target, weighted, normalised by its weighted mass."""
    mass = dense.sum(1, keepdim=True)
    t = (1 - eps) * dense + eps * mass / dense.shape[1]
    if weight is not None:
        t = t * weight.view(1, -1, 1, 1)
    pixel = -(t * torch.log_softmax(logits, 1)).sum(1)
    if reduction == "none":
        return pixel
    if reduction == "sum":
        return pixel.sum()
    return pixel.sum() / t.sum()


def one_hot(labels, num_classes=C, ignore_index=255):
    """Dense (N, C, H, W) one-hot with ignored pixels all zero."""
    valid = labels != ignore_index
    hot = F.one_hot(labels.masked_fill(~valid, 0).long(), num_classes).permute(0, 3, 1, 2)
    return hot.to(torch.float64) * valid.unsqueeze(1)


def labels_with_ignore(shape, seed=0, fraction=0.2):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, shape, generator=g)
    return labels.masked_fill(torch.rand(shape, generator=g) < fraction, 255)


def random_soft(shape, seed=0):
    """Dense soft targets whose pixels have random valid mass in [0, 1] (some fully ignored)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(shape, generator=g, dtype=torch.float64) ** 3
    t = t / t.sum(1, keepdim=True) * torch.rand(shape[0], 1, *shape[2:], generator=g).double()
    t[:, :, 0, 0] = 0.0
    return t


def logits_like(n=2, h=4, w=6, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, h, w, generator=g, dtype=dtype).mul(2).requires_grad_()


WEIGHT = torch.tensor([0.5, 1.0, 2.0, 0.1, 3.0], dtype=torch.float64)


# --------------------------------------------------------------------------- against torch
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_integer_targets_equal_torch_cross_entropy(weight, reduction):
    z = logits_like()
    y = labels_with_ignore((2, 4, 6))
    ours = soft_cross_entropy(z, y, weight=weight, reduction=reduction)
    theirs = F.cross_entropy(z, y, weight=weight, ignore_index=255, reduction=reduction)
    torch.testing.assert_close(ours, theirs)
    (g1,) = torch.autograd.grad(ours.sum(), z)
    (g2,) = torch.autograd.grad(theirs.sum(), z)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize(
    "weight, reduction",
    # weights with "mean" are normalised differently on purpose: see the next test
    [(None, "mean"), (None, "sum"), (None, "none"), (WEIGHT, "sum"), (WEIGHT, "none")],
)
def test_label_smoothing_equals_torch(weight, reduction):
    z = logits_like()
    y = labels_with_ignore((2, 4, 6))
    ours = soft_cross_entropy(
        z, y, weight=weight, weight_mode="class", label_smoothing=0.2, reduction=reduction
    )
    theirs = F.cross_entropy(
        z, y, weight=weight, ignore_index=255, label_smoothing=0.2, reduction=reduction
    )
    torch.testing.assert_close(ours, theirs)


def test_weighted_label_smoothing_mean_differs_from_torch_only_in_the_normaliser():
    """Same weighted sum; torch divides it by the weights of the true classes, we by the weighted
    mass of the smoothed target (the loss stays a weighted mean of per-pixel cross-entropies)."""
    eps, z, y = 0.2, logits_like(), labels_with_ignore((2, 4, 6))
    true_weight = WEIGHT[y[y != 255]]
    ours = soft_cross_entropy(z, y, weight=WEIGHT, weight_mode="class", label_smoothing=eps)
    theirs = F.cross_entropy(z, y, weight=WEIGHT, ignore_index=255, label_smoothing=eps)
    our_mass = ((1 - eps) * true_weight + eps / C * WEIGHT.sum()).sum()
    torch.testing.assert_close(ours * our_mass, theirs * true_weight.sum())
    assert not torch.allclose(ours, theirs)
    summed = soft_cross_entropy(
        z, y, weight=WEIGHT, weight_mode="class", label_smoothing=eps, reduction="sum"
    )
    torch.testing.assert_close(ours, summed / our_mass)


# --------------------------------------------------------------------------- the three forms agree
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_integer_dense_and_sparse_forms_agree(weight, eps, reduction):
    z = logits_like()
    y = labels_with_ignore((2, 4, 6))
    kw = dict(weight=weight, label_smoothing=eps, reduction=reduction)
    hard = soft_cross_entropy(z, y, **kw)
    dense = soft_cross_entropy(z, one_hot(y), **kw)
    indices, weights = softseg.topk_soft_labels(one_hot(y), C)
    sparse = soft_cross_entropy(z, (indices, weights), **kw)
    sparse_k1 = soft_cross_entropy(z, softseg.topk_soft_labels(one_hot(y), 1), **kw)
    torch.testing.assert_close(dense, hard)
    torch.testing.assert_close(sparse, hard)
    torch.testing.assert_close(sparse_k1, hard)  # one-hot: k = 1 already holds everything


@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_soft_targets_match_the_reference(weight, eps):
    z, t = logits_like(), random_soft((2, C, 4, 6))
    kw = dict(weight=weight, weight_mode="class", label_smoothing=eps)
    for reduction in ("mean", "sum", "none"):
        ours = soft_cross_entropy(z, t, reduction=reduction, **kw)
        torch.testing.assert_close(ours, reference(z, t, weight, eps, reduction))
    sparse = softseg.topk_soft_labels(t, C)  # k covering all classes = dense
    torch.testing.assert_close(
        soft_cross_entropy(z, sparse, **kw),
        reference(z, t, weight, eps),
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    eps=st.floats(0.0, 1.0),
    k=st.integers(1, C),
    use_weight=st.booleans(),
)
def test_truncated_sparse_targets_equal_their_dense_form(seed, eps, k, use_weight):
    z, t = logits_like(seed=seed), random_soft((2, C, 4, 6), seed=seed)
    indices, weights = softseg.topk_soft_labels(t, k)
    dense = softseg.dense_from_topk(indices, weights, C)
    weight = WEIGHT if use_weight else None
    ours = soft_cross_entropy(
        z, (indices, weights), weight=weight, weight_mode="class", label_smoothing=eps
    )
    torch.testing.assert_close(ours, reference(z, dense, weight, eps))


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("form", ["integer", "dense", "sparse"])
def test_gradient_matches_reference(form):
    z = logits_like()
    y = labels_with_ignore((2, 4, 6))
    dense = one_hot(y) if form == "integer" else random_soft((2, C, 4, 6))
    target = {"integer": y, "dense": dense, "sparse": softseg.topk_soft_labels(dense, 3)}[form]
    if form == "sparse":
        dense = softseg.dense_from_topk(*target, C)
    (g_ours,) = torch.autograd.grad(
        soft_cross_entropy(z, target, weight=WEIGHT, weight_mode="class", label_smoothing=0.1), z
    )
    (g_ref,) = torch.autograd.grad(reference(z, dense, WEIGHT, 0.1), z)
    torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("form", ["integer", "dense", "sparse"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck(form, reduction):
    z = logits_like(n=1, h=2, w=3)
    y = labels_with_ignore((1, 2, 3), seed=4)
    soft = random_soft((1, C, 2, 3), seed=5)
    target = {"integer": y, "dense": soft, "sparse": softseg.topk_soft_labels(soft, 2)}[form]
    fn = lambda x: soft_cross_entropy(
        x, target, weight=WEIGHT, label_smoothing=0.1, reduction=reduction
    )
    assert torch.autograd.gradcheck(fn, (z,))


def test_gradient_wrt_dense_target_flows():
    z, t = logits_like(), random_soft((2, C, 4, 6)).requires_grad_()
    (g,) = torch.autograd.grad(soft_cross_entropy(z, t, reduction="sum"), t)
    torch.testing.assert_close(g, -torch.log_softmax(z, 1).detach())


# --------------------------------------------------------------------------- resolution
def test_larger_integer_targets_are_soft_downsampled():
    z = logits_like(h=4, w=6)
    y = labels_with_ignore((2, 16, 24), seed=7)
    manual = softseg.soft_downsample(y, (4, 6), C, ignore_index=255).double()
    for reduction in ("mean", "none"):
        torch.testing.assert_close(
            soft_cross_entropy(z, y, reduction=reduction),
            reference(z, manual, reduction=reduction),
        )
    # other kernels are passed through
    manual_area = softseg.soft_downsample(y, (4, 6), C, kernel="area").double()
    torch.testing.assert_close(soft_cross_entropy(z, y, kernel="area"), reference(z, manual_area))


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic", "area"])
def test_larger_dense_and_sparse_targets_use_the_same_operator(kernel):
    z = logits_like(h=4, w=6)
    y = labels_with_ignore((2, 12, 18), seed=8)
    hot = one_hot(y).float()
    via_int = soft_cross_entropy(z, y, kernel=kernel)
    via_dense = soft_cross_entropy(z, hot, kernel=kernel)
    via_sparse = soft_cross_entropy(z, softseg.topk_soft_labels(hot, 1), kernel=kernel)
    torch.testing.assert_close(via_dense, via_int)
    torch.testing.assert_close(via_sparse, via_int)
    soft = random_soft((2, C, 12, 18))
    manual = softseg.resize_image(soft, (4, 6), kernel=kernel)
    if kernel != "bicubic":  # bicubic clamps its negative lobes, checked through via_dense above
        torch.testing.assert_close(soft_cross_entropy(z, soft, kernel=kernel), reference(z, manual))


def test_targets_smaller_than_logits_are_refused():
    z = logits_like(h=8, w=8)
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(8, 8\)"):
        soft_cross_entropy(z, torch.zeros(2, 4, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="smaller"):
        soft_cross_entropy(z, torch.zeros(2, C, 16, 4))  # smaller in one dimension only


# --------------------------------------------------------------------------- edge cases, errors
def test_zero_valid_mass_gives_a_connected_zero():
    z = logits_like()
    for target in (torch.full((2, 4, 6), 255), torch.zeros(2, C, 4, 6, dtype=torch.float64)):
        loss = soft_cross_entropy(z, target)
        assert loss.item() == 0.0 and loss.grad_fn is not None
        (g,) = torch.autograd.grad(loss, z)
        assert torch.equal(g, torch.zeros_like(z))


def test_half_precision_logits_are_computed_in_float32():
    z = logits_like(dtype=torch.float32).detach()
    y = labels_with_ignore((2, 4, 6))
    loss = soft_cross_entropy(z.bfloat16(), y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(z.bfloat16().float(), y, ignore_index=255))


def test_module_wraps_the_function_and_moves_its_weight():
    z, y = logits_like(), labels_with_ignore((2, 4, 6))
    crit = SoftCrossEntropy(weight=WEIGHT.float(), label_smoothing=0.1)
    assert "label_smoothing=0.1" in repr(crit)
    torch.testing.assert_close(
        crit(z, y), soft_cross_entropy(z, y, weight=WEIGHT, label_smoothing=0.1)
    )
    assert crit.double().weight.dtype == torch.float64
    with pytest.raises(ValueError, match="reduction"):
        SoftCrossEntropy(reduction="avg")


def test_ignore_index_none_and_inside_the_class_range():
    z = logits_like()
    y = torch.randint(0, C, (2, 4, 6), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(soft_cross_entropy(z, y, ignore_index=None), F.cross_entropy(z, y))
    torch.testing.assert_close(
        soft_cross_entropy(z, y, ignore_index=0), F.cross_entropy(z, y, ignore_index=0)
    )


@pytest.mark.parametrize(
    "target, kwargs, match",
    [
        (torch.zeros(2, 3, 4, 6), {}, "3 channels but the logits have 5"),
        (torch.zeros(3, C, 4, 6), {}, "batch size 3"),
        (torch.zeros(3, 4, 6, dtype=torch.long), {}, "batch size 3"),
        (torch.zeros(2, 4, 6), {}, "need an integer dtype"),
        (torch.zeros(2, 4, 6, dtype=torch.bool), {}, "dtype torch.bool"),
        (torch.full((2, 4, 6), 7), {}, r"values \[7\] outside \[0, 5\)"),
        (torch.full((2, 4, 6), -1), {}, r"values \[-1\]"),
        (torch.full((2, 16, 24), 9), {}, "outside"),  # checked on the down-sampling path too
        (torch.zeros(2, 4, 6, dtype=torch.long), {"weight": torch.ones(4)}, r"shape \(5,\)"),
        (torch.zeros(2, 4, 6, dtype=torch.long), {"weight": -torch.ones(C)}, "non-negative"),
        (torch.zeros(2, 4, 6, dtype=torch.long), {"reduction": "avg"}, "reduction"),
        (torch.zeros(2, 4, 6, dtype=torch.long), {"label_smoothing": 1.5}, "label_smoothing"),
        (torch.zeros(2, 4, 6, dtype=torch.long), {"weight_mode": "pix"}, "weight_mode"),
        ((torch.zeros(2, 2, 4, 6), torch.zeros(2, 2, 4, 6)), {}, "indices must be integers"),
        (
            (torch.full((2, 2, 4, 6), 5), torch.zeros(2, 2, 4, 6)),
            {},
            r"indices must lie in \[0, 5\)",
        ),
        ((torch.zeros(2, 2, 4, 6, dtype=torch.long), torch.zeros(2, 1, 4, 6)), {}, "both be"),
        ((torch.zeros(2, 2, 4, 6, dtype=torch.long),), {}, "pair"),
    ],
)
def test_errors_name_the_problem(target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        soft_cross_entropy(logits_like(dtype=torch.float32), target, **kwargs)


def test_bad_logits_are_refused():
    y = torch.zeros(2, 4, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="floating point"):
        soft_cross_entropy(torch.zeros(2, C, 4, 6, dtype=torch.long), y)
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        soft_cross_entropy(torch.zeros(C, 4, 6), y)


def test_non_finite_logits_raise_floating_point_error():
    z = logits_like(dtype=torch.float32).detach().clone()
    z[0, 1, 2, 3] = math.nan
    with pytest.raises(FloatingPointError, match="non-finite loss.*1 non-finite logits"):
        soft_cross_entropy(z, torch.zeros(2, 4, 6, dtype=torch.long))
    z[0, 1, 2, 3] = math.inf
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        soft_cross_entropy(z, torch.zeros(2, 4, 6, dtype=torch.long), reduction="none")


# --------------------------------------------------------------------------- class weights
def test_median_frequency_weights_by_hand():
    from softseg.train.losses import median_frequency_weights

    maps = [torch.tensor([[0, 0, 0, 1]]), torch.tensor([[0, 2, 255, 255]])]
    # freq: class 0 4/6 (in both maps, 6 valid pixels), class 1 1/4, class 2 1/2; median 1/2
    weights = median_frequency_weights(maps, 4, ignore_index=255)
    assert torch.allclose(weights, torch.tensor([0.75, 2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"label values \[7\] outside \[0, 4\)"):
        median_frequency_weights([torch.tensor([[7]])], 4)
    with pytest.raises(ValueError, match="no labelled pixels"):
        median_frequency_weights([torch.tensor([[255]])], 4)


# --------------------------------------------------------------------------- pixel weighting
def pixel_weighted_reference(logits, dense, weight, eps=0.0):
    """``weight_mode="pixel"`` written out: the unweighted loss of each pixel times its mean
    class weight, over the class-weighted valid mass."""
    mass = dense.sum(1)
    mean_weight = (dense * weight.view(1, -1, 1, 1)).sum(1) / mass.clamp(min=1e-300)
    pixel = reference(logits, dense, eps=eps, reduction="none")
    return (mean_weight * pixel).sum() / (mean_weight * mass).sum()


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_pixel_weighting_matches_its_definition(eps):
    z, t = logits_like(), random_soft((2, C, 4, 6))
    got = soft_cross_entropy(z, t, weight=WEIGHT, weight_mode="pixel", label_smoothing=eps)
    torch.testing.assert_close(got, pixel_weighted_reference(z, t, WEIGHT, eps))


def test_pixel_and_class_weighting_are_the_same_loss_for_hard_targets():
    z, y = logits_like(), labels_with_ignore((2, 4, 6))
    by_class = soft_cross_entropy(z, y, weight=WEIGHT, weight_mode="class")
    assert torch.equal(soft_cross_entropy(z, y, weight=WEIGHT, weight_mode="pixel"), by_class)
    dense = soft_cross_entropy(z, one_hot(y), weight=WEIGHT, weight_mode="pixel")
    torch.testing.assert_close(dense, by_class)


def test_pixel_weighting_keeps_the_optimum_at_the_target():
    t = random_soft((1, C, 3, 3), seed=4)
    t = t / t.sum(1, keepdim=True).clamp(min=1e-300)  # full mass, so log t is a valid optimum
    t[:, :, 0, 0] = 1.0 / C
    for mode, optimum in (("pixel", t), ("class", t * WEIGHT.view(1, -1, 1, 1))):
        z = optimum.clamp(min=1e-12).log().requires_grad_()
        soft_cross_entropy(z, t, weight=WEIGHT, weight_mode=mode).backward()
        assert z.grad.abs().max() < 1e-9, mode
    # and class weighting moves it away from the target
    z = t.clamp(min=1e-12).log().requires_grad_()
    soft_cross_entropy(z, t, weight=WEIGHT, weight_mode="class").backward()
    assert z.grad.abs().max() > 1e-3


def test_pixel_weighting_is_the_default_of_function_and_module():
    z, t = logits_like(), random_soft((2, C, 4, 6))
    default = soft_cross_entropy(z, t, weight=WEIGHT)
    assert torch.equal(default, soft_cross_entropy(z, t, weight=WEIGHT, weight_mode="pixel"))
    assert not torch.allclose(default, soft_cross_entropy(z, t, weight=WEIGHT, weight_mode="class"))
    assert SoftCrossEntropy().weight_mode == "pixel"
    torch.testing.assert_close(SoftCrossEntropy(weight=WEIGHT)(z, t), default)


# --------------------------------------------------------------------------- the steps alone
def test_targets_keep_their_form_at_the_logits_size_and_turn_dense_when_brought_down():
    z = logits_like(h=4, w=6)
    y = labels_with_ignore((2, 4, 6))
    assert torch.equal(target_at_logits(y, z, ignore_index=255), y)
    indices, weights = softseg.topk_soft_labels(one_hot(y).float(), 2)
    kept = target_at_logits((indices, weights), z, ignore_index=255)
    assert torch.equal(kept[0], indices) and kept[1].dtype == torch.float64  # the logits' dtype
    big = labels_with_ignore((2, 8, 12), seed=3)
    dense = target_at_logits(big, z, ignore_index=255, kernel="area")
    expected = softseg.soft_downsample(big, (4, 6), C, kernel="area").double()
    torch.testing.assert_close(dense, expected)
    sparse = softseg.topk_soft_labels(one_hot(big), 1)
    via_sparse = target_at_logits(sparse, z, ignore_index=255, kernel="area")
    torch.testing.assert_close(via_sparse, expected)


def test_pixel_losses_weigh_whole_pixels_or_class_shares():
    logp = torch.log_softmax(logits_like().detach(), 1)
    t = random_soft((2, C, 4, 6))
    plain, mass = pixel_losses(logp, t)
    torch.testing.assert_close(plain, reference(logp, t, reduction="none"))
    torch.testing.assert_close(mass, t.sum(1))
    by_pixel, pixel_mass = pixel_losses(logp, t, WEIGHT)
    mean_weight = (t * WEIGHT.view(1, -1, 1, 1)).sum(1) / t.sum(1).clamp(min=1e-300)
    torch.testing.assert_close(by_pixel, mean_weight * plain)
    torch.testing.assert_close(pixel_mass, mean_weight * mass)
    by_class, _ = pixel_losses(logp, t, WEIGHT, weight_mode="class")
    torch.testing.assert_close(by_class, reference(logp, t, WEIGHT, reduction="none"))
