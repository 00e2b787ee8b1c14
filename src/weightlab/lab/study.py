"""A study, end to end: the public names of the spec, runner and summary modules in one place.

Each job lives in its own module: the grid and its presets
(:mod:`weightlab.lab.spec`), running it resumably through an executor
(:mod:`weightlab.lab.runner`), and what the results say
(:mod:`weightlab.lab.summary`). This module only gathers their public names
for ``from weightlab.lab.study import ...``.
"""

from weightlab.lab.runner import EngineTrainer, Progress, StudyOutcome, run_study
from weightlab.lab.spec import PRESETS, StudySpec, group_stacks
from weightlab.lab.summary import CellSummary, Summary, WeightingStats, summarize
from weightlab.lab.weightings import resolve_weighting, weighting_label

__all__ = [
    "PRESETS",
    "CellSummary",
    "EngineTrainer",
    "Progress",
    "StudyOutcome",
    "StudySpec",
    "Summary",
    "WeightingStats",
    "group_stacks",
    "resolve_weighting",
    "run_study",
    "summarize",
    "weighting_label",
]
