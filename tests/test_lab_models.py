from __future__ import annotations

import pytest
import torch

from weightlab.errors import InvalidValueError
from weightlab.lab.architectures import build_model, build_stacked
from weightlab.lab.models import CosineLinear

SHAPES = {"mlp": (64,), "cnn": (1, 8, 8), "gru": (8, 8), "lstm": (8, 8)}


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_slice_equals_single_forward_and_backward(arch, layers, head):
    seeds = [4, 9, 4]
    shape = SHAPES[arch]
    stacked = build_stacked(arch, shape, 5, seeds, hidden=6, layers=layers, head=head)
    x = torch.randn(3, 7, *shape)
    out = stacked(x)
    assert out.shape == (3, 7, 5)
    out.square().sum().backward()
    for k, seed in enumerate(seeds):
        single = build_model(arch, shape, 5, seed=seed, hidden=6, layers=layers, head=head)
        ref = single(x[k])
        torch.testing.assert_close(out[k], ref, atol=1e-5, rtol=1e-5)
        ref.square().sum().backward()
        exported = build_model(arch, shape, 5, seed=123, hidden=6, layers=layers, head=head)
        stacked.export(k, exported)
        torch.testing.assert_close(exported(x[k]), ref, atol=1e-5, rtol=1e-5)
    # equal seeds give equal initial slices
    assert all(torch.equal(p[0], p[2]) for p in stacked.parameters())


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru", "lstm"])
@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_stacked_gradients_match_single(arch, head):
    shape = SHAPES[arch]
    stacked = build_stacked(arch, shape, 4, [1, 2], hidden=5, head=head)
    x = torch.randn(2, 6, *shape)
    stacked(x).sum(dim=(1, 2)).mul(torch.tensor([1.0, 0.0])).sum().backward()
    single = build_model(arch, shape, 4, seed=1, hidden=5, head=head)
    single(x[0]).sum().backward()
    flat_stacked = sorted(p.grad[0].abs().sum().item() for p in stacked.parameters())
    flat_single = sorted(p.grad.abs().sum().item() for p in single.parameters())
    assert flat_stacked == pytest.approx(flat_single, rel=1e-4, abs=1e-6)
    assert all(p.grad[1].abs().sum().item() == 0 for p in stacked.parameters())


@pytest.mark.parametrize("arch", ["mlp", "cnn", "gru", "lstm"])
def test_cosine_head_gives_cosines_of_features_and_class_weights(arch):
    model = build_model(arch, SHAPES[arch], 3, seed=0, hidden=6, head="cosine")
    head = model.net[-1] if arch == "mlp" else model.head
    assert isinstance(head, CosineLinear) and [n for n, _ in head.named_parameters()] == ["weight"]
    feats = []
    head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0]))
    x = torch.randn(5, *SHAPES[arch], dtype=torch.float64)
    logits = model.double()(x)
    f, w = feats[0], head.weight
    ref = torch.nn.functional.cosine_similarity(f[:, None, :], w[None, :, :], dim=-1)
    torch.testing.assert_close(logits, ref)
    assert bool(logits.abs().max() <= 1.0)


def test_cosine_head_gradcheck():
    head = CosineLinear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: torch.nn.functional.linear(
            torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(w, dim=1)
        ),
        (x, head.weight.detach().clone().requires_grad_()),
    )
    torch.testing.assert_close(
        head(x),
        torch.nn.functional.normalize(x, dim=-1)
        @ torch.nn.functional.normalize(head.weight, dim=1).T,
    )


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
        "Expected `model_params` to be among 'hidden', 'layers', 'head' for 'mlp', but got "
        "'width'. Drop or rename them."
    )
    with pytest.raises(InvalidValueError) as err:
        build_model("mlp", (4,), 2, head="normed")
    assert str(err.value) == (
        "Expected `head` to be one of 'linear', 'cosine', but got 'normed'. Pick one of those."
    )
    with pytest.raises(InvalidValueError, match="Expected `hidden` to be an integer >= 1"):
        build_model("gru", (8, 8), 2, hidden=0)
    with pytest.raises(InvalidValueError, match="Expected `input_shape` to have 3 positive"):
        build_model("cnn", (64,), 2)
    with pytest.raises(InvalidValueError, match="Expected `seeds` to hold at least one seed"):
        build_stacked("mlp", (4,), 2, [])


def _layer_inputs(cell: str, k=2, t=3, b=4, f=3, h=5):
    gates = {"gru": 3, "lstm": 4}[cell]
    torch.manual_seed(0)

    def leaf(*shape):
        return (0.5 * torch.randn(*shape, dtype=torch.float64)).requires_grad_()

    return (
        leaf(k, t, b, f),
        leaf(k, f, gates * h),
        leaf(k, 1, gates * h),
        leaf(k, h, gates * h),
        leaf(k, 1, gates * h),
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("full", [False, True])
def test_recurrent_layer_gradcheck(cell, full):
    from weightlab.lab.stacked import _RecurrentLayer

    def layer(*args):
        outs, last = _RecurrentLayer.apply(cell, *args, full)
        return (outs, last) if full else last

    assert torch.autograd.gradcheck(layer, _layer_inputs(cell))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_layer_chunks_equal_the_whole_stack(cell, monkeypatch):
    import weightlab.lab.stacked as stacked_module

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # chunking applies at one intra-op thread
    try:
        results = []
        for rows in (4, 10**6):  # one slice per chunk; one chunk
            monkeypatch.setattr(stacked_module, "RNN_CHUNK_ROWS", rows)
            inputs = _layer_inputs(cell)
            outs, last = stacked_module._RecurrentLayer.apply(cell, *inputs, True)
            (outs.square().sum() + last.sum()).backward()
            results.append([outs, last, *(x.grad for x in inputs)])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)
