"""Open a result store from what a user types: a path, or ``":memory:"``.

:func:`open_store` is the one place that turns a store *target* into a
:class:`~weightlab.lab.store.ResultStore`, so the CLI, the report and scripts
agree on what a target means. It lives apart from :mod:`weightlab.lab.store`
because it needs both backends, and :mod:`weightlab.lab.store_sqlite` imports
:mod:`weightlab.lab.store` (one direction only, no import circle).
"""

from __future__ import annotations

import os

from weightlab.errors import InvalidValueError, expected
from weightlab.lab.store import MemoryStore, ResultStore
from weightlab.lab.store_sqlite import SQLiteStore

__all__ = ["MEMORY", "open_store"]

#: The target that opens a new :class:`~weightlab.lab.store.MemoryStore`.
MEMORY = ":memory:"


def open_store(target: str | os.PathLike[str], *, create: bool = True) -> ResultStore:
    """Open the result store ``target`` names.

    * the string ``":memory:"``: a new, empty
      :class:`~weightlab.lab.store.MemoryStore` (forgotten when the process
      ends);
    * any other ``str`` or path-like (``pathlib.Path``): the
      :class:`~weightlab.lab.store_sqlite.SQLiteStore` in that file. Only
      the ``str`` ``":memory:"`` means memory: a ``Path`` (what the CLI
      passes) always goes to ``SQLiteStore``, exactly as before.

    Args:
        target: ``":memory:"`` or the path of an SQLite store file.
        create: create the store if it does not exist. ``False`` (reading a
            study back): the file must exist, and ``":memory:"`` is refused,
            since a new in-memory store holds nothing to read.

    Returns:
        The open store; close it (or use it in a ``with`` block) when done.

    Raises:
        InvalidValueError: if ``target`` is neither a path nor ``":memory:"``,
            or is empty; if ``create`` is ``False`` and there is no store to
            read; or see :class:`~weightlab.lab.store_sqlite.SQLiteStore`
            (a folder, a file that is not a weightlab study store).

    Example:
        >>> import tempfile, os
        >>> with open_store(":memory:") as store:
        ...     type(store).__name__, len(store)
        ('MemoryStore', 0)
        >>> path = os.path.join(tempfile.mkdtemp(), "study.sqlite")
        >>> open_store(path, create=False)
        Traceback (most recent call last):
        ...
        weightlab.errors.InvalidValueError: Expected `store` to be an existing study store, ...
        >>> with open_store(path) as store:
        ...     type(store).__name__
        'SQLiteStore'
    """
    if isinstance(target, str) and target == MEMORY:
        if not create:
            raise InvalidValueError(
                expected(
                    "target",
                    "to name an existing store when create=False",
                    f"{MEMORY!r} (a new in-memory store is always empty)",
                    "Pass the SQLite file the study wrote, or create=True.",
                )
            )
        return MemoryStore()
    if isinstance(target, ResultStore):
        raise InvalidValueError(
            expected(
                "target",
                f"to be a path or {MEMORY!r}",
                f"an open {type(target).__name__}",
                "Use that store directly; open_store only opens stores by name.",
            )
        )
    if not isinstance(target, (str, os.PathLike)):
        raise InvalidValueError(
            expected(
                "target",
                f"to be a path (str or pathlib.Path) of an SQLite store, or {MEMORY!r}",
                type(target).__name__,
                "Pass e.g. 'build/study.sqlite'.",
            )
        )
    path = os.fspath(target)
    if not isinstance(path, str):
        raise InvalidValueError(
            expected(
                "target",
                f"to be a path (str or pathlib.Path) of an SQLite store, or {MEMORY!r}",
                f"a {type(target).__name__} whose path is {type(path).__name__}",
                "Decode it to str first (os.fsdecode).",
            )
        )
    if not path:
        raise InvalidValueError(
            expected(
                "target",
                f"to be a path of an SQLite store, or {MEMORY!r}",
                "an empty string",
                "Pass e.g. 'build/study.sqlite'.",
            )
        )
    return SQLiteStore(path, create=create)
