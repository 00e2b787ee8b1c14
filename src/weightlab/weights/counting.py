r"""Count labels per class from arrays, tensors, pandas objects, datasets and loaders.

Two kinds of target are counted:

* **class indices** (single-label): ``N`` integers in ``[0, C)``, counted as
  :math:`n_c = |\{i : y_i = c\}|` (what ``numpy.bincount`` does);
* **multi-label indicators**: an ``(N, L)`` matrix of 0/1, counted per label as
  positives :math:`n^+_l = \sum_i y_{il}` and negatives :math:`n^-_l = N - n^+_l`.

Streams (a ``DataLoader``, a ``Dataset``, any iterator of batches) are counted
batch by batch: only the running counts are kept, never the labels.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from weightlab.errors import (
    InvalidDtypeError,
    InvalidValueError,
    ShapeMismatchError,
    TargetOutOfRangeError,
    expected,
    names,
)
from weightlab.weights._arrays import as_numpy, loaded

__all__ = [
    "AUTO_PROGRESS_DELAY_S",
    "MAX_INFERRED_CLASSES",
    "MultilabelCounts",
    "count_labels",
    "count_multilabel",
]

IntArray = npt.NDArray[np.int64]
_Mode = Literal["index", "multilabel"]
_T = TypeVar("_T")

#: With ``progress=None``, a bar appears once counting a stream has taken this long (seconds).
AUTO_PROGRESS_DELAY_S = 2.0
#: Without ``num_classes``, a label this large is refused as an id (``bincount`` would
#: allocate one counter per value up to it).
MAX_INFERRED_CLASSES = 1_000_000
#: Dataset items are gathered in chunks of this many before they are counted.
_ITEM_CHUNK = 8192
#: Keys under which a dict batch (``{"input_ids": ..., "labels": ...}``) holds its target.
_TARGET_KEYS = ("label", "labels", "target", "targets", "y")


@dataclass(frozen=True)
class MultilabelCounts:
    r"""Positives and negatives per label of multi-label 0/1 targets of shape ``(N, L)``.

    Attributes:
        positives: samples with label ``l`` set, :math:`n^+_l = \sum_i y_{il}`, int64 ``(L,)``.
        negatives: samples without it, :math:`n^-_l = N - n^+_l`, int64 ``(L,)``.
        n_samples: ``N``, the number of rows counted.

    Example:
        >>> counts = count_multilabel([[1, 0], [1, 1], [0, 0]])
        >>> counts.positives, counts.negatives, counts.n_samples
        (array([2, 1]), array([1, 2]), 3)
    """

    positives: IntArray
    negatives: IntArray
    n_samples: int


def count_labels(
    labels: object,
    num_classes: int | None = None,
    *,
    multilabel: bool | None = None,
    progress: bool | None = None,
) -> IntArray:
    r"""Count the samples of every class.

    .. math:: n_c = |\{i : y_i = c\}|, \quad c = 0, \dots, C - 1

    For multi-label 0/1 targets of shape ``(N, L)`` the result is the number of
    positives per label, :math:`n^+_l = \sum_i y_{il}`; use
    :func:`count_multilabel` to get the negatives as well (what
    :func:`~weightlab.weights.pos_weight` needs).

    ``labels`` may be:

    * a numpy array, a torch tensor (any device), a python list, a pandas
      ``Series``/``Index``/``DataFrame``, or a pandas ``Categorical`` (or a
      categorical ``Series``), whose codes are counted with one entry per
      category, so ``num_classes`` defaults to the number of categories;
    * a ``torch.utils.data.DataLoader`` or any iterator of batches (a
      generator), counted batch by batch in bounded memory;
    * a ``torch.utils.data.Dataset``, counted item by item.

    A batch or dataset item is a ``(inputs, target, ...)`` tuple or list (the
    target is its second element), a one-element tuple or list, a dict with one
    of the keys ``'label'``, ``'labels'``, ``'target'``, ``'targets'``, ``'y'``,
    or the target alone. For any other layout pass a generator:
    ``count_labels(batch["my_key"] for batch in loader)``.

    How a target is read (``multilabel``):

    * ``None`` (default): a 1-D batch ``(N,)`` holds class indices, a 2-D batch
      ``(N, L)`` holds 0/1 indicators (a dataset item: a scalar or an ``(L,)``
      row); any other shape is an error.
    * ``False``: class indices of any shape; every element is counted (pixels
      of segmentation masks ``(N, H, W)``).
    * ``True``: 0/1 indicators, batches must be 2-D.

    Float targets are accepted when they are whole numbers (``3.0``), and 0/1
    floats as multi-label indicators (the targets of ``BCEWithLogitsLoss``).

    Args:
        labels: the targets, see above.
        num_classes: the number of classes ``C`` (for multi-label: of labels
            ``L``). Default ``None``: the largest label + 1, or the number of
            categories of a pandas ``Categorical``. Give it when the rarest
            classes may be missing, so that they get a count of 0.
        multilabel: how targets are read, see above. Default ``None``.
        progress: show a progress bar on stderr while counting a stream
            (needs ``tqdm``; without it a plain line is printed). ``True``:
            always, ``False``: never, ``None`` (default): only if stderr is a
            terminal and counting takes longer than
            :data:`AUTO_PROGRESS_DELAY_S` seconds. Arrays are counted at once,
            without a bar.

    Returns:
        int64 array of shape ``(C,)`` (or ``(L,)``): the count of each class
        (or the positives of each label).

    Raises:
        TargetOutOfRangeError: if a label is negative, or ``>= num_classes``.
        InvalidDtypeError: if labels are not numbers, or floats with a
            fractional part, ``nan`` or ``inf``.
        InvalidValueError: if ``labels`` is empty and ``num_classes`` is
            ``None``, if multi-label targets hold values other than 0 and 1,
            if a pandas object has missing values, or if ``num_classes`` is
            not a positive integer.
        ShapeMismatchError: if the targets have a shape ``multilabel`` does
            not allow, or batches disagree on it.

    Example:
        >>> count_labels([0, 1, 1, 3])
        array([1, 2, 0, 1])
        >>> count_labels([0, 1, 1], num_classes=5)
        array([1, 2, 0, 0, 0])
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = TensorDataset(torch.randn(6, 2), torch.tensor([0, 0, 0, 1, 2, 2]))
        >>> count_labels(DataLoader(data, batch_size=4))
        array([3, 1, 2])
        >>> count_labels(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))  # multi-label: positives
        array([2, 1])
    """
    return _count(labels, num_classes, multilabel, progress).counts


def count_multilabel(
    labels: object,
    num_labels: int | None = None,
    *,
    progress: bool | None = None,
) -> MultilabelCounts:
    r"""Count positives and negatives per label of multi-label 0/1 targets.

    .. math:: n^+_l = \sum_i y_{il}, \qquad n^-_l = N - n^+_l

    Accepts everything :func:`count_labels` accepts (streams included); the
    targets must be 0/1 indicators of shape ``(N, L)`` (dataset items: ``(L,)``).

    Args:
        labels: the targets.
        num_labels: the number of labels ``L``; checked against the targets'
            second dimension. Default ``None``: taken from the targets.
        progress: as in :func:`count_labels`.

    Returns:
        A :class:`MultilabelCounts` with ``positives``, ``negatives`` and
        ``n_samples``.

    Raises:
        ShapeMismatchError: if the targets are not 2-D, or have another number
            of labels than ``num_labels``.
        InvalidValueError: if a target is not 0 or 1.

    Example:
        >>> import torch
        >>> c = count_multilabel(torch.tensor([[1, 0, 0], [1, 1, 0]]))
        >>> c.positives, c.negatives
        (array([2, 1, 0]), array([0, 1, 2]))
    """
    counter = _count(labels, num_labels, True, progress)
    return MultilabelCounts(
        positives=counter.counts,
        negatives=counter.n_samples - counter.counts,
        n_samples=counter.n_samples,
    )


# --------------------------------------------------------------------------- internals


class _Counter:
    """Running counts of one stream of batches; the batches are not kept."""

    def __init__(self, num_classes: int | None, multilabel: bool | None) -> None:
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.mode: _Mode | None = None
        self.counts: IntArray = np.zeros(num_classes or 0, dtype=np.int64)
        self.n_samples = 0

    def add(self, batch: np.ndarray[Any, Any], item_shape: tuple[int, ...] | None = None) -> None:
        """Count one batch (its first axis is the sample axis)."""
        mode = self._mode_of(batch, item_shape)
        if self.mode is not None and mode != self.mode:
            raise ShapeMismatchError(
                expected(
                    "labels",
                    f"to have the same number of dimensions in every batch ({self.mode})",
                    _received_shape(batch, item_shape),
                    "Give every batch the same layout; pass multilabel=False to count "
                    "class indices of any shape.",
                )
            )
        self.mode = mode
        if mode == "index":
            self._add_indices(batch)
        else:
            self._add_indicators(batch)

    def finish(self) -> _Counter:
        if self.counts.size == 0:
            raise InvalidValueError(
                expected(
                    "num_classes",
                    "to be given when there are no labels",
                    "num_classes=None and 0 labels",
                    "Pass num_classes so the counts have a length.",
                )
            )
        return self

    def _mode_of(self, batch: np.ndarray[Any, Any], item_shape: tuple[int, ...] | None) -> _Mode:
        ndim = batch.ndim
        if self.multilabel is True:
            if ndim == 2:
                return "multilabel"
            expectation = "to be a 0/1 matrix of shape (N, L) when multilabel=True"
            fix = "Reshape the targets to (N, L), or pass multilabel=None for class indices."
        elif self.multilabel is False:
            if ndim >= 1:
                return "index"
            expectation = "to have a sample axis"
            fix = "Wrap a single label in a list: [label]."
        else:
            if ndim == 1:
                return "index"
            if ndim == 2:
                return "multilabel"
            expectation = (
                "to be class indices of shape (N,) or a 0/1 multi-label matrix of shape (N, L)"
            )
            fix = (
                "Pass multilabel=False to count every element as a class index "
                "(segmentation masks)."
                if ndim > 2
                else "Wrap a single label in a list: [label]."
            )
        raise ShapeMismatchError(
            expected("labels", expectation, _received_shape(batch, item_shape), fix)
        )

    def _add_indices(self, batch: np.ndarray[Any, Any]) -> None:
        indices = _class_indices(batch.reshape(-1))
        if indices.size == 0:
            return
        largest = int(indices.max())
        if self.num_classes is not None and largest >= self.num_classes:
            raise TargetOutOfRangeError(
                expected(
                    "labels",
                    f"to be < num_classes ({self.num_classes})",
                    f"{largest} (the largest label)",
                    "Pass a larger num_classes, or num_classes=None to count up to the "
                    "largest label.",
                )
            )
        if self.num_classes is None and largest >= MAX_INFERRED_CLASSES:
            raise InvalidValueError(
                expected(
                    "labels",
                    f"to be class indices below {MAX_INFERRED_CLASSES:,} when num_classes "
                    "is not given",
                    f"{largest} (the largest label)",
                    "These look like ids, not class indices: map them to 0..C-1 (e.g. "
                    "with sklearn's LabelEncoder), or pass num_classes.",
                )
            )
        binned = np.bincount(indices, minlength=self.counts.size)
        if binned.size > self.counts.size:
            binned[: self.counts.size] += self.counts
            self.counts = binned.astype(np.int64, copy=False)
        else:
            self.counts += binned
        self.n_samples += int(indices.size)

    def _add_indicators(self, batch: np.ndarray[Any, Any]) -> None:
        width = batch.shape[1]
        if self.num_classes is not None and width != self.num_classes:
            raise ShapeMismatchError(
                expected(
                    "labels",
                    f"to have num_classes ({self.num_classes}) columns",
                    f"shape {batch.shape}",
                    "Pass num_classes equal to the number of labels L, or None.",
                )
            )
        if self.n_samples > 0 or self.counts.size > 0:
            if width != self.counts.size:
                raise ShapeMismatchError(
                    expected(
                        "labels",
                        f"to have the same number of labels ({self.counts.size}) in every batch",
                        f"shape {batch.shape}",
                        "Give every target row one entry per label.",
                    )
                )
        else:
            self.counts = np.zeros(width, dtype=np.int64)
        self.counts += _indicators(batch).sum(axis=0, dtype=np.int64)
        self.n_samples += int(batch.shape[0])


def _received_shape(batch: np.ndarray[Any, Any], item_shape: tuple[int, ...] | None) -> str:
    if item_shape is not None:
        return f"dataset items with target shape {item_shape}"
    return f"shape {batch.shape}"


def _class_indices(flat: np.ndarray[Any, Any]) -> IntArray:
    """Check 1-D labels are whole numbers >= 0 and return them as int64."""
    if flat.dtype == np.bool_:
        return flat.astype(np.int64)
    if np.issubdtype(flat.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(flat) | (flat != np.floor(flat))
        if bad.any():
            value = float(flat[np.argmax(bad)])
            raise InvalidDtypeError(
                expected(
                    "labels",
                    "to hold whole-number class indices",
                    f"{value!r} in a {flat.dtype} array",
                    "Cast integral labels with `.astype(int)` or `.long()`; for (N, L) 0/1 "
                    "targets pass multilabel=True.",
                )
            )
    elif not np.issubdtype(flat.dtype, np.integer):
        raise InvalidDtypeError(
            expected(
                "labels",
                "to hold integer class indices",
                f"dtype {flat.dtype}",
                "Map names to indices first, e.g. with `numpy.unique(labels, "
                "return_inverse=True)` or a pandas Categorical.",
            )
        )
    if flat.size and flat.min() < 0:
        smallest = flat.min()
        shown = int(smallest) if np.issubdtype(flat.dtype, np.integer) else float(smallest)
        raise TargetOutOfRangeError(
            expected(
                "labels",
                "to be class indices >= 0",
                f"{shown} (the smallest label)",
                "Drop or remap negative labels; filter out an ignore_index such as -100 "
                "before counting.",
            )
        )
    return flat.astype(np.int64, copy=False)


def _indicators(batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Check multi-label targets are 0/1 and return them as bool."""
    if batch.dtype == np.bool_:
        return batch
    if not (np.issubdtype(batch.dtype, np.integer) or np.issubdtype(batch.dtype, np.floating)):
        raise InvalidDtypeError(
            expected(
                "labels",
                "to hold 0/1 numbers in a multi-label matrix",
                f"dtype {batch.dtype}",
                "Encode each label as a 0/1 column, e.g. with "
                "sklearn.preprocessing.MultiLabelBinarizer.",
            )
        )
    positive: np.ndarray[Any, Any] = np.equal(batch, 1)
    bad = ~(positive | (batch == 0))
    if bad.any():
        value = batch[np.unravel_index(np.argmax(bad), batch.shape)].item()
        raise InvalidValueError(
            expected(
                "labels",
                "to hold only 0 and 1 in a multi-label matrix",
                repr(value),
                "Threshold soft targets first (`labels > 0.5`); for class indices pass a "
                "1-D array or multilabel=False.",
            )
        )
    return positive


def _check_num_classes(num_classes: object) -> int | None:
    if num_classes is None:
        return None
    if isinstance(num_classes, (int, np.integer)) and not isinstance(num_classes, bool):
        if num_classes >= 1:
            return int(num_classes)
    raise InvalidValueError(
        expected(
            "num_classes",
            "to be a positive integer or None",
            repr(num_classes),
            "Pass the number of classes, e.g. num_classes=10.",
        )
    )


def _target(batch: object) -> object:
    """The target of one batch or dataset item (see ``count_labels``)."""
    if isinstance(batch, (tuple, list)):
        if len(batch) >= 2:
            return batch[1]
        if len(batch) == 1:
            return batch[0]
    elif isinstance(batch, Mapping):
        keys = [key for key in _TARGET_KEYS if key in batch]
        if len(keys) == 1:
            return batch[keys[0]]
        raise InvalidValueError(
            expected(
                "labels",
                f"to be batches with exactly one of the keys {names(_TARGET_KEYS)}",
                f"a dict with keys {names(batch)}",
                "Pass a generator of targets, e.g. "
                "`count_labels(batch['my_key'] for batch in loader)`.",
            )
        )
    else:
        return batch
    raise InvalidValueError(
        expected(
            "labels",
            "to be batches of (inputs, target) or a target",
            "an empty tuple or list",
            "Pass a generator of targets, e.g. `count_labels(y for _, y in loader)`.",
        )
    )


def _pandas_labels(obj: object) -> tuple[np.ndarray[Any, Any], int | None] | None:
    """Values of a pandas object (codes for categoricals) and its number of categories."""
    pd = loaded("pandas")
    if pd is None:
        return None
    if isinstance(obj, pd.Categorical) or (
        isinstance(obj, (pd.Series, pd.Index)) and isinstance(obj.dtype, pd.CategoricalDtype)
    ):
        categorical = pd.Categorical(obj)
        codes = np.asarray(categorical.codes, dtype=np.int64)
        _check_missing(int((codes < 0).sum()))
        return codes, len(categorical.categories)
    if isinstance(obj, (pd.Series, pd.Index, pd.DataFrame)):
        _check_missing(int(np.asarray(obj.isna()).sum()))
        return obj.to_numpy(), None
    return None


def _check_missing(missing: int) -> None:
    if missing:
        raise InvalidValueError(
            expected(
                "labels",
                "to have no missing values",
                f"{missing} missing",
                "Drop them (`series.dropna()`) or give them a class of their own.",
            )
        )


def _progress(
    items: Iterable[_T], total: int | None, progress: bool | None, unit: str
) -> Iterable[_T]:
    """Wrap a stream in a progress bar on stderr, as ``progress`` asks."""
    if progress is False:
        return items
    if progress is None and not getattr(sys.stderr, "isatty", lambda: False)():
        return items
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        return _ticker(items, total, unit) if progress else items
    delay = 0.0 if progress else AUTO_PROGRESS_DELAY_S
    bar: Iterable[_T] = tqdm(
        items, total=total, unit=unit, desc="counting labels", delay=delay, leave=bool(progress)
    )
    return bar


def _ticker(items: Iterable[_T], total: int | None, unit: str) -> Iterator[_T]:
    """A progress line for when tqdm is not installed."""
    of = f"/{total}" if total is not None else ""
    last = 0.0
    done = 0
    for done, item in enumerate(items, start=1):
        now = time.monotonic()
        if now - last >= 0.5:
            sys.stderr.write(f"\rcounting labels: {done}{of} {unit}")
            sys.stderr.flush()
            last = now
        yield item
    sys.stderr.write(f"\rcounting labels: {done}{of} {unit}\n")
    sys.stderr.flush()


def _length(obj: object) -> int | None:
    try:
        return len(obj)  # type: ignore[arg-type]
    except TypeError:
        return None


def _count(
    labels: object, num_classes: object, multilabel: bool | None, progress: bool | None
) -> _Counter:
    checked = _check_num_classes(num_classes)
    torch = loaded("torch")
    if torch is not None:
        data = torch.utils.data
        if isinstance(labels, data.DataLoader):
            return _count_batches(labels, _length(labels), checked, multilabel, progress)
        if isinstance(labels, data.TensorDataset):
            tensors = labels.tensors
            labels = tensors[1] if len(tensors) >= 2 else tensors[0]
        elif isinstance(labels, data.Dataset):
            return _count_items(labels, checked, multilabel, progress)
    if isinstance(labels, Iterator):
        return _count_batches(labels, None, checked, multilabel, progress)
    from_pandas = _pandas_labels(labels)
    if from_pandas is not None:
        array, categories = from_pandas
        if checked is None:
            checked = categories
    else:
        array = as_numpy(labels)
    counter = _Counter(checked, multilabel)
    counter.add(array)
    return counter.finish()


def _count_batches(
    batches: Iterable[object],
    total: int | None,
    num_classes: int | None,
    multilabel: bool | None,
    progress: bool | None,
) -> _Counter:
    counter = _Counter(num_classes, multilabel)
    for batch in _progress(batches, total, progress, "batches"):
        counter.add(as_numpy(_target(batch)))
    return counter.finish()


def _count_items(
    dataset: object, num_classes: int | None, multilabel: bool | None, progress: bool | None
) -> _Counter:
    total = _length(dataset)
    items: Iterable[object]
    if total is not None:
        items = (dataset[i] for i in range(total))  # type: ignore[index]
    else:
        items = iter(dataset)  # type: ignore[call-overload]
    counter = _Counter(num_classes, multilabel)
    chunk: list[np.ndarray[Any, Any]] = []
    for item in _progress(items, total, progress, "items"):
        chunk.append(as_numpy(_target(item)))
        if len(chunk) == _ITEM_CHUNK:
            _add_items(counter, chunk)
            chunk = []
    if chunk:
        _add_items(counter, chunk)
    return counter.finish()


def _add_items(counter: _Counter, chunk: list[np.ndarray[Any, Any]]) -> None:
    shapes = {item.shape for item in chunk}
    if len(shapes) == 1:
        shape = shapes.pop()
        counter.add(np.stack(chunk), item_shape=shape)
    elif counter.multilabel is False:
        counter.add(np.concatenate([item.reshape(-1) for item in chunk]))
    else:
        raise ShapeMismatchError(
            expected(
                "labels",
                "dataset items whose targets all have the same shape",
                f"shapes {sorted(shapes)}",
                "Give every item a target of the same shape, or pass multilabel=False to "
                "count every element as a class index.",
            )
        )
