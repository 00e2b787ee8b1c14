"""Where a study's trials go: an abstract result store and its in-memory backend.

Everything a study produces goes to its store first; the summary and the
report are read back from it. The contract (stated on :class:`ResultStore`)
is what makes a stopped study resumable: a trial is stored whole or not at
all, so after a crash every stored trial is complete and every other trial is
simply run again. :class:`~weightlab.lab.store_sqlite.SQLiteStore` is the
default, on-disk backend; :class:`MemoryStore` keeps everything in a dict (for
tests and throw-away studies). :func:`weightlab.lab.stores.open_store` opens
either from a target (a path, or ``":memory:"``). Both pass the same contract
suite, :class:`weightlab.lab.store_contract.StoreContract`, which a new
backend runs too (``docs/stores.md``).
"""

from __future__ import annotations

import abc
import copy
import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from weightlab.errors import InvalidValueError, expected
from weightlab.lab.trial import TrialConfig, TrialResult

__all__ = [
    "FINISHED_STATUSES",
    "MemoryStore",
    "Owner",
    "ResultStore",
    "result_from_dict",
    "result_to_dict",
]

#: Statuses of a trial that a resumed study does not run again.
FINISHED_STATUSES = ("done", "failed", "pruned")


def result_to_dict(result: TrialResult) -> dict[str, Any]:
    """Return a JSON-ready dict of ``result`` (its config as :meth:`TrialConfig.to_dict`)."""
    return {
        "trial_id": result.config.trial_id,
        "config": result.config.to_dict(),
        "status": result.status,
        "reason": result.reason,
        "train_loss": [float(v) for v in result.train_loss],
        "val_metric": [float(v) for v in result.val_metric],
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "per_class": {k: [float(x) for x in v] for k, v in result.per_class.items()},
        "test_logits": [[float(x) for x in row] for row in result.test_logits],
        "timings": {k: float(v) for k, v in result.timings.items()},
        "extra": copy.deepcopy(result.extra),
    }


def result_from_dict(d: dict[str, Any]) -> TrialResult:
    """Inverse of :func:`result_to_dict`."""
    return TrialResult(
        config=TrialConfig.from_dict(d["config"]),
        status=d["status"],
        reason=d.get("reason", ""),
        train_loss=list(d.get("train_loss", [])),
        val_metric=list(d.get("val_metric", [])),
        metrics=dict(d.get("metrics", {})),
        per_class={k: list(v) for k, v in d.get("per_class", {}).items()},
        test_logits=[list(r) for r in d.get("test_logits", [])],
        timings=dict(d.get("timings", {})),
        extra=dict(d.get("extra", {})),
    )


def check_result(result: TrialResult) -> None:
    """Refuse a result a store must not keep (an unknown status, or not a ``TrialResult``).

    Raises:
        InvalidValueError: if ``result`` is not a ``TrialResult`` or its status
            is not ``"done"``, ``"failed"`` or ``"pruned"``, or a failed trial has no reason.
    """
    if not isinstance(result, TrialResult):
        raise InvalidValueError(
            expected(
                "result",
                "to be a TrialResult",
                type(result).__name__,
                "Store what the engine returns (weightlab.lab.trial.TrialResult).",
            )
        )
    if result.status not in FINISHED_STATUSES:
        raise InvalidValueError(
            expected(
                "result.status",
                "to be 'done', 'failed' or 'pruned'",
                repr(result.status),
                "Store a trial once it has finished; use mark_running() before.",
            )
        )
    if result.status == "failed" and not result.reason:
        raise InvalidValueError(
            expected(
                "result.reason",
                "to say why a failed trial failed",
                "an empty reason",
                "Set reason, e.g. 'non-finite loss at epoch 3'.",
            )
        )


def check_ids(ids: Iterable[str] | None) -> list[str] | None:
    """Return the trial ids ``ids`` as a list without repeats (``None`` stays ``None``).

    Raises:
        InvalidValueError: if ``ids`` is a single string, is not iterable, or
            holds something that is not a string.
    """
    if ids is None:
        return None
    if isinstance(ids, str):
        raise InvalidValueError(
            expected(
                "ids",
                "to be an iterable of trial ids",
                f"the string {ids!r}",
                f"Wrap one id in a list: statuses([{ids!r}]).",
            )
        )
    try:
        items = list(ids)
    except TypeError:
        raise InvalidValueError(
            expected(
                "ids",
                "to be an iterable of trial ids (str) or None",
                type(ids).__name__,
                "Pass a list or set of TrialConfig.trial_id values.",
            )
        ) from None
    for tid in items:
        if not isinstance(tid, str):
            raise InvalidValueError(
                expected(
                    "ids",
                    "to hold trial ids (str)",
                    f"{type(tid).__name__} {tid!r}",
                    "Pass TrialConfig.trial_id values.",
                )
            )
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Owner:
    """A run that leases trials: an id of its own, and the host and process it runs in.

    Example:
        >>> me = Owner.here()
        >>> me.pid == os.getpid(), me.is_gone(), Owner("x", me.host, 2**22 + 1).is_gone()
        (True, False, True)
    """

    run_id: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> Owner:
        """A new owner for a run in this process."""
        return cls(uuid.uuid4().hex[:16], socket.gethostname(), os.getpid())

    def is_gone(self) -> bool:
        """Whether its process is known to have ended (same host, no such process)."""
        if self.host != socket.gethostname():
            return False  # another machine's run: only its lease's expiry tells
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, owned by another user
            return False
        return False


def check_meta_value(key: str, value: Any) -> str:
    """Return ``value`` as JSON, or raise if it cannot be stored as study metadata."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise InvalidValueError(
            expected(
                f"meta[{key!r}]",
                "to be JSON-serialisable (dicts, lists, strings, numbers, bools, None)",
                type(value).__name__,
                f"Convert it first ({err}).",
            )
        ) from None


class ResultStore(abc.ABC):
    """The storage contract every result-store backend fulfils.

    Like optuna's storages, a backend promises behaviour, not a layout:

    * :meth:`put` stores a finished (``"done"``) or failed (``"failed"``) trial
      **whole or not at all**: a reader, or a process started after a crash
      at any instant, sees either the complete earlier state or the complete
      new trial, never a part of it. Storing a trial id that is already there
      replaces that record (a re-run of the same configuration).
    * A trial marked with :meth:`mark_running` and never :meth:`put` is
      *unfinished*: it shows in :meth:`running_ids`, not in
      :meth:`finished_ids` or :meth:`results`, and a resumed study runs it
      again. :meth:`mark_running` never demotes a finished trial.
    * :meth:`get` returns an equal copy of what was put (or ``None``);
      mutating it does not change the store. :meth:`results` yields finished
      trials in the order they were first stored.
    * :meth:`statuses` answers "which trials finished, and how?" without
      decoding any result: ``{trial_id: "done" | "failed"}`` for finished
      trials only (a running or unknown id is absent), optionally restricted
      to given ids. It agrees with :meth:`get` (``statuses()[i] ==
      get(i).status``) and :meth:`finished_ids` (its keys). The base class
      builds it from :meth:`get`; a backend overrides it with a cheap read.
    * :meth:`put_meta` / :meth:`get_meta` keep JSON-serialisable study
      metadata (the command, library versions, the data summary) under
      string keys; putting a key again replaces its value.
    * **Leases**: :meth:`claim` hands a run the unfinished trials among the
      ones it asks for that no live run holds, and marks them running; the run
      keeps them with :meth:`renew` (a heartbeat) and gives them up with
      :meth:`release` (or by putting them). A lease that is not renewed within
      its ``ttl``, or whose owner's process is known dead, lapses, so the next
      claim takes the trial over. Backends that several processes can open at
      once (SQLite) make a claim atomic, so concurrent runs of one study share
      its trials; this base implementation, for single-process backends, gives
      every unfinished trial to whoever asks.
    * One process writes a trial at a time (its lease); any number may read.

    Backends also work as context managers (``with SQLiteStore(p) as s:``);
    :meth:`close` releases the backend's resources.
    """

    @abc.abstractmethod
    def put(self, result: TrialResult) -> None:
        """Store a finished or failed trial atomically, replacing any earlier record of its id.

        Raises:
            InvalidValueError: see :func:`check_result`.
        """

    @abc.abstractmethod
    def get(self, trial_id: str) -> TrialResult | None:
        """Return the finished trial ``trial_id``, or ``None`` if it has not finished."""

    @abc.abstractmethod
    def finished_ids(self) -> set[str]:
        """Return the ids of every finished (done or failed) trial."""

    @abc.abstractmethod
    def results(self) -> Iterator[TrialResult]:
        """Yield every finished trial, in the order they were first stored."""

    def statuses(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        """Return the status (``"done"`` or ``"failed"``) of every finished trial, by id.

        Running and unknown trials are left out. The order of the dict is not
        part of the contract. This default decodes each trial with
        :meth:`get`; backends override it with a read of the statuses alone.

        Args:
            ids: only these trial ids (any iterable of str, read once);
                ``None`` (the default): every finished trial.

        Raises:
            InvalidValueError: see :func:`check_ids`.
        """
        wanted = check_ids(ids)
        out: dict[str, str] = {}
        for tid in self.finished_ids() if wanted is None else wanted:
            result = self.get(tid)
            if result is not None:
                out[tid] = result.status
        return out

    @abc.abstractmethod
    def mark_running(self, configs: Iterable[TrialConfig]) -> None:
        """Record that these trials have started (finished ones keep their result)."""

    def claim(self, configs: Iterable[TrialConfig], owner: Owner, ttl: float) -> list[TrialConfig]:
        """Lease the unfinished trials of ``configs`` that no live run holds; return those.

        The returned trials are marked running and leased to ``owner`` for ``ttl``
        seconds. The base implementation leases every unfinished one.
        """
        todo = list(configs)
        finished = self.statuses([c.trial_id for c in todo])
        mine = [c for c in todo if c.trial_id not in finished]
        self.mark_running(mine)
        return mine

    def renew(self, owner: Owner, ttl: float) -> None:  # noqa: B027 - no leases to renew here
        """Extend every lease ``owner`` holds to ``ttl`` seconds from now (its heartbeat)."""

    def release(self, owner: Owner) -> None:  # noqa: B027 - no leases to release here
        """Drop every lease ``owner`` still holds (its trials stay unfinished)."""

    @abc.abstractmethod
    def running_ids(self) -> set[str]:
        """Return the ids of trials marked running that have not been put since."""

    @abc.abstractmethod
    def put_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable study metadata value under ``key``.

        Raises:
            InvalidValueError: if ``value`` is not JSON-serialisable.
        """

    @abc.abstractmethod
    def get_meta(self, key: str, default: Any = None) -> Any:
        """Return the metadata value under ``key``, or ``default``."""

    @abc.abstractmethod
    def meta(self) -> dict[str, Any]:
        """Return all study metadata as a dict."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the backend's resources; the default does nothing."""

    def __len__(self) -> int:
        return len(self.finished_ids())

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryStore(ResultStore):
    """A store that keeps everything in memory and forgets it when the process ends.

    Example:
        >>> from weightlab.lab.trial import TrialConfig, TrialResult
        >>> store = MemoryStore()
        >>> cfg = TrialConfig("digits-lt", "mlp", "sgd", "none", None, 0)
        >>> store.put(TrialResult(cfg, "done", metrics={"macro_f1": 0.5}))
        >>> store.get(cfg.trial_id).metrics
        {'macro_f1': 0.5}
    """

    def __init__(self) -> None:
        self._trials: dict[str, dict[str, Any]] = {}
        self._running: set[str] = set()
        self._meta: dict[str, str] = {}

    def put(self, result: TrialResult) -> None:  # noqa: D102
        check_result(result)
        # Serialise first: a value that cannot be stored fails before anything changes.
        blob = json.dumps(result_to_dict(result), allow_nan=True)
        tid = result.config.trial_id
        self._trials[tid] = json.loads(blob)
        self._running.discard(tid)

    def get(self, trial_id: str) -> TrialResult | None:  # noqa: D102
        d = self._trials.get(trial_id)
        return None if d is None else result_from_dict(copy.deepcopy(d))

    def finished_ids(self) -> set[str]:  # noqa: D102
        return set(self._trials)

    def results(self) -> Iterator[TrialResult]:  # noqa: D102
        for d in list(self._trials.values()):
            yield result_from_dict(copy.deepcopy(d))

    def statuses(self, ids: Iterable[str] | None = None) -> dict[str, str]:  # noqa: D102
        wanted = check_ids(ids)
        trials = self._trials
        if wanted is None:
            return {tid: d["status"] for tid, d in trials.items()}
        return {tid: trials[tid]["status"] for tid in wanted if tid in trials}

    def mark_running(self, configs: Iterable[TrialConfig]) -> None:  # noqa: D102
        self._running.update(c.trial_id for c in configs if c.trial_id not in self._trials)

    def running_ids(self) -> set[str]:  # noqa: D102
        return set(self._running)

    def put_meta(self, key: str, value: Any) -> None:  # noqa: D102
        self._meta[key] = check_meta_value(key, value)

    def get_meta(self, key: str, default: Any = None) -> Any:  # noqa: D102
        return json.loads(self._meta[key]) if key in self._meta else default

    def meta(self) -> dict[str, Any]:  # noqa: D102
        return {k: json.loads(v) for k, v in self._meta.items()}
