"""weightlab: explicit, exact weighted losses for imbalanced classification in PyTorch.

The front door is the library: the layers :mod:`weightlab.weights` (label
counts and weight schemes), :mod:`weightlab.functional` (pure losses on
logits) and :mod:`weightlab.losses` (their ``nn.Module`` wrappers), the loss
classes themselves (``weightlab.CrossEntropyLoss`` is
``weightlab.losses.CrossEntropyLoss``), :mod:`weightlab.errors` and
:mod:`weightlab.diagnostics` (per-class gradient shares) and
:mod:`weightlab.distributed` (weighted means exact across DDP ranks and
accumulation steps), plus :func:`weightlab.tune_model` (find the weighting
for your own model; it loads :mod:`weightlab.tune` and the lab when first
called). They are
loaded on first use (PEP 562), so ``import weightlab`` stays cheap and
``import weightlab.weights`` still needs no torch. The lab, the report and the
CLI are never imported from here: ask for them by name (``import
weightlab.lab``).

Example:
    >>> import torch
    >>> import weightlab
    >>> logits, y = torch.randn(8, 3), torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    >>> w = torch.tensor([0.2, 1.0, 3.0])
    >>> ours = weightlab.CrossEntropyLoss(class_weight=w)(logits, y)
    >>> torch.allclose(ours, torch.nn.CrossEntropyLoss(weight=w)(logits, y))
    True
    >>> weightlab.weights.class_weights(weightlab.weights.count_labels(y), "balanced")
    array([0.35294118, 0.88235294, 1.76470588])
"""

# `typing.TYPE_CHECKING` without importing typing (9 ms): mypy treats this name the same way.
TYPE_CHECKING = False

__version__ = "0.1.0"

# Each lazily loaded name and the module that holds it (a submodule maps to itself).
_SUBMODULES = ("diagnostics", "distributed", "errors", "functional", "losses", "weights")
_LOSS_CLASSES = (
    "AsymmetricLoss",
    "BCEWithLogitsLoss",
    "BalancedSoftmaxLoss",
    "BinaryCrossEntropyLoss",
    "ClassBalancedLoss",
    "CrossEntropyLoss",
    "DeferredReweighting",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "SigmoidFocalLoss",
)
_LAZY = (
    {name: f"weightlab.{name}" for name in _SUBMODULES}
    | dict.fromkeys(_LOSS_CLASSES, "weightlab.losses")
    | {"tune_model": "weightlab.tune.user"}
)

# sorted: capitals first; `tune_model` is left out so that `from weightlab import *` never
# loads the lab it needs
__all__ = [*_LOSS_CLASSES, "__version__", *_SUBMODULES]

if TYPE_CHECKING:
    # What the type checker sees: the same names, imported eagerly.
    from weightlab import diagnostics as diagnostics
    from weightlab import distributed as distributed
    from weightlab import errors as errors
    from weightlab import functional as functional
    from weightlab import losses as losses
    from weightlab import weights as weights
    from weightlab.losses import AsymmetricLoss as AsymmetricLoss
    from weightlab.losses import BalancedSoftmaxLoss as BalancedSoftmaxLoss
    from weightlab.losses import BCEWithLogitsLoss as BCEWithLogitsLoss
    from weightlab.losses import BinaryCrossEntropyLoss as BinaryCrossEntropyLoss
    from weightlab.losses import ClassBalancedLoss as ClassBalancedLoss
    from weightlab.losses import CrossEntropyLoss as CrossEntropyLoss
    from weightlab.losses import DeferredReweighting as DeferredReweighting
    from weightlab.losses import FocalLoss as FocalLoss
    from weightlab.losses import LDAMLoss as LDAMLoss
    from weightlab.losses import LogitAdjustedLoss as LogitAdjustedLoss
    from weightlab.losses import SigmoidFocalLoss as SigmoidFocalLoss
    from weightlab.tune.user import tune_model as tune_model
else:
    # Hidden from the type checker, so that a misspelt `weightlab.Foo` is still an error there.

    def __getattr__(name: str) -> object:
        """Import a front-door name on first use and keep it in the module's namespace."""
        module_name = _LAZY.get(name)
        if module_name is None:
            raise AttributeError(f"module 'weightlab' has no attribute {name!r}")
        import importlib  # here, not at the top: `import weightlab` imports nothing

        module = importlib.import_module(module_name)
        value = module if module_name == f"weightlab.{name}" else getattr(module, name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
