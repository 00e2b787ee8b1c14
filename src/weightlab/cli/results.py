"""``weightlab results STORE``: the summary of a study, read back from its store."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from weightlab.errors import InvalidValueError, WeightlabError, expected, names

if TYPE_CHECKING:
    from weightlab.lab.study import Summary

__all__ = ["FORMATS", "print_summary", "results_command"]

#: Output formats of ``weightlab results``.
FORMATS = ("table", "json", "csv")

CSV_COLUMNS = (
    "data", "arch", "optimizer", "rank", "weighting", "mean", "std", "n", "failed", "gain_vs_none"
)


def print_summary(summary: Summary, *, fmt: str = "table") -> None:
    """Write ``summary`` to stdout as a rich table (with the answer), JSON or CSV.

    Raises:
        InvalidValueError: if ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt == "json":
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(summary.rows())
    elif fmt == "table":
        _print_table(summary)
    else:
        raise InvalidValueError(
            expected("--format", f"to be one of {names(FORMATS)}", repr(fmt), "Pick one of those.")
        )


def _gain(w: Any) -> str:
    """``+0.051 [+0.028, +0.074]`` (no interval with one seed; nothing for ``none``)."""
    if w.gain is None or w.weighting == "none":
        return ""
    low, high = w.gain_low, w.gain_high
    if low is None or high is None or low != low or high != high:  # None or NaN
        return f"{w.gain:+.3f}"
    return f"{w.gain:+.3f} [{low:+.3f}, {high:+.3f}]"


def _print_table(summary: Summary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # pipes and files: don't wrap at 80 columns
    arrow = "higher is better" if summary.higher_is_better else "lower is better"
    table = Table(title=f"{summary.metric} ({arrow}) on test, mean ± std over seeds; ranked on "
                        f"{summary.selection}; gain over none with its 95 % interval; P(best) on "
                        "validation; mark: against the chosen one, on test")
    for col, justify in (
        ("arch", "left"), ("optimizer", "left"), ("#", "right"), ("weighting", "left"),
        ("", "left"), (summary.metric, "right"), ("seeds", "right"), ("failed", "right"),
        ("gain vs none [95 % CI]", "right"), ("P(best)", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for i, cell in enumerate(summary.cells):
        for rank, w in enumerate(cell.ranking, start=1):
            first = rank == 1
            table.add_row(
                cell.arch if first else "",
                cell.optimizer if first else "",
                str(rank) if w.n else "-",
                w.weighting,
                w.mark,
                f"{w.mean:.3f} ± {w.std:.3f}" if w.n else "-",
                str(w.n),
                str(w.failed) if w.failed else "",
                _gain(w),
                "" if w.p_best is None else f"{w.p_best:.2f}",
                style="bold" if first and w.n else None,
                end_section=rank == len(cell.ranking) and i < len(summary.cells) - 1,
            )
    console.print(table)
    console.print(summary.answer, markup=False, highlight=False)


def results_command(
    store: Annotated[Path, typer.Argument(help="The study's store (SQLite file).")],
    metric: Annotated[
        str | None,
        typer.Option(help="Metric to rank by (default: the study's own, else balanced_accuracy)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Print a stored study's summary: weightings ranked per architecture and optimizer."""
    from weightlab.lab.stores import open_store
    from weightlab.lab.study import summarize

    try:
        if fmt not in FORMATS:
            raise InvalidValueError(
                expected("--format", f"to be one of {names(FORMATS)}", repr(fmt),
                         "Pick one of those.")
            )
        with open_store(store, create=False) as s:
            chosen = metric or (s.get_meta("spec") or {}).get("metric") or "balanced_accuracy"
            summary = summarize(s.results(), chosen)
        print_summary(summary, fmt=fmt)
    except WeightlabError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(2) from None
