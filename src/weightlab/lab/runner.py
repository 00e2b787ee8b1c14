"""Running a study: stacks from a trial source, trained by an executor, stored as they finish.

:func:`run_study` asks a :class:`~weightlab.lab.sources.TrialSource` (default:
the spec's grid, :class:`~weightlab.lab.sources.GridSource`) for stacks,
skips every trial the store already holds, submits the rest to a
:class:`~weightlab.lab.executors.StackExecutor` (serial, or ``workers``
processes) and puts each result in the store as soon as its stack is back,
then tells the source. It never asks which executor it has. A trial whose
training diverges (NaN or infinite loss) is stored as ``"failed"`` with its
reason and the study goes on; a stack whose training raised stops the study
with that error (its trials stay unfinished, so a rerun trains them). Each
stack's trials are claimed in the store first, so two runs on one store share
the work; the main process alone writes this run's results.
"""

from __future__ import annotations

import math
import platform
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from weightlab.errors import WeightlabError
from weightlab.lab.data import LabData, load_data
from weightlab.lab.engine import VAL_METRICS, train_stack
from weightlab.lab.executors import StackExecutor, TrainStack, check_workers, make_executor
from weightlab.lab.metrics import compute_metrics
from weightlab.lab.sources import GridSource, TrialSource
from weightlab.lab.spec import StudySpec
from weightlab.lab.store import Owner, ResultStore
from weightlab.lab.trial import TrialConfig, TrialResult
from weightlab.lab.weightings import resolve_weighting

__all__ = [
    "EngineTrainer",
    "Progress",
    "StudyOutcome",
    "data_summary",
    "run_study",
    "versions",
]


@dataclass(frozen=True)
class Progress:
    """What a progress callback is told after each stored trial (and once at the start).

    Attributes:
        done: trials finished so far, including those found in the store.
        total: trials in the study.
        skipped: trials found finished in the store (not run again).
        failed: trials stored as failed so far (this run and earlier ones).
        result: the trial just stored; ``None`` at the start.
        elapsed: seconds since this run started.
    """

    done: int
    total: int
    skipped: int
    failed: int
    result: TrialResult | None
    elapsed: float


@dataclass(frozen=True)
class StudyOutcome:
    """What :func:`run_study` did: ``ran`` now, ``skipped`` as stored, ``failed`` in all."""

    total: int
    ran: int
    skipped: int
    failed: int
    seconds: float
    trial_ids: tuple[str, ...]


def _non_finite_reason(result: TrialResult) -> str:
    for epoch, v in enumerate(result.train_loss, start=1):
        if not math.isfinite(v):
            return f"non-finite training loss ({v}) at epoch {epoch}"
    if any(not math.isfinite(v) for row in result.test_logits for v in row):
        return "non-finite test logits"
    return ""


def _finish(result: TrialResult, data: Any) -> TrialResult:
    """Turn a diverged 'done' into 'failed', and fill test metrics from the logits if missing."""
    if result.status != "done":
        return result
    reason = _non_finite_reason(result)
    if reason:
        return replace(result, status="failed", reason=reason)
    if not result.metrics and result.test_logits:
        metrics, per_class = compute_metrics(
            np.asarray(result.test_logits), data.y_test, data.train_counts
        )
        return replace(result, metrics=metrics, per_class=per_class)
    return result


def data_summary(data: Any) -> dict[str, Any]:
    """What the store keeps about the data: name, classes, split sizes, training counts."""
    return {
        "name": data.name,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "input_shape": list(data.input_shape),
        "train_counts": [int(c) for c in data.train_counts],
        "n_train": int(data.y_train.shape[0]),
        "n_val": int(data.y_val.shape[0]),
        "n_test": int(data.y_test.shape[0]),
    }


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a study's numbers depend on."""
    import sklearn
    import torch

    import weightlab

    return {
        "python": platform.python_version(),
        "weightlab": weightlab.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class EngineTrainer:
    """The vectorized engine as a :data:`~weightlab.lab.executors.TrainStack` (picklable).

    Resolves each trial's weighting once (:func:`weightlab.lab.weightings.resolve_weighting`:
    its class weights and its loss) and trains the stack with
    :func:`weightlab.lab.engine.train_stack`.

    Attributes:
        metric: the study's metric, tracked per epoch if the engine can (else
            balanced accuracy).
        diagnostics: record gradient diagnostics at initialisation and at the end.
    """

    metric: str = "balanced_accuracy"
    diagnostics: bool = True

    def __call__(self, data: LabData, configs: Sequence[TrialConfig]) -> list[TrialResult]:
        """Train one stack with the engine."""
        resolved = [resolve_weighting(c, data.train_counts) for c in configs]
        return train_stack(
            data,
            configs,
            np.stack([r.class_weight for r in resolved]),
            loss_fn=[r.loss for r in resolved],
            val_metric=self.metric if self.metric in VAL_METRICS else "balanced_accuracy",
            diagnostics=self.diagnostics,
            patience=configs[0].patience,
        )


#: Seconds a run's claim on a trial lasts without a heartbeat (renewed every quarter).
LEASE_SECONDS = 60.0
#: Seconds between looks at trials another run holds.
POLL_SECONDS = 0.5


class _Heartbeat:
    """Renews a run's leases from a background thread; releases them when the run ends."""

    def __init__(self, store: ResultStore, owner: Owner, ttl: float) -> None:
        self.store, self.owner, self.ttl = store, owner, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="weightlab-lease", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.store.renew(self.owner, self.ttl)
            except WeightlabError:  # the main loop meets the same store error and reports it
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.store.release(self.owner)
        except WeightlabError:
            if exc[0] is None:
                raise


def run_study(
    spec: StudySpec,
    store: ResultStore,
    *,
    progress: Callable[[Progress], None] | None = None,
    command: Sequence[str] | None = None,
    workers: int = 1,
    train_stack: TrainStack | None = None,
    diagnostics: bool = True,
    executor: StackExecutor | None = None,
    source: TrialSource | None = None,
    data: LabData | None = None,
) -> StudyOutcome:
    """Run every trial the source hands out that the store does not hold yet, storing each.

    Trials already in the store (done or failed) are skipped; trials marked
    running by a run that was stopped are run again. Each stack's trials are
    claimed (leased to this run in the store, kept by a heartbeat thread),
    trained by the executor, and put one by one (each put is atomic), so
    stopping the process at any time loses no stored trial. Two runs of one
    study on one store share its trials: a trial another live run holds is not
    trained here; this run waits for it at the end, and takes it over if that
    run's lease lapses (its process died, or ``LEASE_SECONDS`` passed without a
    heartbeat).
    At most ``executor.capacity`` stacks are in flight, so a source can choose
    the next ones from the results so far.

    Args:
        spec: the study (its data, and the default grid source).
        store: where results go (and where finished trials are looked up).
        progress: called with a :class:`Progress` once at the start and after
            every stored trial.
        command: the command line that started the study, kept as metadata.
        workers: stacks trained at once (``1``: in this process, one after the
            other; more: in worker processes). Ignored when ``executor`` is given.
        train_stack: trains one stack, ``(data, configs) -> results`` (default:
            :class:`EngineTrainer`, tracking ``spec.metric`` per epoch when it
            is one of the engine's validation metrics). With worker processes
            it must be picklable.
        diagnostics: with the default trainer, record each trial's gradient
            diagnostics at initialisation and at the end of training.
        executor: where stacks train (default: :func:`~weightlab.lab.executors.make_executor`
            ``("serial")`` for one worker, ``("process", workers)`` for more);
            the runner starts it and shuts it down.
        source: where stacks come from (default: ``GridSource(spec)``).
        data: the loaded data (default: ``load_data(spec.data, **spec.data_params)``;
            a user's own tensors come this way).

    Returns:
        A :class:`StudyOutcome` with the counts and the ids of the study's trials.

    Raises:
        InvalidValueError: a bad ``workers``, or data the loader refuses.
    """
    check_workers(workers)
    start = time.perf_counter()
    train = train_stack or EngineTrainer(spec.metric, diagnostics)
    data = data if data is not None else load_data(spec.data, **spec.data_params)
    source = source if source is not None else GridSource(spec)
    planned = source.planned_ids()
    store.put_meta("spec", spec.to_dict())
    store.put_meta("command", list(command) if command is not None else None)
    store.put_meta("versions", versions())
    store.put_meta("data", data_summary(data))

    seen: dict[str, None] = dict.fromkeys(planned or ())
    total = source.total if source.total is not None else len(seen)
    stored: dict[str, str] = {}  # finished trials of the study, this run's and others'
    skipped = done = failed = 0

    def found(known: dict[str, str]) -> bool:
        """Count trials found finished in the store (earlier runs, or a concurrent one)."""
        nonlocal skipped, done, failed
        known = {i: s for i, s in known.items() if i not in stored}
        skipped += len(known)
        done += len(known)
        failed += sum(1 for s in known.values() if s == "failed")
        stored.update(known)
        return bool(known)

    def report(result: TrialResult | None = None) -> None:
        if progress:
            elapsed = time.perf_counter() - start
            progress(Progress(done, max(total, done), skipped, failed, result, elapsed))

    # a planned source's finished trials at once; a source that plans as it goes, per stack
    if planned is not None:
        found(store.statuses(planned))
    if progress:
        progress(Progress(done, total, skipped, failed, None, 0.0))

    def store_stack(todo: list[TrialConfig], results: list[TrialResult]) -> None:
        nonlocal done, failed
        if len(results) != len(todo):
            raise RuntimeError(
                f"the engine returned {len(results)} results for a stack of {len(todo)} trials"
            )
        finished = []
        for cfg, res in zip(todo, results, strict=True):
            if res.config.trial_id != cfg.trial_id:
                raise RuntimeError("the engine returned results out of order")
            res = _finish(res, data)
            store.put(res)
            finished.append(res)
            done += 1
            failed += res.status == "failed"
            report(res)
        source.tell(finished)

    ex = executor if executor is not None else make_executor(
        "serial" if workers == 1 else "process", workers
    )
    owner = Owner.here()
    pending: dict[Future[list[Any]], list[TrialConfig]] = {}
    # trials another live run holds: trained by it, or taken over when its lease lapses
    elsewhere: list[list[TrialConfig]] = []

    def launch(stack: list[TrialConfig]) -> None:
        """Claim the stack's unfinished trials, submit the claimed ones, set the rest aside."""
        todo = [c for c in stack if c.trial_id not in stored]
        mine = store.claim(todo, owner, LEASE_SECONDS) if todo else []
        if mine:
            pending[ex.submit(source.submission(mine))] = mine
        ids = {c.trial_id for c in mine}
        held = [c for c in todo if c.trial_id not in ids]
        if held:
            elsewhere.append(held)

    with _Heartbeat(store, owner, LEASE_SECONDS), ex:
        ex.start(train, data)
        while True:
            while len(pending) < ex.capacity:
                stack = source.ask()
                if stack is None:
                    break
                seen.update(dict.fromkeys(c.trial_id for c in stack))
                if planned is None and found(store.statuses(c.trial_id for c in stack)):
                    report()
                launch(stack)
            if not pending and elsewhere:  # only trials other runs hold are left
                held, elsewhere[:] = list(elsewhere), []
                for configs in held:  # count what they finished, claim what they gave up
                    if found(store.statuses(c.trial_id for c in configs)):
                        report()
                    launch(configs)
                if elsewhere and not pending:
                    time.sleep(POLL_SECONDS)
                continue
            if not pending:  # nothing in flight and nothing handed out: finished
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in [f for f in pending if f in finished]:
                todo = pending.pop(future)
                # a stack that raised stops the study (its trials stay unfinished and
                # their leases are released, so a rerun trains them); the executor
                # cancels what has not started
                store_stack(todo, future.result())
    return StudyOutcome(
        total=max(total, done),
        ran=done - skipped,
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - start,
        trial_ids=tuple(seen),
    )
