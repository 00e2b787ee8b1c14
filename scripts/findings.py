"""Write docs/findings.md: what the lab measures on digits-lt, against the literature's ordering.

Runs (or resumes) one study per imbalance ratio into ``build/findings-r<ratio>.sqlite``
and writes the page from the stored trials with the summary's statistics
(paired gains over ``none`` per seed, 95 % intervals with test-row noise, each
weighting at its learning rate chosen on validation). Every number on the page
comes from this script's run; rerun it to check them.

Usage:
    .venv/bin/python scripts/findings.py [--preset quick] [--seeds 0,1,2,3,4] [--ratios 10,100]
        [--out docs/findings.md]

``--preset full`` is the issue's full grid (four architectures, four
optimizers, seven weightings, three learning rates each): hours on two cores.
The page records which grid produced it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from weightlab.lab.stores import open_store
from weightlab.lab.study import StudySpec, run_study, summarize

#: The literature's claims the page checks, as (weighting label, source, claim).
CLAIMS = (
    (
        "ldam",
        "Cao et al. 2019 (LDAM; with DRW on CIFAR-10-LT)",
        "LDAM beats plain cross-entropy on long-tailed data",
    ),
    ("logit_adjusted", "Menon et al. 2021", "logit adjustment beats plain cross-entropy"),
    (
        "power(a=1)",
        "Cao et al. 2019, Cui et al. 2019 (re-weighting baselines)",
        "inverse-frequency re-weighting beats plain cross-entropy",
    ),
    (
        "focal",
        "Lin et al. 2017 (as a long-tail baseline in Cui et al. 2019)",
        "focal loss beats plain cross-entropy",
    ),
)


def _fmt(g: Any) -> str:
    if g is None or g.gain is None:
        return "-"
    if g.gain_low is None or not math.isfinite(g.gain_low):
        return f"{g.gain:+.3f}"
    return f"{g.gain:+.3f} [{g.gain_low:+.3f}, {g.gain_high:+.3f}]"


def _entry(cell: Any, label: str) -> Any:
    for w in cell.ranking:
        if label in w.names or w.weighting == label:
            return w
    return None


def study(ratio: float, preset: str, seeds: list[int], root: Path) -> tuple[Any, Any, float]:
    """Run (or resume) the preset at ``ratio`` and summarise it; its trials' compute seconds."""
    spec = StudySpec.preset(preset, data_params={"imbalance_ratio": ratio}, seeds=seeds)
    path = root / f"findings-r{ratio:g}.sqlite"
    with open_store(path) as store:
        out = run_study(spec, store, command=sys.argv, diagnostics=False)
        ids = set(out.trial_ids)
        results = [r for r in store.results() if r.config.trial_id in ids]
        summary = summarize(results, spec.metric)
    compute = sum(r.timings.get("train", 0.0) + r.timings.get("eval", 0.0) for r in results)
    return spec, summary, compute


def page(runs: list[tuple[float, Any, Any, float]], preset: str) -> str:
    """The findings page as Markdown."""
    lines = [
        "# Findings: what the lab measures on digits-lt",
        "",
        "Produced by `scripts/findings.py` (rerun it to check every number; its command "
        "line and the grid are below). Metric: balanced accuracy on the test split; each "
        "weighting of each (architecture, optimizer) cell is trained at its learning rate "
        "chosen on validation from the preset's grid; gains over `none` are paired per seed "
        "with a 95 % interval that adds a paired bootstrap of the test rows to the seed "
        "noise (see [lab.md](lab.md)). Cells whose unweighted model is near chance are "
        "marked undertrained and not used as evidence.",
        "",
    ]
    if preset != "full":
        lines += [
            f"This page was produced with the `{preset}` grid (three architectures, three "
            "optimizers, two learning rates each), not the full preset (four architectures, "
            "four optimizers, three learning rates, seven weightings), which takes hours on two "
            "cores: `python scripts/findings.py --preset full` runs it.",
            "",
        ]
    lines += [
        "The lab's `ldam` trains LDAM on the cosine head without deferred re-weighting (Cao et "
        "al. pair it with DRW; `weightlab tune` searches the DRW start epoch).",
        "",
    ]
    for ratio, spec, summary, seconds in runs:
        lines += [
            f"## Imbalance ratio {ratio:g}",
            "",
            f"Grid: preset `{preset}`, archs {', '.join(spec.archs)}; optimizers "
            f"{', '.join(spec.optimizers)}; weightings {', '.join(spec.weightings)} "
            f"(power at {', '.join(f'{a:g}' for a in spec.strengths)}); seeds "
            f"{', '.join(map(str, spec.seeds))}; up to {spec.epochs} epochs, patience "
            f"{spec.patience}; {spec.num_trials} trials ({seconds:.0f} s of training and "
            "evaluation, summed over trials).",
            "",
            "| cell | none | chosen on validation | its gain over none [95 % CI] | "
            + " | ".join(f"{lab} gain" for lab, _, _ in CLAIMS)
            + " |",
            "|---|---|---|---|" + "---|" * len(CLAIMS),
        ]
        for cell in summary.cells:
            none = _entry(cell, "none")
            base = f"{none.mean:.3f}" if none is not None and none.mean is not None else "-"
            best = cell.best
            flag = " (undertrained)" if cell.undertrained else ""
            row = [
                f"{cell.arch}/{cell.optimizer}{flag}",
                base,
                best.weighting if best is not None else "-",
                _fmt(best),
            ]
            row += [_fmt(_entry(cell, lab)) for lab, _, _ in CLAIMS]
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", "Against the literature:", ""]
        for lab, source, claim in CLAIMS:
            above = below = unclear = 0
            for cell in summary.cells:
                e = _entry(cell, lab)
                if (
                    cell.undertrained
                    or e is None
                    or e.gain is None
                    or e.gain_low is None
                    or not math.isfinite(e.gain_low)
                ):
                    continue
                if e.gain_low > 0:
                    above += 1
                elif e.gain_high < 0:
                    below += 1
                else:
                    unclear += 1
            n = above + below + unclear
            if not n:
                continue
            if above == n:
                verdict = "agrees"
            elif below == n:
                verdict = "disagrees: it loses to cross-entropy in every cell"
            elif above > below and above >= unclear:
                verdict = "mostly agrees"
            elif below > above:
                verdict = "disagrees more often than it agrees"
            else:
                verdict = "is not supported with this many seeds (most intervals cover 0)"
            lines.append(
                f"- {source}: *{claim}*. Here: above cross-entropy in {above} of {n} "
                f"trained cells, below in {below}, interval covering 0 in {unclear}; "
                f"our data {verdict}."
            )
        lines += [
            "",
            "The summary's answer for this ratio, as printed:",
            "",
            "> " + summary.answer,
            "",
        ]
    lines += ["## Command", "", "```sh", "python " + " ".join(sys.argv), "```", ""]
    return "\n".join(lines)


def main() -> None:
    """Parse the flags, run the studies, write the page."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--ratios", default="10,100")
    p.add_argument("--out", default="docs/findings.md")
    p.add_argument("--root", default="build")
    args = p.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for ratio in (float(r) for r in args.ratios.split(",")):
        spec, summary, seconds = study(ratio, args.preset, seeds, root)
        print(f"ratio {ratio:g}: {spec.num_trials} trials, {seconds:.0f} s", flush=True)
        runs.append((ratio, spec, summary, seconds))
    Path(args.out).write_text(page(runs, args.preset))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
