"""weightlab.distributed: the global weighted mean under DDP and gradient accumulation.

What is checked, in float64 against references that do not use weightlab
(PyTorch's ``cross_entropy(weight=...)`` and a hand-written focal loss on the
whole batch, in one process):

- two real processes (``torch.distributed``, gloo, CPU, a ``file://`` store,
  loopback only) whose ranks see different class mixes and batch sizes (class
  weights, an ignored label), a small MLP wrapped in DDP: ``global_mean`` gives
  the full batch's gradient to 1e-6 on both ranks, each rank's own weighted mean
  (``CrossEntropyLoss(weight=...)``) a gradient that is clearly wrong;
- DDP with gradient accumulation (``no_sync`` and ``window_normalizer`` with an
  immediate backward per micro-batch; ``accumulate`` with one backward), an
  explicit process group, a rank whose batch is all ignored, and a window that
  is all ignored on every rank (zero loss, zero gradients, no NaN);
- in one process: accumulation over micro-batches equals one large batch,
  ``target_normalizer`` equals the forward pass's normaliser, and the exact
  messages of bad input.

The tests that start processes are marked slow; a rank that fails or hangs
fails the test (its log in the message) and every rank is killed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from weightlab import functional as F
from weightlab.distributed import (
    accumulate,
    global_mean,
    global_normalizer,
    target_normalizer,
    window_normalizer,
)
from weightlab.errors import InvalidValueError, ShapeMismatchError
from weightlab.functional import LossParts
from weightlab.losses import BCEWithLogitsLoss, ClassBalancedLoss, FocalLoss

TESTS = Path(__file__).resolve().parent
C = 3
FEATURES = 5
GAMMA = 2.0
WEIGHT = torch.tensor([0.2, 1.0, 5.0], dtype=torch.float64)
# Rank 0: 12 samples, mostly class 0. Rank 1: 5 samples, mostly class 2, one ignored.
LABELS = (
    torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2]),
    torch.tensor([2, 2, -100, 1, 2]),
)
# Each rank's micro-batches (as many on each rank; rank 1's second one is all ignored).
MICRO = ((5, 4, 3), (2, 1, 2))
TOLERANCE = 1e-6
RANK_TIMEOUT_S = 60  # a collective that waits longer for a rank fails
RUN_TIMEOUT_S = 300  # the whole two-process run (two torch imports on shared cores)


# ---- data, model, losses and references (the same in every process) ------------------


def rank_batches() -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(len(y), FEATURES, generator=generator, dtype=torch.float64), y) for y in LABELS
    ]


def full_batch() -> tuple[Tensor, Tensor]:
    xs, ys = zip(*rank_batches(), strict=True)
    return torch.cat(xs), torch.cat(ys)


def make_model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(FEATURES, 8), nn.Tanh(), nn.Linear(8, C)).double()


def ce_parts(logits: Tensor, y: Tensor) -> LossParts:
    return F.cross_entropy(logits, y, class_weight=WEIGHT, reduction="parts")


def focal_parts(logits: Tensor, y: Tensor) -> LossParts:
    return F.focal_loss(logits, y, gamma=GAMMA, class_weight=WEIGHT, reduction="parts")


def ce_per_rank_mean(logits: Tensor, y: Tensor) -> Tensor:
    return nn.CrossEntropyLoss(weight=WEIGHT)(logits, y)  # PyTorch: this batch's weighted mean


def focal_per_rank_mean(logits: Tensor, y: Tensor) -> Tensor:
    return F.focal_loss(logits, y, gamma=GAMMA, class_weight=WEIGHT)  # this batch's mean


def ce_reference(logits: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(logits, y, weight=WEIGHT, ignore_index=-100)


def focal_reference(logits: Tensor, y: Tensor) -> Tensor:
    kept = y != -100
    log_pt = torch.log_softmax(logits[kept], dim=1).gather(1, y[kept, None]).squeeze(1)
    w = WEIGHT[y[kept]]
    return (w * (1 - log_pt.exp()) ** GAMMA * -log_pt).sum() / w.sum()


PARTS: dict[str, Callable[[Tensor, Tensor], LossParts]] = {
    "cross_entropy": ce_parts,
    "focal": focal_parts,
}
PER_RANK_MEAN = {"cross_entropy": ce_per_rank_mean, "focal": focal_per_rank_mean}
REFERENCE = {"cross_entropy": ce_reference, "focal": focal_reference}


def grads(model: nn.Module) -> list[Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def reference_grads(name: str, x: Tensor, y: Tensor) -> tuple[list[Tensor], Tensor]:
    model = make_model()
    loss = REFERENCE[name](model(x), y)
    loss.backward()
    return grads(model), loss.detach()


def max_error(got: list[Tensor], want: list[Tensor]) -> float:
    return max((g - w).abs().max().item() for g, w in zip(got, want, strict=True))


def max_abs(tensors: list[Tensor]) -> float:
    return max(t.abs().max().item() for t in tensors)


# ---- the ranks ---------------------------------------------------------------------


def rank_main(rank: int, world: int, init_method: str, out_dir: str) -> None:
    """One rank: every DDP scenario in turn; its gradients go to ``out_dir/rank{rank}.pt``."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    if os.environ.get("TEST_DISTRIBUTED_FAIL_RANK") == str(rank):
        raise RuntimeError(f"rank {rank} fails on purpose before the rendezvous")
    dist.init_process_group(
        "gloo",
        init_method=init_method,
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=RANK_TIMEOUT_S),
    )
    try:
        x, y = rank_batches()[rank]
        out: dict[str, object] = {}
        for name, parts_fn in PARTS.items():
            # one batch per rank, the global mean
            ddp = DDP(make_model())
            parts = parts_fn(ddp(x), y)
            out[f"{name}/normalizer"] = global_normalizer(parts.normalizer)
            loss = global_mean(parts)
            loss.backward()
            out[f"{name}/global"] = grads(ddp.module)
            out[f"{name}/loss"] = loss.detach()
            # one batch per rank, each rank's own weighted mean (what is usually written)
            ddp = DDP(make_model())
            PER_RANK_MEAN[name](ddp(x), y).backward()
            out[f"{name}/per_rank"] = grads(ddp.module)
            # accumulation: the window's normaliser first, then backward per micro-batch
            ddp = DDP(make_model())
            micro = list(zip(x.split(MICRO[rank]), y.split(MICRO[rank]), strict=True))
            D = window_normalizer(
                target_normalizer(parts_fn, yb, num_classes=C, dtype=torch.float64)
                for _, yb in micro
            )
            out[f"{name}/window_normalizer"] = D
            for i, (xb, yb) in enumerate(micro):
                sync = i == len(micro) - 1  # DDP all-reduces the gradients on the last one
                with contextlib.nullcontext() if sync else ddp.no_sync():
                    global_mean(parts_fn(ddp(xb), yb), normalizer=D).backward()
            out[f"{name}/window"] = grads(ddp.module)
            # accumulation: sum the parts, one backward
            ddp = DDP(make_model())
            summed = accumulate([parts_fn(ddp(xb), yb) for xb, yb in micro])
            global_mean(summed).backward()
            out[f"{name}/accumulate"] = grads(ddp.module)
        # an explicit process group (the one DDP averages over)
        group = dist.new_group(list(range(world)))
        ddp = DDP(make_model(), process_group=group)
        global_mean(ce_parts(ddp(x), y), group).backward()
        out["group"] = grads(ddp.module)
        # rank 1's batch is all ignored, rank 0's is not
        ddp = DDP(make_model())
        y_mixed = y if rank == 0 else torch.full_like(y, -100)
        global_mean(ce_parts(ddp(x), y_mixed)).backward()
        out["one_rank_ignored"] = grads(ddp.module)
        # every rank's window is all ignored
        ddp = DDP(make_model())
        ignored = torch.full_like(y, -100)
        D = window_normalizer([target_normalizer(focal_parts, ignored, num_classes=C)])
        loss = global_mean(focal_parts(ddp(x), ignored), normalizer=D)
        out["all_ignored/connected"] = loss.requires_grad
        loss.backward()
        out["all_ignored/loss"] = loss.detach()
        out["all_ignored/grads"] = grads(ddp.module)
        with torch.no_grad():
            out["all_ignored/per_rank_loss"] = ce_per_rank_mean(ddp.module(x), ignored)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_ranks(
    tmp_path: Path, world: int = 2, env: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """Start ``world`` processes running :func:`rank_main`; fail (never hang) if one fails."""
    init_method = (tmp_path / "store").as_uri()  # file:// rendezvous: no port, no network
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", **(env or {})}
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_distributed as t; "
        "t.rank_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])"
    )
    logs = [tmp_path / f"rank{rank}.log" for rank in range(world)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for rank in range(world):
            with logs[rank].open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", code, str(TESTS), str(rank), str(world),
                         init_method, str(tmp_path)],
                        stdout=log, stderr=subprocess.STDOUT, env=env,
                    )
                )  # fmt: skip
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            codes = [p.poll() for p in procs]
            failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                r = failed[0]
                pytest.fail(f"rank {r} exited with {codes[r]}:\n{logs[r].read_text()}")
            if all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                text = "\n".join(f"rank {r}:\n{log.read_text()}" for r, log in enumerate(logs))
                pytest.fail(f"the ranks did not finish within {RUN_TIMEOUT_S} s:\n{text}")
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    return run_ranks(tmp_path_factory.mktemp("ddp"))


def both_ranks(ranks: list[dict[str, object]], key: str) -> list[Tensor]:
    """The gradients of ``key``; DDP leaves the same ones on both ranks."""
    first, second = (r[key] for r in ranks)
    assert max_error(second, first) == 0.0, f"{key}: the ranks' gradients differ"
    return first


# ---- DDP (two processes) -----------------------------------------------------------


@pytest.mark.slow  # starts two processes
@pytest.mark.parametrize("name", list(PARTS))
def test_ddp_global_mean_gives_the_full_batch_gradient_and_the_per_rank_mean_does_not(ranks, name):
    want, want_loss = reference_grads(name, *full_batch())
    global_error = max_error(both_ranks(ranks, f"{name}/global"), want)
    per_rank_error = max_error(both_ranks(ranks, f"{name}/per_rank"), want)
    print(
        f"\n{name}: max |grad - full-batch grad| (max |full-batch grad| = {max_abs(want):.3g}): "
        f"global_mean {global_error:.2e}, each rank's own weighted mean {per_rank_error:.2e}"
    )
    assert global_error < TOLERANCE
    assert per_rank_error > 0.05 * max_abs(want)  # clearly wrong: over 5 % of the gradient
    # The normaliser is the global batch's sum of applied weights ...
    kept = full_batch()[1][full_batch()[1] != -100]
    for r in ranks:
        torch.testing.assert_close(r[f"{name}/normalizer"], WEIGHT[kept].sum())
    # ... and the mean of the ranks' loss values is the global weighted mean.
    torch.testing.assert_close(sum(r[f"{name}/loss"] for r in ranks) / 2, want_loss)


@pytest.mark.slow  # starts two processes
@pytest.mark.parametrize("name", list(PARTS))
@pytest.mark.parametrize("form", ["window", "accumulate"])
def test_ddp_with_gradient_accumulation_gives_the_full_batch_gradient(ranks, name, form):
    want, _ = reference_grads(name, *full_batch())
    error = max_error(both_ranks(ranks, f"{name}/{form}"), want)
    print(f"\n{name}, DDP + accumulation ({form}): max |grad - full-batch grad| = {error:.2e}")
    assert error < TOLERANCE
    kept = full_batch()[1][full_batch()[1] != -100]
    for r in ranks:
        torch.testing.assert_close(r[f"{name}/window_normalizer"], WEIGHT[kept].sum())


@pytest.mark.slow  # starts two processes
def test_ddp_global_mean_over_an_explicit_group(ranks):
    want, _ = reference_grads("cross_entropy", *full_batch())
    assert max_error(both_ranks(ranks, "group"), want) < TOLERANCE


@pytest.mark.slow  # starts two processes
def test_ddp_a_rank_whose_batch_is_all_ignored_still_gives_the_global_gradient(ranks):
    x0, y0 = rank_batches()[0]  # rank 1 contributes nothing but its share of DDP's average
    want, _ = reference_grads("cross_entropy", x0, y0)
    assert max_error(both_ranks(ranks, "one_rank_ignored"), want) < TOLERANCE


@pytest.mark.slow  # starts two processes
def test_ddp_a_window_all_ignored_on_every_rank_gives_zero_loss_and_zero_gradients(ranks):
    for r in ranks:
        assert r["all_ignored/connected"] is True  # backward ran: DDP's all-reduce too
        assert r["all_ignored/loss"].item() == 0.0
        assert torch.isnan(r["all_ignored/per_rank_loss"])  # what PyTorch's mean gives
    gradients = both_ranks(ranks, "all_ignored/grads")
    assert all(torch.equal(g, torch.zeros_like(g)) for g in gradients)


@pytest.mark.slow  # starts two processes
def test_a_rank_that_fails_fails_the_run_at_once_and_the_waiting_rank_is_killed(tmp_path):
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="rank 0 exited with 1") as excinfo:
        run_ranks(tmp_path, env={"TEST_DISTRIBUTED_FAIL_RANK": "0"})
    assert "fails on purpose" in str(excinfo.value)  # the failed rank's log
    # Rank 1 was left waiting for rank 0 at the rendezvous; it was killed, not waited for.
    assert time.monotonic() - started < RANK_TIMEOUT_S


# ---- gradient accumulation in one process ------------------------------------------

# The full batch in micro-batches of uneven sizes; the third is the ignored label alone.
CHUNKS = (3, 11, 1, 2)


@pytest.mark.parametrize("name", list(PARTS))
def test_accumulation_with_the_window_normalizer_equals_one_large_batch(name):
    x, y = full_batch()
    assert (y.split(CHUNKS)[2] == -100).all()
    want, _ = reference_grads(name, x, y)
    parts_fn = PARTS[name]
    model = make_model()
    micro = list(zip(x.split(CHUNKS), y.split(CHUNKS), strict=True))
    D = window_normalizer(
        target_normalizer(parts_fn, yb, num_classes=C, dtype=torch.float64) for _, yb in micro
    )
    for xb, yb in micro:  # one micro-batch's graph at a time
        global_mean(parts_fn(model(xb), yb), normalizer=D).backward()
    error = max_error(grads(model), want)
    # What is usually written: each micro-batch's own weighted mean, divided by their number.
    naive = make_model()
    for xb, yb in micro:
        if (yb != -100).any():  # the all-ignored one would be NaN
            (PER_RANK_MEAN[name](naive(xb), yb) / len(micro)).backward()
    naive_error = max_error(grads(naive), want)
    print(f"\n{name}, accumulation: window_normalizer {error:.2e}, mean / k {naive_error:.2e}")
    assert error < TOLERANCE
    assert naive_error > 0.05 * max_abs(want)


@pytest.mark.parametrize("name", list(PARTS))
def test_accumulate_then_global_mean_equals_one_large_batch(name):
    x, y = full_batch()
    want, want_loss = reference_grads(name, x, y)
    model = make_model()
    summed = accumulate(
        PARTS[name](model(xb), yb) for xb, yb in zip(x.split(CHUNKS), y.split(CHUNKS), strict=True)
    )
    loss = global_mean(summed)
    loss.backward()
    torch.testing.assert_close(loss.detach(), want_loss)
    assert max_error(grads(model), want) < TOLERANCE


def test_without_torch_distributed_global_mean_is_the_local_weighted_mean():
    assert not torch.distributed.is_initialized()
    x, y = rank_batches()[1]
    logits = make_model()(x)
    torch.testing.assert_close(global_mean(ce_parts(logits, y)), ce_reference(logits, y))
    normalizer = torch.tensor(2.5, requires_grad=True)
    summed = global_normalizer(normalizer)
    assert summed.item() == 2.5 and not summed.requires_grad


def test_an_all_ignored_window_gives_a_zero_loss_connected_to_the_graph():
    x, _ = full_batch()
    ignored = torch.full((len(x),), -100)
    model = make_model()
    micro = list(zip(x.split(CHUNKS), ignored.split(CHUNKS), strict=True))
    D = window_normalizer(target_normalizer(focal_parts, yb, num_classes=C) for _, yb in micro)
    assert D.item() == 0.0
    for xb, yb in micro:
        loss = global_mean(focal_parts(model(xb), yb), normalizer=D)
        assert loss.requires_grad and loss.item() == 0.0
        loss.backward()
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads(model))
    whole = global_mean(accumulate([ce_parts(model(x), ignored)]))
    assert whole.item() == 0.0 and whole.requires_grad
    assert torch.isnan(ce_reference(model(x), ignored))  # PyTorch's weighted mean


@pytest.mark.parametrize(
    ("loss", "target", "num_classes"),
    [
        (FocalLoss(class_weight=WEIGHT.float(), reduction="parts"), LABELS[1], C),
        (ClassBalancedLoss(counts=torch.tensor([50.0, 10.0, 2.0]), reduction="parts"),
         LABELS[0], C),
        (lambda z, y: F.cross_entropy(z, y, reduction="parts", normalize="count"),
         torch.tensor([[0, 1], [-100, 2]]), C),  # (N, d) targets: (N, C, d) logits
        (BCEWithLogitsLoss(pos_weight=torch.tensor(3.0), reduction="parts"),
         torch.tensor([1.0, 0.0, 1.0, 1.0]), None),
    ],
    ids=["focal", "class_balanced", "spatial_count", "bce_pos_weight"],
)  # fmt: skip
def test_target_normalizer_is_the_normalizer_of_the_forward_pass(loss, target, num_classes):
    shape = tuple(target.shape) if num_classes is None else (
        target.shape[0], num_classes, *target.shape[1:]
    )  # fmt: skip
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    want = loss(logits, target).normalizer
    got = target_normalizer(loss, target, num_classes=num_classes)
    torch.testing.assert_close(got, want)
    assert not got.requires_grad


# ---- bad input: the message names the argument and the fix ---------------------------


def _parts() -> LossParts:
    return LossParts(torch.tensor(1.0), torch.tensor(2.0))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: global_mean(torch.tensor(0.5)), InvalidValueError,
         "Expected `parts` to be a weightlab LossParts (total, normalizer), but got a tensor "
         "of shape (). Call the loss with reduction='parts' (a tensor from reduction='mean' "
         "is already divided by the local normaliser)."),
        (lambda: global_mean((torch.tensor(1.0), torch.tensor(2.0))), InvalidValueError,
         "Expected `parts` to be a weightlab LossParts (total, normalizer), but got a tuple. "
         "Call the loss with reduction='parts'"),
        (lambda: global_mean(LossParts(torch.ones(4), torch.tensor(2.0))), ShapeMismatchError,
         "Expected `parts.total` to be a 0-d tensor (the weighted loss sum), but got shape "
         "(4,). Sum it to one number first (.sum())"),
        (lambda: global_mean(LossParts(torch.tensor(1.0), 2.0)), InvalidValueError,
         "Expected `parts.normalizer` to be a 0-d tensor (the normaliser), but got a float. "
         "Wrap it with torch.as_tensor(...)"),
        (lambda: global_mean(_parts(), normalizer=torch.ones(2)), ShapeMismatchError,
         "Expected `normalizer` to be a 0-d tensor (the window's global normaliser), but got "
         "shape (2,)."),
        (lambda: global_mean(_parts(), group=object()), InvalidValueError,
         "Expected `group` to be None when torch.distributed is not initialised, but got an "
         "object. Call torch.distributed.init_process_group(...) on every rank first "
         "(torchrun does it for you), or pass group=None for one process."),
        (lambda: global_normalizer(torch.ones(3)), ShapeMismatchError,
         "Expected `normalizer` to be a 0-d tensor (a loss's normaliser "
         "(LossParts.normalizer)), but got shape (3,)."),
        (lambda: global_normalizer(torch.tensor(1.0), group="world"), InvalidValueError,
         "Expected `group` to be None when torch.distributed is not initialised, but got a str."),
        (lambda: accumulate([]), InvalidValueError,
         "Expected `parts` to be a non-empty sequence of LossParts (one per micro-batch), but "
         "got an empty sequence. Pass a list of the micro-batches' loss(..., "
         "reduction='parts'); a single LossParts needs no accumulating."),
        (lambda: accumulate(_parts()), InvalidValueError,
         "Expected `parts` to be a non-empty sequence of LossParts (one per micro-batch), but "
         "got a single LossParts."),
        (lambda: accumulate([_parts(), torch.tensor(3.0)]), InvalidValueError,
         "Expected `parts[1]` to be a weightlab LossParts (total, normalizer), but got a "
         "tensor of shape (). Call the loss with reduction='parts'"),
        (lambda: window_normalizer([]), InvalidValueError,
         "Expected `normalizers` to hold one normaliser per micro-batch of the window, but got "
         "an empty sequence. Pass the micro-batches' LossParts or their `normalizer`s "
         "(target_normalizer(loss, y) computes one from the targets)."),
        (lambda: window_normalizer([torch.tensor(1.0), [2.0]]), InvalidValueError,
         "Expected `normalizers[1]` to be a 0-d tensor (a normaliser (LossParts.normalizer) "
         "or a LossParts), but got a list."),
        (lambda: target_normalizer(FocalLoss(), LABELS[0], num_classes=C), InvalidValueError,
         "Expected `loss` to return a LossParts (a loss called with reduction='parts'), but "
         "got a tensor of shape (). Build the loss module with reduction='parts', or pass "
         "reduction='parts' to the functional loss."),
        (lambda: target_normalizer(ce_parts, LABELS[0], num_classes=0), InvalidValueError,
         "Expected `num_classes` to be a positive int (the number of classes C) or None, but "
         "got 0. Pass C for class-index targets, or None for binary and multi-label targets "
         "(logits of the target's shape)."),
        (lambda: target_normalizer(ce_parts, [0, 1], num_classes=C), InvalidValueError,
         "Expected `target` to be a tensor, but got a list. Pass the batch's targets as a tensor."),
    ],
    ids=["tensor", "tuple", "total_shape", "normalizer_float", "normalizer_shape",
         "group_uninitialised", "global_normalizer_shape", "global_normalizer_group",
         "accumulate_empty", "accumulate_single", "accumulate_item", "window_empty",
         "window_item", "target_not_parts", "num_classes", "target_type"],
)  # fmt: skip
def test_bad_input_names_the_argument_and_the_fix(call, error, message):
    with pytest.raises(error) as excinfo:
        call()
    assert str(excinfo.value).startswith(message), str(excinfo.value)
