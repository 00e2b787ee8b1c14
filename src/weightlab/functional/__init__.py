"""Pure loss functions on logits, with explicit weights and normalisation.

Each function checks its arguments (``weightlab.errors`` on bad input),
computes per-element weighted losses and the weight that applied to each, and
reduces them through one shared stage (:func:`reduce_loss`).
"""

from weightlab.functional._reduction import LossParts
from weightlab.functional.asymmetric import asymmetric_loss
from weightlab.functional.binary import binary_cross_entropy
from weightlab.functional.class_balanced import class_balanced_loss, class_balanced_weights
from weightlab.functional.cross_entropy import cross_entropy
from weightlab.functional.focal import focal_loss, sigmoid_focal_loss
from weightlab.functional.ldam import ldam_loss, ldam_margins
from weightlab.functional.logit_adjusted import (
    adjust_logits,
    balanced_softmax_loss,
    logit_adjusted_loss,
)

__all__ = [
    "LossParts",
    "adjust_logits",
    "asymmetric_loss",
    "balanced_softmax_loss",
    "binary_cross_entropy",
    "class_balanced_loss",
    "class_balanced_weights",
    "cross_entropy",
    "focal_loss",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_loss",
    "sigmoid_focal_loss",
]
