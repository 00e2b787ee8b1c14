r"""Weighted means that are exact over data-parallel ranks and accumulation windows.

A weighted mean divides the weighted loss sum by the sum of the weights that
applied (or by the count of elements not ignored: ``normalize="count"``). Each
rank of a data-parallel job (and each micro-batch of a gradient-accumulation
window) has its own class mix, so its own normaliser; averaging per-rank
means, as DistributedDataParallel (DDP) does with the gradients of each rank's
``loss.mean()``, is not the weighted mean of the global batch. Every weightlab
loss called with ``reduction="parts"`` returns the two sums,
:class:`~weightlab.functional.LossParts` ``(total, normalizer)``; this module
sums the normalisers over the ranks (and over the window) and divides once.

With ranks :math:`r = 1..R` (the process group), micro-batches :math:`b` of
one optimizer step, weighted loss sums :math:`T_{r,b}` and normalisers
:math:`D_{r,b}`:

.. math::
    D = \sum_r \sum_b D_{r,b}, \qquad
    L_{r,b} = \frac{R \, T_{r,b}}{D}

DDP averages the gradients over the :math:`R` ranks, so the gradient every
rank ends up with is :math:`\frac{1}{R}\sum_r \sum_b \nabla L_{r,b} = \nabla
\frac{\sum_{r,b} T_{r,b}}{D}`, the gradient of the global weighted mean.
:math:`D` is detached (a constant for the gradient; it depends on the
targets and the weights, never on the logits).

Without an initialised ``torch.distributed`` process group (and with
``group=None``) everything here is the single-process case, :math:`R = 1`:
:func:`global_mean` is ``total / normalizer``. A global normaliser of 0
(every element of every rank's batch ignored, or every weight 0) gives a loss
of 0 that is still connected to the graph, so ``backward()`` runs on every rank
(DDP's gradient all-reduce needs every rank) and leaves zero gradients, never
NaN: the same rule as ``reduction="mean"`` of every weightlab loss.

``torch.distributed`` calls here are collectives: every rank of ``group`` must
make the same calls in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from weightlab.errors import InvalidValueError, ShapeMismatchError, expected
from weightlab.functional._reduction import LossParts, safe_divide

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = [
    "accumulate",
    "global_mean",
    "global_normalizer",
    "target_normalizer",
    "window_normalizer",
]


def global_mean(
    parts: LossParts, group: ProcessGroup | None = None, *, normalizer: Tensor | None = None
) -> Tensor:
    r"""Return this rank's loss whose DDP-averaged gradient is the global weighted mean's.

    .. math::
        L = \frac{R \cdot \text{total}}{D}, \qquad D = \sum_{\text{ranks}} \text{normalizer}

    with :math:`R` the number of ranks of ``group``. DDP divides the summed
    gradients by :math:`R`, so the gradient is that of :math:`\sum \text{total}
    / D` over the global batch. The value of :math:`L` on one rank is not the
    global mean (sum it over the ranks and divide by :math:`R` to log it).
    Without an initialised process group, :math:`R = 1` and :math:`D` is
    ``parts.normalizer``: ``parts.mean()``. :math:`D = 0` gives a zero loss
    connected to the graph (zero gradients, no NaN).

    Args:
        parts: this rank's :class:`~weightlab.functional.LossParts`, from a
            weightlab loss called with ``reduction="parts"`` (0-d ``total``
            and ``normalizer``), or what :func:`accumulate` returns for several
            micro-batches.
        group: the process group to sum over, the one DDP averages over
            (default ``None``: the default group, if initialised).
        normalizer: an already global normaliser (0-d), e.g. the
            :func:`window_normalizer` of an accumulation window; then no
            all-reduce is made and ``parts.normalizer`` is not used. Default
            ``None``: sum ``parts.normalizer`` over the ranks.

    Returns:
        The 0-d loss to call ``backward()`` on.

    Raises:
        InvalidValueError: when ``parts`` is not a ``LossParts`` of tensors,
            or ``group`` is given but ``torch.distributed`` is not initialised.
        ShapeMismatchError: when ``parts.total``, ``parts.normalizer`` or
            ``normalizer`` is not 0-d.

    Example:
        >>> import torch
        >>> from weightlab.functional import LossParts, cross_entropy
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
        >>> parts = cross_entropy(logits, torch.tensor([0, 1, -100]),
        ...                       class_weight=torch.tensor([1.0, 3.0]), reduction="parts")
        >>> loss = global_mean(parts)  # one process: parts.total / parts.normalizer
        >>> torch.allclose(loss, torch.nn.functional.cross_entropy(
        ...     logits, torch.tensor([0, 1, -100]), weight=torch.tensor([1.0, 3.0])))
        True
        >>> global_mean(LossParts(torch.tensor(5.0), torch.tensor(0.0)))  # all ignored
        tensor(0.)
    """
    _check_parts(parts, "parts")
    if normalizer is None:
        denominator = global_normalizer(parts.normalizer, group)
    else:
        _check_scalar(normalizer, "normalizer", "the window's global normaliser")
        _check_group(group)
        denominator = normalizer.detach()
    ranks = _world_size(group)
    total = parts.total if ranks == 1 else parts.total * ranks
    return safe_divide(total, denominator.to(total.device))


def global_normalizer(normalizer: Tensor, group: ProcessGroup | None = None) -> Tensor:
    r"""Return :math:`\sum_{\text{ranks}} \text{normalizer}`, detached (an all-reduce).

    Without an initialised process group, the normaliser itself (detached).
    Every rank of ``group`` must call it (a collective).

    Args:
        normalizer: this rank's normaliser, 0-d (``LossParts.normalizer``).
        group: the process group to sum over (default ``None``: the default
            group, if initialised).

    Returns:
        A new 0-d tensor, not requiring grad, on ``normalizer``'s device.

    Raises:
        InvalidValueError: when ``normalizer`` is not a tensor, or ``group``
            is given but ``torch.distributed`` is not initialised.
        ShapeMismatchError: when ``normalizer`` is not 0-d.

    Example:
        >>> import torch
        >>> global_normalizer(torch.tensor(3.5, requires_grad=True))  # one process
        tensor(3.5000)
    """
    _check_scalar(normalizer, "normalizer", "a loss's normaliser (LossParts.normalizer)")
    _check_group(group)
    summed = normalizer.detach().clone()
    if _initialized():
        import torch.distributed as dist

        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=group)
    return summed


def accumulate(parts: Iterable[LossParts]) -> LossParts:
    r"""Sum the parts of several micro-batches: :math:`(\sum_b T_b, \sum_b D_b)`.

    ``global_mean(accumulate(parts))`` is the weighted mean of all the
    micro-batches as one batch (and over the ranks under DDP). This keeps every
    micro-batch's graph until the one ``backward()``; to backpropagate each
    micro-batch at once, compute :func:`window_normalizer` first.

    Args:
        parts: the micro-batches' :class:`~weightlab.functional.LossParts`
            (at least one).

    Returns:
        One ``LossParts`` whose ``total`` and ``normalizer`` are the sums.

    Raises:
        InvalidValueError: when ``parts`` is empty or holds something that is
            not a ``LossParts`` of tensors.
        ShapeMismatchError: when a ``total`` or ``normalizer`` is not 0-d.

    Example:
        >>> import torch
        >>> from weightlab.functional import LossParts
        >>> window = [LossParts(torch.tensor(6.0), torch.tensor(3.0)),
        ...           LossParts(torch.tensor(0.0), torch.tensor(1.0))]
        >>> accumulate(window)
        LossParts(total=tensor(6.), normalizer=tensor(4.))
        >>> global_mean(accumulate(window))  # not the mean of the means (1.0)
        tensor(1.5000)
    """
    items = parts if isinstance(parts, list | tuple) else list(parts)
    if isinstance(parts, LossParts) or not items:
        received = "a single LossParts" if isinstance(parts, LossParts) else "an empty sequence"
        raise InvalidValueError(
            expected("parts", "to be a non-empty sequence of LossParts (one per micro-batch)",
                     received, "Pass a list of the micro-batches' loss(..., reduction='parts'); "
                     "a single LossParts needs no accumulating.")
        )  # fmt: skip
    for index, item in enumerate(items):
        _check_parts(item, f"parts[{index}]")
    result = items[0]
    for item in items[1:]:
        result = result + item
    return result


def window_normalizer(
    normalizers: Iterable[Tensor | LossParts], group: ProcessGroup | None = None
) -> Tensor:
    r"""Return the normaliser of a whole accumulation window, summed over the ranks.

    .. math::
        D = \sum_{\text{ranks}} \sum_b D_b

    Compute it before the window's forward passes (from the targets alone,
    with :func:`target_normalizer`), then ``global_mean(parts_b, group,
    normalizer=D).backward()`` each micro-batch right after its forward pass:
    the accumulated gradient is the gradient of the window's weighted mean,
    with one micro-batch's graph in memory at a time. The memory-friendly form
    of ``global_mean(accumulate(parts), group)``.

    Args:
        normalizers: the micro-batches' normalisers (0-d tensors) or their
            ``LossParts`` (at least one).
        group: the process group to sum over (default ``None``: the default
            group, if initialised). Every rank of it must call this once per
            window (a collective).

    Returns:
        A 0-d tensor, not requiring grad.

    Raises:
        InvalidValueError: when ``normalizers`` is empty or holds something
            that is neither a tensor nor a ``LossParts``, or ``group`` is given
            but ``torch.distributed`` is not initialised.
        ShapeMismatchError: when a normaliser is not 0-d.

    Example:
        >>> import torch
        >>> from weightlab.functional import cross_entropy
        >>> w = torch.tensor([1.0, 4.0])
        >>> window = [torch.tensor([0, 1]), torch.tensor([0, 0, -100])]
        >>> loss = lambda logits, y: cross_entropy(logits, y, class_weight=w, reduction="parts")
        >>> D = window_normalizer(target_normalizer(loss, y, num_classes=2) for y in window)
        >>> D  # 1 + 4, then 1 + 1 + 0
        tensor(7.)
    """
    items = list(normalizers)
    if not items:
        raise InvalidValueError(
            expected("normalizers", "to hold one normaliser per micro-batch of the window",
                     "an empty sequence", "Pass the micro-batches' LossParts or their "
                     "`normalizer`s (target_normalizer(loss, y) computes one from the targets).")
        )  # fmt: skip
    values = []
    for index, item in enumerate(items):
        name = f"normalizers[{index}]"
        if isinstance(item, LossParts):
            _check_parts(item, name)
            values.append(item.normalizer.detach())
        else:
            _check_scalar(item, name, "a normaliser (LossParts.normalizer) or a LossParts")
            values.append(item.detach())
    total = values[0]
    for value in values[1:]:
        total = total + value.to(total.device)
    return global_normalizer(total, group)


def target_normalizer(
    loss: Callable[[Tensor, Tensor], Any],
    target: Tensor,
    *,
    num_classes: int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Return a batch's normaliser from its targets alone, before any forward pass.

    Calls ``loss`` on zero logits and returns the ``normalizer`` of the parts
    it returns (detached): the weights that apply, and which elements are
    ignored, depend on the targets and the weights, never on the logits. So
    the normaliser is the loss's own definition (class weights, sample
    weights bound in ``loss``, ``ignore_index``, ``normalize=``), not a copy
    of it. ``weightlab.integrations.hf.WeightedLossTrainer`` computes its
    accumulation window's normaliser the same way.

    Args:
        loss: ``loss(logits, target)`` returning a ``LossParts``: a weightlab
            loss module built with ``reduction="parts"``, or a function around
            a functional loss (``lambda z, y: focal_loss(z, y, class_weight=w,
            reduction="parts")``).
        target: the batch's targets, as ``loss`` takes them.
        num_classes: ``C`` for class-index targets ``(N, d1, ...)``: the zero
            logits are ``(N, C, d1, ...)``. Default ``None``: the logits have
            the target's shape (binary and multi-label losses).
        dtype: the zero logits' dtype (default ``None``: torch's default
            float dtype). Float64 gives a float64 normaliser.

    Returns:
        A 0-d tensor, not requiring grad, on ``target``'s device.

    Raises:
        InvalidValueError: when ``num_classes`` is not a positive int, or
            ``loss`` does not return a ``LossParts`` (built without
            ``reduction="parts"``).
        ShapeMismatchError: when the returned normaliser is not 0-d.

    Example:
        >>> import torch
        >>> from weightlab.losses import FocalLoss
        >>> loss = FocalLoss(class_weight=torch.tensor([0.5, 1.0, 3.0]), reduction="parts")
        >>> target_normalizer(loss, torch.tensor([0, 2, 2, -100]), num_classes=3)
        tensor(6.5000)
    """
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise InvalidValueError(
            expected("num_classes", "to be a positive int (the number of classes C) or None",
                     repr(num_classes), "Pass C for class-index targets, or None for binary "
                     "and multi-label targets (logits of the target's shape).")
        )  # fmt: skip
    if not isinstance(target, Tensor):
        raise InvalidValueError(
            expected("target", "to be a tensor", _describe(target),
                     "Pass the batch's targets as a tensor.")
        )  # fmt: skip
    dtype = dtype or torch.get_default_dtype()
    shape = tuple(target.shape)
    if num_classes is not None:  # class indices (N, d1, ...): logits (N, C, d1, ...)
        shape = (*shape[:1], num_classes, *shape[1:])
    with torch.no_grad():
        parts = loss(torch.zeros(shape, dtype=dtype, device=target.device), target)
    if not isinstance(parts, LossParts):
        raise InvalidValueError(
            expected("loss", "to return a LossParts (a loss called with reduction='parts')",
                     _describe(parts), "Build the loss module with reduction='parts', or pass "
                     "reduction='parts' to the functional loss.")
        )  # fmt: skip
    _check_parts(parts, "loss(...)")
    return parts.normalizer.detach()


# ---- checks and process-group queries --------------------------------------------


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _check_group(group: ProcessGroup | None) -> None:
    if group is not None and not _initialized():
        raise InvalidValueError(
            expected("group", "to be None when torch.distributed is not initialised",
                     _describe(group),
                     "Call torch.distributed.init_process_group(...) on every rank first "
                     "(torchrun does it for you), or pass group=None for one process.")
        )  # fmt: skip


def _world_size(group: ProcessGroup | None) -> int:
    if not _initialized():
        return 1
    import torch.distributed as dist

    return int(dist.get_world_size(group))


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _check_parts(parts: object, name: str) -> None:
    if not isinstance(parts, LossParts):
        raise InvalidValueError(
            expected(name, "to be a weightlab LossParts (total, normalizer)",
                     _describe(parts), "Call the loss with reduction='parts' (a tensor from "
                     "reduction='mean' is already divided by the local normaliser).")
        )  # fmt: skip
    _check_scalar(parts.total, f"{name}.total", "the weighted loss sum")
    _check_scalar(parts.normalizer, f"{name}.normalizer", "the normaliser")


def _check_scalar(value: object, name: str, what: str) -> None:
    if not isinstance(value, Tensor):
        raise InvalidValueError(
            expected(name, f"to be a 0-d tensor ({what})", _describe(value),
                     "Wrap it with torch.as_tensor(...), or use the LossParts a weightlab loss "
                     "returns with reduction='parts'.")
        )  # fmt: skip
    if value.dim() != 0:
        raise ShapeMismatchError(
            expected(name, f"to be a 0-d tensor ({what})", f"shape {tuple(value.shape)}",
                     "Sum it to one number first (.sum()); per-element losses come from "
                     "reduction='none', the parts from reduction='parts'.")
        )  # fmt: skip
