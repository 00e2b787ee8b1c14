"""Vectorized vs one-at-a-time training of K lab trials on digits-lt.

For each architecture, K trials of the same architecture and optimizer (seeds
0..K-1, power weightings with alpha from 0 to 1) are trained

* vectorized: one ``train_stack`` call (one K-slice model), and
* sequentially: K ``train_single`` calls, in the same process,

and the script prints the speed-up, plus the vectorized engine's achieved
GFLOP/s (matmul and convolution FLOPs of forward + backward + evaluation,
counted analytically; element-wise work is not counted) against the GFLOP/s of
a 2048 x 2048 float32 matmul measured in the same run, and the self time of
the matmul and convolution kernels in a profiled vectorized run: the best the
engine could do if everything else were free. ``--workers-check``
also times the serial executor over several stacks in one process vs one
single-threaded process per core.

Usage (in the environment ``make run`` uses; ``OMP_WAIT_POLICY=PASSIVE`` makes every
op at 2 threads pay a thread wake-up):
    .venv/bin/python benchmarks/study.py [--threads 1,2] [--epochs 10] [--k 32] [--workers-check 4]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import torch

from weightlab.lab.architectures import default_model_params
from weightlab.lab.data import LabData, load_data
from weightlab.lab.engine import train_single, train_stack
from weightlab.lab.executors import make_executor, threads_per_worker
from weightlab.lab.runner import EngineTrainer
from weightlab.lab.trial import TrialConfig


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_row(arch: str, data: LabData, hidden: int, layers: int) -> tuple[float, float]:
    """(forward, forward + backward) matmul/conv FLOPs of one example through one model."""
    c = data.num_classes
    mats: list[tuple[float, bool]] = []  # (forward FLOPs of one matmul/conv, needs input grad)
    if arch == "mlp":
        dims = [int(np.prod(data.input_shape)), *([hidden] * layers), c]
        mats = [(2.0 * i * o, n > 0) for n, (i, o) in enumerate(itertools.pairwise(dims))]
    elif arch == "cnn":
        cin, h, w = data.arch_shape("cnn")
        for n in range(layers):
            mats.append((2.0 * h * w * hidden * cin * 9, n > 0))
            h, w, cin = h // 2, w // 2, hidden
        mats.append((2.0 * cin * h * w * c, True))
    else:
        t, f = data.arch_shape(arch)
        gates = 3 if arch == "gru" else 4
        for n in range(layers):
            mats.append((2.0 * t * (f if n == 0 else hidden) * gates * hidden, n > 0))
            mats.append((2.0 * t * hidden * gates * hidden, True))
        mats.append((2.0 * hidden * c, True))
    fwd = sum(m for m, _ in mats)
    # backward: a weight gradient per matmul, an input gradient where the input needs one
    train = fwd + sum(m for m, _ in mats) + sum(m for m, grad_in in mats if grad_in)
    return fwd, train


def cpu_name() -> str:
    """The processor's model name (Linux), and the instruction set torch dispatches to."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        name = models[0] if models else name
    except OSError:
        pass
    return f"{name}, torch kernels {torch.backends.cpu.get_cpu_capability()}"


def configs(arch: str, optimizer: str, k: int, epochs: int) -> list[TrialConfig]:
    alphas = np.linspace(0.0, 1.0, k)
    return [
        TrialConfig("digits-lt", arch, optimizer, "power", float(a), seed=s, epochs=epochs)
        for s, a in enumerate(alphas)
    ]


def weights(data: LabData, cfgs: list[TrialConfig]) -> np.ndarray:
    counts = data.train_counts.astype(np.float64)
    w = np.stack([counts ** -(cfg.alpha or 0.0) for cfg in cfgs])
    return w / w.mean(1, keepdims=True)


def _time_engines(
    data: LabData, cfgs: list[TrialConfig], w: np.ndarray
) -> tuple[float, float, float, float, float]:
    """(vectorized engine s, sequential engine s, their wall times, max |logit difference|)."""
    t = time.perf_counter()
    stacked = train_stack(data, cfgs, w)
    vec_wall = time.perf_counter() - t
    vec = stacked[0].timings["stack_train"] + stacked[0].timings["stack_eval"]
    t = time.perf_counter()
    singles = [train_single(data, cfg, wk) for cfg, wk in zip(cfgs, w, strict=True)]
    seq_wall = time.perf_counter() - t
    seq = sum(r.timings["train"] + r.timings["eval"] for r in singles)
    diff = max(
        float(np.abs(np.asarray(a.test_logits) - np.asarray(b.test_logits)).max())
        for a, b in zip(stacked, singles, strict=True)
    )
    return vec, seq, vec_wall, seq_wall, diff


#: Profiler op names whose self time is matmul or convolution work.
_MATMUL_OPS = ("bmm", "baddbmm", "mm", "addmm", "convolution", "conv2d", "_convolution")


def matmul_seconds(data: LabData, cfgs: list[TrialConfig], w: np.ndarray) -> float:
    """Self CPU time of the matmul and convolution kernels in one profiled ``train_stack``.

    The vectorized engine cannot be faster than this: it is the time of the
    FLOPs alone, with element-wise work, the optimizer and Python at zero.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_stack(data, cfgs, w)
    total_us = 0.0
    for event in prof.key_averages():
        name = event.key.removeprefix("aten::").rstrip("_")
        if name in _MATMUL_OPS or "mkldnn_convolution" in name or "convolution_backward" in name:
            total_us += event.self_cpu_time_total
    return total_us / 1e6


def bench_arch(
    data: LabData, arch: str, optimizer: str, k: int, epochs: int, repeats: int
) -> dict[str, float]:
    """Best of ``repeats`` runs of both engines (the machine may be shared)."""
    cfgs = configs(arch, optimizer, k, epochs)
    w = weights(data, cfgs)
    train_stack(data, cfgs[:2], w[:2])  # warm-up (imports, first-call allocations)
    runs = [_time_engines(data, cfgs, w) for _ in range(repeats)]
    vec, seq, vec_wall, seq_wall = (min(r[i] for r in runs) for i in range(4))
    mm_s = min(matmul_seconds(data, cfgs, w) for _ in range(repeats))
    size = default_model_params(arch)
    fwd, train = flops_per_row(arch, data, size["hidden"], size["layers"])
    rows = len(data.y_train) * epochs
    evals = len(data.y_val) * epochs + len(data.y_test)
    flops = k * (train * rows + fwd * evals)
    return {
        "vec": vec,
        "seq": seq,
        "gflop": flops / 1e9,
        "vec_wall": vec_wall,
        "seq_wall": seq_wall,
        "gflops": flops / vec / 1e9,
        "matmul_s": mm_s,
        "max_logit_diff": max(r[4] for r in runs),
    }


def _run_all(stacks: list[list[TrialConfig]], data: LabData, name: str, workers: int) -> None:
    with make_executor(name, workers) as ex:
        ex.start(EngineTrainer(diagnostics=False), data)
        for future in [ex.submit(s) for s in stacks]:
            future.result()


def workers_check(data: LabData, optimizer: str, k: int, epochs: int, n_stacks: int) -> None:
    stacks = [
        [
            TrialConfig("digits-lt", "mlp", optimizer, "power", a, seed=100 * j + s, epochs=epochs)
            for s, a in enumerate(np.linspace(0.0, 1.0, k))
        ]
        for j in range(n_stacks)
    ]
    cores = os.cpu_count() or 1
    t = time.perf_counter()
    _run_all(stacks, data, "serial", 1)
    one = time.perf_counter() - t
    t = time.perf_counter()
    _run_all(stacks, data, "process", cores)
    many = time.perf_counter() - t
    print(
        f"\nexecutors, {n_stacks} mlp stacks of K={k}: serial, one process with "
        f"{torch.get_num_threads()} thread(s) {one:.2f} s; process, {cores} workers x "
        f"{threads_per_worker(cores)} thread(s) {many:.2f} s (incl. process start-up) "
        f"-> {one / many:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--archs", default="mlp,cnn,gru")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to try")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument("--workers-check", type=int, default=0, metavar="N_STACKS")
    args = parser.parse_args()
    data = load_data("digits-lt", imbalance_ratio=10)
    print(
        f"torch {torch.__version__}, {cpu_name()}, {os.cpu_count()} cores; K={args.k}, "
        f"{args.epochs} epochs, "
        f"optimizer={args.optimizer}, batch 64, default model sizes, digits-lt (403 train "
        f"rows); best of {args.repeats}; load average {os.getloadavg()[0]:.2f}\n"
    )
    head = (
        f"{'arch':5} {'threads':>7} {'vectorized s':>12} {'sequential s':>12} {'speed-up':>9} "
        f"{'wall speed-up':>13} {'GFLOP/s':>8} {'matmul GFLOP/s':>14} {'% matmul':>9} "
        f"{'max |dlogit|':>12} {'matmul s':>8}"
    )
    print(head)
    print("-" * len(head))
    best: dict[str, dict[str, float]] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        mm = matmul_gflops()
        for arch in args.archs.split(","):
            r = bench_arch(data, arch, args.optimizer, args.k, args.epochs, args.repeats)
            b = best.setdefault(arch, {"vec": float("inf"), "seq": float("inf")})
            b["vec"], b["seq"] = min(b["vec"], r["vec"]), min(b["seq"], r["seq"])
            b["mm"] = min(b.get("mm", float("inf")), r["matmul_s"])
            b["peak_s"] = min(b.get("peak_s", float("inf")), r["gflop"] / mm)
            print(
                f"{arch:5} {threads:7d} {r['vec']:12.3f} {r['seq']:12.3f} "
                f"{r['seq'] / r['vec']:8.1f}x {r['seq_wall'] / r['vec_wall']:12.1f}x "
                f"{r['gflops']:8.1f} {mm:14.1f} {100 * r['gflops'] / mm:8.1f}% "
                f"{r['max_logit_diff']:12.1e} {r['matmul_s']:8.3f}",
                flush=True,
            )
    print("\nbest setting of each engine vs best setting of the other:")
    for arch, b in best.items():
        print(
            f"  {arch:5} {b['seq']:.3f} s / {b['vec']:.3f} s = {b['seq'] / b['vec']:.1f}x; "
            f"bound with matmuls alone: {b['seq']:.3f} s / {b['mm']:.3f} s = "
            f"{b['seq'] / b['mm']:.1f}x; at the large-matmul rate: "
            f"{b['seq']:.3f} s / {b['peak_s']:.3f} s = {b['seq'] / b['peak_s']:.1f}x"
        )
    print(
        "\nspeed-up: engine time (training + per-epoch validation + test logits); wall "
        "speed-up also counts the per-trial test metrics (sklearn), equal on both sides. "
        "max |dlogit|: largest difference between a slice's test logits and its trial "
        "trained alone after all epochs. matmul s: self time of the matmul and convolution "
        "kernels in one profiled vectorized run (best of the repeats), i.e. the engine's time "
        "if element-wise work, the optimizer and Python cost nothing; the bound is the best "
        "sequential time over the least matmul time. At the large-matmul rate: the model's "
        "matmul FLOPs at the 2048x2048 matmul's GFLOP/s, the bound for any engine whose small "
        "batched matmuls run no faster than one large matmul."
    )
    if args.workers_check:
        torch.set_num_threads(os.cpu_count() or 1)
        workers_check(data, args.optimizer, args.k, args.epochs, args.workers_check)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
