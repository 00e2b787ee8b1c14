"""open_store: what a store target means, and every target it refuses."""

from pathlib import Path

import pytest

from weightlab.errors import InvalidValueError, WeightlabError
from weightlab.lab.store import MemoryStore
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.stores import MEMORY, open_store
from weightlab.lab.trial import TrialConfig, TrialResult


def result():
    return TrialResult(TrialConfig("digits-lt", "mlp", "sgd", "none", None, 0), "done")


def test_memory_target_opens_a_new_memory_store():
    a, b = open_store(MEMORY), open_store(":memory:")
    assert isinstance(a, MemoryStore) and isinstance(b, MemoryStore)
    a.put(result())
    assert len(a) == 1 and len(b) == 0  # each call is a new, empty store


@pytest.mark.parametrize("kind", [str, Path])
def test_path_target_opens_sqlite_and_reopens_it(tmp_path, kind):
    path = tmp_path / "sub" / "study.sqlite"
    with open_store(kind(path)) as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == path
        store.put(result())
    with open_store(kind(path), create=False) as store:
        assert isinstance(store, SQLiteStore)
        assert len(store) == 1


def test_missing_file_is_refused_like_sqlitestore(tmp_path):
    path = tmp_path / "nope.sqlite"
    with pytest.raises(InvalidValueError) as ours:
        open_store(path, create=False)
    with pytest.raises(InvalidValueError) as theirs:
        SQLiteStore(path, create=False)
    assert str(ours.value) == str(theirs.value) == (
        f"Expected `store` to be an existing study store, but got '{path}' (no such file). "
        "Run `weightlab study --store PATH` first, or check the path."
    )
    assert not path.exists()


def test_memory_refused_when_reading():
    with pytest.raises(InvalidValueError) as info:
        open_store(":memory:", create=False)
    assert str(info.value) == (
        "Expected `target` to name an existing store when create=False, but got ':memory:' "
        "(a new in-memory store is always empty). "
        "Pass the SQLite file the study wrote, or create=True."
    )


@pytest.mark.parametrize(
    ("target", "got"),
    [(None, "NoneType"), (3, "int"), (b"study.sqlite", "bytes"), (["a.sqlite"], "list")],
)
def test_refuses_what_is_not_a_path(target, got):
    with pytest.raises(InvalidValueError) as info:
        open_store(target)  # type: ignore[arg-type]
    assert str(info.value) == (
        "Expected `target` to be a path (str or pathlib.Path) of an SQLite store, or "
        f"':memory:', but got {got}. Pass e.g. 'build/study.sqlite'."
    )


def test_refuses_an_open_store():
    with pytest.raises(InvalidValueError) as info:
        open_store(MemoryStore())  # type: ignore[arg-type]
    assert str(info.value) == (
        "Expected `target` to be a path or ':memory:', but got an open MemoryStore. "
        "Use that store directly; open_store only opens stores by name."
    )


class _BytesPath:
    def __fspath__(self) -> bytes:
        return b"study.sqlite"


def test_refuses_a_bytes_path_like():
    with pytest.raises(InvalidValueError) as info:
        open_store(_BytesPath())  # type: ignore[arg-type]
    assert str(info.value) == (
        "Expected `target` to be a path (str or pathlib.Path) of an SQLite store, or "
        "':memory:', but got a _BytesPath whose path is bytes. Decode it to str first "
        "(os.fsdecode)."
    )


def test_refuses_an_empty_string():
    with pytest.raises(InvalidValueError) as info:
        open_store("")
    assert str(info.value) == (
        "Expected `target` to be a path of an SQLite store, or ':memory:', but got an empty "
        "string. Pass e.g. 'build/study.sqlite'."
    )


@pytest.mark.parametrize("create", [True, False])
def test_refuses_a_folder(tmp_path, create):
    with pytest.raises(InvalidValueError) as info:
        open_store(tmp_path, create=create)
    assert str(info.value) == (
        f"Expected `store` to be the path of an SQLite store file, but got '{tmp_path}' "
        f"(a folder). Name a file inside it, e.g. '{tmp_path / 'study.sqlite'}'."
    )


def test_refuses_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(WeightlabError, match=r"^Expected `store` to be a weightlab study store"):
        open_store(str(path), create=False)

