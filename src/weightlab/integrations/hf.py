r"""A Hugging Face ``Trainer`` that trains with any weightlab loss, exactly under accumulation.

:class:`WeightedLossTrainer` is a ``transformers.Trainer`` subclass. It takes
the class weights (``class_weight=``: a tensor or list, a mapping by label
name resolved through ``model.config.label2id``, or a scheme name computed
from the training set's labels) and any loss of
:data:`weightlab.losses.LOSSES` by name (``loss="focal"``,
``loss="logit_adjusted"``; losses that need class counts get the training
set's).

**Why not the Trainer's ``num_items_in_batch``.** Since its 2024 fix for
gradient accumulation the Trainer counts the labels of a whole accumulation
window (the micro-batches of one optimizer step) and hands that count to the
loss as ``num_items_in_batch``. That count is the normaliser of an
*unweighted* mean. A class-weighted mean divides by the sum of the weights
that applied (PyTorch's ``CrossEntropyLoss(weight=w)`` convention), and that
sum differs from window to window, so dividing each micro-batch by the count
(or by its own weight sum and then by the number of micro-batches) gives a
gradient that is not the one of the large batch.

**The design.** For one optimizer step over micro-batches :math:`b = 1..B`
(the window the Trainer prefetches in ``get_batch_samples``), with per-element
losses :math:`l_i` and applied weights :math:`a_i` (:math:`a_i = w_{y_i}`,
times the loss's own per-sample weight, e.g. class-balanced; 0 where the label
is ``-100``):

.. math::
    D = \sum_{b=1}^{B} \sum_{i \in b} a_i \;(\text{normalize='weight'})
    \quad\text{or}\quad
    D = \sum_{b=1}^{B} |\{i \in b : y_i \ne -100\}| \;(\text{normalize='count'}),
    \qquad
    L_b = \frac{\sum_{i \in b} l_i}{D}

so :math:`\sum_b L_b` (what the accumulated gradients are the gradient of) is
the loss of the window as one batch, :math:`\sum_i l_i / D`.
:meth:`WeightedLossTrainer.get_batch_samples` computes :math:`D` before the
forward passes, from the labels alone: it calls the configured loss with
``reduction="parts"`` on zero logits and sums the ``normalizer`` of the parts
(the applied weights depend on the labels, never on the logits), so the
normaliser is the loss's own definition, not a copy of it. The Trainer passes
:math:`D` through to :meth:`WeightedLossTrainer.compute_loss` in place of its
count, which divides the micro-batch's ``LossParts.total`` by it and marks
the loss as already scaled for accumulation (``loss_is_scaled_for_ga``).
``normalize="count"`` is the Trainer's own ``num_items_in_batch`` convention
(class weights then scale the loss but the mean divides by the label count);
the default is each loss's own (``"weight"`` for the softmax losses).
Evaluation batches, which the Trainer does not accumulate, are each a
weighted mean of their own.

With several processes and ``average_tokens_across_devices`` (the Trainer's
switch for a global count), :math:`D` is summed over the processes and the
loss multiplied by their number, as the Trainer does for its count, so that
data parallelism's average of gradients is again the large batch's. (Only
the single-process case is tested here.)

Example:
    >>> import tempfile
    >>> from transformers import BertConfig, AutoModelForSequenceClassification
    >>> from transformers import TrainingArguments
    >>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                     num_attention_heads=2, intermediate_size=32, num_labels=3)
    >>> model = AutoModelForSequenceClassification.from_config(config)
    >>> args = TrainingArguments(output_dir=tempfile.mkdtemp(), report_to=[], use_cpu=True)
    >>> trainer = WeightedLossTrainer(model=model, args=args, loss="focal",
    ...                               class_weight={"LABEL_2": 4.0})
    >>> trainer.class_weight
    tensor([1., 1., 4.])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

try:
    import transformers
    from transformers import Trainer
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "weightlab.integrations.hf needs the Hugging Face transformers library: "
        "pip install 'weightlab[hf]'"
    ) from error

from weightlab.errors import InvalidValueError, InvalidWeightError, expected, names
from weightlab.functional import LossParts
from weightlab.functional._validation import Normalize, check_normalize
from weightlab.losses import LOSSES, to_weight_tensor
from weightlab.weights import SCHEMES, class_weights, count_labels

__all__ = ["WeightedLossTrainer"]

if not hasattr(Trainer, "loss_is_scaled_for_ga"):  # pragma: no cover - depends on the install
    raise ImportError(
        f"weightlab.integrations.hf needs a transformers whose Trainer has "
        f"`loss_is_scaled_for_ga`; transformers {transformers.__version__} has not: "
        "pip install -U 'weightlab[hf]' transformers"
    )

ClassWeightArg = Tensor | Sequence[float] | np.ndarray[Any, Any] | Mapping[Any, float] | str


class WeightedLossTrainer(Trainer):
    r"""A ``transformers.Trainer`` whose loss is a weightlab loss, exact under accumulation.

    The loss is computed from the model's ``logits`` and the batch's
    ``labels`` (``-100`` is ignored); the model's own loss is not used. Under
    gradient accumulation each micro-batch's weighted loss sum is divided by
    the normaliser of the whole accumulation window (see the module
    docstring for the formula), so the accumulated gradient equals the
    gradient of one batch of all the window's samples.

    Args:
        *args: passed to ``transformers.Trainer``.
        class_weight: per-class weights indexed by the label id: a tensor,
            list or array of ``model.config.num_labels`` entries; a mapping
            keyed by label name (resolved through ``model.config.label2id``)
            or by label id, where labels it leaves out weigh 1; or the name of
            a scheme of :data:`weightlab.weights.SCHEMES` (``"balanced"``),
            computed by :func:`weightlab.weights.class_weights` from the
            counts of ``train_dataset``'s labels. Default ``None``: no class
            weights.
        class_weight_params: keyword arguments for
            :func:`~weightlab.weights.class_weights` with a scheme name
            (``{"normalize": "none"}``, ``{"beta": 0.99}``).
        loss: the name of a registered loss (``weightlab.losses.LOSSES.names()``);
            default ``"cross_entropy"``.
        loss_params: keyword arguments for the loss module (``{"gamma": 1.0}``).
            A loss that needs class counts (``LossInfo.needs_counts``) gets
            those of ``train_dataset`` unless these give ``counts`` (or
            ``prior``).
        normalize: what the window's mean divides by: ``"weight"`` (the sum
            of the weights that applied), ``"count"`` (the number of labels
            that are not ``-100``: the Trainer's ``num_items_in_batch``) or
            ``None`` (default: the loss's own default, ``"weight"`` for the
            softmax losses).
        **kwargs: passed to ``transformers.Trainer`` (``model``, ``args``,
            ``train_dataset``, ...). ``compute_loss_func`` is refused: the
            loss is this trainer's.

    Attributes:
        class_weight: the resolved class weights ``(C,)`` (float32), or ``None``.
        loss_fn: the loss module, built with ``reduction="parts"``.

    Raises:
        UnknownNameError: for an unknown ``loss`` or scheme name.
        InvalidValueError: for a ``class_weight`` mapping key that is neither a
            label name of ``model.config.label2id`` nor a label id, for a scheme
            or a count-based loss without training labels, or with
            ``compute_loss_func``.
        InvalidWeightError: for class weights of the wrong length, negative,
            NaN or infinite.
    """

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        class_weight: ClassWeightArg | None = None,
        class_weight_params: Mapping[str, Any] | None = None,
        loss: str = "cross_entropy",
        loss_params: Mapping[str, Any] | None = None,
        normalize: Normalize | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("compute_loss_func") is not None:
            raise InvalidValueError(
                expected("compute_loss_func", "to be None with WeightedLossTrainer",
                         "a function", "Pass the loss by name (`loss=`, `loss_params=`), or use "
                         "transformers.Trainer with your own compute_loss_func.")
            )  # fmt: skip
        info = LOSSES.info(loss)  # an unknown name fails before the model is set up
        check_normalize(normalize)
        super().__init__(*args, **kwargs)
        self.num_labels = _num_labels(self.model)
        self.loss_name = loss
        self.task = info.task
        self.class_weight = self._resolve_class_weight(
            class_weight, dict(class_weight_params or {})
        )
        params = dict(loss_params or {})
        if info.needs_counts and "counts" not in params and "prior" not in params:
            params["counts"] = torch.as_tensor(
                self._train_counts("loss", f"{loss!r}, a loss that needs the class counts"),
                dtype=torch.float32,
            )
        self._sample_class_weight: Tensor | None = None
        if self.class_weight is not None:
            if info.class_weight == "class_weight":
                params["class_weight"] = self.class_weight
            elif info.class_weight == "sample_weight":
                self._sample_class_weight = self.class_weight
            else:
                raise InvalidValueError(
                    expected("class_weight", f"to be None with loss={loss!r}",
                             "class weights", "That loss takes no class weights; drop them.")
                )  # fmt: skip
        if normalize is not None:
            params["normalize"] = normalize
        self.loss_fn: nn.Module = LOSSES.get(loss)(**params, reduction="parts")
        self._window_normalizer: Tensor | None = None

    # ---- the loss ----------------------------------------------------------

    def loss_parts(self, logits: Tensor, labels: Tensor) -> LossParts:
        """Return the loss's :class:`~weightlab.functional.LossParts` for one batch.

        Multi-class logits ``(..., C)`` and labels ``(...)`` are flattened to
        ``(N, C)`` and ``(N,)`` (sequence and token classification alike).
        """
        if self.task == "multiclass":
            logits = logits.reshape(-1, logits.shape[-1])
            labels = labels.reshape(-1)
        self.loss_fn.to(logits.device)
        sample_weight = None
        if self._sample_class_weight is not None:
            weight = self._sample_class_weight.to(logits.device)
            kept = labels != getattr(self.loss_fn, "ignore_index", -100)
            sample_weight = torch.where(kept, weight[labels.clamp(0, weight.numel() - 1)], 0.0)
        return cast(LossParts, self.loss_fn(logits, labels, sample_weight))  # reduction="parts"

    def window_normalizer(self, batches: Sequence[Mapping[str, Any]]) -> Tensor:
        """Return :math:`D`, the normaliser of the window's mean (see the module docstring).

        The sum over ``batches`` of the loss's ``LossParts.normalizer`` on zero
        logits: the weights that apply depend on the labels only.
        """
        total = torch.zeros(())
        for batch in batches:
            labels = batch["labels"]
            if self.task == "multiclass":
                zeros = torch.zeros(labels.numel(), self.num_labels, device=labels.device)
            else:
                zeros = torch.zeros_like(labels, dtype=torch.float32)
            total = total.to(labels.device) + self.loss_parts(zeros, labels).normalizer.detach()
        return total

    def get_batch_samples(
        self, epoch_iterator: Iterator[Any], num_batches: int, device: torch.device
    ) -> tuple[list[Any], Tensor | int | None]:
        """Fetch the window's batches and return them with the window's normaliser :math:`D`.

        The Trainer hands the second value to :meth:`compute_loss` of every
        micro-batch of the window as ``num_items_in_batch``.
        """
        batches, _count = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches or "labels" not in batches[0]:
            self._window_normalizer = None
            return batches, None
        normalizer = self.window_normalizer(batches).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            normalizer = self.accelerator.gather(normalizer).sum()
        self._window_normalizer = normalizer
        return batches, normalizer

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """Return the batch's loss sum divided by the window's normaliser.

        ``num_items_in_batch`` is used only when it is the normaliser
        :meth:`get_batch_samples` computed (a training micro-batch); otherwise
        (evaluation, where the Trainer passes its label count) the batch is a
        weighted mean of its own.
        """
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        if labels is None:
            raise InvalidValueError(
                expected("inputs", "to hold 'labels'", f"the keys {names(inputs)}",
                         "Give the dataset a 'labels' (or 'label') entry per sample.")
            )  # fmt: skip
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        parts = self.loss_parts(logits, labels)
        window = num_items_in_batch is not None and num_items_in_batch is self._window_normalizer
        if window:
            denominator = cast(Tensor, num_items_in_batch).to(parts.total.device)
            loss = LossParts(parts.total, denominator).mean()
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                loss = loss * self.accelerator.num_processes
        else:
            loss = parts.mean()
        return (loss, outputs) if return_outputs else loss

    # ---- resolving the arguments --------------------------------------------

    def _resolve_class_weight(
        self, value: ClassWeightArg | None, params: dict[str, Any]
    ) -> Tensor | None:
        if value is None:
            return None
        if isinstance(value, str):
            SCHEMES.get(value)  # an unknown scheme fails before the labels are counted
            counts = self._train_counts("class_weight", f"the scheme name {value!r}")
            return torch.as_tensor(class_weights(counts, value, **params), dtype=torch.float32)
        if isinstance(value, Mapping):
            weight = self._from_label_mapping(value)
        elif isinstance(value, Tensor):
            weight = value
        else:
            weight = torch.as_tensor(np.asarray(value, dtype=np.float64))
        if weight.dim() != 1 or weight.shape[0] != self.num_labels:
            raise InvalidWeightError(
                expected("class_weight",
                         f"to have one entry per label of the model ({self.num_labels})",
                         f"shape {tuple(weight.shape)}",
                         "Pass a weight for every label, in the order of "
                         "`model.config.id2label`, or a mapping by label name.")
            )  # fmt: skip
        return to_weight_tensor(weight, name="class_weight", num_classes=self.num_labels)

    def _from_label_mapping(self, mapping: Mapping[Any, float]) -> Tensor:
        label2id = dict(getattr(getattr(self.model, "config", None), "label2id", None) or {})
        index: dict[Any, int] = {}
        unknown = []
        for key in mapping:
            if isinstance(key, str) and key in label2id:
                index[key] = int(label2id[key])
            elif (
                isinstance(key, int | np.integer)
                and not isinstance(key, bool)
                and (0 <= key < self.num_labels)
            ):
                index[key] = int(key)
            else:
                unknown.append(key)
        if unknown:
            raise InvalidValueError(
                expected("class_weight",
                         f"to be keyed by the model's label names ({names(label2id)}, from "
                         f"`model.config.label2id`) or label ids in [0, {self.num_labels - 1}]",
                         f"unknown keys {names(unknown)}",
                         "Use those names, or set `label2id` and `id2label` in the model's "
                         "config.")
            )  # fmt: skip
        weight = torch.ones(self.num_labels, dtype=torch.float32)
        for key, w in mapping.items():
            weight[index[key]] = float(w)
        return weight

    def _train_counts(self, argument: str, what: str) -> np.ndarray[Any, Any]:
        dataset = self.train_dataset
        if dataset is None or not hasattr(dataset, "__len__"):
            received = "no train_dataset" if dataset is None else "a train_dataset without len()"
            raise InvalidValueError(
                expected(argument,
                         f"given as {what} to come with a `train_dataset` whose items hold "
                         "'labels' (or 'label')",
                         received,
                         "Pass `train_dataset=`, or pass the class weights (a tensor or a "
                         "mapping by label name) and `loss_params={'counts': ...}` yourself.")
            )  # fmt: skip
        return count_labels(dataset, self.num_labels, multilabel=self.task == "multilabel")


def _num_labels(model: object) -> int:
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if not isinstance(num_labels, int) or num_labels < 1:
        raise InvalidValueError(
            expected("model", "to have a `config.num_labels` (a classification model)",
                     repr(num_labels), "Build the model with `num_labels=C` in its config.")
        )  # fmt: skip
    return num_labels
