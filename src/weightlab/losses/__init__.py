"""``nn.Module`` losses whose ``forward`` is one call to :mod:`weightlab.functional`.

Weights are registered buffers (they follow ``.to(device)`` and are saved in
``state_dict``); every loss is registered by name in :data:`LOSSES`.
"""

from weightlab.losses._registry import LOSSES
from weightlab.losses._weights import to_weight_tensor
from weightlab.losses.cross_entropy import (
    BCEWithLogitsLoss,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
)

__all__ = [
    "BCEWithLogitsLoss",
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
    "LOSSES",
    "to_weight_tensor",
]
