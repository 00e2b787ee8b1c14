r"""A ``LightningModule`` base that trains with a weightlab loss whose weights come from the data.

:class:`WeightedLossModule` is a ``lightning.pytorch.LightningModule``. Subclass
it, build the network in ``__init__`` (after ``super().__init__(...)``), write
``forward`` (logits ``(N, C)``) and ``configure_optimizers``; the training and
validation steps are there (override them freely, calling
:meth:`~WeightedLossModule.compute_loss`). What it does:

* **Weights from the training labels, once.** At ``setup("fit")`` it counts
  the labels of the datamodule's training split, from its ``train_labels()``
  method if it has one (fast: no batches are loaded), else by iterating its
  ``train_dataloader()`` (:func:`~weightlab.weights.count_labels`), and
  installs the loss :attr:`~WeightedLossModule.criterion`, a registered
  weightlab loss (``loss="focal"``, ...) with
  ``class_weight = class_weights(counts, scheme, **class_weight_params)``
  (:func:`~weightlab.weights.class_weights`). A loss that needs the counts
  (``LossInfo.needs_counts``: LDAM, logit-adjusted, ...) gets them. A later
  ``fit`` keeps them; call :meth:`~WeightedLossModule.set_class_counts` to
  replace them (or to set them without a datamodule).
* **Buffers.** The counts are the module's ``class_counts`` buffer (int64,
  registered in ``__init__``) and the weights the loss's ``class_weight``
  buffer, so both follow ``.to(device)`` / ``.to(dtype)`` (the counts keep
  their integer dtype), are saved in ``state_dict`` and in checkpoints, and a
  checkpoint loads with ``load_from_checkpoint`` or ``fit(ckpt_path=...)``:
  ``on_load_checkpoint`` rebuilds the loss from the saved counts before the
  state dict is loaded.
* **Per-class recall.** ``torchmetrics.classification.MulticlassRecall(average=None)``
  over each training and validation epoch, logged as ``train_recall_class_{c}``
  and ``val_recall_class_{c}`` (one scalar per class, which every logger
  takes), with the loss as ``train_loss`` / ``val_loss``.

Needs ``pip install 'weightlab[lightning]'``.

For an example see :class:`WeightedLossModule`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "weightlab.integrations.lightning needs PyTorch Lightning: "
        "pip install 'weightlab[lightning]'"
    ) from error

from torchmetrics.classification import MulticlassRecall

from weightlab.errors import InvalidValueError, expected
from weightlab.losses import LOSSES
from weightlab.weights import SCHEMES, class_weights, count_labels

__all__ = ["WeightedLossModule"]


class WeightedLossModule(pl.LightningModule):
    """A ``LightningModule`` whose loss is a weightlab loss weighted from the training labels.

    See the module docstring for what it does at ``setup("fit")``, what it
    saves and what it logs.

    Args:
        num_classes: the number of classes ``C`` (the width of the logits).
        loss: the name of a registered multiclass loss
            (``weightlab.losses.LOSSES.names()``). Default ``"cross_entropy"``.
        class_weight: the name of a weight scheme
            (:data:`~weightlab.weights.SCHEMES`) computed from the training
            counts, or ``None`` for no class weights (a counts-based loss such
            as ``"logit_adjusted"`` still gets the counts). Default ``"balanced"``.
        class_weight_params: keyword arguments for
            :func:`~weightlab.weights.class_weights` (``{"normalize": "none"}``,
            ``{"beta": 0.99}``). Default ``None``: its defaults (mean 1).
        loss_params: keyword arguments for the loss module (``{"gamma": 2.0}``,
            ``{"normalize": "count"}``).
        ignore_index: the label that counts for nothing in the recall (and
            that the counts must not contain). Default ``-100``.

    Raises:
        UnknownNameError: an unknown ``loss`` or ``class_weight`` scheme.
        InvalidValueError: a multi-label loss, or class weights for a loss that
            takes them another way (``"class_balanced"`` weights from its counts:
            pass ``class_weight=None``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Classifier(WeightedLossModule):
        ...     def __init__(self) -> None:
        ...         super().__init__(num_classes=3, loss="focal", loss_params={"gamma": 1.0})
        ...         self.net = nn.Linear(4, 3)
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> model = Classifier()
        >>> model.set_class_counts([6, 3, 1])  # what setup("fit") does from the data
        >>> model.criterion.class_weight  # class_weights([6, 3, 1], "balanced")
        tensor([0.3333, 0.6667, 2.0000])
        >>> sorted(k for k in model.state_dict() if not k.startswith("net."))
        ['class_counts', 'criterion.class_weight']
    """

    class_counts: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        loss: str = "cross_entropy",
        class_weight: str | None = "balanced",
        class_weight_params: Mapping[str, Any] | None = None,
        loss_params: Mapping[str, Any] | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        info = LOSSES.info(loss)  # an unknown name fails here
        if info.task != "multiclass":
            raise InvalidValueError(
                expected(
                    "loss",
                    "to be a multiclass loss (class-index targets, per-class recall)",
                    f"{loss!r}, a {info.task} loss",
                    "Pick one of " + ", ".join(_multiclass_losses()) + ".",
                )
            )
        if class_weight is not None:
            SCHEMES.get(class_weight)  # an unknown scheme fails here
            if info.class_weight != "class_weight":
                raise InvalidValueError(
                    expected(
                        "class_weight",
                        f"to be None with loss={loss!r}",
                        repr(class_weight),
                        "That loss weights the classes from the counts itself; "
                        "pass class_weight=None.",
                    )
                )
        self.num_classes = int(num_classes)
        self.loss_name = loss
        self.scheme = class_weight
        self.class_weight_params = dict(class_weight_params or {})
        self.loss_params = dict(loss_params or {})
        self.ignore_index = ignore_index
        self.register_buffer("class_counts", torch.zeros(self.num_classes, dtype=torch.int64))
        self.criterion: nn.Module | None = None
        self.train_recall = MulticlassRecall(
            self.num_classes, average=None, ignore_index=ignore_index
        )
        self.val_recall = MulticlassRecall(
            self.num_classes, average=None, ignore_index=ignore_index
        )

    # --- the weights ------------------------------------------------------------------

    def set_class_counts(self, counts: object) -> None:
        r"""Install the loss, weighted from per-class counts ``(C,)``.

        :math:`w = \text{class\_weights}(n, \text{scheme}, \ldots)`; the counts
        are stored in the ``class_counts`` buffer and the loss replaces
        :attr:`criterion` (on the module's device, in its floating dtype).

        Args:
            counts: samples per class, shape ``(C,)``
                (:func:`~weightlab.weights.count_labels` of the training labels).

        Raises:
            InvalidValueError: counts of another shape than ``(num_classes,)``.
            ZeroCountError: a class without samples, with the default
                ``zero_count="raise"`` of :func:`~weightlab.weights.class_weights`
                (pass ``class_weight_params={"zero_count": "zero"}`` to allow it).
        """
        n = torch.as_tensor(_checked_counts(counts, self.num_classes), dtype=torch.int64)
        params = dict(self.loss_params)
        if self.scheme is not None:
            w = class_weights(n.numpy(), self.scheme, **self.class_weight_params)
            params["class_weight"] = torch.as_tensor(w, dtype=torch.float32)
        if LOSSES.info(self.loss_name).needs_counts:
            params.setdefault("counts", n.to(torch.float32))
        criterion = LOSSES.get(self.loss_name)(**params)
        self.class_counts = n.to(self.class_counts.device)
        dtype = self.dtype if isinstance(self.dtype, torch.dtype) else torch.float32
        self.criterion = criterion.to(device=self.class_counts.device, dtype=dtype)

    def training_labels(self) -> object:
        """The training labels (or a loader of them): the datamodule's ``train_labels()``.

        Falls back to its ``train_dataloader()``, counted batch by batch.
        Override to take them from elsewhere.

        Raises:
            InvalidValueError: when the trainer has no datamodule.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise InvalidValueError(
                expected(
                    "trainer.fit",
                    "to get a datamodule (with train_labels() or train_dataloader()) so that "
                    "the class weights come from its training labels",
                    "no datamodule",
                    "Pass datamodule=..., or call model.set_class_counts(count_labels(y)) "
                    "before fit.",
                )
            )
        if callable(getattr(datamodule, "train_labels", None)):
            return datamodule.train_labels()
        return datamodule.train_dataloader()

    def setup(self, stage: str) -> None:
        """At ``"fit"``, count the training labels and install the loss (once)."""
        if stage == "fit" and self.criterion is None:
            self.set_class_counts(count_labels(self.training_labels(), self.num_classes))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the loss from the checkpoint's counts, before its state dict is loaded."""
        counts = checkpoint.get("state_dict", {}).get("class_counts")
        if counts is not None and int(counts.sum()) > 0:
            self.set_class_counts(counts.cpu())

    # --- the steps ----------------------------------------------------------------------

    def compute_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The weighted loss of a batch: ``criterion(logits, target)``."""
        if self.criterion is None:
            raise InvalidValueError(
                expected(
                    "criterion",
                    "to be installed before the first step",
                    "None",
                    "Fit with a datamodule (setup('fit') installs it), or call "
                    "model.set_class_counts(counts).",
                )
            )
        loss: Tensor = self.criterion(logits, target)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss of ``self(batch[0])`` against ``batch[1]``; updates the training recall."""
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.compute_loss(logits, y)
        self.train_recall.update(logits.detach(), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss of ``self(batch[0])`` against ``batch[1]``; updates the validation recall."""
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.compute_loss(logits, y)
        self.val_recall.update(logits, y)
        self.log("val_loss", loss, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        """Log the epoch's per-class training recall and reset it."""
        self._log_recall("train", self.train_recall)

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's per-class validation recall and reset it."""
        self._log_recall("val", self.val_recall)

    def _log_recall(self, split: str, metric: MulticlassRecall) -> None:
        if not metric.update_called:
            return
        recall = metric.compute()
        for c, value in enumerate(recall.tolist()):
            self.log(f"{split}_recall_class_{c}", float(value))
        metric.reset()


def _checked_counts(counts: object, num_classes: int) -> Tensor:
    """Per-class counts as an int64 tensor ``(C,)``, checked for length ``C``."""
    n = torch.as_tensor(counts)
    if n.dim() != 1 or n.shape[0] != num_classes:
        raise InvalidValueError(
            expected(
                "counts",
                f"to have one count per class, shape ({num_classes},)",
                f"shape {tuple(n.shape)}",
                "Pass count_labels(train_labels, num_classes) of the training split.",
            )
        )
    return n.to(torch.int64)


def _multiclass_losses() -> list[str]:
    return [repr(n) for n in LOSSES.names() if LOSSES.info(n).task == "multiclass"]
