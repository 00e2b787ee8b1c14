"""Trial sources: where a study's runner gets its next stacks, before or after results arrive.

The runner (:func:`weightlab.lab.runner.run_study`) keeps its executor busy
with stacks it asks a :class:`TrialSource` for, and tells the source each
stack's results as soon as they are stored, so a source can choose the next
trials from the results so far (a tuner does). :class:`GridSource` hands out
a :class:`~weightlab.lab.spec.StudySpec`'s grid, stack by stack, and ignores
what it is told.

The protocol: :meth:`TrialSource.ask` returns the next stack (configs that
share a stack key), or ``None`` when it has nothing to hand out *now*; the
runner finishes when ``ask`` returns ``None`` while no stack is in flight.
Trials the store already holds are not trained again (the runner skips them,
and only trained stacks are told).

Example:
    >>> from weightlab.lab.spec import StudySpec
    >>> source = GridSource(StudySpec(archs=["mlp"], optimizers=["sgd", "adam"],
    ...                               weightings=["none"], seeds=[0, 1]))
    >>> source.total, [len(source.ask()), len(source.ask())], source.ask()
    (4, [2, 2], None)
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from weightlab.lab.spec import StudySpec
from weightlab.lab.trial import TrialConfig, TrialResult

__all__ = ["GridSource", "TrialSource"]


class TrialSource(abc.ABC):
    """Hands out stacks of trials; may hand out more after it is told results.

    Attributes:
        total: how many trials it will hand out in all, if it knows (for progress).
    """

    total: int | None = None

    @abc.abstractmethod
    def ask(self) -> list[TrialConfig] | None:
        """The next stack to train, or ``None`` when no more work is ready now."""

    def tell(self, results: Sequence[TrialResult]) -> None:  # noqa: B027 - optional hook
        """The stored results of a stack this source handed out (default: ignored)."""

    def planned_ids(self) -> tuple[str, ...] | None:
        """The ids of every trial it will hand out, if known in advance (default: not known)."""
        return None

    def submission(self, configs: list[TrialConfig]) -> Sequence[TrialConfig]:
        """What the executor's training function receives for these claimed trials.

        Default: the configs themselves. A tuner wraps them with what its
        workers need besides (a pruner and a snapshot of the study).
        """
        return configs


class GridSource(TrialSource):
    """A study's grid, stack by stack (:meth:`StudySpec.stacks`); results change nothing."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.total = spec.num_trials
        self._stacks = spec.stacks()

    def ask(self) -> list[TrialConfig] | None:  # noqa: D102
        return next(self._stacks, None)

    def planned_ids(self) -> tuple[str, ...]:  # noqa: D102
        return tuple(c.trial_id for c in self.spec.trials())
