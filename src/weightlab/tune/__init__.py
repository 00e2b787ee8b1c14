"""Tuning the weighting as the hyperparameter it is: Optuna proposes, the lab trains K at a time.

* :mod:`weightlab.tune.space`: :class:`SearchSpace`, the weightings and their
  parameter ranges, from the scheme and loss registries;
* :mod:`weightlab.tune.source`: :class:`OptunaSource`, Optuna's batch
  ask-and-tell as the lab runner's trial source;
* :mod:`weightlab.tune.trainer`: what a worker runs, the pruner inside a stack;
* :mod:`weightlab.tune.run`: :func:`run_tuning` (search on validation, judge on
  test) and :class:`TuneSpec`;
* :mod:`weightlab.tune.user`: :func:`tune_model`, for your own model and data.

Needs Optuna (``pip install 'weightlab[tune]'``), imported when a tuning runs.
"""

from weightlab.tune.run import PRUNERS, SAMPLERS, TuneOutcome, TuneSpec, run_tuning
from weightlab.tune.space import SearchSpace, default_families
from weightlab.tune.user import tune_model

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SearchSpace",
    "TuneOutcome",
    "TuneSpec",
    "default_families",
    "run_tuning",
    "tune_model",
]
