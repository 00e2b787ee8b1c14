"""Study weightings: every name maps to real class weights and a real loss."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import weightlab.functional as WF
from weightlab.errors import InvalidValueError
from weightlab.lab.study import StudySpec
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import (
    LOSS_WEIGHTINGS,
    trial_class_weights,
    trial_loss_fn,
    weighting_model_params,
    weighting_names,
)
from weightlab.losses import LOSSES
from weightlab.weights import SCHEMES, class_weights

COUNTS = np.array([50, 20, 5])


def _cfg(weighting, alpha=None):
    return TrialConfig("digits-lt", "mlp", "adam", weighting, alpha, 0)


def test_every_scheme_and_multiclass_loss_is_a_weighting():
    names = weighting_names()
    assert set(SCHEMES.names()) <= set(names)
    assert set(LOSS_WEIGHTINGS) <= set(LOSSES.names())
    assert set(LOSS_WEIGHTINGS) <= set(names)


@pytest.mark.parametrize("scheme", [n for n in SCHEMES.names() if n != "power"])
def test_scheme_weightings_use_the_scheme(scheme):
    np.testing.assert_allclose(
        trial_class_weights(_cfg(scheme), COUNTS), class_weights(COUNTS, scheme)
    )
    assert trial_loss_fn(_cfg(scheme), COUNTS) is None


def test_power_uses_alpha():
    np.testing.assert_allclose(
        trial_class_weights(_cfg("power", 0.5), COUNTS), class_weights(COUNTS, "power", alpha=0.5)
    )


REFERENCES = {
    "focal": lambda z, y, c: WF.focal_loss(z, y, reduction="none"),
    "class_balanced": lambda z, y, c: WF.class_balanced_loss(z, y, c, reduction="none"),
    "logit_adjusted": lambda z, y, c: WF.logit_adjusted_loss(z, y, counts=c, reduction="none"),
    "balanced_softmax": lambda z, y, c: WF.balanced_softmax_loss(z, y, c, reduction="none"),
    "ldam": lambda z, y, c: WF.ldam_loss(z, y, c, reduction="none"),
}


@pytest.mark.parametrize("name", LOSS_WEIGHTINGS)
def test_loss_weightings_are_the_library_losses(name):
    z = torch.randn(12, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    counts = torch.as_tensor(COUNTS, dtype=torch.float64)
    fn = trial_loss_fn(_cfg(name), COUNTS)
    assert fn is not None
    w = torch.as_tensor(trial_class_weights(_cfg(name), COUNTS))
    assert torch.equal(w, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(fn(z, y, w), REFERENCES[name](z, y, counts))


def test_balanced_softmax_with_uniform_counts_is_cross_entropy():
    z = torch.randn(8, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    fn = trial_loss_fn(_cfg("balanced_softmax"), [7, 7, 7])
    torch.testing.assert_close(
        fn(z, y, torch.ones(3, dtype=torch.float64)), F.cross_entropy(z, y, reduction="none")
    )


def test_unknown_weighting_lists_the_valid_ones():
    listed = ", ".join(repr(n) for n in weighting_names())
    message = (
        f"Expected `weightings` to be among {listed}, but got 'focal-ish'. Pick from those names."
    )
    with pytest.raises(InvalidValueError, match=re.escape(message)):
        StudySpec(weightings=["none", "focal-ish"])


def test_ldam_trials_get_the_cosine_head_unless_the_user_picks_one():
    assert weighting_model_params("ldam") == {"head": "cosine"}
    assert all(weighting_model_params(w) == {} for w in weighting_names() if w != "ldam")
    spec = StudySpec(archs=["mlp"], optimizers=["sgd"], weightings=["none", "ldam"], seeds=[0],
                     model_params={"mlp": {"hidden": 8}})  # fmt: skip
    none, ldam = spec.trials()
    assert dict(none.model_params) == {"hidden": 8}
    assert dict(ldam.model_params) == {"head": "cosine", "hidden": 8}
    assert none.stack_key != ldam.stack_key  # different heads train in different stacks
    mine = StudySpec(archs=["mlp"], optimizers=["sgd"], weightings=["ldam"], seeds=[0],
                     model_params={"mlp": {"head": "linear"}})  # fmt: skip
    assert dict(mine.trials()[0].model_params) == {"head": "linear"}
