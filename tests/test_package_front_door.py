"""`import weightlab` is the front door: the library layers and loss classes, nothing heavier."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
import torch

import weightlab
import weightlab.losses

# Never imported by `import weightlab`, nor by using the names it exposes.
HEAVY = (
    "weightlab.lab",
    "weightlab.report",
    "weightlab.cli",
    "sklearn",
    "pandas",
    "matplotlib",
    "typer",
    "rich",
)


def _modules_after(code: str) -> list[str]:
    """The HEAVY modules (and torch) a fresh interpreter has imported after running `code`."""
    probe = (
        f"import sys\n{code}\n"
        f"print(__import__('json').dumps(sorted(m for m in {(*HEAVY, 'torch')!r} "
        "if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow  # starts processes
def test_import_weightlab_imports_neither_the_lab_nor_the_report_nor_the_cli() -> None:
    assert _modules_after("import weightlab") == []
    # The torch-backed names load torch on first use, and still nothing of the lab.
    used = "import weightlab\nweightlab.CrossEntropyLoss, weightlab.weights, weightlab.diagnostics"
    assert _modules_after(used) == ["torch"]
    assert _modules_after("from weightlab import *") == ["torch"]


@pytest.mark.slow  # starts a process
def test_import_weightlab_weights_still_needs_no_torch() -> None:
    code = "import weightlab.weights, weightlab\nweightlab.weights.count_labels"
    assert _modules_after(code) == []


def test_every_front_door_name_is_the_object_of_its_layer() -> None:
    for name in weightlab.__all__:
        value = getattr(weightlab, name)
        if inspect.ismodule(value):
            assert value is sys.modules[f"weightlab.{name}"]
        elif name != "__version__":
            assert value is getattr(weightlab.losses, name), name
    assert weightlab.__all__ == sorted(weightlab.__all__, key=str.lower) or weightlab.__all__ == (
        sorted(weightlab.__all__)
    )
    assert set(weightlab.__all__) <= set(dir(weightlab))


def test_the_tuner_is_at_the_front_door_and_loads_the_lab_only_when_asked() -> None:
    import weightlab.tune.user

    assert weightlab.tune_model is weightlab.tune.user.tune_model
    assert "tune_model" not in weightlab.__all__  # a star import stays light


def test_every_loss_class_of_weightlab_losses_is_at_the_front_door() -> None:
    classes = {
        name
        for name in weightlab.losses.__all__
        if inspect.isclass(obj := getattr(weightlab.losses, name))
        and (issubclass(obj, torch.nn.Module) or name == "DeferredReweighting")
    }
    assert classes <= set(weightlab.__all__), sorted(classes - set(weightlab.__all__))


def test_an_unknown_name_is_a_plain_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"^module 'weightlab' has no attribute 'lab_'$"):
        weightlab.lab_  # type: ignore[attr-defined]  # noqa: B018


def test_cross_entropy_at_the_front_door_equals_torch_value_and_gradient() -> None:
    # The README's claim: with its defaults, weightlab.CrossEntropyLoss(class_weight=w)
    # gives the same numbers as nn.CrossEntropyLoss(weight=w).
    torch.manual_seed(0)
    logits = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (16,))
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    ours = weightlab.CrossEntropyLoss(class_weight=w)(logits, y)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = torch.nn.CrossEntropyLoss(weight=w)(logits, y)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)
