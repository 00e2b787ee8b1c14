"""``weightlab tune``: search the weighting on validation, K trials a stack, judge once on test."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from weightlab.cli._executor import AddressOption, ExecutorOption, WorkersOption
from weightlab.errors import InvalidValueError, WeightlabError, expected

__all__ = ["parse_range", "tune_command", "tune_spec"]

DEFAULT_STORE = Path("build/tune.sqlite")


def parse_range(option: str, text: str) -> tuple[float, float]:
    """``"0.5:3"`` -> ``(0.5, 3.0)``.

    Raises:
        InvalidValueError: not two numbers separated by ``:``.

    Example:
        >>> parse_range("tune-lr", "1e-4:1e-1")
        (0.0001, 0.1)
    """
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise InvalidValueError(
            expected(
                f"--{option}", "to be LOW:HIGH", repr(text), f"Write it like --{option} 0.5:3."
            )
        ) from None


def _ranges(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidValueError(
                expected(
                    "--range",
                    "to be FAMILY.PARAM=LOW:HIGH",
                    repr(item),
                    "Write it like --range focal.gamma=0.5:3.",
                )
            )
        out[key.strip()] = parse_range("range", value.strip())
    return out


def tune_spec(config: Path | None, overrides: dict[str, Any], space_kw: dict[str, Any]) -> Any:
    """The :class:`~weightlab.tune.TuneSpec` from a study file's keys and ``[tune]`` table.

    Command-line values win over the file's. The file's top level holds the
    study's keys (``data``, ``data_params``, ``archs``, ``optimizers``,
    ``epochs``, ``batch_size``, ``lr``, ``model_params``); its ``[tune]`` table
    the tuner's (``trials``, ``batch``, ``metrics``, ``sampler``, ``pruner``,
    ``patience``, ``seed``, ``judge_seeds``, ``pareto_max``) and the space's
    (``weightings``, ``ranges``, ``lr_range``, ``weight_decay``,
    ``class_weighted_losses``).

    Raises:
        InvalidValueError: an unreadable file, unknown keys, or bad values.
    """
    import tomllib

    from weightlab.tune import SearchSpace, TuneSpec

    kw: dict[str, Any] = {}
    space: dict[str, Any] = {}
    if config is not None:
        try:
            doc = tomllib.loads(Path(config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise InvalidValueError(
                expected(
                    "--config",
                    "to be a readable TOML file",
                    f"{config} ({err})",
                    "Fix the path or the syntax (see examples/tune.toml).",
                )
            ) from None
        table = dict(doc.pop("tune", {}))
        study_keys = {
            "data",
            "data_params",
            "archs",
            "optimizers",
            "epochs",
            "batch_size",
            "lr",
            "model_params",
        }
        tune_keys = {
            "trials",
            "batch",
            "metrics",
            "sampler",
            "pruner",
            "patience",
            "seed",
            "judge_seeds",
            "pareto_max",
        }
        space_keys = {"weightings", "ranges", "lr_range", "weight_decay", "class_weighted_losses"}
        doc = {
            k: v
            for k, v in doc.items()
            if k not in ("weightings", "strengths", "seeds", "metric", "preset")
        }
        bad = sorted(set(doc) - study_keys) + sorted(set(table) - tune_keys - space_keys)
        if bad:
            raise InvalidValueError(
                expected(
                    "--config",
                    "to hold study keys and a [tune] table of known keys",
                    ", ".join(map(repr, bad)),
                    "Drop or rename them (see examples/tune.toml).",
                )
            )
        kw.update(doc)
        kw.update({k: v for k, v in table.items() if k in tune_keys})
        for key in space_keys & set(table):
            space["lr" if key == "lr_range" else key] = table[key]
    space.update({k: v for k, v in space_kw.items() if v is not None})
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if space:
        kw["space"] = SearchSpace.from_dict(space)
    return TuneSpec(**kw)


def tune_command(
    data: Annotated[
        str | None,
        typer.Option(
            help="Data set: digits-lt (default), synthetic, or a .csv/.parquet/.npz file."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Label column of a .csv/.parquet --data file.")
    ] = None,
    data_param: Annotated[
        list[str] | None, typer.Option(help="Data option KEY=VALUE (repeatable).")
    ] = None,
    archs: Annotated[
        str | None, typer.Option(help="Comma-separated lab architectures (default mlp).")
    ] = None,
    optimizers: Annotated[
        str | None, typer.Option(help="Comma-separated optimizers (default adam).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Your own model: path/to/file.py:factory (a function returning the "
            "nn.Module); replaces --archs."
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Budget: trials per (arch, optimizer).")
    ] = None,
    batch: Annotated[int | None, typer.Option(help="Trials per vectorized stack (K).")] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Validation metric(s) to optimise, comma-separated for a Pareto front "
            "(default balanced_accuracy)."
        ),
    ] = None,
    sampler: Annotated[
        str | None, typer.Option(help="tpe (default), random, grid, gp, cmaes or nsga2.")
    ] = None,
    pruner: Annotated[
        str | None,
        typer.Option(help="sha (successive halving, default), hyperband, median or none."),
    ] = None,
    weightings: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated weighting families to search (default: none, power, "
            "the schemes with parameters, every lab loss)."
        ),
    ] = None,
    range_: Annotated[
        list[str] | None,
        typer.Option(
            "--range",
            help="Narrow a parameter: FAMILY.PARAM=LOW:HIGH (repeatable), e.g. focal.gamma=0.5:3.",
        ),
    ] = None,
    tune_lr: Annotated[
        str | None, typer.Option(help="Also search the learning rate: LOW:HIGH (log scale).")
    ] = None,
    weight_decay: Annotated[
        str | None, typer.Option(help="Also search decoupled weight decay: LOW:HIGH (log scale).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs per trial (a maximum).")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Stop a trial after this many epochs without improving.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate when not searched.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the search trials and sampler.")] = None,
    judge_seeds: Annotated[
        str | None, typer.Option(help="Seeds the best is retrained on for the test (default 1-5).")
    ] = None,
    store: Annotated[
        Path,
        typer.Option(
            help="Result store (SQLite); the Optuna journal lives beside it; an "
            "existing one is resumed."
        ),
    ] = DEFAULT_STORE,
    config: Annotated[
        Path | None, typer.Option(help="A TOML file: study keys and a [tune] table.")
    ] = None,
    workers: WorkersOption = 1,
    executor: ExecutorOption = None,
    address: AddressOption = None,
    format_: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    quiet: Annotated[bool, typer.Option(help="No live display.")] = False,
    report: Annotated[
        bool, typer.Option(help="Write the HTML report next to the store (STORE-report.html).")
    ] = True,
) -> None:
    """Find the weighting for your network: Optuna proposes, K trials train as one stack.

    Validation selects; the test split judges the best once, next to none and balanced.
    """
    from weightlab.cli.study import data_params, parse_list

    try:
        if format_ not in ("table", "json"):
            raise InvalidValueError(
                expected("--format", "to be table or json", repr(format_), "Pick one.")
            )
        if workers < 1:
            raise InvalidValueError(
                expected("--workers", "to be an integer >= 1", repr(workers), "Use 1 or more.")
            )
        overrides: dict[str, Any] = {
            "data": data,
            "trials": trials,
            "batch": batch,
            "sampler": sampler,
            "pruner": pruner,
            "epochs": epochs,
            "patience": patience,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
        }
        if data_param or target is not None:
            overrides["data_params"] = data_params(data_param or [], target)
        for name, text, kind in (
            ("archs", archs, str),
            ("optimizers", optimizers, str),
            ("metrics", metric, str),
            ("judge_seeds", judge_seeds, int),
        ):
            if text is not None:
                overrides[name] = parse_list(name if name != "metrics" else "metric", text, kind)
        space_kw: dict[str, Any] = {
            "weightings": parse_list("weightings", weightings) if weightings else None,
            "ranges": _ranges(range_) if range_ else None,
            "lr": parse_range("tune-lr", tune_lr) if tune_lr else None,
            "weight_decay": parse_range("weight-decay", weight_decay) if weight_decay else None,
        }
        factory = None
        if model is not None:
            from weightlab.tune.user import load_factory

            factory = load_factory(model)
            if archs is not None:
                raise InvalidValueError(
                    expected("--model", "to replace --archs", "both", "Pass one of them.")
                )
        spec = tune_spec(config, overrides, space_kw)
        ex = _executor(executor, workers, address)
        _run(
            spec,
            store,
            factory=factory,
            model=model,
            executor=ex,
            workers=workers,
            fmt=format_,
            quiet=quiet,
            report=report,
        )
    except (WeightlabError, ImportError) as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(2) from None


def _executor(name: str | None, workers: int, address: str | None) -> Any:
    """The executor the flags ask for, as ``weightlab study`` builds it (errors name the flags)."""
    from weightlab.cli._executor import build_executor

    return build_executor(name, workers, address)


def _run(
    spec: Any,
    store_path: Path,
    *,
    factory: Any,
    model: str | None,
    executor: Any,
    workers: int,
    fmt: str,
    quiet: bool,
    report: bool,
) -> None:
    from dataclasses import replace

    from rich.console import Console

    from weightlab.cli.study import progress_bar, report_path, store_errors
    from weightlab.lab.architectures import ARCHITECTURES
    from weightlab.lab.data import load_data
    from weightlab.lab.stores import open_store
    from weightlab.tune import run_tuning
    from weightlab.tune.user import register_user_model

    console = Console(stderr=True)
    data = load_data(spec.data, **spec.data_params)
    arch = None
    if factory is not None:
        arch = register_user_model(factory, data, name=model.rpartition(":")[2] if model else None)
        spec = replace(spec, archs=(arch.name,), model_params={})
    fields = "{task.fields[pruned]} pruned, {task.fields[failed]} failed, best {task.fields[best]}"
    bar = progress_bar(console, quiet=quiet, fields=fields)
    tasks: dict[str, Any] = {}
    pruned = {"search": 0, "judge": 0}

    def on_progress(phase: str, p: Any, best: dict[str, Any]) -> None:
        if p.result is not None and p.result.status == "pruned":
            pruned[phase] += 1
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in best.items()) or "-"
        if phase not in tasks:
            tasks[phase] = bar.add_task(
                phase,
                total=p.total,
                completed=p.done,
                failed=p.failed,
                pruned=pruned[phase],
                best=shown,
            )
        bar.update(
            tasks[phase],
            total=max(p.total, p.done),
            completed=p.done,
            failed=p.failed,
            pruned=pruned[phase],
            best=shown,
        )

    try:
        with open_store(store_path) as store:
            with store_errors(store, store_path), bar:
                outcome = run_tuning(
                    spec,
                    store,
                    store_path=store_path,
                    data=data,
                    executor=executor,
                    workers=workers,
                    progress=on_progress,
                    command=sys.argv,
                )
            if report:
                from weightlab.report import write_report

                written = write_report(
                    store, report_path(store_path), metric=spec.metrics[0], diagnostics=False
                )
                console.print(f"Report: {written}", markup=False)
    finally:
        if arch is not None:
            ARCHITECTURES.remove(arch.name)
    if fmt == "json":
        typer.echo(json.dumps(outcome.to_dict(), indent=2, default=str))
        return
    print_outcome(outcome, console=Console())


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "/".join(_fmt(x) for x in (v[0] if v and isinstance(v[0], (list, tuple)) else v))
    return f"{float(v):.3f}"


def _gain(g: Any) -> str:
    if g is None:
        return ""
    est, low, high = g
    if not math.isfinite(low):
        return f"{est:+.3f} (one seed: no interval)"
    return f"{est:+.3f} [{low:+.3f}, {high:+.3f}]"


def print_outcome(outcome: Any, *, console: Any) -> None:
    """The final tables: per cell the chosen weighting(s), validation, test, gains; the weights."""
    from rich.table import Table

    spec = outcome.spec
    metric = spec.metrics[0]
    for cell in outcome.cells:
        console.print(
            f"[bold]{cell.cell}[/bold]: {cell.trials} trials ({cell.done} done, {cell.pruned} "
            f"pruned, {cell.failed} failed); engine: {cell.engine or '-'}"
        )
        if not cell.judged:
            console.print("  nothing judged (no completed trial, or no judging seeds / test split)")
            continue
        seeds = len(spec.judge_seeds)
        table = Table(
            title=f"{metric} on the test split, {seeds} seeds (mean ± std); "
            "gains paired per seed, 95% interval (seed + test-row noise)"
        )
        for col in ("role", "weighting", "validation", "test", "gain vs none", "gain vs balanced"):
            table.add_column(col)
        for j in cell.judged:
            val = "/".join(f"{v:.3f}" for v in j.val) if j.val else ""
            sd = "" if math.isnan(j.std) else f" ± {j.std:.3f}"
            table.add_row(
                j.role,
                j.label,
                val,
                f"{j.mean:.3f}{sd}",
                _gain(j.gain_vs_none),
                _gain(j.gain_vs_balanced),
            )
        console.print(table)
        best = next((j for j in cell.judged if j.role == "chosen"), None)
        if best is not None:
            console.print(
                "  class weights (by class): "
                + ", ".join(f"{k}={v:g}" for k, v in best.class_weight.items()),
                markup=False,
            )
            if best.late_class_weight:
                console.print(
                    "  from the deferred re-weighting epoch on: "
                    + ", ".join(f"{k}={v:g}" for k, v in best.late_class_weight.items()),
                    markup=False,
                )
            console.print(f"  loss: {best.loss}", markup=False)
    console.print(
        f"{outcome.seconds:.1f} s in all ({outcome.search_seconds:.1f} s searching); pruning and "
        f"early stopping skipped {outcome.pruning_saving:.0%} of the search's epochs.",
        markup=False,
    )
