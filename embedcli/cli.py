"""The ``embedcli`` command: four thin commands that parse options, call a stage, render.

Shared options live in ``cli_options.py``, the translation of errors into one line and an exit
status in ``cli_errors.py``, all rendering in ``summary.py``.
"""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer
from rich.console import Console

from . import __version__
from . import options as o
from .cli_embed_options import (
    ContextLengthOpt,
    DeviceOpt,
    DimOpt,
    FloatDtypeOpt,
    PosKeyOpt,
    PosOpt,
    SaveWeightsOpt,
    TableSeedOpt,
    TokenKeyOpt,
    VocabSizeOpt,
    WeightsOpt,
    embed_options,
)
from .cli_errors import (
    CLICK_ABORT,
    CLICK_ERROR,
    err_console,
    handle_errors,
    on_sigterm,
    state,
    usage_error,
)
from .cli_inspect_options import (
    DiffOpt,
    InspectPaths,
    JsonOpt,
    NeighborsOpt,
    PlotOpt,
    PreviewOpt,
    StatsOpt,
    TensorOpt,
    TopOpt,
)
from .cli_options import (
    BackendOpt,
    Batched,
    BatchSize,
    Command,
    CrossDocs,
    DropLast,
    DryRun,
    EncodingOpt,
    EotOpt,
    FormatOpt,
    IdsDtypeOpt,
    Include,
    Inputs,
    Key,
    MaxLength,
    MaxShardSize,
    NoClobber,
    NumBatches,
    Output,
    Quiet,
    ShardOpt,
    ShardTokens,
    Shuffle,
    ShuffleSeedOpt,
    SpecialOpt,
    SplitOnEot,
    SplitSeed,
    Stride,
    TextKey,
    ToOpt,
    ValFraction,
    Verbose,
    Workers,
    parse_size,
    tokenize_options,
    window_options,
)

app = typer.Typer(
    name="embedcli",
    help="Turn raw text into GPT-style token windows and embeddings, stored as safetensors.\n\n"
    "Stages: tokenize -> batch -> embed; inspect shows any safetensors file. Each stage takes "
    "the previous stage's file, or text directly: [bold]embedcli embed corpus.txt --dim 256[/] "
    "runs the whole pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"embedcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show tracebacks (also EMBEDCLI_DEBUG=1)."),
    ] = False,
) -> None:
    if verbose:
        state["verbose"] = True


# --------------------------------------------------------------------------- helpers


def _progress_enabled(quiet: bool) -> bool:
    # Under torchrun every process shares the terminal: only rank 0 draws.
    return not quiet and err_console.is_terminal and os.environ.get("RANK", "0") == "0"


def _progress(quiet: bool):
    """The stages' progress factory: rich bars on stderr, only for work long enough to watch."""
    from .summary import progress_bar

    enabled = _progress_enabled(quiet)

    def factory(description: str, total: int | None, unit: str = "bytes"):
        worth = (total or 0) > (1 << 20 if unit == "bytes" else 20000)
        return progress_bar(err_console, description, total, enabled=enabled and worth, unit=unit)

    return factory


def _warn_unused(ctx: typer.Context, quiet: bool, rules: list[tuple[str, bool, str]]) -> None:
    """Say so when an option given on the command line cannot have an effect."""
    for name, no_effect, message in rules:
        source = ctx.get_parameter_source(name)
        given = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
        if given and no_effect and not quiet:
            err_console.print(f"[yellow]Warning:[/] {message}", highlight=False)


_WINDOWING = (
    "batched",
    "max_length",
    "stride",
    "batch_size",
    "drop_last",
    "num_batches",
    "shuffle",
    "seed",
    "cross_docs",
)


def _windowing(arguments: dict) -> dict:
    """The windowing options among a command's arguments (``locals()``): batch and embed take
    the same ones, named as in :class:`embedcli.options.WindowOptions`."""
    return {name: arguments[name] for name in _WINDOWING}


def _notify(quiet: bool):
    """Where a stage announces a large output before writing it."""
    if quiet or os.environ.get("RANK", "0") != "0":
        return None
    return lambda message: err_console.print(f"[bold]embedcli:[/] {message}", highlight=False)


def _show(result, quiet: bool) -> None:
    if getattr(result, "dry_run", False):  # asked for: shown even with --quiet
        from .summary import render_plan

        render_plan(err_console, result)
        return
    if not quiet and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        from .summary import render_stage

        render_stage(err_console, result)


# --------------------------------------------------------------------------- commands


@app.command(cls=Command)
@handle_errors
def tokenize(
    ctx: typer.Context,
    inputs: Inputs = None,
    output: Output = None,
    encoding: EncodingOpt = o.DEFAULT_ENCODING,
    special: SpecialOpt = o.SPECIAL_POLICIES[0],
    backend: BackendOpt = o.BACKENDS[0],
    text_key: TextKey = o.DEFAULT_TEXT_KEY,
    fmt: FormatOpt = o.FORMATS[0],
    workers: Workers = None,
    include: Include = None,
    split_on_eot: SplitOnEot = False,
    shard: ShardOpt = None,
    to: ToOpt = "safetensors",
    eot: EotOpt = None,
    shard_tokens: ShardTokens = None,
    val_fraction: ValFraction = None,
    seed: SplitSeed = o.DEFAULT_SEED,
    no_clobber: NoClobber = False,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """BPE-encode text into a token file: ids, with <|endoftext|> between documents.

    A .txt file is one document, a .jsonl file one document per line (--text-key), a .parquet or .arrow file one document per row (the --text-key column), a directory its files in sorted order; .gz and .zst are decompressed on the fly. Output: ids (int32) and doc_offsets (int64), or a trainer's own token file with --to: nanogpt (train.bin), llmc (NAME_000000.bin...), megatron (PREFIX.bin/.idx) or npy.

    [bold]Examples[/]

      embedcli tokenize corpus.txt       [dim]# writes corpus.tokens.safetensors[/]

      embedcli tokenize docs/ -o docs.tokens.safetensors

      cat notes.txt | embedcli tokenize -o - | embedcli batch - -o w.safetensors

      embedcli tokenize data.jsonl.gz --text-key body --special error

      embedcli tokenize corpus/ -o corpus.tokens.safetensors --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT

      embedcli tokenize fineweb/ --to nanogpt -o train.bin   [dim]# EOT after each document[/]

      embedcli tokenize data.parquet --to megatron -o corpus_text_document
    """
    from .outputs import default_output
    from .text import parse_shard
    from .tokenizing import run_tokenize  # not stages: tokenize imports no window code

    unused = to != "llmc"
    _warn_unused(ctx, quiet, [("shard_tokens", unused, "--shard-tokens applies to --to llmc only")])
    inputs = inputs or ["-"]
    result = run_tokenize(
        inputs,
        output or default_output(inputs, "tokens"),
        tokenize_options(locals()),
        no_clobber=no_clobber,
        progress=_progress(quiet),
        shard=parse_shard(shard) if shard else None,
        to=to,
        shard_tokens=shard_tokens,
        dry_run=dry_run,
        val_fraction=val_fraction or 0.0,
        split_seed=seed,
    )
    _show(result, quiet)


@app.command(cls=Command)
@handle_errors
def batch(
    ctx: typer.Context,
    inputs: Inputs = None,
    output: Output = None,
    max_length: MaxLength = None,
    stride: Stride = None,
    batch_size: BatchSize = None,
    drop_last: DropLast = True,
    num_batches: NumBatches = None,
    shuffle: Shuffle = False,
    seed: ShuffleSeedOpt = o.DEFAULT_SEED,
    cross_docs: CrossDocs = True,
    batched: Batched = False,
    dtype: IdsDtypeOpt = o.OUTPUT_DTYPES[0],
    key: Key = o.DEFAULT_TOKEN_KEY,
    encoding: EncodingOpt = o.DEFAULT_ENCODING,
    special: SpecialOpt = o.SPECIAL_POLICIES[0],
    backend: BackendOpt = o.BACKENDS[0],
    text_key: TextKey = o.DEFAULT_TEXT_KEY,
    fmt: FormatOpt = o.FORMATS[0],
    workers: Workers = None,
    include: Include = None,
    split_on_eot: SplitOnEot = False,
    no_clobber: NoClobber = False,
    max_shard_size: MaxShardSize = None,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """Window token ids into (N, max-length) inputs and targets (inputs shifted by one).

    Windows start at 0, stride, 2*stride, ... while a window and its next-token target fit, exactly as the reference loop, and are grouped in batches of --batch-size. The input is a token file, any safetensors file with a 1-D integer tensor (--key), or text.

    [bold]Examples[/]

      embedcli batch corpus.tokens.safetensors -T 4 --stride 4 -B 8

      embedcli batch corpus.txt -T 256 --stride 128 --shuffle --seed 1

      embedcli batch corpus.tokens.safetensors -T 4 -B 8 --num-batches 1 -o first.safetensors
    """
    from .outputs import default_output
    from .stages import run_batch

    _warn_unused(ctx, quiet, [("seed", not shuffle, "--seed has no effect without --shuffle")])
    inputs = inputs or ["-"]
    result = run_batch(
        inputs,
        output or default_output(inputs, "windows"),
        window_options(dtype, **_windowing(locals())),
        tokenize_options(locals()),
        key=key,
        no_clobber=no_clobber,
        progress=_progress(quiet),
        max_shard_size=parse_size(max_shard_size),
        dry_run=dry_run,
        notify=_notify(quiet),
    )
    _show(result, quiet)


@app.command(cls=Command)
@handle_errors
def embed(
    ctx: typer.Context,
    inputs: Inputs = None,
    output: Output = None,
    dim: DimOpt = None,
    vocab_size: VocabSizeOpt = None,
    context_length: ContextLengthOpt = None,
    seed: TableSeedOpt = o.DEFAULT_SEED,
    pos: PosOpt = o.POS_KINDS[0],
    device: DeviceOpt = o.DEFAULT_DEVICE,
    dtype: FloatDtypeOpt = o.FLOAT_DTYPES[0],
    weights: WeightsOpt = None,
    token_key: TokenKeyOpt = None,
    pos_key: PosKeyOpt = None,
    save_weights: SaveWeightsOpt = True,
    max_length: MaxLength = None,
    stride: Stride = None,
    batch_size: BatchSize = None,
    drop_last: DropLast = True,
    num_batches: NumBatches = None,
    shuffle: Shuffle = False,
    cross_docs: CrossDocs = True,
    batched: Batched = False,
    key: Key = o.DEFAULT_TOKEN_KEY,
    encoding: EncodingOpt = o.DEFAULT_ENCODING,
    special: SpecialOpt = o.SPECIAL_POLICIES[0],
    backend: BackendOpt = o.BACKENDS[0],
    text_key: TextKey = o.DEFAULT_TEXT_KEY,
    fmt: FormatOpt = o.FORMATS[0],
    workers: Workers = None,
    include: Include = None,
    split_on_eot: SplitOnEot = False,
    no_clobber: NoClobber = False,
    max_shard_size: MaxShardSize = None,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """Token plus positional embeddings (N, max-length, dim) for text, tokens or windows.

    Random tables are made as torch.manual_seed(SEED); nn.Embedding(vocab, dim); nn.Embedding(context, dim) would make them, on the CPU, then moved to --device. Windows are embedded in chunks and streamed to the output, so memory stays flat. The output is (N, T, dim), one row per window in batch order: x.view(-1, B, T, dim) gives the batches, and --batched stores them so.

    [bold]Examples[/]

      embedcli embed corpus.txt --dim 256     [dim]# the whole pipeline[/]

      embedcli embed corpus.txt -T 4 --stride 4 -B 8 --dim 256 --seed 123

      embedcli embed corpus.windows.safetensors --device auto --dtype bfloat16

      embedcli embed corpus.txt -T 1024 --weights gpt2.safetensors
    """
    from .outputs import default_output
    from .stages import run_embed

    no_weights = weights is None
    _warn_unused(
        ctx,
        quiet,
        [
            ("token_key", no_weights, "--token-key has no effect without --weights"),
            ("pos_key", no_weights, "--pos-key has no effect without --weights"),
            ("context_length", pos == "none", "--context-length has no effect with --pos none"),
        ],
    )
    inputs = inputs or ["-"]
    result = run_embed(
        inputs,
        output or default_output(inputs, "embeddings"),
        embed_options(locals()),
        window_options(**_windowing(locals())),
        tokenize_options(locals()),
        key=key,
        no_clobber=no_clobber,
        progress=_progress(quiet),
        dry_run=dry_run,
        notify=_notify(quiet),
    )
    _show(result, quiet)


@app.command(cls=Command)
@handle_errors
def inspect(
    ctx: typer.Context,
    paths: InspectPaths,
    stats: StatsOpt = True,
    preview: PreviewOpt = 0,
    tensor: TensorOpt = None,
    as_json: JsonOpt = False,
    top: TopOpt = 10,
    neighbors: NeighborsOpt = None,
    plot: PlotOpt = None,
    diff: DiffOpt = False,
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
    """
    from .inspection import dumps, inspect_file
    from .summary import render_diff, render_report

    _warn_unused(ctx, False, [("top", not stats, "--top has no effect with --no-stats")])
    console = Console(highlight=False)
    if diff:
        from .diff import check_diff_request, diff_files

        a, b = check_diff_request(paths, stats=stats, preview=preview)
        report = diff_files(a, b, tensor=tensor)
        if as_json:
            typer.echo(dumps({"diff": report.to_json()}))
        else:
            render_diff(console, report)
        if not report.identical:
            raise typer.Exit(1)  # like diff and cmp: 0 same, 1 different, 2 trouble
        return
    from .pipes import spool

    reports = []
    for path in paths:
        with spool(path) as local:  # a pipe or stdin: read once into a temporary file
            report = inspect_file(
                local, stats=stats, preview=preview, tensor=tensor, top=top, neighbors=neighbors
            )
        report.path = "<stdin>" if path == "-" else path
        reports.append(report)
    if plot is not None:
        from .plot import write_plot

        drawn = write_plot(reports, plot)
        err_console.print(f"{plot}: {drawn} histogram{'s' if drawn != 1 else ''}", highlight=False)
    if as_json:
        typer.echo(dumps({"files": [r.to_json() for r in reports]}))
        return
    for i, report in enumerate(reports):
        if i:
            console.print()
        render_report(console, report)


def main() -> None:
    """Console-script entry point: usage errors are one line too, in embedcli's words."""
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        code = app(prog_name="embedcli", standalone_mode=False)
    except CLICK_ERROR as exc:
        raise SystemExit(usage_error(exc)) from None
    except CLICK_ABORT:  # Ctrl-C before a command started
        err_console.print("Interrupted.", highlight=False)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
