"""Study weightings: every name resolves, once, to real class weights, a real loss and its head."""

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
    cross_entropy_parts,
    resolve_weighting,
    weighting_model_params,
    weighting_names,
)
from weightlab.losses import LOSSES
from weightlab.weights import SCHEMES, class_weights

COUNTS = np.array([50, 20, 5])


def _cfg(weighting, alpha=None):
    return TrialConfig("digits-lt", "mlp", "adam", weighting, alpha, 0)


def trial_class_weights(config, counts):
    return resolve_weighting(config, counts).class_weight


def test_every_registered_softmax_loss_is_a_lab_weighting_or_excluded_with_a_reason():
    for name in LOSSES.names():
        info = LOSSES.info(name)
        if info.task != "multiclass":
            assert info.lab_excluded, f"{name}: a {info.task} loss must say why the lab skips it"
            assert name not in LOSS_WEIGHTINGS
        elif name in LOSS_WEIGHTINGS:
            assert not info.lab_excluded
        else:
            assert len(info.lab_excluded) > 20, f"{name} is neither a lab weighting nor excluded"
    assert set(LOSS_WEIGHTINGS) == {
        "focal", "class_balanced", "logit_adjusted", "balanced_softmax", "ldam"
    }  # fmt: skip


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
    resolved = resolve_weighting(_cfg(scheme), COUNTS)
    assert resolved.loss is cross_entropy_parts and resolved.loss_name == "cross_entropy"


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
    resolved = resolve_weighting(_cfg(name), COUNTS)
    assert resolved.loss_name == name
    fn = resolved.loss
    w = torch.as_tensor(resolved.class_weight)
    assert torch.equal(w, torch.ones(3, dtype=torch.float64))
    parts = fn(z, y, w)
    torch.testing.assert_close(parts.total, REFERENCES[name](z, y, counts).sum())
    torch.testing.assert_close(parts.normalizer, torch.tensor(12.0, dtype=torch.float64))
    # the same object for the same loss and counts, so a stack computes its slices together
    assert resolve_weighting(_cfg(name), COUNTS).loss is fn


@pytest.mark.parametrize("name", LOSS_WEIGHTINGS)
def test_loss_weightings_with_class_weights_normalise_by_the_applied_weights(name):
    z = torch.randn(12, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    w = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    parts = resolve_weighting(_cfg(name), COUNTS).loss(z, y, w)
    info = LOSSES.info(name)
    per = REFERENCES[name](z, y, torch.as_tensor(COUNTS, dtype=torch.float64))
    torch.testing.assert_close(parts.total, (per * w[y]).sum())
    # class_weight losses divide by the weights that applied; sample-weighted ones by the count
    want = w[y].sum() if info.class_weight == "class_weight" else torch.tensor(12.0).double()
    torch.testing.assert_close(parts.normalizer, want)


def test_cross_entropy_parts_is_the_functional_cross_entropy():
    z = torch.randn(3, 9, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 9))
    w = torch.rand(3, 4, dtype=torch.float64) + 0.1
    parts = cross_entropy_parts(z, y, w)  # a leading slice axis
    for k in range(3):
        ref = WF.cross_entropy(z[k], y[k], class_weight=w[k], reduction="parts")
        torch.testing.assert_close(parts.total[k], ref.total)
        torch.testing.assert_close(parts.normalizer[k], ref.normalizer)
        torch.testing.assert_close(
            parts.mean()[k], F.cross_entropy(z[k], y[k], weight=w[k])
        )


def test_balanced_softmax_with_uniform_counts_is_cross_entropy():
    z = torch.randn(8, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    fn = resolve_weighting(_cfg("balanced_softmax"), [7, 7, 7]).loss
    torch.testing.assert_close(
        fn(z, y, torch.ones(3, dtype=torch.float64)).mean(), F.cross_entropy(z, y)
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
    assert all(
        resolve_weighting(_cfg(w, 0.5 if w == "power" else None), COUNTS).model_params
        == weighting_model_params(w)
        for w in weighting_names()
    )
    spec = StudySpec(archs=["mlp"], optimizers=["sgd"], weightings=["none", "ldam"], seeds=[0],
                     model_params={"mlp": {"hidden": 8}})  # fmt: skip
    none, ldam = spec.trials()
    assert dict(none.model_params) == {"hidden": 8}
    assert dict(ldam.model_params) == {"head": "cosine", "hidden": 8}
    assert none.stack_key != ldam.stack_key  # different heads train in different stacks
    mine = StudySpec(archs=["mlp"], optimizers=["sgd"], weightings=["ldam"], seeds=[0],
                     model_params={"mlp": {"head": "linear"}})  # fmt: skip
    assert dict(mine.trials()[0].model_params) == {"head": "linear"}
