"""cross_entropy against torch.nn.functional.cross_entropy, scikit-learn and its own identities."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss

from weightlab.functional import LossParts, cross_entropy

SHAPES = [(7, 4), (5, 3, 6), (3, 5, 2, 3), (6,)]


def _inputs(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 3
    c = shape[0] if len(shape) == 1 else shape[1]
    index_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    y = torch.randint(0, c, index_shape, generator=g)
    w = torch.rand(c, generator=g, dtype=dtype) + 0.1
    probs = torch.softmax(
        torch.randn(shape, generator=g, dtype=dtype), dim=0 if len(shape) == 1 else 1
    )
    return x, y, w, probs


def _value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    out.sum().backward()
    return out.detach(), x.grad


def _assert_same(ours, theirs, x, atol=1e-10):
    v1, g1 = _value_and_grad(ours, x)
    v2, g2 = _value_and_grad(theirs, x)
    torch.testing.assert_close(v1, v2, atol=atol, rtol=1e-7)
    torch.testing.assert_close(g1, g2, atol=atol, rtol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
def test_matches_torch_for_class_indices(shape, reduction, weighted, smoothing, ignore):
    x, y, w, _ = _inputs(shape)
    if ignore and y.dim() > 0:
        y = y.clone()
        y.view(-1)[::3] = -100
    weight = w if weighted else None
    _assert_same(
        lambda z: cross_entropy(
            z, y, class_weight=weight, label_smoothing=smoothing, reduction=reduction
        ),
        lambda z: F.cross_entropy(
            z, y, weight=weight, label_smoothing=smoothing, reduction=reduction
        ),
        x,
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_matches_torch_for_probability_targets(shape, reduction, weighted, smoothing):
    x, _, w, probs = _inputs(shape)
    weight = w if weighted else None
    _assert_same(
        lambda z: cross_entropy(
            z, probs, class_weight=weight, label_smoothing=smoothing, reduction=reduction
        ),
        lambda z: F.cross_entropy(
            z, probs, weight=weight, label_smoothing=smoothing, reduction=reduction
        ),
        x,
    )


def test_custom_ignore_index_matches_torch():
    x, y, w, _ = _inputs((9, 4))
    y = y.clone()
    y[[1, 4]] = 7
    _assert_same(
        lambda z: cross_entropy(z, y, class_weight=w, ignore_index=7),
        lambda z: F.cross_entropy(z, y, weight=w, ignore_index=7),
        x,
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    c=st.integers(2, 6),
    seed=st.integers(0, 10_000),
    smoothing=st.sampled_from([0.0, 0.1]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_randomized_parity_with_torch(n, c, seed, smoothing, dtype):
    x, y, w, _ = _inputs((n, c), dtype=dtype, seed=seed)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    _assert_same(
        lambda z: cross_entropy(z, y, class_weight=w, label_smoothing=smoothing),
        lambda z: F.cross_entropy(z, y, weight=w, label_smoothing=smoothing),
        x,
        atol=tol,
    )


def test_sample_weights_match_sklearn_log_loss():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(20, 4)))
    y = torch.tensor(rng.integers(0, 4, size=20))
    s = torch.tensor(rng.uniform(0.1, 3.0, size=20))
    probs = torch.softmax(logits, 1).numpy()
    expected = log_loss(y.numpy(), probs, sample_weight=s.numpy(), labels=[0, 1, 2, 3])
    ours = cross_entropy(logits, y, sample_weight=s)
    assert ours.item() == pytest.approx(expected, rel=1e-9)


def test_class_and_sample_weights_multiply():
    x, y, w, _ = _inputs((10, 3))
    s = torch.linspace(0.5, 2.0, 10, dtype=torch.float64)
    per = F.cross_entropy(x, y, reduction="none") * w[y] * s
    ours = cross_entropy(x, y, class_weight=w, sample_weight=s)
    torch.testing.assert_close(ours, per.sum() / (w[y] * s).sum())
    ours_count = cross_entropy(x, y, class_weight=w, sample_weight=s, normalize="count")
    torch.testing.assert_close(ours_count, per.sum() / 10)


def test_per_element_sample_weights_for_spatial_input():
    x, y, _, _ = _inputs((2, 3, 4))
    s = torch.rand(2, 4, dtype=torch.float64)
    per = F.cross_entropy(x, y, reduction="none")
    torch.testing.assert_close(
        cross_entropy(x, y, sample_weight=s, reduction="sum"), (per * s).sum()
    )
    s_row = torch.tensor([1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(
        cross_entropy(x, y, sample_weight=s_row, reduction="sum"), (per * s_row[:, None]).sum()
    )


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 10), c=st.integers(2, 5), seed=st.integers(0, 999), k=st.floats(0.1, 10))
def test_uniform_and_scaled_weights(n, c, seed, k):
    x, y, w, _ = _inputs((n, c), seed=seed)
    plain = cross_entropy(x, y)
    torch.testing.assert_close(
        cross_entropy(x, y, class_weight=torch.full((c,), k, dtype=x.dtype)), plain
    )
    torch.testing.assert_close(
        cross_entropy(x, y, class_weight=w * k), cross_entropy(x, y, class_weight=w)
    )


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 10), c=st.integers(2, 5), seed=st.integers(0, 999))
def test_sample_weights_equal_to_class_weights_of_target(n, c, seed):
    x, y, w, _ = _inputs((n, c), seed=seed)
    torch.testing.assert_close(
        cross_entropy(x, y, sample_weight=w[y]), cross_entropy(x, y, class_weight=w)
    )


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=8).filter(lambda c: sum(c) > 0),
    seed=st.integers(0, 999),
)
def test_integer_sample_weights_equal_repeated_samples(counts, seed):
    x, y, _, _ = _inputs((len(counts), 3), seed=seed)
    reps = torch.tensor(counts)
    repeated = cross_entropy(x.repeat_interleave(reps, 0), y.repeat_interleave(reps))
    weighted = cross_entropy(x, y, sample_weight=reps.to(x.dtype), normalize="weight")
    torch.testing.assert_close(weighted, repeated)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2)])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("probabilities", [False, True])
def test_gradcheck_float64(shape, smoothing, probabilities):
    x, y, w, probs = _inputs(shape)
    target = probs if probabilities else y
    s = torch.rand(shape[0], dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: cross_entropy(
            z, target, class_weight=w, sample_weight=s, label_smoothing=smoothing
        ),
        (x,),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_logits_are_finite_and_match_torch(dtype):
    x = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, -100.0]], dtype=dtype)
    y = torch.tensor([1, 1])
    w = torch.tensor([1.0, 2.0, 3.0], dtype=dtype)
    _assert_same(
        lambda z: cross_entropy(z, y, class_weight=w, label_smoothing=0.1),
        lambda z: F.cross_entropy(z, y, weight=w, label_smoothing=0.1),
        x,
        atol=1e-4,
    )
    v, g = _value_and_grad(lambda z: cross_entropy(z, y, class_weight=w), x)
    assert torch.isfinite(v).all() and torch.isfinite(g).all()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_all_ignored_batch_is_zero_with_zero_grad(weighted, smoothing):
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.full((4,), -100)
    loss = cross_entropy(
        x, y, class_weight=[1.0, 2.0, 3.0] if weighted else None, label_smoothing=smoothing
    )
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert torch.isnan(F.cross_entropy(x, y))  # the PyTorch behaviour we replace


@pytest.mark.parametrize("target", [torch.zeros(0, dtype=torch.long), torch.zeros(0, 3)])
def test_empty_batch_is_zero_with_zero_grad(target):
    x = torch.zeros(0, 3, requires_grad=True)
    loss = cross_entropy(x, target, class_weight=[1.0, 2.0, 3.0])
    assert loss.item() == 0.0 and loss.shape == ()
    loss.backward()
    assert x.grad.shape == (0, 3)


def test_zero_weight_for_every_present_class_gives_zero():
    x = torch.randn(3, 3, requires_grad=True)
    loss = cross_entropy(x, torch.tensor([0, 0, 0]), class_weight=[0.0, 1.0, 1.0])
    assert loss.item() == 0.0


def test_parts_give_the_global_mean_over_micro_batches():
    x, y, w, _ = _inputs((12, 4))
    y = y.clone()
    y[[0, 5]] = -100
    whole = cross_entropy(x, y, class_weight=w)
    parts = [
        cross_entropy(xb, yb, class_weight=w, reduction="parts")
        for xb, yb in zip(x.split(5), y.split(5), strict=True)
    ]
    assert all(isinstance(p, LossParts) for p in parts)
    total = sum(parts[1:], parts[0])
    torch.testing.assert_close(total.mean(), whole)
    mean_of_means = torch.stack([p.mean() for p in parts]).mean()
    assert not torch.allclose(mean_of_means, whole)


def test_gradient_accumulation_with_global_normaliser_equals_full_batch():
    x, y, w, _ = _inputs((12, 4))
    full = x.clone().requires_grad_(True)
    cross_entropy(full, y, class_weight=w).backward()
    acc = x.clone().requires_grad_(True)
    micro = list(zip(acc.split(4), y.split(4), strict=True))
    norm = sum(
        cross_entropy(xb.detach(), yb, class_weight=w, reduction="parts").normalizer
        for xb, yb in micro
    )
    for xb, yb in micro:
        (cross_entropy(xb, yb, class_weight=w, reduction="sum") / norm).backward()
    torch.testing.assert_close(acc.grad, full.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_computed_in_float32(dtype):
    x, y, w, _ = _inputs((16, 5), dtype=torch.float32)
    half = x.to(dtype).requires_grad_(True)
    loss = cross_entropy(half, y, class_weight=w)
    assert loss.dtype == dtype
    ref = F.cross_entropy(half.detach().float(), y, weight=w)
    torch.testing.assert_close(loss.float(), ref, atol=1e-2, rtol=1e-2)
    loss.backward()
    assert half.grad.dtype == dtype and torch.isfinite(half.grad.float()).all()


def test_autocast_cpu_bfloat16():
    model = torch.nn.Linear(8, 4)
    x = torch.randn(10, 8)
    y = torch.randint(0, 4, (10,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        loss = cross_entropy(logits, y, class_weight=[1.0, 2.0, 1.0, 0.5])
    assert loss.dtype == torch.bfloat16
    loss.backward()
    assert torch.isfinite(model.weight.grad).all()


def test_no_graph_break_under_torch_compile():
    x, y, w, _ = _inputs((8, 4), dtype=torch.float32)
    s = torch.rand(8)

    def step(z, t, sw):
        return cross_entropy(z, t, class_weight=w, sample_weight=sw, label_smoothing=0.1)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, y, s), step(x, y, s))


def test_unbatched_input_matches_torch():
    x = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    y = torch.tensor(2)
    _assert_same(
        lambda z: cross_entropy(z, y, class_weight=[1.0, 2.0, 3.0]),
        lambda z: F.cross_entropy(z, y, weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)),
        x,
    )
    assert cross_entropy(x, y, reduction="none").shape == ()


def test_weight_list_and_numpy_are_accepted():
    x, y, w, _ = _inputs((6, 3))
    ref = cross_entropy(x, y, class_weight=w)
    torch.testing.assert_close(cross_entropy(x, y, class_weight=w.tolist()), ref)
    torch.testing.assert_close(cross_entropy(x, y, class_weight=w.numpy()), ref)


@pytest.mark.parametrize(
    "reduction,normalize", list(itertools.product(["mean", "sum"], ["weight", "count"]))
)
def test_reductions_relate(reduction, normalize):
    x, y, w, _ = _inputs((6, 3))
    none = cross_entropy(x, y, class_weight=w, reduction="none")
    out = cross_entropy(x, y, class_weight=w, reduction=reduction, normalize=normalize)
    if reduction == "sum":
        torch.testing.assert_close(out, none.sum())
    else:
        denom = w[y].sum() if normalize == "weight" else torch.tensor(6.0, dtype=x.dtype)
        torch.testing.assert_close(out, none.sum() / denom)
