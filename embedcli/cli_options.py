"""The command line's shared options: types, help text and help panels.

Choices and defaults come from :mod:`embedcli.options` (and the modules it re-exports), so the
CLI cannot drift from the library: a new ``--pos`` kind appears here by being added there.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperCommand

from . import options as o
from .outputs import TOKEN_FORMATS


def _choices(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A str Enum of ``values`` for Typer (which shows and checks the choices)."""
    return enum.Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


Special = _choices("Special", o.SPECIAL_POLICIES)
Format = _choices("Format", o.FORMATS)
IdsDtype = _choices("IdsDtype", o.OUTPUT_DTYPES)
Pos = _choices("Pos", o.POS_KINDS)
FloatDtype = _choices("FloatDtype", o.FLOAT_DTYPES)
To = _choices("To", tuple(TOKEN_FORMATS))
Eot = _choices("Eot", o.EOT_MODES)

# Defaults as enum members (Typer shows and checks them); the first choice is the default.
SPECIAL_DEFAULT = Special(o.SPECIAL_POLICIES[0])
FORMAT_DEFAULT = Format(o.FORMATS[0])
IDS_DTYPE_DEFAULT = IdsDtype(o.OUTPUT_DTYPES[0])
POS_DEFAULT = Pos(o.POS_KINDS[0])
FLOAT_DTYPE_DEFAULT = FloatDtype(o.FLOAT_DTYPES[0])
TO_DEFAULT = To("safetensors")


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
                param.display_type_rich = _no_type  # type: ignore[method-assign]
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
    typer.Option(
        "--text-key",
        metavar="KEY",
        rich_help_panel=TOK,
        help="Key holding the text in .jsonl lines.",
    ),
]
FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        rich_help_panel=TOK,
        help="How to read inputs: by suffix (auto; stdin is text), or all as one format.",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        metavar="N",
        rich_help_panel=TOK,
        help="Encoding processes (threads where forking is unsafe) \\[default: all cores].",
    ),
]
ToOpt = Annotated[
    To,
    typer.Option(
        "--to",
        rich_help_panel=OUT,
        help="Token file format: "
        + "; ".join(f"{f.name}: {f.summary}" for f in TOKEN_FORMATS.values())
        + ".",
    ),
]
EotOpt = Annotated[
    Eot | None,
    typer.Option(
        "--eot",
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
    from .units import parse_size as parse

    try:
        size = parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if size < 1:
        raise typer.BadParameter("must be positive")
    return size


def tokenize_options(
    encoding: str, special, text_key: str, fmt, workers, eot=None
) -> o.TokenizeOptions:
    return o.TokenizeOptions(
        encoding=encoding,
        special=special.value,
        text_key=text_key,
        format=fmt.value,
        workers=workers,
        eot=eot.value if eot is not None else None,
    )


def window_options(dtype=None, **given) -> o.WindowOptions:
    """The windowing options of ``batch`` and ``embed`` (``dtype`` is batch's alone)."""
    return o.WindowOptions(**given, **({"dtype": dtype.value} if dtype is not None else {}))


# --------------------------------------------------------------------------- inspect

InspectPaths = Annotated[
    list[str],
    typer.Argument(
        help="safetensors files, a split output's .index.json, or a trainer's token file "
        "(nanoGPT .bin, llm.c shards, a Megatron prefix, .npy).",
        show_default=False,
    ),
]

StatsOpt = Annotated[
    bool,
    typer.Option(
        "--stats/--no-stats",
        help="Statistics: values, histograms, corpus and windows (--no-stats reads only the "
        "header: instant at any size).",
    ),
]

PreviewOpt = Annotated[
    int,
    typer.Option(
        "--preview",
        "-n",
        min=0,
        metavar="N",
        help="Print the first N rows of each tensor (and decoded windows).",
    ),
]

TensorOpt = Annotated[
    str | None, typer.Option("--tensor", "-t", metavar="NAME", help="Only this tensor.")
]

JsonOpt = Annotated[
    bool, typer.Option("--json", help="One JSON document on stdout (keys in the README).")
]

TopOpt = Annotated[
    int,
    typer.Option("--top", min=0, metavar="K", help="Token files: the K most frequent tokens."),
]

NeighborsOpt = Annotated[
    str | None,
    typer.Option(
        "--neighbors",
        metavar="TEXT",
        help="The tokens nearest to TEXT's token (one token) in the file's token table, "
        "by cosine similarity.",
    ),
]

PlotOpt = Annotated[
    str | None,
    typer.Option(
        "--plot",
        metavar="FILE",
        help="Also draw the histograms into FILE (.png or .svg; needs matplotlib).",
    ),
]

DiffOpt = Annotated[
    bool,
    typer.Option(
        "--diff",
        help="Compare two files (or split outputs' .index.json): A B; with --tensor, only it.",
    ),
]
