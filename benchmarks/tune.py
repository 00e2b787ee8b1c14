"""`weightlab tune` (K trials per vectorized stack) vs a plain Optuna loop (one model per trial).

The same budget (``--trials``, default 64) on digits-lt, for the MLP and the
GRU with Adam, through

* **weightlab**: :func:`weightlab.tune.run_tuning`'s search with ``--batch``
  (K, default 16) trials per stack, successive-halving pruning inside the
  stack (the judging phase is not timed: the loop below has none);
* **plain Optuna**: what a user writes today: ``study.optimize`` over an
  objective that builds one PyTorch model, trains it with ``torch.optim.Adam``
  over shuffled mini-batches, reports the validation metric after each epoch
  and prunes with the same pruner; the same search space (weighting family
  and parameters drawn by the same :class:`~weightlab.tune.SearchSpace`, so
  the same losses and class weights), model sizes, epochs and batch size.

Both run in this process after a tiny warm-up run of each (imports and first
calls are paid once per process either way), interleaved per architecture (A,
B, B, A with ``--repeats 2``). It prints trials per second of each and their ratio, the
best validation value each had reached after the same wall time (the shorter
run's), and the share of epochs pruning saved. ``--lr-check`` also times
per-slice learning rates in one stack against grouping the trials by learning
rate (one stack each), and ``--cli`` times ``weightlab tune`` with its defaults.

Usage:
    .venv/bin/python benchmarks/tune.py [--trials 64] [--batch 16] [--epochs 20]
        [--archs mlp,gru] [--repeats 2] [--lr-check] [--cli]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from weightlab.lab.architectures import build_model
from weightlab.lab.data import LabData, load_data
from weightlab.lab.engine import stacked_val_metric, train_stack
from weightlab.lab.store import MemoryStore
from weightlab.lab.trial import TrialConfig
from weightlab.lab.weightings import resolve_weighting
from weightlab.tune import SearchSpace, TuneSpec, run_tuning
from weightlab.tune.run import _pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def weightlab_run(data: LabData, spec: TuneSpec) -> dict[str, Any]:
    trace: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    def progress(phase: str, p: Any, best: dict[str, Any]) -> None:
        value = next(iter(best.values()))
        if phase == "search" and value is not None:
            trace.append((time.perf_counter() - t0, float(value)))

    out = run_tuning(spec, MemoryStore(), data=data, progress=progress)
    trace.append((out.search_seconds, out.cells[0].best_val[0]))  # told after the last stack
    return {
        "seconds": out.search_seconds,
        "trace": trace,
        "epochs": out.trained_epochs,
        "full": out.full_epochs,
        "best": out.cells[0].best_val[0],
    }


def plain_objective(
    data: LabData, spec: TuneSpec, arch: str, trace: list, t0: float, counter: dict[str, int]
):
    d = data.inputs(arch)
    base = spec.base(arch, "adam")
    shape = d.arch_shape(arch)

    def objective(trial: optuna.Trial) -> float:
        cfg = spec.space.suggest(trial).apply(base)
        w = resolve_weighting(cfg, d.train_counts)
        weight = torch.as_tensor(w.class_weight, dtype=torch.float32)
        torch.manual_seed(trial.number)
        model = build_model(arch, shape, d.num_classes, **dict(cfg.model_params))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        n = len(d.y_train)
        best = -1.0
        for epoch in range(cfg.epochs):
            model.train()
            perm = torch.randperm(n)
            for start in range(0, n, cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                parts = w.loss(model(d.x_train[idx]), d.y_train[idx], weight)
                loss = parts.total / parts.normalizer
                opt.zero_grad()
                loss.backward()
                opt.step()
            counter["epochs"] += 1
            model.eval()
            with torch.no_grad():
                score = float(stacked_val_metric(model(d.x_val).unsqueeze(0), d.y_val)[0])
            best = max(best, score)
            trial.report(score, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trace.append((time.perf_counter() - t0, best))
        return best

    return objective


def plain_run(data: LabData, spec: TuneSpec, arch: str) -> dict[str, Any]:
    trace: list[tuple[float, float]] = []
    counter = {"epochs": 0}
    study = optuna.create_study(
        direction="maximize",
        pruner=_pruner(optuna, spec),
        sampler=optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=10),
    )
    t0 = time.perf_counter()
    study.optimize(plain_objective(data, spec, arch, trace, t0, counter), n_trials=spec.trials)
    seconds = time.perf_counter() - t0
    best_trace = []
    best = -1.0
    for t, v in trace:
        best = max(best, v)
        best_trace.append((t, best))
    return {
        "seconds": seconds,
        "trace": best_trace,
        "epochs": counter["epochs"],
        "full": spec.trials * spec.epochs,
        "best": study.best_value,
    }


def best_at(trace: list[tuple[float, float]], t: float) -> float:
    vals = [v for s, v in trace if s <= t]
    return max(vals) if vals else float("nan")


def lr_check(data: LabData, arch: str, k: int, epochs: int) -> None:
    """Per-slice learning rates in one stack vs one stack per learning rate (grouping)."""
    rng = np.random.default_rng(0)
    lrs = np.exp(rng.uniform(np.log(1e-4), np.log(3e-2), k))
    cfgs = [
        TrialConfig(
            "digits-lt",
            arch,
            "adam",
            "none",
            None,
            seed=i,
            lr=float(lr),
            epochs=epochs,
            model_params=(("hidden", 64),),
        )
        for i, lr in enumerate(lrs)
    ]
    ones = [[1.0] * data.num_classes]
    times = {"one stack, per-slice lr": [], "grouped by lr (K stacks of 1)": []}
    for _ in range(2):
        t = time.perf_counter()
        train_stack(data, cfgs, ones * k, evaluate_test=False)
        times["one stack, per-slice lr"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for c in cfgs:
            train_stack(data, [c], ones, evaluate_test=False)
        times["grouped by lr (K stacks of 1)"].append(time.perf_counter() - t)
    a, b = (min(v) for v in times.values())
    print(f"\nlr check ({arch}, K={k} distinct learning rates, {epochs} epochs, best of 2):")
    for name, v in times.items():
        print(f"  {name:32s} {min(v):7.2f} s")
    print(f"  per-slice lr is {b / a:.1f}x faster than grouping")


def cli_check(trials: int) -> None:
    exe = Path(sys.executable).with_name("weightlab")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            str(exe),
            "tune",
            "--archs",
            "mlp",
            "--optimizers",
            "adam",
            "--quiet",
            "--no-report",
            "--store",
            os.path.join(tmp, "t.sqlite"),
        ]
        t = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True)
        seconds = time.perf_counter() - t
    status = "ok" if done.returncode == 0 else f"rc {done.returncode}: {done.stderr[-300:]}"
    print(
        f"\n`weightlab tune --archs mlp --optimizers adam` with its defaults ({trials} trials, "
        f"judging included): {seconds:.1f} s ({status})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--archs", default="mlp,gru")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--lr-check", action="store_true")
    p.add_argument("--cli", action="store_true")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    data = load_data("digits-lt")
    # one-time costs (imports, first vmap, Optuna's samplers) are paid once per process by
    # either way of tuning; a tiny run of each first keeps them out of the comparison
    for arch in args.archs.split(","):
        warm = TuneSpec(
            archs=(arch,), optimizers=("adam",), trials=2, batch=2, epochs=1, judge_seeds=()
        )
        weightlab_run(data, warm)
        plain_run(data, warm, arch)
    rows = []
    for arch in args.archs.split(","):
        spec = TuneSpec(
            archs=(arch,),
            optimizers=("adam",),
            trials=args.trials,
            batch=args.batch,
            epochs=args.epochs,
            judge_seeds=(),
            space=SearchSpace(),
        )
        runs: dict[str, list[dict[str, Any]]] = {"weightlab": [], "plain": []}
        order = (
            ["weightlab", "plain", "plain", "weightlab"][: 2 * args.repeats]
            if args.repeats > 1
            else ["weightlab", "plain"]
        )
        for name in order:
            runs[name].append(
                weightlab_run(data, spec) if name == "weightlab" else plain_run(data, spec, arch)
            )
        a = min(runs["weightlab"], key=lambda r: r["seconds"])
        b = min(runs["plain"], key=lambda r: r["seconds"])
        horizon = min(a["seconds"], b["seconds"])
        rows.append((arch, a, b, horizon))
    print(
        f"\n{args.trials} trials, digits-lt, Adam, {args.epochs} epochs, weightlab K={args.batch};"
        f" best of {args.repeats} interleaved run(s)"
    )
    print(
        f"{'arch':5s} {'engine':10s} {'seconds':>8s} {'trials/s':>9s} {'best val':>9s} "
        f"{'best val @ t':>13s} {'epochs run':>11s} {'saved':>6s}"
    )
    for arch, a, b, horizon in rows:
        for name, r in (("weightlab", a), ("plain", b)):
            print(
                f"{arch:5s} {name:10s} {r['seconds']:8.1f} {args.trials / r['seconds']:9.2f} "
                f"{r['best']:9.3f} {best_at(r['trace'], horizon):13.3f} "
                f"{r['epochs']:5d}/{r['full']:<5d} {1 - r['epochs'] / r['full']:6.0%}"
            )
        print(
            f"{arch:5s} ratio: weightlab runs {b['seconds'] / a['seconds']:.1f}x the trials per "
            f"second of the plain loop (t = {horizon:.1f} s for 'best val @ t')"
        )
    if args.lr_check:
        for arch in args.archs.split(","):
            lr_check(data, arch, args.batch, 10)
    if args.cli:
        cli_check(args.trials)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
