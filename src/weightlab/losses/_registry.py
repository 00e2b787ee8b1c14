"""The registry of loss modules, and what each entry tells the lab and the tuner about its loss.

Every loss module is registered by name with a :class:`LossInfo`: the targets
it takes (``task``), its functional form, whether it needs the training
split's class counts and how class weights enter it, the head it expects and
its tunable parameters with their ranges. The lab derives its literature-loss
weightings from these entries (:mod:`weightlab.lab.weightings`), so a loss
registered here with ``task="multiclass"`` is a lab weighting unless its entry
states why not (``lab_excluded``).

Example:
    >>> info = LOSSES.info("focal")
    >>> info.task, info.needs_counts, info.head, sorted(info.params)
    ('multiclass', False, 'linear', ['gamma'])
    >>> info.params["gamma"].default, info.params["gamma"].low, info.params["gamma"].high
    (2.0, 0.0, 5.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from weightlab.registry import Registry, TunableParam

__all__ = ["LOSSES", "LossInfo", "LossRegistry", "TunableParam"]

#: What a loss's targets are: class indices (softmax losses) or 0/1 per label (sigmoid losses).
Task = Literal["multiclass", "multilabel"]


@dataclass(frozen=True)
class LossInfo:
    """What the lab and the tuner need to know about a registered loss.

    Attributes:
        task: ``"multiclass"`` (class-index targets, logits ``(N, C)``) or ``"multilabel"``.
        functional: the :mod:`weightlab.functional` function the module calls.
        needs_counts: whether it takes the training split's class counts (``counts=``).
        class_weight: the functional's argument that class weights enter through:
            ``"class_weight"`` (indexed by the target), ``"sample_weight"`` (the
            lab passes ``w[y]``), or ``None`` (the loss takes none).
        head: the model head the loss is meant for (``"linear"``, or ``"cosine"`` for LDAM).
        params: its tunable parameters by name, with defaults and ranges.
        deferred_reweighting: for a loss meant to be paired with deferred
            re-weighting (LDAM-DRW, Cao et al. 2019), the share of the epochs
            trained with uniform weights before the effective-number weights
            (``beta=0.9999``) switch on (``1.0``: never), as a range to search.
        lab_excluded: why the lab does not offer it as a weighting (empty: it does).

    Example:
        >>> info = LOSSES.info("ldam")
        >>> info.needs_counts, info.head, info.params["s"].log
        (True, 'cosine', True)
        >>> bool(LOSSES.info("asymmetric").lab_excluded)
        True
    """

    task: Task
    functional: Callable[..., Any]
    needs_counts: bool = False
    class_weight: Literal["class_weight", "sample_weight"] | None = "class_weight"
    head: Literal["linear", "cosine"] = "linear"
    params: Mapping[str, TunableParam] = field(default_factory=dict)
    deferred_reweighting: TunableParam | None = None
    lab_excluded: str = ""


class LossRegistry(Registry[type[nn.Module]]):
    """Loss modules by name, each with its :class:`LossInfo`."""

    def __init__(self) -> None:
        super().__init__("loss", listing="`weightlab.losses.LOSSES.names()`")
        self._info: dict[str, LossInfo] = {}

    def register(  # type: ignore[override]
        self, name: str, info: LossInfo
    ) -> Callable[[type[nn.Module]], type[nn.Module]]:
        """Return a decorator that registers a loss module under ``name`` with ``info``."""
        decorate = super().register(name)

        def register_with_info(cls: type[nn.Module]) -> type[nn.Module]:
            out = decorate(cls)
            self._info[name] = info
            return out

        return register_with_info

    def info(self, name: str) -> LossInfo:
        """Return the :class:`LossInfo` of ``name``.

        Raises:
            UnknownNameError: if no loss is registered under ``name``.
        """
        self.get(name)
        return self._info[name]

    def params(self, name: str) -> Mapping[str, TunableParam]:
        """The tunable parameters of ``name`` (its :class:`LossInfo`'s ``params``)."""
        return self.info(name).params

    def remove(self, name: str) -> None:
        """Unregister ``name`` and its info."""
        super().remove(name)
        del self._info[name]


#: Loss modules by name: ``weightlab.losses.LOSSES.get("cross_entropy")``, ``LOSSES.info(...)``.
LOSSES = LossRegistry()
