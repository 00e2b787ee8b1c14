"""A tiny real study (real training through the study runner), built once per test process."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import StudySpec, run_study

SPEC = StudySpec(
    data="digits-lt",
    archs=["mlp", "gru"],
    optimizers=["sgd", "adam"],
    weightings=["none", "power"],
    strengths=[0.0, 1.0],
    seeds=[0, 1],
    epochs=1,
    model_params={"mlp": {"hidden": 16, "layers": 1}, "gru": {"hidden": 8}},
)


@functools.cache
def tiny_store_path() -> Path:
    """Path of a SQLite store holding the finished tiny study (24 trials)."""
    path = Path(tempfile.mkdtemp(prefix="weightlab-report-")) / "study.sqlite"
    with SQLiteStore(path) as store:
        # No engine diagnostics here, so the report's own at-initialisation path is exercised.
        run_study(SPEC, store, command=["weightlab", "study", "--epochs", "1"], diagnostics=False)
    return path


@functools.cache
def tiny_context() -> dict:
    """The report context of the tiny study (with diagnostics at initialisation)."""
    from weightlab.report import build_context

    with SQLiteStore(tiny_store_path(), create=False) as store:
        return build_context(store)
