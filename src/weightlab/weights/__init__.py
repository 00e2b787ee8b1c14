"""Label counting and class-weight schemes (numpy and torch only).

Count the labels, then turn the counts into weights:

Example:
    >>> import torch
    >>> from weightlab.weights import class_weights, count_labels
    >>> y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2])
    >>> counts = count_labels(y)
    >>> counts
    array([6, 2, 1])
    >>> class_weights(counts, "balanced", normalize="none")
    array([0.5, 1.5, 3. ])
    >>> w = class_weights(counts, "effective_number", beta=0.9)
    >>> loss = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(w, dtype=torch.float32))
"""

from weightlab.weights.compute import (
    NORMALIZATIONS,
    ZERO_COUNT_POLICIES,
    Normalize,
    ZeroCount,
    class_weights,
    pos_weight,
)
from weightlab.weights.counting import (
    AUTO_PROGRESS_DELAY_S,
    MultilabelCounts,
    count_labels,
    count_multilabel,
)
from weightlab.weights.schemes import (
    SCHEMES,
    SchemeFn,
    balanced,
    effective_number,
    inverse,
    list_schemes,
    log,
    median_frequency,
    power,
    scheme_defaults,
    sqrt_inverse,
    uniform,
)

__all__ = [
    "AUTO_PROGRESS_DELAY_S",
    "MultilabelCounts",
    "NORMALIZATIONS",
    "Normalize",
    "SCHEMES",
    "SchemeFn",
    "ZERO_COUNT_POLICIES",
    "ZeroCount",
    "balanced",
    "class_weights",
    "count_labels",
    "count_multilabel",
    "effective_number",
    "inverse",
    "list_schemes",
    "log",
    "median_frequency",
    "pos_weight",
    "power",
    "scheme_defaults",
    "sqrt_inverse",
    "uniform",
]
