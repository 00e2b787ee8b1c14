"""Argument and tensor checks shared by every loss (the ``_check_*`` stages).

Checks that need no device sync (dtypes, shapes, devices, names) always run.
Checks that read tensor values (negative weights, class indices out of range,
probability rows that do not sum to 1, sigmoid targets outside [0, 1]) force
a sync, so they run only with ``validate_args=True`` and never while
``torch.compile`` traces (they would break the graph).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from weightlab.errors import (
    DeviceMismatchError,
    InvalidDtypeError,
    InvalidValueError,
    InvalidWeightError,
    ShapeMismatchError,
    TargetOutOfRangeError,
    UnknownNameError,
    expected,
    names,
)

Reduction = Literal["mean", "sum", "none", "parts"]
Normalize = Literal["weight", "count"]
WeightLike = Tensor | Sequence[float] | np.ndarray[Any, Any]

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none", "parts")
NORMALIZATIONS: tuple[str, ...] = ("weight", "count")


def shape_str(shape: Sequence[int]) -> str:
    """Format a shape as PyTorch users read it: ``(3, 4)``, ``(3,)``, ``()``."""
    dims = tuple(int(d) for d in shape)
    return str(dims)


def values_checked(validate_args: bool) -> bool:
    """Whether value checks (which sync the device) run for this call."""
    return validate_args and not torch.compiler.is_compiling()


def needs_composite(*tensors: object) -> bool:
    """Whether a target or weight requires grad (then the fused stages do not apply).

    The fused paths (PyTorch's ``nll_loss`` and ``binary_cross_entropy_with_logits``
    kernels, weightlab's own autograd Functions) differentiate the logits only;
    with a learnable weight the losses switch to plain autograd ops instead.
    """
    return torch.is_grad_enabled() and any(
        isinstance(t, Tensor) and t.requires_grad for t in tensors
    )


def check_reduction(reduction: str) -> None:
    """Refuse a reduction name that is not one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise UnknownNameError(
            expected(
                "reduction",
                f"to be one of {names(REDUCTIONS)}",
                repr(reduction),
                "Pick one of those names.",
            )
        )


def check_normalize(normalize: str | None) -> None:
    """Refuse a normalisation name that is not one of :data:`NORMALIZATIONS` or None."""
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise UnknownNameError(
            expected(
                "normalize",
                f"to be one of {names(NORMALIZATIONS)} or None (the PyTorch convention)",
                repr(normalize),
                "Use 'weight' to divide by the sum of the applied weights, "
                "'count' to divide by the number of elements that were not ignored.",
            )
        )


def check_logits(input: Tensor) -> None:
    """Refuse logits that are not a floating-point tensor."""
    if not isinstance(input, Tensor):
        raise InvalidDtypeError(
            expected(
                "input",
                "to be a torch.Tensor of logits",
                type(input).__name__,
                "Pass the model's raw outputs as a tensor.",
            )
        )
    if not input.is_floating_point():
        raise InvalidDtypeError(
            expected(
                "input",
                "to hold floating-point logits",
                f"dtype {input.dtype}",
                "Pass the model's raw outputs; if these are one-hot labels, "
                "you swapped `input` and `target`.",
            )
        )


def check_device(name: str, tensor: Tensor, input: Tensor) -> None:
    """Refuse a weight or target tensor on another device than ``input``."""
    if tensor.device != input.device:
        raise DeviceMismatchError(
            expected(
                name,
                f"on the input's device ({input.device})",
                f"a tensor on {tensor.device}",
                f"Move it with `{name}.to(input.device)`"
                + (
                    "."
                    if name == "target"
                    else "; a weightlab loss module moves its weights with `loss.to(device)`."
                ),
            )
        )


def check_target(target: Tensor, input: Tensor, *, convert: str) -> None:
    """Refuse a target that is not a tensor or lives on another device than ``input``.

    ``convert`` is the call that makes a tensor of the user's labels, quoted in the fix.
    """
    if not isinstance(target, Tensor):
        raise InvalidDtypeError(
            expected(
                "target",
                "to be a torch.Tensor",
                type(target).__name__,
                f"Convert labels with `{convert}`.",
            )
        )
    check_device("target", target, input)


def as_weight(name: str, value: WeightLike, input: Tensor, dtype: torch.dtype) -> Tensor:
    """Turn a list, numpy array or tensor of weights into a tensor on ``input``'s device.

    Tensors are never moved silently: one on another device is an error.
    """
    if isinstance(value, Tensor):
        check_device(name, value, input)
        if not (value.is_floating_point() or value.dtype in _INTEGER_DTYPES):
            raise InvalidDtypeError(
                expected(
                    name,
                    "to hold real numbers",
                    f"dtype {value.dtype}",
                    f"Pass `{name}` as a float tensor.",
                )
            )
        return value.to(dtype)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidDtypeError(
            expected(
                name,
                "to be a tensor, numpy array or list of numbers",
                type(value).__name__,
                f"Pass `{name}` as a list of floats or a tensor.",
            )
        ) from None
    return torch.as_tensor(array, dtype=dtype, device=input.device)


_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_weight_shape(name: str, weight: Tensor, shape: tuple[int, ...], what: str) -> None:
    """Refuse a weight tensor whose shape is not exactly ``shape``."""
    if tuple(weight.shape) != shape:
        raise InvalidWeightError(
            expected(
                name,
                f"to have shape {shape_str(shape)} ({what})",
                f"shape {shape_str(weight.shape)}",
                f"Pass {what}.",
            )
        )


def check_weight_values(name: str, weight: Tensor, *, allow_all_zero: bool = False) -> None:
    """Refuse NaN, infinite, negative or all-zero weights (value check: syncs)."""
    if weight.numel() == 0:
        return
    if not bool(torch.isfinite(weight).all()):
        bad = "NaN" if bool(torch.isnan(weight).any()) else "an infinite value"
        raise InvalidWeightError(
            expected(
                name,
                "to be finite",
                f"{bad} at index {_first_index(~torch.isfinite(weight))}",
                "Check the counts the weights came from (a zero count gives 1/0); "
                "`weightlab.weights.class_weights` refuses them up front.",
            )
        )
    if bool((weight < 0).any()):
        at = _first_index(weight < 0)
        raise InvalidWeightError(
            expected(
                name,
                "to be non-negative",
                f"{_item(weight[at])} at index {at}",
                "Weights scale each loss term; use 0 to drop a term, never a negative value.",
            )
        )
    if not allow_all_zero and not bool((weight > 0).any()):
        raise InvalidWeightError(
            expected(
                name,
                "to have at least one positive entry",
                "all zeros",
                "All-zero weights make every loss 0; pass positive weights.",
            )
        )


def _first_index(mask: Tensor) -> tuple[int, ...] | int:
    idx = tuple(int(i) for i in mask.nonzero()[0].tolist())
    return idx[0] if len(idx) == 1 else idx


def _item(value: Tensor) -> float:
    return float(value.item())


def check_sample_weight(
    sample_weight: Tensor, allowed: Sequence[tuple[int, ...]], what: str
) -> None:
    """Refuse sample weights whose shape would broadcast instead of matching."""
    if tuple(sample_weight.shape) not in [tuple(s) for s in allowed]:
        options = " or ".join(shape_str(s) for s in dict.fromkeys(allowed))
        raise ShapeMismatchError(
            expected(
                "sample_weight",
                f"to have shape {options} ({what})",
                f"shape {shape_str(sample_weight.shape)}",
                "Reshape it to match exactly (e.g. `sample_weight.view(-1)` for an (N, 1) "
                "column); weightlab never broadcasts weights silently.",
            )
        )


def check_class_targets(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Refuse class indices outside ``[0, num_classes)`` that are not ``ignore_index``."""
    bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    if bool(bad.any()):
        values = torch.unique(target[bad])[:5].tolist()
        raise TargetOutOfRangeError(
            expected(
                "target",
                f"to hold class indices in [0, {num_classes - 1}] or ignore_index={ignore_index}",
                f"{values} (first at position {_first_index(bad)})",
                "Map labels to 0..C-1 (e.g. with a label encoder), "
                "or pass the value you use for padding as `ignore_index`.",
            )
        )


def check_binary_target_values(target: Tensor) -> None:
    """Refuse sigmoid-loss targets outside [0, 1] or NaN (value check: syncs).

    One :func:`torch.aminmax` pass; the offending values are looked up only
    when it finds one.
    """
    if target.numel() == 0:
        return
    low, high = torch.stack(torch.aminmax(target.detach())).tolist()
    if 0.0 <= low and high <= 1.0:  # False for NaN
        return
    bad = ~((target >= 0) & (target <= 1))
    values = torch.unique(target.detach()[bad])[:5].tolist()
    raise TargetOutOfRangeError(
        expected(
            "target",
            "to hold 0/1 labels or probabilities in [0, 1]",
            f"{values} (first at position {_first_index(bad)})",
            "Map labels to 0/1 (for -1/1 labels: `(target + 1) / 2`); soft targets in "
            "[0, 1] are fine.",
        )
    )


def probability_sum_tolerance(target: Tensor, num_classes: int) -> float:
    """How far from 1 a row of class probabilities may sum: rounding, not a wrong target.

    ``max(1e-3, 2 eps, C eps_32)``: ``eps`` of the target's dtype covers rows
    rounded to float16/bfloat16, ``C eps_32`` rows normalised in float32 over
    many classes.
    """
    eps = float(torch.finfo(target.dtype).eps)
    return max(1e-3, 2.0 * eps, num_classes * float(torch.finfo(torch.float32).eps))


def check_probability_targets(target: Tensor) -> None:
    """Refuse class-probability targets (classes on dim 1) that are not distributions.

    Every entry must be finite and >= 0, and every row (sample, position) must
    sum to 1 within :func:`probability_sum_tolerance`. One reduction to two
    numbers and one sync; the offending entry is looked up only when needed.
    """
    if target.numel() == 0:
        return
    detached = target.detach()
    sum_dtype = torch.float64 if target.dtype == torch.float64 else torch.float32
    sums = detached.sum(1, dtype=sum_dtype)
    low, off = torch.stack([detached.amin().to(sum_dtype), (sums - 1.0).abs().amax()]).tolist()
    if not (low >= 0.0 and math.isfinite(off)):  # a negative, NaN or infinite entry
        nonfinite = ~torch.isfinite(detached)
        bad = nonfinite if bool(nonfinite.any()) else detached < 0
        at = _first_index(bad)
        raise TargetOutOfRangeError(
            expected(
                "target",
                "(class probabilities over dim 1) to hold finite values >= 0",
                f"{_item(detached[at])} at index {at}",
                "Pass a distribution over the classes for every sample (e.g. "
                "`torch.softmax(scores, 1)` or one-hot rows), or class indices as an "
                "integer tensor.",
            )
        )
    tolerance = probability_sum_tolerance(target, target.shape[1])
    if off <= tolerance:
        return
    bad_rows = (sums - 1.0).abs() > tolerance
    at = _first_index(bad_rows)
    raise TargetOutOfRangeError(
        expected(
            "target",
            f"(class probabilities over dim 1) to sum to 1 (within {tolerance:g}) for every "
            "sample",
            f"a sum of {_item(sums[at]):g} at position {at}",
            "Normalise it with `target / target.sum(1, keepdim=True)`; to weigh a sample, "
            "pass `sample_weight` instead of scaling its target (0 drops it).",
        )
    )


def check_probability_range(name: str, value: float, *, upper_inclusive: bool = True) -> None:
    """Refuse a float argument outside [0, 1] (or [0, 1))."""
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise InvalidValueError(
            expected(name, f"to lie in {interval}", repr(value), "Pass a value in that range.")
        )
