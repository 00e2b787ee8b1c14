"""The contract suite every :class:`~weightlab.lab.store.ResultStore` backend passes.

Like optuna's ``optuna.testing.pytest_storages``, the tests that pin down the
store contract (stated on :class:`~weightlab.lab.store.ResultStore`) ship with
the library, so a new backend runs exactly the tests that
:class:`~weightlab.lab.store.MemoryStore` and
:class:`~weightlab.lab.store_sqlite.SQLiteStore` run. To run them on your own
backend, subclass :class:`StoreContract` in a pytest file, name the class
``Test...`` and say how to open your store::

    # tests/test_my_store.py
    from weightlab.lab.store_contract import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self, where):
            return MyStore(where / "db")   # a second call must reopen the same store

then ``pytest tests/test_my_store.py`` runs every ``test_*`` method of the
contract on it. A backend that forgets everything when its object goes (like
``MemoryStore``) sets ``persistent = False``, and the reopen test then checks
the same object again. For pytest's detailed assertion messages, add
``pytest.register_assert_rewrite("weightlab.lab.store_contract")`` to your
``conftest.py`` (or before the import).

The module needs no pytest to import, and a test runs without it too:

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from weightlab.lab.store import MemoryStore
    >>> class TestMemory(StoreContract):
    ...     persistent = False
    ...     def make_store(self, where):
    ...         return MemoryStore()
    >>> suite = TestMemory()
    >>> suite.test_statuses(Path(tempfile.mkdtemp()))
    >>> suite.teardown_method()
    >>> len(StoreContract.contract_tests()) > 10
    True

:func:`make_config`, :func:`make_result` and :func:`assert_same_result` are
the fixtures' builders, for a backend's own tests.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from weightlab.errors import InvalidValueError
from weightlab.lab.store import Owner, ResultStore
from weightlab.lab.trial import TrialConfig, TrialResult

__all__ = ["StoreContract", "assert_same_result", "make_config", "make_result"]


def make_config(
    seed: int = 0, weighting: str = "none", alpha: float | None = None, arch: str = "mlp"
) -> TrialConfig:
    """Return a small trial config; distinct ``seed`` values give distinct trial ids."""
    return TrialConfig(
        "digits-lt", arch, "sgd", weighting, alpha, seed, epochs=2, data_params=(("ratio", 10),)
    )


def make_result(config: TrialConfig, value: float = 0.5) -> TrialResult:
    """Return a finished trial of ``config`` with every field set (a NaN in ``per_class`` too)."""
    return TrialResult(
        config,
        "done",
        train_loss=[2.0, 1.5],
        val_metric=[0.3, value],
        metrics={"macro_f1": value, "ece": 0.1},
        per_class={"recall": [1.0, 0.0], "average_precision": [0.5, math.nan]},
        test_logits=[[1.0, -1.0], [0.25, 0.75]],
        timings={"train": 1.25},
        extra={"grad_norm": [1.0, 2.0], "note": "x"},
    )


def assert_same_result(a: TrialResult, b: TrialResult | None) -> None:
    """Assert that ``b`` is what was stored as ``a`` (a :func:`make_result`), NaN included."""
    assert b is not None, "the store returned None for a stored trial"
    assert a.config == b.config
    assert a.config.trial_id == b.config.trial_id
    for name in ("status", "reason", "train_loss", "val_metric", "metrics", "timings", "extra"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.test_logits == b.test_logits
    assert a.per_class["recall"] == b.per_class["recall"]
    assert math.isnan(b.per_class["average_precision"][1])


class _Caught:
    value: BaseException


@contextlib.contextmanager
def _raises(kind: type[BaseException]) -> Iterator[_Caught]:
    """``pytest.raises`` without pytest: fail unless the block raises ``kind``."""
    caught = _Caught()
    try:
        yield caught
    except kind as err:
        caught.value = err
        return
    raise AssertionError(f"the block did not raise {kind.__name__}")


class StoreContract(abc.ABC):
    """The store contract as tests: subclass as ``Test<YourStore>``, define :meth:`make_store`.

    Each ``test_*`` method takes ``tmp_path`` (pytest's fresh, empty folder
    for that test) and opens stores through :meth:`make_store`; the stores a
    test opened are closed after it (:meth:`teardown_method`).
    """

    #: Whether what is stored outlives the store object: a second
    #: :meth:`make_store` on the same folder sees it. ``False`` for a backend
    #: like ``MemoryStore``; the reopen test then uses the same object.
    persistent: ClassVar[bool] = True

    @abc.abstractmethod
    def make_store(self, where: Path) -> ResultStore:
        """Open the backend's store kept under the folder ``where`` (created if missing).

        ``where`` is a fresh, empty folder for each test; a second call with the
        same folder (while the first store is still open) must open the same
        store, unless :attr:`persistent` is ``False``.
        """

    @staticmethod
    def contract_tests() -> list[str]:
        """Return the names of the contract's tests, in definition order."""
        return [n for n in vars(StoreContract) if n.startswith("test_")]

    # -- opening and closing ------------------------------------------------------

    def open_store(self, where: Path) -> ResultStore:
        """Open a store with :meth:`make_store`, to be closed after the test."""
        store = self.make_store(where)
        self.__dict__.setdefault("_opened", []).append(store)
        return store

    def reopen(self, where: Path) -> ResultStore:
        """Open the store under ``where`` again (for a non-persistent backend: the first one)."""
        opened: list[ResultStore] = self.__dict__.get("_opened", [])
        if not self.persistent and opened:
            return opened[0]
        return self.open_store(where)

    def teardown_method(self, method: Any = None) -> None:
        """Close every store the test opened (pytest calls this after each test)."""
        for store in self.__dict__.pop("_opened", []):
            store.close()

    # -- the contract -------------------------------------------------------------

    def test_put_get_roundtrip(self, tmp_path: Path) -> None:
        """``get`` returns what was ``put``; an unknown id gives ``None``."""
        store = self.open_store(tmp_path)
        r = make_result(make_config())
        store.put(r)
        got = store.get(r.config.trial_id)
        assert_same_result(r, got)
        assert store.get("0" * 16) is None
        assert store.finished_ids() == {r.config.trial_id}
        assert len(store) == 1

    def test_persists_across_reopen(self, tmp_path: Path) -> None:
        """Trials and metadata are there when the store is opened again."""
        store = self.open_store(tmp_path)
        r = make_result(make_config())
        store.put(r)
        store.put_meta("command", ["weightlab", "study"])
        again = self.reopen(tmp_path)
        assert_same_result(r, again.get(r.config.trial_id))
        assert again.get_meta("command") == ["weightlab", "study"]

    def test_results_in_first_stored_order_and_put_replaces(self, tmp_path: Path) -> None:
        """``results`` keeps first-stored order; a re-put replaces the record in place."""
        store = self.open_store(tmp_path)
        cs = [make_config(seed=s) for s in range(4)]
        for c in cs:
            store.put(make_result(c))
        store.put(make_result(cs[1], value=0.9))  # a re-run replaces, keeps its place
        got = list(store.results())
        assert [r.config for r in got] == cs
        assert got[1].metrics["macro_f1"] == 0.9
        assert len(store) == 4

    def test_failed_trials_are_finished(self, tmp_path: Path) -> None:
        """A failed trial is stored with its reason and counts as finished."""
        store = self.open_store(tmp_path)
        c = make_config(weighting="power", alpha=1.0)
        store.put(TrialResult(c, "failed", reason="non-finite loss at epoch 2", train_loss=[1.0]))
        got = store.get(c.trial_id)
        assert got is not None
        assert got.status == "failed"
        assert got.reason == "non-finite loss at epoch 2"
        assert c.trial_id in store.finished_ids()

    def test_running_marks(self, tmp_path: Path) -> None:
        """Marked trials are running until put; a finished trial is never demoted."""
        store = self.open_store(tmp_path)
        a, b, c = make_config(seed=0), make_config(seed=1), make_config(seed=2)
        store.put(make_result(a))
        store.mark_running([a, b, c])
        assert store.running_ids() == {b.trial_id, c.trial_id}  # a finished trial stays finished
        assert store.finished_ids() == {a.trial_id}
        assert store.get(b.trial_id) is None
        assert [r.config for r in store.results()] == [a]
        store.put(make_result(b))
        assert store.running_ids() == {c.trial_id}
        assert store.finished_ids() == {a.trial_id, b.trial_id}

    def test_get_returns_a_copy(self, tmp_path: Path) -> None:
        """Mutating what was put, or what was got, does not change the store."""
        store = self.open_store(tmp_path)
        r = make_result(make_config())
        store.put(r)
        r.metrics["macro_f1"] = -1.0  # mutating what was put ...
        got = store.get(r.config.trial_id)
        assert got is not None
        got.extra["grad_norm"].append(3.0)  # ... or what was got
        again = store.get(r.config.trial_id)
        assert again is not None
        assert again.metrics["macro_f1"] == 0.5
        assert again.extra["grad_norm"] == [1.0, 2.0]

    def test_put_is_all_or_nothing(self, tmp_path: Path) -> None:
        """A put that fails stores nothing, and the store keeps working."""
        store = self.open_store(tmp_path)
        bad = make_result(make_config())
        bad.extra["obj"] = object()  # not serialisable: the put must fail and store nothing
        with _raises(TypeError):
            store.put(bad)
        assert store.finished_ids() == set()
        assert list(store.results()) == []
        assert store.statuses() == {}
        store.put(make_result(make_config()))  # and the store still works
        assert len(store) == 1

    def test_meta(self, tmp_path: Path) -> None:
        """Metadata: defaults, replacement, ``meta()``, and refusal of non-JSON values."""
        store = self.open_store(tmp_path)
        assert store.get_meta("versions") is None
        assert store.get_meta("versions", {}) == {}
        store.put_meta("versions", {"torch": "2.x"})
        store.put_meta("versions", {"torch": "2.y"})
        store.put_meta("data", {"counts": [1, 2]})
        assert store.meta() == {"versions": {"torch": "2.y"}, "data": {"counts": [1, 2]}}
        with _raises(InvalidValueError) as info:
            store.put_meta("bad", object())
        assert str(info.value).startswith(
            "Expected `meta['bad']` to be JSON-serialisable (dicts, lists, strings, numbers, "
            "bools, None), but got object. Convert it first ("
        ), str(info.value)

    def test_rejects_bad_results(self, tmp_path: Path) -> None:
        """``put`` refuses an unfinished status, a failure without reason, a non-result."""
        store = self.open_store(tmp_path)
        with _raises(InvalidValueError) as info:
            store.put(TrialResult(make_config(), "running"))  # type: ignore[arg-type]
        assert str(info.value) == (
            "Expected `result.status` to be 'done', 'failed' or 'pruned', but got 'running'. "
            "Store a trial once it has finished; use mark_running() before."
        ), str(info.value)
        with _raises(InvalidValueError) as info:
            store.put(TrialResult(make_config(), "failed"))
        assert str(info.value) == (
            "Expected `result.reason` to say why a failed trial failed, but got an empty "
            "reason. Set reason, e.g. 'non-finite loss at epoch 3'."
        ), str(info.value)
        with _raises(InvalidValueError) as info:
            store.put({"status": "done"})  # type: ignore[arg-type]
        assert str(info.value) == (
            "Expected `result` to be a TrialResult, but got dict. "
            "Store what the engine returns (weightlab.lab.trial.TrialResult)."
        ), str(info.value)
        assert store.statuses() == {}

    def test_claim_leases_the_unfinished_trials(self, tmp_path: Path) -> None:
        """``claim`` returns (and marks running) the unfinished trials; renew/release are safe."""
        store = self.open_store(tmp_path)
        me = Owner.here()
        a, b, c = (make_config(seed=s) for s in range(3))
        store.put(make_result(a))
        got = store.claim([a, b, c], me, 60.0)
        assert [x.trial_id for x in got] == [b.trial_id, c.trial_id]
        assert store.running_ids() == {b.trial_id, c.trial_id}
        assert store.claim([], me, 60.0) == []
        assert [x.trial_id for x in store.claim([b], me, 60.0)] == [b.trial_id]  # mine again
        store.renew(me, 60.0)
        store.put(make_result(b))
        store.release(me)
        assert store.running_ids() == {c.trial_id}  # released trials stay unfinished
        assert store.statuses() == {a.trial_id: "done", b.trial_id: "done"}

    def test_statuses(self, tmp_path: Path) -> None:
        """``statuses`` maps finished ids to done/failed; running and unknown ids are absent."""
        store = self.open_store(tmp_path)
        assert store.statuses() == {}
        a, b, c, d = (make_config(seed=s) for s in range(4))
        store.put(make_result(a))
        store.put(TrialResult(b, "failed", reason="non-finite loss at epoch 1"))
        store.mark_running([c])
        assert store.statuses() == {a.trial_id: "done", b.trial_id: "failed"}
        assert store.statuses([a.trial_id]) == {a.trial_id: "done"}
        assert store.statuses([]) == {}
        unknown = "0" * 16
        wanted = (t.trial_id for t in (b, c, d, b))  # any iterable, repeats, running, unknown
        assert store.statuses(wanted) == {b.trial_id: "failed"}
        assert store.statuses({unknown, c.trial_id}) == {}
        store.put(make_result(b))  # a re-run that succeeded replaces the failure
        store.put(TrialResult(c, "failed", reason="out of memory"))
        assert store.statuses() == {a.trial_id: "done", b.trial_id: "done", c.trial_id: "failed"}
        assert store.running_ids() == set()

    def test_statuses_agree_with_get_and_finished_ids(self, tmp_path: Path) -> None:
        """``statuses()`` has the keys of ``finished_ids()`` and the statuses ``get`` returns."""
        store = self.open_store(tmp_path)
        configs = [make_config(seed=s) for s in range(7)]
        for i, c in enumerate(configs[:5]):
            if i % 2:
                store.put(TrialResult(c, "failed", reason=f"failure {i}"))
            else:
                store.put(make_result(c))
        store.mark_running(configs[4:])
        got = store.statuses()
        assert set(got) == store.finished_ids()
        for tid, status in got.items():
            result = store.get(tid)
            assert result is not None and result.status == status, tid
        assert store.statuses(c.trial_id for c in configs) == got
        many = [c.trial_id for c in configs] + [f"{i:016x}" for i in range(2000)]
        assert store.statuses(many) == got  # more ids than one query binds
        again = self.reopen(tmp_path)
        assert again.statuses() == got

    def test_statuses_rejects_bad_ids(self, tmp_path: Path) -> None:
        """``statuses`` refuses one string, a non-iterable, and ids that are not strings."""
        store = self.open_store(tmp_path)
        c = make_config()
        store.put(make_result(c))
        with _raises(InvalidValueError) as info:
            store.statuses(c.trial_id)
        assert str(info.value) == (
            f"Expected `ids` to be an iterable of trial ids, but got the string "
            f"'{c.trial_id}'. Wrap one id in a list: statuses(['{c.trial_id}'])."
        ), str(info.value)
        with _raises(InvalidValueError) as info:
            store.statuses(3)  # type: ignore[arg-type]
        assert str(info.value) == (
            "Expected `ids` to be an iterable of trial ids (str) or None, but got int. "
            "Pass a list or set of TrialConfig.trial_id values."
        ), str(info.value)
        with _raises(InvalidValueError) as info:
            store.statuses([c.trial_id, 3])  # type: ignore[list-item]
        assert str(info.value) == (
            "Expected `ids` to hold trial ids (str), but got int 3. "
            "Pass TrialConfig.trial_id values."
        ), str(info.value)
        with _raises(InvalidValueError) as info:
            store.statuses([[c.trial_id]])  # type: ignore[list-item]
        assert str(info.value).startswith("Expected `ids` to hold trial ids (str), but got list ")
