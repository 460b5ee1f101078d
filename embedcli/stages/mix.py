"""The mix stage: token files of several sources to one training corpus, by a token budget at
given weights, documents shuffled across all of them, exact duplicates dropped.

Each source is read as the other stages read token files (any format, a manifest, a shard set),
its documents cut out of the stream with their separators removed (where the source's own
placement put them), the selection and order computed from the documents' lengths
(:mod:`embedcli.mixing`), and the chosen documents written, separated as the output format's
trainers expect, to a spill file and through the format's writer, committed as one
:class:`~embedcli.storage.output_set.OutputSet`. The metadata records the inputs, weights,
budget, seed and what each source gave, so a rerun with the same arguments writes the same
bytes.

This step reads the sources whole (memory-mapped where their format allows: a shuffled order
reads them at random, fast while they fit in the page cache).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.formats import format_for
from embedcli.inputs import Request, TokenSource, open_input
from embedcli.mixing import Selection, first_occurrences, order, parse_weights, select
from embedcli.options import DEFAULT_SEED
from embedcli.progress import ProgressFactory, no_progress
from embedcli.stages.common import SpillSink, remote_output, spill_file
from embedcli.stages.results import MixResult, MixSource, Written
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
_AGREE = (c.ENCODING, c.VOCAB_SIZE, c.EOT_ID, c.TOKENIZER_SHA256)
WRITE_IDS = 1 << 22  # ids gathered and written at once


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


@dataclass
class _Source:
    """One source read: its name, files, ids, and each document's span without separators."""

    name: str
    inputs: list[str]
    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    metadata: dict[str, str]
    duplicates: int = 0
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # after dedup

    @property
    def lengths(self) -> np.ndarray:
        return (self.ends - self.starts)[self.kept]


def sources_of(inputs: list[str], named: list[str]) -> list[tuple[str, list[str]]]:
    """``(name, files)`` of each source: every input alone, named by its file's stem
    (``web.tokens.safetensors`` is ``web``), then each ``--source NAME=GLOB``."""
    found = [(_stem(p), [p]) for p in inputs]
    for spec in named:
        name, sep, pattern = spec.partition("=")
        if not sep or not name.strip() or not pattern:
            raise UsageError(f"--source {spec}: give NAME=GLOB (e.g. web=data/web-*.bin)")
        files = sorted(glob.glob(pattern)) or ([pattern] if os.path.exists(pattern) else [])
        if not files:
            raise UsageError(f"--source {spec}: no file matches {pattern}")
        found.append((name.strip(), files))
    names = [n for n, _ in found]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"two sources are called {name}: name them with --source NAME=GLOB")
    if not found:
        raise UsageError("give the token files to mix (or --source NAME=GLOB)")
    return found


def _stem(path: str) -> str:
    name = os.path.basename(path.rstrip("/"))
    for end in (".manifest.json", ".index.json", ".safetensors", ".json", ".bin", ".npy"):
        name = name.removesuffix(end)
    return name.removesuffix(".tokens") or name


def _read(name: str, files: list[str], stack: contextlib.ExitStack) -> _Source:
    found = stack.enter_context(open_input(files, Request()))
    if found.reader == "text":
        raise UsageError(
            f"source {name}: {files[0]} is text; tokenize it first "
            f"(embedcli tokenize {files[0]} -o {name}.tokens.safetensors)"
        )
    source = found.load(no_progress)
    if not isinstance(source, TokenSource):
        raise UsageError(f"source {name}: {files[0]} holds windows, not documents; mix token files")
    if source.doc_offsets is None:
        source = replace(
            source, doc_offsets=_offsets_from_marks(source, f"source {name} ({files[0]})")
        )
    starts, ends = _bodies(source, f"source {name} ({files[0]})")
    # a plain array over the same memory: np.memmap's slicing costs 6 us a document
    ids = np.asarray(source.ids).view(np.ndarray)
    return _Source(name, list(found.paths), ids, starts, ends, dict(source.metadata))


def _offsets_from_marks(source: TokenSource, what: str) -> np.ndarray:
    """The documents of a file that records no offsets (nanoGPT's, llm.c's, npy), found at its
    separators: exact only where no document holds the separator's id, which its lineage says
    (``--special text``, the trainers' default: a literal marker was encoded as text)."""
    meta = source.metadata
    eot, placement = c.get_int(meta, c.EOT_ID), meta.get(c.EOT_PLACEMENT, "between")
    if eot is None or meta.get(c.SPECIAL) != "text" or placement == "none":
        raise FormatError(
            f"{what}: does not mark its documents (no doc_offsets, and its separator may also "
            "be text: --special is not text, or no sidecar says); mix needs documents"
        )
    at = np.flatnonzero(np.asarray(source.ids) == eot).astype(np.int64)
    size = np.array([source.ids.size], np.int64)
    if placement == "before":  # each document opens with one
        starts = at
    else:  # after: each closes its document; between: each closes all but the last
        starts = np.concatenate([[0], at + 1])
        if placement == "after" and starts[-1] == size[0]:
            starts = starts[:-1]
    return np.concatenate([starts, size]).astype(np.int64)


def _bodies(source: TokenSource, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Each document's span without the separator its placement gave it, checked."""
    assert source.doc_offsets is not None
    off = source.doc_offsets.astype(np.int64)
    starts, ends = off[:-1].copy(), off[1:].copy()
    placement = source.metadata.get(c.EOT_PLACEMENT, "between")
    eot = c.get_int(source.metadata, c.EOT_ID)
    if placement == "none" or starts.size == 0:
        return starts, ends
    if placement == "before":
        marks, starts = starts, starts + 1
    elif placement == "after":
        ends = ends - 1
        marks = ends
    else:  # between: every document but the last ends with the one before the next
        ends[:-1] -= 1
        marks = ends[:-1]
    if (
        eot is None
        or (marks.size and not (source.ids[marks] == eot).all())
        or (ends < starts).any()
    ):
        raise FormatError(
            f"{what}: its documents are not marked by id {eot} where its metadata says "
            f"({placement}); the file is damaged or its lineage wrong"
        )
    return starts, ends


def _as_u4(ids: np.ndarray) -> np.ndarray:
    """The ids as little-endian uint32 (what a digest is taken of, whatever the file's dtype):
    a view of 4-byte ids, a copy of others."""
    if ids.dtype.itemsize == 4 and ids.dtype.kind in "iu" and ids.dtype.byteorder in "<=|":
        return ids.view("<u4")
    return ids.astype("<u4")


def _dedup(sources: list[_Source]) -> None:
    """Keep the first of each distinct document (a 128-bit digest of its ids), in source order."""
    digests = [
        hashlib.blake2b(ids[a:b].data, digest_size=16).digest()
        for s in sources
        for ids in [_as_u4(s.ids)]
        for a, b in zip(s.starts.tolist(), s.ends.tolist(), strict=True)
    ]
    keep = first_occurrences(digests)
    at = 0
    for s in sources:
        mine = keep[at : at + s.starts.size]
        at += s.starts.size
        s.kept = np.flatnonzero(mine).astype(np.int64)
        s.duplicates = int(mine.size - s.kept.size)


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
    with contextlib.ExitStack() as stack:
        mix = prepare(inputs, sources, opts, placement, stack)
        check_output(output, inputs=mix.paths, no_clobber=no_clobber)
        notes = stale_temps(output)
        source_of, position = order(mix.selection, opts.seed, opts.shuffle)
        starts, ends = _spans(mix.read, mix.selection, source_of, position)
        sink = SpillSink(stack.enter_context(spill_file(output)), output)
        ids = [s.ids for s in mix.read]
        doc_offsets = write_documents(
            ids, source_of, starts, ends, placement, mix.eot, sink, progress
        )
        meta = mix_metadata(mix, opts, placement, doc_offsets)
        sink.f.flush()
        files = stack.enter_context(OutputSet(no_clobber=no_clobber))
        paths = fmt.write(
            output, sink.f, sink.count, doc_offsets, meta,
            inputs=mix.paths, no_clobber=no_clobber, files=files,
        )  # fmt: skip
        files.commit()
    header = header_if_file(output) if fmt.name == "safetensors" else None
    return MixResult(
        output, Written.of(paths, main=0), mix.facts, mix.selection.budget, sink.count,
        int(doc_offsets.size - 1), opts.seed, opts.shuffle, opts.dedup,
        time.perf_counter() - started, fmt.name, header, notes,
    )  # fmt: skip


@dataclass
class Prepared:
    """The sources read and the selection made: what every way of writing a mix starts from
    (one process, or each job of a two-phase run, which all compute the same)."""

    listed: list[tuple[str, list[str]]]
    read: list[_Source]
    first: _Source
    weights: list[float]
    selection: Selection
    facts: list[MixSource]

    @property
    def paths(self) -> list[str]:
        return [p for s in self.read for p in s.inputs]

    @property
    def eot(self) -> int | None:
        return c.get_int(self.first.metadata, c.EOT_ID)


def prepare(
    inputs: list[str],
    sources: list[str] | None,
    opts: MixOptions,
    placement: str,
    stack: contextlib.ExitStack,
) -> Prepared:
    """Read the sources (kept open by ``stack``), drop duplicates, select the documents."""
    if opts.max_repeat <= 0:
        raise UsageError(f"--max-repeat must be above 0 (got {opts.max_repeat:g})")
    listed = sources_of(inputs, list(sources or []))
    read = [_read(name, files, stack) for name, files in listed]
    first = _agreeing(read, placement)
    if opts.dedup:
        _dedup(read)
    else:
        for s in read:
            s.kept = np.arange(s.starts.size, dtype=np.int64)
    names = [s.name for s in read]
    lengths = [s.lengths for s in read]
    weights = parse_weights(opts.weights, names, [int(x.sum()) for x in lengths])
    selection = select(lengths, weights, opts.tokens, opts.max_repeat, opts.seed, names)
    facts = _facts(read, listed, selection, weights)
    return Prepared(listed, read, first, weights, selection, facts)


def _agreeing(read: list[_Source], placement: str) -> _Source:
    """The first source, after checking that every source holds the same tokenizer's ids and
    that the output's placement uses the same marker."""
    first = read[0]
    for s in read[1:]:
        for key in _AGREE:
            if s.metadata.get(key) != first.metadata.get(key):
                raise UsageError(
                    f"sources {first.name} and {s.name} hold different tokenizers' ids "
                    f"({key} {first.metadata.get(key)} against {s.metadata.get(key)}); "
                    "mix token files of one tokenizer"
                )
    if c.EOT_ID not in first.metadata:
        raise UsageError(f"source {first.name}: its metadata names no document marker (eot_id)")
    given = first.metadata.get(c.EOT_PLACEMENT, "between")
    if c.TOKENIZER_KIND in first.metadata and (given == "before") != (placement == "before"):
        raise UsageError(
            f"the sources mark documents with a token placed {given}, which this output "
            f"would place {placement}: give --eot {given}, or tokenize for this format"
        )
    return first


def _spans(
    read: list[_Source], selection: Selection, source_of: np.ndarray, position: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each output document's ids lie in its source: ``(starts, ends)``."""
    starts = np.empty(source_of.size, np.int64)
    ends = np.empty(source_of.size, np.int64)
    for k, (s, taken) in enumerate(zip(read, selection.sources, strict=True)):
        mine = source_of == k
        docs = s.kept[taken.docs[position[mine]]]
        starts[mine], ends[mine] = s.starts[docs], s.ends[docs]
    return starts, ends


def write_documents(
    ids: list[np.ndarray],
    source_of: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    placement: str,
    eot: int | None,
    sink: SpillSink,
    progress: ProgressFactory,
) -> np.ndarray:
    """The documents ``ids[source_of[j]][starts[j]:ends[j]]`` to ``sink`` in order,
    separated as ``placement`` says; their offsets."""
    offsets = _offsets(ends - starts, placement)
    mark = np.array([eot if eot is not None else 0], np.int32)
    before = placement == "before"
    after = placement == "after"
    between = placement == "between"
    parts: list[np.ndarray] = []
    pending = 0
    with progress("mix", int(offsets[-1]), "tokens") as advance:
        for j, (k, a, b) in enumerate(
            zip(source_of.tolist(), starts.tolist(), ends.tolist(), strict=True)
        ):
            if before or (between and j):
                parts.append(mark)
            parts.append(ids[k][a:b])
            if after:
                parts.append(mark)
            pending += b - a + 1
            if pending >= WRITE_IDS:
                _flush(parts, sink, advance)
                pending = 0
        _flush(parts, sink, advance)
    return offsets


def _offsets(lengths: np.ndarray, placement: str) -> np.ndarray:
    """Where each document starts, and the end, as tokenize records them: at the separator
    that opens a document (``before``), past the one that closes the document before it
    (``between``), at the document's own ids (``after``, ``none``)."""
    n = lengths.size
    if placement in ("before", "after"):
        sizes = lengths + 1
    elif placement == "between":
        sizes = lengths + (np.arange(n) < n - 1)  # each but the last closed by one
    else:
        sizes = lengths
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _flush(parts: list[np.ndarray], sink: SpillSink, advance: Callable[[int], None]) -> None:
    if parts:
        chunk = np.concatenate(parts).astype(np.int32, copy=False)
        sink.write(chunk)
        advance(int(chunk.size))
        parts.clear()


def _facts(
    read: list[_Source],
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
