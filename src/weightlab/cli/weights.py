"""``weightlab weights``: per-class counts and the weights every scheme gives them.

With ``--multilabel``: per-label positives and negatives of 0/1 targets and the
``pos_weight`` of ``torch.nn.BCEWithLogitsLoss`` (negatives / positives).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Annotated, Any, NoReturn

import typer

from weightlab.errors import InvalidValueError, WeightlabError, ZeroCountError, expected, names
from weightlab.lab.files import deprecation_note
from weightlab.weights import (
    NORMALIZATIONS,
    SCHEMES,
    ZERO_COUNT_POLICIES,
    class_weights,
    count_labels,
    count_multilabel,
    list_schemes,
    pos_weight,
    scheme_defaults,
)

__all__ = ["FORMATS", "parse_params", "weights_command"]

#: Output formats of ``weightlab weights``.
FORMATS = ("table", "json")


def weights_command(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="'digits-lt' (built in: the long-tailed training split of the 8x8 digits), "
            "or a file of labels: .csv, .parquet (a target column), .npy (one label per sample) "
            "or .npz (its array y, as `weightlab study` reads it).",
        ),
    ] = "digits-lt",
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            help="Target column (the labels) of a .csv/.parquet file. Default: the only column, "
            "or the first of target, label, y, class. Integer labels are class indices; other "
            "labels are class names, sorted. With --multilabel: a 0/1 target column; repeat for "
            "several (default: every column).",
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            "-c",
            help="Deprecated old name of --target (removed in the next release).",
        ),
    ] = None,
    multilabel: Annotated[
        bool,
        typer.Option(
            "--multilabel",
            help="Multi-label 0/1 targets: print positives, negatives and pos_weight "
            "(negatives / positives, for torch.nn.BCEWithLogitsLoss) of every label. --data is "
            "an (N, L) .npy array (or .npz y) or a .csv/.parquet file of 0/1 target columns.",
        ),
    ] = False,
    imbalance_ratio: Annotated[
        float | None,
        typer.Option(help="digits-lt: head count / tail count. Default: 10."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="digits-lt: split seed. Default: 0.")] = None,
    scheme: Annotated[
        list[str] | None,
        typer.Option(
            "--scheme",
            "-s",
            help="Scheme to show; repeat for several. Default: all of "
            f"{', '.join(list_schemes())}.",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A scheme parameter as NAME=NUMBER, e.g. beta=0.99 (effective_number), "
            "alpha=0.25 (power), c=1.1 (log); repeatable.",
        ),
    ] = None,
    normalize: Annotated[
        str | None,
        typer.Option(
            help="mean (weights average 1), max (largest is 1), min (smallest is 1) or none "
            "(the scheme's own scale; 'balanced' is then scikit-learn's). Default: mean."
        ),
    ] = None,
    clip: Annotated[
        float | None,
        typer.Option(help="Largest allowed ratio max(w)/min(w), applied before normalising."),
    ] = None,
    zero_count: Annotated[
        str,
        typer.Option(
            help="Classes with no samples (with --multilabel: labels with no positives): raise "
            "(an error), zero (weight 0) or max (the largest weight)."
        ),
    ] = "raise",
    output_format: Annotated[
        str,
        typer.Option("--format", "-f", help="table (rich) or json (to stdout, nothing else)."),
    ] = "table",
    show_schemes: Annotated[
        bool,
        typer.Option("--list-schemes", help="List the schemes, their parameters and exit."),
    ] = False,
) -> None:
    """Count the labels of a data set and print the weight each scheme gives every class.

    With --multilabel: count the positives and negatives of every label of 0/1
    targets and print pos_weight (negatives / positives) for BCEWithLogitsLoss.

    Examples:
        weightlab weights

        weightlab weights --data labels.csv --target species -s balanced -s effective_number

        weightlab weights --scheme effective_number --param beta=0.99 --format json

        weightlab weights --multilabel --data targets.npy

        weightlab weights --multilabel --data tags.csv -t cat -t dog --zero-count zero
    """
    option = "--column" if column and not target else "--target"  # messages name what was typed
    if column:
        typer.echo(f"Note: {deprecation_note('--column', '--target')}", err=True)
    # repeated names once, in the order given
    columns = list(dict.fromkeys([*(target or []), *(column or [])]))
    try:
        _check_choice("--format", output_format, FORMATS)
        if show_schemes:
            _print_schemes(output_format)
            return
        if multilabel:
            given = {"--scheme": scheme, "--param": param, "--normalize": normalize, "--clip": clip}
            _refuse_with_multilabel(
                [option for option, value in given.items() if value is not None]
            )
            _check_choice("--zero-count", zero_count, ZERO_COUNT_POLICIES)
            report = _multilabel_report(data, columns, option, imbalance_ratio, seed, zero_count)
        else:
            report = _single_label_report(
                data, columns, option, imbalance_ratio, seed, scheme, param, normalize, clip,
                zero_count,
            )  # fmt: skip
    except ZeroCountError as err:
        _fail(f"{err} On the command line: --zero-count zero or --zero-count max.")
    except (WeightlabError, ImportError) as err:
        _fail(str(err))
    if output_format == "json":
        sys.stdout.write(json.dumps(report, indent=2, allow_nan=False) + "\n")
    elif multilabel:
        _print_multilabel_table(report)
    else:
        _print_table(report)


def _single_label_report(
    data: str,
    columns: list[str],
    option: str,
    imbalance_ratio: float | None,
    seed: int | None,
    scheme: list[str] | None,
    param: list[str] | None,
    normalize: str | None,
    clip: float | None,
    zero_count: str,
) -> dict[str, Any]:
    chosen = _check_schemes(scheme or list_schemes())
    params = parse_params(param or [], chosen)
    normalize = "mean" if normalize is None else normalize
    _check_choice("--normalize", normalize, NORMALIZATIONS)
    _check_choice("--zero-count", zero_count, ZERO_COUNT_POLICIES)
    _check_clip(clip)
    if len(columns) > 1:
        raise InvalidValueError(
            expected(
                option,
                "to be given once without --multilabel",
                f"{len(columns)} columns ({names(columns)})",
                "Pass the one target column, or add --multilabel for 0/1 target columns.",
            )
        )

    from weightlab.cli.labels import read_labels

    labels = read_labels(
        data,
        target=columns[0] if columns else None,
        imbalance_ratio=imbalance_ratio,
        seed=seed,
        option=option,
    )
    num_classes = len(labels.class_names) if labels.class_names is not None else None
    counts = count_labels(labels.values, num_classes, multilabel=False)
    class_names = labels.class_names or tuple(str(i) for i in range(len(counts)))
    weights = {
        name: class_weights(
            counts,
            name,
            normalize=normalize,  # type: ignore[arg-type]
            clip=clip,
            zero_count=zero_count,  # type: ignore[arg-type]
            **params[name],
        )
        for name in chosen
    }
    report = _report(data, labels.description, class_names, counts, weights, params)
    report.update(normalize=normalize, clip=clip, zero_count=zero_count)
    return report


def parse_params(pairs: list[str], schemes: list[str]) -> dict[str, dict[str, float]]:
    """Turn ``["beta=0.99"]`` into the parameters of each scheme in ``schemes`` that takes them.

    Raises:
        InvalidValueError: if a pair is not ``NAME=NUMBER`` or no chosen scheme takes ``NAME``.

    Example:
        >>> parse_params(["beta=0.99"], ["balanced", "effective_number"])
        {'balanced': {}, 'effective_number': {'beta': 0.99}}
    """
    accepted = {name: scheme_defaults(name) for name in schemes}
    taken = sorted({p for defaults in accepted.values() for p in defaults})
    params: dict[str, dict[str, float]] = {name: {} for name in schemes}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        try:
            value = float(text) if sep and key else math.nan
        except ValueError:
            value = math.nan
        if math.isnan(value):
            raise InvalidValueError(
                expected(
                    "--param", "to be NAME=NUMBER", repr(pair), "Write it like --param beta=0.99."
                )
            )
        if key not in taken:
            raise InvalidValueError(
                expected(
                    "--param",
                    "to name a parameter of the chosen schemes "
                    f"({names(taken) if taken else 'they take none'})",
                    repr(key),
                    "See `weightlab weights --list-schemes`.",
                )
            )
        for name, defaults in accepted.items():
            if key in defaults:
                params[name][key] = value
    return params


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidValueError(
            expected(option, f"to be one of {names(choices)}", repr(value), "Pick one of those.")
        )


def _check_schemes(chosen: list[str]) -> list[str]:
    for name in chosen:
        if name not in SCHEMES:
            raise InvalidValueError(
                expected(
                    "--scheme",
                    f"to be one of {names(list_schemes())}",
                    repr(name),
                    "See `weightlab weights --list-schemes`.",
                )
            )
    return list(dict.fromkeys(chosen))  # repeated names once, in the order given


def _check_clip(clip: float | None) -> None:
    if clip is not None and not (math.isfinite(clip) and clip >= 1):
        raise InvalidValueError(
            expected(
                "--clip",
                "to be a number >= 1 (the largest allowed max(w) / min(w))",
                repr(clip),
                "Use e.g. --clip 10, or leave it out.",
            )
        )


def _summary(name: str) -> str:
    doc = (SCHEMES.get(name).__doc__ or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""


def _print_schemes(output_format: str) -> None:
    rows: list[dict[str, Any]] = [
        {"name": name, "params": scheme_defaults(name), "summary": _summary(name)}
        for name in list_schemes()
    ]
    if output_format == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title="Weight schemes (weightlab.weights.SCHEMES)")
    table.add_column("scheme", style="bold")
    table.add_column("parameters (default)")
    table.add_column("what it is")
    for row in rows:
        params = ", ".join(f"{k}={v:g}" for k, v in row["params"].items())
        table.add_row(row["name"], params, row["summary"])
    _console(table).print(table)


def _console(table: Any) -> Any:
    """A stdout console; when stdout is not a terminal, wide enough for the whole table."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console = Console(width=max(console.width, needed))
    return console


def _report(
    data: str,
    description: str,
    class_names: tuple[str, ...],
    counts: Any,
    weights: dict[str, Any],
    params: dict[str, dict[str, float]],
) -> dict[str, Any]:
    total = int(counts.sum())
    return {
        "data": data,
        "description": description,
        "n_samples": total,
        "num_classes": len(counts),
        "params": {name: {**scheme_defaults(name), **params[name]} for name in weights},
        "classes": [
            {"index": i, "name": name, "count": int(n), "share": int(n) / total}
            for i, (name, n) in enumerate(zip(class_names, counts, strict=True))
        ],
        "weights": {name: [float(v) for v in w] for name, w in weights.items()},
    }


def _print_table(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    norm = {
        "mean": "mean 1",
        "max": "max 1",
        "min": "min 1",
        "none": "the schemes' own scale",
    }[report["normalize"]]
    notes = [f"weights normalised to {norm}"]
    if report["clip"] is not None:
        notes.append(f"clipped at max/min = {report['clip']:g}")
    for name, values in report["params"].items():
        if values:
            notes.append(f"{name}: " + ", ".join(f"{k}={v:g}" for k, v in values.items()))
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("class", style="bold")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for name in report["weights"]:
        table.add_column(name.replace("_", "\n"), justify="right")
    for i, cls in enumerate(report["classes"]):
        table.add_row(
            cls["name"],
            str(cls["count"]),
            f"{100 * cls['share']:.1f}%",
            *(f"{w[i]:.3f}" for w in report["weights"].values()),
            end_section=i == len(report["classes"]) - 1,
        )
    ratios = []
    for w in report["weights"].values():
        positive = [v for v in w if v > 0]
        ratios.append(f"{max(positive) / min(positive):.1f}x")
    table.add_row("max/min", "", "", *ratios, style="dim")
    console = _console(table)
    title = (
        f"{report['description']}: {report['n_samples']} samples, {report['num_classes']} classes"
    )
    console.print(title, style="bold", markup=False, highlight=False)
    console.print(table)
    console.print("; ".join(notes), style="dim", markup=False, highlight=False)


# --------------------------------------------------------------------------- multi-label


def _refuse_with_multilabel(options: list[str]) -> None:
    if options:
        raise InvalidValueError(
            expected(
                options[0],
                "to be given only without --multilabel",
                "it with --multilabel",
                f"Drop {options[0]}: --multilabel prints pos_weight = negatives / positives "
                "per label, with no scheme, normalisation or clipping.",
            )
        )


def _multilabel_report(
    data: str,
    columns: list[str],
    option: str,
    imbalance_ratio: float | None,
    seed: int | None,
    zero_count: str,
) -> dict[str, Any]:
    from weightlab.cli.labels import read_multilabel

    labels = read_multilabel(
        data, targets=columns, imbalance_ratio=imbalance_ratio, seed=seed, option=option
    )
    label_names, description = labels.label_names, labels.description
    counts = count_multilabel(labels.values)
    weights = pos_weight(counts, zero_count=zero_count)  # type: ignore[arg-type]
    n = counts.n_samples
    return {
        "data": data,
        "description": description,
        "n_samples": n,
        "num_labels": len(label_names),
        "zero_count": zero_count,
        "labels": [
            {
                "index": j,
                "name": name,
                "positives": int(p),
                "negatives": int(q),
                "share": int(p) / n,
            }
            for j, (name, p, q) in enumerate(
                zip(label_names, counts.positives, counts.negatives, strict=True)
            )
        ],
        "pos_weight": [float(w) for w in weights],
    }


def _print_multilabel_table(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("label", style="bold")
    table.add_column("positives", justify="right")
    table.add_column("negatives", justify="right")
    table.add_column("share", justify="right")
    table.add_column("pos_weight", justify="right")
    for row, weight in zip(report["labels"], report["pos_weight"], strict=True):
        table.add_row(
            row["name"],
            str(row["positives"]),
            str(row["negatives"]),
            f"{100 * row['share']:.1f}%",
            f"{weight:.3f}",
        )
    notes = [
        "share = positives / samples",
        "pos_weight = negatives / positives, for BCEWithLogitsLoss(pos_weight=...)",
    ]
    if any(row["positives"] == 0 for row in report["labels"]):
        given = {"zero": "weight 0", "max": "the largest weight"}[report["zero_count"]]
        notes.append(f"labels without positives get {given} (--zero-count {report['zero_count']})")
    console = _console(table)
    title = f"{report['description']}: {report['n_samples']} samples, {report['num_labels']} labels"
    console.print(title, style="bold", markup=False, highlight=False)
    console.print(table)
    console.print("\n".join(notes), style="dim", markup=False, highlight=False)
