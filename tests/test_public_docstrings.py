"""Every public function and class of the library layers carries a runnable example."""

from __future__ import annotations

import importlib
import inspect

import pytest

LIBRARY = [
    "weightlab.distributed",
    "weightlab.functional",
    "weightlab.losses",
    "weightlab.tune",
    "weightlab.weights",
]


def _public(module_name):
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{module_name}.{name}", obj


PUBLIC = [p for m in LIBRARY for p in _public(m)]


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_docstring_has_an_example_the_doctests_run(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert "Example" in doc and ">>>" in doc, f"{name} has no `Example:` with a doctest"


def test_all_is_sorted():
    for module_name in LIBRARY:
        names = importlib.import_module(module_name).__all__
        assert list(names) == sorted(names, key=str.lower) or list(names) == sorted(names), (
            module_name
        )
