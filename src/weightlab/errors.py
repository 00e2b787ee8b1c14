"""Every exception weightlab raises for bad input, and the one message formula.

Each message names the argument, what was expected, what was received and the
fix: ``Expected `class_weight` to have one entry per class (10), but got shape
(9,). Pass a weight for every class.`` Every class also subclasses the builtin
(``ValueError`` or ``TypeError``) that plain Python code would catch.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DeviceMismatchError",
    "InvalidDtypeError",
    "InvalidValueError",
    "InvalidWeightError",
    "ShapeMismatchError",
    "TargetOutOfRangeError",
    "UnknownNameError",
    "WeightlabError",
    "ZeroCountError",
    "expected",
]


def expected(argument: str, expectation: str, received: str, fix: str) -> str:
    """Build the message every weightlab error uses.

    Example:
        >>> expected("reduction", "to be one of 'mean', 'sum'", "'avg'", "Pick one of those.")
        "Expected `reduction` to be one of 'mean', 'sum', but got 'avg'. Pick one of those."
    """
    return f"Expected `{argument}` {expectation}, but got {received}. {fix}"


def names(values: Iterable[object]) -> str:
    """Format a list of valid names as ``'a', 'b', 'c'``.

    Example:
        >>> names(["mean", "sum"])
        "'mean', 'sum'"
    """
    return ", ".join(repr(v) for v in values)


class WeightlabError(Exception):
    """Base class of every error weightlab raises for bad input."""


class InvalidValueError(WeightlabError, ValueError):
    """An argument has a value outside what it accepts (a bad name, a bad number)."""


class UnknownNameError(InvalidValueError):
    """A string names no registered scheme, loss, reduction or normalisation."""


class InvalidDtypeError(WeightlabError, TypeError):
    """A tensor has the wrong dtype (integer logits, float class indices, ...)."""


class ShapeMismatchError(WeightlabError, ValueError):
    """Shapes that must match do not (and would otherwise broadcast silently)."""


class InvalidWeightError(WeightlabError, ValueError):
    """Weights that are negative, NaN, infinite, all zero, or of the wrong length."""


class ZeroCountError(InvalidWeightError):
    """A class has no samples, so a frequency-based weight would be infinite."""


class TargetOutOfRangeError(WeightlabError, ValueError):
    """A target outside what the loss takes.

    A class index outside ``[0, C)`` that is not ``ignore_index``; a
    probability target that is negative or whose row does not sum to 1; a 0/1
    (sigmoid) target outside ``[0, 1]``.
    """


class DeviceMismatchError(WeightlabError, ValueError):
    """A weight tensor lives on another device than the input."""


class StoreWriteError(WeightlabError, OSError):
    """A result store could not be written (disk full, read-only, its file gone).

    ``path`` is the store's file and ``reason`` what the storage engine said;
    every trial stored before stays stored, so rerunning resumes.
    """

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"Could not write to the store '{path}': {reason}.")
        self.path = path
        self.reason = reason
