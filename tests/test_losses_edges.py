"""The hard edges of issue 13: PyTorch's ``pos_weight`` layouts, bad targets, learnable weights.

Each accepted input is checked against an independent reference (PyTorch's
``nn.BCEWithLogitsLoss`` for ``pos_weight``, the float64 formulas of
``tests/loss_harness.py`` for learnable weights, with ``gradcheck``); each
refused one against its exact message. TorchScript's refusal is here too;
``tests/test_losses_compile.py`` compiles every loss with ``torch.compile``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import weightlab.functional as WF
from loss_harness import CASES, COUNTS, CW_ML, IGNORE, W5, make_inputs, ref_ldam, ref_logit_adjusted
from weightlab.errors import InvalidWeightError, TargetOutOfRangeError, WeightlabError
from weightlab.losses import (
    LOSSES,
    AsymmetricLoss,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    FocalLoss,
)


def _raises(error, message, call):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message
    assert isinstance(info.value, WeightlabError) and isinstance(info.value, ValueError)


def _value_and_grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    value = fn(*leaves)
    grads = torch.autograd.grad(value.sum(), leaves)
    return value.detach(), grads


# ---------------------------------------------------------------- 2. pos_weight layouts

LAYOUTS = [
    ((6, 4), (1, 4)),
    ((6, 4), (1, 1)),
    ((3, 4, 5), (4, 1)),
    ((3, 4, 5), (1, 4, 1)),
    ((2, 4, 3, 5), (4, 1, 1)),  # PyTorch's documented layout for (N, C, H, W)
    ((2, 4, 3, 5), (1, 4, 1, 1)),
    ((2, 4, 3, 5), (1, 1, 1)),
]


def _binary_inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    t = (torch.rand(shape, generator=g, dtype=torch.float64) > 0.6).to(torch.float64)
    return x, t


@pytest.mark.parametrize(("shape", "layout"), LAYOUTS, ids=[f"{s}-{w}" for s, w in LAYOUTS])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pytorch_pos_weight_layouts_give_pytorchs_numbers(shape, layout, reduction):
    x, t = _binary_inputs(shape)
    # float32-exact weights: the module keeps its buffer in float32
    pw = torch.rand(layout, generator=torch.Generator().manual_seed(1)).double() * 4
    elem = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for sample_weight in (None, elem):
        theirs_fn = nn.BCEWithLogitsLoss(weight=sample_weight, pos_weight=pw, reduction=reduction)
        theirs = _value_and_grads(lambda z, f=theirs_fn: f(z, t), x)
        fused = _value_and_grads(
            lambda z, sw=sample_weight: WF.binary_cross_entropy(
                z, t, pos_weight=pw, sample_weight=sw, reduction=reduction
            ),
            x,
        )
        # class_weight=[1, 1] takes the composite (non-fused) path: the same numbers
        composite = _value_and_grads(
            lambda z, sw=sample_weight: WF.binary_cross_entropy(
                z, t, pos_weight=pw, class_weight=[1.0, 1.0], sample_weight=sw,
                reduction=reduction,
            ),
            x,
        )  # fmt: skip
        module = BinaryCrossEntropyLoss(pos_weight=pw, reduction=reduction).double()
        modular = _value_and_grads(lambda z, m=module, sw=sample_weight: m(z, t, sw), x)
        for ours in (fused, composite, modular):
            torch.testing.assert_close(ours[0], theirs[0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(ours[1], theirs[1], rtol=1e-12, atol=1e-12)


def test_pytorch_layout_equals_weightlabs_per_label_vector():
    x, t = _binary_inputs((2, 4, 3, 5))
    pw = torch.tensor([0.5, 2.0, 1.0, 4.0], dtype=torch.float64)
    flat = WF.binary_cross_entropy(x, t, pos_weight=pw, reduction="none")
    for layout in ((4, 1, 1), (1, 4, 1, 1)):
        assert torch.equal(
            WF.binary_cross_entropy(x, t, pos_weight=pw.view(layout), reduction="none"), flat
        )


_POS_FIX = (
    "Pass one positive-class weight per label (dim 1 of the input); PyTorch aligns other "
    "shapes with the input's last axes, which weightlab does not support. "
    "`weightlab.weights.pos_weight(counts)` computes negatives/positives."
)

REFUSED_LAYOUTS = [
    # (1, L) on (N, L, d): PyTorch would apply it along d, the last axis
    ((3, 4, 5), (1, 4), "(4, 1) or (1, 4, 1)", "(3, 4, 5)"),
    # (L, d): a weight per label and position (PyTorch's (C, H, W)), not per label
    ((3, 4, 5), (4, 5), "(4, 1) or (1, 4, 1)", "(3, 4, 5)"),
    # (L, 1) on (N, L): PyTorch would broadcast it against the batch axis
    ((6, 4), (4, 1), "(1, 4)", "(6, 4)"),
    # more dims than the input: PyTorch's result would gain an axis
    ((6, 4), (1, 1, 1), "(1, 4)", "(6, 4)"),
    ((2, 4, 3, 5), (4, 3, 1), "(4, 1, 1) or (1, 4, 1, 1)", "(2, 4, 3, 5)"),
]


@pytest.mark.parametrize(
    ("shape", "layout", "accepted", "shown"),
    REFUSED_LAYOUTS,
    ids=[str(r[1]) for r in REFUSED_LAYOUTS],
)
def test_ambiguous_pos_weight_layouts_are_refused(shape, layout, accepted, shown):
    x, t = _binary_inputs(shape)
    message = (
        f"Expected `pos_weight` to have shape (), (1,), (4,) (one entry per label) or PyTorch's "
        f"per-label layout {accepted} for input of shape {shown}, but got shape "
        f"{tuple(layout)}. {_POS_FIX}"
    )
    _raises(InvalidWeightError, message, lambda: WF.binary_cross_entropy(
        x, t, pos_weight=torch.ones(layout, dtype=torch.float64)))  # fmt: skip
    module = BinaryCrossEntropyLoss(pos_weight=torch.ones(layout)).double()
    _raises(InvalidWeightError, message, lambda: module(x, t))


def test_one_dimensional_input_takes_a_single_pos_weight():
    x, t = _binary_inputs((5,))
    _raises(
        InvalidWeightError,
        "Expected `pos_weight` to have shape () or (1,) (one weight: the input has one label per "
        f"sample) for input of shape (5,), but got shape (5, 1). {_POS_FIX}",
        lambda: WF.binary_cross_entropy(x, t, pos_weight=torch.ones(5, 1, dtype=torch.float64)),
    )


# ---------------------------------------------------------------- 3. bad targets

X = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))

_SUM_FIX = (
    "Normalise it with `target / target.sum(1, keepdim=True)`; to weigh a sample, pass "
    "`sample_weight` instead of scaling its target (0 drops it)."
)
_NEG_FIX = (
    "Pass a distribution over the classes for every sample (e.g. `torch.softmax(scores, 1)` "
    "or one-hot rows), or class indices as an integer tensor."
)

BAD_PROBABILITIES = [
    (
        "all 2.0 (the loss would simply double)",
        lambda: WF.cross_entropy(X, torch.full((4, 3), 2.0)),
        "Expected `target` (class probabilities over dim 1) to sum to 1 (within 0.001) for every "
        f"sample, but got a sum of 6 at position 0. {_SUM_FIX}",
    ),
    (
        "one row off",
        lambda: WF.cross_entropy(
            X, torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.2, 0.2], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
        ),
        "Expected `target` (class probabilities over dim 1) to sum to 1 (within 0.001) for every "
        f"sample, but got a sum of 0.6 at position 1. {_SUM_FIX}",
    ),
    (
        "an all-zero row (use sample_weight=0 to drop a sample)",
        lambda: WF.cross_entropy(
            X, torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0], [0, 0, 1.0]])
        ),
        "Expected `target` (class probabilities over dim 1) to sum to 1 (within 0.001) for every "
        f"sample, but got a sum of 0 at position 2. {_SUM_FIX}",
    ),
    (
        "spatial: the position is (sample, d1)",
        lambda: WF.cross_entropy(
            torch.randn(2, 3, 4), torch.full((2, 3, 4), 1 / 3).index_fill(2, torch.tensor([3]), 0.3)
        ),
        "Expected `target` (class probabilities over dim 1) to sum to 1 (within 0.001) for every "
        f"sample, but got a sum of 0.9 at position (0, 3). {_SUM_FIX}",
    ),
    (
        "negative entries that still sum to 1",
        lambda: WF.cross_entropy(X, torch.tensor([[1.5, -0.5, 0.0]] * 4)),
        "Expected `target` (class probabilities over dim 1) to hold finite values >= 0, but got "
        f"-0.5 at index (0, 1). {_NEG_FIX}",
    ),
    (
        "NaN",
        lambda: WF.cross_entropy(
            X, torch.tensor([[1.0, 0.0, 0.0]] * 3 + [[0.5, float("nan"), 0.5]])
        ),
        "Expected `target` (class probabilities over dim 1) to hold finite values >= 0, but got "
        f"nan at index (3, 1). {_NEG_FIX}",
    ),
    (
        "with label smoothing (the raw target is checked)",
        lambda: WF.cross_entropy(X, torch.full((4, 3), 2.0), label_smoothing=0.1),
        "Expected `target` (class probabilities over dim 1) to sum to 1 (within 0.001) for every "
        f"sample, but got a sum of 6 at position 0. {_SUM_FIX}",
    ),
    (
        "module",
        lambda: CrossEntropyLoss([1.0, 2.0, 3.0])(X, torch.full((4, 3), 2.0)),
        "Expected `target` (class probabilities over dim 1) to sum to 1 (within 0.001) for every "
        f"sample, but got a sum of 6 at position 0. {_SUM_FIX}",
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "message"), BAD_PROBABILITIES, ids=[c[0] for c in BAD_PROBABILITIES]
)
def test_bad_probability_targets_are_refused(case, call, message):
    _raises(TargetOutOfRangeError, message, call)


def test_valid_soft_targets_pass_and_match_pytorch():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 1000, generator=g)
    soft = torch.softmax(torch.randn(16, 1000, generator=g) * 3, 1)  # float32 over 1000 classes
    one_hot = F.one_hot(torch.randint(0, 1000, (16,), generator=g), 1000).float()
    mixup = 0.3 * one_hot + 0.7 * one_hot.roll(1, 0)
    w = torch.rand(1000, generator=g) + 0.5
    for target in (soft, one_hot, mixup):
        for kwargs, theirs in (
            ({}, {}),
            ({"class_weight": w}, {"weight": w}),
            ({"label_smoothing": 0.1}, {"label_smoothing": 0.1}),
        ):
            torch.testing.assert_close(
                WF.cross_entropy(x, target, **kwargs), F.cross_entropy(x, target, **theirs)
            )
    # rounded to bfloat16/float16, rows are off by up to ~eps/2 of that dtype: still accepted
    for dtype in (torch.bfloat16, torch.float16):
        rounded = soft.to(dtype)
        assert abs(float(rounded.float().sum(1).sub(1).abs().max())) > 1e-5
        WF.cross_entropy(x.to(dtype), rounded)
    assert WF.cross_entropy(torch.randn(0, 3), torch.zeros(0, 3)) == 0


def test_probability_checks_can_be_switched_off():
    target = torch.full((4, 3), 2.0)
    ours = WF.cross_entropy(X, target, validate_args=False)
    torch.testing.assert_close(ours, F.cross_entropy(X, target))  # PyTorch doubles silently
    torch.testing.assert_close(ours, 6 * WF.cross_entropy(X, target / 6))


_BIN_FIX = (
    "Map labels to 0/1 (for -1/1 labels: `(target + 1) / 2`); soft targets in [0, 1] are fine."
)
SIGMOID_LOSSES = {
    "asymmetric_loss": WF.asymmetric_loss,
    "binary_cross_entropy": WF.binary_cross_entropy,
    "sigmoid_focal_loss": WF.sigmoid_focal_loss,
}


@pytest.mark.parametrize("name", sorted(SIGMOID_LOSSES))
def test_sigmoid_targets_outside_the_unit_interval_are_refused(name):
    fn = SIGMOID_LOSSES[name]
    x = torch.randn(2, 3)
    cases = [
        (torch.full((2, 3), 2.0), "[2.0] (first at position (0, 0))"),
        (torch.tensor([[0.0, 1.0, 1.0], [-1.0, 1.0, -1.0]]), "[-1.0] (first at position (1, 0))"),
        (
            torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 1.0]]),
            "[-1.0, 2.0] (first at position (0, 2))",
        ),
        (
            torch.tensor([[0.0, float("nan"), 1.0], [0.0, 0.0, 1.0]]),
            "[nan] (first at position (0, 1))",
        ),
    ]
    for target, received in cases:
        message = (
            f"Expected `target` to hold 0/1 labels or probabilities in [0, 1], but got {received}. "
            f"{_BIN_FIX}"
        )
        _raises(TargetOutOfRangeError, message, lambda t=target: fn(x, t))
    soft = torch.rand(2, 3)
    assert torch.isfinite(fn(x, soft))  # soft targets in [0, 1] are valid
    assert torch.isfinite(fn(x, torch.full((2, 3), 2.0), validate_args=False))


def test_asymmetric_module_refuses_a_target_of_two():
    _raises(
        TargetOutOfRangeError,
        "Expected `target` to hold 0/1 labels or probabilities in [0, 1], but got [2.0] (first at "
        f"position (0, 0)). {_BIN_FIX}",
        lambda: AsymmetricLoss()(torch.randn(2, 3), torch.full((2, 3), 2.0)),
    )


# ---------------------------------------------------------------- 4. learnable weights


def _takes_class_weight(name):
    return LOSSES.info(name).class_weight == "class_weight"


def _learnable_weight(case):
    return torch.tensor(W5 if case.kind == "multiclass" else CW_ML, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(n for n in CASES if _takes_class_weight(n)))
@pytest.mark.parametrize("extra", [0, 3])
def test_learnable_class_weights_get_the_formulas_gradient(name, extra):
    case = CASES[name]
    x, target = make_inputs(case, n=5, extra=extra)
    if case.kind == "multiclass":
        target[1] = IGNORE
    w = _learnable_weight(case)
    kwargs = {k: v for k, v in case.fn_kwargs.items() if k != "class_weight"}

    def ours(x, w):
        return case.fn(x, target, **kwargs, class_weight=w)

    def ref(x, w):
        return case.reference(x, target, **kwargs, class_weight=w)

    value, grads = _value_and_grads(ours, x, w)
    ref_value, ref_grads = _value_and_grads(ref, x, w)
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    for reduction in ("sum", "mean", "none"):
        assert torch.autograd.gradcheck(
            lambda x, w, r=reduction: case.fn(x, target, **kwargs, class_weight=w, reduction=r),
            (x.clone().requires_grad_(True), w.clone().requires_grad_(True)),
            fast_mode=reduction == "none",  # one random projection of the (N, ...) output
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_learnable_sample_weights_get_the_formulas_gradient(name):
    case = CASES[name]
    x, target = make_inputs(case, n=5)
    s = torch.rand(5, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) + 0.5
    value, grads = _value_and_grads(lambda x, s: case.call(x, target, sample_weight=s), x, s)
    ref_value, ref_grads = _value_and_grads(
        lambda x, s: case.reference(x, target, **case.fn_kwargs, sample_weight=s), x, s
    )
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x, s: case.call(x, target, sample_weight=s, reduction="sum"),
        (x.clone().requires_grad_(True), s.clone().requires_grad_(True)),
    )


def test_learnable_pos_weight_in_pytorchs_layout():
    x, t = _binary_inputs((3, 4, 5))
    pw = torch.tensor([0.5, 2.0, 1.0, 4.0], dtype=torch.float64).view(4, 1)

    def formula(x, pw):  # PyTorch's documented per-element term, broadcast as PyTorch does
        return -(pw * t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x)).mean()

    ours = _value_and_grads(lambda x, pw: WF.binary_cross_entropy(x, t, pos_weight=pw), x, pw)
    ref = _value_and_grads(formula, x, pw)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-12, atol=1e-12)
    for g, r in zip(ours[1], ref[1], strict=True):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x, pw: WF.binary_cross_entropy(x, t, pos_weight=pw, reduction="none"),
        (x.clone().requires_grad_(True), pw.clone().requires_grad_(True)),
    )


def test_learnable_prior_and_counts_get_their_gradient():
    # the offset (logit adjustment) and the margins (LDAM) come from them
    x, y = make_inputs(CASES["ldam"], n=6)
    y[2] = IGNORE
    n = torch.tensor(COUNTS, dtype=torch.float64)
    cases = [
        (
            lambda x, n: WF.logit_adjusted_loss(x, y, prior=n, tau=1.5),
            lambda x, n: ref_logit_adjusted(x, y, counts=n, tau=1.5),
        ),
        (
            lambda x, n: WF.ldam_loss(x, y, n, max_m=0.5, s=5.0, class_weight=W5),
            lambda x, n: ref_ldam(x, y, n, max_m=0.5, s=5.0, class_weight=W5),
        ),
    ]
    for ours_fn, ref_fn in cases:
        ours = _value_and_grads(ours_fn, x, n)
        ref = _value_and_grads(ref_fn, x, n)
        torch.testing.assert_close(ours[0], ref[0], rtol=1e-10, atol=1e-12)
        for g, r in zip(ours[1], ref[1], strict=True):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
        assert torch.autograd.gradcheck(
            ours_fn, (x.clone().requires_grad_(True), n.clone().requires_grad_(True))
        )


def test_a_module_with_class_weights_as_a_parameter_learns_them():
    case = CASES["focal"]
    x, y = make_inputs(case, n=8, dtype=torch.float32)
    loss = FocalLoss(class_weight=W5, gamma=2.0)
    loss.class_weight = nn.Parameter(torch.tensor(W5))  # the buffer becomes a parameter
    assert [name for name, _ in loss.named_parameters()] == ["class_weight"]
    loss(x, y).backward()
    w = torch.tensor(W5, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(case.reference(x.double(), y, gamma=2.0, class_weight=w), w)
    torch.testing.assert_close(loss.class_weight.grad, expected.float(), rtol=1e-5, atol=1e-7)
    cross = CrossEntropyLoss(class_weight=W5)
    cross.class_weight = nn.Parameter(torch.tensor(W5))
    cross(x, y).backward()  # PyTorch's nll_loss would refuse a weight that requires grad
    w = torch.tensor(W5, dtype=torch.float64, requires_grad=True)
    reference = CASES["cross_entropy"].reference(x.double(), y, class_weight=w)
    (expected,) = torch.autograd.grad(reference, w)
    torch.testing.assert_close(cross.class_weight.grad, expected.float(), rtol=1e-5, atol=1e-7)


def test_fixed_weights_keep_the_fused_numbers():
    # the composite path is chosen only for weights that require grad; both give the same numbers
    for name in sorted(n for n in CASES if _takes_class_weight(n)):
        case = CASES[name]
        x, target = make_inputs(case, n=6)
        w = _learnable_weight(case)
        kwargs = {k: v for k, v in case.fn_kwargs.items() if k != "class_weight"}
        fixed = case.fn(x, target, **kwargs, class_weight=w)
        learnable = case.fn(x, target, **kwargs, class_weight=w.clone().requires_grad_(True))
        torch.testing.assert_close(learnable.detach(), fixed, rtol=1e-12, atol=1e-14, msg=name)


# ---------------------------------------------------------------- 4. TorchScript


def _module(name):
    return LOSSES.get(name)(**CASES[name].module_kwargs)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", LOSSES.names())
def test_torch_jit_script_is_refused_by_name(name):
    loss = _module(name)
    message = (
        f"Expected `{type(loss).__name__}` to be compiled with `torch.compile`, but got "
        "`torch.jit.script`. weightlab losses are not TorchScript-compatible (they call custom "
        "autograd Functions and take weights as lists, arrays or tensors). Use "
        "`torch.compile(loss)` (every registered loss compiles with fullgraph=True), or call the "
        "loss eagerly outside the scripted model."
    )
    with pytest.raises(RuntimeError) as info:
        torch.jit.script(loss)
    assert str(info.value) == message
    model = nn.Module()
    model.head = nn.Linear(3, 3)
    model.loss = loss
    with pytest.raises(RuntimeError) as info:  # also when it sits inside a scripted model
        torch.jit.script(model)
    assert str(info.value) == message
