"""tune_model: the three classifiers of the question this project started from, as user models.

A linear/MLP model, a CNN with Conv2d and MaxPool, an LSTM reading a
sequence: each passed as a factory with its own data, tuned and judged.
Stackable ones run through ``torch.func.vmap``; the LSTM (no vmap rule) one
by one, and the results say so. Each result equals the same trial trained
alone with the plain loop.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from weightlab.errors import InvalidValueError, ShapeMismatchError
from weightlab.lab.architectures import ARCHITECTURES
from weightlab.lab.engine import train_single
from weightlab.lab.store import MemoryStore
from weightlab.lab.weightings import resolve_weighting
from weightlab.tune import SearchSpace, tune_model
from weightlab.tune.user import load_factory, register_user_model, user_data

pytestmark = pytest.mark.usefixtures("one_thread")


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


class LSTMNet(nn.Module):
    """Reads an 8x8 digit as 8 steps of 8 features."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        out, _ = self.lstm(x.reshape(len(x), 8, 8))
        return self.head(out[:, -1])


def _splits(d):
    return ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test))


SMALL = dict(
    trials=6,
    batch=3,
    epochs=3,
    judge_seeds=(1, 2),
    pruner="none",
    space=SearchSpace(families=("none", "power", "focal")),
)


@pytest.mark.parametrize(
    ("factory", "engine"),
    [
        (MLP, "stacked: torch.func vmap"),
        (ConvNet, "stacked: torch.func vmap"),
        (LSTMNet, "one by one: torch.func.vmap cannot stack it"),
    ],
)
def test_the_three_classifiers_tune_as_user_models(digits, factory, engine):
    store = MemoryStore()
    train, val, test = _splits(digits)
    out = tune_model(
        factory,
        train,
        val,
        test,
        optimizer="adam",
        store=store,
        class_names=digits.class_names,
        **SMALL,
    )
    cell = out.cells[0]
    assert cell.trials == 6 and cell.engine.startswith(engine)
    assert cell.judged and cell.judged[0].role == "chosen"
    assert list(cell.judged[0].class_weight) == list(digits.class_names)
    assert not any(n.startswith("user:") for n in ARCHITECTURES.names())  # unregistered after
    # a stacked (or one-by-one) slice equals the same trial trained alone
    res = next(r for r in store.results() if r.extra.get("tune_role") == "search")
    data = user_data(train, val, test, class_names=digits.class_names)
    spec = register_user_model(factory, data)
    try:
        cfg = res.config.__class__.from_dict({**res.config.to_dict(), "arch": spec.name})
        w = resolve_weighting(cfg, data.train_counts)
        alone = train_single(data, cfg, w.class_weight, loss_fn=w.loss, evaluate_test=False)
    finally:
        ARCHITECTURES.remove(spec.name)
    np.testing.assert_allclose(res.val_metric, alone.val_metric, atol=1e-5)
    np.testing.assert_allclose(res.train_loss, alone.train_loss, rtol=1e-4)


def test_ldam_trains_on_a_user_model_without_a_head_option(digits):
    out = tune_model(
        MLP,
        *_splits(digits),
        trials=3,
        batch=3,
        epochs=2,
        judge_seeds=(),
        space=SearchSpace(families=("ldam",)),
    )
    assert out.cells[0].trials == 3 and out.cells[0].failed == 0


def test_datasets_and_loaders_are_accepted(digits):
    train = TensorDataset(digits.x_train, digits.y_train)
    val = DataLoader(TensorDataset(digits.x_val, digits.y_val), batch_size=50)
    out = tune_model(
        lambda: MLP(),
        train,
        val,
        None,
        trials=3,
        batch=3,
        epochs=2,
        space=SearchSpace(families=("none",)),
    )
    assert out.cells[0].trials == 3 and out.cells[0].judged == []  # no test split: nothing judged


def test_a_factory_taking_a_seed_gets_the_trial_seed(digits):
    seen = []

    def make(seed):
        seen.append(seed)
        return MLP()

    tune_model(
        make,
        *_splits(digits),
        trials=2,
        batch=2,
        epochs=1,
        judge_seeds=(3,),
        space=SearchSpace(families=("none", "power")),
    )
    assert 0 in seen and 3 in seen


def test_model_from_a_file(tmp_path, digits):
    f = tmp_path / "mymodel.py"
    f.write_text(
        textwrap.dedent("""
        from torch import nn
        def make_model():
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    """)
    )
    out = tune_model(
        f"{f}:make_model",
        *_splits(digits),
        trials=2,
        batch=2,
        epochs=1,
        judge_seeds=(),
        space=SearchSpace(families=("none", "power")),
    )
    assert out.cells[0].trials == 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "Expected `model` to be 'path/to/file.py:factory' or 'module:factory'"),
        ("/nope/missing.py:make", "Expected `model` to name an importable file or module"),
        ("torch.nn:does_not_exist", "Expected `model` to name a callable in 'torch.nn'"),
    ],
)
def test_a_factory_that_cannot_be_imported_is_refused(target, message):
    with pytest.raises(InvalidValueError) as err:
        load_factory(target)
    assert str(err.value).startswith(message)
    assert any(
        w in str(err.value) for w in ("Name the file", "Check the path", "Define a function")
    )


def test_bad_user_models_and_data_name_the_fix(digits):
    splits = _splits(digits)
    with pytest.raises(InvalidValueError) as err:
        tune_model(lambda: "not a module", *splits, trials=1)
    assert "Expected `model` to return a torch.nn.Module, but got str" in str(err.value)
    with pytest.raises(ShapeMismatchError) as err:
        tune_model(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), *splits, trials=1)
    assert "to return logits of shape (B, 10) (10 classes)" in str(err.value)
    assert "End the model with a layer of 10 outputs" in str(err.value)
    with pytest.raises(ShapeMismatchError) as err:
        tune_model(lambda: nn.Linear(5, 10), *splits, trials=1)
    assert str(err.value).startswith("Expected `model` to take inputs of shape (B, 1, 8, 8)")
    keep = digits.y_val != 9
    with pytest.raises(InvalidValueError) as err:
        tune_model(MLP, splits[0], (digits.x_val[keep], digits.y_val[keep]), splits[2], trials=1)
    assert str(err.value).startswith("Expected `val` to hold every class")
    with pytest.raises(ShapeMismatchError) as err:
        tune_model(MLP, (digits.x_train, digits.y_train[:-1]), splits[1], splits[2], trials=1)
    assert "Expected `train` to have as many labels as inputs" in str(err.value)
    with pytest.raises(InvalidValueError) as err:
        tune_model(MLP, *splits, trials=0)
    assert str(err.value).startswith("Expected `trials` to be an integer >= 1")
    with pytest.raises(InvalidValueError) as err:
        tune_model(MLP, *splits, metric="recall_at_k")
    assert str(err.value).startswith("Expected `metric` to be among")
    assert not any(n.startswith("user:") for n in ARCHITECTURES.names())
