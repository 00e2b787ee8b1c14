"""The base of every loss module: checked reduction settings and weights as buffers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn

from torch import Tensor, nn

from weightlab.errors import expected
from weightlab.functional._validation import Normalize, Reduction, check_normalize, check_reduction
from weightlab.losses._weights import ClassWeightLike, HasClasses, to_weight_tensor

__all__ = ["WeightedLoss"]


class WeightedLoss(nn.Module):
    """Checks ``reduction``/``normalize`` once and keeps weights as registered buffers.

    Subclasses call ``super().__init__(reduction=..., normalize=..., validate_args=...)``,
    register their weights with :meth:`register_weight`, list the settings
    ``repr`` shows in ``repr_fields``, and make ``forward`` one call to their
    function in :mod:`weightlab.functional`.

    Example:
        >>> class Scaled(WeightedLoss):
        ...     repr_fields = ("scale",)
        ...     def __init__(self, class_weight=None, scale=2.0):
        ...         super().__init__(reduction="sum", normalize=None, validate_args=True)
        ...         self.register_weight("class_weight", class_weight)
        ...         self.scale = scale
        >>> Scaled([1.0, 3.0])
        Scaled(scale=2.0, reduction='sum', normalize=None)
        >>> Scaled([1.0, 3.0]).state_dict()
        OrderedDict([('class_weight', tensor([1., 3.]))])
    """

    #: Attributes shown by ``repr`` before ``reduction`` and ``normalize``.
    repr_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, *, reduction: Reduction, normalize: Normalize | None, validate_args: bool
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        check_normalize(normalize)
        self.reduction: Reduction = reduction
        self.normalize: Normalize | None = normalize
        self.validate_args = validate_args

    def register_weight(
        self,
        name: str,
        value: ClassWeightLike | Tensor | None,
        *,
        num_classes: int | None = None,
        classes: Sequence[Any] | HasClasses | None = None,
    ) -> None:
        """Check ``value`` (:func:`to_weight_tensor`) and register it as buffer ``name``."""
        weight = (
            None
            if value is None
            else to_weight_tensor(value, name=name, num_classes=num_classes, classes=classes)
        )
        self.register_buffer(name, weight)

    def __prepare_scriptable__(self) -> NoReturn:
        """Refuse ``torch.jit.script`` by name: ``torch.compile`` is the supported compiler.

        ``torch.jit.script`` calls this hook on every module it scripts (also on a
        loss inside a larger model) before it reads any annotation.
        """
        raise RuntimeError(
            expected(
                type(self).__name__,
                "to be compiled with `torch.compile`",
                "`torch.jit.script`",
                "weightlab losses are not TorchScript-compatible (they call custom autograd "
                "Functions and take weights as lists, arrays or tensors). Use "
                "`torch.compile(loss)` (every registered loss compiles with fullgraph=True), "
                "or call the loss eagerly outside the scripted model.",
            )
        )

    def extra_repr(self) -> str:
        """Show the settings in ``repr(module)``."""
        shown = (*self.repr_fields, "reduction", "normalize")
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
