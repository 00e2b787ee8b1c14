"""weightlab.integrations.hf: WeightedLossTrainer on a tiny BERT built from a config (no download).

What is checked: the trainer's loss is weightlab's functional loss on the same
logits; one optimizer step with gradient accumulation (4 micro-batches of 2)
moves the parameters as one batch of 8 does, and as the reference gradient of
the weighted mean over the 8 samples (class weights, focal, an ignored label);
class weights by label name (``label2id``) and by scheme name (counted from
the training set); the exact messages of bad input; the ImportError without
transformers.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    BertConfig,
    TrainingArguments,
)

from weightlab import functional as F  # noqa: E402
from weightlab.errors import (  # noqa: E402
    InvalidValueError,
    InvalidWeightError,
    UnknownNameError,
)
from weightlab.integrations.hf import WeightedLossTrainer  # noqa: E402
from weightlab.losses import LOSSES  # noqa: E402
from weightlab.weights import class_weights, count_labels  # noqa: E402

NUM_LABELS = 3
SEQ = 6
LR = 0.5
WEIGHT = torch.tensor([0.5, 2.0, 5.0])


def tiny_model(seed: int = 0, **config: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=NUM_LABELS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **config,
    )
    return AutoModelForSequenceClassification.from_config(cfg)


class TinyDataset(torch.utils.data.Dataset):
    """Dicts of input_ids, attention_mask and labels, made from a seed."""

    def __init__(self, labels: list[int], seed: int = 1) -> None:
        g = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, 50, (len(labels), SEQ), generator=g)
        self.labels = torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": torch.ones(SEQ, dtype=torch.long),
            "labels": self.labels[i],
        }


# Imbalanced, one ignored label; 8 samples = one window of 4 x 2, or one batch of 8.
LABELS = [0, 0, 0, 1, 0, 2, -100, 0]
COUNTED = [0, 0, 0, 1, 0, 2, 0, 0, 1, 0, 0, 0]


def args(tmp_path, **kw: Any) -> TrainingArguments:
    base = dict(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        max_steps=1,
        max_grad_norm=0.0,
        logging_strategy="no",
        save_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    base.update(kw)
    return TrainingArguments(**base)


def sgd(model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def full_batch(ds: TinyDataset) -> dict[str, torch.Tensor]:
    return {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ds[0]}


class RecordingTrainer(WeightedLossTrainer):
    """Records the normaliser each training micro-batch is divided by."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.seen.append(num_items_in_batch)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def step_delta(tmp_path, ds: TinyDataset, batch: int, accumulate: int, **trainer_kw: Any):
    """One optimizer step; the parameters' change, after checking the window was accumulated."""
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = RecordingTrainer(
        model=model,
        args=args(tmp_path, per_device_train_batch_size=batch,
                  gradient_accumulation_steps=accumulate),
        train_dataset=ds,
        optimizers=sgd(model),
        **trainer_kw,
    )  # fmt: skip
    trainer.seen = []
    trainer.train()
    assert len(trainer.seen) == accumulate  # micro-batches of the one step
    assert all(d is trainer.seen[0] for d in trainer.seen)  # one normaliser for the window
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def reference_delta(loss_of_logits) -> dict[str, torch.Tensor]:
    """-lr x the gradient of the loss over all 8 samples at once, without the Trainer."""
    model = tiny_model()
    ds = TinyDataset(LABELS)
    batch = full_batch(ds)
    labels = batch.pop("labels")
    loss_of_logits(model(**batch).logits, labels).backward()
    return {n: -LR * p.grad for n, p in model.named_parameters()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-7, rtol=1e-4, msg=name)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


# ---- the loss on the same logits --------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "params", "functional"),
    [
        ("cross_entropy", {}, lambda x, y, w, n: F.cross_entropy(x, y, class_weight=w)),
        ("focal", {"gamma": 1.5}, lambda x, y, w, n: F.focal_loss(x, y, gamma=1.5,
                                                                  class_weight=w)),
        ("logit_adjusted", {}, lambda x, y, w, n: F.logit_adjusted_loss(x, y, counts=n,
                                                                       class_weight=w)),
    ],
)  # fmt: skip
def test_the_loss_is_weightlabs_functional_loss_on_the_same_logits(
    tmp_path, loss, params, functional
) -> None:
    ds = TinyDataset(COUNTED)
    model = tiny_model()
    trainer = WeightedLossTrainer(
        model=model, args=args(tmp_path), train_dataset=ds,
        class_weight=WEIGHT, loss=loss, loss_params=params,
    )  # fmt: skip
    batch = full_batch(ds)
    value, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    counts = torch.as_tensor(count_labels(ds.labels, NUM_LABELS), dtype=torch.float32)
    expected = functional(outputs.logits, batch["labels"], WEIGHT, counts)
    torch.testing.assert_close(value, expected)


# ---- gradient accumulation --------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "params", "reference"),
    [
        ("cross_entropy", {}, lambda x, y: F.cross_entropy(x, y, class_weight=WEIGHT)),
        ("focal", {"gamma": 2.0}, lambda x, y: F.focal_loss(x, y, gamma=2.0,
                                                            class_weight=WEIGHT)),
    ],
)  # fmt: skip
def test_an_accumulated_step_equals_one_step_on_the_large_batch(
    tmp_path, loss, params, reference
) -> None:
    ds = TinyDataset(LABELS)
    kw = dict(class_weight=WEIGHT, loss=loss, loss_params=params)
    accumulated = step_delta(tmp_path / "ga", ds, batch=2, accumulate=4, **kw)
    large = step_delta(tmp_path / "large", ds, batch=8, accumulate=1, **kw)
    expected = reference_delta(reference)
    assert_same(large, expected)
    assert_same(accumulated, expected)


def test_the_per_micro_batch_mean_would_not_be_exact(tmp_path) -> None:
    """The check above is sharp: averaging the micro-batches' own weighted means is off."""
    ds = TinyDataset(LABELS)
    exact = reference_delta(lambda x, y: F.cross_entropy(x, y, class_weight=WEIGHT))

    def per_batch_mean(x, y):
        means = [F.cross_entropy(x[i : i + 2], y[i : i + 2], class_weight=WEIGHT)
                 for i in range(0, 8, 2)]  # fmt: skip
        return sum(means) / 4

    # The Trainer's sampler may visit the 8 samples in any order; the window is all of them,
    # so compare to the reference of both the exact and the per-batch (in order) loss.
    naive = reference_delta(per_batch_mean)
    assert max_diff(naive, exact) > 100 * 2e-7
    accumulated = step_delta(tmp_path, ds, batch=2, accumulate=4, class_weight=WEIGHT)
    assert_same(accumulated, exact)


def test_normalize_count_divides_by_the_number_of_labels_like_num_items_in_batch(
    tmp_path,
) -> None:
    ds = TinyDataset(LABELS)
    accumulated = step_delta(
        tmp_path, ds, batch=2, accumulate=4, class_weight=WEIGHT, normalize="count"
    )
    expected = reference_delta(
        lambda x, y: F.cross_entropy(x, y, class_weight=WEIGHT, normalize="count")
    )
    assert_same(accumulated, expected)


def test_the_window_normalizer_is_the_sum_of_the_applied_weights(tmp_path) -> None:
    ds = TinyDataset(LABELS)
    trainer = WeightedLossTrainer(
        model=tiny_model(), args=args(tmp_path), train_dataset=ds, class_weight=WEIGHT
    )
    batches = [full_batch(ds)]
    kept = torch.tensor([y for y in LABELS if y != -100])
    torch.testing.assert_close(trainer.window_normalizer(batches), WEIGHT[kept].sum())


@pytest.mark.parametrize("loss", [n for n in LOSSES.names() if LOSSES.info(n).task == "multiclass"])
def test_every_multiclass_losss_normalizer_depends_on_the_labels_only(tmp_path, loss) -> None:
    """The window's normaliser is taken on zero logits; it must be the one of the real logits."""
    ds = TinyDataset(COUNTED)
    trainer = WeightedLossTrainer(
        model=tiny_model(), args=args(tmp_path), train_dataset=ds, class_weight=WEIGHT, loss=loss
    )
    batch = full_batch(ds)
    logits = torch.randn(len(COUNTED), NUM_LABELS, generator=torch.Generator().manual_seed(3))
    real = trainer.loss_parts(logits * 4, batch["labels"]).normalizer
    torch.testing.assert_close(trainer.window_normalizer([batch]), real)


def test_evaluation_is_the_weighted_mean_of_the_eval_batch(tmp_path) -> None:
    """The Trainer passes its label count to compute_loss in evaluation; it is not used."""
    ds = TinyDataset(LABELS)
    model = tiny_model()
    trainer = WeightedLossTrainer(
        model=model, args=args(tmp_path, per_device_eval_batch_size=8), class_weight=WEIGHT
    )
    metrics = trainer.evaluate(ds)
    batch = full_batch(ds)
    labels = batch.pop("labels")
    with torch.no_grad():
        expected = F.cross_entropy(model(**batch).logits, labels, class_weight=WEIGHT)
    assert metrics["eval_loss"] == pytest.approx(float(expected), rel=1e-5)


# ---- class weights by name --------------------------------------------------------


def test_a_mapping_by_label_name_resolves_through_label2id(tmp_path) -> None:
    id2label = {0: "neg", 1: "neutral", 2: "pos"}
    model = tiny_model(id2label=id2label, label2id={v: k for k, v in id2label.items()})
    trainer = WeightedLossTrainer(
        model=model, args=args(tmp_path), class_weight={"pos": 4.0, "neg": 0.5}
    )
    torch.testing.assert_close(trainer.class_weight, torch.tensor([0.5, 1.0, 4.0]))
    torch.testing.assert_close(trainer.loss_fn.class_weight, torch.tensor([0.5, 1.0, 4.0]))


def test_a_scheme_name_is_computed_from_the_training_labels(tmp_path) -> None:
    ds = TinyDataset(COUNTED)
    trainer = WeightedLossTrainer(
        model=tiny_model(), args=args(tmp_path), train_dataset=ds, class_weight="balanced"
    )
    expected = class_weights(count_labels(ds.labels, NUM_LABELS), "balanced")
    torch.testing.assert_close(trainer.class_weight, torch.as_tensor(expected, dtype=torch.float32))
    raw = WeightedLossTrainer(
        model=tiny_model(), args=args(tmp_path), train_dataset=ds, class_weight="balanced",
        class_weight_params={"normalize": "none"},
    )  # fmt: skip
    torch.testing.assert_close(raw.class_weight, torch.tensor([12 / 27, 12 / 6, 12 / 3]))


def test_a_loss_that_needs_counts_gets_the_training_sets(tmp_path) -> None:
    ds = TinyDataset(COUNTED)
    trainer = WeightedLossTrainer(
        model=tiny_model(), args=args(tmp_path), train_dataset=ds, loss="logit_adjusted"
    )
    torch.testing.assert_close(trainer.loss_fn.prior, torch.tensor([9.0, 2.0, 1.0]) / 12)


# ---- bad input ---------------------------------------------------------------------


def test_an_unknown_loss_name_is_refused(tmp_path) -> None:
    with pytest.raises(UnknownNameError) as info:
        WeightedLossTrainer(model=tiny_model(), args=args(tmp_path), loss="focall")
    assert str(info.value) == (
        f"Expected `loss` to be one of {', '.join(repr(n) for n in LOSSES.names())}, but got "
        "'focall'. Use one of those names; `weightlab.losses.LOSSES.names()` lists them."
    )


def test_a_label_name_not_in_label2id_is_refused(tmp_path) -> None:
    with pytest.raises(InvalidValueError) as info:
        WeightedLossTrainer(
            model=tiny_model(), args=args(tmp_path), class_weight={"LABEL_2": 2.0, "dog": 3.0}
        )
    assert str(info.value) == (
        "Expected `class_weight` to be keyed by the model's label names ('LABEL_0', 'LABEL_1', "
        "'LABEL_2', from `model.config.label2id`) or label ids in [0, 2], but got unknown keys "
        "'dog'. Use those names, or set `label2id` and `id2label` in the model's config."
    )


def test_a_scheme_without_training_labels_is_refused(tmp_path) -> None:
    with pytest.raises(InvalidValueError) as info:
        WeightedLossTrainer(model=tiny_model(), args=args(tmp_path), class_weight="balanced")
    assert str(info.value) == (
        "Expected `class_weight` given as the scheme name 'balanced' to come with a "
        "`train_dataset` whose items hold 'labels' (or 'label'), but got no train_dataset. "
        "Pass `train_dataset=`, or pass the class weights (a tensor or a mapping by label "
        "name) and `loss_params={'counts': ...}` yourself."
    )


def test_a_count_based_loss_without_training_labels_is_refused(tmp_path) -> None:
    with pytest.raises(InvalidValueError, match=r"^Expected `loss` given as 'ldam', a loss "):
        WeightedLossTrainer(model=tiny_model(), args=args(tmp_path), loss="ldam")


def test_class_weights_of_the_wrong_length_are_refused(tmp_path) -> None:
    with pytest.raises(InvalidWeightError) as info:
        WeightedLossTrainer(model=tiny_model(), args=args(tmp_path), class_weight=[1.0, 2.0])
    assert str(info.value) == (
        "Expected `class_weight` to have one entry per label of the model (3), but got shape "
        "(2,). Pass a weight for every label, in the order of `model.config.id2label`, or a "
        "mapping by label name."
    )


def test_an_unknown_scheme_name_is_refused(tmp_path) -> None:
    with pytest.raises(UnknownNameError, match=r"^Expected `scheme` to be one of .*'balancd'"):
        WeightedLossTrainer(model=tiny_model(), args=args(tmp_path), class_weight="balancd")


def test_a_compute_loss_func_is_refused(tmp_path) -> None:
    with pytest.raises(InvalidValueError) as info:
        WeightedLossTrainer(
            model=tiny_model(), args=args(tmp_path), compute_loss_func=lambda *a, **k: 0
        )
    assert str(info.value) == (
        "Expected `compute_loss_func` to be None with WeightedLossTrainer, but got a function. "
        "Pass the loss by name (`loss=`, `loss_params=`), or use transformers.Trainer with your "
        "own compute_loss_func."
    )


# ---- the optional extra ----------------------------------------------------------------


def test_without_transformers_the_import_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "weightlab.integrations.hf")
    with pytest.raises(ImportError, match=r"pip install 'weightlab\[hf\]'"):
        importlib.import_module("weightlab.integrations.hf")
    monkeypatch.undo()  # restore the module imported above for the other tests
    assert sys.modules["weightlab.integrations.hf"].WeightedLossTrainer is WeightedLossTrainer


@pytest.mark.slow
def test_the_integrations_package_imports_no_framework() -> None:
    code = (
        "import sys, weightlab.integrations; "
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules, "
        "sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
