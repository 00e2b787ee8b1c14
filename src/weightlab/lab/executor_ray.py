"""The Ray executor: each stack is one Ray task, on this machine or on a Ray cluster.

:class:`RayExecutor` implements :class:`~weightlab.lab.executors.StackExecutor`
on `Ray <https://docs.ray.io>`_: :meth:`~RayExecutor.start` puts the training
function and the data in Ray's object store once (``ray.put``) and every task
takes their object refs; :meth:`~RayExecutor.submit` launches one task per
stack and returns a :class:`concurrent.futures.Future`, so the runner's
``concurrent.futures.wait`` loop is the same as for the other executors. The
driver (the process that runs the study) receives the results and alone
writes the store; the workers never see it.

**Where it runs** (``address``): ``None`` starts a local Ray runtime on this
machine (``ray.init(address="local")``, no dashboard) and stops it at
:meth:`~RayExecutor.shutdown`; ``"auto"`` joins the cluster this machine is a
node of (``RAY_ADDRESS``, or the running ``ray start``); ``"HOST:PORT"`` joins
the cluster whose head listens there, and ``"ray://HOST:PORT"`` goes through
Ray Client (which needs ``pip install 'ray[client]'``). A cluster it joined is
left running (shutdown disconnects from it). A process already connected to
Ray (``ray.init`` was called) uses that runtime as it is, whatever ``address``
says, and leaves it running.
Before joining, the address's port is tried with a plain TCP connection
(:data:`CONNECT_TIMEOUT` seconds), because ``ray.init`` retries a dead address
for minutes.

**What a task asks for** (decided once, when the executor connects):
``capacity = min(workers, CPUs of the cluster)`` stacks at once (more
``workers`` than CPUs warns once, :class:`RayCapacityWarning`); each task
requests ``num_cpus = threads`` and trains with that many intra-op threads,
``threads = CPUs of the cluster // capacity``, at least 1 and at most the
CPUs of its largest node: on one machine exactly
:func:`~weightlab.lab.executors.threads_per_worker`. ``num_gpus=1`` per task
when the data's tensors live on a CUDA device (the cluster must have GPUs),
else 0. The CPUs counted are those of the nodes alive when it connects; an
autoscaling cluster's later nodes do not raise ``capacity``.

**Failures**: a worker process that dies while training a stack (killed,
out of memory, its node lost) is retried by Ray, up to :data:`MAX_RETRIES`
more times (``max_retries``). A stack whose worker died on every attempt
resolves, when its items are :class:`~weightlab.lab.trial.TrialConfig`, to
one ``"failed"`` :class:`~weightlab.lab.trial.TrialResult` per trial whose
``reason`` names the crash and the number of attempts, so the study stores
them and goes on (other items get Ray's error as the future's exception). A
Python exception raised by the training function is not retried: the future
carries that exception itself (its type and message; the worker's traceback
as a note), as for every executor. ``shutdown(cancel=True)`` (Ctrl-C)
cancels the tasks still pending or running (``ray.cancel(force=True)``) and
returns at once.

Example:
    >>> RayExecutor(workers=2).capacity  # nothing connects before start()
    2
    >>> RayExecutor(workers=2, address="ray://head:10001").address
    'ray://head:10001'
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError, wait
from typing import Any

from weightlab.errors import InvalidValueError, expected
from weightlab.lab.executors import StackExecutor, TrainStack, check_workers
from weightlab.lab.trial import TrialConfig, TrialResult

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_RETRIES",
    "RAY_HINT",
    "RayCapacityWarning",
    "RayExecutor",
    "import_ray",
    "ray_threads",
]

#: Times Ray runs a stack again after its worker process died (so ``MAX_RETRIES + 1`` attempts).
MAX_RETRIES = 2
#: Seconds the reachability check of an ``address`` waits for a TCP connection.
CONNECT_TIMEOUT = 5.0
#: How to install the executor's dependency.
RAY_HINT = "pip install 'weightlab[ray]'"


class RayCapacityWarning(UserWarning):
    """More ``workers`` were asked for than the Ray cluster has CPUs; fewer run at once."""


def import_ray() -> Any:
    """Return the ``ray`` module, or raise an ``ImportError`` naming the extra that installs it.

    Raises:
        ImportError: Ray is not installed.

    Example:
        >>> import_ray().__name__
        'ray'
    """
    try:
        import ray
    except ImportError:
        raise ImportError(
            f"The ray executor needs Ray, which is not installed. Install it with: {RAY_HINT}"
        ) from None
    return ray


def ray_threads(capacity: int, cpus: int, largest_node: int) -> int:
    """Threads (and CPUs requested) per task: ``cpus // capacity``, within ``[1, largest_node]``.

    Example:
        >>> ray_threads(1, 2, 2), ray_threads(2, 2, 2), ray_threads(4, 64, 16)
        (2, 1, 16)
    """
    return max(1, min(max(1, largest_node), cpus // check_workers(capacity)))


def _stack_task(train: TrainStack, data: Any, configs: list[Any], threads: int) -> list[Any]:
    """What one Ray task runs: the stack, with its share of the threads."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return train(data, configs)


_REMOTE: dict[str, Any] = {}


def _remote_task(ray: Any) -> Any:
    """``_stack_task`` as a Ray remote function (made once per process)."""
    if "task" not in _REMOTE:
        _REMOTE["task"] = ray.remote(_stack_task)
    return _REMOTE["task"]


def _host_port(address: str) -> tuple[str, int] | None:
    """The TCP endpoint behind an address (``None`` for ``auto`` without ``RAY_ADDRESS``)."""
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS", "")
        return _host_port(env) if env and env != "auto" else None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("not HOST:PORT")
    return host.strip("[]"), int(port)


def _on_cuda(data: Any) -> bool:
    x = getattr(data, "x_train", None)
    device = getattr(x, "device", None)
    return getattr(device, "type", "cpu") == "cuda"


class RayExecutor(StackExecutor):
    """Trains each stack as one Ray task (see the module docstring for the policy).

    Args:
        workers: stacks trained at once (capped at the cluster's CPUs).
        address: ``None`` (start a local Ray runtime), ``"auto"``,
            ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` (join a running cluster).
        max_retries: times a stack whose worker died is run again
            (default :data:`MAX_RETRIES`).
        object_store_memory: bytes of object store for a local runtime it
            starts (default: Ray's); ignored when joining a cluster.
        log_to_driver: show the workers' output here (default: it stays in
            Ray's log files, ``/tmp/ray/session_latest/logs``).

    Raises:
        ImportError: Ray is not installed (naming ``pip install 'weightlab[ray]'``).
        InvalidValueError: a bad ``workers``, ``address`` or ``max_retries``.

    Example:
        >>> ex = RayExecutor(workers=3, max_retries=1)
        >>> ex.capacity, ex.max_retries, ex.address is None
        (3, 1, True)
    """

    def __init__(
        self,
        workers: int = 1,
        address: str | None = None,
        *,
        max_retries: int = MAX_RETRIES,
        object_store_memory: int | None = None,
        log_to_driver: bool = False,
    ) -> None:
        self._ray = import_ray()
        self.workers = check_workers(workers)
        self.capacity = self.workers
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise InvalidValueError(
                expected(
                    "address",
                    "to be None, 'auto', 'HOST:PORT' or 'ray://HOST:PORT'",
                    repr(address),
                    "Pass the Ray head's address, or None for a local runtime.",
                )
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidValueError(
                expected(
                    "max_retries",
                    "to be an integer >= 0",
                    repr(max_retries),
                    f"Use 0 (no retry) or more; the default is {MAX_RETRIES}.",
                )
            )
        self.address = address
        self.max_retries = max_retries
        self.threads = 1
        self.gpus = 0.0
        self._cluster_gpus = 0.0
        self._object_store_memory = object_store_memory
        self._log_to_driver = log_to_driver
        self._connected = False
        self._owns_runtime = False
        self._refs: tuple[Any, Any] | None = None
        self._pending: dict[Future[list[Any]], Any] = {}
        self._lock = threading.Lock()
        self._cancelling = threading.Lock()

    # -- connecting -------------------------------------------------------------------------

    def connect(self, *, argument: str = "address") -> None:
        """Join or start the Ray runtime and size the tasks (once; :meth:`start` calls it).

        ``argument`` is the name the error messages give the address (the
        command line passes ``"--address"``).

        Raises:
            InvalidValueError: the address is malformed or no Ray cluster answers there.
        """
        if self._connected:
            return
        ray = self._ray
        if not ray.is_initialized():
            if self.address is None:
                options: dict[str, Any] = {"include_dashboard": False}
                if self._object_store_memory is not None:
                    options["object_store_memory"] = self._object_store_memory
                ray.init(
                    address="local",
                    log_to_driver=self._log_to_driver,
                    logging_level="ERROR",
                    **options,
                )
                self._owns_runtime = True
            else:
                self._join(argument)
                self._owns_runtime = True  # the connection: shutdown() disconnects
        self._connected = True
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 0))
        largest = max(
            (int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")),
            default=cpus,
        )
        if cpus < 1:
            self.shutdown()
            raise InvalidValueError(
                expected(
                    argument,
                    "to be a Ray cluster with at least one CPU",
                    f"{self.address or 'a local runtime'} with {resources.get('CPU', 0)} CPUs",
                    "Add a node with CPUs to the cluster.",
                )
            )
        if self.workers > cpus:
            warnings.warn(
                RayCapacityWarning(
                    f"--workers {self.workers} is more than the Ray cluster's {cpus} CPUs; "
                    f"training {cpus} stacks at once."
                ),
                stacklevel=2,
            )
        self.capacity = min(self.workers, cpus)
        self.threads = ray_threads(self.capacity, cpus, largest)
        self._cluster_gpus = float(resources.get("GPU", 0))

    def _join(self, argument: str) -> None:
        ray, address = self._ray, str(self.address)
        fix = (
            "Start the cluster (`ray start --head`, Ray's cluster launcher or KubeRay) and "
            "pass its head's address: auto on one of its nodes, HOST:PORT (port 6379 by "
            "default) or ray://HOST:10001."
        )
        what = "to be 'auto', HOST:PORT or ray://HOST:PORT of a running Ray cluster"
        try:
            endpoint = _host_port(address)
        except ValueError:
            raise InvalidValueError(expected(argument, what, repr(address), fix)) from None
        if endpoint is not None:
            try:
                socket.create_connection(endpoint, timeout=CONNECT_TIMEOUT).close()
            except OSError as err:
                reason = err.strerror or type(err).__name__
                if isinstance(err, TimeoutError):
                    reason = f"no answer within {CONNECT_TIMEOUT:g} s"
                if address == "auto":
                    reason = f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}: {reason}"
                raise InvalidValueError(
                    expected(argument, what, f"{address!r} ({reason})", fix)
                ) from None
        try:
            ray.init(address=address, log_to_driver=self._log_to_driver, logging_level="ERROR")
        except ConnectionError as err:
            raise InvalidValueError(
                expected(argument, what, f"{address!r} ({str(err).split('.')[0]})", fix)
            ) from None
        except ValueError as err:
            if "ray[client]" not in str(err):
                raise
            raise InvalidValueError(
                expected(
                    argument,
                    "to be reachable with the installed Ray",
                    f"{address!r} (Ray Client, ray://, needs the ray[client] extra)",
                    "Install it with pip install 'ray[client]', or run the study on a "
                    "node of the cluster with --address auto.",
                )
            ) from None

    # -- the protocol -----------------------------------------------------------------------

    def start(self, train: TrainStack, data: Any) -> None:
        """Connect (if not yet), then put ``train`` and ``data`` in the object store once.

        Raises:
            InvalidValueError: the data is on CUDA and the cluster has no GPU.
        """
        self.connect()
        if _on_cuda(data):
            if self._cluster_gpus < 1:
                raise InvalidValueError(
                    expected(
                        "data",
                        "to be on the CPU when the Ray cluster has no GPU",
                        "data on CUDA and a cluster with 0 GPUs",
                        "Move the data to the CPU, or add GPU nodes.",
                    )
                )
            self.gpus = 1.0
        else:
            self.gpus = 0.0
        ray = self._ray
        self._refs = (ray.put(train), ray.put(data))

    def submit(self, configs: Sequence[Any]) -> Future[list[Any]]:
        """Launch one task for the stack; its future resolves as the module docstring says."""
        if self._refs is None:
            raise RuntimeError("call start(train, data) before submit()")
        items = list(configs)
        train_ref, data_ref = self._refs
        task = _remote_task(self._ray).options(
            num_cpus=self.threads, num_gpus=self.gpus, max_retries=self.max_retries
        )
        # the stack as given (a tuner's StackJob carries its pruner); items settle a crash
        ref = task.remote(train_ref, data_ref, configs, self.threads)
        future: Future[list[Any]] = Future()
        with self._lock:
            self._pending[future] = ref
        future.add_done_callback(self._on_cancel)
        ref.future().add_done_callback(lambda raw: self._settle(future, items, raw))
        return future

    def shutdown(self, *, cancel: bool = False) -> None:
        """Wait for (or, with ``cancel=True``, cancel) the tasks; stop a runtime it started.

        A local runtime it started is stopped; a cluster it joined is
        disconnected from (and keeps running); a runtime this process was
        already connected to is left as it was.
        """
        with self._lock:
            pending = list(self._pending)
        if cancel:
            for future in pending:
                self._cancel(future)  # _on_cancel cancels its task
        elif pending:
            wait(pending)
        self._refs = None
        if self._owns_runtime:
            self._ray.shutdown()
            self._owns_runtime = False
            self._connected = False

    # -- futures ----------------------------------------------------------------------------

    def _cancel(self, future: Future[list[Any]]) -> None:
        """Cancel ``future`` and tell its waiters, once, whichever thread gets here first."""
        with self._cancelling:
            if not future.done() and future.cancel():
                future.set_running_or_notify_cancel()

    def _on_cancel(self, future: Future[list[Any]]) -> None:
        with self._lock:
            ref = self._pending.pop(future, None)
        if future.cancelled() and ref is not None:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # the task may have finished, or its runtime be gone
                pass

    def _settle(self, future: Future[list[Any]], items: list[Any], raw: Future[Any]) -> None:
        """Resolve ``future`` from the task's own future ``raw`` (on Ray's callback thread)."""
        try:
            self._settle_from(future, items, raw)
        except BaseException as err:  # never leave the future pending
            self._resolve(future, exception=err)

    def _settle_from(self, future: Future[list[Any]], items: list[Any], raw: Future[Any]) -> None:
        exc = self._ray.exceptions
        try:
            value = raw.result()
        except exc.TaskCancelledError:
            self._cancel(future)
            return
        except exc.RayTaskError as err:  # train raised: hand on its own exception
            cause = err.cause if isinstance(err.cause, Exception) else err
            if cause is not err:
                cause.add_note(f"raised in a Ray worker:\n{err}")
            self._resolve(future, exception=cause)
            return
        except (
            exc.WorkerCrashedError, exc.NodeDiedError, exc.OutOfMemoryError, exc.ObjectLostError,
        ) as err:  # fmt: skip
            attempts = self.max_retries + 1
            reason = (
                f"the Ray worker training this stack died on each of its {attempts} attempts "
                f"({type(err).__name__}: {str(err).strip().splitlines()[0]}); "
                f"max_retries={self.max_retries}"
            )
            if items and all(isinstance(c, TrialConfig) for c in items):
                self._resolve(future, value=[TrialResult(c, "failed", reason) for c in items])
            else:
                err.add_note(reason)
                self._resolve(future, exception=err)
            return
        except Exception as err:  # any other Ray error is the stack's error
            self._resolve(future, exception=err)
            return
        self._resolve(future, value=value)

    def _resolve(
        self,
        future: Future[list[Any]],
        *,
        value: list[Any] | None = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._pending.pop(future, None)
        try:
            if exception is not None:
                future.set_exception(exception)
            else:
                future.set_result(value if value is not None else [])
        except InvalidStateError:  # cancelled meanwhile
            pass
