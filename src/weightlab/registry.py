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

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from weightlab.errors import UnknownNameError, expected, names

__all__ = ["Registry"]

T = TypeVar("T")


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

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``."""

        def decorate(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorate

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a test's temporary entry); unknown names raise as :meth:`get`."""
        self.get(name)
        del self._items[name]

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
