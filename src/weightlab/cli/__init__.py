"""The ``weightlab`` command: one typer app, each subcommand in its own module.

A subcommand ``NAME`` lives in ``weightlab/cli/NAME.py`` and is picked up when
``NAME`` is listed in :data:`COMMANDS` and the module exists. The module
provides either a function ``NAME_command`` (registered as ``weightlab NAME``;
its docstring is the help) or, for a group of commands, a function
``register(app)`` that adds them to the app itself. Modules are imported when
the app is built, so keep heavy imports (torch, pandas, sklearn) inside the
command functions: ``weightlab --help`` then stays fast.

Every subcommand reports bad input as ``Error: <message>`` on stderr with exit
status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Annotated

import typer

import weightlab

__all__ = ["COMMANDS", "app", "main"]

#: Subcommands, in the order ``weightlab --help`` lists them.
COMMANDS = ("weights", "study", "tune", "results", "report")

app = typer.Typer(
    name="weightlab",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"weightlab {weightlab.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Weighted losses for imbalanced classification: weights, studies, reports.

    `weightlab weights` shows what each class-weight scheme gives the classes
    of a data set; `weightlab study` trains many small networks under those
    weightings and writes a summary and an HTML report (`report` rewrites it,
    `results` prints the summary again).
    """


def _register_commands() -> None:
    for name in COMMANDS:
        module_name = f"{__name__}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue  # not written yet
        module = importlib.import_module(module_name)
        if hasattr(module, "register"):
            module.register(app)
        else:
            app.command(name)(getattr(module, f"{name}_command"))


_register_commands()


def main() -> None:
    """Run the ``weightlab`` command line (the console-script entry point)."""
    app()
