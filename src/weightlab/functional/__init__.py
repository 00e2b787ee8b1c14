"""Pure loss functions on logits, with explicit weights and normalisation.

Each function checks its arguments (``weightlab.errors`` on bad input),
computes per-element weighted losses and the weight that applied to each, and
reduces them through one shared stage (:func:`reduce_loss`).
"""

from weightlab.functional._reduction import LossParts
from weightlab.functional.binary import binary_cross_entropy
from weightlab.functional.cross_entropy import cross_entropy

__all__ = ["LossParts", "binary_cross_entropy", "cross_entropy"]
