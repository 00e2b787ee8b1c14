"""Stack executors: where a study's stacks train, behind one ``concurrent.futures``-shaped protocol.

A :class:`StackExecutor` is started once with the function that trains a
stack and the data (so an engine that ships data to workers ships it once),
then takes stacks with :meth:`~StackExecutor.submit`, each returning a
:class:`concurrent.futures.Future` of the stack's results. The runner waits on
those futures (``concurrent.futures.wait``) and never asks which executor it
has. A stack that raises is reported through its future's exception, never
lost. ``weightlab.lab.executor_contract`` is the contract suite every
executor passes.

=============  ======================================================================
executor       where stacks train
=============  ======================================================================
``serial``     in this process, one after the other, with this process's threads
``process``    in ``workers`` spawned processes, one stack at a time each
``ray``        one Ray task per stack, on a local Ray runtime or a Ray cluster
               (``weightlab.lab.executor_ray``; ``pip install 'weightlab[ray]'``)
=============  ======================================================================

**Thread policy** (one rule for every executor): a stack trains with
``threads_per_worker(workers)`` intra-op threads, ``os.cpu_count() // workers``
(at least 1), so ``workers`` stacks at once never ask for more threads than
the machine has cores. Measured on a shared 2-core machine
(``benchmarks/study.py --workers-check``, ``docs/benchmarks.md``): 12 MLP
stacks of 32 trials x 30 epochs took 31.7 s in one two-threaded process and
18.8 s in two single-threaded workers (1.7x) while a core was free, but 24.6 s
vs 35.2 s while another job held a core. Each worker also pays ~4 s of
imports, hence the default ``workers=1``.

Example:
    >>> def train(data, configs):
    ...     return [f"{data}:{c}" for c in configs]
    >>> with make_executor("serial") as ex:
    ...     ex.start(train, "d")
    ...     ex.submit(["a", "b"]).result()
    ['d:a', 'd:b']
"""

from __future__ import annotations

import abc
import importlib
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from weightlab.errors import InvalidValueError, expected, names

__all__ = [
    "EXECUTORS",
    "ProcessExecutor",
    "SerialExecutor",
    "StackExecutor",
    "TrainStack",
    "check_workers",
    "make_executor",
    "threads_per_worker",
]

#: ``train(data, configs) -> results``: trains one stack, one result per config, in order.
TrainStack = Callable[[Any, Sequence[Any]], list[Any]]


def check_workers(workers: object) -> int:
    """Return ``workers`` if it is an integer >= 1, else raise naming the fix.

    Raises:
        InvalidValueError: ``workers`` is not a positive integer.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidValueError(
            expected("workers", "to be an integer >= 1", repr(workers), "Use 1 or more.")
        )
    return workers


def threads_per_worker(workers: int) -> int:
    """Intra-op threads of each of ``workers`` concurrent stacks: ``cpu_count // workers``, >= 1.

    Example:
        >>> threads_per_worker(10**6)
        1
    """
    return max(1, (os.cpu_count() or 1) // check_workers(workers))


class StackExecutor(abc.ABC):
    """Trains stacks somewhere and hands back futures of their results.

    The contract (``weightlab.lab.executor_contract``): :meth:`start` once,
    then any number of :meth:`submit`; each future resolves to what
    ``train(data, configs)`` returns for that stack (the same as the serial
    executor's, to float tolerance) or carries the exception it raised;
    :meth:`shutdown` releases the workers (``cancel=True`` cancels what has not
    started). ``capacity`` is how many stacks it trains at once: the runner
    keeps at most that many submitted, so a trial source can choose the next
    stacks from the latest results.
    """

    #: stacks trained at once
    capacity: int = 1

    @abc.abstractmethod
    def start(self, train: TrainStack, data: Any) -> None:
        """Take the training function and the data every stack of this run uses."""

    @abc.abstractmethod
    def submit(self, configs: Sequence[Any]) -> Future[list[Any]]:
        """Train one stack; return the future of its results."""

    def shutdown(self, *, cancel: bool = False) -> None:  # noqa: B027 - optional hook
        """Release the workers; ``cancel=True`` cancels stacks that have not started."""

    def __enter__(self) -> StackExecutor:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.shutdown(cancel=exc_type is not None)


class SerialExecutor(StackExecutor):
    """Trains each stack in this process when it is submitted (the future is already done)."""

    def __init__(self, workers: int = 1) -> None:
        check_workers(workers)
        self._job: tuple[TrainStack, Any] | None = None

    def start(self, train: TrainStack, data: Any) -> None:  # noqa: D102
        self._job = (train, data)

    def submit(self, configs: Sequence[Any]) -> Future[list[Any]]:  # noqa: D102
        if self._job is None:
            raise RuntimeError("call start(train, data) before submit()")
        train, data = self._job
        future: Future[list[Any]] = Future()
        try:
            future.set_result(train(data, configs))  # as given: a tuner sends a StackJob
        except Exception as err:  # the future carries it, as a pool's would
            future.set_exception(err)
        return future


_WORKER_JOB: tuple[TrainStack, Any] | None = None


def _init_worker(threads: int, train: TrainStack, data: Any) -> None:
    """Worker start-up: its share of the threads, and the job's function and data, once."""
    import torch

    global _WORKER_JOB
    torch.set_num_threads(threads)
    _WORKER_JOB = (train, data)


def _train_in_worker(configs: Sequence[Any]) -> list[Any]:
    assert _WORKER_JOB is not None, "worker started without a job"
    train, data = _WORKER_JOB
    return train(data, configs)


class ProcessExecutor(StackExecutor):
    """Trains stacks in ``workers`` spawned processes (``concurrent.futures.ProcessPoolExecutor``).

    Each worker receives the training function and the data once, at start-up,
    and trains with :func:`threads_per_worker` threads. ``train`` and the data
    must be picklable (a module-level function or a frozen dataclass).
    """

    def __init__(self, workers: int = 2) -> None:
        self.capacity = check_workers(workers)
        self._pool: ProcessPoolExecutor | None = None

    def start(self, train: TrainStack, data: Any) -> None:  # noqa: D102
        self.shutdown()
        self._pool = ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads_per_worker(self.capacity), train, data),
        )

    def submit(self, configs: Sequence[Any]) -> Future[list[Any]]:  # noqa: D102
        if self._pool is None:
            raise RuntimeError("call start(train, data) before submit()")
        return self._pool.submit(_train_in_worker, configs)

    def shutdown(self, *, cancel: bool = False) -> None:  # noqa: D102
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None


def _ray_executor(workers: int = 1, **options: Any) -> StackExecutor:
    """``RayExecutor(workers, **options)``, its module (and Ray) imported on first use only.

    The registry names the module instead of importing it, so importing this
    module never imports Ray.

    Raises:
        ImportError: Ray is not installed (naming ``pip install 'weightlab[ray]'``).
    """
    module = importlib.import_module("weightlab.lab.executor_ray")
    executor: StackExecutor = module.RayExecutor(workers, **options)
    return executor


#: Executors by name: ``make_executor(name, workers, **options)``. Only ``ray`` takes options
#: (``address``, ``max_retries``, ...; see :class:`weightlab.lab.executor_ray.RayExecutor`).
EXECUTORS: dict[str, Callable[..., StackExecutor]] = {
    "serial": SerialExecutor,
    "process": ProcessExecutor,
    "ray": _ray_executor,
}
#: The executors that take options beyond ``workers``.
_TAKES_OPTIONS = frozenset({"ray"})


def make_executor(name: str = "serial", workers: int = 1, **options: Any) -> StackExecutor:
    """Build the executor ``name`` for ``workers`` concurrent stacks.

    ``options`` go to executors that take them: ``make_executor("ray", 4,
    address="auto")`` joins the running Ray cluster.

    Raises:
        InvalidValueError: an unknown name, a bad ``workers``, or options for
            an executor that takes none.
        ImportError: ``"ray"`` without Ray installed.

    Example:
        >>> make_executor("serial", 1, address="auto")
        Traceback (most recent call last):
        ...
        weightlab.errors.InvalidValueError: Expected `address` to be given only to the 'ray' ...
    """
    check_workers(workers)
    if name not in EXECUTORS:
        raise InvalidValueError(
            expected("executor", f"to be one of {names(EXECUTORS)}", repr(name), "Pick one.")
        )
    if options and name not in _TAKES_OPTIONS:
        key, value = next(iter(options.items()))
        raise InvalidValueError(
            expected(key, "to be given only to the 'ray' executor",
                     f"{key}={value!r} with the {name!r} executor",
                     "Drop it, or use make_executor('ray', ...).")
        )
    return EXECUTORS[name](workers, **options)
