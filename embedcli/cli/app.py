"""The ``embedcli`` command: thin commands that take their options as groups, call a stage,
render.

The option groups live in ``option_groups.py`` (the options themselves in ``options.py`` and
its neighbours), the translation of errors into one line and an exit status in ``errors.py``,
all rendering in ``render.py``; ``mix`` and ``inspect`` have modules of their own.
"""

from __future__ import annotations

import copy
import signal
import sys
from typing import Annotated, Any

import typer

from embedcli.cli.embed_options import MORE_EMB
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
from embedcli.cli.groups import grouped, grouped_later
from embedcli.cli.option_groups import (
    BatchWindowing,
    Debugging,
    Embedding,
    Planning,
    Splitting,
    TokenFile,
    Windowing,
)
from embedcli.cli.options import (
    ADVANCED_PANELS,
    BLEND,
    CLUSTER,
    MORE,
    MORE_OUT,
    PROVENANCE,
    TOK,
    Command,
    EmbedInputs,
    Group,
    Inputs,
    Output,
    TextInputs,
)
from embedcli.cli.session import announcer, inputs_or_stdin, progress_factory, show_result
from embedcli.cli.storage_options import STORAGE
from embedcli.cli.tokenizer_options import StreamTokenizing, Tokenizing
from embedcli.stages.results import PlanResult, StageResult
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


# --------------------------------------------------------------------------- commands


@app.command(cls=Command)
@grouped
@handle_errors
def tokenize(
    ctx: typer.Context,
    inputs: TextInputs = None,
    output: Output = None,
    *,
    tok: Tokenizing,
    out: TokenFile,
    run: Planning,
    debug: Debugging,
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
    from embedcli.formats import default_token_output, format_for
    from embedcli.stages.tokenize import plan_tokenize, run_tokenize

    token_format = format_for(out.to, output)  # refuses an -o name that says another format
    warn_unused(ctx, run.quiet, out.unused(token_format.name))
    inputs = inputs_or_stdin(inputs)
    args = (inputs, output or default_token_output(inputs, token_format), tok.options(out.eot))
    common = {"no_clobber": run.no_clobber, "shard": out.shards(), "to": token_format.name}
    result: StageResult | PlanResult
    if run.dry_run:
        result = plan_tokenize(*args, **common)
    else:
        result = run_tokenize(
            *args, **common, progress=progress_factory(run.quiet), **out.written()
        )
    show_result(result, run.quiet)


@app.command(cls=Command)
@grouped
@handle_errors
def batch(
    ctx: typer.Context,
    inputs: Inputs = None,
    output: Output = None,
    *,
    windows: BatchWindowing,
    tok: StreamTokenizing,
    split: Splitting,
    run: Planning,
    debug: Debugging,
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

    warn_unused(ctx, run.quiet, windows.unused())
    inputs = inputs_or_stdin(inputs)
    args = (inputs, output or default_output(inputs, "windows"), windows.batch_options())
    common = run.kwargs(windows.key) | {"max_shard_size": split.bytes()}
    result: StageResult | PlanResult
    if run.dry_run:
        result = plan_batch(*args, tok.options(), **common)
    else:
        result = run_batch(*args, tok.options(), **common, notify=announcer(run.quiet))
    show_result(result, run.quiet)


@app.command(cls=Command)
@grouped
@handle_errors
def embed(
    ctx: typer.Context,
    inputs: EmbedInputs = None,
    output: Output = None,
    *,
    tables: Embedding,
    windows: Windowing,
    tok: StreamTokenizing,
    split: Splitting,
    run: Planning,
    debug: Debugging,
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

    warn_unused(ctx, run.quiet, tables.unused())
    inputs = inputs_or_stdin(inputs)
    output = output or default_output(inputs, "embeddings")
    args = (inputs, output, tables.options(split.bytes()), windows.options(seed=tables.seed))
    result: StageResult | PlanResult
    if run.dry_run:
        result = plan_embed(*args, tok.options(), **run.kwargs(windows.key))
    else:
        result = run_embed(
            *args, tok.options(), **run.kwargs(windows.key), notify=announcer(run.quiet)
        )
    show_result(result, run.quiet)


# batch and embed tokenize only when given text: that panel waits for --help-all.
ADVANCED_PANELS.update(
    {
        "tokenize": (MORE, PROVENANCE, STORAGE),
        "batch": (TOK, MORE, STORAGE),
        "embed": (MORE_EMB, TOK, MORE, STORAGE),
        "mix": (BLEND, MORE_OUT, CLUSTER),
    }
)


def _inspect() -> Any:
    from embedcli.cli.inspect_command import inspect

    return handle_errors(inspect)


def _mix() -> Any:
    from embedcli.cli.mix_command import mix

    return handle_errors(mix)


# Registered here, not by their modules, so that importing a module never changes the app;
# their modules load when Typer builds the command (a run of tokenize never imports them).
app.command(cls=Command)(grouped_later("inspect", _inspect))
app.command(cls=Command)(grouped_later("mix", _mix))


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
