"""The architecture registry: one entry per network the lab can train, and everything it needs.

An :class:`ArchSpec` says how to build the plain model (``build``), how to
stack K of them into one vectorized model (``stack``), how the data's inputs
are laid out for it (``layout``: ``"flat"`` ``(F,)``, ``"image"``
``(C_in, H, W)`` or ``"sequence"`` ``(T, F)``) and its default sizes. The lab,
the study spec, the report and the CLI read :data:`ARCHITECTURES` instead of
keeping lists of names.

Adding an architecture is one module: define the plain ``nn.Module`` (inputs
``(B, *shape)`` -> logits ``(B, C)``), optionally a stacked twin, and call
:func:`register_architecture`. Without a stacked twin the lab stacks the plain
model with ``torch.func`` (:class:`~weightlab.lab.stacked.VmapStack`): correct,
if slower than a hand-batched one.

Example:
    >>> from torch import nn
    >>> spec = ArchSpec(
    ...     "tiny", lambda shape, c, width=4: nn.Linear(shape[0], c), layout="flat",
    ...     defaults={"width": 4}, summary="one linear layer")
    >>> register_architecture(spec).name in ARCHITECTURES
    True
    >>> build_model("tiny", (6,), 3, seed=0)(torch.zeros(2, 6)).shape
    torch.Size([2, 3])
    >>> build_stacked("tiny", (6,), 3, seeds=[0, 1])(torch.zeros(2, 5, 6)).shape
    torch.Size([2, 5, 3])
    >>> ARCHITECTURES.remove("tiny")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from weightlab.errors import InvalidValueError, expected, names
from weightlab.lab.models import CNN, HEADS, MLP, RNN
from weightlab.lab.stacked import StackedCNN, StackedMLP, StackedModel, StackedRNN, VmapStack
from weightlab.registry import Registry

__all__ = [
    "ARCHITECTURES",
    "LAYOUTS",
    "ArchSpec",
    "build_model",
    "build_stacked",
    "check_arch",
    "default_model_params",
    "layout_shape",
    "register_architecture",
]

#: How a data set's examples are laid out for an architecture, and the rank of one example.
#: ``"raw"``: inputs as the data holds them, any rank (a user's own model).
LAYOUTS: dict[str, int] = {"flat": 1, "image": 3, "sequence": 2, "raw": 0}

#: ``build(input_shape, num_classes, **model_params) -> nn.Module``.
PlainBuilder = Callable[..., nn.Module]
#: ``stack(models) -> StackedModel``: K plain models (same sizes) as one vectorized model.
StackBuilder = Callable[[Sequence[nn.Module]], StackedModel]


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of the lab.

    Attributes:
        name: the name studies and the CLI use (``"mlp"``).
        build: the plain builder ``build(input_shape, num_classes, **model_params)``.
        layout: ``"flat"``, ``"image"`` or ``"sequence"`` (see :func:`layout_shape`).
        defaults: every model option and its default (``{"hidden": 128, ...}``);
            options outside it are refused.
        summary: one line for listings (``"layers x (Linear + ReLU), Linear head"``).
        stack: the stacked builder (default: :class:`~weightlab.lab.stacked.VmapStack`).
        minimums: the smallest value of an integer option (default 1 for each).
        unstackable: why its models cannot be stacked (e.g. ``torch.func.vmap``
            has no rule for ``nn.LSTM``): the engine then trains a stack's
            trials one by one with the plain loop. Empty: it stacks.
    """

    name: str
    build: PlainBuilder
    layout: str
    defaults: Mapping[str, Any]
    summary: str = ""
    stack: StackBuilder = VmapStack
    minimums: Mapping[str, int] = field(default_factory=dict)
    unstackable: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InvalidValueError(
                expected("layout", f"to be one of {names(LAYOUTS)}", repr(self.layout),
                         "Pick the layout the model's inputs (B, *shape) have.")
            )  # fmt: skip


#: Architectures by name, in registration order: ``ARCHITECTURES.names()``.
ARCHITECTURES: Registry[ArchSpec] = Registry(
    "arch", listing="`weightlab.lab.architectures.ARCHITECTURES.names()`"
)


def register_architecture(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to :data:`ARCHITECTURES` (a name registered twice is refused)."""
    return ARCHITECTURES.register(spec.name)(spec)


def check_arch(arch: str) -> ArchSpec:
    """Return the spec of ``arch``, or raise naming the registered architectures.

    Raises:
        InvalidValueError: ``arch`` is not registered.
    """
    if arch not in ARCHITECTURES:
        raise InvalidValueError(
            expected(
                "arch", f"to be one of {names(ARCHITECTURES)}", repr(arch), "Pick one of those."
            )
        )
    return ARCHITECTURES.get(arch)


def default_model_params(arch: str) -> dict[str, Any]:
    """The default options of ``arch`` (for the built-in ones: ``hidden``, ``layers``, ``head``).

    Example:
        >>> default_model_params("mlp")
        {'hidden': 128, 'layers': 2, 'head': 'linear'}
    """
    return dict(check_arch(arch).defaults)


def layout_shape(layout: str, input_shape: Sequence[int], arch: str = "") -> tuple[int, ...]:
    """The shape of one example of ``input_shape`` in ``layout``.

    ``"flat"``: every feature in one axis; ``"image"``: ``(C, H, W)`` as is, or
    ``(H, W)`` as one channel; ``"sequence"``: ``(T, F)`` as is, or a
    one-channel image ``(1, H, W)`` as ``H`` steps of ``W`` features.

    Raises:
        InvalidValueError: the shape cannot be read in that layout.

    Example:
        >>> layout_shape("flat", (8, 8)), layout_shape("image", (8, 8)), layout_shape("sequence", (1, 8, 8))
        ((64,), (1, 8, 8), (8, 8))
    """  # noqa: E501
    shape = tuple(int(s) for s in input_shape)
    if layout == "raw":
        return shape
    if layout == "flat":
        return (math.prod(shape),)
    if layout == "image":
        if len(shape) == 3:
            return shape
        if len(shape) == 2:
            return (1, *shape)
        need = "an image shape (C, H, W) or (H, W)"
    else:
        if len(shape) == 2:
            return shape
        if len(shape) == 3 and shape[0] == 1:
            return shape[1:]
        need = "a sequence shape (T, F) or a one-channel image (1, H, W)"
    raise InvalidValueError(
        expected(
            "input_shape",
            f"to be {need} for arch {arch or layout!r}",
            repr(shape),
            "Use arch='mlp' for tabular data, or save an .npz with a matching input_shape.",
        )
    )


def _check_params(spec: ArchSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    size = dict(spec.defaults)
    unknown = sorted(set(params) - set(size))
    if unknown:
        raise InvalidValueError(
            expected(
                "model_params",
                f"to be among {names(size)} for {spec.name!r}",
                names(unknown),
                "Drop or rename them.",
            )
        )
    size.update(params)
    if "head" in size and size["head"] not in HEADS:
        raise InvalidValueError(
            expected(
                "head", f"to be one of {names(HEADS)}", repr(size["head"]), "Pick one of those."
            )
        )
    for key, value in size.items():
        if not isinstance(spec.defaults[key], int) or isinstance(spec.defaults[key], bool):
            continue
        low = spec.minimums.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidValueError(
                expected(key, f"to be an integer >= {low}", repr(value), "Use e.g. hidden=64.")
            )
    return size


def build_model(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    seed: int | None = None,
    **model_params: Any,
) -> nn.Module:
    """Build a lab model; with ``seed``, its initial parameters depend on that seed alone.

    Args:
        arch: a registered architecture (``"mlp"``, ``"cnn"``, ``"gru"``, ``"lstm"``, ...).
        input_shape: one example as ``arch`` consumes it (see
            :meth:`weightlab.lab.data.LabData.arch_shape`): ``(F,)``,
            ``(C_in, H, W)`` or ``(T, F)``.
        num_classes: number of classes ``C``.
        seed: initialisation seed; the global RNG is left untouched. ``None``
            draws from the global RNG as ``nn.Module`` constructors do.
        **model_params: the architecture's options (built-in ones: ``hidden``,
            ``layers`` and ``head``; see :func:`default_model_params`).

    Raises:
        InvalidValueError: unknown arch, unknown or non-positive size, unknown
            head, or an ``input_shape`` the architecture cannot read.

    Example:
        >>> a = build_model("gru", (8, 8), 10, seed=3, hidden=16)
        >>> b = build_model("gru", (8, 8), 10, seed=3, hidden=16)
        >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        True
    """
    spec = check_arch(arch)
    size = _check_params(spec, model_params)
    shape = tuple(int(s) for s in input_shape)
    rank = LAYOUTS[spec.layout]
    if (rank and len(shape) != rank) or (shape and min(shape) < 1):
        raise InvalidValueError(
            expected(
                "input_shape",
                f"to have {rank} positive entries for {arch!r}",
                repr(shape),
                "Pass LabData.arch_shape(arch).",
            )
        )
    if seed is None:
        return spec.build(shape, num_classes, **size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build(shape, num_classes, **size)


def build_stacked(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    seeds: Sequence[int],
    **model_params: Any,
) -> StackedModel:
    """Build K slices of ``arch``; slice ``k`` starts as ``build_model(..., seed=seeds[k])``.

    Args:
        arch: a registered architecture.
        input_shape: one example as ``arch`` consumes it.
        num_classes: number of classes ``C``.
        seeds: one initialisation seed per slice (``K = len(seeds)`` >= 1).
        **model_params: the architecture's options.

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
    spec = check_arch(arch)
    models = [build_model(arch, input_shape, num_classes, seed=s, **model_params) for s in seeds]
    return spec.stack(models)


def _rnn(cell: str) -> PlainBuilder:
    def build(shape: Sequence[int], num_classes: int, **size: Any) -> nn.Module:
        return RNN(cell, shape[1], num_classes, **size)

    return build


# the stacked classes take the K plain models, as ArchSpec.stack does
register_architecture(
    ArchSpec(
        "mlp",
        lambda shape, c, **size: MLP(shape[0], c, **size),
        layout="flat",
        defaults={"hidden": 128, "layers": 2, "head": "linear"},
        summary="layers x (Linear(hidden) + ReLU), then the head",
        stack=cast(StackBuilder, StackedMLP),
        minimums={"layers": 0},
    )
)
register_architecture(
    ArchSpec(
        "cnn",
        lambda shape, c, **size: CNN(shape, c, **size),
        layout="image",
        defaults={"hidden": 16, "layers": 2, "head": "linear"},
        summary="layers x (Conv3x3(hidden) + ReLU + MaxPool 2), flatten, then the head",
        stack=cast(StackBuilder, StackedCNN),
    )
)
for _cell in ("gru", "lstm"):
    register_architecture(
        ArchSpec(
            _cell,
            _rnn(_cell),
            layout="sequence",
            defaults={"hidden": 64, "layers": 1, "head": "linear"},
            summary=f"{_cell.upper()}(hidden, layers), last step's state, then the head",
            stack=cast(StackBuilder, StackedRNN),
        )
    )
