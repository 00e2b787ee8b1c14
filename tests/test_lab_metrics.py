import math

import numpy as np
import pytest
import torch
from imblearn.metrics import geometric_mean_score
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
)
from torchmetrics.functional.classification import multiclass_calibration_error

from weightlab.errors import InvalidValueError, ShapeMismatchError
from weightlab.lab.metrics import HIGHER_IS_BETTER, METRIC_NAMES, compute_metrics, tail_classes


def test_hand_checked_tiny_example():
    # 3 classes; training counts make class 2 the (only) tail class.
    logits = np.array(
        [
            [3.0, 0.0, 0.0],  # y=0, pred 0
            [3.0, 0.0, 0.0],  # y=0, pred 0
            [0.0, 3.0, 0.0],  # y=1, pred 1
            [3.0, 0.0, 0.0],  # y=1, pred 0
            [0.0, 0.0, 3.0],  # y=2, pred 2
            [0.0, 3.0, 0.0],  # y=2, pred 1
        ]
    )
    y = np.array([0, 0, 1, 1, 2, 2])
    m, pc = compute_metrics(logits, y, [50, 20, 5])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert pc["recall"] == pytest.approx([1.0, 0.5, 0.5])
    # predictions: 0 three times (2 right), 1 twice (1 right), 2 once (1 right)
    assert pc["precision"] == pytest.approx([2 / 3, 0.5, 1.0])
    f1 = [2 * p * r / (p + r) for p, r in zip([2 / 3, 0.5, 1.0], [1.0, 0.5, 0.5], strict=True)]
    assert pc["f1"] == pytest.approx(f1)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["tail_recall"] == pytest.approx(0.5)
    assert m["gmean"] == pytest.approx((1.0 * 0.5 * 0.5) ** (1 / 3))
    assert pc["support"] == [2.0, 2.0, 2.0]
    assert pc["train_count"] == [50.0, 20.0, 5.0]
    # every row's confidence is softmax([3,0,0])[0]; accuracy 4/6
    conf = math.exp(3) / (math.exp(3) + 2)
    assert m["ece"] == pytest.approx(abs(conf - 4 / 6), abs=1e-6)


def test_matches_direct_library_calls():
    rng = np.random.default_rng(0)
    n, c = 300, 5
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y] * rng.random((n, 1))
    counts = [100, 50, 20, 8, 3]
    m, pc = compute_metrics(torch.tensor(logits), torch.tensor(y), counts)
    pred = logits.argmax(1)
    probs = torch.softmax(torch.tensor(logits), 1).numpy()
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["gmean"] == pytest.approx(geometric_mean_score(y, pred))
    p, r, f, s = precision_recall_fscore_support(y, pred)
    assert pc["precision"] == pytest.approx(p.tolist())
    assert pc["recall"] == pytest.approx(r.tolist())
    assert pc["f1"] == pytest.approx(f.tolist())
    assert pc["support"] == pytest.approx(s.tolist())
    assert m["tail_recall"] == pytest.approx(r[4])  # 5 // 3 = 1 tail class: the rarest
    onehot = np.eye(c)[y]
    ap = average_precision_score(onehot, probs, average="macro")
    assert m["macro_auprc"] == pytest.approx(ap)
    one_vs_rest = [average_precision_score(y == k, probs[:, k]) for k in range(c)]
    assert pc["average_precision"] == pytest.approx(one_vs_rest)
    ece = multiclass_calibration_error(
        torch.tensor(probs, dtype=torch.float32), torch.tensor(y), num_classes=c, n_bins=15
    )
    assert m["ece"] == pytest.approx(float(ece), abs=1e-6)
    assert set(m) == set(METRIC_NAMES)
    assert all(isinstance(v, float) for v in m.values())


def test_tail_classes_rarest_third_by_training_count():
    assert tail_classes([100, 77, 59, 46, 35, 27, 21, 16, 12, 10]) == [7, 8, 9]
    assert tail_classes([1, 100, 2, 50, 3, 60]) == [0, 2]
    assert tail_classes([5, 5]) == [0]


def test_class_absent_from_test_split_is_nan_ap_and_left_out_of_mean():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    m, pc = compute_metrics(logits, np.array([0, 1]), [3, 2, 1])
    assert math.isnan(pc["average_precision"][2])
    assert m["macro_auprc"] == pytest.approx(1.0)


def test_higher_is_better():
    assert HIGHER_IS_BETTER["ece"] is False
    assert HIGHER_IS_BETTER["balanced_accuracy"] is True


@pytest.mark.parametrize(
    ("logits", "y", "counts", "err", "message"),
    [
        (
            np.zeros(4),
            np.zeros(4, dtype=int),
            [1, 1],
            ShapeMismatchError,
            "Expected `logits` to have shape (rows, classes) with at least 2 classes, "
            "but got shape (4,). Pass one row of class scores per test example.",
        ),
        (
            np.zeros((4, 2)),
            np.zeros(3, dtype=int),
            [1, 1],
            ShapeMismatchError,
            "Expected `y_true` to have shape (4,), one label per row of `logits`, "
            "but got shape (3,). Pass the class index of every test example.",
        ),
        (
            np.zeros((4, 2)),
            np.zeros(4, dtype=int),
            [1, 1, 1],
            ShapeMismatchError,
            "Expected `train_counts` to have one entry per class (2), but got shape (3,). "
            "Pass the training count of every class (weightlab.weights.count_labels).",
        ),
        (
            np.zeros((4, 2)),
            np.array([0, 1, 2, 0]),
            [1, 1],
            InvalidValueError,
            "Expected `y_true` to lie in [0, 2), but got labels from 0 to 2. "
            "Give `logits` one column per class.",
        ),
        (
            np.zeros((4, 2)),
            np.zeros(4),
            [1, 1],
            InvalidValueError,
            "Expected `y_true` to hold integer class indices, but got dtype float64. "
            "Cast the labels to int64.",
        ),
        (
            np.array([[0.0, np.nan], [np.inf, 0.0]]),
            np.array([0, 1]),
            [1, 1],
            InvalidValueError,
            "Expected `logits` to be finite, but got 2 NaN or infinite values. "
            "The model diverged; store the trial as failed instead of scoring it.",
        ),
        (
            np.zeros((0, 2)),
            np.zeros(0, dtype=int),
            [1, 1],
            ShapeMismatchError,
            "Expected `logits` to have at least one row, but got 0 rows. "
            "Evaluate a non-empty split.",
        ),
    ],
)
def test_bad_input_messages(logits, y, counts, err, message):
    with pytest.raises(err) as info:
        compute_metrics(logits, y, counts)
    assert str(info.value) == message
