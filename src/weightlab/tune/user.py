"""Tuning the weighting of *your* model on *your* data: :func:`tune_model`.

The model comes as a factory, a callable returning a fresh ``nn.Module``
(called with no argument, or with the seed if it takes one; the global RNG is
seeded with it first either way, so a slice's initialisation depends on its
seed alone). It is registered for the run as a lab architecture
(:class:`~weightlab.lab.architectures.ArchSpec`, layout ``"raw"``: inputs as
you give them) and stacked with ``torch.func`` (``stack_module_state``,
``functional_call``, ``vmap``: :class:`~weightlab.lab.stacked.VmapStack`)
when a probe forward and backward pass of two stacked copies works; when it
does not (``nn.LSTM`` has no vmap rule), its trials train one by one with
the plain loop, and every result says which path ran and why
(``extra["engine"]``).

Data: ``(x, y)`` tensors or arrays, a ``Dataset`` of ``(x, y)`` pairs, or a
``DataLoader`` over one; ``y`` holds class indices ``0..C-1``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(300, 4, generator=g)
    >>> y = (x[:, 0] > 1.0).long() + (x[:, 0] > 1.6).long()     # 3 classes, imbalanced
    >>> out = tune_model(lambda: nn.Linear(4, 3), (x[:150], y[:150]), (x[150:225], y[150:225]),
    ...                  (x[225:], y[225:]), trials=4, batch=4, epochs=2, judge_seeds=(1,))
    >>> out.cells[0].trials, out.cells[0].engine
    (4, 'stacked: torch.func vmap')
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlab.errors import InvalidValueError, ShapeMismatchError, expected
from weightlab.lab.architectures import ARCHITECTURES, ArchSpec, register_architecture
from weightlab.lab.data import LabData
from weightlab.lab.executors import StackExecutor
from weightlab.lab.stacked import VmapStack
from weightlab.lab.store import MemoryStore, ResultStore
from weightlab.tune.run import TuneOutcome, TuneSpec, run_tuning
from weightlab.tune.space import SearchSpace

__all__ = ["as_split", "load_factory", "register_user_model", "tune_model", "user_data"]

ModelFactory = Callable[..., nn.Module]
_COUNTER = itertools.count()


def load_factory(target: str) -> ModelFactory:
    """``"path/to/file.py:factory"`` (or ``"package.module:factory"``) -> the callable.

    Raises:
        InvalidValueError: no ``:``, a file or module that cannot be imported,
            or a name that is not a callable in it.

    Example:
        >>> load_factory("torch.nn:Identity")().__class__.__name__
        'Identity'
    """
    import importlib
    import importlib.util

    where, sep, name = str(target).rpartition(":")
    if not sep or not where or not name:
        raise InvalidValueError(
            expected(
                "model",
                "to be 'path/to/file.py:factory' or 'module:factory'",
                repr(target),
                "Name the file (or module) and the function that returns the nn.Module.",
            )
        )
    try:
        if where.endswith(".py") or Path(where).exists():
            path = Path(where)
            if not path.is_file():
                raise FileNotFoundError(f"no file {path}")
            spec = importlib.util.spec_from_file_location(f"weightlab_user_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except Exception as err:
        raise InvalidValueError(
            expected(
                "model",
                "to name an importable file or module",
                f"{where!r} ({type(err).__name__}: {err})",
                "Check the path and that the file runs on its own (python FILE).",
            )
        ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise InvalidValueError(
            expected(
                "model",
                f"to name a callable in {where!r}",
                repr(name),
                "Define a function returning the nn.Module, e.g. def make_model(): ...",
            )
        )
    return factory  # type: ignore[no-any-return]


def _call(factory: ModelFactory, seed: int) -> nn.Module:
    try:
        takes_seed = bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        takes_seed = False
    model = factory(seed) if takes_seed else factory()
    if not isinstance(model, nn.Module):
        raise InvalidValueError(
            expected(
                "model",
                "to return a torch.nn.Module",
                type(model).__name__,
                "Return the model from the factory (not its class or its output).",
            )
        )
    return model


def _tensors(obj: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.data import DataLoader, Dataset

    if isinstance(obj, DataLoader):
        xs, ys = zip(*[(xb, yb) for xb, yb in obj], strict=True) if len(obj) else ((), ())
        if not xs:
            raise InvalidValueError(
                expected(
                    name, "to yield batches", "an empty loader", "Pass the loader of your split."
                )
            )
        return torch.cat([torch.as_tensor(x) for x in xs]), torch.cat(
            [torch.as_tensor(y) for y in ys]
        )
    if isinstance(obj, Dataset) and not isinstance(obj, tuple):
        pairs = [obj[i] for i in range(len(obj))]  # type: ignore[arg-type]
        if not pairs:
            raise InvalidValueError(
                expected(
                    name, "to hold examples", "an empty Dataset", "Pass the Dataset of your split."
                )
            )
        return (
            torch.stack([torch.as_tensor(p[0]) for p in pairs]),
            torch.as_tensor([int(p[1]) for p in pairs]),
        )
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return torch.as_tensor(np.asarray(obj[0])), torch.as_tensor(np.asarray(obj[1]))
    raise InvalidValueError(
        expected(
            name,
            "to be (x, y), a Dataset of (x, y) pairs or a DataLoader",
            type(obj).__name__,
            "Pass e.g. (x_train, y_train) tensors.",
        )
    )


def as_split(obj: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as ``(x float32 (N, ...), y int64 (N,))``, checked.

    Raises:
        InvalidValueError, ShapeMismatchError: not a split, labels that are not
            class indices, or ``x`` and ``y`` of different lengths.

    Example:
        >>> x, y = as_split(([[0.0, 1.0], [1.0, 0.0]], [0, 1]), "train")
        >>> x.dtype, y.tolist()
        (torch.float32, [0, 1])
    """
    x, y = _tensors(obj, name)
    x = x.float()
    if y.dim() != 1 or (y.dtype.is_floating_point and not torch.equal(y, y.round())):
        raise InvalidValueError(
            expected(
                name,
                "to have labels y of shape (N,) holding class indices",
                f"y of shape {tuple(y.shape)}, dtype {y.dtype}",
                "Pass integer class indices 0..C-1.",
            )
        )
    y = y.long()
    if len(x) != len(y):
        raise ShapeMismatchError(
            expected(
                name,
                "to have as many labels as inputs",
                f"{len(x)} inputs, {len(y)} labels",
                "Pass matching x and y.",
            )
        )
    if len(y) and int(y.min()) < 0:
        raise InvalidValueError(
            expected(name, "to have labels >= 0", str(int(y.min())), "Encode classes as 0..C-1.")
        )
    return x, y


def user_data(
    train: Any, val: Any, test: Any | None = None, *, class_names: Sequence[str] | None = None
) -> LabData:
    """The user's splits as :class:`~weightlab.lab.data.LabData` (no test: an empty test split).

    Raises:
        InvalidValueError: bad splits, inputs of different shapes, a class the
            training split lacks, or a wrong number of class names.
    """
    xt, yt = as_split(train, "train")
    xv, yv = as_split(val, "val")
    if test is not None:
        xs, ys = as_split(test, "test")
    else:
        xs, ys = xv[:0], yv[:0]
    shape = tuple(xt.shape[1:])
    for name, x in (("val", xv), ("test", xs)):
        if len(x) and tuple(x.shape[1:]) != shape:
            raise ShapeMismatchError(
                expected(
                    name,
                    f"to have inputs of the training shape {shape}",
                    str(tuple(x.shape[1:])),
                    "Preprocess every split the same way.",
                )
            )
    c = int(max(int(yt.max()), int(yv.max()), int(ys.max()) if len(ys) else 0)) + 1
    names_ = (
        tuple(str(n) for n in class_names) if class_names is not None else tuple(map(str, range(c)))
    )
    if len(names_) < c:
        raise InvalidValueError(
            expected(
                "class_names",
                f"to name all {c} classes",
                f"{len(names_)} names",
                "Pass one name per class index.",
            )
        )
    missing = [names_[i] for i in range(len(names_)) if not (yt == i).any()]
    if missing:
        raise InvalidValueError(
            expected(
                "train",
                "to hold every class",
                f"no example of {', '.join(map(repr, missing))}",
                "Add examples of those classes, or drop them from class_names.",
            )
        )
    return LabData(xt, yt, xv, yv, xs, ys, names_, shape, name="user")


def register_user_model(factory: ModelFactory, data: LabData, name: str | None = None) -> ArchSpec:
    """Register ``factory`` as a lab architecture for ``data``; probe whether it stacks.

    Raises:
        InvalidValueError: the factory does not return an ``nn.Module``.
        ShapeMismatchError: the model's output is not ``(B, C)`` logits for this data.
    """
    model = _call(factory, 0)
    x = data.x_train[:2]
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:
        raise ShapeMismatchError(
            expected(
                "model",
                f"to take inputs of shape (B, {', '.join(map(str, data.input_shape))})",
                f"{type(err).__name__}: {err}",
                "Make the model read the data's example shape.",
            )
        ) from None
    c = data.num_classes
    if not torch.is_tensor(out) or tuple(out.shape) != (len(x), c):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ShapeMismatchError(
            expected(
                "model",
                f"to return logits of shape (B, {c}) ({c} classes)",
                f"{got} for B={len(x)}",
                f"End the model with a layer of {c} outputs (logits, no softmax).",
            )
        )
    why = ""
    try:
        probe = VmapStack([_call(factory, 0), _call(factory, 1)])
        probe(x.unsqueeze(0).expand(2, *x.shape)).sum().backward()
    except Exception as err:
        why = f"torch.func.vmap cannot stack it ({type(err).__name__}: {str(err).splitlines()[0]})"
    label = name or getattr(factory, "__name__", "model")
    arch = f"user:{label}:{next(_COUNTER)}"

    def build(shape: Sequence[int], num_classes: int) -> nn.Module:
        seed = torch.initial_seed()  # build_model seeded the RNG with the trial's seed
        return _call(factory, int(seed))

    return register_architecture(
        ArchSpec(
            arch, build, layout="raw", defaults={}, summary=f"user model {label}", unstackable=why
        )
    )


def tune_model(
    model: ModelFactory | str,
    train: Any,
    val: Any,
    test: Any | None = None,
    *,
    optimizer: str = "adam",
    space: SearchSpace | None = None,
    trials: int = 64,
    batch: int = 16,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float | None = None,
    metric: str | Sequence[str] = "balanced_accuracy",
    sampler: str = "tpe",
    pruner: str = "sha",
    patience: int | None = None,
    judge_seeds: Sequence[int] = (1, 2, 3, 4, 5),
    class_names: Sequence[str] | None = None,
    store: ResultStore | str | Path | None = None,
    executor: StackExecutor | None = None,
    seed: int = 0,
    progress: Callable[..., None] | None = None,
) -> TuneOutcome:
    """Find the weighting for your model: search on ``val``, judge the best on ``test`` once.

    Args:
        model: a factory returning a fresh ``nn.Module`` (``factory()`` or
            ``factory(seed)``), or ``"file.py:factory"``.
        train: the training split (see the module docstring).
        val: the validation split (selection).
        test: the test split (the judgement); without it nothing is judged.
        optimizer: a lab optimizer name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``).
        space: the search space (default :class:`SearchSpace`).
        trials: the budget (trials finished).
        batch: trials per stack (K).
        epochs: the most epochs a trial trains.
        batch_size: mini-batch size.
        lr: the learning rate when the space does not search it.
        sampler: Optuna's sampler by name (:data:`~weightlab.tune.run.SAMPLERS`).
        pruner: the pruner by name (:data:`~weightlab.tune.run.PRUNERS`).
        patience: early stopping of a trial (``None``: off).
        seed: the search trials' seed and the sampler's.
        metric: one validation metric, or several (a Pareto front).
        judge_seeds: seeds the best configuration and ``none``/``balanced`` are retrained on.
        class_names: a name per class index (default ``"0"``, ``"1"``, ...).
        store: a store or a path (``.sqlite``: resumable, with its Optuna journal
            beside it); default in memory.
        executor: where stacks train (default: in this process).
        progress: as :func:`~weightlab.tune.run.run_tuning`'s.

    Returns:
        The :class:`~weightlab.tune.run.TuneOutcome`; ``cells[0].judged[0]``
        is the chosen weighting with its class weights by name, its loss and
        its test gain over ``none`` with a 95 % interval.

    Raises:
        InvalidValueError, ShapeMismatchError: bad data, model, space or
            settings, before any training.

    Example:
        >>> from weightlab.lab.data import load_data
        >>> d = load_data("digits-lt")
        >>> out = tune_model(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
        ...                  (d.x_train, d.y_train), (d.x_val, d.y_val), trials=2, batch=2,
        ...                  epochs=1, space=SearchSpace(families=("none", "power")))
        >>> out.cells[0].trials, out.cells[0].engine
        (2, 'stacked: torch.func vmap')
    """
    from weightlab.lab.stores import open_store

    factory = load_factory(model) if isinstance(model, str) else model
    if not callable(factory):
        raise InvalidValueError(
            expected(
                "model",
                "to be a callable returning an nn.Module, or 'file.py:factory'",
                type(model).__name__,
                "Pass e.g. lambda: MyNet().",
            )
        )
    data = user_data(train, val, test, class_names=class_names)
    seeds = tuple(judge_seeds) if test is not None else ()
    spec_kw: dict[str, Any] = dict(
        optimizers=(optimizer,),
        space=space or SearchSpace(),
        trials=trials,
        batch=batch,
        metrics=(metric,) if isinstance(metric, str) else tuple(metric),
        sampler=sampler,
        pruner=pruner,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
    )
    arch = register_user_model(factory, data)
    try:
        spec = TuneSpec(data="user", archs=(arch.name,), judge_seeds=seeds, **spec_kw)
        path = None
        if store is None:
            target: ResultStore = MemoryStore()
        elif isinstance(store, ResultStore):
            target = store
        else:
            path = Path(store)
            target = open_store(path, create=True)
        return run_tuning(
            spec, target, store_path=path, data=data, executor=executor, progress=progress
        )
    finally:
        ARCHITECTURES.remove(arch.name)
