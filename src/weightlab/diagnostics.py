r"""Gradient diagnostics: each class's share of each layer's gradient, with and without weights.

A class weight multiplies a class's loss term, but what reaches a layer is a
*gradient*, and how a class's loss term turns into gradient depends on the
network. These diagnostics measure it on a probe batch ``(x, y)``.

**Definition.** Let :math:`L(z)` be the scalar batch loss of the logits
:math:`z = f_\theta(x)` (for the lab's weighted mean,
:math:`L = \sum_i w_{y_i} \ell_i / \sum_i w_{y_i}`). Class ``c``'s gradient in
layer ``l`` (the parameters :math:`\theta_l` a module owns directly) is its part
of the full-batch gradient,

.. math::
    g_{l,c} = \sum_{i:\, y_i = c} \Big(\frac{\partial z_i}{\partial \theta_l}\Big)^{\top}
              \frac{\partial L}{\partial z_i},
    \qquad \sum_c g_{l,c} = \nabla_{\theta_l} L ,

and its **share** is

.. math::
    s_{l,c} = \frac{\lVert g_{l,c} \rVert_2}{\sum_{c'} \lVert g_{l,c'} \rVert_2},

the Euclidean norm taken over all of the layer's parameters at once. Shares
are in ``[0, 1]`` and sum to 1 over the classes of a layer (a layer whose
gradient is exactly zero for every class gets ``None``). For a loss that is a
(weighted) sum or mean of per-sample terms, :math:`g_{l,c}` is the gradient of
class ``c``'s summed loss term; a normalising denominator common to all classes
cancels in the share. It is computed exactly: one forward pass, then one
backward pass per class whose output gradient is :math:`\partial L/\partial z`
masked to that class's rows. With and without weights share that backward pass
when a class's rows of :math:`\partial L/\partial z` differ only by a factor
(a class weight that multiplies the class's loss terms): the norms then differ
by that factor.

The **loss mass** of class ``c`` is :math:`m_c = n_c w_c / \sum_{c'} n_{c'} w_{c'}`
(``n_c``: rows of class ``c`` in the probe batch): the fraction of the weighted
loss sum the class carries before any gradient is taken. With
:math:`w_c = 1/n_c` it is uniform.

**Update shares.** What the optimizer applies is not the gradient. Each
lab optimizer (SGD, Adam, AdamW, RMSprop) maps a gradient to an update
*element-wise*, :math:`u = -\eta\, g / d` with a per-parameter denominator
:math:`d`; class ``c``'s update in layer ``l`` is its gradient mapped through
the same :math:`d`, and its share is measured exactly as the gradient's,

.. math::
    u_{l,c} = g_{l,c} / d_l, \qquad
    r_{l,c} = \frac{\lVert u_{l,c} \rVert_2}{\sum_{c'} \lVert u_{l,c'} \rVert_2}.

:math:`d` is the preconditioner of the *next* step the optimizer would take
on the probe batch, from its state (:math:`g` below is the probe batch's full
gradient of the trial's loss, :math:`g = \sum_c g_{l,c}`, plus ``weight_decay
* p`` where that decay is an L2 term the optimizer adds to the gradient):

* **SGD** (with or without momentum, Nesterov, dampening): :math:`d = 1`, so
  update shares *equal* gradient shares. With momentum the step is
  :math:`-\eta(\mu b + g)`; the buffer :math:`b` is past gradients, which the
  probe cannot split by class, and the fresh gradient enters the step with one
  factor common to every class (1, or :math:`1+\mu` with Nesterov), which
  cancels in the share.
* **Adam / AdamW** (state ``exp_avg_sq`` :math:`v` at step :math:`t`):
  :math:`v' = \beta_2 v + (1-\beta_2) g^2`,
  :math:`d = \sqrt{v' / (1-\beta_2^{t+1})} + \epsilon` (``amsgrad``:
  :math:`\max(v_{\max}, v')`). The first moment enters the step with a factor
  :math:`(1-\beta_1)/(1-\beta_1^{t+1})` on the fresh gradient, common to every
  class. A parameter without state (before the first step) has :math:`v = 0,
  t = 0`, so :math:`d = |g| + \epsilon`: Adam's first, sign-like step
  :math:`-\eta\, g/(|g|+\epsilon)`, of which class ``c`` causes
  :math:`-\eta\, g_c/(|g|+\epsilon)`.
* **RMSprop** (state ``square_avg`` :math:`s`): :math:`s' = \alpha s +
  (1-\alpha) g^2`, :math:`d = \sqrt{s'} + \epsilon` (``centered``:
  :math:`\sqrt{s' - a'^2} + \epsilon` with the running mean
  :math:`a' = \alpha a + (1-\alpha) g`); no state: :math:`s = 0`.

The learning rate, the momentum factors above and the number of slices a
stack steps at once are common to the classes of a layer and cancel: the
shares do not depend on them. What does not cancel is :math:`d`: Adam divides
each parameter's push by the root mean square of the gradients it has
received, so a coordinate that one class dominates is pushed by about
:math:`\pm\eta` whatever that class's weight is. A class weight that scales
:math:`g_{l,c}` then scales :math:`u_{l,c}` by less: a heavily weighted class
gets a smaller share of the update than of the gradient. Weight decay is
not a class's push and is left out of :math:`u` (decoupled decay entirely;
an L2 term only enters :math:`d` through :math:`g`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from weightlab.errors import InvalidValueError, ShapeMismatchError, expected
from weightlab.functional import LossParts, cross_entropy

__all__ = [
    "PartsLoss",
    "ScalarLoss",
    "gradient_shares",
    "layer_parameters",
    "loss_mass",
    "probe_batch",
    "record_diagnostics",
    "update_shares",
]

#: ``(logits (B, C), target (B,)) -> scalar loss``.
ScalarLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: A batch loss as parts, ``(logits, target, class_weight) -> LossParts`` (the weighted
#: sum and its normaliser), as the lab's losses are (``weightlab.lab.weightings.LabLoss``).
PartsLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LossParts]

#: Default number of probe rows :func:`probe_batch` keeps.
PROBE_SIZE = 1024


def layer_parameters(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The model's *layers*: every module that owns trainable parameters directly, in order.

    A layer is named by its module path (``"net.0"``, ``"rnn"``, ``"head"``; the
    root module is ``"(root)"``); its parameters are those it registers itself
    (``recurse=False``), so a ``nn.GRU`` is one layer with all its weights.

    Example:
        >>> m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [(name, len(ps)) for name, ps in layer_parameters(m)]
        [('0', 2), ('2', 2)]
    """
    out = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            out.append((name or "(root)", params))
    return out


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
        raise ShapeMismatchError(
            expected(
                "y",
                "to be a 1-D integer tensor of class indices",
                f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}",
                "Pass the probe labels as torch.long.",
            )
        )
    if x.shape[0] != y.shape[0] or y.shape[0] == 0:
        raise ShapeMismatchError(
            expected(
                "x",
                f"to have one row per label ({y.shape[0]}, at least one)",
                f"{x.shape[0]} rows",
                "Pass matching, non-empty x and y.",
            )
        )


def _class_norms(
    model: nn.Module,
    losses: Sequence[ScalarLoss],
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> tuple[list[str], list[npt.NDArray[np.float64]], npt.NDArray[np.float64] | None]:
    """``(layers, norms, update_norms)``: ``norms[j][l, c] = ||g_{l,c}||`` per loss ``j``.

    ``update_norms[l, c] = ||g_{l,c} / d_l||`` of the first loss (the trial's)
    with ``optimizer``'s denominators (see the module docstring), ``None``
    without an optimizer.

    One forward pass serves every loss. Per class, a backward pass is run only
    when the class's rows of ``dL/dz`` are not proportional to those of a loss
    already done for that class: a class weight that multiplies the class's
    per-sample losses scales its rows of ``dL/dz`` by one factor, and the
    backward pass is linear, so the norms scale by that factor exactly (up to
    rounding: the rows must agree to 1e-5 of their largest entry); so do the
    update norms, whose denominators are fixed.
    """
    layers = layer_parameters(model)
    params = [p for _, ps in layers for p in ps]
    z = model(x)
    if z.dim() != 2 or z.shape[0] != y.shape[0]:
        raise ShapeMismatchError(
            expected("model(x)", "to be logits (B, C)", f"shape {tuple(z.shape)}",
                     "Pass a classifier and a batch it accepts.")
        )  # fmt: skip
    dzs = [torch.autograd.grad(loss(z, y), z, retain_graph=True)[0] for loss in losses]
    norms = [np.zeros((len(layers), num_classes)) for _ in losses]
    sizes = [len(ps) for _, ps in layers]
    denoms: list[torch.Tensor | None] | None = None
    updates = None
    if optimizer is not None:
        full = torch.autograd.grad(z, params, grad_outputs=dzs[0], retain_graph=True,
                                   allow_unused=True)  # fmt: skip
        denoms = _denominators(optimizer, params, full)
        updates = np.zeros((len(layers), num_classes))
    for c in range(num_classes):
        rows = y == c
        if not bool(rows.any()):
            continue
        done: list[tuple[torch.Tensor, npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        for j, dz in enumerate(dzs):
            part = dz[rows]
            found = next(((abs(a), col, up) for ref, col, up in done
                          if (a := _factor(part, ref)) is not None), None)  # fmt: skip
            if found is None:
                out = dz * rows.to(dz.dtype).unsqueeze(1)
                grads = torch.autograd.grad(
                    z, params, grad_outputs=out, retain_graph=True, allow_unused=True
                )
                column = _layer_norms(grads, sizes)
                update = _layer_norms(_divide(grads, denoms), sizes) if denoms else column
                done.append((part, column, update))
                found = (1.0, column, update)
            scale, column, update = found
            norms[j][:, c] = scale * column
            if j == 0 and updates is not None:
                updates[:, c] = scale * update
    return [name for name, _ in layers], norms, updates


def _divide(
    grads: Sequence[torch.Tensor | None], denoms: Sequence[torch.Tensor | None] | None
) -> list[torch.Tensor | None]:
    """``g / d`` per parameter (``d`` None: 1, SGD's)."""
    assert denoms is not None
    return [
        g if g is None or d is None else g.double() / d for g, d in zip(grads, denoms, strict=True)
    ]


#: The update rules the diagnostics know, by torch optimizer (AdamW subclasses Adam).
_RULES: tuple[tuple[type[torch.optim.Optimizer], str], ...] = (
    (torch.optim.SGD, "sgd"),
    (torch.optim.Adam, "adam"),
    (torch.optim.AdamW, "adam"),
    (torch.optim.RMSprop, "rmsprop"),
)


def _rule(optimizer: object) -> str:
    """``"sgd"``, ``"adam"`` or ``"rmsprop"``: the update rule of a torch optimizer."""
    for cls, rule in _RULES:
        if isinstance(optimizer, cls):
            return rule
    raise InvalidValueError(
        expected("optimizer", "to be a torch.optim SGD, Adam, AdamW or RMSprop (the update "
                 "rules the diagnostics know)", type(optimizer).__name__,
                 "Pass the optimizer that trains the model, or none for gradient shares only.")
    )  # fmt: skip


def _groups(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]
) -> list[dict[str, Any]]:
    """The parameter group of each of ``params``; raises if the optimizer does not own one."""
    owner = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    missing = [i for i, p in enumerate(params) if id(p) not in owner]
    if missing:
        raise InvalidValueError(
            expected("optimizer", "to hold every trainable parameter of the model",
                     f"{len(missing)} of {len(params)} parameters it does not hold",
                     "Pass the optimizer built over this model's parameters.")
        )  # fmt: skip
    return [owner[id(p)] for p in params]


def _step(state: Mapping[str, Any]) -> int:
    step = state.get("step", 0)
    return int(step.item() if isinstance(step, torch.Tensor) else step)


def _denominators(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    full: Sequence[torch.Tensor | None],
) -> list[torch.Tensor | None]:
    """Per parameter, the ``d`` of ``u = g / d`` (module docstring); ``None`` for SGD's ``d = 1``.

    ``full`` is the probe batch's full gradient of the trial's loss, per parameter.
    """
    rule = _rule(optimizer)
    groups = _groups(optimizer, params)
    if rule == "sgd":
        return [None] * len(params)
    out: list[torch.Tensor | None] = []
    for p, g, group in zip(params, full, groups, strict=True):
        state = optimizer.state.get(p, {})
        grad = torch.zeros_like(p, dtype=torch.float64) if g is None else g.detach().double()
        decay = float(group.get("weight_decay", 0.0))
        coupled = rule == "rmsprop" or not (
            isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay")
        )
        if decay and coupled:  # an L2 term the optimizer adds to the gradient it sees
            grad = grad + decay * p.detach().double()
        eps, t = float(group["eps"]), _step(state)
        if rule == "adam":
            beta2 = float(group["betas"][1])
            v = _state(state, "exp_avg_sq", p) * beta2 + (1 - beta2) * grad.square()
            if group.get("amsgrad"):
                v = torch.maximum(_state(state, "max_exp_avg_sq", p), v)
            out.append((v / (1 - beta2 ** (t + 1))).sqrt() + eps)
        else:
            alpha = float(group["alpha"])
            sq = _state(state, "square_avg", p) * alpha + (1 - alpha) * grad.square()
            if group.get("centered"):
                mean = _state(state, "grad_avg", p) * alpha + (1 - alpha) * grad
                sq = (sq - mean.square()).clamp_min(0.0)
            out.append(sq.sqrt() + eps)
    return out


def _state(state: Mapping[str, Any], key: str, p: torch.Tensor) -> torch.Tensor:
    """A state tensor as float64 (zeros where the optimizer has not stepped ``p`` yet)."""
    v = state.get(key)
    return torch.zeros_like(p, dtype=torch.float64) if v is None else v.detach().double()


def _rule_info(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> dict[str, Any]:
    """What :func:`update_shares` reports of the optimizer: its class, rule, preconditioner."""
    rule = _rule(optimizer)
    steps = [_step(optimizer.state.get(p, {})) for p in params]
    stepped = sum(t > 0 for t in steps)
    if rule == "sgd":
        source = "identity"
    elif stepped == len(steps):
        source = "state"
    else:
        source = "first step" if stepped == 0 else "mixed"
    return {"optimizer": type(optimizer).__name__, "rule": rule, "preconditioner": source,
            "step": max(steps, default=0)}  # fmt: skip


def _factor(part: torch.Tensor, ref: torch.Tensor) -> float | None:
    """``a`` with ``part == a * ref`` (to 1e-5 of ``part``'s largest entry), or None."""
    ref_sq = float((ref.double() ** 2).sum())
    scale = float(part.abs().max())
    if ref_sq == 0.0:
        return 0.0 if scale == 0.0 else None
    a = float((part.double() * ref.double()).sum()) / ref_sq
    if float((part.double() - a * ref.double()).abs().max()) > 1e-5 * scale:
        return None
    return a


def _layer_norms(
    grads: Sequence[torch.Tensor | None], sizes: Sequence[int]
) -> npt.NDArray[np.float64]:
    """The Euclidean norm of each layer's gradients (a layer owns ``sizes[l]`` parameters)."""
    zero = torch.zeros((), dtype=torch.float64)
    squares = [zero if g is None else g.detach().double().square().sum() for g in grads]
    per_param = torch.stack(squares).tolist() if squares else []
    out, i = [], 0
    for n in sizes:
        out.append(math.sqrt(sum(per_param[i : i + n])))
        i += n
    return np.asarray(out, dtype=np.float64)


def _shares(norms: npt.NDArray[np.float64]) -> list[list[float | None]]:
    out: list[list[float | None]] = []
    for row in norms:
        total = float(row.sum())
        if not math.isfinite(total) or total <= 0.0:
            out.append([None] * len(row))
        else:
            out.append([float(v / total) for v in row])
    return out


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def gradient_shares(
    model: nn.Module,
    loss: ScalarLoss,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int | None = None,
) -> dict[str, Any]:
    r"""Each class's share of each layer's gradient norm for one scalar loss.

    Args:
        model: a plain ``nn.Module`` mapping ``x`` to logits ``(B, C)``.
        loss: ``(logits, target) -> scalar``, e.g.
            ``lambda z, t: F.cross_entropy(z, t, weight=w)``.
        x: probe inputs ``(B, ...)``.
        y: probe labels ``(B,)``, class indices.
        num_classes: ``C`` (default: the logits' width).

    Returns:
        ``{"layers": [names], "classes": [0..C-1], "share": [[layer][class]],
        "norm": [[layer][class]]}`` with ``share`` as defined in the module
        docstring (``None`` for a layer without any gradient) and ``norm`` the
        raw :math:`\lVert g_{l,c} \rVert`.

    Example:
        >>> torch.manual_seed(0) and None
        >>> m = nn.Linear(3, 2)
        >>> x, y = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 1])
        >>> d = gradient_shares(m, nn.functional.cross_entropy, x, y)
        >>> d["layers"], [round(sum(r), 6) for r in d["share"]]
        (['(root)'], [1.0])
    """
    _check_batch(x, y)
    with torch.no_grad():
        c = num_classes if num_classes is not None else int(model(x[:1]).shape[-1])
    layers, (norms,), _ = _class_norms(model, [loss], x, y.long(), c)
    return _shares_dict(layers, norms)


def update_shares(
    model: nn.Module,
    loss: ScalarLoss,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    num_classes: int | None = None,
) -> dict[str, Any]:
    r"""Each class's share of each layer's parameter *update* under ``optimizer``, for one loss.

    Class ``c``'s update in layer ``l`` is :math:`u_{l,c} = g_{l,c} / d_l`, its
    gradient through the denominator :math:`d` of the optimizer's next step
    (from its state; Adam's first-step :math:`|g| + \epsilon` before it has
    stepped), and its share is :math:`\lVert u_{l,c} \rVert / \sum_{c'}
    \lVert u_{l,c'} \rVert`, the rule of :func:`gradient_shares` (see the
    module docstring for :math:`d` per optimizer). Under SGD, with or without
    momentum, update shares equal gradient shares. The optimizer is only read.

    Args:
        model: a plain ``nn.Module`` mapping ``x`` to logits ``(B, C)``.
        loss: ``(logits, target) -> scalar``.
        x: probe inputs ``(B, ...)``.
        y: probe labels ``(B,)``, class indices.
        optimizer: a ``torch.optim`` SGD, Adam, AdamW or RMSprop that holds
            every trainable parameter of ``model``.
        num_classes: ``C`` (default: the logits' width).

    Returns:
        :func:`gradient_shares`' dict with the update's ``share`` and ``norm``
        (:math:`\lVert u_{l,c} \rVert` per unit learning rate), and
        ``optimizer`` (its class name), ``rule`` (``"sgd"``, ``"adam"``,
        ``"rmsprop"``), ``preconditioner`` (``"identity"`` for SGD;
        ``"state"``, ``"first step"`` or ``"mixed"``) and ``step`` (the state's
        largest step count).

    Raises:
        InvalidValueError: another optimizer, or one that does not hold the
            model's parameters.

    Example:
        >>> torch.manual_seed(0) and None
        >>> m = nn.Linear(3, 2)
        >>> x, y = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 1])
        >>> sgd = torch.optim.SGD(m.parameters(), lr=0.1)
        >>> u = update_shares(m, nn.functional.cross_entropy, x, y, sgd)
        >>> g = gradient_shares(m, nn.functional.cross_entropy, x, y)
        >>> u["rule"], bool(np.allclose(u["share"], g["share"]))
        ('sgd', True)
    """
    _check_batch(x, y)
    with torch.no_grad():
        c = num_classes if num_classes is not None else int(model(x[:1]).shape[-1])
    params = [p for _, ps in layer_parameters(model) for p in ps]
    info = _rule_info(optimizer, params)
    layers, _, updates = _class_norms(model, [loss], x, y.long(), c, optimizer)
    assert updates is not None
    return {**_shares_dict(layers, updates), **info}


def _shares_dict(layers: list[str], norms: npt.NDArray[np.float64]) -> dict[str, Any]:
    return {
        "layers": layers,
        "classes": list(range(norms.shape[1])),
        "share": _shares(norms),
        "norm": [[_finite(v) for v in row] for row in norms],
    }


def loss_mass(
    y: torch.Tensor | npt.ArrayLike, class_weight: npt.ArrayLike, num_classes: int
) -> list[float]:
    r"""Effective loss mass per class, :math:`n_c w_c / \sum_{c'} n_{c'} w_{c'}`.

    Example:
        >>> loss_mass(torch.tensor([0, 0, 0, 1]), [1 / 3, 1.0], 2)
        [0.5, 0.5]
    """
    labels = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.float64)
    mass = counts * np.asarray(class_weight, dtype=np.float64)
    total = mass.sum()
    return [float(v) for v in (mass / total if total > 0 else mass)]


def weighted_cross_entropy_parts(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor
) -> LossParts:
    """Cross-entropy with class weights as parts, ``(sum_i w_y l_i, sum_i w_y)`` (the default)."""
    parts = cross_entropy(
        logits, target, class_weight=class_weight, reduction="parts", validate_args=False
    )
    assert isinstance(parts, LossParts)
    return parts


def _scalar_loss(loss_fn: PartsLoss | None, w: torch.Tensor) -> ScalarLoss:
    """The weighted mean of a parts loss with weights ``w``: a scalar loss of (logits, target)."""
    fn = loss_fn or weighted_cross_entropy_parts

    def scalar(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return fn(z, t, w.to(z.dtype)).mean()

    return scalar


def record_diagnostics(
    model: nn.Module,
    loss_fn: PartsLoss | None,
    probe_x: torch.Tensor,
    probe_y: torch.Tensor,
    class_weight: npt.ArrayLike | torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Gradient shares with and without the class weights, and the loss mass; JSON-ready.

    The loss is the trial's: ``loss_fn(logits, target, class_weight)`` gives the
    batch's :class:`~weightlab.functional.LossParts` (default: cross-entropy
    with the class weights), and the batch loss is ``parts.mean()``.
    "Unweighted" is the same loss with every weight 1.

    Args:
        model: a plain ``nn.Module`` (e.g. ``build_model(...)``, or a stack's
            slice exported with ``StackedModel.export``).
        loss_fn: the trial's parts loss, or ``None`` for weighted cross-entropy.
        probe_x: probe inputs ``(B, ...)`` as the model consumes them.
        probe_y: probe labels ``(B,)``.
        class_weight: the trial's class weights ``(C,)``.
        optimizer: the torch optimizer training ``model`` (SGD, Adam, AdamW or
            RMSprop, over its parameters): its state gives the update shares.

    Returns:
        ``{"layers": [names], "classes": [0..C-1], "share_weighted": [[layer][class]],
        "share_unweighted": [[layer][class]], "loss_mass": [C],
        "loss_mass_unweighted": [C], "probe_size": B}``; with an ``optimizer``
        also ``"update_shares"``: :func:`update_shares` of the trial's (weighted)
        loss without its ``layers``, ``classes`` and ``norm`` (``{"share":
        [[layer][class]], "optimizer", "rule", "preconditioner", "step"}``).
        Only the trial's own loss has an update: the optimizer's state is that
        of training with it.

    Raises:
        ShapeMismatchError: a bad probe batch or class weights.
        InvalidValueError: an optimizer :func:`update_shares` does not take.

    Example:
        >>> torch.manual_seed(0) and None
        >>> m = nn.Linear(4, 2)
        >>> x, y = torch.randn(8, 4), torch.tensor([0] * 6 + [1] * 2)
        >>> d = record_diagnostics(m, None, x, y, [1 / 6, 1 / 2])
        >>> d["loss_mass"]
        [0.5, 0.5]
        >>> adam = torch.optim.Adam(m.parameters())
        >>> u = record_diagnostics(m, None, x, y, [1 / 6, 1 / 2], optimizer=adam)["update_shares"]
        >>> u["rule"], u["preconditioner"], [round(sum(r), 6) for r in u["share"]]
        ('adam', 'first step', [1.0])
    """
    _check_batch(probe_x, probe_y)
    w = torch.as_tensor(np.asarray(class_weight, dtype=np.float64))
    with torch.no_grad():
        c = int(model(probe_x[:1]).shape[-1])
    if w.shape != (c,):
        raise ShapeMismatchError(
            expected("class_weight", f"to have one entry per class ({c})",
                     f"shape {tuple(w.shape)}", "Pass the trial's class weights.")
        )  # fmt: skip
    y = probe_y.long()
    info = None
    if optimizer is not None:
        info = _rule_info(optimizer, [p for _, ps in layer_parameters(model) for p in ps])
    was_training = model.training
    model.eval()
    try:
        losses = [_scalar_loss(loss_fn, w), _scalar_loss(loss_fn, torch.ones(c, dtype=w.dtype))]
        layers, (norms_w, norms_1), updates = _class_norms(model, losses, probe_x, y, c, optimizer)
        weighted, plain = _shares_dict(layers, norms_w), _shares_dict(layers, norms_1)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    out = {
        "layers": weighted["layers"],
        "classes": weighted["classes"],
        "share_weighted": weighted["share"],
        "share_unweighted": plain["share"],
        "loss_mass": loss_mass(y, w.numpy(), c),
        "loss_mass_unweighted": loss_mass(y, np.ones(c), c),
        "probe_size": int(y.shape[0]),
    }
    if updates is not None and info is not None:
        out["update_shares"] = {"share": _shares(updates), **info}
    return out


def probe_batch(
    x: torch.Tensor, y: torch.Tensor, size: int = PROBE_SIZE, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe batch: all rows if there are at most ``size``, else a seeded random subset.

    Example:
        >>> xs, ys = probe_batch(torch.zeros(10, 2), torch.arange(10), 4)
        >>> xs.shape, ys.shape
        (torch.Size([4, 2]), torch.Size([4]))
    """
    if y.shape[0] <= size:
        return x, y
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(y.shape[0], generator=g)[:size]
    return x[idx], y[idx]
