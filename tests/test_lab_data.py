from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from weightlab.errors import InvalidValueError, ShapeMismatchError
from weightlab.lab.data import load_data, load_synthetic


def test_digits_layouts_share_examples():
    data = load_data("digits-lt", imbalance_ratio=10)
    assert data.input_shape == (1, 8, 8)
    flat = data.inputs("mlp").x_train
    img = data.inputs("cnn").x_train
    seq = data.inputs("gru").x_train
    assert flat.shape == (403, 64) and img.shape == (403, 1, 8, 8) and seq.shape == (403, 8, 8)
    assert torch.equal(flat, img.reshape(403, -1)) and torch.equal(seq[:, 2], img[:, 0, 2])
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.y_val.bincount().tolist() == [20] * 10
    assert data.y_test.bincount().tolist() == [50] * 10


def test_synthetic_profile_noise_and_balance():
    clean = load_synthetic(n_classes=4, n_features=6, imbalance_ratio=8, head=80, seed=1)
    assert clean.train_counts.tolist() == [80, 40, 20, 10]
    assert clean.y_test.bincount().tolist() == [100] * 4
    assert clean.arch_shape("mlp") == (6,)
    noisy = load_synthetic(
        n_classes=4, n_features=6, imbalance_ratio=8, head=80, seed=1, label_noise=0.5
    )
    assert torch.equal(noisy.x_train, clean.x_train)
    flipped = (noisy.y_train != clean.y_train).float().mean().item()
    assert 0.2 < flipped < 0.55  # half replaced, a quarter of those by the same class
    assert torch.equal(noisy.y_test, clean.y_test)
    easy = load_synthetic(class_sep=3.0, seed=2)
    assert easy.num_classes == 5 and easy.x_train.shape[1] == 20


def test_synthetic_is_reproducible():
    a, b = load_synthetic(seed=5), load_synthetic(seed=5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)


def test_tabular_data_is_not_image_shaped():
    with pytest.raises(InvalidValueError) as err:
        load_synthetic(n_features=5).arch_shape("cnn")
    assert str(err.value) == (
        "Expected `input_shape` to be an image shape (C, H, W) or (H, W) for arch 'cnn', "
        "but got (5,). Use arch='mlp' for tabular data, or save an .npz with a matching "
        "input_shape."
    )


def _frame(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.array(["cat"] * 70 + ["ant"] * 30 + ["bee"] * 20)[:rows]
    return pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "label": labels})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_string_labels_sorted_and_stratified(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    frame = _frame()
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    data = load_data(str(path), seed=3)
    assert data.class_names == ("ant", "bee", "cat")
    assert data.input_shape == (2,)
    total = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert total == 120 and len(data.y_test) == 24
    assert data.y_test.bincount().tolist() == [6, 4, 14]  # stratified
    assert abs(data.x_train.mean().item()) < 1e-5  # standardised on training rows


def test_table_errors(tmp_path):
    path = tmp_path / "t.csv"
    frame = _frame()
    frame["color"] = "red"
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    message = str(err.value)
    assert message.startswith(
        "Expected `features` to be numeric columns, but got non-numeric column(s) 'color' (dtype "
    )
    assert message.endswith(
        "). Encode them as numbers (e.g. one-hot) or leave them out with features=[...]."
    )
    assert load_data(path, features=["a", "b"]).num_classes == 3
    with pytest.raises(InvalidValueError, match=r"Expected `target` to be a column of t\.csv"):
        load_data(path, target="nope")
    with pytest.raises(InvalidValueError, match="Expected `params` to be among"):
        load_data(path, imbalance_ratio=3)


def test_npz_declared_shape(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((100, 16)).astype(np.float32)
    y = np.repeat([3, 7], 50)
    path = tmp_path / "d.npz"
    np.savez(path, X=x, y=y, input_shape=np.array([1, 4, 4]))
    data = load_data(path)
    assert data.input_shape == (1, 4, 4) and data.class_names == ("3", "7")
    assert data.inputs("cnn").x_train.shape[1:] == (1, 4, 4)
    assert data.inputs("lstm").x_train.shape[1:] == (4, 4)
    assert load_data(path, input_shape=(16,)).arch_shape("mlp") == (16,)
    with pytest.raises(ShapeMismatchError) as err:
        load_data(path, input_shape=(3, 3))
    assert str(err.value) == (
        "Expected `input_shape` to hold the 16 values of one row of X, but got (3, 3). "
        "Declare the shape of one example, e.g. (1, 8, 8) or (8, 8)."
    )
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=x)
    with pytest.raises(InvalidValueError, match=r"to be an \.npz with arrays 'X' and 'y'"):
        load_data(bad)


def test_unknown_name():
    with pytest.raises(InvalidValueError) as err:
        load_data("mnist")
    assert str(err.value).startswith("Expected `name_or_path` to be one of 'digits-lt', ")
    with pytest.raises(InvalidValueError, match=r"Expected `label_noise` to be a number in \[0.0"):
        load_synthetic(label_noise=2)
