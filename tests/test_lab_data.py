from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from weightlab.errors import InvalidValueError, ShapeMismatchError
from weightlab.lab.data import load_data, load_synthetic, load_table


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
    with pytest.raises(InvalidValueError, match=r"Expected `params` to be among 'target', "):
        load_data(path, label="nope")  # label= was never released: target= is the name
    with (
        warnings.catch_warnings(),
        pytest.raises(InvalidValueError, match=r"Expected `target` to be a column of t\.csv"),
    ):
        warnings.simplefilter("error")  # no deprecation: target= is the name
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


# -- one reader, one vocabulary (weightlab.lab.files) --------------------------------------


def _same(a, b) -> None:
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, split), getattr(b, split)), split
    assert (a.class_names, a.input_shape, a.name) == (b.class_names, b.input_shape, b.name)


def test_target_names_the_target_column_without_a_deprecation(tmp_path):
    path = tmp_path / "t.csv"
    frame = _frame().rename(columns={"label": "species"})
    frame["code"] = np.arange(120) % 2  # a numeric column that is not the target
    frame.to_csv(path, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new = load_data(path, target="species", features=["a", "b"], seed=1)
    assert new.class_names == ("ant", "bee", "cat") and new.input_shape == (2,)
    assert [str(w.message) for w in caught] == []  # target= is the name, not an old one
    _same(load_data(str(path), target="species", features=["a", "b"], seed=1), new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(load_table(path, target="species", features=["a", "b"], seed=1), new)
    with pytest.raises(InvalidValueError) as err:
        load_data(path, label="species", target="code")
    assert str(err.value) == (
        f"Expected `params` to be among 'target', 'features', 'val_fraction', 'test_fraction', "
        f"'standardize', 'seed' for {str(path)!r}, but got 'label'. Drop or rename them."
    )
    found = tmp_path / "found.csv"  # the target column found by its name: the same data
    frame.rename(columns={"species": "target"}).to_csv(found, index=False)
    _same(load_data(found, features=["a", "b"], seed=1), replace(new, name=str(found)))


def test_unknown_params_list_the_loader_names(tmp_path):
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(path, column="label")
    assert str(err.value) == (
        f"Expected `params` to be among 'target', 'features', 'val_fraction', 'test_fraction', "
        f"'standardize', 'seed' for {str(path)!r}, but got 'column'. Drop or rename them."
    )
    with pytest.raises(TypeError):
        load_table(path, label="label")  # never released


def test_npy_is_labels_alone_and_refused_with_a_reason(tmp_path):
    path = tmp_path / "y.npy"
    np.save(path, np.array([0, 1, 1]))
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value) == (
        "Expected `name_or_path` to be a .csv, .parquet, .pq or .npz file, with features and "
        f"labels, but got {str(path)!r}, an .npy file of labels alone. Save the features with "
        "the labels: np.savez('data.npz', X=X, y=y), or a table with a target column "
        "(`weightlab weights` counts an .npy of labels)."
    )
    with pytest.raises(InvalidValueError, match=r"^Expected `name_or_path` to be one of "):
        load_data(tmp_path / "missing.npy")  # no such file: the usual message


def test_features_checks(tmp_path):
    path = tmp_path / "t.csv"
    frame = _frame()
    frame.to_csv(path, index=False)
    one = load_data(path, features="b")  # one name is one column (not the letters of a name)
    assert one.input_shape == (1,)
    with pytest.raises(InvalidValueError) as err:
        load_data(path, features=["a", "label"])
    assert str(err.value) == (
        "Expected `features` to leave out the target column 'label', but got 'a', 'label'. Drop "
        "'label' from features: a model must not read its labels."
    )
    with pytest.raises(InvalidValueError) as err:
        load_data(path, features=["a", "nope"])
    assert str(err.value) == (
        "Expected `features` to name at least one column of t.csv, but got ['nope']. Pick from "
        "'a', 'b', 'label'."
    )
    frame.loc[5, "a"] = np.inf
    frame.loc[7, "b"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value) == (
        "Expected `features` to have no missing or infinite values, but got 2 in column(s) 'a', "
        "'b' of t.csv. Impute or drop those rows first."
    )
    frame = _frame()
    frame.loc[3, "label"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value) == (
        "Expected `target` to have no missing values, but got 1 missing in column 'label' of "
        "t.csv. Drop or fill them first."
    )


def test_target_messages(tmp_path):
    path = tmp_path / "t.csv"
    _frame().rename(columns={"label": "kind"}).to_csv(path, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value) == (
        "Expected `target` to name the target column of t.csv (its columns: 'a', 'b', 'kind'), "
        "but got none, and no column has a recognised target name ('target', 'label', 'y', "
        "'class'). Pick one with target=COLUMN."
    )
    one = tmp_path / "one.csv"
    pd.DataFrame({"label": ["a", "b"] * 5}).to_csv(one, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(one)
    assert str(err.value) == (
        "Expected `features` to name at least one column of one.csv, but got []. Pick from "
        "'label'."
    )
    rare = tmp_path / "rare.csv"
    frame = _frame()
    frame.loc[0, "label"] = "emu"
    frame.to_csv(rare, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(rare)
    assert str(err.value) == (
        "Expected `target` to have at least 2 rows of every class for a stratified test split, "
        "but got fewer for class index [3]. Add rows of those classes or drop them from the file."
    )
    single = tmp_path / "single.csv"
    pd.DataFrame({"x": range(6), "label": ["cat"] * 6}).to_csv(single, index=False)
    with pytest.raises(InvalidValueError) as err:
        load_data(single)
    assert str(err.value) == (
        "Expected `target` to hold at least two classes in single.csv, but got 1 ('cat'). Check "
        "the labels."
    )


def test_parquet_index_is_not_a_feature(tmp_path):
    path = tmp_path / "t.parquet"
    frame = _frame().iloc[::-1]  # a saved (non-range) index
    frame.to_parquet(path)
    data = load_data(path)
    assert data.input_shape == (2,)
    _same(data, load_data(path, features=["a", "b"]))


def test_table_file_errors(tmp_path):
    with pytest.raises(InvalidValueError) as err:
        load_table(tmp_path / "none.csv")
    assert str(err.value) == (
        f"Expected `path` to be an existing .csv, .parquet or .pq file, but got "
        f"{str(tmp_path / 'none.csv')!r}, which is no such file. Check the path."
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("a,label\n")
    with pytest.raises(InvalidValueError) as err:
        load_data(empty)
    assert str(err.value) == (
        "Expected `path` to hold at least one label, but got none in column 'label' of "
        "empty.csv. Check the file."
    )
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(InvalidValueError, match=r"^Expected `path` to be a readable \.parquet "):
        load_data(broken)


def test_npz_errors(tmp_path):
    path = tmp_path / "d.npz"
    x = np.zeros((6, 2))
    np.savez(path, X=x, y=np.array([0.0, 1.0, np.nan, 0.0, 1.0, 0.0]))
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value) == (
        "Expected `y` to have no missing values, but got 1 NaN in array 'y' of d.npz. Drop or "
        "fill them first."
    )
    x[1, 1] = np.inf
    np.savez(path, X=x, y=np.array([0, 1] * 3))
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value) == (
        "Expected `X` to have no missing or infinite values, but got 1 in array 'X' of d.npz. "
        "Impute or drop those rows."
    )
    np.savez(path, X=np.zeros((6, 2)), y=np.array([0, 1] * 3)[:5])
    with pytest.raises(ShapeMismatchError, match=r"^Expected `y` to be 1-D with one label per "):
        load_data(path)
    np.savez(path, X=np.zeros((0, 2)), y=np.zeros(0))
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value) == (
        "Expected `path` to hold at least one label, but got none in array 'y' of d.npz. Check "
        "the file."
    )
    np.savez(path, X=np.array([["a"]] * 4), y=np.array([0, 1] * 2))
    with pytest.raises(InvalidValueError, match=r"^Expected `X` to be a real numeric array"):
        load_data(path)
    np.savez(path, X=np.zeros((4, 2)), y=np.array([0, 0, 0, 1]))
    with pytest.raises(InvalidValueError) as err:
        load_data(path)
    assert str(err.value).startswith("Expected `y` to have at least 2 rows of every class")
    broken = tmp_path / "broken.npz"
    broken.write_text("no zip")
    with pytest.raises(InvalidValueError, match=r"^Expected `path` to be a readable \.npz file"):
        load_data(broken)


def test_npz_class_names_name_the_sorted_labels(tmp_path):
    path = tmp_path / "d.npz"
    y = np.repeat([7, 3], 50)
    np.savez(path, X=np.zeros((100, 4)), y=y, class_names=np.array(["three", "seven"]))
    assert load_data(path).class_names == ("three", "seven")
    np.savez(path, X=np.zeros((100, 4)), y=y, class_names=np.array(["only one"]))
    assert load_data(path).class_names == ("3", "7")  # not one name per label: ignored
