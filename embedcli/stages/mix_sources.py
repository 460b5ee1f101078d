"""The sources of a mix: token files read as documents, their separators removed and checked,
exact duplicates found (``stages/mix.py`` assembles them)."""

from __future__ import annotations

import contextlib
import glob
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.formats.base import sidecar_subject
from embedcli.formats.provenance import TextOrigins, offsets_at, provenance_beside
from embedcli.inputs import Request, TokenSource, open_input
from embedcli.inputs.token_files import documents_of
from embedcli.mixing import HELD, first_occurrences, keys
from embedcli.progress import no_progress
from embedcli.stages.segmented import Segmented
from embedcli.storage.manifest import is_manifest


@dataclass
class MixInput:
    """One source read: its name, files, ids, and each document's span without separators."""

    name: str
    inputs: list[str]
    ids: Segmented
    starts: np.ndarray
    ends: np.ndarray
    metadata: dict[str, str]
    duplicates: int = 0
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # after dedup
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # validation

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


def read_source(name: str, files: list[str], stack: contextlib.ExitStack) -> MixInput:
    found = stack.enter_context(open_input(files, Request()))
    if found.reader == "text":
        raise UsageError(
            f"source {name}: {files[0]} is text; tokenize it first "
            f"(embedcli tokenize {files[0]} -o {name}.tokens.safetensors)"
        )
    source = found.load(no_progress)
    if not isinstance(source, TokenSource):
        raise UsageError(f"source {name}: {files[0]} holds windows, not documents; mix token files")
    ids = Segmented(source.segments)
    if source.doc_offsets is None:
        source.doc_offsets = offsets_from_marks(source, ids, f"source {name} ({files[0]})")
    starts, ends = bodies(source, ids, f"source {name} ({files[0]})")
    return MixInput(name, list(found.paths), ids, starts, ends, dict(source.metadata))


def offsets_from_marks(source: TokenSource, ids: Segmented, what: str) -> np.ndarray:
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
    return offsets_at(ids.where(eot), ids.size, placement)


def bodies(source: TokenSource, ids: Segmented, what: str) -> tuple[np.ndarray, np.ndarray]:
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
    if eot is None or (marks.size and not (ids.take(marks) == eot).all()) or (ends < starts).any():
        raise FormatError(
            f"{what}: its documents are not marked by id {eot} where its metadata says "
            f"({placement}); the file is damaged or its lineage wrong"
        )
    return starts, ends


def dedup(sources: list[MixInput]) -> None:
    """Keep the first of each distinct document (a 128-bit digest of its ids), in source order."""
    # Only documents that share a cheap key (length and four ids, read at once) can be equal:
    # the rest are kept unhashed, hashing being most of a mix's time. The same documents are
    # dropped as hashing every one would drop.
    cheap = np.concatenate([_cheap_keys(s) for s in sources])
    _, inverse, counts = np.unique(cheap, return_inverse=True, return_counts=True)
    shared = counts[inverse.reshape(-1)] > 1
    bounds = np.cumsum([0] + [s.starts.size for s in sources])
    digests = []
    for s, a, b in zip(sources, bounds, bounds[1:], strict=False):
        mine = np.flatnonzero(shared[a:b])
        digests += s.ids.digests(s.starts[mine], s.ends[mine], 16)
    keep = np.ones(cheap.size, bool)
    keep[np.flatnonzero(shared)] = first_occurrences(digests)
    keep_only(sources, [keep[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])


def _cheap_keys(source: MixInput) -> np.ndarray:
    """A 64-bit key of each document that equal documents share: its length and its first,
    second, middle and last ids, mixed."""
    starts, ends, ids = source.starts, source.ends, source.ids
    lengths = (ends - starts).astype(np.uint64)
    key = lengths * np.uint64(0x9E3779B97F4A7C15)
    if ids.size == 0:
        return key
    top = ids.size - 1
    for at in (starts, starts + 1, (starts + ends) // 2, ends - 1):
        value = ids.take(np.clip(at, 0, top)).astype(np.uint64)
        value[at >= ends] = 0  # past a short document: not its id
        value[at < starts] = 0
        key = (key ^ value) * np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(31)
    return key


def keep_only(sources: list[MixInput], masks: list[np.ndarray]) -> None:
    """Each source's documents where its mask is true kept, the others counted as duplicates."""
    for s, mine in zip(sources, masks, strict=True):
        s.kept = np.flatnonzero(mine).astype(np.int64)
        s.duplicates = int(mine.size - s.kept.size)


def held_fraction(read: list[MixInput], val_fraction: float) -> float:
    """The share of documents held out, as the split's metadata records it (``--val-tokens``:
    the share that budget took)."""
    n_held = sum(int(s.held.size) for s in read)
    pool = n_held + sum(int(s.kept.size) for s in read)
    return val_fraction or round(n_held / max(pool, 1), 6)


def held_documents(
    read: list[MixInput], seed: int, shuffle: bool
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """The validation documents, each once: shuffled by their keys, or in source order;
    ``((source, starts, ends), document indices)``."""
    source_of, starts, ends, sort, documents = [], [], [], [], []
    for k, s in enumerate(read):
        docs = np.sort(s.held)
        source_of.append(np.full(docs.size, k, np.int64))
        starts.append(s.starts[docs])
        ends.append(s.ends[docs])
        sort.append(keys(seed, HELD, k, np.zeros(docs.size, np.int64), docs))
        documents.append(docs)
    joined = [np.concatenate(x) for x in (source_of, starts, ends, sort, documents)]
    by = np.argsort(joined[3], kind="stable") if shuffle else np.arange(joined[0].size)
    return (joined[0][by], joined[1][by], joined[2][by]), joined[4][by]


def held_only(sources: list[MixInput], masks: list[np.ndarray]) -> None:
    """Each source's kept documents where its mask is true moved to the validation split, as
    :func:`hold_out` found them (in a scatter job)."""
    for s, mine in zip(sources, masks, strict=True):
        pick = mine[s.kept]
        s.held, s.kept = s.kept[pick], s.kept[~pick]


def hold_out(sources: list[MixInput], seed: int, fraction: float, tokens: int | None) -> None:
    """Move documents from each source's ``kept`` to its ``held`` (the validation split):
    those whose draw (a 64-bit digest of the seed and the document's ids) falls under
    ``fraction``, or, for a budget of ``tokens``, the lowest draws of all sources until it is
    met. A document's split is a property of its ids: an identical document, wherever it
    lies and whatever the sources are called, is always on the same side."""
    draws = [_draws(s, seed) for s in sources]
    if tokens is None:
        limit = int(fraction * 2**64)
        chosen = [d < np.uint64(min(limit, 2**64 - 1)) for d in draws]
    else:
        every = np.concatenate(draws) if draws else np.zeros(0, np.uint64)
        sizes = np.concatenate([s.lengths for s in sources]) if sources else np.zeros(0)
        by = np.argsort(every, kind="stable")
        upto = int(np.searchsorted(np.cumsum(sizes[by]), tokens)) + 1
        mask = np.zeros(every.size, bool)
        mask[by[:upto]] = True
        at = np.cumsum([0, *(d.size for d in draws)])
        chosen = [mask[a:b] for a, b in zip(at[:-1], at[1:], strict=True)]
    for s, pick in zip(sources, chosen, strict=True):
        s.held, s.kept = s.kept[pick], s.kept[~pick]


def _draws(source: MixInput, seed: int) -> np.ndarray:
    key = (seed & (2**64 - 1)).to_bytes(8, "little")
    kept = source.ids.digests(source.starts[source.kept], source.ends[source.kept], 8, key)
    return np.array([int.from_bytes(d, "little") for d in kept], np.uint64)


def recorded_texts(read: list[MixInput]) -> list[TextOrigins | None]:
    """Each source's documents' text files and places, as ``tokenize --provenance`` recorded
    them (None for a source whose files did not): read once a run, for all its outputs."""
    return [_recorded(s.inputs, int(s.starts.size)) for s in read]


def text_origins(
    found: list[TextOrigins | None], source: np.ndarray, document: np.ndarray
) -> TextOrigins | None:
    """For documents given by source and index there, the text file and place recorded for
    each (:func:`recorded_texts`; ``file`` -1 where a source's files hold no such record),
    and their ids where every source's files recorded them (``--id-key``); None where no
    source's files recorded their text."""
    if all(f is None for f in found):
        return None
    file = np.full(source.size, -1, np.int32)
    at = np.zeros(source.size, np.int64)
    texts: list[dict[str, Any]] = []
    each = all(f is not None and f.ids is not None for f in found)
    ids = np.empty(source.size, object) if each else None
    for k, got in enumerate(found):
        if got is None:
            continue
        mine = source == k
        file[mine] = got.file[document[mine]] + len(texts)
        at[mine] = got.at[document[mine]]
        texts += got.files
        if ids is not None and got.ids is not None:
            ids[mine] = np.asarray(got.ids, object)[document[mine]]
    return TextOrigins(file, at, texts, None if ids is None else ids.tolist())


def _recorded(paths: list[str], count: int) -> TextOrigins | None:
    """The text files and places of a source's ``count`` documents, joined across its files,
    where every file has a provenance of its own that records them; else None."""
    if paths and is_manifest(paths[0]):  # [manifest, *its parts]: the parts' own, joined
        paths = paths[:1]
    subjects = [sidecar_subject(p) for p in paths]
    if not all(
        is_manifest(p) or provenance_beside(s) for p, s in zip(paths, subjects, strict=True)
    ):
        return None  # the usual case: nothing more is read
    files: list[np.ndarray] = []
    at: list[np.ndarray] = []
    texts: list[dict[str, Any]] = []
    ids: list[str] | None = []
    for path in paths:
        with open_input([path], Request()) as found:
            source = found.load(no_progress)
            assert isinstance(source, TokenSource)
            got = documents_of(found, source, path)[1]
        if got is None or got.file is None or got.at is None:
            return None
        files.append(np.where(got.file >= 0, got.file + len(texts), -1))
        at.append(got.at)
        texts += got.files
        ids = None if ids is None or got.ids is None else ids + got.ids
    file = np.concatenate(files)
    return TextOrigins(file, np.concatenate(at), texts, ids) if file.size == count else None
