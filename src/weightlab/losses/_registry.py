"""The registry of loss modules, so every loss is named by string and listed."""

from __future__ import annotations

from torch import nn

from weightlab.registry import Registry

__all__ = ["LOSSES"]

#: Loss modules by name: ``weightlab.losses.LOSSES.get("cross_entropy")``.
LOSSES: Registry[type[nn.Module]] = Registry("loss", listing="`weightlab.losses.LOSSES.names()`")
