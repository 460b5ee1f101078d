"""The ``embedcli`` command: four thin commands that parse options, call a stage, render.

Shared options live in ``cli_options.py``, the translation of errors into one line and an exit
status in ``cli_errors.py``, all rendering in ``summary.py``.
"""

from __future__ import annotations

import copy
import signal
import sys
from typing import Annotated

import typer

from embedcli import options as o
from embedcli.cli.embed_options import (
    MORE_EMB,
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
)
from embedcli.cli.errors import (
    CLICK_ABORT,
    CLICK_ERROR,
    debug_requested,
    err_console,
    handle_errors,
    on_sigterm,
    state,
    usage_error,
    warn_unused,
)
from embedcli.cli.inspect_command import inspect
from embedcli.cli.mix_command import BLEND, CLUSTER, mix
from embedcli.cli.options import (
    ADVANCED_PANELS,
    MORE,
    TOK,
    BackendOpt,
    Batched,
    BatchSize,
    Command,
    CrossDocs,
    DropLast,
    DryRun,
    EmbedInputs,
    EncodingOpt,
    EotOpt,
    FormatOpt,
    Group,
    HelpAll,
    IdsDtypeOpt,
    Include,
    InputFormatOpt,
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
    TextInputs,
    TextKey,
    ToOpt,
    ValFraction,
    Verbose,
    Workers,
    member,
    parse_size,
)
from embedcli.cli.session import announcer, inputs_or_stdin, progress_factory, show_result
from embedcli.cli.storage_options import STORAGE, StorageOptions
from embedcli.cli.tokenizer_options import TokenizerChoices, TokenizerOpt, tokenize_options
from embedcli.storage.atomic import COMMITTED, UNFINISHED
from embedcli.version import __version__

app = typer.Typer(
    name="embedcli",
    help="Turn raw text into GPT-style token windows and embeddings, stored as safetensors.\n\n"
    "Stages: tokenize -> batch -> embed; mix assembles token files of several sources into one; "
    "inspect shows any safetensors file. Each stage takes "
    "the previous stage's file, or text directly: [bold]embedcli embed corpus.txt --dim 256[/] "
    "runs the whole pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=Group,
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


# --------------------------------------------------------------------------- commands


@app.command(cls=Command)
@handle_errors
def tokenize(
    ctx: typer.Context,
    inputs: TextInputs = None,
    output: Output = None,
    encoding: EncodingOpt = o.DEFAULT_ENCODING,
    tokenizer: TokenizerOpt = None,
    tokenizer_options: TokenizerChoices = None,
    special: SpecialOpt = None,
    backend: BackendOpt = o.BACKENDS[0],
    text_key: TextKey = o.DEFAULT_TEXT_KEY,
    fmt: FormatOpt = "auto",
    workers: Workers = None,
    include: Include = None,
    split_on_eot: SplitOnEot = False,
    shard: ShardOpt = None,
    to: ToOpt = None,
    eot: EotOpt = None,
    shard_tokens: ShardTokens = None,
    val_fraction: ValFraction = None,
    seed: SplitSeed = o.DEFAULT_SEED,
    no_clobber: NoClobber = False,
    storage_options: StorageOptions = None,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    verbose: Verbose = False,
    help_all: HelpAll = False,
) -> None:
    """BPE-encode text into a token file: ids, with <|endoftext|> between documents.

    A .txt file is one document, a .jsonl line or a Parquet/Arrow row one each. Output: embedcli's safetensors (ids, doc_offsets), or a trainer's own file with --to.

    [bold]Examples[/]

      embedcli tokenize corpus.txt       [dim]# writes corpus.tokens.safetensors[/]

      embedcli tokenize notes.txt --to nanogpt   [dim]# writes notes.bin[/]

      embedcli tokenize docs/ -o docs.tokens.safetensors

      cat notes.txt | embedcli tokenize -o - | embedcli batch - -o w.safetensors

      embedcli tokenize data.jsonl.gz --text-key body --special error

      embedcli tokenize corpus/ -o c.tokens.safetensors --shard $SLURM_ARRAY_TASK_ID/8

      embedcli tokenize fineweb/ --to nanogpt -o train.bin  [dim]# as its prepare.py[/]

      embedcli tokenize data.parquet --to megatron -o corpus_text_document
    """
    from embedcli.documents import parse_shard
    from embedcli.formats import default_token_output, format_for
    from embedcli.stages.tokenize import plan_tokenize, run_tokenize

    token_format = format_for(to, output)  # refuses an -o name that says another format
    unused = token_format.name != "llmc"
    warn_unused(ctx, quiet, [("shard_tokens", unused, "--shard-tokens applies to --to llmc only")])
    inputs = inputs_or_stdin(inputs)
    output = output or default_token_output(inputs, token_format)
    opts = tokenize_options(
        encoding=encoding,
        tokenizer=tokenizer,
        tokenizer_options=tokenizer_options,
        special=special,
        backend=backend,
        text_key=text_key,
        fmt=fmt,
        workers=workers,
        include=include,
        split_on_eot=split_on_eot,
        eot=eot,
    )
    shards = parse_shard(shard) if shard else None
    if dry_run:
        plan = plan_tokenize(
            inputs, output, opts, no_clobber=no_clobber, shard=shards, to=token_format.name
        )
        show_result(plan, quiet)
        return
    result = run_tokenize(
        inputs,
        output,
        opts,
        no_clobber=no_clobber,
        progress=progress_factory(quiet),
        shard=shards,
        to=token_format.name,
        shard_tokens=shard_tokens,
        val_fraction=val_fraction or 0.0,
        split_seed=seed,
    )
    show_result(result, quiet)


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
    tokenizer: TokenizerOpt = None,
    special: SpecialOpt = None,
    backend: BackendOpt = o.BACKENDS[0],
    text_key: TextKey = o.DEFAULT_TEXT_KEY,
    fmt: InputFormatOpt = "auto",
    workers: Workers = None,
    include: Include = None,
    split_on_eot: SplitOnEot = False,
    no_clobber: NoClobber = False,
    storage_options: StorageOptions = None,
    max_shard_size: MaxShardSize = None,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    verbose: Verbose = False,
    help_all: HelpAll = False,
) -> None:
    """Window token ids into (N, max-length) inputs and targets (inputs shifted by one).

    Windows start at 0, stride, 2*stride, ... while a window and its next-token target fit, exactly as the reference loop, and are grouped in batches of --batch-size. The input is a token file, any safetensors file with a 1-D integer tensor (--key), or text.

    [bold]Examples[/]

      embedcli batch corpus.tokens.safetensors -T 4 --stride 4 -B 8

      embedcli batch corpus.txt -T 256 --stride 128 --shuffle --seed 1

      embedcli batch c.tokens.safetensors -T 4 -B 8 --num-batches 1 -o one.safetensors
    """
    from embedcli.stages.batch import plan_batch, run_batch
    from embedcli.storage.outputs import default_output

    warn_unused(ctx, quiet, [("seed", not shuffle, "--seed has no effect without --shuffle")])
    inputs = inputs_or_stdin(inputs)
    output = output or default_output(inputs, "windows")
    window_opts = o.WindowOptions(
        max_length=max_length,
        stride=stride,
        batch_size=batch_size,
        drop_last=drop_last,
        num_batches=num_batches,
        shuffle=shuffle,
        seed=seed,
        cross_docs=cross_docs,
        dtype=member(dtype, o.OUTPUT_DTYPES),
        batched=batched,
    )
    tokenize_opts = tokenize_options(
        encoding=encoding,
        tokenizer=tokenizer,
        special=special,
        backend=backend,
        text_key=text_key,
        fmt=fmt,
        workers=workers,
        include=include,
        split_on_eot=split_on_eot,
    )
    shard_size, progress = parse_size(max_shard_size), progress_factory(quiet)
    if dry_run:
        plan = plan_batch(
            inputs, output, window_opts, tokenize_opts, key=key, no_clobber=no_clobber,
            progress=progress, max_shard_size=shard_size,
        )  # fmt: skip
        show_result(plan, quiet)
        return
    result = run_batch(
        inputs, output, window_opts, tokenize_opts, key=key, no_clobber=no_clobber,
        progress=progress, max_shard_size=shard_size, notify=announcer(quiet),
    )  # fmt: skip
    show_result(result, quiet)


@app.command(cls=Command)
@handle_errors
def embed(
    ctx: typer.Context,
    inputs: EmbedInputs = None,
    output: Output = None,
    dim: DimOpt = None,
    vocab_size: VocabSizeOpt = None,
    context_length: ContextLengthOpt = None,
    seed: TableSeedOpt = o.DEFAULT_SEED,
    pos: PosOpt = None,
    device: DeviceOpt = o.DEFAULT_DEVICE,
    dtype: FloatDtypeOpt = None,
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
    tokenizer: TokenizerOpt = None,
    special: SpecialOpt = None,
    backend: BackendOpt = o.BACKENDS[0],
    text_key: TextKey = o.DEFAULT_TEXT_KEY,
    fmt: InputFormatOpt = "auto",
    workers: Workers = None,
    include: Include = None,
    split_on_eot: SplitOnEot = False,
    no_clobber: NoClobber = False,
    storage_options: StorageOptions = None,
    max_shard_size: MaxShardSize = None,
    quiet: Quiet = False,
    dry_run: DryRun = False,
    verbose: Verbose = False,
    help_all: HelpAll = False,
) -> None:
    """Token plus positional embeddings (N, max-length, dim) for text, tokens or windows.

    Random tables are made as torch.manual_seed(SEED); nn.Embedding(vocab, dim); nn.Embedding(context, dim) would make them, on the CPU, then moved to --device. Windows are embedded in chunks and streamed to the output, so memory stays flat. The output is (N, T, dim), one row per window in batch order: x.view(-1, B, T, dim) gives the batches, and --batched stores them so.

    [bold]Examples[/]

      embedcli embed corpus.txt --dim 256     [dim]# the whole pipeline[/]

      embedcli embed corpus.txt -T 4 --stride 4 -B 8 --dim 256 --seed 123

      embedcli embed corpus.windows.safetensors --device auto --dtype bfloat16

      embedcli embed corpus.txt -T 1024 --weights gpt2.safetensors
    """
    from embedcli.stages.embed import plan_embed, run_embed
    from embedcli.storage.outputs import default_output

    _warn_embed(ctx, quiet, no_weights=weights is None, no_pos=pos == "none")
    inputs = inputs_or_stdin(inputs)
    output = output or default_output(inputs, "embeddings")
    opts = o.EmbedOptions(
        dim=dim,
        vocab_size=vocab_size,
        context_length=context_length,
        seed=seed,
        pos=None if pos is None else member(pos, o.POS_KINDS),
        device=device,
        dtype=None if dtype is None else member(dtype, o.FLOAT_DTYPES),
        weights=weights,
        token_key=token_key,
        pos_key=pos_key,
        save_weights=save_weights,
        max_shard_size=parse_size(max_shard_size),
    )
    window_opts = o.WindowOptions(
        max_length=max_length,
        stride=stride,
        batch_size=batch_size,
        drop_last=drop_last,
        num_batches=num_batches,
        shuffle=shuffle,
        seed=seed,
        cross_docs=cross_docs,
        batched=batched,
    )
    tokenize_opts = tokenize_options(
        encoding=encoding,
        tokenizer=tokenizer,
        special=special,
        backend=backend,
        text_key=text_key,
        fmt=fmt,
        workers=workers,
        include=include,
        split_on_eot=split_on_eot,
    )
    progress = progress_factory(quiet)
    if dry_run:
        plan = plan_embed(
            inputs, output, opts, window_opts, tokenize_opts, key=key, no_clobber=no_clobber,
            progress=progress,
        )  # fmt: skip
        show_result(plan, quiet)
        return
    result = run_embed(
        inputs, output, opts, window_opts, tokenize_opts, key=key, no_clobber=no_clobber,
        progress=progress, notify=announcer(quiet),
    )  # fmt: skip
    show_result(result, quiet)


def _warn_embed(ctx: typer.Context, quiet: bool, *, no_weights: bool, no_pos: bool) -> None:
    rules = [
        ("token_key", no_weights, "--token-key has no effect without --weights"),
        ("pos_key", no_weights, "--pos-key has no effect without --weights"),
        ("context_length", no_pos, "--context-length has no effect with --pos none"),
    ]
    warn_unused(ctx, quiet, rules)


# batch and embed tokenize only when given text: that panel waits for --help-all.
ADVANCED_PANELS.update(
    {
        "tokenize": (MORE, STORAGE),
        "batch": (TOK, MORE, STORAGE),
        "embed": (MORE_EMB, TOK, MORE, STORAGE),
        "mix": (BLEND, CLUSTER),
    }
)


# Registered here, not by its module, so that importing a module never changes the app.
app.command(cls=Command)(handle_errors(inspect))
app.command(cls=Command)(handle_errors(mix))


def for_argv(argv: list[str]) -> typer.Typer:
    """``app`` with only the command ``argv`` runs, when it names one after nothing but
    ``-v``: Typer builds every command's click object from its signature on each start (49 M
    instructions for the other four, 5% of a one-line run), and a run uses one. Anything else (the group's
    --help or --version, an unknown name and its suggestions) gets every command."""
    for arg in argv:
        if arg in ("-v", "--verbose"):
            continue
        named = [c for c in app.registered_commands if _name(c) == arg]
        if not named:
            break
        only = copy.copy(app)
        only.registered_commands = named
        return only
    return app


def _name(info: typer.models.CommandInfo) -> str:
    return info.name or getattr(info.callback, "__name__", "").replace("_", "-")


def main() -> None:
    """Console-script entry point: usage errors are one line too, in embedcli's words."""
    signal.signal(signal.SIGTERM, on_sigterm)
    state["verbose"] = debug_requested()
    COMMITTED.clear()
    UNFINISHED.clear()
    try:
        code = for_argv(sys.argv[1:])(prog_name="embedcli", standalone_mode=False)
    except CLICK_ERROR as exc:
        raise SystemExit(usage_error(exc)) from None
    except CLICK_ABORT:  # Ctrl-C before a command started
        err_console().print("Interrupted.", highlight=False)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
