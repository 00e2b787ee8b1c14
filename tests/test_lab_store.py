"""The store contract suite (weightlab.lab.store_contract) run on both backends, then each
backend's own tests (SQLite files, corruption, schema, cheap status reads)."""

import json
import os
import socket
import sqlite3
import time

import pytest

pytest.register_assert_rewrite("weightlab.lab.store_contract")

import weightlab.lab.store as store_module  # noqa: E402
from weightlab.errors import InvalidValueError, StoreWriteError  # noqa: E402
from weightlab.lab.store import MemoryStore, Owner, ResultStore  # noqa: E402
from weightlab.lab.store_contract import (  # noqa: E402
    StoreContract,
    make_config,
    make_result,
)
from weightlab.lab.store_sqlite import SQLiteStore  # noqa: E402
from weightlab.lab.trial import TrialResult  # noqa: E402

cfg, done = make_config, make_result


class TestMemoryStore(StoreContract):
    persistent = False

    def make_store(self, where):
        return MemoryStore()


class TestSQLiteStore(StoreContract):
    def make_store(self, where):
        return SQLiteStore(where / "s.sqlite")


class _GetOnlyStore(ResultStore):
    """A backend that keeps the base class's statuses() (built from get): the default passes too."""

    def __init__(self):
        self._inner = MemoryStore()

    def put(self, result):
        self._inner.put(result)

    def get(self, trial_id):
        return self._inner.get(trial_id)

    def finished_ids(self):
        return self._inner.finished_ids()

    def results(self):
        return self._inner.results()

    def mark_running(self, configs):
        self._inner.mark_running(configs)

    def running_ids(self):
        return self._inner.running_ids()

    def put_meta(self, key, value):
        self._inner.put_meta(key, value)

    def get_meta(self, key, default=None):
        return self._inner.get_meta(key, default)

    def meta(self):
        return self._inner.meta()


class TestDefaultStatuses(StoreContract):
    persistent = False

    def make_store(self, where):
        return _GetOnlyStore()


def test_contract_tests_all_run_here():
    names = StoreContract.contract_tests()
    assert len(names) == len(set(names)) >= 12
    for cls in (TestMemoryStore, TestSQLiteStore, TestDefaultStatuses):
        assert all(callable(getattr(cls, n)) for n in names)


def test_contract_needs_make_store():
    with pytest.raises(TypeError, match="make_store"):
        StoreContract()  # type: ignore[abstract]


# -- statuses() reads no result ------------------------------------------------------


def test_memory_statuses_decode_nothing(monkeypatch):
    store = MemoryStore()
    store.put(done(cfg()))
    store.put(TrialResult(cfg(seed=1), "failed", reason="boom"))

    def refuse(d):
        raise AssertionError("statuses() decoded a result")

    monkeypatch.setattr(store_module, "result_from_dict", refuse)
    assert store.statuses() == {cfg().trial_id: "done", cfg(seed=1).trial_id: "failed"}
    assert store.statuses([cfg(seed=1).trial_id]) == {cfg(seed=1).trial_id: "failed"}


def test_sqlite_statuses_read_only_the_status_column(tmp_path):
    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as store:
        store.put(done(cfg()))
        store.put(TrialResult(cfg(seed=1), "failed", reason="boom"))
        store.mark_running([cfg(seed=2)])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE trials SET result = 'not json'")  # decoding any result would fail
    conn.commit()
    conn.close()
    with SQLiteStore(path, create=False) as store:
        assert store.statuses() == {cfg().trial_id: "done", cfg(seed=1).trial_id: "failed"}
        assert store.statuses([cfg(seed=1).trial_id, cfg(seed=2).trial_id]) == {
            cfg(seed=1).trial_id: "failed"
        }
        with pytest.raises(json.JSONDecodeError):
            store.get(cfg().trial_id)


def test_sqlite_statuses_in_finished_order(tmp_path):
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        for seed in (3, 1, 2):
            store.put(done(cfg(seed=seed)))
        assert list(store.statuses()) == [cfg(seed=s).trial_id for s in (3, 1, 2)]


# -- SQLite specifics --------------------------------------------------------------


def test_sqlite_missing_file_when_reading(tmp_path):
    path = tmp_path / "nope.sqlite"
    with pytest.raises(InvalidValueError) as info:
        SQLiteStore(path, create=False)
    assert str(info.value) == (
        f"Expected `store` to be an existing study store, but got '{path}' (no such file). "
        "Run `weightlab study --store PATH` first, or check the path."
    )
    assert not path.exists()


def test_sqlite_refuses_a_folder(tmp_path):
    with pytest.raises(InvalidValueError) as info:
        SQLiteStore(tmp_path)
    assert str(info.value) == (
        f"Expected `store` to be the path of an SQLite store file, but got '{tmp_path}' "
        f"(a folder). Name a file inside it, e.g. '{tmp_path / 'study.sqlite'}'."
    )


def test_sqlite_not_a_store(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidValueError) as info:
        SQLiteStore(path)
    assert str(info.value) == (
        f"Expected `store` to be a weightlab study store (an SQLite file), but got '{path}' "
        "(file is not a database). Pass the file `weightlab study --store` wrote, or a new path."
    )


def test_sqlite_schema_is_queryable_and_wal(tmp_path):
    path = tmp_path / "deep" / "dir" / "s.sqlite"
    with SQLiteStore(path) as store:
        store.put(done(cfg(arch="cnn")))
        store.mark_running([cfg(seed=5)])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = conn.execute("SELECT arch, status, seed FROM trials ORDER BY seed").fetchall()
    assert rows == [("cnn", "done", 0), ("mlp", "running", 5)]
    conn.close()


def test_sqlite_reader_sees_writer_commits(tmp_path):
    path = tmp_path / "s.sqlite"
    writer = SQLiteStore(path)
    reader = SQLiteStore(path, create=False)
    writer.put(done(cfg()))
    assert len(reader) == 1
    assert reader.statuses() == {cfg().trial_id: "done"}
    writer.close()
    reader.close()


# -- leases: concurrent runs share a study's trials (SQLite) ------------------------------


def _other_live_owner():
    """An owner on this host whose process is alive (our parent), as a second run would be."""
    return Owner("other-run", socket.gethostname(), os.getppid())


def test_sqlite_a_live_lease_keeps_a_trial_from_a_second_run(tmp_path):
    a, b = cfg(seed=0), cfg(seed=1)
    with SQLiteStore(tmp_path / "s.sqlite") as first, SQLiteStore(tmp_path / "s.sqlite") as second:
        other, me = _other_live_owner(), Owner.here()
        assert first.claim([a], other, 60.0) == [a]
        assert second.claim([a, b], me, 60.0) == [b]  # a is held
        assert second.claim([a], me, 60.0) == []
        first.put(done(a))  # the holder finishes it: the lease goes with the put
        assert second.claim([a], me, 60.0) == []  # finished, not claimable
        assert second.statuses([a.trial_id]) == {a.trial_id: "done"}


def test_sqlite_an_expired_lease_or_a_dead_owner_lapses(tmp_path):
    a, b, c = cfg(seed=0), cfg(seed=1), cfg(seed=2)
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        other, me = _other_live_owner(), Owner.here()
        assert store.claim([a], other, -1.0) == [a]  # already expired
        assert store.claim([a], me, 60.0) == [a]
        dead = Owner("crashed-run", socket.gethostname(), 2**22 + 7)  # no such process
        assert store.claim([b], dead, 60.0) == [b]
        assert store.claim([b], me, 60.0) == [b]  # its process is gone: taken over at once
        store.claim([c], other, 0.2)
        store.renew(other, 60.0)  # the heartbeat keeps it
        time.sleep(0.3)
        assert store.claim([c], me, 60.0) == []
        store.release(other)  # an interrupted run gives its trials up
        assert store.claim([c], me, 60.0) == [c]


def test_sqlite_a_store_from_before_leases_gets_the_table(tmp_path):
    path = tmp_path / "old.sqlite"
    with SQLiteStore(path) as store:
        store.put(done(cfg()))
    con = sqlite3.connect(path)
    con.execute("DROP TABLE leases")
    con.commit()
    con.close()
    with SQLiteStore(path) as store:
        assert store.claim([cfg(seed=5)], Owner.here(), 60.0) == [cfg(seed=5)]
        assert len(store) == 1


def test_sqlite_write_errors_name_the_file_and_keep_what_is_stored(tmp_path):
    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as store:
        store.put(done(cfg()))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")  # as if the disk were full
        big = done(cfg(seed=1), value=0.25)
        big.test_logits = [[0.125] * 10] * 5000  # needs pages the file may not grow by
        with pytest.raises(StoreWriteError) as info:
            store.put(big)
        assert str(info.value).startswith(f"Could not write to the store '{path}': ")
        assert "full" in info.value.reason
        assert store.statuses() == {cfg().trial_id: "done"}  # rolled back, earlier trial whole
    with SQLiteStore(path) as store:
        path.unlink()
        with pytest.raises(StoreWriteError) as info:
            store.put(done(cfg(seed=2)))
        assert str(info.value) == (
            f"Could not write to the store '{path}': the file is gone (deleted, or its folder "
            "removed)."
        )
