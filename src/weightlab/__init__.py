"""weightlab: explicit, exact weighted losses for imbalanced classification in PyTorch."""

__version__ = "0.1.0"
