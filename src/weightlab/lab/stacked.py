"""K copies of one lab architecture as one batched model: every parameter has a leading K axis.

Slice ``k`` of a stacked model is the plain model of :mod:`weightlab.lab.models`
with its own parameters; the slices never mix:

* **mlp** -- each layer is one ``torch.baddbmm``: inputs ``(K, B, F)`` times
  weights ``(K, F, H)`` plus biases ``(K, 1, H)``.
* **cnn** -- each convolution is a grouped convolution with ``groups=K``: the
  K slices' channels sit side by side, ``(B, K*C_in, H, W)``, so group ``k``
  sees only slice ``k``'s channels and weights; pooling is per channel; the
  head is a ``bmm``.
* **gru**, **lstm** -- the input projections of all ``T`` steps are one
  ``baddbmm``; then a loop over the ``T`` steps does one ``baddbmm`` of the
  state ``(K, B, H)`` with the recurrent weights ``(K, H, G*H)`` and the gate
  arithmetic of ``torch.nn.GRU`` / ``torch.nn.LSTM`` (same gate order, same
  two bias vectors).

Inputs are ``(K, B, *shape)``: each slice reads its own mini-batch.
:func:`build_stacked` initialises slice ``k`` by building the plain model with
seed ``seeds[k]`` and copying its parameters in; :meth:`StackedModel.export`
copies slice ``k`` back out into a plain model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.errors import InvalidValueError, expected
from weightlab.lab.models import CNN, MLP, RNN, build_model

__all__ = ["StackedCNN", "StackedMLP", "StackedModel", "StackedRNN", "build_stacked"]


def _stack(tensors: Sequence[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach().clone() for t in tensors]))


def _expect(model: nn.Module, kind: type[Any]) -> Any:
    if not isinstance(model, kind):
        raise InvalidValueError(
            expected("model", f"to be a {kind.__name__}", type(model).__name__, "Use build_model.")
        )
    return model


class StackedModel(nn.Module):
    """Base class: ``K`` slices; ``forward`` maps ``(K, B, *shape)`` to logits ``(K, B, C)``."""

    k: int

    def export(self, k: int, model: nn.Module) -> nn.Module:
        """Copy slice ``k``'s parameters into the plain ``model`` (built by ``build_model``)."""
        raise NotImplementedError  # pragma: no cover

    def _check_k(self, k: int) -> None:
        if not 0 <= k < self.k:
            raise InvalidValueError(
                expected("k", f"to index a slice in [0, {self.k})", repr(k), "Pick a valid slice.")
            )


class StackedMLP(StackedModel):
    """K :class:`~weightlab.lab.models.MLP` slices, one ``baddbmm`` per layer.

    Example:
        >>> models = [MLP(6, 3, hidden=4) for _ in range(2)]
        >>> stacked = StackedMLP(models)
        >>> x = torch.randn(2, 5, 6)
        >>> torch.allclose(stacked(x)[1], models[1](x[1]), atol=1e-6)
        True
    """

    def __init__(self, models: Sequence[MLP]):
        super().__init__()
        self.k = len(models)
        linears = [[m for m in model.net if isinstance(m, nn.Linear)] for model in models]
        depth = len(linears[0])
        self.weights = nn.ParameterList(
            [_stack([lin[i].weight.t() for lin in linears]) for i in range(depth)]
        )
        self.biases = nn.ParameterList(
            [_stack([lin[i].bias.unsqueeze(0) for lin in linears]) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of inputs ``(K, B, F)``."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x

    def export(self, k: int, model: nn.Module) -> nn.Module:  # noqa: D102
        self._check_k(k)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, self.weights, self.biases, strict=True):
                lin.weight.copy_(w[k].t())
                lin.bias.copy_(b[k, 0])
        return model


class StackedCNN(StackedModel):
    """K :class:`~weightlab.lab.models.CNN` slices as grouped convolutions (``groups=K``).

    Example:
        >>> models = [CNN((1, 8, 8), 3, hidden=4) for _ in range(2)]
        >>> x = torch.randn(2, 5, 1, 8, 8)
        >>> torch.allclose(StackedCNN(models)(x)[0], models[0](x[0]), atol=1e-5)
        True
    """

    def __init__(self, models: Sequence[CNN]):
        super().__init__()
        self.k = len(models)
        convs = [[m for m in model.features if isinstance(m, nn.Conv2d)] for model in models]
        self.pools = [isinstance(m, nn.MaxPool2d) for m in models[0].features]
        self.conv_w = nn.ParameterList(
            [_stack([c[i].weight for c in convs]) for i in range(len(convs[0]))]
        )
        self.conv_b = nn.ParameterList(
            [_stack([c[i].bias for c in convs]) for i in range(len(convs[0]))]
        )
        self.head_w = _stack([m.head.weight.t() for m in models])
        self.head_b = _stack([m.head.bias.unsqueeze(0) for m in models])
        self._layout = [type(m) for m in models[0].features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of images ``(K, B, C_in, H, W)``."""
        k, b = x.shape[:2]
        h = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])  # (B, K*C_in, H, W)
        # channels-last: oneDNN's grouped convolution and max pooling are several
        # times faster in this layout on the CPU than in NCHW.
        h = h.contiguous(memory_format=torch.channels_last)
        i = 0
        for kind in self._layout:
            if kind is nn.Conv2d:
                w = self.conv_w[i]
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), self.conv_b[i].reshape(-1),
                             padding=1, groups=k)  # fmt: skip
                i += 1
            elif kind is nn.ReLU:
                h = torch.relu_(h)  # a convolution's output is not kept for its backward
            else:
                h = F.max_pool2d(h, 2)
        flat = h.reshape(b, k, -1).transpose(0, 1)  # (K, B, C_out*H'*W')
        return torch.baddbmm(self.head_b, flat, self.head_w)

    def export(self, k: int, model: nn.Module) -> nn.Module:  # noqa: D102
        self._check_k(k)
        model = _expect(model, CNN)
        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for conv, w, b in zip(convs, self.conv_w, self.conv_b, strict=True):
                conv.weight.copy_(w[k])
                conv.bias.copy_(b[k])
            model.head.weight.copy_(self.head_w[k].t())
            model.head.bias.copy_(self.head_b[k, 0])
        return model


class StackedRNN(StackedModel):
    """K GRU or LSTM :class:`~weightlab.lab.models.RNN` slices: a batched cell looped over steps.

    Example:
        >>> models = [RNN("gru", 8, 3, hidden=4) for _ in range(2)]
        >>> x = torch.randn(2, 5, 6, 8)
        >>> torch.allclose(StackedRNN(models)(x)[1], models[1](x[1]), atol=1e-5)
        True
    """

    def __init__(self, models: Sequence[RNN]):
        super().__init__()
        self.k = len(models)
        self.cell = models[0].cell
        rnns = [m.rnn for m in models]
        depth = rnns[0].num_layers
        self.w_ih = nn.ParameterList(
            [_stack([getattr(r, f"weight_ih_l{i}").t() for r in rnns]) for i in range(depth)]
        )
        self.w_hh = nn.ParameterList(
            [_stack([getattr(r, f"weight_hh_l{i}").t() for r in rnns]) for i in range(depth)]
        )
        self.b_ih = nn.ParameterList(
            [_stack([getattr(r, f"bias_ih_l{i}").unsqueeze(0) for r in rnns]) for i in range(depth)]
        )
        self.b_hh = nn.ParameterList(
            [_stack([getattr(r, f"bias_hh_l{i}").unsqueeze(0) for r in rnns]) for i in range(depth)]
        )
        self.head_w = _stack([m.head.weight.t() for m in models])
        self.head_b = _stack([m.head.bias.unsqueeze(0) for m in models])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of sequences ``(K, B, T, F)``."""
        k, b, t = x.shape[:3]
        seq = x.transpose(1, 2).reshape(k, t * b, -1)  # time-major per slice
        h = x.new_zeros(0)
        for layer in range(len(self.w_ih)):
            w_hh, b_hh = self.w_hh[layer], self.b_hh[layer]
            hid = w_hh.shape[1]
            gi = torch.baddbmm(self.b_ih[layer], seq, self.w_ih[layer]).view(k, t, b, -1)
            h = x.new_zeros(k, b, hid)
            c = torch.zeros_like(h)
            outs = []
            # unbind/split/chunk rather than indexing: their backward is one
            # stack/cat, not a zero-filled full-size gradient per piece taken.
            for g in gi.unbind(1):
                gh = torch.baddbmm(b_hh, h, w_hh)
                if self.cell == "gru":
                    g_rz, g_n = g.split([2 * hid, hid], -1)
                    h_rz, h_n = gh.split([2 * hid, hid], -1)
                    r, z = torch.sigmoid(g_rz + h_rz).chunk(2, -1)
                    n = torch.tanh(torch.addcmul(g_n, r, h_n))
                    h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
                else:
                    i_f, gg, o = (g + gh).split([2 * hid, hid, hid], -1)
                    i, f = torch.sigmoid(i_f).chunk(2, -1)
                    c = torch.addcmul(f * c, i, torch.tanh(gg))
                    h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            seq = torch.stack(outs, 1).view(k, t * b, hid)
        return torch.baddbmm(self.head_b, h, self.head_w)

    def export(self, k: int, model: nn.Module) -> nn.Module:  # noqa: D102
        self._check_k(k)
        model = _expect(model, RNN)
        with torch.no_grad():
            for i in range(len(self.w_ih)):
                getattr(model.rnn, f"weight_ih_l{i}").copy_(self.w_ih[i][k].t())
                getattr(model.rnn, f"weight_hh_l{i}").copy_(self.w_hh[i][k].t())
                getattr(model.rnn, f"bias_ih_l{i}").copy_(self.b_ih[i][k, 0])
                getattr(model.rnn, f"bias_hh_l{i}").copy_(self.b_hh[i][k, 0])
            model.head.weight.copy_(self.head_w[k].t())
            model.head.bias.copy_(self.head_b[k, 0])
        return model


def build_stacked(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    seeds: Sequence[int],
    **model_params: Any,
) -> StackedModel:
    """Build K slices of ``arch``; slice ``k`` starts as ``build_model(..., seed=seeds[k])``.

    Args:
        arch: ``"mlp"``, ``"cnn"``, ``"gru"`` or ``"lstm"``.
        input_shape: one example as ``arch`` consumes it.
        num_classes: number of classes ``C``.
        seeds: one initialisation seed per slice (``K = len(seeds)`` >= 1).
        **model_params: ``hidden``, ``layers``.

    Example:
        >>> stacked = build_stacked("mlp", (64,), 10, seeds=[0, 1, 2], hidden=8)
        >>> single = build_model("mlp", (64,), 10, seed=2, hidden=8)
        >>> x = torch.rand(3, 4, 64)
        >>> torch.allclose(stacked(x)[2], single(x[2]), atol=1e-6)
        True
    """
    if len(seeds) == 0:
        raise InvalidValueError(
            expected("seeds", "to hold at least one seed", "[]", "Pass one seed per slice.")
        )
    models = [build_model(arch, input_shape, num_classes, seed=s, **model_params) for s in seeds]
    if arch == "mlp":
        return StackedMLP(models)  # type: ignore[arg-type]
    if arch == "cnn":
        return StackedCNN(models)  # type: ignore[arg-type]
    return StackedRNN(models)  # type: ignore[arg-type]
