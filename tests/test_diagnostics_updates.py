"""Update shares: each class's share of each layer's parameter update under the optimizer."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weightlab.diagnostics import gradient_shares, record_diagnostics, update_shares
from weightlab.errors import InvalidValueError
from weightlab.lab.architectures import build_stacked
from weightlab.lab.data import load_data
from weightlab.lab.diagnose import diagnose_stack, diagnostics_for_trial
from weightlab.lab.engine import train_single, train_stack
from weightlab.lab.trial import TrialConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weighted_ce(w):
    wt = torch.as_tensor(w, dtype=torch.float32)
    return lambda z, t: F.cross_entropy(z, t, weight=wt)


def _layer_shares(per_class_tensors):
    """Shares of ``[class][param]`` tensors for one layer holding all those params."""
    norms = np.array([math.sqrt(sum(float((t.double() ** 2).sum()) for t in ts))
                      for ts in per_class_tensors])  # fmt: skip
    return norms / norms.sum()


# -- SGD: the known answer -----------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_update_shares_equal_gradient_shares(momentum):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    x, y = torch.randn(30, 5), torch.tensor([0] * 18 + [1] * 8 + [2] * 4)
    w = np.array([0.3, 1.0, 4.0])
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=momentum)
    for _ in range(3):  # a momentum buffer exists, and is not a class's push
        opt.zero_grad()
        F.cross_entropy(m(x[:20]), y[:20], weight=torch.tensor(w, dtype=torch.float32)).backward()
        opt.step()
    d = record_diagnostics(m, None, x, y, w, optimizer=opt)
    u = d["update_shares"]
    assert (u["optimizer"], u["rule"], u["preconditioner"]) == ("SGD", "sgd", "identity")
    np.testing.assert_allclose(u["share"], d["share_weighted"], rtol=1e-12)


def test_sgd_update_shares_equal_the_steps_sgd_takes_per_class():
    # Independent of the diagnostics' formula: plain SGD (no momentum) stepped on class c's
    # part of the weighted mean loss alone moves layer l by -lr * g_{l,c}; the shares of those
    # actual parameter changes are the update shares.
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(24, 4), torch.tensor([0] * 14 + [1] * 7 + [2] * 3)
    w = torch.tensor([0.2, 1.0, 5.0])
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    got = record_diagnostics(m, None, x, y, w.numpy(), optimizer=opt)["update_shares"]["share"]
    steps = []  # [class][layer][param] parameter change
    for c in range(3):
        mc = copy.deepcopy(m)
        oc = torch.optim.SGD(mc.parameters(), lr=0.5)
        per = F.cross_entropy(mc(x), y, weight=w, reduction="none")
        (per[y == c].sum() / w[y].sum()).backward()
        before = [p.detach().clone() for p in mc.parameters()]
        oc.step()
        delta = [p.detach() - b for p, b in zip(mc.parameters(), before, strict=True)]
        steps.append([delta[0:2], delta[2:4]])
    for layer in range(2):
        want = _layer_shares([steps[c][layer] for c in range(3)])
        np.testing.assert_allclose(got[layer], want, rtol=1e-5)


# -- Adam: a constructed case with a hand answer -------------------------------------------


def _disjoint_case():
    """Class 0's inputs live on features 0-1, class 1's on 2-3: their gradients never overlap."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(12, 4)
    x[:9, :2] = torch.randn(9, 2, generator=g)
    x[9:, 2:] = torch.randn(3, 2, generator=g)
    y = torch.tensor([0] * 9 + [1] * 3)
    m = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.randn(2, 4, generator=g))
    return m, x, y


def test_adam_first_step_gives_each_class_the_same_update_whatever_its_weight():
    # Before any step Adam's update is g / (|g| + eps): on a coordinate only class c pushes,
    # class c's update is sign(g_c) -- its weight cancels. Each class here pushes 2 x 2 weights,
    # so ||u_c|| = 2 for both classes and the update shares are 1/2, 1/2 by hand, while the
    # gradient shares follow the weight (class 1 weighted 10).
    m, x, y = _disjoint_case()
    w = [1.0, 10.0]
    adam = torch.optim.Adam(m.parameters(), lr=0.01)
    u = update_shares(m, _weighted_ce(w), x, y, adam)
    grad = gradient_shares(m, _weighted_ce(w), x, y)
    assert u["preconditioner"] == "first step"
    np.testing.assert_allclose(u["norm"][0], [2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(u["share"][0], [0.5, 0.5], rtol=1e-6)
    assert grad["share"][0][1] > 0.75  # the weight gives class 1 most of the gradient
    # the heavily weighted class gets a smaller share of the update than of the gradient
    assert u["share"][0][1] < grad["share"][0][1] - 0.25
    # and its update share does not move with its weight, unlike its gradient share
    u1 = update_shares(m, _weighted_ce([1.0, 1.0]), x, y, adam)
    g1 = gradient_shares(m, _weighted_ce([1.0, 1.0]), x, y)
    np.testing.assert_allclose(u1["share"][0], u["share"][0], rtol=1e-6)
    assert g1["share"][0][1] < grad["share"][0][1] - 0.5


def test_adam_with_state_still_evens_out_the_weighted_class():
    m, x, y = _disjoint_case()
    w = [1.0, 10.0]
    adam = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(5):
        adam.zero_grad()
        _weighted_ce(w)(m(x), y).backward()
        adam.step()
    d = record_diagnostics(m, None, x, y, w, optimizer=adam)
    u = d["update_shares"]
    assert (u["rule"], u["preconditioner"], u["step"]) == ("adam", "state", 5)
    assert u["share"][0][1] < d["share_weighted"][0][1] - 0.2


# -- Adam, AdamW and RMSprop against a hand computation ------------------------------------


def _hand_class_grads(m, x, y, w):
    """Per class, [dW, db] of the weighted mean CE of a linear softmax classifier (numpy)."""
    W, b = m.weight.detach().double().numpy(), m.bias.detach().double().numpy()
    X, Y = x.double().numpy(), y.numpy()
    z = X @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(W.shape[0])[Y]) * w[Y][:, None] / w[Y].sum()
    return [[dz[Y == c].T @ X[Y == c], dz[Y == c].sum(0)] for c in range(W.shape[0])]


@pytest.mark.parametrize(
    "name,kw",
    [("adam", {}), ("adam", {"amsgrad": True}), ("adam", {"weight_decay": 0.1}),
     ("adamw", {"weight_decay": 0.1}), ("rmsprop", {}), ("rmsprop", {"centered": True}),
     ("rmsprop", {"momentum": 0.9})],
)  # fmt: skip
def test_update_shares_match_a_hand_computation(name, kw):
    torch.manual_seed(2)
    m = nn.Linear(3, 3)
    w = np.array([0.5, 1.0, 3.0])
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
    opt = cls[name](m.parameters(), lr=0.05, **kw)
    g2 = torch.Generator().manual_seed(3)
    b2, eps = (0.999, 1e-8) if name != "rmsprop" else (0.99, 1e-8)
    coupled = name == "rmsprop" or (name == "adam" and kw.get("weight_decay"))
    decay = kw.get("weight_decay", 0.0)
    v = [np.zeros(p.shape) for p in m.parameters()]
    vmax = [np.zeros(p.shape) for p in m.parameters()]
    avg = [np.zeros(p.shape) for p in m.parameters()]
    steps = 3
    for _ in range(steps):  # train, keeping Adam's / RMSprop's second moment by hand
        xb = torch.randn(16, 3, generator=g2)
        yb = torch.randint(0, 3, (16,), generator=g2)
        opt.zero_grad()
        F.cross_entropy(m(xb), yb, weight=torch.tensor(w, dtype=torch.float32)).backward()
        for i, p in enumerate(m.parameters()):
            g = p.grad.double().numpy() + (decay * p.detach().double().numpy() if coupled else 0)
            v[i] = b2 * v[i] + (1 - b2) * g**2
            vmax[i] = np.maximum(vmax[i], v[i])
            avg[i] = b2 * avg[i] + (1 - b2) * g
        opt.step()
    x = torch.randn(40, 3, generator=g2)
    y = torch.tensor([0] * 25 + [1] * 10 + [2] * 5)
    per_class = _hand_class_grads(m, x, y, w)
    params = [p.detach().double().numpy() for p in m.parameters()]
    denoms = []
    for i in range(2):
        g = sum(pc[i] for pc in per_class) + (decay * params[i] if coupled else 0)
        nv = b2 * v[i] + (1 - b2) * g**2  # the next step's second moment on the probe
        if name == "rmsprop":
            if kw.get("centered"):
                na = b2 * avg[i] + (1 - b2) * g
                nv = nv - na**2
            denoms.append(np.sqrt(nv) + eps)
        else:
            if kw.get("amsgrad"):
                nv = np.maximum(vmax[i], nv)
            denoms.append(np.sqrt(nv / (1 - b2 ** (steps + 1))) + eps)
    norms = np.array([math.sqrt(sum(((pc[i] / denoms[i]) ** 2).sum() for i in range(2)))
                      for pc in per_class])  # fmt: skip
    u = record_diagnostics(m, None, x, y, w, optimizer=opt)["update_shares"]
    assert u["preconditioner"] == "state" and u["step"] == steps
    np.testing.assert_allclose(u["share"][0], norms / norms.sum(), rtol=1e-5)
    direct = update_shares(m, _weighted_ce(w), x, y, opt)
    np.testing.assert_allclose(direct["norm"][0], norms, rtol=1e-5)


def test_the_optimizer_is_only_read():
    m, x, y = _disjoint_case()
    adam = torch.optim.Adam(m.parameters(), lr=0.05)
    adam.zero_grad()
    _weighted_ce([1.0, 1.0])(m(x), y).backward()
    adam.step()
    state = {k: v.clone() for k, v in adam.state[m.weight].items()}
    weight = m.weight.detach().clone()
    record_diagnostics(m, None, x, y, [1.0, 3.0], optimizer=adam)
    assert torch.equal(m.weight, weight) and m.weight.grad is None
    assert all(torch.equal(adam.state[m.weight][k], v) for k, v in state.items())


def test_optimizers_it_cannot_read_are_refused():
    m, x, y = _disjoint_case()
    with pytest.raises(InvalidValueError, match=r"`optimizer`.*Adagrad"):
        record_diagnostics(m, None, x, y, [1.0, 1.0], optimizer=torch.optim.Adagrad(m.parameters()))
    other = torch.optim.Adam(nn.Linear(4, 2).parameters())
    with pytest.raises(InvalidValueError, match="every trainable parameter"):
        record_diagnostics(m, None, x, y, [1.0, 1.0], optimizer=other)
    assert "update_shares" not in record_diagnostics(m, None, x, y, [1.0, 1.0])


# -- the lab: stacks, trials, the engine ---------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_data("digits-lt", imbalance_ratio=10)


def _configs(arch, optimizer, seeds=(0, 1, 2)):
    return [
        TrialConfig("digits-lt", arch, optimizer, "power", alpha, seed=seed, epochs=2,
                    lr=0.1 if optimizer == "sgd" else 0.01, batch_size=64,
                    model_params=(("hidden", 8),))
        for seed, alpha in zip(seeds, (0.0, 0.5, 1.0), strict=False)
    ]  # fmt: skip


def _weights(data, configs):
    counts = data.train_counts.astype(np.float64)
    return [counts ** -(c.alpha or 0.0) for c in configs]


@pytest.mark.parametrize(
    "arch,optimizer", [("mlp", "adam"), ("mlp", "rmsprop"), ("mlp", "sgd"), ("cnn", "adam"),
                       ("gru", "adam")],
)  # fmt: skip
def test_a_slice_update_shares_equal_the_trial_trained_alone(digits, arch, optimizer):
    # The stack's optimizer state, exported slice by slice, gives each slice the update
    # shares of the same trial trained alone with its own optimizer.
    configs = _configs(arch, optimizer)
    weights = _weights(digits, configs)
    stacked = train_stack(digits, configs, weights, diagnostics=True)
    for k in (0, 2):
        alone = train_single(digits, configs[k], weights[k], diagnostics=True)
        a = stacked[k].extra["diagnostics"]["final"]["update_shares"]
        b = alone.extra["diagnostics"]["final"]["update_shares"]
        assert (
            a["preconditioner"]
            == b["preconditioner"]
            == ("identity" if optimizer == "sgd" else "state")
        )
        assert a["step"] == b["step"]
        np.testing.assert_allclose(a["share"], b["share"], rtol=1e-3, atol=1e-5)
        assert "update_shares" not in stacked[k].extra["diagnostics"]["init"]  # old keys only
    grads = stacked[2].extra["diagnostics"]["final"]
    if optimizer == "sgd":
        np.testing.assert_allclose(grads["update_shares"]["share"], grads["share_weighted"],
                                   rtol=1e-9)  # fmt: skip
    else:  # the preconditioner changes the shares
        diff = np.abs(np.array(grads["update_shares"]["share"]) - grads["share_weighted"]).max()
        assert diff > 1e-3


def test_update_shares_survive_a_pruned_slice(digits):
    # A pruned slice leaves the stack with its optimizer state (select_slices); the
    # remaining slices' state still lines up with them.
    configs = _configs("mlp", "adam")
    weights = _weights(digits, configs)
    stacked = train_stack(digits, configs, weights, diagnostics=True,
                          on_epoch=lambda e, ids, s: {1: "pruned"} if e == 1 else {})  # fmt: skip
    assert stacked[1].status == "pruned"
    alone = train_single(digits, configs[2], weights[2], diagnostics=True)
    np.testing.assert_allclose(
        stacked[2].extra["diagnostics"]["final"]["update_shares"]["share"],
        alone.extra["diagnostics"]["final"]["update_shares"]["share"], rtol=1e-3, atol=1e-5,
    )  # fmt: skip


def test_a_state_that_does_not_line_up_is_recorded_as_missing(digits):
    data = digits.inputs("mlp")
    stack = build_stacked("mlp", (64,), 10, [0, 1], hidden=8)
    other = build_stacked("mlp", (64,), 10, [0, 1], hidden=8)
    opt = torch.optim.Adam(other.parameters())
    out = diagnose_stack(stack, "mlp", data, [np.ones(10)] * 2, model_params={"hidden": 8},
                         optimizer=opt)  # fmt: skip
    for d in out:
        assert d is not None and d["share_weighted"]  # gradient shares are kept
        assert d["update_shares"]["share"] is None
        assert "not the optimizer's" in d["update_shares"]["missing"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_diagnostics_of_a_trial_at_initialisation_have_first_step_update_shares(digits, optimizer):
    cfg = _configs("mlp", optimizer)[2]
    d = diagnostics_for_trial(cfg, digits)
    u = d["update_shares"]
    want = {"sgd": ("SGD", "identity"), "adam": ("Adam", "first step"),
            "rmsprop": ("RMSprop", "first step")}[optimizer]  # fmt: skip
    assert (u["optimizer"], u["preconditioner"]) == want
    for row in u["share"]:
        assert sum(row) == pytest.approx(1.0)
    if optimizer == "sgd":
        np.testing.assert_allclose(u["share"], d["share_weighted"], rtol=1e-9)


# -- the report ----------------------------------------------------------------------------


def _diag(grad_w, grad_u, mass, mass_u, update=None):
    d = {"layers": ["l0"], "classes": [0, 1], "share_weighted": [grad_w],
         "share_unweighted": [grad_u], "loss_mass": mass,
         "loss_mass_unweighted": mass_u}  # fmt: skip
    if update is not None:
        d["update_shares"] = {"share": [update], "optimizer": "Adam", "rule": "adam",
                              "preconditioner": "state", "step": 3}  # fmt: skip
    return d


def test_update_transfer_by_hand():
    from weightlab.lab.trial import TrialResult
    from weightlab.report import analysis as an

    def cfg(weighting, alpha, optimizer):
        return TrialConfig("digits-lt", "mlp", optimizer, weighting, alpha, 0)

    weighted = _diag([0.4, 0.6], [0.8, 0.2], [0.5, 0.5], [0.9, 0.1], update=[0.7, 0.3])
    none = _diag([0.8, 0.2], [0.8, 0.2], [0.9, 0.1], [0.9, 0.1], update=[0.75, 0.25])
    rs = [
        TrialResult(cfg("power", 1.0, "adam"), "done", extra={"diagnostics": {"final": weighted}}),
        TrialResult(cfg("none", None, "adam"), "done", extra={"diagnostics": {"final": none}}),
        # a cell without a none trial, and one whose store predates update shares
        TrialResult(cfg("power", 1.0, "rmsprop"), "done",
                    extra={"diagnostics": {"final": weighted}}),
        TrialResult(cfg("power", 1.0, "sgd"), "done",
                    extra={"diagnostics": {"final": _diag([0.4, 0.6], [0.8, 0.2], [0.5, 0.5],
                                                          [0.9, 0.1])}}),
    ]  # fmt: skip
    rows = an.update_transfer(rs, ["mlp"], ["sgd", "adam", "rmsprop"])
    assert [(r.optimizer, r.tail) for r in rows] == [("adam", [1]), ("rmsprop", [1])]
    adam, rms = rows
    assert (adam.grad_unweighted, adam.grad_weighted, adam.update_weighted) == pytest.approx(
        (0.2, 0.6, 0.3)
    )
    assert (adam.grad_none, adam.update_none) == pytest.approx((0.2, 0.25))
    assert adam.reached == pytest.approx((0.3 - 0.25) / (0.6 - 0.2))
    assert rms.reached is None and rms.grad_none is None
    assert an.update_transfer(rs[3:], ["mlp"], ["sgd"]) == []


def test_a_study_s_report_shows_update_shares_and_sgd_passes_the_push_through():
    from weightlab.lab.store import MemoryStore
    from weightlab.lab.study import StudySpec, run_study
    from weightlab.report import build_context, render_html

    spec = StudySpec(archs=["mlp"], optimizers=["sgd", "adam"], weightings=["none", "balanced"],
                     seeds=[0], epochs=1,
                     model_params={"mlp": {"hidden": 16, "layers": 1}})  # fmt: skip
    store = MemoryStore()
    run_study(spec, store)
    for r in store.results():
        final = r.extra["diagnostics"]["final"]
        assert final["update_shares"]["preconditioner"] in ("identity", "state")
        assert "update_shares" not in r.extra["diagnostics"]["init"]
    ctx = build_context(store, diagnostics=False)
    rows = {u["optimizer"]: u for u in ctx["updates"]}
    assert set(rows) == {"sgd", "adam"}
    assert float(rows["sgd"]["reached"]) == pytest.approx(1.0, abs=1e-3)  # "1.000"
    assert rows["adam"]["when"] == "after training"
    # the engine records update shares after training (its optimizer exists by then)
    by_when = {g["when"]: g["update"] for g in ctx["gradients"]}
    assert by_when["after training"].startswith("update shares under ")
    assert by_when["at initialisation"] == "no update shares stored"
    html = render_html(ctx)
    assert "How much of a weighting's push reaches the parameters" in html


def test_a_report_renders_a_store_without_update_shares():
    from weightlab.lab.store import MemoryStore
    from weightlab.lab.trial import TrialResult
    from weightlab.report import build_context, render_html

    store = MemoryStore()
    old = _diag([0.4, 0.6], [0.8, 0.2], [0.5, 0.5], [0.9, 0.1])
    for w, a in (("none", None), ("power", 1.0)):
        cfg = TrialConfig("digits-lt", "mlp", "adam", w, a, 0, epochs=1)
        store.put(TrialResult(cfg, "done", train_loss=[1.0], val_metric=[0.5],
                              metrics={"balanced_accuracy": 0.5, "accuracy": 0.5},
                              extra={"diagnostics": {"init": old, "final": old}}))  # fmt: skip
    ctx = build_context(store, diagnostics=False)
    assert ctx["updates"] == []
    assert [g["update"] for g in ctx["gradients"]] == ["no update shares stored"] * 2
    assert "No update shares in this store" in render_html(ctx)
