"""``embedcli mix`` as a cluster job in two phases, writing what one process writes.

* ``--phase scatter --shard I/N --buckets M``: job I reads its share of every source (the I-th
  of N ranges of each source's documents), and writes M bucket files: bucket J holds the
  documents whose place in the output falls in the J-th of M ranges (their ids, lengths and
  sort keys), then a marker saying the job is done.
* ``--phase gather --shard J/M``: job J reads bucket J of every scatter job, sorts it, and
  writes output part J of M and the manifest (every job writes the same one, last), as
  ``tokenize --shard`` does.

Read through its manifest, the output is the one-process run's token stream, id for id: every
job computes the same selection (it reads every source's document lengths, and their digests
with ``--dedup exact``), a document's place is a keyed hash (:mod:`embedcli.mixing`), and the
buckets are ranges of it, so the parts in order are the one sorted stream. A gather job holds
one bucket in memory (about 1/M of the output); a scatter job one bucket of its share at a time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from embedcli import contract as c
from embedcli.errors import InputError, UsageError
from embedcli.formats import TokenFormat, format_for, stale_shards
from embedcli.formats.provenance import write_provenance
from embedcli.mixing import ORDER, keys
from embedcli.progress import ProgressFactory, no_progress
from embedcli.stages.mix import (
    KeptMasks,
    MixOptions,
    Prepared,
    mix_metadata,
    origins_of,
    prepare,
    spill_documents,
    val_output_of,
)
from embedcli.stages.mix_sources import (
    MixInput,
    held_documents,
    held_fraction,
    recorded_texts,
    text_origins,
)
from embedcli.stages.mix_writer import read_spans, write_documents
from embedcli.stages.results import MixResult, Written
from embedcli.stages.segmented import Segmented
from embedcli.stages.staging import SpillSink, spill_file
from embedcli.stages.tokenize import stale_val, val_name
from embedcli.storage.atomic import atomic_file
from embedcli.storage.manifest import manifest_path, shard_manifest
from embedcli.storage.output_set import OutputSet
from embedcli.storage.outputs import check_output
from embedcli.storage.remote import fetch, is_url, list_objects, upload
from embedcli.storage.store import header_if_file

PHASES = ("scatter", "gather")
_KEPT = "kept"  # what the scatter phase's --dedup exact and split found, for the gather jobs


@dataclass(frozen=True)
class Phase:
    """One job of a two-phase run: which phase, its index and count (``--shard I/N``), the
    gather jobs a scatter job writes buckets for, and where the buckets live."""

    name: str
    index: int
    count: int
    directory: str
    buckets: int | None = None  # scatter: the gather jobs (M)


def run_mix_phase(
    inputs: list[str],
    output: str,
    phase: Phase,
    opts: MixOptions | None = None,
    *,
    sources: list[str] | None = None,
    to: str | None = None,
    no_clobber: bool = False,
    progress: ProgressFactory = no_progress,
) -> MixResult:
    """One job of the two-phase run of ``run_mix(inputs, output, opts, ...)``."""
    started = time.perf_counter()
    opts = opts or MixOptions()
    fmt = format_for(to, output)
    placement = opts.eot or fmt.default_eot
    if phase.name not in PHASES:
        raise UsageError(f"unknown --phase {phase.name!r}; use scatter or gather")
    if opts.shard_tokens is not None:
        raise UsageError(
            "--shard-tokens splits a one-process mix's llm.c output; a two-phase run's parts "
            "are its files (--shard J/M of the gather jobs)"
        )
    if opts.max_shard_size is not None:
        raise UsageError(
            "--max-shard-size splits a one-process mix; a two-phase run's parts are its files "
            "(--shard J/M of the gather jobs)"
        )
    val_output_of(output, fmt, opts)  # its options checked in every job, before the work
    if phase.name == "scatter" and (not phase.buckets or phase.buckets < 1):
        raise UsageError("--phase scatter needs --buckets M: the number of gather jobs")
    with contextlib.ExitStack() as stack:
        here = stack.enter_context(_buckets_at(phase))  # a URL's: through a local directory
        fingerprinted = functools.partial(
            _fingerprint, opts=opts, placement=placement, fmt=fmt.name
        )
        kept = _kept_from(here, fingerprinted) if phase.name == "gather" else None
        mix = prepare(inputs, sources, opts, placement, stack, kept)
        fingerprint = fingerprinted(mix.listed, mix.read)
        if phase.name == "scatter":
            paths, docs, tokens = _scatter(mix, opts, here, fingerprint, progress)
            header, val = None, None
        else:
            paths, docs, tokens, val = _gather(
                mix, opts, here, fingerprint, output, fmt, placement, no_clobber, progress
            )
            header = header_if_file(paths[0]) if fmt.name == "safetensors" else None
        written = Written.of(paths, main=0)
        if here is not phase:  # the buckets as they will be named, once uploaded
            written.paths = [_as_url(p, here.directory, phase.directory) for p in written.paths]
            paths = written.paths
    result = MixResult(
        paths[0], written, mix.facts, mix.selection.budget, tokens, docs,
        opts.seed, opts.shuffle, opts.dedup, time.perf_counter() - started, fmt.name, header,
        phase=f"{phase.name} {phase.index + 1}/{phase.count}",
    )  # fmt: skip
    if phase.name == "gather" and val is not None:
        result.val_output, result.val_documents, result.val_tokens = val
    return result


@contextlib.contextmanager
def _buckets_at(phase: Phase) -> Iterator[Phase]:
    """The job's phase with its buckets in a local directory: the phase's own, or for an
    object-store prefix (``--bucket-dir s3://b/run``) a temporary one, filled first from the
    prefix for a gather job (the markers and its own bucket of every scatter job), uploaded
    after a scatter job's work (its buckets, then its marker, so a marker never stands for a
    bucket that is not there)."""
    if not is_url(phase.directory):
        yield phase
        return
    prefix = phase.directory.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="embedcli-buckets-") as local:
        if phase.name == "gather":
            mine = f"bucket-{phase.index:05d}-from-"
            found, _ = list_objects(
                prefix + "/", lambda _, n: n.startswith(("scatter-", _KEPT, mine))
            )
            for url, _ in found:
                fetch(url, local)
        yield replace(phase, directory=local)
        if phase.name == "scatter":
            names = sorted(os.listdir(local), key=lambda n: (n.startswith("scatter-"), n))
            for name in names:
                upload(os.path.join(local, name), f"{prefix}/{name}")


def _as_url(path: str, local: str, prefix: str) -> str:
    inside = os.path.relpath(path, local)
    return path if inside.startswith("..") else f"{prefix.rstrip('/')}/{inside}"


def _fingerprint(
    listed: list[tuple[str, list[str]]],
    read: list[MixInput],
    opts: MixOptions,
    placement: str,
    fmt: str,
) -> str:
    """What every job of one run agrees on: the sources as given (names, files, document and
    token counts: the same in every job, wherever a URL was fetched to) and the options."""
    listing = [
        [name, files, int(s.starts.size), int((s.ends - s.starts).sum())]
        for (name, files), s in zip(listed, read, strict=True)
    ]
    doc = [listing, repr(opts), placement, fmt]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def _places(mix: Prepared, opts: MixOptions, buckets: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each source, each taken document's sort key (its hash, or with ``--no-shuffle``
    its rank in source order) and its bucket (the range of keys it falls in)."""
    total = sum(t.documents for t in mix.selection.sources)
    placed, before = [], 0
    for k, taken in enumerate(mix.selection.sources):
        if opts.shuffle:
            key = keys(opts.seed, ORDER, k, taken.passes, taken.docs)
            bucket = (((key >> np.uint64(32)) * np.uint64(buckets)) >> np.uint64(32)).astype(
                np.int64
            )
        else:  # source order: pass, then the document's index; ranks after earlier sources
            rank = np.empty(taken.documents, np.int64)
            rank[np.lexsort((taken.docs, taken.passes))] = np.arange(taken.documents) + before
            key = rank.astype(np.uint64)
            bucket = rank * buckets // max(total, 1)
        before += taken.documents
        placed.append((key, bucket))
    return placed


def _scatter(
    mix: Prepared, opts: MixOptions, phase: Phase, fingerprint: str, progress: ProgressFactory
) -> tuple[list[str], int, int]:
    assert phase.buckets is not None
    os.makedirs(phase.directory, exist_ok=True)
    placed = _places(mix, opts, phase.buckets)
    mine = []  # for each source: the positions of taken documents in this job's share
    for s, taken in zip(mix.read, mix.selection.sources, strict=True):
        docs = s.kept[taken.docs]
        n = s.starts.size
        lo, hi = n * phase.index // phase.count, n * (phase.index + 1) // phase.count
        mine.append(np.flatnonzero((docs >= lo) & (docs < hi)))
    paths, docs_written, tokens = [], 0, 0
    with progress("scatter", phase.buckets, "blocks") as advance:
        for j in range(phase.buckets):
            path = _bucket_path(phase.directory, j, phase.index, phase.count)
            docs, ids = _write_bucket(mix, placed, mine, j, path, fingerprint, opts.memory)
            docs_written, tokens = docs_written + docs, tokens + ids
            paths.append(path)
            advance(1)
    if (opts.dedup or opts.holds_out) and phase.index == 0:  # what every job found, for
        paths.append(_write_kept(mix, phase.directory, fingerprint))  # the gather jobs
    marker = _marker_path(phase.directory, phase.index, phase.count)
    done = {"fingerprint": fingerprint, "buckets": phase.buckets, "scatter_jobs": phase.count}
    with atomic_file(marker, output=False) as f:
        f.write(json.dumps(done).encode())
    return [marker, *paths], docs_written, tokens


def _write_bucket(
    mix: Prepared,
    placed: list[tuple[np.ndarray, np.ndarray]],
    mine: list[np.ndarray],
    j: int,
    path: str,
    fingerprint: str,
    memory: int,
) -> tuple[int, int]:
    """Bucket ``j`` of this job's share: sort keys, sources, positions, lengths and ids."""
    from safetensors.numpy import save

    sort, source, position, lengths, starts = [], [], [], [], []
    for k, (s, taken, (key, bucket), share) in enumerate(
        zip(mix.read, mix.selection.sources, placed, mine, strict=True)
    ):
        at = share[bucket[share] == j]
        docs = s.kept[taken.docs[at]]
        sort.append(key[at])
        source.append(np.full(at.size, k, np.int64))
        position.append(at.astype(np.int64))
        lengths.append((s.ends - s.starts)[docs])
        starts.append(s.starts[docs])
    begin, length, of = np.concatenate(starts), np.concatenate(lengths), np.concatenate(source)
    ids = read_spans([s.ids for s in mix.read], of, begin, begin + length, memory)
    tensors = {
        "sort": np.concatenate(sort).astype(np.uint64),
        "source": of,
        "position": np.concatenate(position),
        "lengths": length.astype(np.int64),
        "ids": ids,
    }
    with atomic_file(path, output=False) as f:
        f.write(save(tensors, metadata={"mix_fingerprint": fingerprint}))
    return int(tensors["lengths"].size), int(tensors["ids"].size)


def _write_kept(mix: Prepared, directory: str, fingerprint: str) -> str:
    """What ``--dedup exact`` keeps and what the validation split holds out, a bit a document,
    for the gather jobs: every job finds the same, but hashing every document of every source
    is most of a job's work."""
    from safetensors.numpy import save

    tensors = {}
    for k, s in enumerate(mix.read):
        mask = np.zeros(s.starts.size, bool)
        mask[s.kept] = True
        mask[s.held] = True  # dedup's result, before the validation split took its share
        tensors[f"kept_{k}"] = np.packbits(mask)
        held = np.zeros(s.starts.size, bool)
        held[s.held] = True
        tensors[f"held_{k}"] = np.packbits(held)
    path = os.path.join(directory, _KEPT + ".safetensors")
    with atomic_file(path, output=False) as f:
        f.write(save(tensors, metadata={"mix_fingerprint": fingerprint}))
    return path


def _kept_from(phase: Phase, fingerprint: Callable[..., str]) -> KeptMasks:
    """What the scatter phase found (``--dedup exact``'s documents kept, the validation
    split's held out), if it wrote it for this run (a gather job hashes every document itself
    otherwise)."""

    def found(
        listed: list[tuple[str, list[str]]], read: list[MixInput], which: str
    ) -> list[np.ndarray] | None:
        from safetensors import SafetensorError, safe_open

        path = os.path.join(phase.directory, _KEPT + ".safetensors")
        try:
            with safe_open(path, framework="numpy") as f:
                if (f.metadata() or {}).get("mix_fingerprint") != fingerprint(listed, read):
                    return None
                packed = [f.get_tensor(f"{which}_{k}") for k in range(len(read))]
        except (OSError, SafetensorError):
            return None
        return [
            np.unpackbits(p, count=s.starts.size).astype(bool)
            for p, s in zip(packed, read, strict=True)
        ]

    return found


def _bucket_path(directory: str, bucket: int, job: int, jobs: int) -> str:
    return os.path.join(
        directory, f"bucket-{bucket:05d}-from-{job + 1:05d}-of-{jobs:05d}.safetensors"
    )


def _marker_path(directory: str, job: int, jobs: int) -> str:
    return os.path.join(directory, f"scatter-{job + 1:05d}-of-{jobs:05d}.done.json")


def _scatter_jobs(directory: str, fingerprint: str, buckets: int) -> int:
    """The number of scatter jobs, once every one has finished this run's buckets."""
    try:
        markers = sorted(n for n in os.listdir(directory) if n.startswith("scatter-"))
    except OSError:
        raise InputError(f"{directory}: no scatter output (run --phase scatter first)") from None
    found = []
    for name in markers:
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            done = json.load(f)
        if done.get("fingerprint") == fingerprint:
            found.append(done)
    if not found:
        raise InputError(
            f"{directory}: no scatter job of this run has finished (other inputs or options?)"
        )
    jobs = int(found[0]["scatter_jobs"])
    if int(found[0]["buckets"]) != buckets:
        raise UsageError(
            f"the scatter jobs wrote {found[0]['buckets']} buckets: run {found[0]['buckets']} "
            f"gather jobs (--shard J/{found[0]['buckets']}), not {buckets}"
        )
    for job in range(jobs):
        path = _marker_path(directory, job, jobs)
        try:
            with open(path, encoding="utf-8") as f:
                finished = json.load(f).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            finished = False
        if not finished:
            raise InputError(f"scatter job {job + 1} of {jobs} has not finished (no {path})")
    return jobs


def _gather(
    mix: Prepared,
    opts: MixOptions,
    phase: Phase,
    fingerprint: str,
    output: str,
    fmt: TokenFormat,
    placement: str,
    no_clobber: bool,
    progress: ProgressFactory,
) -> tuple[list[str], int, int, tuple[str, int, int] | None]:
    """Gather job J: part J of the output, the manifest last; job 1 also writes the validation
    split (what one process writes, from the sources) or removes an older run's."""
    jobs = _scatter_jobs(phase.directory, fingerprint, phase.count)
    sort, source, position, lengths, ids = _bucket(phase.directory, phase.index, jobs, fingerprint)
    # the one process's order: by key, ties in source then position order (or by rank)
    by = np.lexsort((position, source, sort)) if opts.shuffle else np.argsort(sort, kind="stable")
    ends = np.cumsum(lengths)
    starts = ends - lengths
    manifest = shard_manifest(output, [(fingerprint, 0)], phase.count, fmt.name, fmt.suffixes)
    part = os.path.join(os.path.dirname(output), manifest["shards"][phase.index])
    check_output(part, inputs=mix.paths, no_clobber=no_clobber)
    val_output = val_name(output, fmt.suffixes)
    if phase.index == 0 and opts.holds_out:
        check_output(val_output, inputs=mix.paths, no_clobber=no_clobber)
    with contextlib.ExitStack() as stack:
        sink = SpillSink(stack.enter_context(spill_file(part)), part)
        which = np.zeros(by.size, np.int64)
        doc_offsets = write_documents(
            [Segmented([ids])], which, starts[by], ends[by], placement, mix.eot, sink, progress
        )
        meta = mix_metadata(mix, opts, placement, doc_offsets)
        meta |= c.shard_fields(phase.index, phase.count, manifest["shard_set"])
        if opts.holds_out:  # every part names the split; the run's fingerprint pairs them
            fraction = held_fraction(mix.read, opts.val_fraction)
            meta |= c.split_fields("train", fraction, opts.seed, val_output, fingerprint)
        sink.f.flush()
        files = stack.enter_context(OutputSet(no_clobber=no_clobber))
        val = None
        if phase.index == 0 and opts.holds_out:
            where = manifest_path(output)  # the split's partner
            val = _held_out(mix, opts, val_output, where, fmt, placement, fingerprint, files, stack)
        elif phase.index == 0:
            files.replaces(stale_val(val_output, fmt))
        paths = fmt.write(
            part, sink.f, sink.count, doc_offsets, meta,
            inputs=mix.paths, no_clobber=no_clobber, files=files,
        )  # fmt: skip
        origin = origins_of(mix, source[by], position[by])
        text = text_origins(recorded_texts(mix.read), origin[0], origin[1])
        paths.append(write_provenance(files, part, doc_offsets, *origin, mix.named, text))
        where = manifest_path(output)
        files.replaces(stale_shards(where, manifest, mix.paths))
        files.pointer(where, manifest)
        files.commit()
    written = [*paths, *(val[0] if val else []), where]
    return written, int(doc_offsets.size - 1), sink.count, val[1] if val else None


def _held_out(
    mix: Prepared,
    opts: MixOptions,
    val_output: str,
    train: str,
    fmt: TokenFormat,
    placement: str,
    pair: str,
    files: OutputSet,
    stack: contextlib.ExitStack,
) -> tuple[list[str], tuple[str, int, int]]:
    """The validation split, as the one-process run writes it (its documents read from the
    sources, in its order), paired with the manifest; added to ``files``. Returns its paths
    and ``(name, documents, ids)``."""
    held, documents = held_documents(mix.read, opts.seed, opts.shuffle)
    sink, offsets = spill_documents(
        mix, val_output, *held, placement, stack, no_progress, opts.memory
    )
    meta = mix_metadata(mix, opts, placement, offsets)
    meta |= c.split_fields(
        "val", held_fraction(mix.read, opts.val_fraction), opts.seed, train, pair
    )
    paths = fmt.write(
        val_output, sink.f, sink.count, offsets, meta,
        inputs=mix.paths, no_clobber=files.no_clobber, files=files,
    )  # fmt: skip
    origin = (held[0], documents, np.zeros(documents.size, np.int64))
    text = text_origins(recorded_texts(mix.read), origin[0], origin[1])
    paths.append(write_provenance(files, val_output, offsets, *origin, mix.named, text))
    return paths, (val_output, int(offsets.size - 1), sink.count)


def _bucket(
    directory: str, bucket: int, jobs: int, fingerprint: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bucket ``bucket`` of every scatter job, joined: keys, sources, positions, lengths, ids."""
    from safetensors import safe_open

    parts: list[dict[str, np.ndarray]] = []
    for job in range(jobs):
        path = _bucket_path(directory, bucket, job, jobs)
        try:
            with safe_open(path, framework="numpy") as f:
                if (f.metadata() or {}).get("mix_fingerprint") != fingerprint:
                    raise InputError(f"{path}: written by another run's scatter job")
                parts.append({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
        except OSError:
            raise InputError(f"{path}: missing (scatter job {job + 1} of {jobs})") from None
    joined = [
        np.concatenate([p[k] for p in parts])
        for k in ("sort", "source", "position", "lengths", "ids")
    ]
    return joined[0], joined[1], joined[2], joined[3].astype(np.int64), joined[4]
