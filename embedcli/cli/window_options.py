"""The windowing options of ``batch`` and ``embed``, grouped in
:class:`~embedcli.cli.option_groups.Windowing`."""

from __future__ import annotations

from typing import Annotated

import typer

from embedcli import options as o
from embedcli.cli.options import OUT, WIN, choice, listed

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

Key = Annotated[
    str,
    typer.Option(
        "--key",
        metavar="NAME",
        rich_help_panel=WIN,
        help="1-D id tensor to read from a safetensors input.",
    ),
]

ShuffleSeedOpt = Annotated[
    int, typer.Option("--seed", metavar="INT", rich_help_panel=WIN, help="Seed for --shuffle.")
]

IdsDtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        metavar="DTYPE",
        callback=choice(o.OUTPUT_DTYPES),
        rich_help_panel=OUT,
        help=f"Integer type of inputs/targets: {listed(o.OUTPUT_DTYPES)}.",
    ),
]
