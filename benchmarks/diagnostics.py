"""Gradient diagnostics of one trial: shared backward passes vs one pass set per loss.

For each architecture, a freshly built lab model on the digits-lt probe batch:

* shared: :func:`weightlab.diagnostics.record_diagnostics` (one forward pass; per
  class one backward pass serves the weighted and the unweighted shares when
  the class's rows of dL/dz differ by a factor), and
* separate: :func:`weightlab.diagnostics.gradient_shares` once for the weighted
  and once for the unweighted loss (a forward and C backward passes each),

timed side by side in the same run; the script also checks that both give the
same shares.

Usage:
    .venv/bin/python benchmarks/diagnostics.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from weightlab.diagnostics import _scalar_loss, gradient_shares, probe_batch, record_diagnostics
from weightlab.lab.architectures import build_model
from weightlab.lab.data import LabData, load_data
from weightlab.weights import class_weights


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def bench_arch(data: LabData, arch: str, w: np.ndarray, repeats: int) -> tuple[float, float, float]:
    """(shared ms, separate ms, largest share difference) for a fresh ``arch`` model."""
    d = data.inputs(arch)
    x, y = probe_batch(d.x_train, d.y_train)
    model = build_model(arch, d.arch_shape(arch), data.num_classes, seed=0)
    weighted = _scalar_loss(None, torch.as_tensor(w))
    plain = _scalar_loss(None, torch.ones(data.num_classes, dtype=torch.float64))

    def shared() -> dict[str, Any]:
        return record_diagnostics(model, None, x, y, w)

    def separate() -> tuple[dict[str, Any], dict[str, Any]]:
        return gradient_shares(model, weighted, x, y), gradient_shares(model, plain, x, y)

    a, (b_w, b_1) = shared(), separate()
    diff = max(
        float(np.nanmax(np.abs(np.array(a[k], float) - np.array(b["share"], float))))
        for k, b in (("share_weighted", b_w), ("share_unweighted", b_1))
    )
    return _median_ms(shared, repeats), _median_ms(separate, repeats), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    data = load_data("digits-lt", imbalance_ratio=10)
    w = class_weights(data.train_counts, "balanced")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; digits-lt probe batch, "
        f"'balanced' weights; median of {args.repeats}; load average {os.getloadavg()[0]:.2f}\n"
    )
    print(f"{'arch':5} {'shared ms':>10} {'separate ms':>12} {'speed-up':>9} {'max |dshare|':>13}")
    for arch in ("mlp", "cnn", "gru", "lstm"):
        t_shared, t_separate, diff = bench_arch(data, arch, w, args.repeats)
        print(
            f"{arch:5} {t_shared:10.1f} {t_separate:12.1f} {t_separate / t_shared:8.2f}x "
            f"{diff:13.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
