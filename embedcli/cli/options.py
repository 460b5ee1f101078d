"""The command line's shared options: types, help text and help panels.

Choices and defaults come from :mod:`embedcli.options` (document formats from
:mod:`embedcli.documents`, token formats from :mod:`embedcli.formats`), so the CLI cannot drift
from the library: a new ``--pos`` kind appears here by being added there.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

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


def listed(values: tuple[str, ...]) -> str:
    """Choices as a help text names them: ``a, b or c``. (Listed in the help, not in the
    metavar column, which an 80-column terminal would break mid-word.)"""
    return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]


# Panels a command shows only with --help-all: options that matter for few runs of it.
ADVANCED_PANELS: dict[str, tuple[str, ...]] = {}


class Command(TyperCommand):
    """A command whose help shows no type for flags and arguments, and leaves its rarely used
    panels (:data:`ADVANCED_PANELS`) to ``--help-all``.

    Typer labels every parameter with its Python type (``<bool>``, ``<list[str]>``); a flag takes
    no value and an argument's help says what it takes, so the label only misleads
    (``--shuffle <bool>`` reads as if it wanted ``--shuffle true``).
    """

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) or isinstance(param, TyperArgument):
                param.display_type_rich = _no_type
            # "N [x>=1]" crowds an 80-column page; a value out of range is refused in words.
            param._get_number_range_help_str = _no_range
        return params

    def format_help(self, ctx, formatter) -> None:
        advanced = () if ctx.meta.get("help_all") else ADVANCED_PANELS.get(self.name or "", ())
        hidden = [
            p
            for p in self.params
            if isinstance(p, TyperOption) and p.rich_help_panel in advanced and not p.hidden
        ]
        for param in hidden:
            param.hidden = True
        try:
            super().format_help(ctx, formatter)
        finally:
            for param in hidden:
                param.hidden = False
        if advanced:
            import textwrap

            line = f"More options ({', '.join(advanced)}): --help-all"
            formatter.write("".join(f" {part}\n" for part in textwrap.wrap(line, 79)))


class Group(TyperGroup):
    """The top-level group, without type labels on its flags either."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False):
                param.display_type_rich = _no_type
        return params


def _help_all(ctx: typer.Context, value: bool) -> None:
    if value:
        ctx.meta["help_all"] = True
        typer.echo(ctx.get_help(), nl=False)
        raise typer.Exit()


HelpAll = Annotated[
    bool,
    typer.Option(
        "--help-all",
        is_eager=True,
        expose_value=False,
        callback=_help_all,
        help="Show every option, the rarely used panels too.",
    ),
]


def _no_type(ctx) -> None:
    return None


def _no_range() -> None:
    return None


def path(value: str) -> str:
    """An input as given: a path, a directory, or ``-``. Typer's help names an argument's type
    after its parser (``<path>``; without one, typer 0.28 shows ``<str>``)."""
    return value


TOK, WIN, EMB, OUT = "Tokenizing", "Windowing", "Embedding", "Output"
MORE = "More tokenizing"  # rarely needed: shown by --help-all
BLEND, CLUSTER = "Trainer blend", "Cluster"  # mix's panels that wait for --help-all
MORE_OUT = "More output"
PROVENANCE = "Provenance"  # tokenize's, waiting for --help-all

TextInputs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="INPUTS",
        parser=path,
        help="Text: .txt, .jsonl, .parquet, .arrow (.gz/.zst too) files, directories, or - for "
        "stdin (the default).",
        show_default=False,
    ),
]
Inputs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="INPUTS",
        parser=path,
        help="Token files (any --to format), a shard manifest, or text (as tokenize reads it); "
        "- for stdin (the default).",
        show_default=False,
    ),
]
EmbedInputs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="INPUTS",
        parser=path,
        help="Windows files, token files (any --to format), a shard manifest, or text; - for "
        "stdin (the default).",
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
        help="Output file; - for stdout. Default: INPUT.<stage>.safetensors here.",
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
        help="A fraction F of the documents to a validation file beside -o (train.bin -> "
        "val.bin), chosen by --seed.",
    ),
]
SplitSeed = Annotated[
    int,
    typer.Option("--seed", metavar="INT", rich_help_panel=OUT, help="Seed for --val-fraction."),
]
ProvenanceOpt = Annotated[
    bool,
    typer.Option(
        "--provenance",
        rich_help_panel=PROVENANCE,
        help="Also write OUT.provenance.safetensors: each document's text file and line (a "
        "Parquet row), 12 bytes a document; inspect --doc and mix show it.",
    ),
]
IdKey = Annotated[
    str | None,
    typer.Option(
        "--id-key",
        metavar="KEY",
        rich_help_panel=PROVENANCE,
        help="With --provenance (implied): each document's id, the jsonl key or Parquet/Arrow "
        "column KEY, read again after the text.",
        show_default=False,
    ),
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
        help="tiktoken encoding: gpt2 (bundled), r50k_base, cl100k_base, o200k_base.",
    ),
]
SpecialOpt = Annotated[
    str | None,
    typer.Option(
        "--special",
        metavar="POLICY",
        callback=choice(o.SPECIAL_POLICIES),
        rich_help_panel=TOK,
        help="A literal <|endoftext|> in the text is: special (the token, as the reference), "
        "text (as the trainers' prepare scripts) or error \\[default: text for nanogpt, llmc, "
        "megatron; else special].",
        show_default=False,
    ),
]
TextKey = Annotated[
    str,
    typer.Option(
        "--text-key",
        metavar="KEY",
        rich_help_panel=TOK,
        help="The .jsonl key or Parquet/Arrow column holding the text.",
    ),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="FORMAT",
        callback=choice(FORMATS),
        rich_help_panel=MORE,
        help=f"Read inputs as {listed(FORMATS)}: auto goes by suffix (stdin is text).",
    ),
]
# batch and embed also read a token stream as one of the trainers' formats (stdin: nanoGPT's
# raw ids have no magic number; llm.c, npy and safetensors are sniffed)
INPUT_FORMATS = (*FORMATS, *o.TOKEN_INPUT_FORMATS)
InputFormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="FORMAT",
        callback=choice(INPUT_FORMATS),
        rich_help_panel=MORE,
        help=f"Read inputs as {listed(INPUT_FORMATS)}: auto goes by suffix, stdin by magic "
        "number (llm.c, npy, safetensors), else text.",
    ),
]
Include = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        metavar="GLOB",
        rich_help_panel=MORE,
        help="Files a directory gives (repeatable: '*.py', 'docs/**') instead of text suffixes.",
        show_default=False,
    ),
]
SplitOnEot = Annotated[
    bool,
    typer.Option(
        "--split-on-eot",
        rich_help_panel=MORE,
        help="A literal document marker in the text ends a document: <|endoftext|> "
        "(TinyStories' separator), or --tokenizer's EOS (its BOS with --eot before). It becomes "
        "the boundary, and documents and doc_offsets count it.",
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        metavar="ENGINE",
        callback=choice(o.BACKENDS),
        rich_help_panel=MORE,
        help=f"Engine, {listed(o.BACKENDS)}: auto takes gigatoken (embedcli\\[fast]) where it "
        "passes a self-check against tiktoken. The ids are the same.",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        metavar="N",
        rich_help_panel=MORE,
        help="Encoding workers \\[default: all cores].",
    ),
]
ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="FORMAT",
        callback=choice(tuple(TOKEN_FORMATS)),
        rich_help_panel=OUT,
        help=f"Token file: {listed(tuple(TOKEN_FORMATS))} \\[default: as the -o name says "
        "(.npy, .safetensors), else safetensors]. See the README's Formats.",
        show_default=False,
    ),
]


def _trainers_eot() -> str:
    """Where each --to format's trainers expect the document marker, from the formats
    themselves: ``after for nanogpt, megatron; before for llmc; else between``."""
    by_place: dict[str, list[str]] = {}
    for name, fmt in TOKEN_FORMATS.items():
        by_place.setdefault(fmt.default_eot, []).append(name)
    named = [f"{place} for {', '.join(names)}" for place, names in by_place.items()]
    return "; ".join(n for n in named if not n.startswith("between ")) + "; else between"


def eot_option(panel: str) -> typer.models.OptionInfo:
    """``--eot``, tokenize's and mix's: one help text, in each command's own panel."""
    return typer.Option(
        "--eot",
        metavar="WHERE",
        callback=choice(o.EOT_MODES),
        rich_help_panel=panel,
        help="Where the document marker (<|endoftext|>, or another tokenizer's own) goes: "
        f"{listed(o.EOT_MODES)} \\[default: the --to format's trainer's: {_trainers_eot()}].",
        show_default=False,
    )


EotOpt = Annotated[str | None, eot_option(TOK)]


def shard_tokens_option(panel: str) -> typer.models.OptionInfo:
    """``--shard-tokens``, tokenize's and mix's: one help text, in each command's own panel."""
    return typer.Option(
        "--shard-tokens",
        min=1,
        max=2**31 - 1,
        metavar="N",
        rich_help_panel=panel,
        help="--to llmc: ids per file \\[default: 100,000,000, as llm.c's scripts].",
    )


ShardTokens = Annotated[int | None, shard_tokens_option(OUT)]
MaxShardSize = Annotated[
    str | None,
    typer.Option(
        "--max-shard-size",
        metavar="SIZE",
        rich_help_panel=OUT,
        help="Split the output into files of at most SIZE (e.g. 2GB), plus an index.",
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
