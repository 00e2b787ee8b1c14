"""binary_cross_entropy against binary_cross_entropy_with_logits and the formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss

from weightlab.functional import binary_cross_entropy

SHAPES = [(9,), (6, 4), (3, 4, 5)]


def _inputs(shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 3
    t = (torch.rand(shape, generator=g, dtype=dtype) > 0.6).to(dtype)
    labels = 1 if len(shape) == 1 else shape[1]
    pw = torch.rand(labels, generator=g, dtype=dtype) * 4 + 0.1
    return x, t, pw


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


def _torch_pos_weight(pw, shape):
    """PyTorch broadcasts pos_weight over the last axis; we apply it along dim 1."""
    if len(shape) == 1:
        return pw
    return pw.view((-1,) + (1,) * (len(shape) - 2))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_pos", [False, True])
@pytest.mark.parametrize("use_elem", [False, True])
def test_matches_torch(shape, reduction, use_pos, use_elem):
    x, t, pw = _inputs(shape)
    elem = torch.rand(shape, dtype=torch.float64) if use_elem else None
    _assert_same(
        lambda z: binary_cross_entropy(
            z, t, pos_weight=pw if use_pos else None, sample_weight=elem, reduction=reduction
        ),
        lambda z: F.binary_cross_entropy_with_logits(
            z,
            t,
            weight=elem,
            pos_weight=_torch_pos_weight(pw, shape) if use_pos else None,
            reduction=reduction,
        ),
        x,
    )


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 10), labels=st.integers(1, 5), seed=st.integers(0, 9999))
def test_randomized_parity_soft_targets(n, labels, seed):
    x, _, pw = _inputs((n, labels), seed=seed)
    t = torch.rand(n, labels, dtype=torch.float64)
    _assert_same(
        lambda z: binary_cross_entropy(z, t, pos_weight=pw),
        lambda z: F.binary_cross_entropy_with_logits(z, t, pos_weight=pw),
        x,
    )


def test_class_weight_matches_formula():
    x, t, _ = _inputs((6, 3))
    cw = torch.tensor([[0.5, 2.0], [1.0, 1.0], [3.0, 0.2]], dtype=torch.float64)
    p = torch.sigmoid(x)
    per = -(cw[:, 1] * t * torch.log(p) + cw[:, 0] * (1 - t) * torch.log(1 - p))
    applied = cw[:, 1] * t + cw[:, 0] * (1 - t)
    torch.testing.assert_close(binary_cross_entropy(x, t, class_weight=cw, reduction="none"), per)
    torch.testing.assert_close(binary_cross_entropy(x, t, class_weight=cw), per.mean())
    torch.testing.assert_close(
        binary_cross_entropy(x, t, class_weight=cw, normalize="weight"), per.sum() / applied.sum()
    )
    shared = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        binary_cross_entropy(x, t, class_weight=shared),
        binary_cross_entropy(x, t, class_weight=shared.expand(3, 2)),
    )


def test_class_weight_positive_equals_pos_weight():
    x, t, _ = _inputs((8,))
    torch.testing.assert_close(
        binary_cross_entropy(x, t, class_weight=[1.0, 3.0]),
        binary_cross_entropy(x, t, pos_weight=torch.tensor(3.0, dtype=torch.float64)),
    )


def test_sample_weights_match_sklearn_log_loss():
    x, t, _ = _inputs((30,))
    s = torch.rand(30, dtype=torch.float64) + 0.1
    p = torch.sigmoid(x).numpy()
    expected = log_loss(t.numpy(), p, sample_weight=s.numpy())
    ours = binary_cross_entropy(x, t, sample_weight=s, normalize="weight")
    assert ours.item() == pytest.approx(expected, rel=1e-9)


def test_per_sample_weight_applies_to_all_labels():
    x, t, _ = _inputs((4, 3))
    s = torch.tensor([1.0, 2.0, 0.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(
        binary_cross_entropy(x, t, sample_weight=s, reduction="none"),
        F.binary_cross_entropy_with_logits(x, t, reduction="none") * s[:, None],
    )


@pytest.mark.parametrize("shape", [(5,), (3, 2)])
def test_gradcheck_float64(shape):
    x, t, pw = _inputs(shape)
    cw = torch.tensor([0.7, 1.3], dtype=torch.float64)
    s = torch.rand(shape[0], dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: binary_cross_entropy(
            z, t, class_weight=cw, pos_weight=pw, sample_weight=s, normalize="weight"
        ),
        (x,),
    )


def test_extreme_logits_finite_and_match_torch():
    x = torch.tensor([100.0, -100.0, 100.0, -100.0], dtype=torch.float64)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    pw = torch.tensor(2.0, dtype=torch.float64)
    _assert_same(
        lambda z: binary_cross_entropy(z, t, pos_weight=pw),
        lambda z: F.binary_cross_entropy_with_logits(z, t, pos_weight=pw),
        x,
    )


def test_empty_batch_is_zero_with_zero_grad():
    x = torch.zeros(0, 3, requires_grad=True)
    loss = binary_cross_entropy(x, torch.zeros(0, 3), class_weight=[1.0, 2.0])
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad.shape == (0, 3)
    assert torch.isnan(F.binary_cross_entropy_with_logits(x.detach(), torch.zeros(0, 3)))


def test_zero_sample_weights_with_weight_normalisation_is_zero():
    x = torch.randn(4, requires_grad=True)
    loss = binary_cross_entropy(x, torch.ones(4), sample_weight=torch.zeros(4), normalize="weight")
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    x, t, pw = _inputs((16, 3), dtype=torch.float32)
    xh = x.to(dtype).requires_grad_(True)
    loss = binary_cross_entropy(xh, t.to(dtype), pos_weight=pw)
    assert loss.dtype == dtype
    ref = F.binary_cross_entropy_with_logits(xh.detach().float(), t, pos_weight=pw)
    torch.testing.assert_close(loss.float(), ref, atol=1e-2, rtol=1e-2)
    loss.backward()
    assert xh.grad.dtype == dtype


def test_no_graph_break_under_torch_compile():
    x, t, pw = _inputs((8, 3), dtype=torch.float32)

    def step(z, y):
        return binary_cross_entropy(z, y, class_weight=[1.0, 2.0], pos_weight=pw)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, t), step(x, t))
