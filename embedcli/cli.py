"""The ``embedcli`` command: four thin commands that parse options, call a stage, render.

Errors a user can fix are one line on stderr (``Error: ...``) and a non-zero exit: 1 for data
and runtime errors, 2 for usage errors, 130 when interrupted (143 on SIGTERM). ``--verbose`` or
``EMBEDCLI_DEBUG=1`` shows the traceback instead, for bug reports.
"""

from __future__ import annotations

import enum
import errno
import functools
import os
import signal
import sys
from typing import Annotated

import typer
from rich.console import Console

from . import __version__
from .errors import EmbedcliError

err_console = Console(stderr=True)
_state = {"verbose": os.environ.get("EMBEDCLI_DEBUG", "") not in ("", "0")}

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


# click's ClickException, wherever this Typer keeps click (vendored since 0.20-ish, or click).
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]Error:[/] {_escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    from .summary import printable

    return escape(printable(text))


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so exit-time flushes stay silent."""
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())


def handle_errors(fn):
    """Turn exceptions into one line on stderr and the documented exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, _CLICK_ERROR):  # click reports usage errors itself (exit 2)
            raise
        except EmbedcliError as exc:
            if _state["verbose"]:
                raise
            raise _fail(str(exc), exc.exit_code) from None
        except Terminated:
            err_console.print("Terminated.", highlight=False)
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted.", highlight=False)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(141) from None  # 128 + SIGPIPE, what a shell reports for `cmd | head`
        except OSError as exc:
            if _state["verbose"]:
                raise
            if exc.errno == errno.EPIPE:
                _quiet_stdout()
                raise typer.Exit(141) from None
            where = f"{exc.filename}: " if exc.filename else ""
            raise _fail(f"{where}{exc.strerror or exc}", 1) from None
        except MemoryError:
            raise _fail("out of memory; try a smaller --dim, --num-batches or input", 1) from None
        except Exception as exc:
            if _state["verbose"]:
                raise
            raise _fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(rerun with EMBEDCLI_DEBUG=1 for the traceback and report it)",
                1,
            ) from None

    return wrapper


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
        bool, typer.Option("--verbose", help="Show tracebacks (also EMBEDCLI_DEBUG=1).")
    ] = False,
) -> None:
    if verbose:
        _state["verbose"] = True


# --------------------------------------------------------------------------- shared options


class Special(str, enum.Enum):
    special = "special"
    text = "text"
    error = "error"


class Format(str, enum.Enum):
    auto = "auto"
    text = "text"
    jsonl = "jsonl"


class IdsDtype(str, enum.Enum):
    int64 = "int64"
    int32 = "int32"


class Pos(str, enum.Enum):
    learned = "learned"
    sinusoidal = "sinusoidal"
    none = "none"


class FloatDtype(str, enum.Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


TOK, WIN, EMB, OUT = "Tokenizing", "Windowing", "Embedding", "Output"

Inputs = Annotated[
    list[str] | None,
    typer.Argument(
        help="Text files (.txt, .jsonl, .gz, .zst), directories, a token file, or - for stdin "
        "(the default).",
        show_default=False,
    ),
]
Output = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        rich_help_panel=OUT,
        help="Output file; - writes to stdout (not a terminal). "
        "Default: INPUT.<stage>.safetensors in the current directory.",
    ),
]
NoClobber = Annotated[
    bool,
    typer.Option("--no-clobber", rich_help_panel=OUT, help="Refuse to replace an existing output."),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", rich_help_panel=OUT, help="No summary or progress on stderr."),
]
EncodingOpt = Annotated[
    str,
    typer.Option(
        "--encoding",
        rich_help_panel=TOK,
        help="tiktoken encoding: gpt2 (bundled, offline), r50k_base (bundled), p50k_base, "
        "cl100k_base, o200k_base (downloaded once, cached in TIKTOKEN_CACHE_DIR).",
    ),
]
SpecialOpt = Annotated[
    Special,
    typer.Option(
        "--special",
        rich_help_panel=TOK,
        help="A literal <|endoftext|> in the text: the special token (as the reference), plain "
        "text, or an error.",
    ),
]
TextKey = Annotated[
    str,
    typer.Option("--text-key", rich_help_panel=TOK, help="Key holding the text in .jsonl lines."),
]
FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        rich_help_panel=TOK,
        help="How to read inputs: by suffix (auto; stdin is text), all text, or all jsonl.",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, rich_help_panel=TOK, help="Encoding threads \\[default: all cores]."
    ),
]
MaxLength = Annotated[
    int | None,
    typer.Option(
        "--max-length", "-T", min=1, rich_help_panel=WIN, help="Tokens per window \\[default: 256]."
    ),
]
Stride = Annotated[
    int | None,
    typer.Option(
        "--stride",
        min=1,
        rich_help_panel=WIN,
        help="Step between window starts \\[default: max-length].",
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        "-B",
        min=1,
        rich_help_panel=WIN,
        help="Windows per batch; a final partial batch is dropped unless --keep-last \\[default: 1].",
    ),
]
DropLast = Annotated[
    bool,
    typer.Option(
        "--drop-last/--keep-last",
        rich_help_panel=WIN,
        help="Drop a final partial batch (as the reference DataLoader) or keep it.",
    ),
]
NumBatches = Annotated[
    int | None,
    typer.Option(
        "--num-batches", min=1, rich_help_panel=WIN, help="Keep only the first K batches."
    ),
]
Shuffle = Annotated[
    bool,
    typer.Option("--shuffle", rich_help_panel=WIN, help="Permute the windows (seeded by --seed)."),
]
CrossDocs = Annotated[
    bool,
    typer.Option(
        "--cross-docs/--no-cross-docs",
        rich_help_panel=WIN,
        help="Let windows span <|endoftext|> document boundaries, or keep each inside one.",
    ),
]


def _size(value: str | None) -> int | None:
    if value is None:
        return None
    from .units import parse_size

    try:
        size = parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if size < 1:
        raise typer.BadParameter("must be positive")
    return size


MaxShardSize = Annotated[
    str | None,
    typer.Option(
        "--max-shard-size",
        metavar="SIZE",
        rich_help_panel=OUT,
        help="Split the output into files of at most SIZE (e.g. 2GB): NAME-00001-of-0000K."
        "safetensors plus NAME.safetensors.index.json.",
    ),
]
Key = Annotated[
    str,
    typer.Option(
        "--key", rich_help_panel=WIN, help="1-D id tensor to read from a safetensors input."
    ),
]


def _token_options(encoding, special, text_key, fmt, workers):
    from .stages import TokenizeOptions

    return TokenizeOptions(encoding, special.value, text_key, fmt.value, workers)


def _progress_enabled(quiet: bool) -> bool:
    # Under torchrun every process shares the terminal: only rank 0 draws.
    return not quiet and err_console.is_terminal and os.environ.get("RANK", "0") == "0"


def _show(result, quiet: bool) -> None:
    if not quiet and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        from .summary import render_stage

        render_stage(err_console, result)


# --------------------------------------------------------------------------- commands


@app.command()
@handle_errors
def tokenize(
    inputs: Inputs = None,
    output: Output = None,
    encoding: EncodingOpt = "gpt2",
    special: SpecialOpt = Special.special,
    text_key: TextKey = "text",
    fmt: FormatOpt = Format.auto,
    workers: Workers = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            rich_help_panel=TOK,
            help="Process only shard I of N (from 0): a fixed 1/N of the documents, written as "
            "NAME-0000<I+1>-of-0000<N>.tokens.safetensors plus NAME.tokens.manifest.json.",
        ),
    ] = None,
    no_clobber: NoClobber = False,
    quiet: Quiet = False,
) -> None:
    """BPE-encode text into a token file: ids, with <|endoftext|> between documents.

    A .txt file is one document, a .jsonl file one document per line (--text-key), a directory its text files in sorted order; .gz and .zst are decompressed on the fly. Output: ids (int32) and doc_offsets (int64).

    [bold]Examples[/]

      embedcli tokenize corpus.txt       [dim]# writes corpus.tokens.safetensors[/]

      embedcli tokenize docs/ -o docs.tokens.safetensors

      cat notes.txt | embedcli tokenize -o - | embedcli batch - -o w.safetensors

      embedcli tokenize data.jsonl.gz --text-key body --special error

      embedcli tokenize corpus/ -o corpus.tokens.safetensors --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
    """
    from .stages import default_output, input_size, run_tokenize
    from .summary import progress_bar
    from .text import parse_shard

    inputs = inputs or ["-"]
    output = output or default_output(inputs, "tokens")
    opts = _token_options(encoding, special, text_key, fmt, workers)
    total = input_size(inputs, opts)
    enabled = _progress_enabled(quiet) and total > (1 << 20)
    with progress_bar(err_console, "tokenize", total, enabled=enabled) as advance:
        result = run_tokenize(
            inputs,
            output,
            opts,
            no_clobber=no_clobber,
            on_progress=advance,
            shard=parse_shard(shard) if shard else None,
        )
    _show(result, quiet)


@app.command()
@handle_errors
def batch(
    inputs: Inputs = None,
    output: Output = None,
    max_length: MaxLength = None,
    stride: Stride = None,
    batch_size: BatchSize = None,
    drop_last: DropLast = True,
    num_batches: NumBatches = None,
    shuffle: Shuffle = False,
    seed: Annotated[
        int, typer.Option("--seed", rich_help_panel=WIN, help="Seed for --shuffle.")
    ] = 123,
    cross_docs: CrossDocs = True,
    dtype: Annotated[
        IdsDtype,
        typer.Option("--dtype", rich_help_panel=OUT, help="Integer type of inputs/targets."),
    ] = IdsDtype.int64,
    key: Key = "ids",
    encoding: EncodingOpt = "gpt2",
    special: SpecialOpt = Special.special,
    text_key: TextKey = "text",
    fmt: FormatOpt = Format.auto,
    workers: Workers = None,
    no_clobber: NoClobber = False,
    max_shard_size: MaxShardSize = None,
    quiet: Quiet = False,
) -> None:
    """Window token ids into (N, max-length) inputs and targets (inputs shifted by one).

    Windows start at 0, stride, 2*stride, ... while a window and its next-token target fit, exactly as the reference loop, and are grouped in batches of --batch-size. The input is a token file, any safetensors file with a 1-D integer tensor (--key), or text.

    [bold]Examples[/]

      embedcli batch corpus.tokens.safetensors -T 4 --stride 4 -B 8

      embedcli batch corpus.txt -T 256 --stride 128 --shuffle --seed 1

      embedcli batch corpus.tokens.safetensors -T 4 -B 8 --num-batches 1 -o first.safetensors
    """
    from .stages import WindowOptions, default_output, run_batch

    inputs = inputs or ["-"]
    output = output or default_output(inputs, "windows")
    wopts = WindowOptions(
        max_length,
        stride,
        batch_size,
        drop_last,
        num_batches,
        shuffle,
        seed,
        cross_docs,
        dtype.value,
    )
    result = run_batch(
        inputs,
        output,
        wopts,
        _token_options(encoding, special, text_key, fmt, workers),
        key=key,
        no_clobber=no_clobber,
        max_shard_size=_size(max_shard_size),
    )
    _show(result, quiet)


@app.command()
@handle_errors
def embed(
    inputs: Inputs = None,
    output: Output = None,
    dim: Annotated[
        int | None,
        typer.Option(
            "--dim",
            "-d",
            min=1,
            rich_help_panel=EMB,
            help="Embedding size \\[default: 256, or the loaded table's].",
        ),
    ] = None,
    vocab_size: Annotated[
        int | None,
        typer.Option(
            "--vocab-size",
            min=1,
            rich_help_panel=EMB,
            help="Token table rows \\[default: the encoding's vocab size].",
        ),
    ] = None,
    context_length: Annotated[
        int | None,
        typer.Option(
            "--context-length",
            min=1,
            rich_help_panel=EMB,
            help="Positional table rows \\[default: max-length].",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", rich_help_panel=EMB, help="Seed for the random tables (and for --shuffle)."
        ),
    ] = 123,
    pos: Annotated[
        Pos, typer.Option("--pos", rich_help_panel=EMB, help="Positional embeddings.")
    ] = Pos.learned,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            rich_help_panel=EMB,
            help="cpu, cuda, cuda:N, mps or auto (the best available).",
        ),
    ] = "cpu",
    dtype: Annotated[
        FloatDtype, typer.Option("--dtype", rich_help_panel=EMB, help="Dtype of tables and output.")
    ] = FloatDtype.float32,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            metavar="FILE",
            rich_help_panel=EMB,
            help="Load tables from a safetensors file (GPT-2's wte/wpe, "
            "embedcli's own, ...) instead of random ones.",
        ),
    ] = None,
    token_key: Annotated[
        str | None,
        typer.Option(
            "--token-key", rich_help_panel=EMB, help="Tensor name of the token table in --weights."
        ),
    ] = None,
    pos_key: Annotated[
        str | None,
        typer.Option(
            "--pos-key",
            rich_help_panel=EMB,
            help="Tensor name of the positional table in --weights.",
        ),
    ] = None,
    save_weights: Annotated[
        bool,
        typer.Option(
            "--save-weights/--no-weights",
            rich_help_panel=OUT,
            help="Store the tables next to the embeddings.",
        ),
    ] = True,
    max_length: MaxLength = None,
    stride: Stride = None,
    batch_size: BatchSize = None,
    drop_last: DropLast = True,
    num_batches: NumBatches = None,
    shuffle: Shuffle = False,
    cross_docs: CrossDocs = True,
    key: Key = "ids",
    encoding: EncodingOpt = "gpt2",
    special: SpecialOpt = Special.special,
    text_key: TextKey = "text",
    fmt: FormatOpt = Format.auto,
    workers: Workers = None,
    no_clobber: NoClobber = False,
    max_shard_size: MaxShardSize = None,
    quiet: Quiet = False,
) -> None:
    """Token plus positional embeddings (N, max-length, dim) for text, tokens or windows.

    Random tables are made as torch.manual_seed(SEED); nn.Embedding(vocab, dim); nn.Embedding(context, dim) would make them, on the CPU, then moved to --device. Windows are embedded in chunks and streamed to the output, so memory stays flat.

    [bold]Examples[/]

      embedcli embed corpus.txt --dim 256     [dim]# the whole pipeline[/]

      embedcli embed corpus.txt -T 4 --stride 4 -B 8 --dim 256 --seed 123

      embedcli embed corpus.windows.safetensors --device auto --dtype bfloat16

      embedcli embed corpus.txt -T 1024 --weights gpt2.safetensors
    """
    from .stages import EmbedOptions, WindowOptions, default_output, run_embed

    inputs = inputs or ["-"]
    output = output or default_output(inputs, "embeddings")
    eopts = EmbedOptions(
        dim,
        vocab_size,
        context_length,
        seed,
        pos.value,
        device,
        dtype.value,
        weights,
        token_key,
        pos_key,
        save_weights,
        _size(max_shard_size),
    )
    wopts = WindowOptions(
        max_length, stride, batch_size, drop_last, num_batches, shuffle, seed, cross_docs
    )
    enabled = _progress_enabled(quiet)
    with _WindowProgress(enabled) as on_windows:
        result = run_embed(
            inputs,
            output,
            eopts,
            wopts,
            _token_options(encoding, special, text_key, fmt, workers),
            key=key,
            no_clobber=no_clobber,
            on_windows=on_windows,
        )
    _show(result, quiet)


class _WindowProgress:
    """Starts a progress bar once the window count is known (big jobs only)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._cm = None

    def __enter__(self):
        return self.start

    def start(self, total: int):
        from .summary import progress_bar

        self._cm = progress_bar(
            err_console, "embed", total, enabled=self.enabled and total > 20000, unit="windows"
        )
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False


@app.command()
@handle_errors
def inspect(
    paths: Annotated[list[str], typer.Argument(help="safetensors files.", show_default=False)],
    stats: Annotated[
        bool,
        typer.Option(
            "--stats/--no-stats",
            help="Value statistics (--no-stats reads only the header: instant at any size).",
        ),
    ] = True,
    preview: Annotated[
        int,
        typer.Option(
            "--preview",
            "-n",
            min=0,
            metavar="N",
            help="Print the first N rows of each tensor (and decoded windows).",
        ),
    ] = 0,
    tensor: Annotated[
        str | None, typer.Option("--tensor", "-t", metavar="NAME", help="Only this tensor.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout (keys in the README).")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Compare two files: A B.")] = False,
) -> None:
    """Show any safetensors file: tensors, dtypes, shapes, sizes, statistics, metadata.

    [bold]Examples[/]

      embedcli inspect corpus.embeddings.safetensors

      embedcli inspect model.safetensors --no-stats     [dim]# header only: instant[/]

      embedcli inspect corpus.windows.safetensors --preview 2

      embedcli inspect a.safetensors b.safetensors --diff --json | jq .diff.identical
    """
    from .inspection import check_paths_for_diff, diff_files, dumps, inspect_file
    from .summary import render_diff, render_report

    console = Console(highlight=False)
    if diff:
        a, b = check_paths_for_diff(paths)
        report = diff_files(a, b)
        if as_json:
            typer.echo(dumps({"diff": report.to_json()}))
        else:
            render_diff(console, report)
        return
    reports = [inspect_file(p, stats=stats, preview=preview, tensor=tensor) for p in paths]
    if as_json:
        typer.echo(dumps({"files": [r.to_json() for r in reports]}))
        return
    for i, report in enumerate(reports):
        if i:
            console.print()
        render_report(console, report)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    app(prog_name="embedcli")
