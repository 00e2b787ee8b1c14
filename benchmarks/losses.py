"""Forward + backward time and peak extra memory of every weightlab loss on CPU.

Usage:  .venv/bin/python benchmarks/losses.py [--repeats 9] [--no-memory]

For each shape it times, in the same run and interleaved round-robin,
PyTorch's own weighted loss, the weightlab loss, and the straightforward
composite a user would write from the paper (one-hot targets, the full
formula over all classes). Time: median of ``--repeats`` forward+backward
passes (after one warm-up), ``time.perf_counter``.

Like with like: every row of a shape gets the same logits, targets and
weights (the class weights ``w`` of PyTorch's row are passed to ours and to
the composites). The weightlab losses run with their defaults, i.e.
``validate_args=True``: the value checks of targets and weights (which a
user gets unless they opt out) are inside the timed region.

Peak extra memory: the RSS high-water mark (``VmHWM``) of a *fresh
subprocess* that builds the inputs, resets the mark (``/proc/self/clear_refs``),
runs one forward+backward, and reports the increase over the RSS before it.
Large tensors are mmapped by the allocator and given back on free, so this
sees every torch allocation (tracemalloc does not see them at all).
Resolution is a page; small numbers (< 1 MiB) are noise.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import weightlab.functional as WF

Loss = Callable[[torch.Tensor], torch.Tensor]

GAMMA = 2.0
TAU = 1.0


def _counts(c: int) -> torch.Tensor:
    return torch.tensor([max(1.0, 1000.0 * 0.97**k) for k in range(c)])


def _ldam_margins(counts: torch.Tensor) -> torch.Tensor:
    m = 1.0 / counts.pow(0.25)
    return m * (0.5 / m.max())


def multiclass(n: int, c: int) -> tuple[dict[str, Loss], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # logits in [-1, 1] (cosines, as LDAM assumes); s=30 on randn logits would spend
    # most of the time on denormal exp() results in *every* implementation.
    x = torch.rand(n, c, generator=g) * 2 - 1
    y = torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g) + 0.5
    counts = _counts(c)
    log_prior = torch.log(counts / counts.sum())
    margins = _ldam_margins(counts)
    cb = WF.class_balanced_weights(counts, beta=0.999)

    def focal_composite(x: torch.Tensor) -> torch.Tensor:
        oh = F.one_hot(y, c).to(x.dtype)
        p = torch.softmax(x, 1)
        loss = -(oh * w * (1 - p) ** GAMMA * torch.log_softmax(x, 1)).sum(1)
        return loss.sum() / w[y].sum()

    def la_composite(x: torch.Tensor) -> torch.Tensor:
        oh = F.one_hot(y, c).to(x.dtype)
        loss = -(oh * torch.log_softmax(x + TAU * log_prior, 1)).sum(1) * w[y]
        return loss.sum() / w[y].sum()

    def bs_composite(x: torch.Tensor) -> torch.Tensor:
        oh = F.one_hot(y, c).to(x.dtype)
        loss = -(oh * torch.log_softmax(x + torch.log(counts), 1)).sum(1) * w[y]
        return loss.sum() / w[y].sum()

    def ldam_composite(x: torch.Tensor) -> torch.Tensor:  # the authors' LDAMLoss.forward
        index = torch.zeros_like(x, dtype=torch.bool)
        index.scatter_(1, y.view(-1, 1), True)
        batch_m = torch.matmul(margins[None, :], index.float().t()).view(-1, 1)
        output = torch.where(index, x - batch_m, x)
        return F.cross_entropy(30.0 * output, y, weight=w)

    def cb_softmax_composite(x: torch.Tensor) -> torch.Tensor:  # Cui et al.: per-sample weights
        oh = F.one_hot(y, c).to(x.dtype)
        wy = (oh * cb).sum(1)
        return (-(oh * torch.log_softmax(x, 1)).sum(1) * wy).mean()

    def cb_focal_composite(x: torch.Tensor) -> torch.Tensor:  # Cui et al.'s focal (sigmoid)
        oh = F.one_hot(y, c).to(x.dtype)
        wy = (oh * cb).sum(1, keepdim=True)
        bce = F.binary_cross_entropy_with_logits(x, oh, reduction="none")
        mod = torch.exp(-GAMMA * oh * x - GAMMA * torch.log1p(torch.exp(-x)))
        return (wy * mod * bce).sum() / n

    losses: dict[str, Loss] = {
        "torch cross_entropy(weight=)": lambda x: F.cross_entropy(x, y, weight=w),
        "cross_entropy": lambda x: WF.cross_entropy(x, y, class_weight=w),
        "focal": lambda x: WF.focal_loss(x, y, gamma=GAMMA, class_weight=w),
        "focal composite": focal_composite,
        "logit_adjusted": lambda x: WF.logit_adjusted_loss(
            x, y, counts=counts, tau=TAU, class_weight=w
        ),
        "logit_adjusted composite": la_composite,
        "balanced_softmax": lambda x: WF.balanced_softmax_loss(x, y, counts, class_weight=w),
        "balanced_softmax composite": bs_composite,
        "ldam": lambda x: WF.ldam_loss(x, y, counts, class_weight=w),
        "ldam composite": ldam_composite,
        "class_balanced softmax": lambda x: WF.class_balanced_loss(x, y, counts, beta=0.999),
        "class_balanced softmax composite": cb_softmax_composite,
        "class_balanced focal": lambda x: WF.class_balanced_loss(
            x, y, counts, beta=0.999, loss_type="focal", gamma=GAMMA
        ),
        "class_balanced focal composite": cb_focal_composite,
    }
    return losses, x


def multilabel(n: int, labels: int) -> tuple[dict[str, Loss], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, labels, generator=g)
    t = (torch.rand(n, labels, generator=g) < 0.1).float()
    pw = torch.rand(labels, generator=g) * 5 + 1

    def sigmoid_focal_composite(x: torch.Tensor) -> torch.Tensor:  # torchvision's formula
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * ((1 - p_t) ** GAMMA) * (0.25 * t + 0.75 * (1 - t))
        return loss.mean()

    def asl_composite(x: torch.Tensor) -> torch.Tensor:  # Ridnik et al.'s AsymmetricLoss
        xs_pos = torch.sigmoid(x)
        xs_neg = (1 - xs_pos + 0.05).clamp(max=1)
        loss = t * torch.log(xs_pos.clamp(min=1e-8)) + (1 - t) * torch.log(xs_neg.clamp(min=1e-8))
        pt = xs_pos * t + xs_neg * (1 - t)
        gamma = 1.0 * t + 4.0 * (1 - t)
        return -(loss * torch.pow(1 - pt, gamma)).mean()

    losses: dict[str, Loss] = {
        "torch bce_with_logits(pos_weight=)": lambda x: F.binary_cross_entropy_with_logits(
            x, t, pos_weight=pw
        ),
        "binary_cross_entropy": lambda x: WF.binary_cross_entropy(x, t, pos_weight=pw),
        "sigmoid_focal": lambda x: WF.sigmoid_focal_loss(x, t, gamma=GAMMA, alpha=0.25),
        "sigmoid_focal composite": sigmoid_focal_composite,
        "asymmetric": lambda x: WF.asymmetric_loss(x, t),
        "asymmetric composite": asl_composite,
    }
    return losses, x


SHAPES: dict[str, Callable[[], tuple[dict[str, Loss], torch.Tensor]]] = {
    "N=8192, C=1000": lambda: multiclass(8192, 1000),
    "N=65536, C=100": lambda: multiclass(65536, 100),
    "multi-label N=8192, L=100": lambda: multilabel(8192, 100),
}


def _step(loss: Loss, x: torch.Tensor) -> None:
    x.grad = None
    loss(x).backward()


def time_shape(shape: str, repeats: int) -> dict[str, float]:
    losses, base = SHAPES[shape]()
    x = base.clone().requires_grad_(True)
    for fn in losses.values():
        _step(fn, x)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(repeats):
        for name, fn in losses.items():
            start = time.perf_counter()
            _step(fn, x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) * 1e3 for name, v in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(shape: str, name: str) -> None:
    losses, base = SHAPES[shape]()
    x = base.clone().requires_grad_(True)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    _step(losses[name], x)
    print(json.dumps((_status_kib("VmHWM") - before) / 1024))


def memory_mib(shape: str, name: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", shape, name],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", nargs=2, metavar=("SHAPE", "NAME"))
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, "
        f"forward+backward, median of {args.repeats}; weightlab losses with "
        "validate_args=True (the default)"
    )
    for shape in SHAPES:
        times = time_shape(shape, args.repeats)
        torch_name = next(n for n in times if n.startswith("torch"))
        print(f"\n### {shape}\n")
        print("| loss | ms | × torch | × composite (speed-up) | peak extra MiB | composite MiB |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, ms in times.items():
            if name.endswith("composite"):
                continue
            composite = f"{name} composite"
            ratio = ms / times[torch_name]
            speed = f"{times[composite] / ms:.2f}x" if composite in times else "–"
            mem = comp_mem = "–"
            if not args.no_memory:
                mem = f"{memory_mib(shape, name):.0f}"
                if composite in times:
                    comp_mem = f"{memory_mib(shape, composite):.0f}"
            comp_ms = f" (composite {times[composite]:.1f} ms)" if composite in times else ""
            print(f"| {name} | {ms:.1f}{comp_ms} | {ratio:.2f} | {speed} | {mem} | {comp_mem} |")
        sys.stdout.flush()


if __name__ == "__main__":
    _ = math
    main()
