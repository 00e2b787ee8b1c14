"""Keras-style class_weight: weights, sklearn's "balanced", Keras's reduction, messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight

from weightlab.errors import InvalidValueError, InvalidWeightError, ZeroCountError
from weightlab.functional import cross_entropy, focal_loss
from weightlab.integrations.keras import (
    KERAS_NORMALIZE,
    keras_class_weight,
    keras_sample_weight,
)
from weightlab.losses import CrossEntropyLoss


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.choice(4, size=200, p=[0.7, 0.2, 0.07, 0.03])


def test_dict_gives_class_and_sample_weights() -> None:
    y = torch.tensor([0, 1, 1, 0, 0])
    assert torch.equal(keras_class_weight({0: 1.0, 1: 10.0}), torch.tensor([1.0, 10.0]))
    assert torch.equal(
        keras_sample_weight({0: 1.0, 1: 10.0}, y), torch.tensor([1.0, 10.0, 10.0, 1.0, 1.0])
    )


def test_dict_with_numpy_keys_and_num_classes() -> None:
    w = keras_class_weight({np.int64(1): 2.0, 0: 0.5}, num_classes=2, dtype=torch.float64)
    assert w.dtype == torch.float64
    assert w.tolist() == [0.5, 2.0]


def test_default_fills_missing_classes_as_keras_does() -> None:
    # Keras 3: class_weight.get(int(y[i]), 1.0)
    w = keras_class_weight({2: 5.0}, num_classes=4, default=1.0)
    assert w.tolist() == [1.0, 1.0, 5.0, 1.0]
    s = keras_sample_weight({2: 5.0}, [0, 2, 3], default=1.0)
    assert s.tolist() == [1.0, 5.0, 1.0]


def test_labels_set_the_number_of_classes() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_sample_weight({0: 1.0, 1: 2.0}, [0, 1, 2])
    assert str(info.value) == (
        "Expected `class_weight` to have a weight for every class 0..2, but got none for "
        "class 2. Add them, or pass default=1.0 (what Keras's fit gives a class it is not told)."
    )


def test_balanced_equals_sklearn(labels: np.ndarray) -> None:
    ours = keras_class_weight("balanced", labels, dtype=torch.float64)
    ref = compute_class_weight("balanced", classes=np.unique(labels), y=labels)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12)
    sample = keras_sample_weight("balanced", torch.as_tensor(labels), dtype=torch.float64)
    np.testing.assert_allclose(
        sample.numpy(), compute_sample_weight("balanced", labels), rtol=1e-12
    )
    # sklearn's identity: the weighted number of samples is the number of samples
    assert float(sample.sum()) == pytest.approx(len(labels))


def test_balanced_sample_weight_from_a_list() -> None:
    y = [0, 0, 0, 1, 2, 2]
    np.testing.assert_allclose(
        keras_sample_weight("balanced", y).numpy(),
        compute_sample_weight("balanced", y),
        rtol=1e-6,
    )


@pytest.mark.parametrize("how", ["class_weight", "sample_weight"])
def test_count_normalisation_is_keras_sum_over_batch_size(labels: np.ndarray, how: str) -> None:
    torch.manual_seed(0)
    y = torch.as_tensor(labels)
    logits = torch.randn(len(y), 4, dtype=torch.float64, requires_grad=True)
    cw = {0: 1.0, 1: 3.0, 2: 10.0, 3: 30.0}
    w = keras_class_weight(cw, dtype=torch.float64)
    s = keras_sample_weight(cw, y, dtype=torch.float64)
    # Keras: per-sample loss times class_weight[y_i], summed, divided by the batch size
    per_sample = -torch.log_softmax(logits, dim=1)[torch.arange(len(y)), y]
    keras = (torch.tensor([cw[int(c)] for c in y], dtype=torch.float64) * per_sample).sum() / len(y)
    if how == "class_weight":
        ours = cross_entropy(logits, y, class_weight=w, normalize=KERAS_NORMALIZE)
    else:
        ours = cross_entropy(logits, y, sample_weight=s, normalize=KERAS_NORMALIZE)
    torch.testing.assert_close(ours, keras)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_keras,) = torch.autograd.grad(keras, logits)
    torch.testing.assert_close(g_ours, g_keras)
    # and the module, weights as a buffer
    module = CrossEntropyLoss(class_weight=w, normalize=KERAS_NORMALIZE)
    torch.testing.assert_close(module(logits, y).double(), keras, rtol=1e-6, atol=1e-6)


def test_pytorch_default_differs_by_the_mean_weight(labels: np.ndarray) -> None:
    y = torch.as_tensor(labels)
    logits = torch.randn(len(y), 4, dtype=torch.float64)
    s = keras_sample_weight("balanced", y, dtype=torch.float64)
    w = keras_class_weight("balanced", y, dtype=torch.float64)
    keras = cross_entropy(logits, y, class_weight=w, normalize="count")
    torch_ce = torch.nn.functional.cross_entropy(logits, y, weight=w)
    torch.testing.assert_close(keras, s.mean() * torch_ce)
    # Keras's "mean_with_sample_weight" is PyTorch's weighted mean
    torch.testing.assert_close(cross_entropy(logits, y, sample_weight=s), torch_ce)


def test_other_losses_take_the_weights(labels: np.ndarray) -> None:
    y = torch.as_tensor(labels)
    logits = torch.randn(len(y), 4)
    s = keras_sample_weight({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, y)
    per = focal_loss(logits, y, gamma=2.0, reduction="none")
    torch.testing.assert_close(
        focal_loss(logits, y, gamma=2.0, sample_weight=s, normalize="count"),
        (s * per).sum() / len(y),
    )


def test_sample_weight_follows_labels_dtype() -> None:
    s = keras_sample_weight({0: 1.0, 1: 4.0}, torch.tensor([1.0, 0.0]), dtype=torch.float16)
    assert s.dtype == torch.float16
    assert s.tolist() == [4.0, 1.0]


# --- errors: the exact messages --------------------------------------------------------


def test_missing_class_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_class_weight({0: 1.0, 3: 2.0})
    assert str(info.value) == (
        "Expected `class_weight` to have a weight for every class 0..3, but got none for "
        "classes 1, 2. Add them, or pass default=1.0 (what Keras's fit gives a class it is "
        "not told)."
    )


def test_unknown_keys_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_class_weight({0: 1.0, 1: 2.0, 5: 3.0}, num_classes=2)
    assert str(info.value) == (
        "Expected `class_weight` to be keyed by class indices in [0, 1] (num_classes=2), "
        "but got unknown classes 5. Remove those keys, or raise num_classes."
    )


def test_non_index_keys_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_class_weight({"cat": 1.0, -1: 2.0, True: 3.0})
    assert str(info.value) == (
        "Expected `class_weight` to be keyed by class indices (integers >= 0), as Keras's "
        "fit takes it, but got keys 'cat', -1, True. Key the weights by class index, "
        "e.g. {0: 1.0, 1: 10.0}."
    )


def test_negative_weight_message() -> None:
    with pytest.raises(InvalidWeightError) as info:
        keras_class_weight({0: 1.0, 1: -2.0})
    assert str(info.value) == (
        "Expected `class_weight` to be non-negative, but got -2.0 for class 1. Weights scale "
        "each sample's loss; use 0 to drop a class, never a negative value."
    )
    assert isinstance(info.value, ValueError)


def test_nan_weight_is_refused() -> None:
    with pytest.raises(InvalidWeightError, match="to be finite, but got NaN at index 1"):
        keras_class_weight({0: 1.0, 1: float("nan")})


def test_balanced_without_labels_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_class_weight("balanced")
    assert str(info.value) == (
        "Expected `labels` to be given with class_weight='balanced' (its weights are "
        "n_samples / (n_classes * bincount(labels))), but got None. Pass the training "
        "labels: keras_class_weight('balanced', y_train)."
    )


def test_unknown_string_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_class_weight("auto", [0, 1])
    assert str(info.value) == (
        "Expected `class_weight` to be a mapping {class index: weight} or 'balanced', but "
        "got 'auto'. Pass 'balanced', or a dict such as {0: 1.0, 1: 10.0}."
    )


def test_list_is_not_a_keras_class_weight() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_class_weight([1.0, 2.0])  # type: ignore[arg-type]
    assert str(info.value) == (
        "Expected `class_weight` to be a mapping {class index: weight} or 'balanced', but "
        "got a list. Pass 'balanced', or a dict such as {0: 1.0, 1: 10.0}."
    )


def test_empty_mapping_message() -> None:
    with pytest.raises(InvalidValueError) as info:
        keras_class_weight({})
    assert str(info.value) == (
        "Expected `class_weight` to have a weight for at least one class, but got an empty "
        "mapping. Pass a dict such as {0: 1.0, 1: 10.0}, or 'balanced'."
    )


def test_balanced_with_an_empty_class_raises() -> None:
    with pytest.raises(ZeroCountError, match=r"0 for classes \[1\]"):
        keras_class_weight("balanced", [0, 0, 2])
