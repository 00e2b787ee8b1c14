import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weightlab.diagnostics import (
    gradient_shares,
    layer_parameters,
    loss_mass,
    probe_batch,
    record_diagnostics,
)
from weightlab.errors import ShapeMismatchError
from weightlab.functional import LossParts
from weightlab.lab.diagnose import diagnose_stack, diagnostics_for_trial
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import resolve_weighting


def _hand_norms(m: nn.Linear, x: torch.Tensor, y: torch.Tensor, w: np.ndarray) -> np.ndarray:
    """||g_c|| of a linear softmax classifier under the weighted mean CE, by hand (numpy)."""
    W, b = m.weight.detach().double().numpy(), m.bias.detach().double().numpy()
    X, Y = x.double().numpy(), y.numpy()
    z = X @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(W.shape[0])[Y]
    dz = (p - onehot) * w[Y][:, None] / w[Y].sum()  # dL/dz_i of sum w ce / sum w
    out = []
    for c in range(W.shape[0]):
        r = Y == c
        gW = dz[r].T @ X[r]
        gb = dz[r].sum(0)
        out.append(math.sqrt((gW**2).sum() + (gb**2).sum()))
    return np.array(out)


def test_linear_model_matches_hand_computation():
    torch.manual_seed(0)
    m = nn.Linear(4, 3)
    x = torch.randn(12, 4)
    y = torch.tensor([0] * 7 + [1] * 3 + [2] * 2)
    w = np.array([0.2, 1.0, 3.0])
    wt = torch.tensor(w, dtype=torch.float32)
    d = gradient_shares(m, lambda z, t: F.cross_entropy(z, t, weight=wt), x, y)
    hand = _hand_norms(m, x, y, w)
    np.testing.assert_allclose(d["norm"][0], hand, rtol=1e-5)
    np.testing.assert_allclose(d["share"][0], hand / hand.sum(), rtol=1e-5)
    # the engine's convention (per-sample weighted loss / sum of weights) gives the same numbers
    rec = record_diagnostics(m, None, x, y, w)
    np.testing.assert_allclose(rec["share_weighted"][0], hand / hand.sum(), rtol=1e-5)
    ones = _hand_norms(m, x, y, np.ones(3))
    np.testing.assert_allclose(rec["share_unweighted"][0], ones / ones.sum(), rtol=1e-5)


def test_class_terms_sum_to_the_full_gradient():
    torch.manual_seed(1)
    m = nn.Linear(3, 2)
    x, y = torch.randn(10, 3), torch.tensor([0] * 6 + [1] * 4)
    loss = F.cross_entropy(m(x), y)
    full = torch.autograd.grad(loss, list(m.parameters()))
    # with two classes, g_0 + g_1 = full gradient; check norms are consistent with that
    d = gradient_shares(m, F.cross_entropy, x, y)
    n0, n1 = d["norm"][0]
    total = math.sqrt(sum(float((g**2).sum()) for g in full))
    assert total <= n0 + n1 + 1e-6


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru"])
def test_shares_sum_to_one_per_layer(arch):
    from weightlab.lab.architectures import build_model

    shape = {"mlp": (16,), "cnn": (1, 4, 4), "gru": (4, 4)}[arch]
    m = build_model(arch, shape, 4, seed=0, hidden=8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, *shape, generator=g)
    y = torch.arange(20) % 4
    d = record_diagnostics(m, None, x, y, [1.0, 2.0, 3.0, 4.0])
    assert d["layers"] == [name for name, _ in layer_parameters(m)]
    assert len(d["layers"]) >= 2
    for key in ("share_weighted", "share_unweighted"):
        for row in d[key]:
            assert sum(row) == pytest.approx(1.0)
            assert all(0.0 <= s <= 1.0 for s in row)
    json.dumps(d)  # JSON-ready
    assert not any(p.grad is not None for p in m.parameters())


def test_inverse_count_weights_give_uniform_loss_mass():
    y = torch.tensor([0] * 8 + [1] * 4 + [2])
    counts = np.bincount(y.numpy())
    assert loss_mass(y, 1.0 / counts, 3) == pytest.approx([1 / 3] * 3)
    assert loss_mass(y, np.ones(3), 3) == pytest.approx((counts / counts.sum()).tolist())


def test_weighting_moves_gradient_share_to_the_tail():
    torch.manual_seed(0)
    m = nn.Linear(5, 2)
    x = torch.randn(40, 5)
    y = torch.tensor([0] * 36 + [1] * 4)
    d = record_diagnostics(m, None, x, y, [1 / 36, 1 / 4])
    assert d["share_weighted"][0][1] > d["share_unweighted"][0][1]


def test_bad_probe_is_refused():
    m = nn.Linear(2, 2)
    with pytest.raises(ShapeMismatchError, match="`x`"):
        record_diagnostics(m, None, torch.zeros(3, 2), torch.tensor([0, 1]), [1.0, 1.0])
    with pytest.raises(ShapeMismatchError, match="`class_weight`"):
        record_diagnostics(m, None, torch.zeros(2, 2), torch.tensor([0, 1]), [1.0, 1.0, 1.0])


def test_diagnostics_for_trial_at_init_and_stack_export_agree():
    from weightlab.lab.architectures import build_stacked
    from weightlab.lab.data import load_data

    data = load_data("synthetic", n_classes=3, n_features=6, head=30, imbalance_ratio=5)
    cfgs = [
        TrialConfig("synthetic", "mlp", "sgd", "power", a, seed=s, model_params=(("hidden", 8),))
        for a, s in ((0.0, 0), (1.0, 1))
    ]
    w = np.stack([data.train_counts**-(c.alpha) for c in cfgs])
    w = w / w.mean(1, keepdims=True)
    per_trial = [diagnostics_for_trial(c, data) for c in cfgs]  # resolves the same weights
    stacked = build_stacked("mlp", (6,), 3, [0, 1], hidden=8)
    per_slice = diagnose_stack(stacked, "mlp", data.inputs("mlp"), w, model_params={"hidden": 8})
    for a, b in zip(per_trial, per_slice, strict=True):
        assert b is not None
        np.testing.assert_allclose(a["share_weighted"], b["share_weighted"], rtol=1e-5)
    assert per_trial[1]["loss_mass"] == pytest.approx([1 / 3] * 3)


def _smoothed(z, t, w):
    per = F.cross_entropy(z, t, weight=w, label_smoothing=0.2, reduction="none")
    return LossParts(per.sum(), w[t].sum())


@pytest.mark.parametrize("weighting", ["focal", "ldam"])
def test_diagnostics_of_a_trial_use_its_own_loss(weighting):
    from weightlab.lab.architectures import build_model
    from weightlab.lab.data import load_data

    data = load_data("digits-lt")
    head = resolve_weighting(TrialConfig("d", "mlp", "sgd", weighting, None, 0), [1]).model_params
    cfg = TrialConfig("digits-lt", "mlp", "sgd", weighting, None, seed=3,
                      model_params=tuple(sorted({"hidden": 8, **head}.items())))  # fmt: skip
    got = diagnostics_for_trial(cfg, data)
    d = data.inputs("mlp")
    model = build_model("mlp", (64,), 10, seed=3, hidden=8, **head)
    px, py = probe_batch(d.x_train, d.y_train)
    own = resolve_weighting(cfg, data.train_counts).loss
    want = record_diagnostics(model, own, px, py, np.ones(10))
    ce = record_diagnostics(model, None, px, py, np.ones(10))
    np.testing.assert_allclose(got["share_weighted"], want["share_weighted"], rtol=1e-6)
    # and not plain cross-entropy's shares: the loss changes how gradient is shared
    diff = np.abs(np.asarray(got["share_weighted"]) - np.asarray(ce["share_weighted"])).max()
    assert diff > 1e-4  # float noise is ~1e-7


@pytest.mark.parametrize("loss_fn", [None, _smoothed], ids=["weighted_ce", "smoothed_ce"])
def test_weighted_and_unweighted_shares_equal_separate_computations(loss_fn):
    # With weighted CE the unweighted norms are the weighted ones over each class's weight
    # (one backward pass per class serves both); label smoothing with class weights is not
    # a per-class factor, so each loss gets its own backward passes. Both must agree with
    # gradient_shares run once per loss.
    from weightlab.diagnostics import _scalar_loss

    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    x, y = torch.randn(30, 5), torch.tensor([0] * 18 + [1] * 8 + [2] * 4)
    w = np.array([0.3, 1.0, 4.0])
    rec = record_diagnostics(m, loss_fn, x, y, w)
    for key, weights in (("share_weighted", w), ("share_unweighted", np.ones(3))):
        alone = gradient_shares(m, _scalar_loss(loss_fn, torch.as_tensor(weights)), x, y)
        np.testing.assert_allclose(rec[key], alone["share"], rtol=1e-5)


def test_factor_detects_proportional_rows_only():
    from weightlab.diagnostics import _factor

    ref = torch.tensor([[0.5, -0.25], [1.0, 0.0]])
    assert _factor(3.0 * ref, ref) == pytest.approx(3.0)
    assert _factor(-0.5 * ref, ref) == pytest.approx(-0.5)
    assert _factor(ref + torch.tensor([[0.0, 0.01], [0.0, 0.0]]), ref) is None
    assert _factor(torch.zeros(2, 2), torch.zeros(2, 2)) == 0.0
    assert _factor(ref, torch.zeros(2, 2)) is None
