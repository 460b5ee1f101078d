"""``embedcli inspect``: show any safetensors file (or a trainer's token file, or a split
output's index), compare two (``--diff``), plot their data (``--plot``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

from embedcli.cli.errors import err_console, warn_unused
from embedcli.cli.inspect_options import (
    DecodeWithOpt,
    DiffOpt,
    DocOpt,
    IgnoreMetadataOpt,
    InspectPaths,
    JsonOpt,
    NeighborsOpt,
    PlotOpt,
    PreviewOpt,
    StatsOpt,
    StrictOpt,
    TensorOpt,
    TokenOpt,
    TopOpt,
)
from embedcli.cli.options import Verbose
from embedcli.cli.storage_options import StorageOptions


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
    strict: StrictOpt = False,
    doc: DocOpt = None,
    token: TokenOpt = None,
    storage_options: StorageOptions = None,
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

      embedcli inspect mix.tokens.safetensors --doc 12   [dim]# and the source it came from[/]
    """
    from rich.console import Console

    from embedcli.cli.render import render_report
    from embedcli.inspection.files import inspect_file
    from embedcli.inspection.report import dumps

    rules = [
        ("top", not stats, "--top has no effect with --no-stats"),
        ("ignore_metadata", not diff, "--ignore-metadata applies to --diff only"),
        ("strict", not diff, "--strict applies to --diff only"),
    ]
    warn_unused(ctx, False, rules)
    console = Console(highlight=False)
    if doc is not None or token is not None:
        _document(console, paths, doc, token, tokenizer, as_json)
        return
    if diff:
        _diff(console, paths, stats, preview, tensor, ignore_metadata, strict, as_json)
        return
    from embedcli.storage.pipes import spool
    from embedcli.storage.remote import is_url, public_url, relabeled

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
        if is_url(path):  # its parts were fetched beside it: name them by their URLs
            report = relabeled(report, os.path.dirname(local), public_url(path).rsplit("/", 1)[0])
        report.path = "<stdin>" if path == "-" else public_url(path)
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


def _document(
    console: Console,
    paths: list[str],
    doc: int | None,
    token: int | None,
    tokenizer: str | None,
    as_json: bool,
) -> None:
    """``inspect --doc N`` / ``--token I``: one document of one token file."""
    from embedcli.cli.mix_render import render_document
    from embedcli.errors import UsageError
    from embedcli.inspection.documents import document_report
    from embedcli.inspection.report import dumps

    if len(paths) != 1 or (doc is not None and token is not None):
        raise UsageError("--doc and --token take one token file, and one of the two")
    decode_with = None
    if tokenizer is not None:
        from embedcli.bpe.foreign import decoding_name

        decode_with = decoding_name(tokenizer)
    report = document_report(paths[0], doc=doc, token=token, tokenizer=decode_with)
    if as_json:
        typer.echo(dumps({"document": report.to_json()}))
    else:
        render_document(console, report)


def _diff(
    console: Console,
    paths: list[str],
    stats: bool,
    preview: int,
    tensor: str | None,
    ignore_metadata: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """``inspect --diff``: exit status 0 same, 1 different (as diff and cmp), 2 trouble."""
    from embedcli.cli.diff_view import render_diff
    from embedcli.inspection.diff import check_diff_request, diff_files
    from embedcli.inspection.report import dumps
    from embedcli.storage.pipes import spool
    from embedcli.storage.remote import public_url

    a, b = check_diff_request(paths, stats=stats, preview=preview)
    with spool(a) as local_a, spool(b) as local_b:  # URLs fetched; pipes read once
        difference = diff_files(
            local_a, local_b, tensor=tensor, ignore_metadata=ignore_metadata, strict=strict
        )
    difference.a, difference.b = public_url(a), public_url(b)
    if as_json:
        typer.echo(dumps({"diff": difference.to_json()}))
    else:
        render_diff(console, difference)
    if not difference.identical:
        raise typer.Exit(1)
