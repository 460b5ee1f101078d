"""The mix stage: token files of several sources to one training corpus, by a token budget at
given weights, documents shuffled across all of them, exact duplicates dropped.

Each source is read as the other stages read token files (any format, a manifest, a shard set),
its documents cut out of the stream with their separators removed (where the source's own
placement put them), the selection and order computed from the documents' lengths
(:mod:`embedcli.mixing`), and the chosen documents written, separated as the output format's
trainers expect, to a spill file and through the format's writer, committed as one
:class:`~embedcli.storage.output_set.OutputSet`. The metadata records the inputs, weights,
budget, seed and what each source gave, so a rerun with the same arguments writes the same
bytes. A validation split (``--val-fraction``, ``--val-tokens``) is held out before the
selection and written beside the output, the two files one train/validation pair.

This step reads the sources whole (memory-mapped where their format allows: a shuffled order
reads them at random, fast while they fit in the page cache).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from embedcli import contract as c
from embedcli.errors import UsageError
from embedcli.formats import TokenFormat, format_for
from embedcli.formats.provenance import write_provenance
from embedcli.mixing import Selection, order, parse_weights, select
from embedcli.options import DEFAULT_SEED
from embedcli.progress import ProgressFactory, no_progress
from embedcli.stages.mix_parts import (
    check_split,
    part_cuts,
    part_names,
    replace_older,
    set_name,
)
from embedcli.stages.mix_sources import (
    MixInput,
    dedup,
    held_documents,
    held_fraction,
    held_only,
    hold_out,
    keep_only,
    read_source,
    recorded_texts,
    sources_of,
    text_origins,
)
from embedcli.stages.mix_writer import DEFAULT_MEMORY, write_documents
from embedcli.stages.results import MixResult, MixSource, Written
from embedcli.stages.staging import SpillSink, remote_output, spill_file
from embedcli.stages.tokenize import val_name
from embedcli.storage.manifest import manifest_path, shard_manifest
from embedcli.storage.output_set import OutputSet
from embedcli.storage.outputs import check_output, stale_temps
from embedcli.storage.store import header_if_file

# The lineage a mixed file keeps of its sources (they must agree on these): whose ids they are.
_TOKENIZER_KEYS = (
    c.ENCODING,
    c.VOCAB_SIZE,
    c.EOT_ID,
    c.TOKENIZER_KIND,
    c.TOKENIZER_FILE,
    c.TOKENIZER_SHA256,
    c.TOKENIZER_NORMALIZER,
    c.BOS_ID,
    c.EOS_ID,
    c.ENCODING_ASSUMED,
)
# What a two-phase run's scatter phase found, read back by the gather jobs: for "kept" (the
# documents --dedup exact keeps) or "held" (the validation split), a mask a source, or None.
KeptMasks = Callable[[list[tuple[str, list[str]]], list[MixInput], str], list[np.ndarray] | None]
_AGREE = (c.ENCODING, c.VOCAB_SIZE, c.EOT_ID, c.TOKENIZER_SHA256)


@dataclass(frozen=True)
class MixOptions:
    """How ``mix`` assembles its sources (``embedcli mix --help`` says each in words)."""

    weights: str | None = None  # "0.7,0.3" or "web=0.7,code=0.3"; None: every document once
    tokens: int | None = None  # the budget; None: the most the weights allow
    max_repeat: float = 1.0  # passes' worth of tokens a source may give
    seed: int = DEFAULT_SEED
    shuffle: bool = True
    dedup: bool = False  # drop documents whose ids another document already has
    eot: str | None = None  # the separator's placement; None: the output format's own
    val_fraction: float = 0.0  # documents held out for a validation file beside the output
    val_tokens: int | None = None  # or this many tokens of them
    shard_tokens: int | None = None  # --to llmc: ids per file (llm.c's 100M by default)
    # bytes of ids a file holds at most: the output as parts (a one-process run's alone: out of
    # a two-phase run's fingerprint, as is memory)
    max_shard_size: int | None = field(default=None, repr=False)
    # how much of the sources a shuffled write reads through their maps (not the output's
    # business: left out of repr, which a two-phase run's fingerprint takes)
    memory: int = field(default=DEFAULT_MEMORY, repr=False, compare=False)

    @property
    def holds_out(self) -> bool:
        return bool(self.val_fraction) or self.val_tokens is not None


@remote_output
def run_mix(
    inputs: list[str],
    output: str,
    opts: MixOptions | None = None,
    *,
    sources: list[str] | None = None,
    to: str | None = None,
    no_clobber: bool = False,
    progress: ProgressFactory = no_progress,
) -> MixResult:
    """Mix the token files ``inputs`` (each a source, named by its stem) and the ``sources``
    given as ``NAME=GLOB`` into one token file at ``output`` in format ``to`` (as
    ``tokenize --to``). See :class:`MixOptions` and :mod:`embedcli.mixing`."""
    started = time.perf_counter()
    opts = opts or MixOptions()
    fmt = format_for(to, output)
    placement = opts.eot or fmt.default_eot
    val_output = val_output_of(output, fmt, opts)
    check_split(opts.max_shard_size, fmt, output)
    with contextlib.ExitStack() as stack:
        mix = prepare(inputs, sources, opts, placement, stack)
        source_of, position = order(mix.selection, opts.seed, opts.shuffle)
        starts, ends = _spans(mix.read, mix.selection, source_of, position)
        cuts, names = _parts(mix, output, fmt, opts, placement, ends - starts)
        for name in [*names, *([val_output] if val_output is not None else [])]:
            check_output(name, inputs=mix.paths, no_clobber=no_clobber)
        notes = stale_temps(output)
        written, origins = [], []
        for name, a, b in zip(names, cuts, cuts[1:], strict=False):
            at = slice(a, b)
            written.append(spill_documents(mix, name, source_of[at], starts[at], ends[at], placement,
                                    stack, progress, opts.memory))  # fmt: skip
            origins.append(origins_of(mix, source_of[at], position[at]))
        if val_output is not None:
            held, documents = held_documents(mix.read, opts.seed, opts.shuffle)
            written.append(
                spill_documents(mix, val_output, *held, placement, stack, progress, opts.memory)
            )
            origins.append((held[0], documents, np.zeros(documents.size, np.int64)))
        metas, manifest = _metas(mix, opts, placement, written, output, val_output, fmt, names)
        files = stack.enter_context(OutputSet(no_clobber=no_clobber))
        paths: list[str] = []
        recorded = recorded_texts(mix.read) if output != "-" else []  # once for every file
        for (sink, doc_offsets), meta, origin in zip(written, metas, origins, strict=True):
            paths += fmt.write(
                sink.output, sink.f, sink.count, doc_offsets, meta, inputs=mix.paths,
                no_clobber=no_clobber, files=files, shard_tokens=opts.shard_tokens,
            )  # fmt: skip
            if sink.output != "-":
                text = text_origins(recorded, origin[0], origin[1])
                paths.append(
                    write_provenance(files, sink.output, doc_offsets, *origin, mix.named, text)
                )
        paths += replace_older(files, output, fmt, manifest, mix.paths, val_output)
        files.commit()
    return _result(mix, opts, output, fmt, paths, written, val_output, notes, started, placement)


def _parts(
    mix: Prepared,
    output: str,
    fmt: TokenFormat,
    opts: MixOptions,
    placement: str,
    lengths: np.ndarray,
) -> tuple[list[int], list[str]]:
    """Where the output's documents are cut into files, and the files' names: one file, or
    the parts of ``--max-shard-size``."""
    if opts.max_shard_size is None:
        return [0, int(lengths.size)], [output]
    vocab = c.get_int(mix.first.metadata, c.VOCAB_SIZE) or 0
    cuts = part_cuts(lengths, placement, opts.max_shard_size, fmt, vocab)
    return cuts, part_names(output, len(cuts) - 1, fmt)


def _metas(
    mix: Prepared,
    opts: MixOptions,
    placement: str,
    written: list[tuple[SpillSink, np.ndarray]],
    output: str,
    val_output: str | None,
    fmt: TokenFormat,
    names: list[str],
) -> tuple[list[dict[str, str]], dict | None]:
    """Each file's metadata: the mix's, a validation pair's fields on both sides, a split
    output's part fields; and a split output's manifest."""
    metas = [mix_metadata(mix, opts, placement, w[1]) for w in written]
    split = opts.max_shard_size is not None
    if val_output is not None:
        pair = _pair_digest(written, metas)
        fraction = held_fraction(mix.read, opts.val_fraction)
        train_name = manifest_path(output) if split else output
        sides = [("train", val_output)] * len(names) + [("val", train_name)]
        for meta, (name, partner) in zip(metas, sides, strict=True):
            meta |= c.split_fields(name, fraction, opts.seed, partner, pair)
    if not split:
        return metas, None
    listing = [(set_name(metas[: len(names)]), 0)]
    manifest = shard_manifest(output, listing, len(names), fmt.name, fmt.suffixes)
    for j, meta in enumerate(metas[: len(names)]):
        meta |= c.shard_fields(j, len(names), manifest["shard_set"])
    return metas, manifest


def _result(
    mix: Prepared,
    opts: MixOptions,
    output: str,
    fmt: TokenFormat,
    paths: list[str],
    written: list[tuple[SpillSink, np.ndarray]],
    val_output: str | None,
    notes: list[str],
    started: float,
    placement: str,
) -> MixResult:
    split = opts.max_shard_size is not None
    header = header_if_file(output) if fmt.name == "safetensors" and not split else None
    train = written[:-1] if val_output is not None else written
    tokens = sum(sink.count for sink, _ in train)
    if split and placement == "between":  # the one the manifest's reader puts between parts
        tokens += max(len(train) - 1, 0)
    documents = sum(int(offsets.size - 1) for _, offsets in train)
    main = len(paths) - 1 if split else 0  # a split output's manifest, else its (first) file
    result = MixResult(
        output, Written.of(paths, main=main), mix.facts, mix.selection.budget, tokens,
        documents, opts.seed, opts.shuffle, opts.dedup, time.perf_counter() - started,
        fmt.name, header, notes,
    )  # fmt: skip
    if val_output is not None:
        result.val_output, result.val_tokens = val_output, written[-1][0].count
        result.val_documents = int(written[-1][1].size - 1)
    if split:
        result.notes.append(
            f"--max-shard-size split the mix into {len(train)} parts; read them through "
            f"{manifest_path(output)}"
        )
    return result


def val_output_of(output: str, fmt: TokenFormat, opts: MixOptions) -> str | None:
    """The validation file beside ``output`` (tokenize's name for it), when one is asked for."""
    if not opts.holds_out:
        return None
    if opts.val_fraction and opts.val_tokens is not None:
        raise UsageError("give --val-fraction or --val-tokens, not both")
    if not 0 <= opts.val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1 (got {opts.val_fraction:g})")
    if output == "-":
        raise UsageError("a validation split writes a second file: name the output with -o PATH")
    return val_name(output, fmt.suffixes)


def spill_documents(
    mix: Prepared,
    path: str,
    source_of: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    placement: str,
    stack: contextlib.ExitStack,
    progress: ProgressFactory,
    memory: int,
) -> tuple[SpillSink, np.ndarray]:
    """The documents written to a spill file for ``path``: the sink and their offsets."""
    sink = SpillSink(stack.enter_context(spill_file(path)), path)
    ids = [s.ids for s in mix.read]
    offsets = write_documents(
        ids, source_of, starts, ends, placement, mix.eot, sink, progress, memory
    )
    sink.f.flush()
    return sink, offsets


def origins_of(
    mix: Prepared, source_of: np.ndarray, position: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each output document's source, index among that source's documents, and pass."""
    document = np.empty(source_of.size, np.int64)
    passes = np.empty(source_of.size, np.int64)
    for k, (s, taken) in enumerate(zip(mix.read, mix.selection.sources, strict=True)):
        mine = source_of == k
        document[mine] = s.kept[taken.docs[position[mine]]]
        passes[mine] = taken.passes[position[mine]]
    return source_of, document, passes


def _pair_digest(written: list[tuple[SpillSink, np.ndarray]], metas: list[dict[str, str]]) -> str:
    """What both sides of the train/validation pair carry (``split_pair``, as tokenize's):
    a digest of the validation ids, both sides' document offsets and their lineage."""
    import hashlib
    import os

    digest = hashlib.sha256()
    for (_, offsets), meta in zip(written, metas, strict=True):
        digest.update(offsets.tobytes())
        digest.update(json.dumps(meta, sort_keys=True).encode())
    fd, at = written[-1][0].f.fileno(), 0
    while block := os.pread(fd, 1 << 22, at):
        digest.update(block)
        at += len(block)
    return digest.hexdigest()[:16]


@dataclass
class Prepared:
    """The sources read and the selection made: what every way of writing a mix starts from
    (one process, or each job of a two-phase run, which all compute the same)."""

    listed: list[tuple[str, list[str]]]
    read: list[MixInput]
    first: MixInput
    weights: list[float]
    selection: Selection
    facts: list[MixSource]

    @property
    def paths(self) -> list[str]:
        return [p for s in self.read for p in s.inputs]

    @property
    def named(self) -> list[dict[str, object]]:
        """The sources as provenance lists them: name and input files."""
        return [{"name": name, "inputs": files} for name, files in self.listed]

    @property
    def eot(self) -> int | None:
        return c.get_int(self.first.metadata, c.EOT_ID)


def prepare(
    inputs: list[str],
    sources: list[str] | None,
    opts: MixOptions,
    placement: str,
    stack: contextlib.ExitStack,
    kept: KeptMasks | None = None,
) -> Prepared:
    """Read the sources (kept open by ``stack``), drop duplicates, hold out the validation
    split, select the documents. ``kept`` may give the duplicates and the split already found
    (a two-phase run's gather jobs read what the scatter phase found): each source's mask of
    documents to keep, or to hold out, or None."""
    if opts.max_repeat <= 0:
        raise UsageError(f"--max-repeat must be above 0 (got {opts.max_repeat:g})")
    listed = sources_of(inputs, list(sources or []))
    read = [read_source(name, files, stack) for name, files in listed]
    first = _agreeing(read, placement)
    if opts.dedup:
        masks = kept(listed, read, "kept") if kept is not None else None
        if masks is None:
            dedup(read)
        else:
            keep_only(read, masks)
    else:
        for s in read:
            s.kept = np.arange(s.starts.size, dtype=np.int64)
    if opts.holds_out:  # before the selection: no held-out document is trained on
        masks = kept(listed, read, "held") if kept is not None else None
        if masks is None:
            hold_out(read, opts.seed, opts.val_fraction, opts.val_tokens)
        else:
            held_only(read, masks)
    names = [s.name for s in read]
    lengths = [s.lengths for s in read]
    weights = parse_weights(opts.weights, names, [int(x.sum()) for x in lengths])
    selection = select(lengths, weights, opts.tokens, opts.max_repeat, opts.seed, names)
    facts = _facts(read, listed, selection, weights)
    return Prepared(listed, read, first, weights, selection, facts)


def _agreeing(read: list[MixInput], placement: str) -> MixInput:
    """The first source, after checking that every source holds the same tokenizer's ids and
    that the output's placement uses the same marker."""
    first = same_tokenizer(read)
    if c.EOT_ID not in first.metadata:
        raise UsageError(f"source {first.name}: its metadata names no document marker (eot_id)")
    given = first.metadata.get(c.EOT_PLACEMENT, "between")
    if c.TOKENIZER_KIND in first.metadata and (given == "before") != (placement == "before"):
        raise UsageError(
            f"the sources mark documents with a token placed {given}, which this output "
            f"would place {placement}: give --eot {given}, or tokenize for this format"
        )
    return first


def same_tokenizer(read: list[MixInput]) -> MixInput:
    """The first source, after checking that every source holds the same tokenizer's ids."""
    first = read[0]
    for s in read[1:]:
        for key in _AGREE:
            if s.metadata.get(key) != first.metadata.get(key):
                raise UsageError(
                    f"sources {first.name} and {s.name} hold different tokenizers' ids "
                    f"({key} {first.metadata.get(key)} against {s.metadata.get(key)}); "
                    "mix token files of one tokenizer"
                )
    return first


def _spans(
    read: list[MixInput], selection: Selection, source_of: np.ndarray, position: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each output document's ids lie in its source: ``(starts, ends)``."""
    starts = np.empty(source_of.size, np.int64)
    ends = np.empty(source_of.size, np.int64)
    for k, (s, taken) in enumerate(zip(read, selection.sources, strict=True)):
        mine = source_of == k
        docs = s.kept[taken.docs[position[mine]]]
        starts[mine], ends[mine] = s.starts[docs], s.ends[docs]
    return starts, ends


def _facts(
    read: list[MixInput],
    listed: list[tuple[str, list[str]]],
    selection: Selection,
    weights: list[float],
) -> list[MixSource]:
    return [
        MixSource(
            name=s.name,
            files=files,
            weight=w,
            target=taken.target,
            tokens=taken.tokens,
            documents=taken.documents,
            available_tokens=taken.available,
            available_documents=int(s.kept.size),
            duplicates=s.duplicates,
            repeats=taken.repeats,
        )
        for s, (_, files), taken, w in zip(read, listed, selection.sources, weights, strict=True)
    ]


def mix_metadata(
    mix: Prepared, opts: MixOptions, placement: str, doc_offsets: np.ndarray
) -> dict[str, str]:
    """The tokenizer's lineage (every source's), the stream's counts, and how it was mixed."""
    first, read, facts, selection = mix.first, mix.read, mix.facts, mix.selection
    base = {k: first.metadata[k] for k in _TOKENIZER_KEYS if k in first.metadata}
    policies = {s.metadata.get(c.SPECIAL) for s in read}
    if len(policies) == 1 and None not in policies:
        base[c.SPECIAL] = first.metadata[c.SPECIAL]
    per_source = [  # keyword names: the JSON's fields, not metadata keys
        dict(
            name=f.name,
            inputs=f.files,
            weight=f.weight,
            target_tokens=f.target,
            tokens=f.tokens,
            documents=f.documents,
            duplicates=f.duplicates,
        )
        for f in facts
    ]
    fields = {
        c.EOT_PLACEMENT: placement,
        c.DOCUMENTS: int(doc_offsets.size - 1),
        c.TOKENS: int(doc_offsets[-1]),
        c.SOURCES: [p for f in facts for p in f.files],
        c.MIX_SOURCES: json.dumps(per_source, ensure_ascii=False),
        c.MIX_BUDGET: selection.budget,
        c.MIX_MAX_REPEAT: f"{opts.max_repeat:g}",
        c.MIX_SEED: opts.seed,
        c.MIX_SHUFFLE: "global" if opts.shuffle else "none",
        c.MIX_DEDUP: "exact" if opts.dedup else "none",
    }
    return c.stage_metadata("tokens", fields, base)
