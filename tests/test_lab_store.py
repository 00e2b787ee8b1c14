"""One contract suite, run against every ResultStore backend."""

import math
import sqlite3

import pytest

from weightlab.errors import InvalidValueError
from weightlab.lab.store import MemoryStore, ResultStore
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.trial import TrialConfig, TrialResult


def cfg(seed=0, weighting="none", alpha=None, arch="mlp"):
    return TrialConfig(
        "digits-lt", arch, "sgd", weighting, alpha, seed, epochs=2, data_params=(("ratio", 10),)
    )


def done(c, value=0.5):
    return TrialResult(
        c,
        "done",
        train_loss=[2.0, 1.5],
        val_metric=[0.3, value],
        metrics={"macro_f1": value, "ece": 0.1},
        per_class={"recall": [1.0, 0.0], "average_precision": [0.5, math.nan]},
        test_logits=[[1.0, -1.0], [0.25, 0.75]],
        timings={"train": 1.25},
        extra={"grad_norm": [1.0, 2.0], "note": "x"},
    )


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request, tmp_path):
    """Return a factory; for sqlite, a second call reopens the same file."""
    opened = []

    def factory() -> ResultStore:
        s = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.sqlite")
        if request.param == "memory" and opened:
            return opened[0]
        opened.append(s)
        return s

    yield factory
    for s in opened:
        s.close()


def assert_same(a: TrialResult, b: TrialResult):
    assert a.config == b.config
    assert a.config.trial_id == b.config.trial_id
    for name in ("status", "reason", "train_loss", "val_metric", "metrics", "timings", "extra"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.test_logits == b.test_logits
    assert a.per_class["recall"] == b.per_class["recall"]
    assert math.isnan(b.per_class["average_precision"][1])


def test_put_get_roundtrip(make_store):
    store = make_store()
    r = done(cfg())
    store.put(r)
    got = store.get(r.config.trial_id)
    assert_same(r, got)
    assert store.get("0" * 16) is None
    assert store.finished_ids() == {r.config.trial_id}
    assert len(store) == 1


def test_persists_across_reopen(make_store):
    store = make_store()
    r = done(cfg())
    store.put(r)
    store.put_meta("command", ["weightlab", "study"])
    again = make_store()
    assert_same(r, again.get(r.config.trial_id))
    assert again.get_meta("command") == ["weightlab", "study"]


def test_results_in_first_stored_order_and_put_replaces(make_store):
    store = make_store()
    cs = [cfg(seed=s) for s in range(4)]
    for c in cs:
        store.put(done(c))
    store.put(done(cs[1], value=0.9))  # a re-run replaces, keeps its place
    got = list(store.results())
    assert [r.config for r in got] == cs
    assert got[1].metrics["macro_f1"] == 0.9
    assert len(store) == 4


def test_failed_trials_are_finished(make_store):
    store = make_store()
    c = cfg(weighting="power", alpha=1.0)
    store.put(TrialResult(c, "failed", reason="non-finite loss at epoch 2", train_loss=[1.0]))
    got = store.get(c.trial_id)
    assert got.status == "failed"
    assert got.reason == "non-finite loss at epoch 2"
    assert c.trial_id in store.finished_ids()


def test_running_marks(make_store):
    store = make_store()
    a, b, c = cfg(seed=0), cfg(seed=1), cfg(seed=2)
    store.put(done(a))
    store.mark_running([a, b, c])
    assert store.running_ids() == {b.trial_id, c.trial_id}  # a finished trial stays finished
    assert store.finished_ids() == {a.trial_id}
    assert store.get(b.trial_id) is None
    assert [r.config for r in store.results()] == [a]
    store.put(done(b))
    assert store.running_ids() == {c.trial_id}
    assert store.finished_ids() == {a.trial_id, b.trial_id}


def test_get_returns_a_copy(make_store):
    store = make_store()
    r = done(cfg())
    store.put(r)
    r.metrics["macro_f1"] = -1.0  # mutating what was put ...
    got = store.get(r.config.trial_id)
    got.extra["grad_norm"].append(3.0)  # ... or what was got
    again = store.get(r.config.trial_id)
    assert again.metrics["macro_f1"] == 0.5
    assert again.extra["grad_norm"] == [1.0, 2.0]


def test_put_is_all_or_nothing(make_store):
    store = make_store()
    bad = done(cfg())
    bad.extra["obj"] = object()  # not serialisable: the put must fail and store nothing
    with pytest.raises(TypeError):
        store.put(bad)
    assert store.finished_ids() == set()
    assert list(store.results()) == []
    store.put(done(cfg()))  # and the store still works
    assert len(store) == 1


def test_meta(make_store):
    store = make_store()
    assert store.get_meta("versions") is None
    assert store.get_meta("versions", {}) == {}
    store.put_meta("versions", {"torch": "2.x"})
    store.put_meta("versions", {"torch": "2.y"})
    store.put_meta("data", {"counts": [1, 2]})
    assert store.meta() == {"versions": {"torch": "2.y"}, "data": {"counts": [1, 2]}}
    with pytest.raises(InvalidValueError) as info:
        store.put_meta("bad", object())
    assert str(info.value).startswith(
        "Expected `meta['bad']` to be JSON-serialisable (dicts, lists, strings, numbers, bools, "
        "None), but got object. Convert it first ("
    )


def test_rejects_bad_results(make_store):
    store = make_store()
    with pytest.raises(InvalidValueError) as info:
        store.put(TrialResult(cfg(), "running"))  # type: ignore[arg-type]
    assert str(info.value) == (
        "Expected `result.status` to be 'done' or 'failed', but got 'running'. "
        "Store a trial once it has finished; use mark_running() before."
    )
    with pytest.raises(InvalidValueError) as info:
        store.put(TrialResult(cfg(), "failed"))
    assert str(info.value) == (
        "Expected `result.reason` to say why a failed trial failed, but got an empty reason. "
        "Set reason, e.g. 'non-finite loss at epoch 3'."
    )
    with pytest.raises(InvalidValueError) as info:
        store.put({"status": "done"})  # type: ignore[arg-type]
    assert str(info.value) == (
        "Expected `result` to be a TrialResult, but got dict. "
        "Store what the engine returns (weightlab.lab.trial.TrialResult)."
    )


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
    writer.close()
    reader.close()
