"""Turn tensors and array-likes into numpy arrays without importing torch or pandas.

An object can only be a ``torch.Tensor`` (or a pandas object) if its module has
been imported, so ``sys.modules`` tells whether the check is needed at all:
``import weightlab.weights`` stays a numpy-only import.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["as_numpy", "loaded"]


def loaded(name: str) -> ModuleType | None:
    """Return module ``name`` if it has been imported already, else ``None``."""
    return sys.modules.get(name)


def as_numpy(obj: object) -> np.ndarray[Any, Any]:
    """Return ``obj`` as a numpy array; torch tensors are detached and moved to the CPU.

    Example:
        >>> import torch
        >>> as_numpy(torch.tensor([1, 2]))
        array([1, 2])
    """
    torch = loaded("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            tensor = tensor.float()
        return np.asarray(tensor.numpy())
    return np.asarray(obj)
