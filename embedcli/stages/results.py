"""What each stage did, as data: counts, shapes, dtypes, paths, sizes and seconds.

The ``run_*`` functions return these; ``cli/render.py`` is the only place they become text, so a
library caller can compute with every figure the CLI shows.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

    from embedcli.bpe.pieces import TokenizeStats
    from embedcli.inspection.stats import Histogram
    from embedcli.storage.store import Header
    from embedcli.windows import PlanFacts


@dataclass
class Written:
    """The files an output became (a split output: its parts, then the index) and their sizes
    (``None`` where unknown: stdout, special files)."""

    paths: list[str]
    sizes: list[int | None]
    main: int = -1  # which path names the output: a split output's index, a token file's data

    @classmethod
    def of(cls, paths: list[str], main: int = -1) -> Written:
        sizes: list[int | None] = []
        for path in paths:
            size = None
            if path != "-":
                with contextlib.suppress(OSError):
                    size = os.path.getsize(path)
            sizes.append(size)
        return cls(list(paths), sizes, main)

    @property
    def total_bytes(self) -> int:
        return sum(s for s in self.sizes if s is not None)


@dataclass
class FirstWindow:
    """The first window's ids and their decoded text (``""`` when the encoding is unknown)."""

    ids: list[int]
    text: str


@dataclass
class TokenizeResult:
    output: str
    written: Written
    stats: TokenizeStats
    header: Header | None = None  # the output's header (None when written to a stream)
    shard: tuple[int, int] | None = None  # (index, count) for --shard
    shard_files: tuple[int, int] | None = None  # files in this shard, files in all
    manifest: str | None = None
    format: str = "safetensors"  # the token format written
    notes: list[str] = field(default_factory=list)  # things the user should know
    val_output: str | None = None  # --val-fraction: the validation split (stats.val)

    stage: ClassVar[str] = "tokenize"


@dataclass
class BatchResult:
    output: str
    written: Written
    plan: PlanFacts
    dtype: str  # of inputs and targets
    input_ids: int  # ids read (or tokenized)
    seconds: float
    tokenized: TokenizeStats | None = None  # when the input was text
    first_window: FirstWindow | None = None
    header: Header | None = None
    coverage: Histogram | None = None  # of the window starts over the token positions
    notes: list[str] = field(default_factory=list)

    stage: ClassVar[str] = "batch"


@dataclass
class EmbedResult:
    output: str
    written: Written
    shape: tuple[int, int, int]  # (windows, max_length, dim)
    dtype: str
    device: str
    vocab_size: int
    context_length: int
    pos: str
    has_pos: bool
    tables: str  # where the tables came from: "random (seed 123)" or the weights file
    tables_saved: bool
    bytes_planned: int  # the output's size, header included
    embed_seconds: float
    total_seconds: float
    tokenized: TokenizeStats | None = None
    plan: PlanFacts | None = None  # None when the input was already windowed
    table_head: torch.Tensor | None = None  # token_embedding.weight[:3] in the output dtype
    processes: tuple[int, str, int] | None = None  # torchrun: (world size, device type, rank)
    header: Header | None = None
    values: Histogram | None = None  # of the first chunk of embeddings
    notes: list[str] = field(default_factory=list)

    stage: ClassVar[str] = "embed"


@dataclass
class MixSource:
    """What one source gave a mix: its weight, the tokens asked and taken, what it held."""

    name: str
    files: list[str]
    weight: float
    target: int  # tokens its weight asked for
    tokens: int  # tokens taken (within one document of the target)
    documents: int  # documents taken (a repeated one counted each time)
    available_tokens: int  # after dedup
    available_documents: int
    duplicates: int  # documents dropped as exact duplicates of earlier ones
    repeats: float  # passes' worth of tokens taken


@dataclass
class MixResult:
    output: str
    written: Written
    sources: list[MixSource]
    budget: int
    tokens: int  # the stream as read, separators included (those between parts too)
    documents: int
    seed: int
    shuffle: bool
    dedup: bool
    seconds: float
    format: str = "safetensors"
    header: Header | None = None
    notes: list[str] = field(default_factory=list)
    phase: str | None = None  # a two-phase run's job: "scatter 2/3", "gather 1/2"
    val_output: str | None = None  # --val-fraction, --val-tokens: the validation file
    val_documents: int = 0
    val_tokens: int = 0  # ids written there, separators included

    stage: ClassVar[str] = "mix"


@dataclass
class PlanResult:
    """What a stage would do (``--dry-run``, ``plan_*``): nothing is written."""

    stage: str  # the command's name, for the title
    inputs: list[str]
    input_bytes: int
    outputs: list[tuple[str, int | None]]  # path and size (None: not known before the work)
    tensors: list[tuple[str, str, tuple[int, ...]]]  # name, dtype, shape
    notes: list[str] = field(default_factory=list)
    windows: int | None = None  # batch and embed
    token_format: str | None = None  # tokenize: the format, and where <|endoftext|> goes
    eot: str | None = None
    files_read: int | None = None
    estimated_tokens: int | None = None  # tokenize: the ids are known only once text is read

    @property
    def total_bytes(self) -> int:
        return sum(size or 0 for _, size in self.outputs)


StageResult = TokenizeResult | BatchResult | EmbedResult | MixResult  # what run_* returns
