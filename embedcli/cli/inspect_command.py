"""``embedcli inspect``: show any safetensors file (or a trainer's token file, or a split
output's index), compare two (``--diff``), plot their data (``--plot``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

from embedcli.cli.errors import err_console, warn_unused
from embedcli.cli.inspect_options import Comparing, InspectPaths, Locating, Showing
from embedcli.cli.option_groups import Debugging, Storage

if TYPE_CHECKING:
    from embedcli.inspection.report import FileReport


def inspect(
    ctx: typer.Context,
    paths: InspectPaths,
    *,
    show: Showing,
    compare: Comparing,
    locate: Locating,
    storage: Storage,
    debug: Debugging,
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
    from embedcli.inspection.report import dumps

    warn_unused(ctx, False, show.unused() + compare.unused())
    console = Console(highlight=False)
    if locate.asked:
        return _document(console, paths, locate, show)
    if compare.diff:
        return _diff(console, paths, show, compare)
    reports = [_report(path, show) for path in paths]
    if show.plot is not None:
        _plot(reports, show.plot)
    if show.as_json:
        return typer.echo(dumps({"files": [r.to_json() for r in reports]}))
    for i, report in enumerate(reports):
        if i:
            console.print()
        render_report(console, report)


def _report(path: str, show: Showing) -> FileReport:
    """One file's report, named as the user named it (stdin, a URL)."""
    from embedcli.inspection.files import inspect_file
    from embedcli.storage.pipes import spool
    from embedcli.storage.remote import is_url, public_url, relabeled

    with spool(path) as local:  # a pipe or stdin: read once into a temporary file
        report = inspect_file(
            local,
            stats=show.stats,
            preview=show.preview,
            tensor=show.tensor,
            top=show.top,
            neighbors=show.neighbors,
            tokenizer=show.decoding(),
        )
    if is_url(path):  # its parts were fetched beside it: name them by their URLs
        report = relabeled(report, os.path.dirname(local), public_url(path).rsplit("/", 1)[0])
    report.path = "<stdin>" if path == "-" else public_url(path)
    return report


def _plot(reports: list[FileReport], plot: str) -> None:
    from embedcli.inspection.plot import write_plot

    drawn = write_plot(reports, plot)
    err_console().print(f"{plot}: {drawn} histogram{'s' if drawn != 1 else ''}", highlight=False)


def _document(console: Console, paths: list[str], locate: Locating, show: Showing) -> None:
    """``inspect --doc N`` / ``--token I``: one document of one token file."""
    from embedcli.cli.mix_render import render_document
    from embedcli.errors import UsageError
    from embedcli.inspection.documents import document_report
    from embedcli.inspection.report import dumps

    if len(paths) != 1 or (locate.doc is not None and locate.token is not None):
        raise UsageError("--doc and --token take one token file, and one of the two")
    tokenizer = show.decoding()
    report = document_report(paths[0], doc=locate.doc, token=locate.token, tokenizer=tokenizer)
    if show.as_json:
        typer.echo(dumps({"document": report.to_json()}))
    else:
        render_document(console, report)


def _diff(console: Console, paths: list[str], show: Showing, compare: Comparing) -> None:
    """``inspect --diff``: exit status 0 same, 1 different (as diff and cmp), 2 trouble."""
    from embedcli.cli.diff_view import render_diff
    from embedcli.inspection.diff import check_diff_request, diff_files
    from embedcli.inspection.report import dumps
    from embedcli.storage.pipes import spool
    from embedcli.storage.remote import public_url

    a, b = check_diff_request(paths, stats=show.stats, preview=show.preview)
    with spool(a) as local_a, spool(b) as local_b:  # URLs fetched; pipes read once
        difference = diff_files(
            local_a,
            local_b,
            tensor=show.tensor,
            ignore_metadata=compare.ignore_metadata,
            strict=compare.strict,
        )
    difference.a, difference.b = public_url(a), public_url(b)
    if show.as_json:
        typer.echo(dumps({"diff": difference.to_json()}))
    else:
        render_diff(console, difference)
    if not difference.identical:
        raise typer.Exit(1)
