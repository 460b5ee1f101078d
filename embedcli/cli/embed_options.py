"""The options of ``embed``'s tables and device (the shared ones are in ``cli_options.py``)."""

from __future__ import annotations

from typing import Annotated

import typer

from embedcli import options as o
from embedcli.cli.options import EMB, FLOAT_ALIASES, OUT, choice, listed

MORE_EMB = "More embedding"  # table sizes and names in --weights: shown by --help-all

DimOpt = Annotated[
    int | None,
    typer.Option(
        "--dim",
        "-d",
        min=1,
        metavar="N",
        rich_help_panel=EMB,
        help=f"Embedding size \\[default: {o.DEFAULT_DIM}, or the loaded table's].",
    ),
]

VocabSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--vocab-size",
        min=1,
        metavar="N",
        rich_help_panel=MORE_EMB,
        help="Token table rows \\[default: the encoding's vocab size].",
    ),
]

ContextLengthOpt = Annotated[
    int | None,
    typer.Option(
        "--context-length",
        min=1,
        metavar="N",
        rich_help_panel=MORE_EMB,
        help="Positional table rows \\[default: max-length].",
    ),
]

TableSeedOpt = Annotated[
    int,
    typer.Option(
        "--seed",
        metavar="INT",
        rich_help_panel=EMB,
        help="Seed for the random tables (and for --shuffle).",
    ),
]

PosOpt = Annotated[
    str | None,
    typer.Option(
        "--pos",
        metavar="KIND",
        callback=choice(o.POS_KINDS),
        rich_help_panel=EMB,
        help=f"Positional embeddings: {listed(o.POS_KINDS)} \\[default: learned; none for a "
        "--weights checkpoint without a position table (RoPE models)].",
        show_default=False,
    ),
]

DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="DEVICE",
        rich_help_panel=EMB,
        help=f"{', '.join(o.DEVICES[:-1])} or auto (the best available).",
    ),
]

FloatDtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        metavar="DTYPE",
        callback=choice(o.FLOAT_DTYPES, FLOAT_ALIASES),
        rich_help_panel=EMB,
        help=f"Dtype of tables and output: {listed(o.FLOAT_DTYPES)} (or fp32, fp16, bf16) "
        "\\[default: the --weights table's, else float32].",
        show_default=False,
    ),
]

WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        metavar="FILE",
        rich_help_panel=EMB,
        help="Tables from a safetensors file (GPT-2's wte/wpe, embedcli's...), not random.",
    ),
]

TokenKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--token-key",
        metavar="NAME",
        rich_help_panel=MORE_EMB,
        help="Tensor name of the token table in --weights.",
    ),
]

PosKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--pos-key",
        metavar="NAME",
        rich_help_panel=MORE_EMB,
        help="Tensor name of the positional table in --weights.",
    ),
]

SaveWeightsOpt = Annotated[
    bool,
    typer.Option(
        "--save-weights/--no-weights",
        rich_help_panel=OUT,
        help="Store the tables next to the embeddings.",
    ),
]
