"""``weightlab study``: run a study into a store with live progress, then print its summary."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from weightlab.cli._executor import AddressOption, ExecutorOption, WorkersOption, build_executor
from weightlab.errors import InvalidValueError, StoreWriteError, WeightlabError, expected

__all__ = [
    "data_params",
    "parse_list",
    "progress_bar",
    "report_path",
    "store_errors",
    "study_command",
]

DEFAULT_STORE = Path("build/study.sqlite")


def parse_list(option: str, text: str, kind: type = str) -> list[Any]:
    """Split a comma-separated option value and convert each item to ``kind``.

    Raises:
        InvalidValueError: if an item is empty or not a ``kind``.

    Example:
        >>> parse_list("strengths", "0, 0.5,1", float)
        [0.0, 0.5, 1.0]
    """
    items = [t.strip() for t in text.split(",")]
    out = []
    for item in items:
        try:
            if not item:
                raise ValueError
            out.append(kind(item))
        except ValueError:
            what = {str: "names", int: "integers", float: "numbers"}[kind]
            example = {str: "a,b", int: "0,1,2", float: "0,0.5,1"}[kind]
            raise InvalidValueError(
                expected(
                    f"--{option}",
                    f"to be comma-separated {what}",
                    repr(text),
                    f"Write it like --{option} {example}.",
                )
            ) from None
    return out


def parse_params(option: str, pairs: list[str]) -> dict[str, Any]:
    """Turn ``["imbalance_ratio=50", "seed=1"]`` into ``{"imbalance_ratio": 50, "seed": 1}``.

    Values are read as TOML values where they parse (numbers, booleans,
    quoted strings) and as plain strings otherwise.

    Example:
        >>> parse_params("data-param", ["imbalance_ratio=50", "kind=x"])
        {'imbalance_ratio': 50, 'kind': 'x'}
    """
    import tomllib

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidValueError(
                expected(f"--{option}", "to be KEY=VALUE", repr(pair),
                         f"Write it like --{option} imbalance_ratio=50.")
            )
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key.strip()] = value
    return out


def data_params(pairs: list[str], target: str | None = None) -> dict[str, Any]:
    """The data loader's options: the ``--data-param`` pairs, and ``--target`` as ``target``.

    ``--target COLUMN`` is ``--data-param target=COLUMN``: the same data param,
    so the same trials (and trial ids) in the store.

    Raises:
        InvalidValueError: a pair that is not ``KEY=VALUE``, or ``--target`` and
            ``--data-param target=`` with different values.

    Example:
        >>> data_params(['features=["a", "b"]'], "species")
        {'features': ['a', 'b'], 'target': 'species'}
        >>> data_params(["target=species"], "species")
        {'target': 'species'}
    """
    params = parse_params("data-param", pairs)
    if target is not None:
        if "target" in params and params["target"] != target:
            raise InvalidValueError(
                expected(
                    "--target",
                    "to agree with --data-param target= when both are given",
                    f"--target {target!r} and --data-param target={params['target']!r}",
                    "Drop one of them: --target COLUMN sets the data param target.",
                )
            )
        params["target"] = target
    return params


def study_command(
    data: Annotated[
        str | None,
        typer.Option(
            help="Data set name (digits-lt, synthetic) or a .csv, .parquet or .npz file of "
            "features and labels (an .npy of labels alone is for `weightlab weights`)."
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Target column (the labels) of a .csv/.parquet --data file; the same as "
            "--data-param target=COLUMN. Default: the only column, or the first of target, "
            "label, y, class.",
        ),
    ] = None,
    data_param: Annotated[
        list[str] | None,
        typer.Option(
            "--data-param",
            help="Data loader option KEY=VALUE (repeatable): for a table target=COLUMN (as "
            "--target) and features='[\"a\", \"b\"]' (default: every other column); "
            "imbalance_ratio=50 for digits-lt.",
        ),
    ] = None,
    archs: Annotated[
        str | None, typer.Option(help="Comma-separated architectures: mlp,cnn,gru,lstm.")
    ] = None,
    optimizers: Annotated[
        str | None, typer.Option(help="Comma-separated optimizers: sgd,adam,adamw,rmsprop.")
    ] = None,
    weightings: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated weightings: none, power, weight schemes (balanced, "
            "effective_number, ...) or losses (focal, class_balanced, logit_adjusted, "
            "balanced_softmax, ldam; ldam trains on a cosine head)."
        ),
    ] = None,
    strengths: Annotated[
        str | None, typer.Option(help="Comma-separated alphas the 'power' weighting sweeps.")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs per trial.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size.")] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="One learning rate for every optimizer (replaces the preset's grid; "
                          "default: the preset's grid, else the lab's rate per optimizer)."),
    ] = None,
    lr_grid: Annotated[
        list[str] | None,
        typer.Option(help="A learning-rate grid for one optimizer, OPT=LR,LR (repeatable), e.g. "
                          "sgd=0.01,0.05: every trial trains at each, and each weighting is "
                          "compared at its rate best on validation."),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Early stopping: stop a trial after this many epochs without a better "
                          "validation score (--epochs is then the maximum)."),
    ] = None,
    store: Annotated[
        Path, typer.Option(help="Result store (SQLite); an existing one is resumed.")
    ] = DEFAULT_STORE,
    preset: Annotated[
        str | None, typer.Option(help="Start from a preset: quick (default) or full.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A TOML study file (see examples/study.toml).")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Metric the summary ranks by (default balanced_accuracy).")
    ] = None,
    workers: WorkersOption = 1,
    executor: ExecutorOption = None,
    address: AddressOption = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    diagnostics: Annotated[
        bool,
        typer.Option(help="Record per-class gradient shares at initialisation and at the end."),
    ] = True,
    report: Annotated[
        bool, typer.Option(help="Write the HTML report next to the store (STORE-report.html).")
    ] = True,
) -> None:
    """Train every trial of a study (skipping those the store already holds) and summarize."""
    from weightlab.lab.study import StudySpec

    try:
        overrides: dict[str, Any] = {}
        if data is not None:
            overrides["data"] = data
        if data_param or target is not None:
            overrides["data_params"] = data_params(data_param or [], target)
        for name, text, kind in (
            ("archs", archs, str),
            ("optimizers", optimizers, str),
            ("weightings", weightings, str),
            ("strengths", strengths, float),
            ("seeds", seeds, int),
        ):
            if text is not None:
                overrides[name] = parse_list(name, text, kind)
        if lr_grid:
            overrides["lrs"] = _lr_grid(lr_grid)
        elif lr is not None:  # one rate for every optimizer: no grid from the preset or file
            overrides["lrs"] = {}
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr),
                            ("metric", metric), ("patience", patience)):
            if value is not None:
                overrides[name] = value
        if config is not None:
            spec = StudySpec.from_toml(config, preset=preset, **overrides)
        else:
            spec = StudySpec.preset(preset or "quick", **overrides)
        _check_target(spec, typed=target is not None)
        ex = build_executor(executor, workers, address)
        try:
            _run(spec, store, executor=ex, quiet=quiet, diagnostics=diagnostics, report=report)
        finally:
            ex.shutdown()
    except (WeightlabError, ImportError) as err:  # ImportError: e.g. Parquet without pyarrow
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(2) from None


def _lr_grid(items: list[str]) -> dict[str, list[float]]:
    """``["sgd=0.01,0.05"]`` -> ``{"sgd": [0.01, 0.05]}``.

    Raises:
        InvalidValueError: an item that is not ``OPT=LR,LR``.

    Example:
        >>> _lr_grid(["sgd=0.01,0.05", "adam=0.001"])
        {'sgd': [0.01, 0.05], 'adam': [0.001]}
    """
    out: dict[str, list[float]] = {}
    for item in items:
        opt, sep, rates = item.partition("=")
        if not sep or not opt.strip():
            raise InvalidValueError(
                expected("--lr-grid", "to be OPTIMIZER=LR,LR", repr(item),
                         "Write it like --lr-grid sgd=0.01,0.05.")
            )  # fmt: skip
        out[opt.strip()] = parse_list("lr-grid", rates, float)
    return out


def _check_target(spec: Any, *, typed: bool) -> None:
    """Refuse, before any training, a target column the data file does not have.

    Only a table's header is read; the messages name this command's options
    (``--target`` when it was typed or nothing named the column, else the data
    param ``target``) and list the table's columns. Everything else about the
    file is left to the loader.

    Raises:
        InvalidValueError: ``--target`` with data that is not a table, a target
            that is not a column, or no target given and none recognisable.
        ImportError: a Parquet file without pyarrow installed.
    """
    from weightlab.lab import files

    path = Path(spec.data)
    table = path.suffix.lower() in files.TABLE_SUFFIXES
    if typed and not table:
        raise InvalidValueError(
            expected(
                "--target",
                "to be given only with a .csv or .parquet file",
                f"it with --data {spec.data}",
                "Drop --target.",
            )
        )
    if not table or not path.is_file():
        return  # the loader says what is wrong with it
    target = spec.data_params.get("target")
    option = "--target" if typed or target is None else "target"
    spelling = files.Spelling(data="--data", target=option, flags=True)
    files.target_column(files.table_columns(path), target, where=path.name, spelling=spelling)


def report_path(store_path: Path) -> Path:
    """Where a study writes its report: beside the store, ``<store stem>-report.html``.

    Example:
        >>> report_path(Path("build/study.sqlite")).as_posix()
        'build/study-report.html'
    """
    return store_path.with_name(f"{store_path.stem}-report.html")


def _stored_line(store: Any, store_path: Path) -> str:
    """``"N trials are safely stored in PATH; rerun the same command to resume."``."""
    try:
        n = len(store.statuses())
    except Exception:  # the count is a courtesy; the store may be unreadable
        return f"the trials stored in {store_path} before this are kept; rerun to resume."
    held = "1 trial is" if n == 1 else f"{n} trials are"
    return f"{held} safely stored in {store_path}; rerun the same command to resume."


def _write_failure(err: StoreWriteError, store: Any) -> str:
    """One line for a store that cannot be written: which file, why, what is kept, the fix."""
    import shutil

    path = Path(str(err.path))
    if not path.exists():
        return (f"the store {path} was deleted (or its folder removed) while the study ran; "
                "the trials it held went with it. Rerun the same command to start the study "
                "again.")  # fmt: skip
    lowered = err.reason.lower()
    if "readonly" in lowered or "read-only" in lowered:
        fix = ("make it writable (its permissions, or a filesystem mounted read-only) and "
               "rerun the same command to resume")  # fmt: skip
    else:
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free on {path.parent}"
        except OSError:
            free = f"free space on {path.parent} unknown"
        fix = f"{free}; free some space and rerun the same command to resume"
    stored = _stored_line(store, path).split(";")[0]
    return f"could not write to the store {path} ({err.reason}). {stored}; {fix}."


def progress_bar(console: Any, *, quiet: bool, fields: str) -> Any:
    """The live display of a command that trains: phase, bar, done/total, ``fields``, time, ETA.

    ``fields`` is a rich format string over the task's fields (``"{task.fields[failed]} failed"``).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn(fields), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=quiet,
    )  # fmt: skip


@contextlib.contextmanager
def store_errors(store: Any, store_path: Path) -> Iterator[None]:
    """One line and an exit status for a store that cannot be written (1) or Ctrl-C (130)."""
    try:
        yield
    except StoreWriteError as err:
        typer.echo(f"Error: {_write_failure(err, store)}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(f"Interrupted: {_stored_line(store, store_path)}", err=True)
        raise typer.Exit(130) from None


def _run(
    spec: Any, store_path: Path, *, executor: Any, quiet: bool, diagnostics: bool, report: bool
) -> None:
    from rich.console import Console

    from weightlab.cli.results import print_summary
    from weightlab.lab.stores import open_store
    from weightlab.lab.study import Progress as StudyProgress
    from weightlab.lab.study import run_study, summarize

    console = Console(stderr=True)
    with open_store(store_path) as store:
        bar = progress_bar(console, quiet=quiet, fields="{task.fields[failed]} failed")
        task: list[Any] = []

        def on_progress(p: StudyProgress) -> None:
            if not task:
                task.append(
                    bar.add_task("trials", total=p.total, completed=p.done, failed=p.failed)
                )
                if p.skipped:
                    console.print(f"resuming: {p.skipped} of {p.total} trials already in "
                                  f"{store_path}", markup=False)
            else:
                bar.update(task[0], completed=p.done, failed=p.failed)

        with store_errors(store, store_path), bar:
            outcome = run_study(
                spec,
                store,
                progress=on_progress,
                command=sys.argv,
                executor=executor,
                diagnostics=diagnostics,
            )
        ids = set(outcome.trial_ids)
        results = [r for r in store.results() if r.config.trial_id in ids]
        if report:
            from weightlab.report import write_report

            written = write_report(
                store, report_path(store_path), metric=spec.metric, diagnostics=diagnostics
            )
            console.print(f"Report: {written}", markup=False)
    console.print(
        f"{outcome.ran} trials trained, {outcome.skipped} found in the store, "
        f"{outcome.failed} failed; {outcome.seconds:.1f} s. Store: {store_path}",
        markup=False,
    )
    print_summary(summarize(results, spec.metric), fmt="table")
