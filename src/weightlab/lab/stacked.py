"""K copies of one lab architecture as one batched model: every parameter has a leading K axis.

Slice ``k`` of a stacked model is the plain model of :mod:`weightlab.lab.models`
with its own parameters; the slices never mix:

* **mlp** -- each layer is one ``torch.baddbmm``: inputs ``(K, B, F)`` times
  weights ``(K, F, H)`` plus biases ``(K, 1, H)``.
* **cnn** -- each convolution is a grouped convolution with ``groups=K``: the
  K slices' channels sit side by side, ``(B, K*C_in, H, W)``, so group ``k``
  sees only slice ``k``'s channels and weights; pooling is per channel; the
  head is a ``bmm``.
* **gru**, **lstm** -- a loop over the ``T`` steps does one batched matmul of
  the state ``(K, B, H)`` with the recurrent weights ``(K, H, G*H)`` and the
  gate arithmetic of ``torch.nn.GRU`` / ``torch.nn.LSTM`` (same gates, same
  two bias vectors), as one hand-written autograd function per layer
  (:class:`_RecurrentLayer`): no graph of ~10 nodes per step, biases folded
  into the matmuls, weight gradients accumulated step by step, and chunks of
  slices so each step's tensors stay in the L2 cache.

Inputs are ``(K, B, *shape)``: each slice reads its own mini-batch.
:func:`weightlab.lab.architectures.build_stacked` initialises slice ``k`` by
building the plain model with seed ``seeds[k]`` and copying its parameters in;
:meth:`StackedModel.export` copies slice ``k`` back out into a plain model.
:class:`VmapStack` stacks any plain model with ``torch.func`` (the default of
an architecture registered without a hand-batched twin).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.errors import InvalidValueError, expected
from weightlab.lab.models import CNN, MLP, RNN, CosineLinear

__all__ = [
    "StackedCNN",
    "StackedHead",
    "StackedMLP",
    "StackedModel",
    "StackedRNN",
    "VmapStack",
    "replace_slices",
    "select_slices",
]


def _stack(tensors: Sequence[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach().clone() for t in tensors]))


def _param(module: nn.Module, name: str) -> torch.Tensor:
    """``module.<name>`` as a tensor (``nn.Module.__getattr__`` is typed loosely)."""
    value = getattr(module, name)
    assert isinstance(value, torch.Tensor)
    return value


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


def select_slices(
    model: StackedModel,
    index: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    sources: Sequence[list[torch.Tensor]] = (),
) -> None:
    """Keep only the slices ``index`` (in that order) of a stack, in place, and of its optimizer.

    Every parameter and buffer of ``model`` has the slice axis first, so the
    stack shrinks by ``index_select`` on dim 0 (each parameter is replaced by
    a new one, in the model and in ``optimizer``); so do the optimizer's state
    tensors of each parameter's shape (momentum, Adam's moments) and the
    tensors of each list in ``sources`` (one per parameter, e.g. a best
    checkpoint). Training the kept slices on is exactly training them in a
    stack of their own (every update rule is element-wise, see
    :mod:`weightlab.lab.optim`).

    Example:
        >>> stack = VmapStack([nn.Linear(3, 2) for _ in range(3)])
        >>> x = torch.randn(3, 4, 3)
        >>> before = stack(x)
        >>> select_slices(stack, torch.tensor([2, 0]))
        >>> stack.k, torch.allclose(stack(x[[2, 0]]), before[[2, 0]])
        (2, True)
    """
    k = model.k
    with torch.no_grad():
        replace_slices(model, lambda t: t.index_select(0, index.to(t.device)), optimizer)
        for tensors in sources:
            tensors[:] = [t.index_select(0, index.to(t.device)) for t in tensors]
    for mod in model.modules():
        if isinstance(mod, StackedModel) or (hasattr(mod, "k") and mod.k == k):
            setattr(mod, "k", len(index))  # noqa: B010 - nn.Module types its attributes


def replace_slices(
    model: nn.Module,
    change: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Replace every parameter ``p`` of ``model`` by ``nn.Parameter(change(p))``, and its state.

    Buffers with the model's slice axis change too. New parameter objects
    (rather than a new ``.data``) keep autograd's bookkeeping of shapes
    right; ``optimizer``'s groups and state follow them, state tensors of the
    parameter's shape passed through ``change``.
    """
    swap: dict[int, nn.Parameter] = {}
    k = getattr(model, "k", None)
    for mod in model.modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            new = nn.Parameter(change(p.detach()), requires_grad=p.requires_grad)
            mod._parameters[name] = new
            swap[id(p)] = new
            if optimizer is not None and p in optimizer.state:
                state = optimizer.state.pop(p)
                optimizer.state[new] = {
                    key: change(v) if torch.is_tensor(v) and v.shape == p.shape else v
                    for key, v in state.items()
                }
        for name, b in list(mod._buffers.items()):
            if b is not None and b.dim() > 0 and b.shape[0] == k:
                mod._buffers[name] = change(b)
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["params"] = [swap.get(id(p), p) for p in group["params"]]


class VmapStack(StackedModel):
    """K copies of any plain model, run with ``torch.func.vmap`` over stacked parameters.

    The parameters (and buffers) of the K models are stacked along a new
    leading axis (``torch.func.stack_module_state``); ``forward`` maps the
    plain model over the slices with ``torch.func.functional_call``. Slower
    than a hand-batched twin, exact all the same.

    Example:
        >>> models = [nn.Linear(3, 2), nn.Linear(3, 2)]
        >>> stack = VmapStack(models)
        >>> x = torch.randn(2, 5, 3)
        >>> torch.allclose(stack(x)[1], models[1](x[1]))
        True
    """

    _template: nn.Module

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise InvalidValueError(
                expected("models", "to hold at least one model", "[]", "Pass one per slice.")
            )
        self.k = len(models)
        params, buffers = torch.func.stack_module_state(list(models))
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        for i, name in enumerate(self._param_names):
            self.register_parameter(f"p{i}", nn.Parameter(params[name].detach().clone()))
        for i, name in enumerate(self._buffer_names):
            self.register_buffer(f"b{i}", buffers[name].detach().clone())
        # the structure to call, without parameters of its own (not a submodule)
        object.__setattr__(self, "_template", copy.deepcopy(models[0]).to("meta"))

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = {n: _param(self, f"p{i}") for i, n in enumerate(self._param_names)}
        buffers = {n: _param(self, f"b{i}") for i, n in enumerate(self._buffer_names)}
        return params, buffers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of inputs ``(K, B, *shape)``."""
        template = self._template

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor) -> Any:
            return torch.func.functional_call(template, (p, b), (xb,))

        params, buffers = self._state()
        return torch.func.vmap(one)(params, buffers, x)  # type: ignore[no-any-return]

    def export(self, k: int, model: nn.Module) -> nn.Module:
        """Copy slice ``k`` into ``model`` (a plain model of the same architecture and sizes)."""
        self._check_k(k)
        params, buffers = self._state()
        own = dict(model.named_parameters()) | dict(model.named_buffers())
        with torch.no_grad():
            for name, value in (params | buffers).items():
                own[name].copy_(value[k])
        return model


class StackedHead(nn.Module):
    r"""K heads of one kind: linear (``baddbmm``) or cosine (unit features, unit class columns).

    ``weight`` is ``(K, F, C)``; a linear head also has ``bias`` ``(K, 1, C)``.
    A cosine head (:class:`~weightlab.lab.models.CosineLinear`) computes
    :math:`z_{k,b,c} = \hat f_{k,b} \cdot \hat w_{k,:,c}`.
    """

    def __init__(self, heads: Sequence[nn.Module]):
        super().__init__()
        self.cosine = isinstance(heads[0], CosineLinear)
        self.weight = _stack([_param(h, "weight").t() for h in heads])
        self.bias = None if self.cosine else _stack([_param(h, "bias").unsqueeze(0) for h in heads])

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of features ``(K, B, F)``."""
        if self.bias is None:
            return torch.bmm(F.normalize(f, dim=-1), F.normalize(self.weight, dim=1))
        return torch.baddbmm(self.bias, f, self.weight)

    def export(self, k: int, head: nn.Module) -> None:
        """Copy slice ``k`` into the plain head ``head``."""
        with torch.no_grad():
            _param(head, "weight").copy_(self.weight[k].t())
            if self.bias is not None:
                _param(head, "bias").copy_(self.bias[k, 0])


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
        hidden = [list(model.net)[:-1] for model in models]  # the last module is the head
        linears = [[m for m in mods if isinstance(m, nn.Linear)] for mods in hidden]
        depth = len(linears[0])
        self.weights = nn.ParameterList(
            [_stack([lin[i].weight.t() for lin in linears]) for i in range(depth)]
        )
        self.biases = nn.ParameterList(
            [_stack([lin[i].bias.unsqueeze(0) for lin in linears]) for i in range(depth)]
        )
        self.head = StackedHead([list(model.net)[-1] for model in models])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of inputs ``(K, B, F)``."""
        for w, b in zip(self.weights, self.biases, strict=True):
            x = torch.relu_(torch.baddbmm(b, x, w))  # baddbmm keeps no output for its backward
        return self.head(x)  # type: ignore[no-any-return]

    def export(self, k: int, model: nn.Module) -> nn.Module:  # noqa: D102
        self._check_k(k)
        mlp: MLP = _expect(model, MLP)
        layers = list(mlp.net)
        linears = [m for m in layers[:-1] if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, self.weights, self.biases, strict=True):
                lin.weight.copy_(w[k].t())
                _param(lin, "bias").copy_(b[k, 0])
        self.head.export(k, layers[-1])
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
            [_stack([_param(c[i], "bias") for c in convs]) for i in range(len(convs[0]))]
        )
        self.head = StackedHead([m.head for m in models])
        self._layout = [type(m) for m in models[0].features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of images ``(K, B, C_in, H, W)``."""
        k, b = x.shape[:2]
        h = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])  # (B, K*C_in, H, W)
        # channels-last: oneDNN's grouped convolution and max pooling are several
        # times faster in this layout on the CPU than in NCHW.
        h = h.contiguous(memory_format=torch.channels_last)
        i = 0
        layout = self._layout
        for j, kind in enumerate(layout):
            if kind is nn.Conv2d:
                w = self.conv_w[i]
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), self.conv_b[i].reshape(-1),
                             padding=1, groups=k)  # fmt: skip
                i += 1
            elif kind is nn.ReLU:
                if j + 1 < len(layout) and layout[j + 1] is nn.MaxPool2d:
                    # max pooling commutes with ReLU (both monotone), values and
                    # gradients alike; pooling first leaves a 4x smaller ReLU
                    h = F.max_pool2d(h, 2)
                h = torch.relu_(h)  # its input is not kept for a backward
            elif j == 0 or layout[j - 1] is not nn.ReLU:
                h = F.max_pool2d(h, 2)
        flat = h.reshape(b, k, -1).transpose(0, 1)  # (K, B, C_out*H'*W')
        return self.head(flat)  # type: ignore[no-any-return]

    def export(self, k: int, model: nn.Module) -> nn.Module:  # noqa: D102
        self._check_k(k)
        cnn: CNN = _expect(model, CNN)
        convs = [m for m in cnn.features if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for conv, w, b in zip(convs, self.conv_w, self.conv_b, strict=True):
                conv.weight.copy_(w[k])
                _param(conv, "bias").copy_(b[k])
        self.head.export(k, cnn.head)
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
        self.head = StackedHead([m.head for m in models])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, C)`` of sequences ``(K, B, T, F)``."""
        seq = x.transpose(1, 2)  # time-major per slice (K, T, B, F), a view
        h = x.new_zeros(0)
        depth = len(self.w_ih)
        for layer in range(depth):
            full = layer + 1 < depth  # a lower layer hands all its states up
            seq, h = _RecurrentLayer.apply(  # type: ignore[no-untyped-call]
                self.cell,
                seq,
                self.w_ih[layer],
                self.b_ih[layer],
                self.w_hh[layer],
                self.b_hh[layer],
                full,
            )
        return self.head(h)  # type: ignore[no-any-return]

    def export(self, k: int, model: nn.Module) -> nn.Module:  # noqa: D102
        self._check_k(k)
        rnn: RNN = _expect(model, RNN)
        with torch.no_grad():
            for i in range(len(self.w_ih)):
                getattr(rnn.rnn, f"weight_ih_l{i}").copy_(self.w_ih[i][k].t())
                getattr(rnn.rnn, f"weight_hh_l{i}").copy_(self.w_hh[i][k].t())
                getattr(rnn.rnn, f"bias_ih_l{i}").copy_(self.b_ih[i][k, 0])
                getattr(rnn.rnn, f"bias_hh_l{i}").copy_(self.b_hh[i][k, 0])
        self.head.export(k, rnn.head)
        return model


#: Rows (slices x batch) per chunk in :class:`_RecurrentLayer` when torch runs one intra-op
#: thread: a chunk's per-step gate tensors stay in the L2 cache (8 slices of a batch of
#: 64; with more threads the whole stack is one chunk, whose ops the threads share).
RNN_CHUNK_ROWS = 512


def _state_buffer(seq: torch.Tensor, t: int, hid: int) -> torch.Tensor:
    """The states ``s`` (T+1, kc, B, H+1) of a chunk: ``s[i] = [h_{i-1}, 1]``, ``h_{-1} = 0``.

    Only the ones column and ``h_{-1}`` are filled; the steps write the rest.
    """
    kc, tb, _ = seq.shape
    s = seq.new_empty(t + 1, kc, tb // t, hid + 1)
    s[..., hid] = 1.0
    s[0, ..., :hid] = 0.0
    return s


def _gru_forward(
    seq: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, t: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``kc`` slices over all ``t`` steps.

    ``seq`` (kc, T*B, F+1) and the weights (kc, F+1, 3H), (kc, H+1, 3H) carry
    the biases as a last row, matched by a column of ones in the inputs and
    states, so every projection is one ``bmm`` with no bias to broadcast. The
    input weights' gate columns are ``[n, r, z]``, the recurrent ones' PyTorch's
    ``[r, z, n]`` (see :func:`_gru_step`). ``r`` and ``z`` accumulate both
    projections in one output (``baddbmm_``), so they take no separate add.
    Returns the states ``s`` (T+1, kc, B, H+1) (``s[i]`` = ``[h_{i-1}, 1]``,
    ``h_{-1} = 0``) and the saved gates: the recurrent projection of ``n``
    ``ghn`` (T, kc, B, H), sigmoid gates ``rz`` (T, kc, B, 2H), tanh gate
    ``n`` (T, kc, B, H).
    """
    kc, tb, _ = seq.shape
    b, hid = tb // t, w_hh.shape[1] - 1
    seq_t = seq.view(kc, t, b, -1)
    wi_n, wi_rz = w_ih[..., :hid].contiguous(), w_ih[..., hid:].contiguous()
    wh_rz, wh_n = w_hh[..., : 2 * hid].contiguous(), w_hh[..., 2 * hid :].contiguous()
    # step-major buffers: every step's slice is contiguous, so the batched
    # matmuls write and read it in place (a strided bmm output falls back to a loop)
    s = _state_buffer(seq, t, hid)
    ghn = seq.new_empty(t, kc, b, hid)
    rz = seq.new_empty(t, kc, b, 2 * hid)
    n_all = seq.new_empty(t, kc, b, hid)
    for i in range(t):
        x, rzi, n = seq_t[:, i], rz[i], n_all[i]  # x: this step's input, while it is in cache
        torch.bmm(x, wi_rz, out=rzi)
        rzi.baddbmm_(s[i], wh_rz).sigmoid_()
        torch.bmm(s[i], wh_n, out=ghn[i])
        torch.bmm(x, wi_n, out=n)
        n.addcmul_(rzi[..., :hid], ghn[i]).tanh_()
        # (1 - z) * n + z * h
        torch.lerp(n, s[i, ..., :hid], rzi[..., hid:], out=s[i + 1, ..., :hid])
    return s, ghn, rz, n_all


#: One backward step of a cell: ``step(i, dh)`` with ``dh`` the gradient of state ``h_i``
#: returns the gradients of step ``i``'s input projection and recurrent projection, and
#: the part of ``dL/dh_{i-1}`` that does not pass through the recurrent matmul (or None).
BackwardStep = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def _recurrent_backward(
    seq: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    states: torch.Tensor,
    d_outs: torch.Tensor | None,
    d_last: torch.Tensor | None,
    need_seq: bool,
    step: BackwardStep,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The backward loop of one chunk of slices, shared by the cells: (d_seq, d_w_ih, d_w_hh).

    ``states`` are the forward's ``s`` (T+1, kc, B, H+1). Per step, from the
    last: add the gradient of the step's output (``d_outs``), let ``step``
    give the projections' gradients, accumulate the weight (and bias, the last
    rows) gradients with ``baddbmm_``, and carry ``dL/dh`` back through the
    recurrent weights.
    """
    t1, kc, b, hid1 = states.shape
    t, hid = t1 - 1, hid1 - 1
    d_w_hh = states.new_zeros(w_hh.shape)
    d_w_ih = states.new_zeros(w_ih.shape)
    dh = d_last if d_last is not None else states.new_zeros(kc, b, hid)
    w_hh_t = w_hh[:, :hid].transpose(1, 2).contiguous()
    w_ih_t = w_ih[:, :-1].transpose(1, 2).contiguous() if need_seq else None
    seq_t = seq.view(kc, t, b, -1)
    d_seq = []
    for i in reversed(range(t)):
        if d_outs is not None:
            dh = dh + d_outs[i]
        d_in, d_rec, kept = step(i, dh)
        d_w_hh.baddbmm_(states[i].transpose(1, 2), d_rec)
        d_w_ih.baddbmm_(seq_t[:, i].transpose(1, 2), d_in)
        if w_ih_t is not None:
            d_seq.append(torch.bmm(d_in, w_ih_t))
        # kept is the step's own fresh tensor: accumulating into it saves baddbmm's copy
        dh = torch.bmm(d_rec, w_hh_t) if kept is None else kept.baddbmm_(d_rec, w_hh_t)
    d_x = torch.stack(d_seq[::-1], 1) if d_seq else None  # (kc, T, B, F)
    return d_x, d_w_ih, d_w_hh


_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # grad * y * (1 - y), out=
_tanh_backward = torch.ops.aten.tanh_backward.grad_input  # grad * (1 - y^2), out=


def _gru_step(saved: tuple[torch.Tensor, ...]) -> BackwardStep:
    """The GRU's backward step over the tensors :func:`_gru_forward` saved.

    Per step one buffer ``[dn | dr | dz | dn * r]`` (kc, B, 4H) holds both
    projections' gradients without a copy: its first three blocks are the
    input projection's ``[n, r, z]``, its last three the recurrent one's
    ``[r, z, n]``.
    """
    s, ghn, rz, n_all = saved
    hid = n_all.shape[-1]

    def step(i: int, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rzi, n = rz[i], n_all[i]
        r, z = rzi[..., :hid], rzi[..., hid:]
        grads = dh.new_empty(*dh.shape[:2], 4 * hid)
        d_n = grads[..., :hid]
        # dL/dn = dh * (1 - z), through tanh
        _tanh_backward(torch.addcmul(dh, dh, z, value=-1.0), n, grad_input=d_n)
        # dL/dr = dL/dn * ghn, dL/dz = dh * (h_prev - n), through the sigmoids
        _sigmoid_backward(d_n * ghn[i], r, grad_input=grads[..., hid : 2 * hid])
        _sigmoid_backward(
            torch.sub(s[i, ..., :hid], n).mul_(dh), z, grad_input=grads[..., 2 * hid : 3 * hid]
        )
        torch.mul(d_n, r, out=grads[..., 3 * hid :])  # the recurrent n projection's gradient
        return (
            grads[..., : 3 * hid],
            grads[..., hid:],
            dh * z,
        )  # h_{i-1} also reaches h_i as z * h_{i-1}

    return step


def _lstm_forward(
    seq: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, t: int
) -> tuple[torch.Tensor, ...]:
    """Run ``kc`` LSTM slices over all ``t`` steps.

    ``seq`` (kc, T*B, F+1) and the weights (kc, F+1, 4H), (kc, H+1, 4H) carry
    the biases as a last row (as in :func:`_gru_forward`); the gate columns
    are ordered ``[i, f, o, g]`` so the three sigmoid gates are one op.
    Returns the states ``s`` (T+1, kc, B, H+1) (``s[i]`` = ``[h_{i-1}, 1]``),
    the cells ``c`` (T+1, kc, B, H) (``c[0] = 0``), and the saved gates:
    ``ifo`` (T, kc, B, 3H), ``g`` (T, kc, B, H) and ``tanh(c)`` (T, kc, B, H).
    """
    kc, tb, _ = seq.shape
    b, hid = tb // t, w_hh.shape[1] - 1
    seq_t = seq.view(kc, t, b, -1)
    s = _state_buffer(seq, t, hid)
    c = seq.new_zeros(t + 1, kc, b, hid)
    ifo = seq.new_empty(t, kc, b, 3 * hid)
    g_all = seq.new_empty(t, kc, b, hid)
    tc = seq.new_empty(t, kc, b, hid)
    for i in range(t):
        pre = torch.bmm(seq_t[:, i], w_ih)
        pre.baddbmm_(s[i], w_hh)
        torch.sigmoid(pre[..., : 3 * hid], out=ifo[i])
        torch.tanh(pre[..., 3 * hid :], out=g_all[i])
        torch.mul(ifo[i, ..., hid : 2 * hid], c[i], out=c[i + 1])  # f * c
        c[i + 1].addcmul_(ifo[i, ..., :hid], g_all[i])  # + i * g
        torch.tanh(c[i + 1], out=tc[i])
        torch.mul(ifo[i, ..., 2 * hid :], tc[i], out=s[i + 1, ..., :hid])  # o * tanh(c)
    return s, c, ifo, g_all, tc


def _lstm_step(saved: tuple[torch.Tensor, ...]) -> BackwardStep:
    """The LSTM's backward step over the tensors :func:`_lstm_forward` saved (it carries dL/dc)."""
    _, c, ifo, g_all, tc = saved
    hid = tc.shape[-1]
    one = tc.new_ones(())
    dc = tc.new_zeros(tc.shape[1:])  # dL/dc of the step after, carried back

    def step(i: int, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        nonlocal dc
        gates, g, tci = ifo[i], g_all[i], tc[i]
        dpre = tc.new_empty(*dh.shape[:2], 4 * hid)  # gradient of the pre-activations [i f o g]
        raw = tc.new_empty(*dh.shape[:2], 3 * hid)  # gradient of the gates i, f, o
        # dL/dc = dc (from the next step) + dh * o * (1 - tanh(c)^2)
        dc = torch.addcmul(dc, dh * gates[..., 2 * hid :], torch.addcmul(one, tci, tci, value=-1.0))
        torch.mul(dc, g, out=raw[..., :hid])  # dL/di
        torch.mul(dc, c[i], out=raw[..., hid : 2 * hid])  # dL/df
        torch.mul(dh, tci, out=raw[..., 2 * hid :])  # dL/do
        sd = torch.addcmul(gates, gates, gates, value=-1.0)  # sigmoid derivatives
        torch.mul(raw, sd, out=dpre[..., : 3 * hid])
        dg = torch.mul(dc, gates[..., :hid])  # dL/dg = dc * i, then through tanh
        torch.mul(dg, torch.addcmul(one, g, g, value=-1.0), out=dpre[..., 3 * hid :])
        dc = dc * gates[..., hid : 2 * hid]  # dL/dc_{i-1} = dc * f
        return dpre, dpre, None  # h_{i-1} reaches h_i only through the recurrent matmul

    return step


#: The gate-column orders of a cell's (input, recurrent) weights inside
#: :class:`_RecurrentLayer`, given ``H``; None keeps PyTorch's order.
GateOrder = Callable[[int, torch.device], tuple[torch.Tensor | None, torch.Tensor | None]]


def _gru_gate_order(hid: int, device: torch.device) -> tuple[torch.Tensor, None]:
    """The GRU's input gate columns ``[r, z, n]`` as ``[n, r, z]``; recurrent ones unchanged."""
    return torch.arange(3 * hid, device=device).roll(hid), None


def _lstm_gate_order(hid: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of PyTorch's LSTM gates ``[i, f, g, o]`` in the order ``[i, f, o, g]`` (both)."""
    i = torch.arange(hid, device=device)
    order = torch.cat([i, i + hid, i + 3 * hid, i + 2 * hid])
    return order, order


#: Per cell: (forward of one chunk, its backward step, gate-column orders).
_CELLS: dict[str, tuple[Callable[..., tuple[torch.Tensor, ...]], Callable[..., Any], GateOrder]] = {
    "gru": (_gru_forward, _gru_step, _gru_gate_order),
    "lstm": (_lstm_forward, _lstm_step, _lstm_gate_order),
}


class _RecurrentLayer(torch.autograd.Function):
    """One GRU or LSTM layer of K slices over all ``T`` steps, with a hand-written backward.

    Takes the time-major inputs ``(K, T, B, F)`` (any strides). Forward: per
    chunk of slices (:data:`RNN_CHUNK_ROWS`), per step the ``bmm`` of the
    step's input and of the state with the recurrent weights, and the gate
    arithmetic of ``torch.nn.GRU`` / ``torch.nn.LSTM`` (same gates and biases),
    written into preallocated buffers instead of an autograd graph of ~10 nodes
    per step. The biases ride in the matmuls as a last weight row against a
    column of ones (no broadcast copies); gate columns are reordered inside
    where it saves work (the LSTM's to ``[i, f, o, g]``, the GRU's input
    columns to ``[n, r, z]``) and the gradients are put back in PyTorch's
    order. Backward: per step the element-wise gate derivatives, the weight
    (and bias) gradients accumulated with ``baddbmm_`` and one ``bmm`` for the
    state gradient. Chunks of slices keep each step's tensors in the L2 cache.
    Returns all states ``(K, T, B, H)`` (empty unless ``full``) and the last
    one ``(K, B, H)``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        cell: str,
        seq: torch.Tensor,
        w_ih: torch.Tensor,
        b_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_hh: torch.Tensor,
        full: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        run_forward, _, gate_order = _CELLS[cell]
        k, t, b, f = seq.shape
        hid = w_hh.shape[1]
        seq1 = seq.new_empty(k, t, b, f + 1)  # one copy: time-major, with the ones column
        seq1[..., :f] = seq
        seq1[..., f] = 1.0
        seq1 = seq1.view(k, t * b, f + 1)
        w_ih1, w_hh1 = torch.cat([w_ih, b_ih], 1), torch.cat([w_hh, b_hh], 1)
        order = gate_order(hid, seq.device)
        if order[0] is not None:
            w_ih1 = w_ih1[..., order[0]]
        if order[1] is not None:
            w_hh1 = w_hh1[..., order[1]]
        # one thread: chunks of slices; more: whole-stack ops, which the threads can share
        size = max(1, RNN_CHUNK_ROWS // b) if torch.get_num_threads() == 1 else k
        chunks = [(c, min(c + size, k)) for c in range(0, k, size)]
        saved = [run_forward(seq1[c:e], w_ih1[c:e], w_hh1[c:e], t) for c, e in chunks]
        ctx.cell, ctx.order, ctx.chunks, ctx.saved_gates = cell, order, chunks, saved
        ctx.save_for_backward(seq1, w_ih1, w_hh1)
        ctx.set_materialize_grads(False)
        last = _join([sv[0][t, ..., :hid] for sv in saved], 0)
        if not full:
            return last.new_empty(0), last
        outs = _join([sv[0][1:, ..., :hid] for sv in saved], 1).transpose(0, 1)
        return outs, last

    @staticmethod
    def backward(
        ctx: Any, d_outs: torch.Tensor | None, d_last: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        _, backward_step, _ = _CELLS[ctx.cell]
        seq1, w_ih1, w_hh1 = ctx.saved_tensors
        need_seq = bool(ctx.needs_input_grad[1])
        d_steps = d_outs.transpose(0, 1) if d_outs is not None and d_outs.numel() else None
        parts = [
            _recurrent_backward(
                seq1[c:e],
                w_ih1[c:e],
                w_hh1[c:e],
                saved[0],
                d_steps[:, c:e] if d_steps is not None else None,
                d_last[c:e] if d_last is not None else None,
                need_seq,
                backward_step(saved),
            )
            for (c, e), saved in zip(ctx.chunks, ctx.saved_gates, strict=True)
        ]
        d_seq = _join([p[0] for p in parts if p[0] is not None], 0) if need_seq else None
        d_w_ih = _join([p[1] for p in parts], 0)
        d_w_hh = _join([p[2] for p in parts], 0)
        if ctx.order[0] is not None:  # back to PyTorch's gate order
            d_w_ih = d_w_ih[..., torch.argsort(ctx.order[0])]
        if ctx.order[1] is not None:
            d_w_hh = d_w_hh[..., torch.argsort(ctx.order[1])]
        return (
            None,
            d_seq,
            d_w_ih[:, :-1],
            d_w_ih[:, -1:],
            d_w_hh[:, :-1],
            d_w_hh[:, -1:],
            None,
        )


def _join(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat(parts, dim)``, without the copy when there is one part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)
