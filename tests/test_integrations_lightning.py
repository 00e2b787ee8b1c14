"""WeightedLossModule: weights from the datamodule's labels, buffers, checkpoints, recall."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

lightning = pytest.importorskip("lightning")
import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from weightlab.errors import InvalidValueError, UnknownNameError  # noqa: E402
from weightlab.integrations.lightning import WeightedLossModule  # noqa: E402
from weightlab.weights import class_weights, count_labels  # noqa: E402

C = 3
COUNTS = [60, 24, 12]  # 96 samples: 3 batches of 32 per epoch


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    y = y[torch.randperm(len(y), generator=g)]
    centres = torch.randn(C, 8, generator=g) * 2.0
    x = centres[y] + torch.randn(len(y), 8, generator=g)
    return x, y


class LoaderData(pl.LightningDataModule):
    """A datamodule with only the loaders: its labels are counted from train_dataloader()."""

    def setup(self, stage: str) -> None:
        self.x, self.y = make_data()

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=96)


class Data(LoaderData):
    """A datamodule that hands over its training labels at once."""

    train_labels_calls = 0

    def train_labels(self) -> torch.Tensor:
        self.train_labels_calls += 1
        return self.y


class Classifier(WeightedLossModule):
    def __init__(self, loss: str = "cross_entropy", scheme: str | None = "balanced") -> None:
        super().__init__(num_classes=C, loss=loss, class_weight=scheme)
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


def trainer(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "max_steps": 6,
        "accelerator": "cpu",
        "devices": 1,
        "logger": CSVLogger(tmp_path, name="logs"),
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "deterministic": True,
        "log_every_n_steps": 1,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Classifier, pl.Trainer, Path]:
    pl.seed_everything(0, verbose=False)
    tmp_path = tmp_path_factory.mktemp("fit")
    model, data = Classifier(), Data()
    t = trainer(tmp_path)
    t.fit(model, datamodule=data)
    assert data.train_labels_calls == 1
    return model, t, tmp_path


def expected_weights() -> torch.Tensor:
    _, y = make_data()
    return torch.as_tensor(class_weights(count_labels(y), "balanced"), dtype=torch.float32)


def test_weights_are_class_weights_of_the_training_labels(fitted: Any) -> None:
    model, _, _ = fitted
    assert model.class_counts.tolist() == COUNTS
    assert model.criterion is not None
    torch.testing.assert_close(model.criterion.class_weight, expected_weights())


def test_weights_are_buffers_in_state_dict(fitted: Any) -> None:
    model, _, _ = fitted
    state = model.state_dict()
    assert "criterion.class_weight" in state and "class_counts" in state
    names = {name for name, _ in model.named_buffers()}
    assert {"criterion.class_weight", "class_counts"} <= names
    assert "criterion.class_weight" not in dict(model.named_parameters())


def test_per_class_recall_was_logged(fitted: Any) -> None:
    _, t, tmp_path = fitted
    for split in ("train", "val"):
        for c in range(C):
            value = float(t.logged_metrics[f"{split}_recall_class_{c}"])
            assert 0.0 <= value <= 1.0
    (metrics,) = tmp_path.glob("logs/version_*/metrics.csv")
    with metrics.open() as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("train_recall_class_2")]
    assert len(logged) == 2  # one row per epoch: 6 steps of 3 per epoch
    assert all(r.get("val_recall_class_0") for r in rows if r.get("val_loss"))


def test_checkpoint_save_and_load(fitted: Any, tmp_path: Path) -> None:
    model, t, _ = fitted
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    loaded = Classifier.load_from_checkpoint(path)
    assert loaded.criterion is not None
    torch.testing.assert_close(loaded.criterion.class_weight, model.criterion.class_weight)
    assert loaded.class_counts.tolist() == COUNTS
    x, _ = make_data()
    torch.testing.assert_close(loaded(x), model(x))


def test_resume_from_checkpoint_keeps_the_weights(fitted: Any, tmp_path: Path) -> None:
    _, t, _ = fitted
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    model, data = Classifier(), Data()
    again = trainer(tmp_path, max_steps=9, logger=False)
    again.fit(model, datamodule=data, ckpt_path=path)
    assert again.global_step == 9
    assert model.criterion is not None
    torch.testing.assert_close(model.criterion.class_weight, expected_weights())


def test_buffers_move_with_to_dtype() -> None:
    model = Classifier()
    model.set_class_counts(COUNTS)
    model.to(torch.float64)
    assert model.criterion is not None
    assert model.criterion.class_weight.dtype == torch.float64
    assert model.class_counts.dtype == torch.int64
    torch.testing.assert_close(model.criterion.class_weight, expected_weights().double())
    x, y = make_data()
    assert model.compute_loss(model(x.double()), y).dtype == torch.float64


def test_counts_from_the_train_dataloader_without_train_labels(tmp_path: Path) -> None:
    model, data = Classifier(loss="focal"), LoaderData()
    trainer(tmp_path, max_steps=1, logger=False, limit_val_batches=0).fit(model, datamodule=data)
    assert model.class_counts.tolist() == COUNTS
    assert model.criterion is not None
    torch.testing.assert_close(model.criterion.class_weight, expected_weights())


def test_counts_based_loss_gets_the_counts() -> None:
    model = Classifier(loss="logit_adjusted", scheme=None)
    model.set_class_counts(np.array(COUNTS))
    x, y = make_data()
    logits = model(x)
    from weightlab.losses import LogitAdjustedLoss

    ref = LogitAdjustedLoss(counts=torch.tensor(COUNTS, dtype=torch.float32))
    torch.testing.assert_close(model.compute_loss(logits, y), ref(logits, y))


def test_without_datamodule_message(tmp_path: Path) -> None:
    x, y = make_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    with pytest.raises(InvalidValueError) as info:
        trainer(tmp_path, max_steps=1, logger=False).fit(Classifier(), train_dataloaders=loader)
    assert str(info.value) == (
        "Expected `trainer.fit` to get a datamodule (with train_labels() or "
        "train_dataloader()) so that the class weights come from its training labels, but "
        "got no datamodule. Pass datamodule=..., or call "
        "model.set_class_counts(count_labels(y)) before fit."
    )


def test_set_counts_before_fit_needs_no_datamodule(tmp_path: Path) -> None:
    x, y = make_data()
    model = Classifier()
    model.set_class_counts(count_labels(y))
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    trainer(tmp_path, max_steps=2, logger=False).fit(model, train_dataloaders=loader)
    assert model.criterion is not None
    torch.testing.assert_close(model.criterion.class_weight, expected_weights())


def test_multilabel_loss_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        Classifier(loss="asymmetric")
    assert str(info.value).startswith(
        "Expected `loss` to be a multiclass loss (class-index targets, per-class recall), "
        "but got 'asymmetric', a multilabel loss. Pick one of 'class_balanced', "
        "'cross_entropy', "
    )


def test_class_weight_with_a_sample_weighted_loss_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        Classifier(loss="class_balanced")
    assert str(info.value) == (
        "Expected `class_weight` to be None with loss='class_balanced', but got 'balanced'. "
        "That loss weights the classes from the counts itself; pass class_weight=None."
    )


def test_unknown_names() -> None:
    with pytest.raises(UnknownNameError):
        Classifier(loss="nope")
    with pytest.raises(UnknownNameError):
        Classifier(scheme="nope")


def test_wrong_number_of_counts_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        Classifier().set_class_counts([1, 2])
    assert str(info.value) == (
        "Expected `counts` to have one count per class, shape (3,), but got shape (2,). "
        "Pass count_labels(train_labels, num_classes) of the training split."
    )


@pytest.mark.slow
def test_import_without_lightning_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['lightning'] = None; sys.modules['lightning.pytorch'] = None\n"
        "try:\n"
        "    import weightlab.integrations.lightning\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "import weightlab.integrations.keras\n"
        "print('keras ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.splitlines() == [
        "weightlab.integrations.lightning needs PyTorch Lightning: "
        "pip install 'weightlab[lightning]'",
        "keras ok",
    ]


def test_a_class_without_samples() -> None:
    from weightlab.errors import ZeroCountError

    with pytest.raises(ZeroCountError, match="0 for classes"):
        Classifier().set_class_counts([5, 0, 3])

    class ZeroAllowed(Classifier):
        def __init__(self) -> None:
            WeightedLossModule.__init__(
                self, num_classes=C, class_weight_params={"zero_count": "zero"}
            )
            self.net = nn.Linear(8, C)

    model = ZeroAllowed()
    model.set_class_counts([5, 0, 3])
    assert model.criterion is not None
    assert model.criterion.class_weight[1] == 0
