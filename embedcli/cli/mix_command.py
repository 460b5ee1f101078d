"""``embedcli mix``: token files of several sources to one training corpus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embedcli import options as o
from embedcli.cli.errors import warn_unused
from embedcli.cli.option_groups import Debugging, Writing
from embedcli.cli.options import (
    BLEND,
    CLUSTER,
    MORE_OUT,
    OUT,
    ToOpt,
    choice,
    eot_option,
    listed,
    parse_size,
    path,
    shard_tokens_option,
)
from embedcli.cli.session import progress_factory, show_result
from embedcli.errors import UsageError

if TYPE_CHECKING:
    from embedcli.stages.mix import MixOptions
    from embedcli.stages.mix_phases import Phase

MIX = "Mixing"

MixInputs = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="INPUTS",
        parser=path,
        help="Token files (any --to format), shard manifests or split outputs: each one a "
        "source, named by its file's stem (web.tokens.safetensors is web).",
        show_default=False,
    ),
]
MixOutput = Annotated[
    str | None,
    typer.Option(
        "--output", "-o", metavar="PATH", rich_help_panel=OUT, help="The mixed token file."
    ),
]
SourceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        metavar="NAME=GLOB",
        rich_help_panel=MIX,
        help="A source made of the files GLOB matches, called NAME (repeat for each).",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        metavar="W",
        rich_help_panel=MIX,
        help="Each source's share of the tokens, summing to 1: 0.7,0.2,0.1 in source order, "
        "or web=0.7,code=0.3 \\[default: their own sizes: every document once].",
        show_default=False,
    ),
]
TokensOpt = Annotated[
    str | None,
    typer.Option(
        "--tokens",
        metavar="N",
        rich_help_panel=MIX,
        help="The budget: 10B, 500M, 250000 \\[default: the most the weights allow within "
        "--max-repeat].",
        show_default=False,
    ),
]
MaxRepeatOpt = Annotated[
    float,
    typer.Option(
        "--max-repeat",
        metavar="R",
        rich_help_panel=MIX,
        help="Passes' worth of tokens a source may give (2: each document at most twice; "
        "1: never repeated). A budget needing more is refused.",
    ),
]
MixSeedOpt = Annotated[
    int,
    typer.Option(
        "--seed", metavar="INT", rich_help_panel=MIX, help="Which documents, in which order."
    ),
]
MixShuffleOpt = Annotated[
    bool,
    typer.Option(
        "--shuffle/--no-shuffle",
        rich_help_panel=MIX,
        help="Shuffle documents across all sources (a seeded permutation), or keep source order.",
    ),
]
DEDUP = ("none", "exact")
DedupOpt = Annotated[
    str,
    typer.Option(
        "--dedup",
        metavar="HOW",
        callback=choice(DEDUP),
        rich_help_panel=MIX,
        help=f"{listed(DEDUP)}: exact drops a document whose ids an earlier one (in source "
        "order) has.",
    ),
]
EMIT = ("json", "megatron")
EmitWeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--emit-weights",
        metavar="KIND",
        callback=choice(EMIT),
        rich_help_panel=BLEND,
        help=f"{listed(EMIT)}: write the inputs' blend instead, nothing copied: the "
        "loader's JSON mixture, or Megatron's --data-path W1 PREFIX1 W2 PREFIX2 ...",
        show_default=False,
    ),
]
MixEotOpt = Annotated[str | None, eot_option(OUT)]
MixValFraction = Annotated[
    float | None,
    typer.Option(
        "--val-fraction",
        min=0.0,
        max=1.0,
        metavar="F",
        rich_help_panel=MIX,
        help="Hold out a fraction F of the documents (chosen by a digest of --seed and their "
        "ids) for a validation file beside -o (train.bin -> val.bin).",
        show_default=False,
    ),
]
MixValTokens = Annotated[
    str | None,
    typer.Option(
        "--val-tokens",
        metavar="N",
        rich_help_panel=MIX,
        help="Hold out documents of about N tokens (the lowest digests) instead.",
        show_default=False,
    ),
]

PhaseOpt = Annotated[
    str | None,
    typer.Option(
        "--phase",
        metavar="PHASE",
        callback=choice(("scatter", "gather")),
        rich_help_panel=CLUSTER,
        help="Run as one job of a cluster run: scatter (with --shard I/N and --buckets M), then "
        "gather (--shard J/M); the parts read through the manifest are this command's output.",
        show_default=False,
    ),
]
MixShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        rich_help_panel=CLUSTER,
        help="This job's index, counting from 0, and the number of jobs of its phase.",
        show_default=False,
    ),
]
BucketsOpt = Annotated[
    int | None,
    typer.Option(
        "--buckets",
        metavar="M",
        rich_help_panel=CLUSTER,
        help="Scatter: the number of gather jobs (one bucket file each).",
        show_default=False,
    ),
]
BucketDirOpt = Annotated[
    str | None,
    typer.Option(
        "--bucket-dir",
        metavar="DIR",
        rich_help_panel=CLUSTER,
        help="Where the bucket files live: a directory every job reaches, or an object-store "
        "prefix (s3://bucket/run) \\[default: the output's name + .buckets].",
        show_default=False,
    ),
]
MixShardTokens = Annotated[int | None, shard_tokens_option(MORE_OUT)]
MixMaxShardSize = Annotated[
    str | None,
    typer.Option(
        "--max-shard-size",
        metavar="SIZE",
        rich_help_panel=MORE_OUT,
        help="Write the mix as parts whose ids take at most SIZE each (e.g. 2GB), cut "
        "between documents, plus a manifest that reads as the one file.",
        show_default=False,
    ),
]
MemoryOpt = Annotated[
    str,
    typer.Option(
        "--memory",
        metavar="SIZE",
        rich_help_panel=CLUSTER,
        help="Sources larger than SIZE together are read from their files, not mapped: "
        "resident memory stays flat whatever the corpus (a little slower). Same output.",
    ),
]


@dataclass
class Blend:
    """What goes into the mix: the sources, their weights and budget, the order, dedup."""

    source: SourceOpt = None
    weights: WeightsOpt = None
    tokens: TokensOpt = None
    max_repeat: MaxRepeatOpt = 1.0
    seed: MixSeedOpt = o.DEFAULT_SEED
    shuffle: MixShuffleOpt = True
    dedup: DedupOpt = "none"
    emit_weights: EmitWeightsOpt = None

    def options(self, file: MixFile) -> MixOptions:
        from embedcli.mixing import parse_count
        from embedcli.stages.mix import MixOptions

        return MixOptions(
            weights=self.weights,
            tokens=parse_count(self.tokens) if self.tokens is not None else None,
            max_repeat=self.max_repeat,
            seed=self.seed,
            shuffle=self.shuffle,
            dedup=self.dedup == "exact",
            eot=file.eot,
            val_fraction=file.val_fraction or 0.0,
            val_tokens=file.val_count(),
            shard_tokens=file.shard_tokens,
            max_shard_size=parse_size(file.max_shard_size),
            memory=parse_size(file.memory) or 1,
        )


@dataclass
class MixFile:
    """The mixed file: its trainer's format, the separator, a validation split."""

    to: ToOpt = None
    eot: MixEotOpt = None
    val_fraction: MixValFraction = None
    val_tokens: MixValTokens = None
    shard_tokens: MixShardTokens = None
    max_shard_size: MixMaxShardSize = None
    memory: MemoryOpt = "256MiB"

    def unused(self, output: str) -> list[tuple[str, bool, str]]:
        """The options that cannot act on this output (warned of, as tokenize's)."""
        from embedcli.formats import format_for

        llmc = format_for(self.to, output).name == "llmc"
        return [("shard_tokens", not llmc, "--shard-tokens applies to --to llmc only")]

    def val_count(self) -> int | None:
        from embedcli.mixing import parse_count

        return parse_count(self.val_tokens, "--val-tokens") if self.val_tokens is not None else None


@dataclass
class ClusterJob:
    """One job of a cluster run's scatter or gather phase."""

    phase: PhaseOpt = None
    shard: MixShardOpt = None
    buckets: BucketsOpt = None
    bucket_dir: BucketDirOpt = None

    def job(self, output: str) -> Phase | None:
        """The phase this job runs, or None for a one-machine run; a half-given job refused."""
        if self.phase is None:
            if self.shard or self.buckets or self.bucket_dir:
                raise UsageError(
                    "--shard, --buckets and --bucket-dir go with --phase scatter|gather"
                )
            return None
        from embedcli.documents import parse_shard
        from embedcli.stages.mix_phases import Phase

        if not self.shard:
            raise UsageError(f"--phase {self.phase} needs --shard I/N: this job of the phase's N")
        index, count = parse_shard(self.shard)
        return Phase(self.phase, index, count, self.bucket_dir or output + ".buckets", self.buckets)


def mix(
    ctx: typer.Context,
    inputs: MixInputs = None,
    output: MixOutput = None,
    *,
    blend: Blend,
    file: MixFile,
    cluster: ClusterJob,
    run: Writing,
    debug: Debugging,
) -> None:
    """Assemble a training corpus: token files of several sources mixed by a token budget at chosen weights, documents shuffled across all of them, exact duplicates dropped.

    Each source is taken in whole passes in a seeded random document order, the last pass cut within one document of its share; separators go where the output format's trainer expects them. The same arguments write the same bytes.

    [bold]Examples[/]

      embedcli mix web.tokens.safetensors code.tokens.safetensors -o mix.tokens.safetensors

      embedcli mix web.* code.* math.* --weights 0.7,0.2,0.1 --tokens 500M -o m.tokens.safetensors

      embedcli mix --source web='web/*.bin' --source code=code.bin --weights web=0.8,code=0.2 --max-repeat 2 --to nanogpt -o train.bin

      embedcli mix a.tokens.safetensors b.tokens.safetensors --dedup exact --no-shuffle -o ab.tokens.safetensors

    On a cluster: the same command with --phase scatter, then --phase gather (--help-all; the README's mix).
    """
    from embedcli.stages.mix import run_mix

    if not output:
        raise UsageError("name the mixed file with -o PATH (mix has no default name)")
    warn_unused(ctx, run.quiet, file.unused(output))
    sources, opts = list(inputs or []), blend.options(file)
    if blend.emit_weights is not None:
        return _emit(sources, output, opts, blend, file, cluster, run)
    job = cluster.job(output)
    named, progress = list(blend.source or []), progress_factory(run.quiet)
    common: dict[str, Any] = {"sources": named, "to": file.to, "no_clobber": run.no_clobber}
    if job is None:
        result = run_mix(sources, output, opts, **common, progress=progress)
    else:
        from embedcli.stages.mix_phases import run_mix_phase

        result = run_mix_phase(sources, output, job, opts, **common, progress=progress)
    show_result(result, run.quiet)


def _emit(
    inputs: list[str],
    output: str,
    opts: MixOptions,
    blend: Blend,
    file: MixFile,
    cluster: ClusterJob,
    run: Writing,
) -> None:
    """``--emit-weights``: the blend written, and its summary."""
    from embedcli.stages.mix_weights import run_mix_weights

    if cluster.phase is not None or file.to is not None:
        flag = "--phase" if cluster.phase is not None else "--to"
        raise UsageError(f"--emit-weights writes the blend, not documents: leave out {flag}")
    kind, named = blend.emit_weights or "", list(blend.source or [])
    result = run_mix_weights(
        inputs, output, opts, sources=named, kind=kind, no_clobber=run.no_clobber
    )
    if not run.quiet:
        from embedcli.cli.errors import err_console
        from embedcli.cli.mix_render import render_weights

        render_weights(err_console(), result)
