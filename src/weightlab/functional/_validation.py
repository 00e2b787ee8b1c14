"""Argument and tensor checks shared by every loss (the ``_check_*`` stages).

Checks that need no device sync (dtypes, shapes, devices, names) always run.
Checks that read tensor values (negative weights, targets out of range) force
a sync, so they run only with ``validate_args=True`` and never while
``torch.compile`` traces (they would break the graph).
"""

from __future__ import annotations

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


def check_probability_range(name: str, value: float, *, upper_inclusive: bool = True) -> None:
    """Refuse a float argument outside [0, 1] (or [0, 1))."""
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise InvalidValueError(
            expected(name, f"to lie in {interval}", repr(value), "Pass a value in that range.")
        )
