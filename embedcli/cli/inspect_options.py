"""The options of ``inspect``, in its groups: what a report shows (:class:`Showing`), a
comparison (:class:`Comparing`), one document (:class:`Locating`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from embedcli.cli.options import path

InspectPaths = Annotated[
    list[str],
    typer.Argument(
        metavar="PATHS",
        parser=path,
        help="safetensors files, a split output's .index.json, a shard manifest, or a "
        "trainer's token file (nanoGPT .bin, llm.c shards, a Megatron prefix, .npy).",
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

DecodeWithOpt = Annotated[
    str | None,
    typer.Option(
        "--tokenizer",
        metavar="SPEC",
        help="Decode ids (previews, top tokens, --neighbors) with this tokenizer instead of the "
        "one the file records: a tiktoken encoding name, or a --tokenizer SPEC as tokenize "
        "takes (a tokenizer.json, a .model, a model directory, org/name).",
        show_default=False,
    ),
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

StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="With --diff: count a different tokenizer engine (tokenizer_backend) as a "
        "difference too; by default it is reported only (both engines are exact).",
    ),
]
IgnoreMetadataOpt = Annotated[
    bool,
    typer.Option(
        "--ignore-metadata",
        help="With --diff: compare tensors only (the same data made two ways differs in lineage).",
    ),
]
DiffOpt = Annotated[
    bool,
    typer.Option(
        "--diff",
        help="Compare two files (safetensors, .index.json, manifests, token files): A B; "
        "with --tensor, only it.",
    ),
]

DocOpt = Annotated[
    int | None,
    typer.Option(
        "--doc",
        min=0,
        metavar="N",
        help="Show document N of a token file: where it lies, its ids and text, and (a mixed "
        "file) the source it came from.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    int | None,
    typer.Option(
        "--token",
        min=0,
        metavar="I",
        help="Show the document holding id I of the stream (as --doc).",
        show_default=False,
    ),
]


@dataclass
class Showing:
    """What a report of each file holds, and how it is shown."""

    stats: StatsOpt = True
    preview: PreviewOpt = 0
    tensor: TensorOpt = None
    as_json: JsonOpt = False
    top: TopOpt = 10
    neighbors: NeighborsOpt = None
    tokenizer: DecodeWithOpt = None
    plot: PlotOpt = None

    def decoding(self) -> str | None:
        """The encoding ``--tokenizer`` names for decoding, or None: the file's own."""
        if self.tokenizer is None:
            return None
        from embedcli.bpe.foreign import decoding_name

        return decoding_name(self.tokenizer)

    def unused(self) -> list[tuple[str, bool, str]]:
        return [("top", not self.stats, "--top has no effect with --no-stats")]


@dataclass
class Comparing:
    """``--diff`` and how it compares."""

    diff: DiffOpt = False
    ignore_metadata: IgnoreMetadataOpt = False
    strict: StrictOpt = False

    def unused(self) -> list[tuple[str, bool, str]]:
        return [
            ("ignore_metadata", not self.diff, "--ignore-metadata applies to --diff only"),
            ("strict", not self.diff, "--strict applies to --diff only"),
        ]


@dataclass
class Locating:
    """One document of a token file, by its number or a token's position."""

    doc: DocOpt = None
    token: TokenOpt = None

    @property
    def asked(self) -> bool:
        return self.doc is not None or self.token is not None
