"""Scale-out: a study through the process pool and the Ray executor at 1 and 2 workers.

Runs a preset (default ``full``, optionally cut down by the subset flags, which the output
states) with ``make_executor("process", w)`` and ``make_executor("ray", w)`` for each
``w`` in ``--workers``, interleaved (process 1, ray 1, process 2, ray 2, then again for each
``--repeats``), each run from nothing: the process pool spawns its workers, the Ray executor
starts its local runtime (and stops it), both inside the timed wall. It prints each run's
wall time and its ratio to the same executor at one worker, then, measured in the same
process:

* the Ray runtime's start-up (``ray.init``) and its per-task overhead: the round trip of
  an empty stack through ``RayExecutor.submit`` (median of ``--overhead-n``, warm workers;
  the process pool's for comparison);
* one stack's training time in this process (each arch's first stack of the runs above,
  and of the whole preset timed at ``--estimate-epochs`` and scaled to its epochs; one
  thread), and the driver's SQLite ``put`` per trial;
* an estimate, from those per-stack times, of a ``--trials``-trial study like the preset on
  ``--nodes`` nodes of this machine's kind (one single-threaded stack per CPU), which is at
  least as long as the driver's store writes.

Usage:
    .venv/bin/python benchmarks/scale.py [--preset full] [--archs mlp,cnn] [--epochs 10]
        [--seeds 0,1] [--workers 1,2] [--repeats 1] [--overhead-n 200]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray binds 127.0.0.1

import torch

from weightlab.lab.data import load_data
from weightlab.lab.executors import make_executor
from weightlab.lab.runner import EngineTrainer
from weightlab.lab.spec import StudySpec
from weightlab.lab.store import MemoryStore
from weightlab.lab.store_sqlite import SQLiteStore
from weightlab.lab.study import run_study


def empty_stack(data: Any, configs: Any) -> list[Any]:
    """A stack that trains nothing: what is left of its round trip is the executor's overhead."""
    return list(configs)


def spec_from(args: argparse.Namespace) -> StudySpec:
    overrides: dict[str, Any] = {}
    if args.archs:
        overrides["archs"] = tuple(args.archs.split(","))
    if args.optimizers:
        overrides["optimizers"] = tuple(args.optimizers.split(","))
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.seeds:
        overrides["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    return StudySpec.preset(args.preset, **overrides)


def timed_study(spec: StudySpec, name: str, workers: int) -> tuple[float, MemoryStore]:
    store = MemoryStore()
    t = time.perf_counter()
    ex = make_executor(name, workers, object_store_memory=200 * 2**20) if name == "ray" else (
        make_executor(name, workers))  # fmt: skip
    out = run_study(spec, store, executor=ex, diagnostics=False)
    wall = time.perf_counter() - t
    assert out.ran == spec.num_trials and out.failed == 0, out
    return wall, store


def round_trips(name: str, n: int) -> float:
    """Median seconds of ``n`` sequential empty-stack round trips (after 10 warm-up ones)."""
    with make_executor(name, 1) as ex:
        ex.start(empty_stack, load_data("digits-lt"))
        for _ in range(10):
            ex.submit([]).result()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            ex.submit([]).result()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def ray_start_seconds() -> float:
    import ray

    t = time.perf_counter()
    ray.init(address="local", include_dashboard=False, object_store_memory=200 * 2**20,
             log_to_driver=False, logging_level="ERROR")  # fmt: skip
    took = time.perf_counter() - t
    ray.shutdown()
    return took


def one_stack_seconds(spec: StudySpec) -> dict[str, tuple[int, float]]:
    """Per arch: (trials, seconds) of its first stack, here on one thread, after a warm-up."""
    data = load_data(spec.data, **spec.data_params)
    train = EngineTrainer(spec.metric, diagnostics=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        warm = next(iter(spec.stacks()))
        train(data, warm[:1])  # first-call costs (imports, allocator) are not the stack's
        for stack in spec.stacks():
            arch = stack[0].arch
            if arch in out:
                continue
            t = time.perf_counter()
            train(data, stack)
            out[arch] = (len(stack), time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return out


def put_seconds(store: MemoryStore) -> float:
    """Seconds per trial of the driver's SQLite puts (the one writer), over one run's results."""
    results = list(store.results())
    with tempfile.TemporaryDirectory() as tmp, SQLiteStore(Path(tmp) / "s.sqlite") as sql:
        t = time.perf_counter()
        for r in results:
            sql.put(r)
        return (time.perf_counter() - t) / len(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="full")
    p.add_argument("--archs", help="subset: comma-separated architectures")
    p.add_argument("--optimizers", help="subset: comma-separated optimizers")
    p.add_argument("--epochs", type=int, help="subset: epochs per trial")
    p.add_argument("--seeds", help="subset: comma-separated seeds")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--executors", default="process,ray")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--overhead-n", type=int, default=200)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--estimate-epochs", type=int, default=3,
                   help="epochs the estimate's stacks are timed at (scaled to the preset's)")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    spec = spec_from(args)
    stacks = list(spec.stacks())
    subset = {k: getattr(args, k) for k in ("archs", "optimizers", "epochs", "seeds")}
    subset = {k: v for k, v in subset.items() if v}
    print(f"preset {args.preset!r}" + (f", subset {subset}" if subset else "") +
          f": {spec.num_trials} trials in {len(stacks)} stacks (sizes "
          f"{sorted({len(s) for s in stacks})}), {spec.epochs} epochs; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")  # fmt: skip

    workers = [int(w) for w in args.workers.split(",")]
    names = args.executors.split(",")
    walls: dict[tuple[str, int], list[float]] = {}
    stores: dict[str, MemoryStore] = {}
    for r in range(args.repeats):
        for w in workers:
            for name in names:
                wall, store = timed_study(spec, name, w)
                walls.setdefault((name, w), []).append(wall)
                stores[name] = store
                print(f"  round {r + 1}: {name:<7} workers={w}: {wall:7.1f} s", flush=True)
    print()
    print("executor  workers  wall s (each run)        best s  vs 1 worker")
    for name in names:
        base = min(walls[(name, workers[0])])
        for w in workers:
            best = min(walls[(name, w)])
            each = ", ".join(f"{x:.1f}" for x in walls[(name, w)])
            print(f"{name:<8}  {w:>7}  {each:<23} {best:7.1f}  {base / best:10.2f}x")
    if "process" in names and "ray" in names:
        for w in workers:
            ratio = min(walls[("ray", w)]) / min(walls[("process", w)])
            print(f"ray / process at {w} worker(s): {ratio:.3f}")
    boot = ray_start_seconds()
    ray_rt = round_trips("ray", args.overhead_n)
    proc_rt = round_trips("process", args.overhead_n)
    print(f"\nRay runtime start (ray.init, local): {boot:.2f} s")
    print(f"per-task round trip, empty stack, median of {args.overhead_n}: "
          f"ray {ray_rt * 1e3:.2f} ms, process pool {proc_rt * 1e3:.2f} ms")  # fmt: skip
    one = one_stack_seconds(spec)
    for arch, (k, secs) in one.items():
        print(f"one {arch} stack of {k} trials, {spec.epochs} epochs, 1 thread, here: {secs:.2f} s")
    put = put_seconds(stores[names[0]])
    print(f"driver SQLite put: {put * 1e3:.2f} ms per trial")

    # Estimate for a study like the full preset: each arch's first stack of the whole
    # preset (all weightings and seeds), trained here at --estimate-epochs and scaled
    # linearly to the preset's epochs (training and per-epoch validation are linear in
    # epochs; the once-per-trial test metrics are over-counted), one per CPU of N nodes
    # like this one; the driver writes the store alone, so the study takes at least its puts.
    full = StudySpec.preset(args.preset)
    cut = StudySpec.preset(args.preset, epochs=args.estimate_epochs)
    one_full = {a: (k, secs * full.epochs / cut.epochs)
                for a, (k, secs) in one_stack_seconds(cut).items()}  # fmt: skip
    for arch, (k, secs) in one_full.items():
        print(f"one {arch} stack of the {args.preset} preset ({k} trials), {full.epochs} epochs "
              f"(timed at {cut.epochs}, x{full.epochs / cut.epochs:g}), 1 thread: {secs:.1f} s")
    cpus = os.cpu_count() or 1
    slots = args.nodes * cpus
    per_trial = statistics.mean(secs / k for k, secs in one_full.values())
    k_mean = full.num_trials / len(list(full.stacks()))
    n_stacks = math.ceil(args.trials / k_mean)
    waves = math.ceil(n_stacks / slots)
    stack_s = per_trial * k_mean + ray_rt
    train_s = waves * stack_s
    writes = args.trials * put
    total = boot + max(train_s, writes)
    bound = "the driver's store writes" if writes > train_s else "training"
    print(f"\nestimate: {args.trials} trials like the {args.preset} preset = {n_stacks} stacks "
          f"of ~{k_mean:.0f} trials (mean over {', '.join(one_full)}) on {args.nodes} nodes x "
          f"{cpus} CPUs = {slots} single-thread tasks at once: {waves} wave(s) x "
          f"{stack_s:.1f} s = {train_s:.0f} s of training; the driver's {args.trials} SQLite "
          f"puts take {writes:.0f} s; with {boot:.1f} s of start-up: about {total:.0f} s "
          f"({total / 60:.1f} min), bound by {bound}. One single-thread worker: "
          f"{n_stacks * stack_s / 3600:.1f} h")  # fmt: skip
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
