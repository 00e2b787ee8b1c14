"""``weightlab report STORE -o report.html``: the study's HTML report, read back from its store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from weightlab.cli.study import report_path
from weightlab.errors import InvalidValueError, WeightlabError, expected

__all__ = ["report_command"]


def report_command(
    store: Annotated[Path, typer.Argument(help="The study's store (SQLite file).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="HTML file to write (default: <store stem>-report.html beside it).",
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Metric to rank by (default: the study's own, else balanced_accuracy)."),
    ] = None,
    diagnostics: Annotated[
        bool,
        typer.Option(
            help="Compute gradient diagnostics at initialisation when the store has none."
        ),
    ] = True,
) -> None:
    """Write a self-contained HTML report of a stored study (figures inline, no network)."""
    from weightlab.lab.metrics import METRIC_NAMES
    from weightlab.report import write_report

    try:
        if not store.exists():
            raise InvalidValueError(
                expected("STORE", "to be an existing study store", f"'{store}' (no such file)",
                         "Run `weightlab study --store PATH` first, or check the path.")
            )  # fmt: skip
        if metric is not None and metric not in METRIC_NAMES:
            raise InvalidValueError(
                expected("--metric", f"to be one of {', '.join(map(repr, METRIC_NAMES))}",
                         repr(metric), "Pick one of those.")
            )  # fmt: skip
        out = write_report(store, output or report_path(store), metric=metric,
                           diagnostics=diagnostics)  # fmt: skip
    except WeightlabError as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Report written to {out}")
