"""``nn.Module`` losses whose ``forward`` is one call to :mod:`weightlab.functional`.

Weights are registered buffers (they follow ``.to(device)`` and are saved in
``state_dict``); every loss is registered by name in :data:`LOSSES`, with a
:class:`LossInfo` (task, counts, head, tunable parameters and their ranges).
"""

from weightlab.losses._registry import LOSSES, LossInfo, TunableParam
from weightlab.losses._weights import to_weight_tensor
from weightlab.losses.asymmetric import AsymmetricLoss
from weightlab.losses.class_balanced import ClassBalancedLoss
from weightlab.losses.cross_entropy import (
    BCEWithLogitsLoss,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
)
from weightlab.losses.focal import FocalLoss, SigmoidFocalLoss
from weightlab.losses.ldam import LDAMLoss
from weightlab.losses.logit_adjusted import BalancedSoftmaxLoss, LogitAdjustedLoss
from weightlab.losses.schedules import DeferredReweighting

__all__ = [
    "AsymmetricLoss",
    "BCEWithLogitsLoss",
    "BalancedSoftmaxLoss",
    "BinaryCrossEntropyLoss",
    "ClassBalancedLoss",
    "CrossEntropyLoss",
    "DeferredReweighting",
    "FocalLoss",
    "LDAMLoss",
    "LOSSES",
    "LogitAdjustedLoss",
    "LossInfo",
    "SigmoidFocalLoss",
    "TunableParam",
    "to_weight_tensor",
]
