r"""The lab's optimizers and why one of them over a stack equals K separate ones.

=========  =====================================================  ==========
name       torch optimizer                                        default lr
=========  =====================================================  ==========
sgd        ``SGD(momentum=0.9)``                                  0.05
adam       ``Adam`` (betas 0.9, 0.999; no weight decay)           0.003
adamw      ``AdamW(weight_decay=0.01)`` (decoupled decay)         0.003
rmsprop    ``RMSprop(alpha=0.99)``                                0.001
=========  =====================================================  ==========

**Equivalence.** The stacked engine minimises
:math:`L = \sum_k L_k(\theta_k)`, the *sum* over slices of each slice's own
weighted-mean loss. Slice ``k``'s parameters appear only in :math:`L_k`, so
:math:`\partial L / \partial \theta_k = \partial L_k / \partial \theta_k`: the
gradient slice ``k`` receives is exactly the one it would receive trained
alone. Every update rule above is *element-wise* -- momentum buffers, Adam's
first and second moments, RMSprop's running square, the L2 term of ``adam``
(``grad + wd * p``) and the decoupled decay of ``adamw`` (``p - lr * wd * p``)
all act on each scalar parameter separately, with a step count that all slices
share because they step together. So one optimizer over the stacked tensors
performs K independent optimizations. (This would break for rules that pool
over a tensor -- LARS/LAMB trust ratios, global-norm gradient clipping, a
learning-rate schedule driven by a shared validation score -- none of which
the lab uses.) ``tests/test_lab_engine.py`` checks it for every optimizer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from weightlab.errors import InvalidValueError, expected, names

__all__ = [
    "BUILTIN_WEIGHT_DECAY",
    "DEFAULT_LR",
    "OPTIMIZERS",
    "check_lr",
    "check_weight_decay",
    "default_lr",
    "make_optimizer",
]

#: The lab's optimizers.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
#: Default learning rate of each optimizer, tuned for the lab's small networks.
DEFAULT_LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}
#: The decoupled weight decay each optimizer applies when a trial sets none.
BUILTIN_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 0.01, "rmsprop": 0.0}


def check_lr(lr: object) -> float:
    """Return ``lr`` as a float if it is a positive finite number, else raise naming the fix.

    Example:
        >>> check_lr(0.1)
        0.1
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < float("inf"):
        raise InvalidValueError(
            expected("lr", "to be a positive finite number", repr(lr), "Use e.g. lr=1e-3.")
        )
    return float(lr)


def check_weight_decay(weight_decay: object) -> float:
    """Return ``weight_decay`` as a float if it is a finite number >= 0, else raise.

    Example:
        >>> check_weight_decay(1e-4)
        0.0001
    """
    if (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, int | float)
        or not 0 <= weight_decay < float("inf")
    ):
        raise InvalidValueError(
            expected("weight_decay", "to be a finite number >= 0", repr(weight_decay),
                     "Use e.g. weight_decay=1e-4, or None for the optimizer's own.")
        )  # fmt: skip
    return float(weight_decay)


def _check_name(name: str) -> None:
    if name not in OPTIMIZERS:
        raise InvalidValueError(
            expected("optimizer", f"to be one of {names(OPTIMIZERS)}", repr(name), "Pick one.")
        )


def default_lr(name: str) -> float:
    """The default learning rate of optimizer ``name``.

    Example:
        >>> default_lr("sgd"), default_lr("adam")
        (0.05, 0.003)
    """
    _check_name(name)
    return DEFAULT_LR[name]


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float | None = None,
    weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """Build the lab optimizer ``name`` over ``params``.

    The CPU-fused implementation is used where PyTorch has one (SGD, Adam,
    AdamW): it computes the same element-wise rule in one pass over memory.

    Args:
        name: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
        params: the parameters (stacked or plain).
        lr: learning rate; ``None`` uses :data:`DEFAULT_LR`.
        weight_decay: replaces AdamW's decoupled decay (``None``: its 0.01);
            the engines pass 0 and apply a trial's own decay themselves.

    Raises:
        InvalidValueError: an unknown name or a learning rate that is not a
            positive finite number.

    Example:
        >>> opt = make_optimizer("adamw", torch.nn.Linear(2, 2).parameters())
        >>> type(opt).__name__, opt.defaults["lr"], opt.defaults["weight_decay"]
        ('AdamW', 0.003, 0.01)
    """
    _check_name(name)
    rate = DEFAULT_LR[name] if lr is None else check_lr(lr)
    decay = BUILTIN_WEIGHT_DECAY["adamw"] if weight_decay is None else weight_decay
    params = list(params)
    fused = bool(params) and all(p.device.type == "cpu" for p in params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=rate, momentum=0.9, fused=fused or None)
    if name == "adam":
        return torch.optim.Adam(params, lr=rate, fused=fused or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=rate, weight_decay=decay, fused=fused or None)
    return torch.optim.RMSprop(params, lr=rate, alpha=0.99)
