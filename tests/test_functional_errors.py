"""Every bad input a user can plausibly give, with the exact message it gets."""

from __future__ import annotations

import re

import pytest
import torch

from weightlab.errors import (
    DeviceMismatchError,
    InvalidDtypeError,
    InvalidValueError,
    InvalidWeightError,
    ShapeMismatchError,
    TargetOutOfRangeError,
    UnknownNameError,
    WeightlabError,
)
from weightlab.functional import binary_cross_entropy, cross_entropy
from weightlab.losses import BinaryCrossEntropyLoss, CrossEntropyLoss

X = torch.randn(4, 3)
Y = torch.tensor([0, 1, 2, 1])
XB = torch.randn(4, 3)
TB = torch.ones(4, 3)

CASES = [
    (
        "weight length",
        lambda: cross_entropy(X, Y, class_weight=[1.0, 2.0]),
        InvalidWeightError,
        "Expected `class_weight` to have shape (3,) (one weight per class, C=3), but got shape "
        "(2,). Pass one weight per class, C=3.",
    ),
    (
        "negative weight",
        lambda: cross_entropy(X, Y, class_weight=[1.0, -2.0, 1.0]),
        InvalidWeightError,
        "Expected `class_weight` to be non-negative, but got -2.0 at index 1. Weights scale each "
        "loss term; use 0 to drop a term, never a negative value.",
    ),
    (
        "NaN weight",
        lambda: cross_entropy(X, Y, class_weight=[1.0, float("nan"), 1.0]),
        InvalidWeightError,
        "Expected `class_weight` to be finite, but got NaN at index 1. Check the counts the "
        "weights came from (a zero count gives 1/0); `weightlab.weights.class_weights` refuses "
        "them up front.",
    ),
    (
        "infinite weight",
        lambda: cross_entropy(X, Y, class_weight=[1.0, float("inf"), 1.0]),
        InvalidWeightError,
        "Expected `class_weight` to be finite, but got an infinite value at index 1.",
    ),
    (
        "all-zero weights",
        lambda: cross_entropy(X, Y, class_weight=[0.0, 0.0, 0.0]),
        InvalidWeightError,
        "Expected `class_weight` to have at least one positive entry, but got all zeros. All-zero "
        "weights make every loss 0; pass positive weights.",
    ),
    (
        "target out of range",
        lambda: cross_entropy(X, torch.tensor([0, 3, 5, -1])),
        TargetOutOfRangeError,
        "Expected `target` to hold class indices in [0, 2] or ignore_index=-100, but got "
        "[-1, 3, 5] (first at position 1). Map labels to 0..C-1 (e.g. with a label encoder), or "
        "pass the value you use for padding as `ignore_index`.",
    ),
    (
        "float targets where indices are expected",
        lambda: cross_entropy(X, Y.float()),
        InvalidDtypeError,
        "Expected `target` of shape (4,) to hold class indices (an integer dtype), but got dtype "
        "torch.float32. Call `target.long()`, or pass class probabilities of the input's shape "
        "(4, 3).",
    ),
    (
        "integer targets of the input's shape",
        lambda: cross_entropy(X, torch.nn.functional.one_hot(Y, 3)),
        InvalidDtypeError,
        "Expected `target` of the input's shape (4, 3) to hold class probabilities (a floating "
        "dtype), but got dtype torch.int64. For one-hot labels pass `target.argmax(1)` (class "
        "indices) or `target.float()`.",
    ),
    (
        "boolean targets",
        lambda: cross_entropy(X, Y > 0),
        InvalidDtypeError,
        "Expected `target` to hold class indices (an integer dtype) or class probabilities "
        "(floating), but got dtype torch.bool.",
    ),
    (
        "integer logits (one-hot passed as input)",
        lambda: cross_entropy(torch.nn.functional.one_hot(Y, 3), Y),
        InvalidDtypeError,
        "Expected `input` to hold floating-point logits, but got dtype torch.int64. Pass the "
        "model's raw outputs; if these are one-hot labels, you swapped `input` and `target`.",
    ),
    (
        "boolean logits",
        lambda: binary_cross_entropy(XB > 0, TB),
        InvalidDtypeError,
        "Expected `input` to hold floating-point logits, but got dtype torch.bool.",
    ),
    (
        "target given as a list",
        lambda: cross_entropy(X, [0, 1, 2, 1]),
        InvalidDtypeError,
        "Expected `target` to be a torch.Tensor, but got list. Convert labels with "
        "`torch.as_tensor(labels)`.",
    ),
    (
        "BCE target given as a list",
        lambda: binary_cross_entropy(torch.randn(2), [1.0, 0.0]),
        InvalidDtypeError,
        "Expected `target` to be a torch.Tensor, but got list. Convert labels with "
        "`torch.as_tensor(labels, dtype=torch.float32)`.",
    ),
    (
        "input/target shape mismatch",
        lambda: cross_entropy(X, torch.tensor([0, 1])),
        ShapeMismatchError,
        "Expected `target` to have shape (4,) (class indices) or (4, 3) (class probabilities) for "
        "input of shape (4, 3), but got shape (2,).",
    ),
    (
        "(N, 1) sample weights against (N,)",
        lambda: cross_entropy(X, Y, sample_weight=torch.ones(4, 1)),
        ShapeMismatchError,
        "Expected `sample_weight` to have shape (4,) (one weight per sample, or per loss "
        "element), but got shape (4, 1). Reshape it to match exactly (e.g. "
        "`sample_weight.view(-1)` for an (N, 1) column); weightlab never broadcasts weights "
        "silently.",
    ),
    (
        "BCE (N, 1) sample weights against (N,)",
        lambda: binary_cross_entropy(torch.randn(4), torch.ones(4), sample_weight=torch.ones(4, 1)),
        ShapeMismatchError,
        "Expected `sample_weight` to have shape (4,) (one weight per sample, or per loss "
        "element), but got shape (4, 1).",
    ),
    (
        "negative sample weight",
        lambda: cross_entropy(X, Y, sample_weight=torch.tensor([1.0, -1.0, 1.0, 1.0])),
        InvalidWeightError,
        "Expected `sample_weight` to be non-negative, but got -1.0 at index 1.",
    ),
    (
        "weights on another device",
        lambda: cross_entropy(X.to("meta"), Y.to("meta"), class_weight=torch.ones(3)),
        DeviceMismatchError,
        "Expected `class_weight` on the input's device (meta), but got a tensor on cpu. Move it "
        "with `class_weight.to(input.device)`; a weightlab loss module moves its weights with "
        "`loss.to(device)`.",
    ),
    (
        "target on another device",
        lambda: cross_entropy(X.to("meta"), Y),
        DeviceMismatchError,
        "Expected `target` on the input's device (meta), but got a tensor on cpu. Move it with "
        "`target.to(input.device)`.",
    ),
    (
        "module weights left on another device",
        lambda: CrossEntropyLoss([1.0, 1.0, 1.0])(X.to("meta"), Y.to("meta")),
        DeviceMismatchError,
        "Expected `class_weight` on the input's device (meta), but got a tensor on cpu.",
    ),
    (
        "pos_weight not matching the label axis",
        lambda: binary_cross_entropy(XB, TB, pos_weight=torch.ones(4)),
        InvalidWeightError,
        "Expected `pos_weight` to have shape (), (1,), (3,) (one entry per label) or PyTorch's "
        "per-label layout (1, 3) for input of shape (4, 3), but got shape (4,). Pass one "
        "positive-class weight per label (dim 1 of the input); PyTorch aligns other shapes with "
        "the input's last axes, which weightlab does not support. "
        "`weightlab.weights.pos_weight(counts)` computes negatives/positives.",
    ),
    (
        "BCE class weight of the wrong shape",
        lambda: binary_cross_entropy(XB, TB, class_weight=[1.0, 2.0, 3.0]),
        InvalidWeightError,
        "Expected `class_weight` to have shape (2,) or (3, 2) ([negative, positive] weight, "
        "shared or per label), but got shape (3,). Pass [w_negative, w_positive], or a (3, 2) "
        "tensor, a row per label.",
    ),
    (
        "BCE integer targets",
        lambda: binary_cross_entropy(torch.randn(4), torch.ones(4, dtype=torch.long)),
        InvalidDtypeError,
        "Expected `target` to hold floating-point 0/1 labels or probabilities, but got dtype "
        "torch.int64. Call `target.float()`; for class indices of a multi-class problem, use "
        "`cross_entropy`.",
    ),
    (
        "BCE target shape",
        lambda: binary_cross_entropy(torch.randn(4), torch.ones(4, 1)),
        ShapeMismatchError,
        "Expected `target` to have the input's shape (4,), but got shape (4, 1). Give one label "
        "per logit; reshape a (N, 1) column with `.view(-1)` (weightlab never broadcasts "
        "targets).",
    ),
    (
        "unknown reduction",
        lambda: cross_entropy(X, Y, reduction="avg"),
        UnknownNameError,
        "Expected `reduction` to be one of 'mean', 'sum', 'none', 'parts', but got 'avg'. Pick "
        "one of those names.",
    ),
    (
        "unknown reduction in a module",
        lambda: BinaryCrossEntropyLoss(reduction="average"),
        UnknownNameError,
        "Expected `reduction` to be one of 'mean', 'sum', 'none', 'parts', but got 'average'.",
    ),
    (
        "unknown normalisation",
        lambda: cross_entropy(X, Y, normalize="batch"),
        UnknownNameError,
        "Expected `normalize` to be one of 'weight', 'count' or None (the PyTorch convention), "
        "but got 'batch'. Use 'weight' to divide by the sum of the applied weights, 'count' to "
        "divide by the number of elements that were not ignored.",
    ),
    (
        "label smoothing out of range",
        lambda: cross_entropy(X, Y, label_smoothing=1.5),
        InvalidValueError,
        "Expected `label_smoothing` to lie in [0, 1], but got 1.5. Pass a value in that range.",
    ),
    (
        "module weight length against num_classes",
        lambda: CrossEntropyLoss([1.0, 2.0], num_classes=3),
        InvalidWeightError,
        "Expected `class_weight` to have one entry per class (3), but got shape (2,). Pass a "
        "weight for every class, or fix `num_classes`/`classes`.",
    ),
    (
        "module mapping with unknown class names",
        lambda: CrossEntropyLoss({"dog": 1.0}, classes=["cat", "cow"]),
        InvalidValueError,
        "Expected `class_weight` to be keyed by the classes 'cat', 'cow', but got unknown classes "
        "'dog'. Use the class names of the label encoder, or index keys with `num_classes`.",
    ),
    (
        "module mapping with an out-of-range index",
        lambda: CrossEntropyLoss({5: 1.0}, num_classes=3),
        InvalidValueError,
        "Expected `class_weight` to be keyed by class indices in [0, 2], but got keys 5. Use "
        "integer class indices, or pass `classes=` to key by class name.",
    ),
    (
        "module mapping without num_classes or classes",
        lambda: CrossEntropyLoss({1: 2.0}),
        InvalidValueError,
        "Expected `class_weight` given as a mapping to come with `num_classes` or `classes`, but "
        "got neither. Pass `num_classes=C` (keys are indices) or `classes=names` (keys are "
        "names).",
    ),
    (
        "module negative weight",
        lambda: BinaryCrossEntropyLoss(pos_weight=[-1.0]),
        InvalidWeightError,
        "Expected `pos_weight` to be non-negative, but got -1.0 at index 0.",
    ),
]


@pytest.mark.parametrize(("case", "call", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_message(case, call, error, message):
    with pytest.raises(error, match=re.escape(message)) as info:
        call()
    assert isinstance(info.value, WeightlabError)
    assert isinstance(info.value, ValueError | TypeError)


def test_value_checks_can_be_switched_off():
    loss = cross_entropy(X, Y, class_weight=[1.0, -1.0, 1.0], validate_args=False)
    assert torch.isfinite(loss)


def test_unknown_loss_name_lists_the_registered_ones():
    from weightlab.losses import LOSSES

    with pytest.raises(UnknownNameError) as info:
        LOSSES.get("focal-ish")
    message = str(info.value)
    listed = ", ".join(repr(name) for name in LOSSES.names())
    assert message.startswith(f"Expected `loss` to be one of {listed}, but got 'focal-ish'.")
    assert message.endswith(
        "but got 'focal-ish'. Use one of those names; `weightlab.losses.LOSSES.names()` lists them."
    )


def test_unknown_scheme_names_the_listing():
    from weightlab.weights import class_weights

    with pytest.raises(UnknownNameError) as info:
        class_weights([3, 1], "focal")
    assert str(info.value).endswith(
        "but got 'focal'. Use one of those names; `weightlab.weights.SCHEMES.names()` lists them."
    )
