"""The command line's shared options: types, help text and help panels.

Choices and defaults come from :mod:`embedcli.options` (document formats from
:mod:`embedcli.documents`, token formats from :mod:`embedcli.formats`), so the CLI cannot drift
from the library: a new ``--pos`` kind appears here by being added there.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand

from embedcli import options as o
from embedcli.documents import FORMATS
from embedcli.formats import TOKEN_FORMATS

T = TypeVar("T", bound=str)

FLOAT_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16"}


def choice(values: tuple[str, ...], aliases: dict[str, str] | None = None):
    """An option callback: one of ``values`` (or an alias of one); anything else is a usage
    error in embedcli's words, listing the choices."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        value = (aliases or {}).get(value.lower(), value)
        if value not in values:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(values)}")
        return value

    return check


def shown(values: tuple[str, ...]) -> str:
    """The metavar that lists the choices: ``[a|b|c]``."""
    return "[" + "|".join(values) + "]"


class Command(TyperCommand):
    """A command whose help shows no type for flags and arguments.

    Typer labels every parameter with its Python type (``<bool>``, ``<list[str]>``); a flag takes
    no value and an argument's help says what it takes, so the label only misleads
    (``--shuffle <bool>`` reads as if it wanted ``--shuffle true``).
    """

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) or isinstance(param, TyperArgument):
                param.display_type_rich = _no_type
        return params


def _no_type(ctx) -> None:
    return None


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
ValFraction = Annotated[
    float | None,
    typer.Option(
        "--val-fraction",
        min=0.0,
        max=1.0,
        metavar="F",
        rich_help_panel=OUT,
        help="Send a fraction F of the documents to a validation file beside -o (train.bin -> "
        "val.bin; else NAME.val.SUFFIX), chosen by --seed, the same in every run.",
    ),
]
SplitSeed = Annotated[
    int,
    typer.Option("--seed", metavar="INT", rich_help_panel=OUT, help="Seed for --val-fraction."),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        rich_help_panel=OUT,
        help="Print the plan (inputs, shapes, files, bytes) and write nothing.",
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", rich_help_panel=OUT, help="Show tracebacks (also EMBEDCLI_DEBUG=1)."
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
        metavar="NAME",
        rich_help_panel=TOK,
        help="tiktoken encoding: gpt2 (bundled, offline), r50k_base (bundled), p50k_base, "
        "cl100k_base, o200k_base (downloaded once, cached in TIKTOKEN_CACHE_DIR).",
    ),
]
SpecialOpt = Annotated[
    str | None,
    typer.Option(
        "--special",
        metavar=shown(o.SPECIAL_POLICIES),
        callback=choice(o.SPECIAL_POLICIES),
        rich_help_panel=TOK,
        help="A literal <|endoftext|> in the text: the special token (as the reference), plain "
        "text (as the trainers' prepare scripts), or an error \\[default: text for --to "
        "nanogpt, llmc and megatron; special otherwise].",
        show_default=False,
    ),
]
TextKey = Annotated[
    str,
    typer.Option(
        "--text-key",
        metavar="KEY",
        rich_help_panel=TOK,
        help="Key holding the text in .jsonl lines.",
    ),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        metavar=shown(FORMATS),
        callback=choice(FORMATS),
        rich_help_panel=TOK,
        help="How to read inputs: by suffix (auto; stdin is text), or all as one format.",
    ),
]
Include = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        metavar="GLOB",
        rich_help_panel=TOK,
        help="Which files a directory gives (repeatable; e.g. '*.py' or 'docs/**'), instead of "
        "the text suffixes. The summary lists the files skipped.",
        show_default=False,
    ),
]
SplitOnEot = Annotated[
    bool,
    typer.Option(
        "--split-on-eot",
        rich_help_panel=TOK,
        help="A literal <|endoftext|> in the text ends a document (TinyStories' separator): "
        "it becomes the boundary, and documents and doc_offsets count it.",
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        metavar=shown(o.BACKENDS),
        callback=choice(o.BACKENDS),
        rich_help_panel=TOK,
        help="Encoder: auto uses gigatoken (embedcli\\[fast]) when installed and it passes a "
        "self-check against tiktoken, else tiktoken. The ids are the same.",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        metavar="N",
        rich_help_panel=TOK,
        help="Encoding workers: processes for tiktoken (threads where forking is unsafe), "
        "threads for gigatoken \\[default: all cores].",
    ),
]
ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar=shown(tuple(TOKEN_FORMATS)),
        callback=choice(tuple(TOKEN_FORMATS)),
        rich_help_panel=OUT,
        help="Token file format [default: by the -o name (.npy, .safetensors), else "
        "safetensors]: "
        + "; ".join(f"{f.name}: {f.summary}" for f in TOKEN_FORMATS.values())
        + ".",
        show_default=False,
    ),
]
EotOpt = Annotated[
    str | None,
    typer.Option(
        "--eot",
        metavar=shown(o.EOT_MODES),
        callback=choice(o.EOT_MODES),
        rich_help_panel=TOK,
        help="Where <|endoftext|> goes: between documents, after or before each, or none "
        "\\[default: the --to format's own: "
        + ", ".join(f"{f.default_eot} for {f.name}" for f in TOKEN_FORMATS.values())
        + "].",
        show_default=False,
    ),
]
ShardTokens = Annotated[
    int | None,
    typer.Option(
        "--shard-tokens",
        min=1,
        max=2**31 - 1,
        metavar="N",
        rich_help_panel=OUT,
        help="--to llmc: ids per file \\[default: 100,000,000, as llm.c's scripts].",
    ),
]
MaxLength = Annotated[
    int | None,
    typer.Option(
        "--max-length",
        "-T",
        min=1,
        metavar="N",
        rich_help_panel=WIN,
        help=f"Tokens per window \\[default: {o.DEFAULT_MAX_LENGTH}].",
    ),
]
Stride = Annotated[
    int | None,
    typer.Option(
        "--stride",
        min=1,
        metavar="N",
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
        metavar="N",
        rich_help_panel=WIN,
        help="Windows per batch; a final partial batch is dropped unless --keep-last "
        f"\\[default: {o.DEFAULT_BATCH_SIZE}].",
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
        "--num-batches",
        min=1,
        metavar="K",
        rich_help_panel=WIN,
        help="Keep only the first K batches.",
    ),
]
Shuffle = Annotated[
    bool,
    typer.Option("--shuffle", rich_help_panel=WIN, help="Permute the windows (seeded by --seed)."),
]
Batched = Annotated[
    bool,
    typer.Option(
        "--batched",
        rich_help_panel=WIN,
        help="Store (K, B, T[, dim]) batches instead of the flat (N, T[, dim]) rows: the same "
        "bytes, as x.view(-1, B, T, dim) would give. Needs --drop-last.",
    ),
]
CrossDocs = Annotated[
    bool,
    typer.Option(
        "--cross-docs/--no-cross-docs",
        rich_help_panel=WIN,
        help="Let windows span <|endoftext|> document boundaries, or keep each inside one.",
    ),
]
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
        "--key",
        metavar="NAME",
        rich_help_panel=WIN,
        help="1-D id tensor to read from a safetensors input.",
    ),
]


def parse_size(value: str | None) -> int | None:
    """``--max-shard-size`` in bytes (a usage error names the accepted forms)."""
    if value is None:
        return None
    from embedcli.units import parse_size as parse

    try:
        size = parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if size < 1:
        raise typer.BadParameter("must be positive")
    return size


def member(value: str, choices: tuple[T, ...]) -> T:
    """``value`` as the member of ``choices`` it equals (the option's callback has already
    refused anything else): a checked ``str`` becomes the policy's ``Literal`` type."""
    for item in choices:
        if item == value:
            return item
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")


def tokenize_options(
    *,
    encoding: str,
    special: str | None,
    backend: str,
    text_key: str,
    fmt: str,
    workers: int | None,
    include: list[str] | None,
    split_on_eot: bool,
    eot: str | None = None,
) -> o.TokenizeOptions:
    """The tokenizing options: tokenize, batch and embed take the same ones (``--eot`` is
    tokenize's alone)."""
    return o.TokenizeOptions(
        encoding=encoding,
        special=None if special is None else member(special, o.SPECIAL_POLICIES),
        backend=member(backend, o.BACKENDS),
        text_key=text_key,
        format=fmt,
        workers=workers,
        eot=None if eot is None else member(eot, o.EOT_MODES),
        include=tuple(include or ()),
        split_on_eot=split_on_eot,
    )


# --------------------------------------------------------------------------- command options


ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        rich_help_panel=TOK,
        help="Process only shard I of N (from 0): a fixed 1/N of the documents, written beside "
        "the -o name as its part I+1 of N, plus a manifest listing all N parts.",
    ),
]

ShuffleSeedOpt = Annotated[
    int, typer.Option("--seed", metavar="INT", rich_help_panel=WIN, help="Seed for --shuffle.")
]

IdsDtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        metavar=shown(o.OUTPUT_DTYPES),
        callback=choice(o.OUTPUT_DTYPES),
        rich_help_panel=OUT,
        help="Integer type of inputs/targets.",
    ),
]
