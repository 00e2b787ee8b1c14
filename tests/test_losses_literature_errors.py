"""Every bad input to the literature losses gets its exact message (``weightlab.errors``)."""

from __future__ import annotations

import math
import re

import pytest
import torch

import weightlab.functional as WF
from weightlab.errors import (
    InvalidDtypeError,
    InvalidValueError,
    InvalidWeightError,
    ShapeMismatchError,
    TargetOutOfRangeError,
    UnknownNameError,
    ZeroCountError,
)
from weightlab.losses import (
    AsymmetricLoss,
    ClassBalancedLoss,
    DeferredReweighting,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SigmoidFocalLoss,
)

x = torch.zeros(4, 3)
y = torch.tensor([0, 1, 2, 0])
t = torch.zeros(4, 3)

ZERO_FIX = "Drop classes that have no training samples, or add a pseudo-count (e.g. `counts + 1`)."
POSITIVE = "to be positive for every class (the loss takes log n_c or 1 / n_c)"
GAMMA = "the focusing exponent; 0 gives cross-entropy"
TAU = "the scale of the log-prior offset; 0 gives cross-entropy"
RANGE_FIX = "Pass a value in that range."

CASES = [
    (
        "zero count (function)",
        lambda: WF.balanced_softmax_loss(x, y, [5, 0, 3]),
        ZeroCountError,
        f"Expected `counts` {POSITIVE}, but got a count of 0 for class 1. {ZERO_FIX}",
    ),
    (
        "zero counts (module)",
        lambda: LDAMLoss([5, 0, 0]),
        ZeroCountError,
        f"Expected `counts` {POSITIVE}, but got a count of 0 for classes 1, 2. {ZERO_FIX}",
    ),
    (
        "zero prior",
        lambda: WF.adjust_logits(x, [0.5, 0.5, 0.0]),
        ZeroCountError,
        f"Expected `prior` {POSITIVE}, but got a count of 0 for class 2. {ZERO_FIX}",
    ),
    (
        "missing counts",
        lambda: WF.ldam_loss(x, y, None),
        InvalidValueError,
        "Expected `counts` to be given (the number of training samples of each class), but got "
        "None. Pass per-class counts, e.g. `weightlab.weights.count_labels(train_labels)` or "
        "`torch.bincount(train_labels)`.",
    ),
    (
        "negative count",
        lambda: ClassBalancedLoss([5, -1, 3]),
        InvalidWeightError,
        "Expected `counts` to hold finite, non-negative counts, but got -1.0 at class 1. "
        "Pass the number of training samples of each class.",
    ),
    (
        "NaN count",
        lambda: WF.class_balanced_loss(x, y, [5, math.nan, 3]),
        InvalidWeightError,
        "Expected `counts` to hold finite, non-negative counts, but got nan at class 1. "
        "Pass the number of training samples of each class.",
    ),
    (
        "counts of the wrong length",
        lambda: WF.balanced_softmax_loss(x, y, [5, 3]),
        InvalidWeightError,
        "Expected `counts` to have shape (3,) (one count per class), but got shape (2,). "
        "Pass one count per class, in class-index order.",
    ),
    (
        "neither counts nor prior",
        lambda: WF.logit_adjusted_loss(x, y),
        InvalidValueError,
        "Expected `counts` or `prior` to be given, exactly one of them, but got neither. "
        "Pass per-class training counts as `counts=`, or class frequencies as `prior=`.",
    ),
    (
        "both counts and prior",
        lambda: LogitAdjustedLoss([1, 2, 3], prior=[0.2, 0.3, 0.5]),
        InvalidValueError,
        "Expected `counts` or `prior` to be given, exactly one of them, but got both. "
        "Pass per-class training counts as `counts=`, or class frequencies as `prior=`.",
    ),
    (
        "negative gamma",
        lambda: WF.focal_loss(x, y, gamma=-1.0),
        InvalidValueError,
        f"Expected `gamma` to be >= 0 ({GAMMA}), but got -1.0. "
        "Pass a value >= 0 (Lin et al. use 2).",
    ),
    (
        "NaN gamma",
        lambda: FocalLoss(gamma=math.nan),
        InvalidValueError,
        f"Expected `gamma` to be a finite number ({GAMMA}), but got nan. Pass a float.",
    ),
    (
        "negative gamma_neg",
        lambda: AsymmetricLoss(gamma_neg=-0.5),
        InvalidValueError,
        f"Expected `gamma_neg` to be >= 0 ({GAMMA}), but got -0.5. "
        "Pass a value >= 0 (Ridnik et al. use gamma_neg=4, gamma_pos=1).",
    ),
    (
        "negative tau",
        lambda: WF.logit_adjusted_loss(x, y, counts=[1, 2, 3], tau=-1.0),
        InvalidValueError,
        f"Expected `tau` to be >= 0 ({TAU}), but got -1.0. Pass tau >= 0 (Menon et al. use 1).",
    ),
    (
        "infinite tau",
        lambda: WF.adjust_logits(x, [1, 2, 3], tau=math.inf),
        InvalidValueError,
        f"Expected `tau` to be a finite number ({TAU}), but got inf. Pass a float.",
    ),
    (
        "clip of 1",
        lambda: WF.asymmetric_loss(x, t, clip=1.0),
        InvalidValueError,
        f"Expected `clip` to lie in [0, 1), but got 1.0. {RANGE_FIX}",
    ),
    (
        "negative clip",
        lambda: AsymmetricLoss(clip=-0.1),
        InvalidValueError,
        f"Expected `clip` to lie in [0, 1), but got -0.1. {RANGE_FIX}",
    ),
    (
        "alpha above 1",
        lambda: SigmoidFocalLoss(alpha=1.5),
        InvalidValueError,
        f"Expected `alpha` to lie in [0, 1], but got 1.5. {RANGE_FIX}",
    ),
    (
        "beta of 1",
        lambda: WF.class_balanced_weights([1, 2], beta=1.0),
        InvalidValueError,
        f"Expected `beta` to lie in [0, 1), but got 1.0. {RANGE_FIX}",
    ),
    (
        "unknown loss_type",
        lambda: ClassBalancedLoss([1, 2], loss_type="hinge"),
        UnknownNameError,
        "Expected `loss_type` to be one of 'softmax', 'sigmoid', 'focal', but got 'hinge'. "
        "Pick one of those (Cui et al. use 'focal' on sigmoid outputs).",
    ),
    (
        "scale of 0",
        lambda: LDAMLoss([1, 2], s=0.0),
        InvalidValueError,
        "Expected `s` to be > 0 (the logit scale), but got 0.0. "
        "Cao et al. use s=30; s=1 leaves logits as they are.",
    ),
    (
        "negative max_m",
        lambda: WF.ldam_margins([1, 2], max_m=-0.1),
        InvalidValueError,
        "Expected `max_m` to be >= 0 (the largest margin, given to the rarest class), "
        "but got -0.1. Cao et al. use 0.5.",
    ),
    (
        "probability targets to a class-index loss",
        lambda: WF.focal_loss(x, torch.softmax(x, 1)),
        InvalidDtypeError,
        "Expected `target` to hold class indices of shape (4,), but got class probabilities of "
        "shape (4, 3). This loss takes class indices only; pass `target.argmax(1)`.",
    ),
    (
        "unbatched logits",
        lambda: WF.focal_loss(x[0], y[0]),
        ShapeMismatchError,
        "Expected `input` to have shape (N, C) or (N, C, d1, ..., dk), but got shape (3,). "
        "Pass a batch of logits; add a batch axis with `input.unsqueeze(0)`.",
    ),
    (
        "target out of range",
        lambda: WF.ldam_loss(x, torch.tensor([0, 1, 2, 7]), [1, 2, 3]),
        TargetOutOfRangeError,
        "Expected `target` to hold class indices in [0, 2] or ignore_index=-100, but got [7] "
        "(first at position 3). Map labels to 0..C-1 (e.g. with a label encoder), or pass the "
        "value you use for padding as `ignore_index`.",
    ),
    (
        "negative start_epoch",
        lambda: DeferredReweighting([1, 2], start_epoch=-1),
        InvalidValueError,
        "Expected `start_epoch` to be an integer >= 0 (the first epoch with class-balanced "
        "weights), but got -1. Pass e.g. start_epoch=160 for a 200-epoch run, as Cao et al.",
    ),
    (
        "fractional epoch",
        lambda: DeferredReweighting([1, 2], start_epoch=1).weights(1.5),
        InvalidValueError,
        "Expected `epoch` to be an integer >= 0, but got 1.5. Count epochs from 0.",
    ),
    (
        "schedule applied to a loss without class weights",
        lambda: DeferredReweighting([1, 2], start_epoch=1).apply(torch.nn.MSELoss(), 0),
        InvalidValueError,
        "Expected `loss` to have a `class_weight` buffer, but got MSELoss. Use a weightlab loss "
        "that takes class_weight (e.g. LDAMLoss, CrossEntropyLoss, FocalLoss).",
    ),
]


@pytest.mark.parametrize(("what", "call", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_exact_message(what, call, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()


def test_errors_are_also_builtins():
    with pytest.raises(ValueError):
        WF.balanced_softmax_loss(x, y, [5, 0, 3])
    with pytest.raises(TypeError):
        WF.focal_loss(x, torch.softmax(x, 1))
