"""The flags that choose where stacks train, shared by every command that trains them.

``weightlab study`` (and ``weightlab tune``) take ``--executor``, ``--workers``
and ``--address`` with these types and turn them into an executor with
:func:`build_executor`, so the flags mean the same in every command::

    from weightlab.cli._executor import AddressOption, ExecutorOption, WorkersOption

    def tune_command(executor: ExecutorOption = None, workers: WorkersOption = 1,
                     address: AddressOption = None) -> None:
        ex = build_executor(executor, workers, address)  # errors name the flags
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated

import typer

from weightlab.errors import InvalidValueError, expected, names

if TYPE_CHECKING:
    from weightlab.lab.executors import StackExecutor

__all__ = ["AddressOption", "ExecutorOption", "WorkersOption", "build_executor"]

#: The executors the flag accepts (those of ``weightlab.lab.executors.EXECUTORS``).
EXECUTOR_NAMES = ("serial", "process", "ray")

ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where stacks train: serial (this process), process (--workers spawned "
        "processes) or ray (one Ray task per stack, on a local Ray runtime or the cluster "
        "--address names; needs pip install 'weightlab\\[ray]'). Default: serial for "
        "--workers 1, process for more.",
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        help="Stacks trained at once: processes with --executor process, Ray tasks with "
        "--executor ray (at most one per CPU of the cluster).",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --executor ray, the Ray cluster to join: auto (the cluster this machine "
        "is a node of, or RAY_ADDRESS), HOST:PORT of its head, or ray://HOST:PORT (Ray "
        "Client). Default: start a local Ray runtime for this run. The store stays here.",
    ),
]


def build_executor(name: str | None, workers: int, address: str | None) -> StackExecutor:
    """The executor the flags ask for; a Ray one is connected already (errors name the flags).

    ``name=None`` is ``serial`` for one worker and ``process`` for more (the
    runner's default). A Ray executor joins (or starts) its runtime here, so
    an address that does not answer fails before any training, and a
    ``--workers`` above the cluster's CPUs prints one ``Warning:`` line.

    Raises:
        InvalidValueError: a bad ``--workers``, an unknown ``--executor``,
            ``--address`` without ``--executor ray``, or an address where no
            Ray cluster answers.
        ImportError: ``--executor ray`` without Ray installed.

    Example:
        >>> build_executor(None, 1, None).capacity
        1
        >>> build_executor("serial", 1, "auto")
        Traceback (most recent call last):
        ...
        weightlab.errors.InvalidValueError: Expected `--address` to be given only with ...
    """
    from weightlab.lab.executor_ray import RayCapacityWarning, RayExecutor
    from weightlab.lab.executors import make_executor

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidValueError(
            expected("--workers", "to be an integer >= 1", repr(workers), "Use 1 or more.")
        )
    if name is not None and name not in EXECUTOR_NAMES:
        raise InvalidValueError(
            expected("--executor", f"to be one of {names(EXECUTOR_NAMES)}", repr(name), "Pick one.")
        )
    if address is not None and name != "ray":
        given = f"--address {address}" + (f" with --executor {name}" if name else " alone")
        raise InvalidValueError(
            expected(
                "--address",
                "to be given only with --executor ray",
                given,
                "Add --executor ray, or drop --address.",
            )
        )
    if name != "ray":
        return make_executor(name or ("serial" if workers == 1 else "process"), workers)
    try:
        ex = make_executor("ray", workers, address=address)
    except ImportError:
        raise ImportError(
            "--executor ray needs Ray, which is not installed. Install it with: "
            "pip install 'weightlab[ray]'"
        ) from None
    assert isinstance(ex, RayExecutor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RayCapacityWarning)
        ex.connect(argument="--address")
    for w in caught:
        if issubclass(w.category, RayCapacityWarning):
            typer.echo(f"Warning: {w.message}", err=True)
        else:  # not ours: as if it had not been caught
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ex
