"""A newcomer's architecture: one module registers it, and the whole lab trains it.

This file is the recipe of docs/development.md ("to add an architecture"):
it defines a plain model, registers it, and touches no other file. The lab
stacks it with ``torch.func`` (no hand-batched twin), trains it in a study
next to a built-in one, summarizes it and reports on it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from weightlab.lab.architectures import (
    ARCHITECTURES,
    ArchSpec,
    build_model,
    build_stacked,
    register_architecture,
)
from weightlab.lab.data import load_data
from weightlab.lab.engine import train_single, train_stack
from weightlab.lab.store import MemoryStore
from weightlab.lab.study import StudySpec, run_study, summarize
from weightlab.lab.trial import TrialConfig
from weightlab.report.analysis import analyze


class TanhNet(nn.Module):
    """One tanh hidden layer over flat features: the toy."""

    def __init__(self, in_features: int, num_classes: int, *, width: int = 12) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.hidden(x)))


TOY = ArchSpec(
    "toy",
    lambda shape, num_classes, **size: TanhNet(shape[0], num_classes, **size),
    layout="flat",
    defaults={"width": 12},
    summary="Linear(width) + tanh, then a linear head",
)


@pytest.fixture
def toy():
    register_architecture(TOY)
    yield TOY
    ARCHITECTURES.remove("toy")
    assert "toy" not in ARCHITECTURES


def test_the_toy_builds_and_its_stack_slices_equal_single_models(toy):
    assert ARCHITECTURES.names()[-1] == "toy"
    stacked = build_stacked("toy", (64,), 10, seeds=[3, 4], width=5)
    x = torch.randn(2, 7, 64)
    out = stacked(x)
    out.square().sum().backward()
    for k, seed in enumerate((3, 4)):
        single = build_model("toy", (64,), 10, seed=seed, width=5)
        torch.testing.assert_close(out[k], single(x[k]))
        exported = stacked.export(k, build_model("toy", (64,), 10, seed=0, width=5))
        torch.testing.assert_close(exported(x[k]), single(x[k]))
    with pytest.raises(Exception, match=r"Expected `model_params` to be among 'width' for 'toy'"):
        build_model("toy", (64,), 10, hidden=3)


def test_the_toy_trains_in_a_stack_as_alone(toy):
    data = load_data("digits-lt")
    configs = [TrialConfig("digits-lt", "toy", "adam", "none", None, seed=s, epochs=2)
               for s in (0, 1)]  # fmt: skip
    weights = [[1.0] * 10, [float(c) for c in range(1, 11)]]
    results = train_stack(data, configs, weights, diagnostics=True)
    for k in range(2):
        alone = train_single(data, configs[k], weights[k])
        assert results[k].train_loss == pytest.approx(alone.train_loss, rel=1e-4)
        assert results[k].metrics["balanced_accuracy"] == pytest.approx(
            alone.metrics["balanced_accuracy"], abs=1e-6
        )
    layers = results[0].extra["diagnostics"]["final"]["layers"]
    assert layers == ["hidden", "head"]


def test_a_study_summary_and_report_take_the_toy(toy):
    spec = StudySpec(archs=["mlp", "toy"], optimizers=["adam"], weightings=["none", "focal"],
                     seeds=[0], epochs=1, model_params={"mlp": {"hidden": 8}, "toy": {"width": 6}})
    store = MemoryStore()
    out = run_study(spec, store)
    assert out.ran == 4 and out.failed == 0
    summary = summarize(store.results())
    assert [(c.arch, c.optimizer) for c in summary.cells] == [("mlp", "adam"), ("toy", "adam")]
    report = analyze(store)
    assert report.archs == ["mlp", "toy"]
    assert {p.arch for p in report.gradients} == {"mlp", "toy"}
