"""The tuner as a trial source: Optuna asks K trials, the lab trains them as one stack, K are told.

:class:`OptunaSource` keeps one Optuna study per (architecture, optimizer)
cell, in the driver. :meth:`~OptunaSource.ask` asks a cell's study for up to
``batch`` trials (Optuna's batch ask-and-tell: ``study.ask()`` K times, each
trial's parameters drawn by :meth:`SearchSpace.suggest`), turns them into
trial configurations and hands them to the runner as one stack (two when
some need another head, as LDAM's cosine head). :meth:`~OptunaSource.tell`
tells each trial its validation value(s), or that it was pruned (with its
per-epoch values) or failed (with the reason, e.g. a diverged loss). The
runner stores every trial before it is told, so a run stopped at any point
loses no finished trial; on a rerun, trials the study still shows running
are marked failed (``interrupted``) and asked again with the same parameters
(``enqueue_trial``), and a trial whose configuration the store already holds
is told from the store without training.

A proposal identical to a trial already trained (a family without
parameters, as ``"none"``, always is) is told the stored value at once: the
budget counts it, nothing is trained twice.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from weightlab.lab.sources import TrialSource
from weightlab.lab.spec import group_stacks
from weightlab.lab.store import ResultStore
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.lab.weightings import weighting_label
from weightlab.tune.space import SearchSpace
from weightlab.tune.trainer import PRUNER_ATTRS, PruneContext, StackJob

__all__ = ["INTERRUPTED", "Cell", "OptunaSource", "objective_values"]

#: User attribute of a trial that a stopped run left running (asked again on resume).
INTERRUPTED = "weightlab:interrupted"
#: User attribute: the trial id of a trial's configuration in the weightlab store.
TRIAL_ID = "weightlab:trial_id"


def objective_values(result: TrialResult, metrics: Sequence[str]) -> list[float] | None:
    """A done trial's validation values of ``metrics`` (at its reported epoch), or ``None``.

    Example:
        >>> from weightlab.lab.trial import TrialConfig
        >>> cfg = TrialConfig("d", "mlp", "sgd", "none", None, 0)
        >>> objective_values(TrialResult(cfg, "done", extra={"val_metrics": {"ece": 0.1}}), ["ece"])
        [0.1]
    """
    found = dict(result.extra.get("val_metrics") or {})
    if not found and result.val_metric and len(metrics) == 1:
        found = {metrics[0]: max(result.val_metric)}  # a trial from before val_metrics
    try:
        return [float(found[m]) for m in metrics]
    except KeyError:
        return None


@dataclass
class Cell:
    """One (architecture, optimizer) cell's Optuna study and its budget.

    Attributes:
        study: the Optuna study (in the driver's storage).
        base: the configuration every trial of the cell starts from (data,
            arch, optimizer, epochs, seed, model options).
        space: the search space.
        budget: trials to finish in this cell (counting earlier runs').
        metrics: the objectives' metric names (validation).
        prune: run the pruner inside stacks (single objective only).
    """

    study: Any
    base: TrialConfig
    space: SearchSpace
    budget: int
    metrics: tuple[str, ...]
    prune: bool = True
    #: draw each parameter from this many values (the grid sampler), else continuously
    grid: int | None = None
    #: trials asked and not yet told, by trial id (a duplicate waits for its twin)
    waiting: dict[str, list[Any]] = field(default_factory=dict)
    queue: deque[list[TrialConfig]] = field(default_factory=deque)
    number: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``"arch/optimizer"`` (a user model by its factory's name)."""
        arch = self.base.arch
        if arch.startswith("user:"):  # user:<factory>:<n>, registered for the run
            arch = arch.split(":")[1]
        return f"{arch}/{self.base.optimizer}"

    def counted(self) -> int:
        """Trials of the budget finished (earlier runs' included) or asked and in flight."""
        import optuna

        states = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL,
        )
        done = sum(
            1
            for t in self.study.get_trials(deepcopy=False, states=states)
            if not t.user_attrs.get(INTERRUPTED)
        )
        return done + sum(len(v) for v in self.waiting.values())


class OptunaSource(TrialSource):
    """Stacks of Optuna's proposals, one cell at a time in turn; see the module docstring.

    Args:
        cells: the cells to tune.
        batch: trials asked per stack (``K``).
        store: the weightlab store (proposals it already holds are told from it).
    """

    def __init__(self, cells: Sequence[Cell], batch: int, store: ResultStore) -> None:
        self.cells = list(cells)
        self.batch = batch
        self.store = store
        self.total = sum(c.budget for c in self.cells)
        self._turn = itertools.cycle(range(len(self.cells)))
        self._owner: dict[str, Cell] = {}
        for cell in self.cells:
            self._resume(cell)

    def _resume(self, cell: Cell) -> None:
        """Trials a stopped run left running: marked interrupted, their parameters asked again."""
        import optuna

        running = cell.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in running:
            optuna.trial.Trial(cell.study, t._trial_id).set_user_attr(INTERRUPTED, True)
            cell.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            if t.params:
                cell.study.enqueue_trial(t.params, skip_if_exists=False)

    # -- asking ------------------------------------------------------------------

    def ask(self) -> list[TrialConfig] | None:  # noqa: D102
        for _ in range(len(self.cells)):
            cell = self.cells[next(self._turn)]
            if cell.queue:
                return cell.queue.popleft()
            while cell.budget - cell.counted() > 0:
                stacks = self._ask_cell(cell)
                if stacks:
                    cell.queue.extend(stacks[1:])
                    return stacks[0]
        return None

    def _ask_cell(self, cell: Cell) -> list[list[TrialConfig]]:
        """Ask up to ``batch`` trials; return the new configurations as stacks."""
        want = min(self.batch, cell.budget - cell.counted())
        fresh: list[TrialConfig] = []
        for _ in range(want):
            trial = cell.study.ask()
            config = cell.space.suggest(trial, cell.grid).apply(cell.base)
            tid = config.trial_id
            trial.set_user_attr(TRIAL_ID, tid)
            trial.set_user_attr("weighting", weighting_label(config))
            if tid in cell.waiting:  # its twin is in flight: told together
                cell.waiting[tid].append(trial)
                continue
            stored = self.store.get(tid)
            if stored is not None:  # trained before (this run or an earlier one)
                self._tell_trial(cell, trial, stored)
                continue
            cell.waiting[tid] = [trial]
            cell.number[tid] = trial.number
            self._owner[tid] = cell
            fresh.append(config)
        return group_stacks(fresh)

    def submission(self, configs: list[TrialConfig]) -> Sequence[TrialConfig]:
        """The stack as a :class:`StackJob`, with the pruner's snapshot when the cell prunes."""
        cell = self._owner.get(configs[0].trial_id)
        if cell is None or not cell.prune:
            return StackJob(tuple(configs))
        numbers = tuple(cell.number[c.trial_id] for c in configs)
        return StackJob(tuple(configs), _snapshot(cell, numbers))

    # -- telling -----------------------------------------------------------------

    def tell(self, results: Sequence[TrialResult]) -> None:  # noqa: D102
        for res in results:
            tid = res.config.trial_id
            cell = self._owner.pop(tid, None)
            if cell is None:
                continue
            for trial in cell.waiting.pop(tid, []):
                self._tell_trial(cell, trial, res)

    def _tell_trial(self, cell: Cell, trial: Any, res: TrialResult) -> None:
        import optuna

        if res.extra.get(PRUNER_ATTRS):
            trial.set_user_attr(PRUNER_ATTRS, res.extra[PRUNER_ATTRS])
        single = len(cell.metrics) == 1
        if single and res.status in ("done", "pruned"):
            for epoch, value in enumerate(res.val_metric, start=1):
                trial.report(float(value), epoch)
        if res.status == "pruned":
            cell.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        values = objective_values(res, cell.metrics) if res.status == "done" else None
        if values is None:
            reason = res.reason or f"no validation value of {', '.join(cell.metrics)}"
            trial.set_user_attr("fail_reason", reason)
            cell.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        cell.study.tell(trial, values[0] if single else values)


def _snapshot(cell: Cell, numbers: tuple[int, ...]) -> PruneContext:
    """The cell study's trials before ``min(numbers)``, for the worker's in-memory copy."""
    import optuna

    first = min(numbers)
    history = []
    for t in cell.study.get_trials(deepcopy=False):
        if t.number >= first:
            break
        finished = t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        if finished and t.intermediate_values:
            history.append(
                optuna.trial.create_trial(
                    state=t.state,
                    value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                    intermediate_values=dict(t.intermediate_values),
                    system_attrs=dict(t.user_attrs.get(PRUNER_ATTRS) or {}),
                )
            )
        else:
            history.append(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    direction = cell.study.direction.name.lower()
    return PruneContext(
        cell.study.pruner, cell.study.study_name, direction, tuple(history), numbers
    )
