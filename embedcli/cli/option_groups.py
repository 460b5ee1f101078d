"""The option groups the commands are declared with (:mod:`embedcli.cli.groups`): each a
dataclass of options, in the order its help panel lists them, that builds what the library
takes (:class:`WindowOptions`, :class:`EmbedOptions`) and says which of its options a run
ignores. The tokenizing group is :class:`embedcli.cli.tokenizer_options.Tokenizing`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embedcli import options as o
from embedcli.cli.embed_options import (
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
from embedcli.cli.options import (
    DryRun,
    EotOpt,
    HelpAll,
    IdKey,
    MaxShardSize,
    NoClobber,
    ProvenanceOpt,
    Quiet,
    ShardOpt,
    ShardTokens,
    SplitSeed,
    ToOpt,
    ValFraction,
    Verbose,
    member,
    parse_size,
)
from embedcli.cli.storage_options import StorageOptions
from embedcli.cli.window_options import (
    Batched,
    BatchSize,
    CrossDocs,
    DropLast,
    IdsDtypeOpt,
    Key,
    MaxLength,
    NumBatches,
    Shuffle,
    ShuffleSeedOpt,
    Stride,
)

# (option's parameter name, it has no effect, the warning): what warn_unused takes
Unused = list[tuple[str, bool, str]]


@dataclass
class Debugging:
    """Every command's: tracebacks, and the help page with every panel."""

    verbose: Verbose = False
    help_all: HelpAll = False  # eager: it prints the help and exits, so never a value here


@dataclass
class Writing:
    """Every command that writes a file's."""

    no_clobber: NoClobber = False
    quiet: Quiet = False


@dataclass
class Storage:
    """Object storage's options (the option's callback hands them to the storage layer)."""

    storage_options: StorageOptions = None


@dataclass
class Planning(Storage, Writing):
    """The pipeline's stages': inputs from object storage, a plan instead of a run."""

    dry_run: DryRun = False

    def kwargs(self, key: str) -> dict[str, Any]:
        """What batch's and embed's stages take from it (and ``--key``), planning or running."""
        from embedcli.cli.session import progress_factory

        return {"key": key, "no_clobber": self.no_clobber, "progress": progress_factory(self.quiet)}


@dataclass
class Splitting:
    """An output split into files of a size, plus their index (batch, embed)."""

    max_shard_size: MaxShardSize = None

    def bytes(self) -> int | None:
        return parse_size(self.max_shard_size)


@dataclass
class Windowing:
    """How ids become windows (embed's; batch's adds :class:`BatchWindowing`'s two)."""

    max_length: MaxLength = None
    stride: Stride = None
    batch_size: BatchSize = None
    drop_last: DropLast = True
    num_batches: NumBatches = None
    shuffle: Shuffle = False
    cross_docs: CrossDocs = True
    batched: Batched = False
    key: Key = o.DEFAULT_TOKEN_KEY

    def options(self, seed: int, dtype: o.IdsDtype = o.OUTPUT_DTYPES[0]) -> o.WindowOptions:
        return o.WindowOptions(
            max_length=self.max_length,
            stride=self.stride,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            num_batches=self.num_batches,
            shuffle=self.shuffle,
            seed=seed,
            cross_docs=self.cross_docs,
            dtype=dtype,
            batched=self.batched,
        )


@dataclass
class BatchWindowing(Windowing):
    """batch's windowing: its own ``--seed`` (embed's seeds the tables and the shuffle) and the
    ids' integer type."""

    seed: ShuffleSeedOpt = o.DEFAULT_SEED
    dtype: IdsDtypeOpt = o.OUTPUT_DTYPES[0]

    def batch_options(self) -> o.WindowOptions:
        return self.options(self.seed, member(self.dtype, o.OUTPUT_DTYPES))

    def unused(self) -> Unused:
        return [("seed", not self.shuffle, "--seed has no effect without --shuffle")]


@dataclass
class TokenFile:
    """tokenize's output: the trainer's format, where the document marker goes, a shard of
    the inputs, llm.c's file size, a validation split."""

    shard: ShardOpt = None
    to: ToOpt = None
    eot: EotOpt = None
    shard_tokens: ShardTokens = None
    val_fraction: ValFraction = None
    seed: SplitSeed = o.DEFAULT_SEED
    provenance: ProvenanceOpt = False
    id_key: IdKey = None

    def shards(self) -> tuple[int, int] | None:
        from embedcli.documents import parse_shard

        return parse_shard(self.shard) if self.shard else None

    def written(self) -> dict[str, Any]:
        """What ``run_tokenize`` takes from it beyond the shard and format."""
        return {
            "shard_tokens": self.shard_tokens,
            "val_fraction": self.val_fraction or 0.0,
            "split_seed": self.seed,
            "provenance": self.provenance,
            "id_key": self.id_key,
        }

    def unused(self, token_format: str) -> Unused:
        llmc = token_format == "llmc"
        return [("shard_tokens", not llmc, "--shard-tokens applies to --to llmc only")]


@dataclass
class Embedding:
    """The tables: their size, seed and kind, or a checkpoint's; the device and dtype."""

    dim: DimOpt = None
    vocab_size: VocabSizeOpt = None
    context_length: ContextLengthOpt = None
    seed: TableSeedOpt = o.DEFAULT_SEED
    pos: PosOpt = None
    device: DeviceOpt = o.DEFAULT_DEVICE
    dtype: FloatDtypeOpt = None
    weights: WeightsOpt = None
    token_key: TokenKeyOpt = None
    pos_key: PosKeyOpt = None
    save_weights: SaveWeightsOpt = True

    def options(self, max_shard_size: int | None) -> o.EmbedOptions:
        return o.EmbedOptions(
            dim=self.dim,
            vocab_size=self.vocab_size,
            context_length=self.context_length,
            seed=self.seed,
            pos=None if self.pos is None else member(self.pos, o.POS_KINDS),
            device=self.device,
            dtype=None if self.dtype is None else member(self.dtype, o.FLOAT_DTYPES),
            weights=self.weights,
            token_key=self.token_key,
            pos_key=self.pos_key,
            save_weights=self.save_weights,
            max_shard_size=max_shard_size,
        )

    def unused(self) -> Unused:
        no_weights, no_pos = self.weights is None, self.pos == "none"
        return [
            ("token_key", no_weights, "--token-key has no effect without --weights"),
            ("pos_key", no_weights, "--pos-key has no effect without --weights"),
            ("context_length", no_pos, "--context-length has no effect with --pos none"),
        ]
