"""The tokenize stage: text to a token file, or to a trainer's token files, streamed.

Ids go to an anonymous temporary file beside the output as they are encoded (memory stays flat),
then the format's writer turns them into the output. ``--shard I/N`` writes one numbered part
and the manifest; ``--val-fraction`` sends a fraction of the documents to a second output.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embedcli import contract as c
from embedcli.bpe.pieces import TokenizeStats
from embedcli.bpe.tokenizer import check_first_text, choose_engine_first, tokenize_with
from embedcli.bpe.value import Tokenizer
from embedcli.documents import Source, resolve_sources, shard_sources
from embedcli.documents.ids import check_id_source
from embedcli.errors import EmbedcliError, UsageError
from embedcli.formats import TokenFormat, format_for, stale_shards
from embedcli.formats.base import read_sidecar, sidecar_files, sidecar_path
from embedcli.options import DEFAULT_SEED, SpecialPolicy, TokenizeOptions
from embedcli.progress import ProgressFactory, no_progress
from embedcli.stages.results import PlanResult, TokenizeResult, Written
from embedcli.stages.staging import SpillSink, remote_output, spill_file
from embedcli.storage.manifest import manifest_path, shard_manifest
from embedcli.storage.output_set import OutputSet
from embedcli.storage.outputs import check_output, stale_temps
from embedcli.storage.store import header_if_file, read_header


@dataclass
class _Job:
    """A tokenize run resolved: its format and options, what it reads, where it writes."""

    fmt: TokenFormat
    opts: TokenizeOptions  # eot and special resolved: the format's own where not given
    special: SpecialPolicy
    sources: list[Source]  # this shard's
    read: list[str]  # every input file: an output must never replace one of them
    skipped: list[str]  # files the input directories did not give
    output: str  # this shard's file, or the whole output
    whole: str  # the output as named
    manifest: dict[str, Any] | None  # --shard: the manifest every shard writes
    notes: list[str]


def _resolve(
    inputs: list[str],
    output: str,
    opts: TokenizeOptions | None,
    shard: tuple[int, int] | None,
    to: str | None,
    no_clobber: bool,
    provenance: bool = False,
) -> _Job:
    if provenance and output == "-":
        raise UsageError("--provenance writes a file beside the output: name it with -o PATH")
    opts = opts or TokenizeOptions()
    fmt = format_for(to, output)
    # The format's own defaults; --split-on-eot reads the literal separator as a boundary.
    special: SpecialPolicy = opts.special or (
        "special" if opts.split_on_eot else fmt.default_special
    )
    opts = replace(opts, eot=opts.eot or fmt.default_eot, special=special)
    skipped: list[str] = []
    sources = resolve_sources(inputs, opts.format, include=opts.include, skipped=skipped)
    read = [s.path for s in sources]
    manifest, whole = None, output
    if shard is not None:
        if output == "-":
            raise UsageError("--shard writes files: name the whole with -o PATH, not -o -")
        listing = [(s.path, s.size) for s in sources]
        manifest = shard_manifest(whole, listing, shard[1], fmt.name, fmt.suffixes)
        output = os.path.join(os.path.dirname(whole), manifest["shards"][shard[0]])
        sources = shard_sources(sources, *shard)
    check_output(output, inputs=read, no_clobber=no_clobber)
    notes = stale_temps(output)
    return _Job(fmt, opts, special, sources, read, skipped, output, whole, manifest, notes)


@remote_output
def plan_tokenize(
    inputs: list[str],
    output: str,
    opts: TokenizeOptions | None = None,
    *,
    no_clobber: bool = False,
    shard: tuple[int, int] | None = None,
    to: str | None = None,
) -> PlanResult:
    """What :func:`run_tokenize` would read and write (``--dry-run``). The ids are known only
    once the text is read, so their number is estimated (0.25 a byte, typical of English
    prose); nothing is read beyond the directory listings, nothing written."""
    job = _resolve(inputs, output, opts, shard, to, no_clobber)
    files: list[tuple[str, int | None]] = [(job.output, None)]
    if job.manifest is not None:
        files.append((manifest_path(job.whole), None))
    size = sum(s.size for s in job.sources)
    return PlanResult(
        "tokenize",
        [s.path for s in job.sources],
        size,
        files,
        [],
        notes=job.notes,
        token_format=job.fmt.name,
        eot=job.opts.eot,
        files_read=len(job.sources),
        estimated_tokens=size // 4,
    )


@remote_output
def run_tokenize(
    inputs: list[str],
    output: str,
    opts: TokenizeOptions | None = None,
    *,
    no_clobber: bool = False,
    progress: ProgressFactory = no_progress,
    shard: tuple[int, int] | None = None,
    to: str | None = None,
    shard_tokens: int | None = None,
    val_fraction: float = 0.0,
    split_seed: int = DEFAULT_SEED,
    provenance: bool = False,
    id_key: str | None = None,
) -> TokenizeResult:
    """Tokenize text files, directories or stdin into a token file.

    ``to`` picks the format (:data:`embedcli.formats.TOKEN_FORMATS`: embedcli's safetensors
    ``ids``/``doc_offsets``, or a trainer's own); ``opts.eot`` defaults to that format's own
    placement of ``<|endoftext|>``. With ``shard=(i, n)`` only shard i's documents are read (see
    :func:`embedcli.documents.shard_sources`); ``output`` names the whole, the shard is written as
    ``NAME-0000<i+1>-of-0000<n>.tokens.safetensors`` (or the format's suffix) beside it, and every
    shard writes the same manifest ``NAME.tokens.manifest.json`` listing all n files.
    ``shard_tokens`` caps the ids per file of formats that number their files (llm.c).
    ``val_fraction`` of the documents (chosen by ``split_seed``, see
    :func:`embedcli.bpe.pieces.goes_to_val`) go to a second output named by :func:`val_name`.
    ``provenance`` writes beside each output the text file and line (or row) of each of its
    documents (:mod:`embedcli.formats.provenance`); without it, such a file left by an
    earlier run goes. ``id_key`` adds each document's id field (a jsonl key, a Parquet or
    Arrow column), read again after the text; it implies ``provenance``.
    """
    provenance = provenance or id_key is not None
    job = _resolve(inputs, output, opts, shard, to, no_clobber, provenance)
    if id_key is not None:
        for source in job.sources:
            check_id_source(source, id_key)
    fmt, opts, sources, read, output = job.fmt, job.opts, job.sources, job.read, job.output
    manifest, skipped, notes = job.manifest, job.skipped, job.notes
    val_output = _val_output(output, fmt, val_fraction, shard, read, no_clobber)
    with contextlib.ExitStack() as stack:
        sinks = [SpillSink(stack.enter_context(spill_file(output)), output)]
        if val_output is not None:
            sinks.append(SpillSink(stack.enter_context(spill_file(val_output)), val_output))
        val = (sinks[1], val_fraction, split_seed) if val_output else None
        # the command's one tokenizer, built here and handed down (workers rebuild it from
        # its spec); it keeps the engine chosen before the run, and why
        tok = Tokenizer.of(opts.encoding, job.special, opts.backend)
        check_first_text(tok, sources, opts.text_key)  # a rank file gives the first text back
        choose_engine_first(tok, sources, progress)  # a first run's check shows its own line
        with progress("tokenize", sum(s.size for s in sources), "bytes") as advance:
            stats = tokenize_with(tok, opts, sources, sinks[0], on_progress=advance, val=val,
                                  allow_empty=shard is not None, provenance=provenance)  # fmt: skip
        stats.skipped = skipped
        if id_key is not None:
            _attach_ids([p for p in (stats, stats.val) if p is not None], sources, id_key)
        extra = {}
        if shard is not None and manifest is not None:
            extra = c.shard_fields(shard[0], shard[1], manifest["shard_set"])
        splits: list[tuple[str, TokenizeStats, str]] = [(output, stats, "train")]
        if val_output is not None and stats.val is not None:
            splits.append((val_output, stats.val, "val"))
        paths: list[str] = []
        files = stack.enter_context(OutputSet(no_clobber=no_clobber))  # train and val: one
        if val_output is None and output != "-":  # an older run's validation split goes too
            files.replaces(stale_val(val_name(output, fmt.suffixes), fmt))
        pair = _pair_digest(splits, sinks) if val_output is not None else ""
        for (path, part, name), sink in zip(splits, sinks, strict=True):
            assert part.doc_offsets is not None  # set by every tokenize run
            meta = part.metadata() | extra
            if val_output is not None:
                partner = val_output if name == "train" else output
                meta |= c.split_fields(name, val_fraction, split_seed, partner, pair)
            sink.f.flush()
            paths += fmt.write(path, sink.f, sink.count, part.doc_offsets, meta,
                               inputs=read, no_clobber=no_clobber, shard_tokens=shard_tokens,
                               files=files)  # fmt: skip
            paths += _origins(files, path, part, sources)
        if manifest is not None:  # the pointer every shard of the run writes, last
            where = manifest_path(job.whole)
            files.replaces(stale_shards(where, manifest, read))
            files.pointer(where, manifest)
        files.commit()
    header = header_if_file(output) if fmt.name == "safetensors" else None
    result = TokenizeResult(
        output, Written.of(paths, main=0), stats, header, format=fmt.name, notes=notes
    )
    result.val_output = val_output
    if manifest is not None:
        result.manifest = manifest_path(job.whole)
        result.shard, result.shard_files = shard, (len(sources), len(read))
    return result


def _origins(files: OutputSet, path: str, part: TokenizeStats, sources: list[Source]) -> list[str]:
    """The provenance beside ``path`` (``--provenance``), or an older one there replaced."""
    from embedcli.documents import place_kind
    from embedcli.formats.provenance import provenance_path, write_origins

    if path == "-":
        return []
    if part.origins is None:
        stale = provenance_path(path)
        files.replaces([stale] if os.path.isfile(stale) else [])
        return []
    assert part.doc_offsets is not None
    texts = [{"path": s.name, "at": place_kind(s)} for s in sources]
    return [write_origins(files, path, part.doc_offsets, part.origins, texts)]


def _attach_ids(parts: list[TokenizeStats], sources: list[Source], key: str) -> None:
    """Each document's id (``--id-key``), read again from its file at its recorded place, one
    pass a file for both splits."""
    from embedcli.documents import place_kind
    from embedcli.documents.ids import ids_at

    origins = [p.origins for p in parts if p.origins is not None]
    file = np.concatenate([o.file for o in origins])
    at = np.concatenate([o.at for o in origins])
    ids = np.empty(file.size, object)
    for f in np.unique(file).tolist():
        mine = file == f
        ids[mine] = np.asarray(ids_at(sources[f], place_kind(sources[f]), at[mine], key), object)
    cut = 0
    for part in parts:
        assert part.origins is not None
        n = int(part.origins.file.size)
        part.origins = replace(part.origins, ids=ids[cut : cut + n].tolist())
        cut += n


def _pair_digest(splits: list[tuple[str, TokenizeStats, str]], sinks: list[SpillSink]) -> str:
    """What both sides of one train/validation pair carry (``split_pair``): a digest of the
    validation ids, both sides' document offsets and the lineage, so that two runs that differ
    give two digests. The training ids are left out: hashing them would cost a pass over the
    corpus, and a training side that differs in its ids alone would need the same documents cut
    at the same places into the same validation ids."""
    import hashlib

    digest = hashlib.sha256()
    for _, part, _ in splits:
        assert part.doc_offsets is not None
        digest.update(part.doc_offsets.tobytes())
        meta = part.metadata()
        digest.update(json.dumps(meta, sort_keys=True).encode())
    val = sinks[1].f
    val.flush()
    fd, offset = val.fileno(), 0
    while block := os.pread(fd, 1 << 22, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()[:16]


def stale_val(path: str, fmt: TokenFormat) -> list[str]:
    """The files of a validation split an earlier ``--val-fraction`` run wrote at ``path``
    (its lineage says so), its provenance among them, which a run without one replaces: a
    training script would read them as this corpus's validation set. Anything else of that
    name is left alone."""
    from embedcli.formats.provenance import provenance_path

    if fmt.name == "safetensors":
        try:
            header = read_header(path).metadata or {}
        except EmbedcliError:
            return []
        found = [path] if header.get(c.SPLIT) == "val" else []
    else:
        try:
            lineage = read_sidecar(path)
            listed = sidecar_files(path) if lineage is not None else None
        except EmbedcliError:
            return []
        if lineage is None or lineage.get(c.SPLIT) != "val":
            return []
        found = [*(listed or []), sidecar_path(path)]
    beside = provenance_path(path)
    return [*found, beside] if found and os.path.isfile(beside) else found


def val_name(output: str, suffixes: tuple[str, ...]) -> str:
    """The validation split's file beside ``output``: ``train`` in the name becomes ``val``
    (``train.bin`` -> ``val.bin``, nanoGPT's names), else ``.val`` goes before the suffix
    (``corpus.tokens.safetensors`` -> ``corpus.val.tokens.safetensors``)."""
    directory, name = os.path.split(output)
    if "train" in name:
        head, _, tail = name.rpartition("train")
        return os.path.join(directory, f"{head}val{tail}")
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return os.path.join(directory, name[: -len(suffix)] + ".val" + suffix)
    return os.path.join(directory, name + "_val")


def _val_output(
    output: str,
    fmt: TokenFormat,
    fraction: float,
    shard: tuple[int, int] | None,
    read: list[str],
    no_clobber: bool,
) -> str | None:
    if not fraction:
        return None
    if not 0 < fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1 (got {fraction})")
    if output == "-" or shard is not None:
        raise UsageError(
            "--val-fraction writes a second file: name the output with -o PATH, "
            "and split the input without --shard"
        )
    path = val_name(output, fmt.suffixes)
    check_output(path, inputs=read, no_clobber=no_clobber)
    return path
