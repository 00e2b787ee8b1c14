"""The lab's plain networks: ``mlp``, ``cnn``, ``gru`` and ``lstm``, each sized by a few numbers.

These are ordinary :class:`torch.nn.Module` models with PyTorch's default
initialisation. :mod:`weightlab.lab.stacked` holds their vectorized K-slice
twins; slice ``k`` of a stack built from seeds ``s_1..s_K`` starts from exactly
the parameters ``build_model(..., seed=s_k)`` returns.

=======  ==========================================================  ==============
arch     layers                                                      input per row
=======  ==========================================================  ==============
mlp      ``layers`` x (Linear(hidden) + ReLU), Linear(C)             ``(F,)``
cnn      ``layers`` x (Conv3x3(hidden, pad 1) + ReLU + MaxPool 2),   ``(C_in, H, W)``
         flatten, Linear(C); pooling stops once a side is 1
gru      GRU(hidden, ``layers``), last step's state, Linear(C)       ``(T, F)``
lstm     LSTM(hidden, ``layers``), last step's state, Linear(C)      ``(T, F)``
=======  ==========================================================  ==============

:mod:`weightlab.lab.architectures` registers them (with their stacked twins,
input layouts and default sizes) and builds them by name (``build_model``).

The head is ``Linear(C)`` by default; ``head="cosine"`` makes it a
:class:`CosineLinear` (logits are cosines in ``[-1, 1]``, the normalised head
LDAM's scale ``s`` is meant for; the lab's ``ldam`` weighting uses it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CNN", "HEADS", "MLP", "RNN", "CosineLinear"]

#: The lab's heads: a plain linear layer, or :class:`CosineLinear`.
HEADS = ("linear", "cosine")


def _pooled(size: int) -> int:
    return size // 2 if size >= 2 else size


class CosineLinear(nn.Module):
    r"""A head whose logits are cosines: :math:`z_c = \hat f \cdot \hat w_c`, no bias.

    Features and each class's weight row are scaled to unit length, so every
    logit lies in ``[-1, 1]`` (Cao et al. 2019's normalised head, under LDAM's
    scale ``s``). The weight starts as ``nn.Linear``'s does.

    Example:
        >>> head = CosineLinear(4, 3)
        >>> bool(head(torch.randn(5, 4)).abs().max() <= 1)
        True
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's weight init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cosines ``(B, C)`` of features ``(B, F)``."""
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=1))


def _head(in_features: int, num_classes: int, head: str) -> nn.Module:
    if head == "cosine":
        return CosineLinear(in_features, num_classes)
    return nn.Linear(in_features, num_classes)


class MLP(nn.Module):
    """``layers`` hidden ReLU layers of width ``hidden`` and a head (the last module of ``net``).

    Example:
        >>> MLP(64, 10, hidden=32)(torch.zeros(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: int = 128,
        layers: int = 2,
        head: str = "linear",
    ):
        super().__init__()
        mods: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        mods.append(_head(width, num_classes, head))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` of inputs ``(B, F)``."""
        return self.net(x)  # type: ignore[no-any-return]


class CNN(nn.Module):
    """3x3 convolutions (``hidden`` channels) with ReLU and 2x2 max pooling, then a head.

    Example:
        >>> CNN((1, 8, 8), 10, hidden=4)(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        *,
        hidden: int = 16,
        layers: int = 2,
        head: str = "linear",
    ):
        super().__init__()
        c, h, w = in_shape
        mods: list[nn.Module] = []
        for _ in range(layers):
            mods += [nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU()]
            if h >= 2 and w >= 2:
                mods.append(nn.MaxPool2d(2))
                h, w = _pooled(h), _pooled(w)
            c = hidden
        self.features = nn.Sequential(*mods)
        self.head = _head(c * h * w, num_classes, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` of images ``(B, C_in, H, W)``."""
        return self.head(self.features(x).flatten(1))  # type: ignore[no-any-return]


class RNN(nn.Module):
    """A GRU or LSTM over ``T`` steps; the last step's top-layer state feeds a head.

    Example:
        >>> RNN("lstm", 8, 10, hidden=16)(torch.zeros(5, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        cell: str,
        in_features: int,
        num_classes: int,
        *,
        hidden: int = 64,
        layers: int = 1,
        head: str = "linear",
    ):
        super().__init__()
        kind = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.cell = cell
        self.rnn = kind(in_features, hidden, num_layers=layers, batch_first=True)
        self.head = _head(hidden, num_classes, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` of sequences ``(B, T, F)``."""
        out, _ = self.rnn(x)
        return self.head(out[:, -1])  # type: ignore[no-any-return]
