"""Tuning on Ray: Optuna stays in the driver, workers only train (with the pruner's snapshot).

A local Ray runtime on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``),
two stacks in flight at a time; pruning happens inside the Ray tasks from the
snapshot each stack carries, and the driver alone writes the store and the
Optuna journal.
"""

from __future__ import annotations

import os

import optuna
import pytest

from weightlab.lab.executor_ray import RayExecutor
from weightlab.lab.stores import open_store
from weightlab.tune import SearchSpace, TuneSpec, run_tuning
from weightlab.tune.run import journal_path


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    old = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=150 * 2**20,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = old


@pytest.mark.slow
@pytest.mark.usefixtures("ray_runtime")
def test_tuning_on_ray_prunes_in_the_workers_and_the_driver_keeps_the_study(tmp_path):
    path = tmp_path / "t.sqlite"
    spec = TuneSpec(
        trials=16,
        batch=4,
        epochs=8,
        judge_seeds=(1, 2),
        space=SearchSpace(families=("none", "power", "focal", "ldam")),
        model_params={"mlp": {"hidden": 16}},
    )
    ex = RayExecutor(workers=2)
    with open_store(path) as store:
        out = run_tuning(spec, store, store_path=path, executor=ex)
        pruned = [r for r in store.results() if r.status == "pruned"]
    cell = out.cells[0]
    # a proposal identical to one in flight is told with it: Optuna may count more pruned
    assert cell.trials == 16 and cell.pruned >= len(pruned) > 0
    assert all(r.reason.startswith("pruned at epoch") for r in pruned)
    assert cell.judged and cell.judged[0].role == "chosen"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal_path(path)))
    )
    study = optuna.load_study(study_name=cell.study_name, storage=storage)
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == cell.pruned
    told = {
        t.user_attrs["weightlab:trial_id"]
        for t in study.trials
        if t.state == optuna.trial.TrialState.PRUNED
    }
    assert told == {r.config.trial_id for r in pruned}
