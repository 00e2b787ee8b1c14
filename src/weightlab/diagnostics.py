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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from weightlab.errors import ShapeMismatchError, expected
from weightlab.functional import LossParts, cross_entropy

__all__ = [
    "PartsLoss",
    "ScalarLoss",
    "gradient_shares",
    "layer_parameters",
    "loss_mass",
    "probe_batch",
    "record_diagnostics",
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
) -> tuple[list[str], list[npt.NDArray[np.float64]]]:
    """``(layers, norms)``, one ``norms[l, c] = ||g_{l,c}||`` per loss (see the module docstring).

    One forward pass serves every loss. Per class, a backward pass is run only
    when the class's rows of ``dL/dz`` are not proportional to those of a loss
    already done for that class: a class weight that multiplies the class's
    per-sample losses scales its rows of ``dL/dz`` by one factor, and the
    backward pass is linear, so the norms scale by that factor exactly (up to
    rounding: the rows must agree to 1e-5 of their largest entry).
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
    for c in range(num_classes):
        rows = y == c
        if not bool(rows.any()):
            continue
        done: list[tuple[torch.Tensor, npt.NDArray[np.float64]]] = []
        for j, dz in enumerate(dzs):
            part = dz[rows]
            column = next(
                (abs(a) * col for ref, col in done if (a := _factor(part, ref)) is not None), None
            )
            if column is None:
                out = dz * rows.to(dz.dtype).unsqueeze(1)
                grads = torch.autograd.grad(
                    z, params, grad_outputs=out, retain_graph=True, allow_unused=True
                )
                column = _layer_norms(grads, sizes)
                done.append((part, column))
            norms[j][:, c] = column
    return [name for name, _ in layers], norms


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
    layers, (norms,) = _class_norms(model, [loss], x, y.long(), c)
    return _shares_dict(layers, norms)


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

    Returns:
        ``{"layers": [names], "classes": [0..C-1], "share_weighted": [[layer][class]],
        "share_unweighted": [[layer][class]], "loss_mass": [C],
        "loss_mass_unweighted": [C], "probe_size": B}``.

    Example:
        >>> torch.manual_seed(0) and None
        >>> m = nn.Linear(4, 2)
        >>> x, y = torch.randn(8, 4), torch.tensor([0] * 6 + [1] * 2)
        >>> d = record_diagnostics(m, None, x, y, [1 / 6, 1 / 2])
        >>> d["loss_mass"]
        [0.5, 0.5]
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
    was_training = model.training
    model.eval()
    try:
        losses = [_scalar_loss(loss_fn, w), _scalar_loss(loss_fn, torch.ones(c, dtype=w.dtype))]
        layers, (norms_w, norms_1) = _class_norms(model, losses, probe_x, y, c)
        weighted, plain = _shares_dict(layers, norms_w), _shares_dict(layers, norms_1)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return {
        "layers": weighted["layers"],
        "classes": weighted["classes"],
        "share_weighted": weighted["share"],
        "share_unweighted": plain["share"],
        "loss_mass": loss_mass(y, w.numpy(), c),
        "loss_mass_unweighted": loss_mass(y, np.ones(c), c),
        "probe_size": int(y.shape[0]),
    }


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
