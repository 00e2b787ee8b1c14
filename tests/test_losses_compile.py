"""``torch.compile`` of every registered loss module gives eager numbers, forward and backward.

``torch.compile`` is the supported compiler (``torch.jit.script`` is refused by
name: ``tests/test_losses_edges.py``). Every module compiles with
``fullgraph=True``: the value checks that sync the device are skipped while
dynamo traces, so nothing breaks the graph. The ``aot_eager`` backend (dynamo's
trace and AOTAutograd's joint forward/backward graph, no code generation) runs
in the quick suite; ``inductor``, which generates C++ and needs a compiler,
runs with the slow tests.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from loss_harness import CASES, IGNORE, make_inputs
from weightlab.losses import LOSSES

NAMES = LOSSES.names()

# dynamo and inductor import TorchScript helpers that warn about their own deprecation
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


def _inputs(name):
    case = CASES[name]
    x, target = make_inputs(case, n=6, dtype=torch.float32, extra=2)
    if case.kind == "multiclass":
        target[1, 0] = IGNORE
    sample = torch.rand(6, generator=torch.Generator().manual_seed(5)) + 0.5
    return x, target, sample


def _run(loss, x, target, sample):
    x = x.clone().requires_grad_(True)
    value = loss(x, target) if sample is None else loss(x, target, sample)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def _compare(name, backend, kwargs, samples, rtol, atol):
    torch._dynamo.reset()
    module = LOSSES.get(name)(**kwargs)
    compiled = torch.compile(module, backend=backend, fullgraph=True)
    x, target, sample = _inputs(name)
    for s in (None, sample) if samples else (None,):
        eager = _run(module, x, target, s)
        ours = _run(compiled, x, target, s)
        torch.testing.assert_close(ours[0], eager[0], rtol=rtol, atol=atol, msg=name)
        torch.testing.assert_close(ours[1], eager[1], rtol=rtol, atol=atol, msg=name)


def _plain(name):
    """The harness's settings without class weights or alpha (then sample weights scale alone)."""
    dropped = ("class_weight", "alpha")
    return {k: v for k, v in CASES[name].module_kwargs.items() if k not in dropped}


def test_every_registered_loss_is_covered():
    assert set(NAMES) == set(CASES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("settings", ["harness", "plain"])
def test_compiled_module_matches_eager_aot_eager(name, settings):
    kwargs = CASES[name].module_kwargs if settings == "harness" else _plain(name)
    _compare(name, "aot_eager", kwargs, samples=True, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.skipif(
    not any(shutil.which(cc) for cc in ("g++", "clang++", "c++")),
    reason="inductor generates C++ on CPU and needs a C++ compiler",
)
@pytest.mark.parametrize("name", NAMES)
def test_compiled_module_matches_eager_inductor(name):
    _compare(name, "inductor", CASES[name].module_kwargs, samples=False, rtol=1e-5, atol=1e-6)
