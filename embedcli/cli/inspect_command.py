"""``embedcli inspect``: show any safetensors file (or a trainer's token file, or a split
output's index), compare two (``--diff``), plot their data (``--plot``)."""

from __future__ import annotations

import typer

from embedcli.cli.errors import err_console, warn_unused
from embedcli.cli.inspect_options import (
    DecodeWithOpt,
    DiffOpt,
    IgnoreMetadataOpt,
    InspectPaths,
    JsonOpt,
    NeighborsOpt,
    PlotOpt,
    PreviewOpt,
    StatsOpt,
    TensorOpt,
    TopOpt,
)
from embedcli.cli.options import Verbose


def inspect(
    ctx: typer.Context,
    paths: InspectPaths,
    stats: StatsOpt = True,
    preview: PreviewOpt = 0,
    tensor: TensorOpt = None,
    as_json: JsonOpt = False,
    top: TopOpt = 10,
    neighbors: NeighborsOpt = None,
    tokenizer: DecodeWithOpt = None,
    plot: PlotOpt = None,
    diff: DiffOpt = False,
    ignore_metadata: IgnoreMetadataOpt = False,
    verbose: Verbose = False,
) -> None:
    """Show any safetensors file: tensors, dtypes, shapes, sizes, statistics, metadata.

    [bold]Examples[/]

      embedcli inspect corpus.embeddings.safetensors

      embedcli inspect model.safetensors --no-stats     [dim]# header only: instant[/]

      embedcli inspect corpus.windows.safetensors --preview 2

      embedcli inspect a.safetensors b.safetensors --diff --json | jq .diff.identical

      embedcli inspect corpus.tokens.safetensors --top 20 --plot corpus.png

      embedcli inspect gpt2.safetensors --neighbors " king"

      embedcli inspect llama.tokens.safetensors -n 1 --tokenizer ~/models/Llama-3.1-8B
    """
    from rich.console import Console

    from embedcli.cli.render import render_diff, render_report
    from embedcli.inspection.files import inspect_file
    from embedcli.inspection.report import dumps

    rules = [
        ("top", not stats, "--top has no effect with --no-stats"),
        ("ignore_metadata", not diff, "--ignore-metadata applies to --diff only"),
    ]
    warn_unused(ctx, False, rules)
    console = Console(highlight=False)
    if diff:
        from embedcli.inspection.diff import check_diff_request, diff_files

        a, b = check_diff_request(paths, stats=stats, preview=preview)
        difference = diff_files(a, b, tensor=tensor, ignore_metadata=ignore_metadata)
        if as_json:
            typer.echo(dumps({"diff": difference.to_json()}))
        else:
            render_diff(console, difference)
        if not difference.identical:
            raise typer.Exit(1)  # like diff and cmp: 0 same, 1 different, 2 trouble
        return
    from embedcli.storage.pipes import spool

    decode_with = None
    if tokenizer is not None:
        from embedcli.bpe.foreign import decoding_name

        decode_with = decoding_name(tokenizer)
    reports = []
    for path in paths:
        with spool(path) as local:  # a pipe or stdin: read once into a temporary file
            report = inspect_file(
                local, stats=stats, preview=preview, tensor=tensor, top=top,
                neighbors=neighbors, tokenizer=decode_with,
            )  # fmt: skip
        report.path = "<stdin>" if path == "-" else path
        reports.append(report)
    if plot is not None:
        from embedcli.inspection.plot import write_plot

        drawn = write_plot(reports, plot)
        err_console().print(
            f"{plot}: {drawn} histogram{'s' if drawn != 1 else ''}", highlight=False
        )
    if as_json:
        typer.echo(dumps({"files": [r.to_json() for r in reports]}))
        return
    for i, report in enumerate(reports):
        if i:
            console.print()
        render_report(console, report)
