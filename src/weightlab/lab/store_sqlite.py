"""The default result store: one embedded SQLite file (``build/study.sqlite``).

Schema (``PRAGMA user_version = 1``)::

    CREATE TABLE trials (
        trial_id    TEXT PRIMARY KEY,   -- TrialConfig.trial_id
        status      TEXT NOT NULL,      -- 'running', 'done', 'failed' or 'pruned'
        data TEXT, arch TEXT, optimizer TEXT, weighting TEXT,
        alpha REAL, seed INTEGER,       -- copied from config, for SQL queries
        stack_key   TEXT NOT NULL,
        config      TEXT NOT NULL,      -- TrialConfig.to_dict() as JSON
        result      TEXT,               -- result_to_dict() as JSON (curves, metrics,
                                        -- per-class metrics, test logits, timings)
        reason      TEXT NOT NULL DEFAULT '',
        started_at  REAL,               -- unix time of mark_running
        finished_at REAL,               -- unix time of put
        finished_order INTEGER          -- 1, 2, ... in the order trials first finished
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- JSON values
    CREATE TABLE leases (               -- which run holds a running trial, until when
        trial_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, expires REAL NOT NULL
    );

**Leases.** :meth:`SQLiteStore.claim` runs in one ``BEGIN IMMEDIATE``
transaction, so of two runs claiming the same trial exactly one gets it; the
other skips it while the lease is live (renewed by its owner's heartbeat,
whose process is alive), and takes it over once the lease has expired or its
owner's process is gone. Stores written before leases existed get the
``leases`` table when they are next opened for writing.

**Write errors** (a full disk, a read-only file, a store file deleted while a
study runs) raise :class:`~weightlab.errors.StoreWriteError` naming the file;
the transaction that failed is rolled back, so every earlier trial stays whole.
A store file this process cannot write (read-only permissions or filesystem)
opens read-only (``SQLiteStore.read_only``): results and reports read it, and
the first write raises that error.

The database runs in WAL mode: :meth:`SQLiteStore.put` is one transaction, so
a process killed at any instant leaves every committed trial intact and no
partial one; readers never block the writer. ``synchronous=NORMAL`` keeps
every commit across a killed process (only a power loss may drop the last
commits, never corrupt the file). One writer process at a time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from weightlab.errors import InvalidValueError, StoreWriteError, expected
from weightlab.lab.store import (
    Owner,
    ResultStore,
    check_ids,
    check_meta_value,
    check_result,
    result_from_dict,
    result_to_dict,
)
from weightlab.lab.trial import TrialConfig, TrialResult

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

#: Version of the table layout, kept in ``PRAGMA user_version``.
#: 2 admits the status ``'pruned'`` (a tuner's early-stopped trials); a version 1 file
#: is migrated when opened for writing (the table is rebuilt with the new check).
SCHEMA_VERSION = 2

#: Trial ids bound per ``IN (...)`` query of :meth:`SQLiteStore.statuses`
#: (under SQLite's smallest limit on bound parameters, 999).
_IDS_PER_QUERY = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial_id    TEXT PRIMARY KEY,
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'pruned')),
    data        TEXT,
    arch        TEXT,
    optimizer   TEXT,
    weighting   TEXT,
    alpha       REAL,
    seed        INTEGER,
    stack_key   TEXT NOT NULL,
    config      TEXT NOT NULL,
    result      TEXT,
    reason      TEXT NOT NULL DEFAULT '',
    started_at  REAL,
    finished_at REAL,
    finished_order INTEGER
);
CREATE INDEX IF NOT EXISTS trials_status ON trials (status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    trial_id TEXT PRIMARY KEY,
    run_id   TEXT NOT NULL,
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    expires  REAL NOT NULL
);
"""


class SQLiteStore(ResultStore):
    """A result store in one SQLite file; see the module docstring for the schema.

    Args:
        path: the database file; its folder is created if missing.
        create: create the file if it does not exist (``False``: it must exist,
            as when reading results back).

    Raises:
        InvalidValueError: if ``path`` is a folder, if ``create`` is ``False``
            and the file does not exist, or the file is not a weightlab study
            store.

    Example:
        >>> import tempfile, os
        >>> from weightlab.lab.trial import TrialConfig, TrialResult
        >>> path = os.path.join(tempfile.mkdtemp(), "study.sqlite")
        >>> cfg = TrialConfig("digits-lt", "mlp", "sgd", "none", None, 0)
        >>> with SQLiteStore(path) as store:
        ...     store.put(TrialResult(cfg, "failed", reason="non-finite loss at epoch 1"))
        >>> SQLiteStore(path, create=False).get(cfg.trial_id).reason
        'non-finite loss at epoch 1'
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidValueError(
                expected(
                    "store",
                    "to be the path of an SQLite store file",
                    f"'{self.path}' (a folder)",
                    f"Name a file inside it, e.g. '{self.path / 'study.sqlite'}'.",
                )
            )
        if not self.path.exists():
            if not create:
                raise InvalidValueError(
                    expected(
                        "store",
                        "to be an existing study store",
                        f"'{self.path}' (no such file)",
                        "Run `weightlab study --store PATH` first, or check the path.",
                    )
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # A file this process cannot write (a read-only filesystem, say) opens read-only and
        # immutable, so it stays readable; a write then raises StoreWriteError.
        self.read_only = self.path.exists() and not (
            os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
        )
        target = (
            f"file:{urllib.parse.quote(str(self.path.resolve()))}?immutable=1"
            if self.read_only
            else str(self.path)
        )
        self._conn = sqlite3.connect(
            target, timeout=30.0, isolation_level=None, check_same_thread=False,
            uri=self.read_only,
        )  # fmt: skip
        try:
            self._init_schema()
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise InvalidValueError(
                expected(
                    "store",
                    "to be a weightlab study store (an SQLite file)",
                    f"'{self.path}' ({err})",
                    "Pass the file `weightlab study --store` wrote, or a new path.",
                )
            ) from None

    def _init_schema(self) -> None:
        conn = self._conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        known = {"trials", "meta", "leases"}
        if version not in (0, 1, SCHEMA_VERSION) or (version == 0 and tables - known):
            raise sqlite3.DatabaseError(
                f"schema version {version}, tables {sorted(tables)}; expected version "
                f"{SCHEMA_VERSION}"
            )
        if self.read_only:
            return
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if version == 0:
            with self._transaction():
                conn.executescript(
                    "BEGIN IMMEDIATE;" + _SCHEMA + _LEASES
                    + f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
                )
            return
        if "leases" not in tables:
            try:  # a store from before leases; a read-only one stays readable without them
                conn.execute(_LEASES)
            except sqlite3.OperationalError:
                pass
        if version == 1:
            self._migrate_to_pruned()

    def _migrate_to_pruned(self) -> None:
        """Version 1 -> 2: rebuild ``trials`` so its status check admits ``'pruned'``."""
        table = _SCHEMA.split(";")[0].replace("IF NOT EXISTS trials", "trials_v2")
        with self._transaction():
            self._conn.executescript(
                "BEGIN IMMEDIATE;" + table + ";INSERT INTO trials_v2 SELECT * FROM trials;"
                "DROP TABLE trials;ALTER TABLE trials_v2 RENAME TO trials;"
                "CREATE INDEX IF NOT EXISTS trials_status ON trials (status);"
                f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
            )

    def _transaction(self) -> _Tx:
        return _Tx(self._conn, self._lock, self.path)

    # -- trials -----------------------------------------------------------------

    def put(self, result: TrialResult) -> None:  # noqa: D102
        check_result(result)
        blob = json.dumps(result_to_dict(result), allow_nan=True)
        cfg = result.config
        now = time.time()
        with self._transaction() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                """
                INSERT INTO trials (trial_id, status, data, arch, optimizer, weighting, alpha,
                    seed, stack_key, config, result, reason, started_at, finished_at,
                    finished_order)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                    (SELECT COALESCE(MAX(finished_order), 0) + 1 FROM trials))
                ON CONFLICT (trial_id) DO UPDATE SET
                    status = excluded.status, result = excluded.result,
                    reason = excluded.reason, finished_at = excluded.finished_at,
                    finished_order = COALESCE(trials.finished_order, excluded.finished_order)
                """,
                (
                    cfg.trial_id,
                    result.status,
                    cfg.data,
                    cfg.arch,
                    cfg.optimizer,
                    cfg.weighting,
                    cfg.alpha,
                    cfg.seed,
                    cfg.stack_key,
                    json.dumps(cfg.to_dict(), sort_keys=True),
                    blob,
                    result.reason,
                    now,
                    now,
                ),
            )
            conn.execute("DELETE FROM leases WHERE trial_id = ?", (cfg.trial_id,))

    def get(self, trial_id: str) -> TrialResult | None:  # noqa: D102
        with self._lock:
            row = self._conn.execute(
                "SELECT result FROM trials WHERE trial_id = ? AND status != 'running'",
                (trial_id,),
            ).fetchone()
        return None if row is None else result_from_dict(json.loads(row[0]))

    def finished_ids(self) -> set[str]:  # noqa: D102
        with self._lock:
            rows = self._conn.execute(
                "SELECT trial_id FROM trials WHERE status != 'running'"
            ).fetchall()
        return {r[0] for r in rows}

    def results(self) -> Iterator[TrialResult]:  # noqa: D102
        with self._lock:
            rows = self._conn.execute(
                "SELECT result FROM trials WHERE status != 'running' ORDER BY finished_order"
            ).fetchall()
        for (blob,) in rows:
            yield result_from_dict(json.loads(blob))

    def statuses(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        """Read ``{trial_id: status}`` of finished trials from two columns, decoding no result.

        See :meth:`ResultStore.statuses`; with ``ids``, the lookups run in one
        read transaction, so they see one state of the file.
        """
        wanted = check_ids(ids)
        query = "SELECT trial_id, status FROM trials WHERE status != 'running'"
        if wanted is None:
            with self._lock:
                rows = self._conn.execute(query + " ORDER BY finished_order").fetchall()
            return dict(rows)
        out: dict[str, str] = {}
        with self._transaction() as conn:
            conn.execute("BEGIN")
            for i in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[i : i + _IDS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                out.update(conn.execute(f"{query} AND trial_id IN ({marks})", chunk).fetchall())
        return out

    def mark_running(self, configs: Iterable[TrialConfig]) -> None:  # noqa: D102
        with self._transaction() as conn:
            conn.execute("BEGIN IMMEDIATE")
            self._mark_running(conn, list(configs), time.time())

    @staticmethod
    def _mark_running(conn: sqlite3.Connection, configs: list[TrialConfig], now: float) -> None:
        """Insert ``configs`` as running (inside the caller's transaction); finished stay."""
        rows = [
            (
                c.trial_id,
                c.data,
                c.arch,
                c.optimizer,
                c.weighting,
                c.alpha,
                c.seed,
                c.stack_key,
                json.dumps(c.to_dict(), sort_keys=True),
                now,
            )
            for c in configs
        ]
        conn.executemany(
            """
            INSERT INTO trials (trial_id, status, data, arch, optimizer, weighting, alpha,
                seed, stack_key, config, started_at)
            VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (trial_id) DO UPDATE SET started_at = excluded.started_at
                WHERE trials.status = 'running'
            """,
            rows,
        )

    def claim(  # noqa: D102
        self, configs: Iterable[TrialConfig], owner: Owner, ttl: float
    ) -> list[TrialConfig]:
        todo = list(configs)
        now = time.time()
        mine: list[TrialConfig] = []
        with self._transaction() as conn:
            conn.execute("BEGIN IMMEDIATE")
            for c in todo:
                row = conn.execute(
                    "SELECT status FROM trials WHERE trial_id = ?", (c.trial_id,)
                ).fetchone()
                if row is not None and row[0] != "running":
                    continue  # finished
                lease = conn.execute(
                    "SELECT run_id, host, pid, expires FROM leases WHERE trial_id = ?",
                    (c.trial_id,),
                ).fetchone()
                if lease is not None and lease[0] != owner.run_id and lease[3] > now:
                    if not Owner(lease[0], lease[1], int(lease[2])).is_gone():
                        continue  # a live run holds it
                conn.execute(
                    "INSERT INTO leases (trial_id, run_id, host, pid, expires) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (trial_id) DO UPDATE SET "
                    "run_id = excluded.run_id, host = excluded.host, pid = excluded.pid, "
                    "expires = excluded.expires",
                    (c.trial_id, owner.run_id, owner.host, owner.pid, now + ttl),
                )
                mine.append(c)
            self._mark_running(conn, mine, now)
        return mine

    def renew(self, owner: Owner, ttl: float) -> None:  # noqa: D102
        with self._transaction() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE leases SET expires = ? WHERE run_id = ?", (time.time() + ttl, owner.run_id)
            )

    def release(self, owner: Owner) -> None:  # noqa: D102
        with self._transaction() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM leases WHERE run_id = ?", (owner.run_id,))

    def running_ids(self) -> set[str]:  # noqa: D102
        with self._lock:
            rows = self._conn.execute(
                "SELECT trial_id FROM trials WHERE status = 'running'"
            ).fetchall()
        return {r[0] for r in rows}

    def __len__(self) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM trials WHERE status != 'running'"
            ).fetchone()
        return int(row[0])

    # -- metadata ---------------------------------------------------------------

    def put_meta(self, key: str, value: Any) -> None:  # noqa: D102
        blob = check_meta_value(key, value)
        with self._transaction() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, blob),
            )

    def get_meta(self, key: str, default: Any = None) -> Any:  # noqa: D102
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def meta(self) -> dict[str, Any]:  # noqa: D102
        with self._lock:
            rows = self._conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore('{self.path}')"


class _Tx:
    """Hold the lock; COMMIT on success, ROLLBACK on any exception (connection in autocommit).

    A write that the storage engine refuses (disk full, read-only, I/O error)
    and a store file that is gone raise :class:`~weightlab.errors.StoreWriteError`.
    """

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, path: Path) -> None:
        self.conn = conn
        self.lock = lock
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        if str(self.path) != ":memory:" and not self.path.exists():
            self.lock.release()
            raise StoreWriteError(self.path, "the file is gone (deleted, or its folder removed)")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if self.conn.in_transaction:
                if exc_type is not None:
                    self._rollback()
                else:
                    try:
                        self.conn.execute("COMMIT")
                    except sqlite3.OperationalError as err:
                        self._rollback()
                        raise StoreWriteError(self.path, str(err)) from err
        finally:
            self.lock.release()
        if isinstance(exc, sqlite3.OperationalError):
            raise StoreWriteError(self.path, str(exc)) from exc

    def _rollback(self) -> None:
        """Roll back if a transaction is still open (SQLite ends some failed ones itself)."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:  # already rolled back by the engine
                pass
