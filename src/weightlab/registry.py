"""A name -> object registry, so schemes and losses are named by string and listed.

Example:
    >>> reg: Registry[int] = Registry("thing", listing="`reg.names()`")
    >>> @reg.register("one")
    ... def one() -> int:
    ...     return 1
    >>> reg.names()
    ['one']
    >>> reg.get("two")
    Traceback (most recent call last):
    ...
    weightlab.errors.UnknownNameError: Expected `thing` to be one of 'one', but got 'two'. ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from weightlab.errors import InvalidValueError, UnknownNameError, expected, names

__all__ = ["Registry", "TunableParam"]

T = TypeVar("T")


@dataclass(frozen=True)
class TunableParam:
    """A loss parameter a search may vary: its default (the functional's) and its range.

    Attributes:
        default: the value the loss uses when none is given.
        low: the smallest value a search tries.
        high: the largest value a search tries.
        log: search on a log scale (for scales spanning decades).
        log_complement: search ``1 - x`` on a log scale (for values crowding 1,
            such as the effective-number ``beta`` in ``[0.9, 0.99999]``).

    Example:
        >>> TunableParam(2.0, 0.0, 5.0).high
        5.0
        >>> TunableParam(2.0, 3.0, 5.0)
        Traceback (most recent call last):
        ...
        weightlab.errors.InvalidValueError: Expected `TunableParam` to have low <= default <= high
        (low > 0 on a log scale), but got low=3.0, default=2.0, high=5.0. Fix the range.
    """

    default: float
    low: float
    high: float
    log: bool = False
    log_complement: bool = False

    def __post_init__(self) -> None:
        if self.log_complement and not self.high < 1:
            raise InvalidValueError(
                expected("TunableParam", "to have high < 1 when searched as log(1 - x)",
                         f"high={self.high}", "Use log_complement only for values below 1.")
            )  # fmt: skip
        if not self.low <= self.default <= self.high or (self.log and self.low <= 0):
            raise InvalidValueError(
                expected("TunableParam", "to have low <= default <= high (low > 0 on a log scale)",
                         f"low={self.low}, default={self.default}, high={self.high}",
                         "Fix the range.")
            )  # fmt: skip


class Registry(Generic[T]):
    """Map names to objects; unknown names raise an error listing the valid ones.

    Args:
        kind: what the names name, used as the argument in error messages
            (``"scheme"``, ``"loss"``).
        listing: how a user lists the names, quoted in the error's fix.
    """

    def __init__(self, kind: str, *, listing: str) -> None:
        self.kind = kind
        self.listing = listing
        self._items: dict[str, T] = {}
        self._params: dict[str, Mapping[str, TunableParam]] = {}

    def register(
        self, name: str, *, params: Mapping[str, TunableParam] | None = None
    ) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``.

        ``params``: the entry's tunable parameters with their ranges (what a search varies).
        """

        def decorate(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            self._params[name] = dict(params or {})
            return obj

        return decorate

    def params(self, name: str) -> Mapping[str, TunableParam]:
        """The tunable parameters of ``name`` with their ranges (empty if it has none).

        Raises:
            UnknownNameError: if nothing is registered under ``name``.
        """
        self.get(name)
        return self._params.get(name, {})

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a test's temporary entry); unknown names raise as :meth:`get`."""
        self.get(name)
        del self._items[name]
        self._params.pop(name, None)

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            UnknownNameError: if nothing is registered under ``name``.
        """
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                expected(
                    self.kind,
                    f"to be one of {names(self._items)}",
                    repr(name),
                    f"Use one of those names; {self.listing} lists them.",
                )
            ) from None

    def names(self) -> list[str]:
        """Return the registered names in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
