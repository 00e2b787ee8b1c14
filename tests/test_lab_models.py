from __future__ import annotations

import pytest
import torch

from weightlab.errors import InvalidValueError
from weightlab.lab.models import build_model
from weightlab.lab.stacked import build_stacked

SHAPES = {"mlp": (64,), "cnn": (1, 8, 8), "gru": (8, 8), "lstm": (8, 8)}


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_slice_equals_single_forward_and_backward(arch, layers):
    seeds = [4, 9, 4]
    shape = SHAPES[arch]
    stacked = build_stacked(arch, shape, 5, seeds, hidden=6, layers=layers)
    x = torch.randn(3, 7, *shape)
    out = stacked(x)
    assert out.shape == (3, 7, 5)
    out.square().sum().backward()
    for k, seed in enumerate(seeds):
        single = build_model(arch, shape, 5, seed=seed, hidden=6, layers=layers)
        ref = single(x[k])
        torch.testing.assert_close(out[k], ref, atol=1e-5, rtol=1e-5)
        ref.square().sum().backward()
        exported = build_model(arch, shape, 5, seed=123, hidden=6, layers=layers)
        stacked.export(k, exported)
        torch.testing.assert_close(exported(x[k]), ref, atol=1e-5, rtol=1e-5)
    # equal seeds give equal initial slices
    assert all(torch.equal(p[0], p[2]) for p in stacked.parameters())


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru"])
def test_stacked_gradients_match_single(arch):
    shape = SHAPES[arch]
    stacked = build_stacked(arch, shape, 4, [1, 2], hidden=5)
    x = torch.randn(2, 6, *shape)
    stacked(x).sum(dim=(1, 2)).mul(torch.tensor([1.0, 0.0])).sum().backward()
    single = build_model(arch, shape, 4, seed=1, hidden=5)
    single(x[0]).sum().backward()
    flat_stacked = sorted(p.grad[0].abs().sum().item() for p in stacked.parameters())
    flat_single = sorted(p.grad.abs().sum().item() for p in single.parameters())
    assert flat_stacked == pytest.approx(flat_single, rel=1e-4, abs=1e-6)
    assert all(p.grad[1].abs().sum().item() == 0 for p in stacked.parameters())


def test_seed_controls_init_only():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    build_model("mlp", (4,), 2, seed=7)
    assert torch.equal(torch.rand(1), before)  # global RNG untouched


def test_bad_model_arguments():
    with pytest.raises(InvalidValueError) as err:
        build_model("transformer", (4,), 2)
    assert str(err.value) == (
        "Expected `arch` to be one of 'mlp', 'cnn', 'gru', 'lstm', but got 'transformer'. "
        "Pick one of those."
    )
    with pytest.raises(InvalidValueError) as err:
        build_model("mlp", (4,), 2, width=3)
    assert str(err.value) == (
        "Expected `model_params` to be among 'hidden', 'layers' for 'mlp', but got 'width'. "
        "Drop or rename them."
    )
    with pytest.raises(InvalidValueError, match="Expected `hidden` to be an integer >= 1"):
        build_model("gru", (8, 8), 2, hidden=0)
    with pytest.raises(InvalidValueError, match="Expected `input_shape` to have 3 positive"):
        build_model("cnn", (64,), 2)
    with pytest.raises(InvalidValueError, match="Expected `seeds` to hold at least one seed"):
        build_stacked("mlp", (4,), 2, [])
