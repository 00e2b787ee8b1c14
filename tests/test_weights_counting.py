"""count_labels / count_multilabel: every input kind, streams, progress, and every error."""

from __future__ import annotations

import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from weightlab.errors import (
    InvalidDtypeError,
    InvalidValueError,
    ShapeMismatchError,
    TargetOutOfRangeError,
)
from weightlab.weights import MultilabelCounts, count_labels, count_multilabel
from weightlab.weights import counting as counting_module


def exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


# --------------------------------------------------------------------------- input kinds


@pytest.mark.parametrize(
    "labels",
    [
        [0, 2, 2, 1, 2],
        (0, 2, 2, 1, 2),
        np.array([0, 2, 2, 1, 2], dtype=np.int32),
        np.array([0, 2, 2, 1, 2], dtype=np.uint8),
        np.array([0.0, 2.0, 2.0, 1.0, 2.0]),
        torch.tensor([0, 2, 2, 1, 2]),
        torch.tensor([0.0, 2.0, 2.0, 1.0, 2.0], dtype=torch.bfloat16),
        pd.Series([0, 2, 2, 1, 2]),
        pd.Index([0, 2, 2, 1, 2]),
    ],
    ids=lambda v: type(v).__name__,
)
def test_array_likes(labels: object) -> None:
    counts = count_labels(labels)
    assert counts.dtype == np.int64
    assert counts.tolist() == [1, 1, 3]


def test_bool_labels_are_classes_0_and_1() -> None:
    assert count_labels(np.array([True, False, True])).tolist() == [1, 2]


def test_num_classes_pads_missing_classes() -> None:
    assert count_labels([0, 1, 1], num_classes=5).tolist() == [1, 2, 0, 0, 0]
    assert count_labels([], num_classes=3).tolist() == [0, 0, 0]
    assert count_labels(np.array([1, 1]), num_classes=np.int64(2)).tolist() == [0, 2]


def test_categorical_counts_every_category_in_order() -> None:
    cat = pd.Categorical(["b", "a", "b"], categories=["c", "b", "a"])
    assert count_labels(cat).tolist() == [0, 2, 1]
    assert count_labels(pd.Series(cat)).tolist() == [0, 2, 1]
    assert count_labels(cat, num_classes=4).tolist() == [0, 2, 1, 0]


@given(st.lists(st.integers(0, 30), max_size=200), st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_equals_numpy_bincount(values: list[int], extra: int) -> None:
    y = np.array(values, dtype=np.int64)
    if y.size:
        assert count_labels(y).tolist() == np.bincount(y).tolist()
    num_classes = (int(y.max()) + 1 if y.size else 1) + extra
    assert (
        count_labels(torch.from_numpy(y), num_classes).tolist()
        == np.bincount(y, minlength=num_classes).tolist()
    )


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
@pytest.mark.parametrize("shuffle", [False, True])
def test_dataloader_streaming_equals_bincount(batch_size: int, shuffle: bool) -> None:
    rng = np.random.default_rng(batch_size)
    y = rng.integers(0, 9, size=500)
    data = TensorDataset(torch.randn(500, 3), torch.from_numpy(y))
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle)
    assert count_labels(loader).tolist() == np.bincount(y).tolist()
    assert count_labels(loader, num_classes=12).tolist() == np.bincount(y, minlength=12).tolist()


def test_dataloader_of_targets_alone_and_of_dicts() -> None:
    y = torch.tensor([3, 0, 3, 3, 1])
    assert count_labels(DataLoader(y, batch_size=2)).tolist() == [1, 1, 0, 3]

    class Dicts(Dataset[dict[str, object]]):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> dict[str, object]:
            return {"input_ids": torch.zeros(4), "labels": int(y[i])}

    assert count_labels(DataLoader(Dicts(), batch_size=2)).tolist() == [1, 1, 0, 3]
    assert count_labels(Dicts()).tolist() == [1, 1, 0, 3]


def test_generator_of_batches_is_streamed_in_bounded_memory() -> None:
    def batches() -> Iterator[tuple[None, np.ndarray]]:
        rng = np.random.default_rng(0)
        for _ in range(200):
            yield None, rng.integers(0, 50, size=10_000)  # 80 kB each, 16 MB in all

    expected = np.zeros(50, dtype=np.int64)
    for _, y in batches():
        expected += np.bincount(y, minlength=50)
    tracemalloc.start()
    try:
        counts = count_labels(batches())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts.tolist() == expected.tolist()
    assert peak < 2_000_000  # a few batches, never all 16 MB of labels


def test_map_style_dataset_item_by_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counting_module, "_ITEM_CHUNK", 16)  # exercise several chunks
    y = np.random.default_rng(1).integers(0, 4, size=101)

    class Items(Dataset[tuple[torch.Tensor, int]]):
        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(2), int(y[i])

    assert count_labels(Items()).tolist() == np.bincount(y).tolist()
    assert count_labels(Items(), 6).tolist() == np.bincount(y, minlength=6).tolist()


def test_iterable_dataset() -> None:
    class Stream(IterableDataset[tuple[int, torch.Tensor]]):
        def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
            for label in [2, 2, 0]:
                yield 0, torch.tensor(label)

    assert count_labels(Stream()).tolist() == [1, 0, 2]
    assert count_labels(DataLoader(Stream(), batch_size=2)).tolist() == [1, 0, 2]


def test_tensor_dataset_uses_the_second_tensor() -> None:
    data = TensorDataset(torch.tensor([[5.0], [6.0], [7.0]]), torch.tensor([1, 1, 0]))
    assert count_labels(data).tolist() == [1, 2]
    assert count_labels(TensorDataset(torch.tensor([1, 1, 0]))).tolist() == [1, 2]


def test_empty_stream_needs_num_classes() -> None:
    assert count_labels(iter([]), num_classes=2).tolist() == [0, 0]
    with pytest.raises(InvalidValueError, match=exact(EMPTY)):
        count_labels(iter([]))


# --------------------------------------------------------------------------- multi-label


def test_multilabel_positives_and_negatives() -> None:
    y = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert count_labels(y).tolist() == [3, 1, 1]
    assert count_labels(y, multilabel=True).tolist() == [3, 1, 1]
    for labels in (y, torch.tensor(y, dtype=torch.float32), y.astype(bool), pd.DataFrame(y)):
        counts = count_multilabel(labels)
        assert isinstance(counts, MultilabelCounts)
        assert counts.positives.tolist() == [3, 1, 1]
        assert counts.negatives.tolist() == [1, 3, 3]
        assert counts.n_samples == 4
        assert counts.positives.dtype == counts.negatives.dtype == np.int64


def test_multilabel_stream_equals_column_sums() -> None:
    y = torch.from_numpy(np.random.default_rng(2).integers(0, 2, size=(300, 5)))
    loader = DataLoader(TensorDataset(torch.zeros(300), y.float()), batch_size=32)
    counts = count_multilabel(loader)
    assert counts.positives.tolist() == y.sum(0).tolist()
    assert counts.negatives.tolist() == (300 - y.sum(0)).tolist()
    assert count_multilabel(TensorDataset(torch.zeros(300), y)).n_samples == 300

    class Rows(Dataset[tuple[int, torch.Tensor]]):
        def __len__(self) -> int:
            return 300

        def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
            return 0, y[i]

    assert count_multilabel(Rows()).positives.tolist() == y.sum(0).tolist()


def test_multilabel_false_counts_every_element() -> None:
    masks = np.array([[[0, 1], [2, 2]], [[1, 1], [0, 2]]])
    assert count_labels(masks, multilabel=False).tolist() == [2, 3, 3]
    assert count_labels(np.array([[0, 1], [1, 1]]), multilabel=False).tolist() == [1, 3]

    class Masks(Dataset[tuple[int, np.ndarray]]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
            return 0, np.full((i + 1, 2), i)  # shapes differ

    assert count_labels(Masks(), multilabel=False).tolist() == [2, 4]


# --------------------------------------------------------------------------- progress


def _loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    return DataLoader(TensorDataset(torch.tensor([0, 1, 1])), batch_size=1)


def test_progress_true_draws_a_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert count_labels(_loader(), progress=True).tolist() == [1, 2]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "counting labels" in captured.err
    assert "3/3" in captured.err


def test_progress_off_and_auto_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    count_labels(_loader(), progress=False)
    count_labels(_loader())  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""


def test_progress_without_tqdm_prints_a_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert count_labels(_loader(), progress=True).tolist() == [1, 2]
    assert capsys.readouterr().err.endswith("\rcounting labels: 3/3 batches\n")


# --------------------------------------------------------------------------- errors

EMPTY = (
    "Expected `num_classes` to be given when there are no labels, but got num_classes=None "
    "and 0 labels. Pass num_classes so the counts have a length."
)
NDIM_FIX_MASKS = (
    "Pass multilabel=False to count every element as a class index (segmentation masks)."
)
NDIM_AUTO = (
    "Expected `labels` to be class indices of shape (N,) or a 0/1 multi-label matrix of shape "
    "(N, L), but got {}. {}"
)


def test_negative_labels() -> None:
    msg = (
        "Expected `labels` to be class indices >= 0, but got -100 (the smallest label). Drop or "
        "remap negative labels; filter out an ignore_index such as -100 before counting."
    )
    with pytest.raises(TargetOutOfRangeError, match=exact(msg)):
        count_labels(torch.tensor([0, -100, 1]))
    with pytest.raises(TargetOutOfRangeError, match=exact(msg.replace("-100 (", "-100.0 ("))):
        count_labels(np.array([0.0, -100.0]))


def test_labels_at_or_above_num_classes() -> None:
    msg = (
        "Expected `labels` to be < num_classes (3), but got 3 (the largest label). Pass a larger "
        "num_classes, or num_classes=None to count up to the largest label."
    )
    with pytest.raises(TargetOutOfRangeError, match=exact(msg)):
        count_labels([0, 3, 1], num_classes=3)
    with pytest.raises(TargetOutOfRangeError, match=exact(msg)):
        count_labels(DataLoader(TensorDataset(torch.tensor([0, 1, 2, 3])), batch_size=2), 3)


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        (np.array([0.0, 1.5]), "1.5 in a float64 array"),
        (torch.tensor([1.0, float("nan")]), "nan in a float32 array"),
        (np.array([np.inf]), "inf in a float64 array"),
    ],
)
def test_non_integral_float_labels(labels: object, shown: str) -> None:
    msg = (
        f"Expected `labels` to hold whole-number class indices, but got {shown}. Cast integral "
        "labels with `.astype(int)` or `.long()`; for (N, L) 0/1 targets pass multilabel=True."
    )
    with pytest.raises(InvalidDtypeError, match=exact(msg)):
        count_labels(labels)


def test_non_numeric_labels() -> None:
    msg = (
        "Expected `labels` to hold integer class indices, but got dtype <U3. Map names to "
        "indices first, e.g. with `numpy.unique(labels, return_inverse=True)` or a pandas "
        "Categorical."
    )
    with pytest.raises(InvalidDtypeError, match=exact(msg)):
        count_labels(["cat", "dog"])


def test_empty_labels_without_num_classes() -> None:
    for labels in ([], np.array([], dtype=np.int64), torch.tensor([], dtype=torch.long)):
        with pytest.raises(InvalidValueError, match=exact(EMPTY)):
            count_labels(labels)


def test_wrong_ndim() -> None:
    with pytest.raises(
        ShapeMismatchError, match=exact(NDIM_AUTO.format("shape (2, 2, 2)", NDIM_FIX_MASKS))
    ):
        count_labels(np.zeros((2, 2, 2), dtype=int))
    scalar = NDIM_AUTO.format("shape ()", "Wrap a single label in a list: [label].")
    with pytest.raises(ShapeMismatchError, match=exact(scalar)):
        count_labels(torch.tensor(3))
    with pytest.raises(
        ShapeMismatchError,
        match=exact(
            "Expected `labels` to have a sample axis, but got shape (). Wrap a single label in a "
            "list: [label]."
        ),
    ):
        count_labels(3, multilabel=False)
    multilabel = (
        "Expected `labels` to be a 0/1 matrix of shape (N, L) when multilabel=True, but got "
        "shape (3,). Reshape the targets to (N, L), or pass multilabel=None for class indices."
    )
    with pytest.raises(ShapeMismatchError, match=exact(multilabel)):
        count_labels([0, 1, 1], multilabel=True)
    with pytest.raises(ShapeMismatchError, match=exact(multilabel)):
        count_multilabel([0, 1, 1])


def test_wrong_ndim_of_dataset_items() -> None:
    data = TensorDataset(torch.zeros(4, 1), torch.zeros(4, 2, 2, dtype=torch.long))
    msg = NDIM_AUTO.format("shape (4, 2, 2)", NDIM_FIX_MASKS)
    with pytest.raises(ShapeMismatchError, match=exact(msg)):
        count_labels(data)

    class Items(Dataset[tuple[int, np.ndarray]]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
            return 0, np.zeros((2, 2), dtype=int)

    msg = NDIM_AUTO.format("dataset items with target shape (2, 2)", NDIM_FIX_MASKS)
    with pytest.raises(ShapeMismatchError, match=exact(msg)):
        count_labels(Items())


def test_batches_that_change_layout() -> None:
    msg = (
        "Expected `labels` to have the same number of dimensions in every batch (index), but got "
        "shape (1, 2). Give every batch the same layout; pass multilabel=False to count class "
        "indices of any shape."
    )
    with pytest.raises(ShapeMismatchError, match=exact(msg)):
        count_labels(iter([np.array([0, 1]), np.array([[0, 1]])]))
    msg = (
        "Expected `labels` to have the same number of labels (2) in every batch, but got shape "
        "(1, 3). Give every target row one entry per label."
    )
    with pytest.raises(ShapeMismatchError, match=exact(msg)):
        count_multilabel(iter([np.array([[0, 1]]), np.array([[0, 1, 1]])]))


def test_dataset_items_of_different_shapes() -> None:
    class Rows(Dataset[tuple[int, np.ndarray]]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
            return 0, np.zeros(i + 2, dtype=int)

    msg = (
        "Expected `labels` dataset items whose targets all have the same shape, but got shapes "
        "[(2,), (3,)]. Give every item a target of the same shape, or pass multilabel=False to "
        "count every element as a class index."
    )
    with pytest.raises(ShapeMismatchError, match=exact(msg)):
        count_labels(Rows())


def test_multilabel_values_other_than_0_and_1() -> None:
    msg = (
        "Expected `labels` to hold only 0 and 1 in a multi-label matrix, but got {}. Threshold "
        "soft targets first (`labels > 0.5`); for class indices pass a 1-D array or "
        "multilabel=False."
    )
    with pytest.raises(InvalidValueError, match=exact(msg.format("0.30000001192092896"))):
        count_multilabel(torch.tensor([[1.0, 0.3]]))
    with pytest.raises(InvalidValueError, match=exact(msg.format("2"))):
        count_labels([[0, 2], [1, 0]])
    with pytest.raises(InvalidDtypeError, match=re.escape("but got dtype <U1.")):
        count_multilabel([["a", "b"]])


def test_multilabel_width_against_num_labels() -> None:
    msg = (
        "Expected `labels` to have num_classes (3) columns, but got shape (1, 2). Pass "
        "num_classes equal to the number of labels L, or None."
    )
    with pytest.raises(ShapeMismatchError, match=exact(msg)):
        count_multilabel([[0, 1]], num_labels=3)


def test_missing_values_in_pandas() -> None:
    msg = (
        "Expected `labels` to have no missing values, but got {} missing. Drop them "
        "(`series.dropna()`) or give them a class of their own."
    )
    with pytest.raises(InvalidValueError, match=exact(msg.format(1))):
        count_labels(pd.Series([1, None, 0]))
    with pytest.raises(InvalidValueError, match=exact(msg.format(2))):
        count_labels(pd.Categorical(["a", None, None]))


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True, "3"])
def test_bad_num_classes(num_classes: object) -> None:
    msg = (
        f"Expected `num_classes` to be a positive integer or None, but got {num_classes!r}. Pass "
        "the number of classes, e.g. num_classes=10."
    )
    with pytest.raises(InvalidValueError, match=exact(msg)):
        count_labels([0, 1], num_classes=num_classes)  # type: ignore[arg-type]


def test_dict_batches_without_a_target_key() -> None:
    msg = (
        "Expected `labels` to be batches with exactly one of the keys 'label', 'labels', "
        "'target', 'targets', 'y', but got a dict with keys 'x', 'cls'. Pass a generator of "
        "targets, e.g. `count_labels(batch['my_key'] for batch in loader)`."
    )
    with pytest.raises(InvalidValueError, match=exact(msg)):
        count_labels(iter([{"x": 0, "cls": torch.tensor([1])}]))


def test_empty_tuple_batches() -> None:
    msg = (
        "Expected `labels` to be batches of (inputs, target) or a target, but got an empty tuple "
        "or list. Pass a generator of targets, e.g. `count_labels(y for _, y in loader)`."
    )
    with pytest.raises(InvalidValueError, match=exact(msg)):
        count_labels(iter([()]))


@pytest.mark.slow  # starts a process
def test_library_import_needs_neither_torch_nor_pandas_nor_sklearn() -> None:
    code = (
        "import sys, weightlab.weights as w; "
        "w.class_weights(w.count_labels([0, 1, 1])); "
        "heavy = ('torch', 'pandas', 'sklearn', 'rich', 'typer'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_id_like_labels_without_num_classes_are_refused():
    from weightlab.errors import InvalidValueError

    message = (
        "Expected `labels` to be class indices below 1,000,000 when num_classes is not given, "
        "but got 4000000123 (the largest label). These look like ids, not class indices: map "
        "them to 0..C-1 (e.g. with sklearn's LabelEncoder), or pass num_classes."
    )
    with pytest.raises(InvalidValueError, match=re.escape(message)):
        count_labels(np.array([3, 4_000_000_123]))
    assert count_labels(np.array([0, 999_999]))[-1] == 1
