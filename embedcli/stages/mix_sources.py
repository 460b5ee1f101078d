"""The sources of a mix: token files read as documents, their separators removed and checked,
exact duplicates found (``stages/mix.py`` assembles them)."""

from __future__ import annotations

import bisect
import contextlib
import glob
import hashlib
import mmap
import os
from dataclasses import dataclass, field

import numpy as np

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.formats.provenance import offsets_at
from embedcli.inputs import Request, TokenSource, open_input
from embedcli.mixing import first_occurrences
from embedcli.progress import no_progress

# How much a pass over a source reads before it lets go of the pages it read (see release)
_RELEASE_IDS = 1 << 22
_GATHER = 1 << 18  # a document's marks gathered at once: a page each, for small documents


class Segmented:
    """A source's ids as its files hold them: memory maps in order, never joined (a source of
    several files, an llm.c shard set, a manifest's parts), so a mix holds no copy of its
    sources however large they are (a source of four files: 179 MiB of anonymous memory
    before, 33 MiB now). Positions are the joined stream's; a span that crosses
    two files (llm.c shards cut at a token count) is joined alone.

    Example:
        >>> ids = Segmented([np.array([1, 2, 3]), np.array([4, 5])])
        >>> ids.size, ids.span(1, 4).tolist(), ids.take(np.array([0, 4])).tolist()
        (5, [2, 3, 4], [1, 5])
    """

    def __init__(self, segments: list[np.ndarray]) -> None:
        self._maps = [m for p in segments if (m := getattr(p, "_mmap", None)) is not None]
        # plain arrays over the same memory: np.memmap's slicing costs 6 us a document
        self.parts = [np.asarray(p).view(np.ndarray) for p in segments] or [np.zeros(0, np.int32)]
        self.bounds = np.cumsum([0, *(p.size for p in self.parts)]).tolist()
        self.size = int(self.bounds[-1])
        self.dtype = self.parts[0].dtype

    def span(self, a: int, b: int) -> np.ndarray:
        """``joined[a:b]``: a view where it lies in one file."""
        if len(self.parts) == 1 or b <= a:
            return self.parts[0][a:b] if b > a else self.parts[0][:0]
        k = bisect.bisect_right(self.bounds, a) - 1
        if k < len(self.parts) and b <= self.bounds[k + 1]:
            return self.parts[k][a - self.bounds[k] : b - self.bounds[k]]
        pieces = []
        while a < b:
            end = min(b, self.bounds[k + 1])
            pieces.append(self.parts[k][a - self.bounds[k] : end - self.bounds[k]])
            a, k = end, k + 1
        return np.concatenate(pieces) if pieces else self.parts[0][:0]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """``joined[positions]`` (increasing: a document's marks), read a chunk at a time."""
        which = np.searchsorted(self.bounds, positions, "right") - 1
        out = np.empty(positions.size, self.dtype)
        for at in range(0, positions.size, _GATHER):
            chunk = slice(at, at + _GATHER)
            for k in np.unique(which[chunk]).tolist():
                mine = np.flatnonzero(which[chunk] == k) + at
                out[mine] = self.parts[k][positions[mine] - self.bounds[k]]
            self.release()
        return out

    def digests(
        self, starts: np.ndarray, ends: np.ndarray, size: int, key: bytes = b""
    ) -> list[bytes]:
        """A BLAKE2b digest (``size`` bytes, keyed by ``key``) of each span's ids as
        little-endian uint32, whatever the files' dtype; the pages read let go of as it goes."""
        blake2b, out, read = hashlib.blake2b, [], 0
        # one file of 4-byte ids: a view of it, sliced (a copy a document otherwise)
        one = self.parts[0]
        single = as_u4(one) if len(self.parts) == 1 and one.dtype.itemsize == 4 else None
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            ids = single[a:b] if single is not None else as_u4(self.span(a, b))
            out.append(blake2b(ids.data, digest_size=size, key=key).digest())
            read += b - a
            if read >= _RELEASE_IDS:
                self.release()
                read = 0
        self.release()
        return out

    def release(self) -> None:
        """Let go of the pages of the files read so far: the kernel keeps them in its cache
        (a later read is a minor fault), but they leave this process's resident memory. A
        pass in source order (the checks, dedup, the validation draws) lets go as it reads; a
        shuffled write still maps what it reads (on this kernel a random read maps a large
        folio around its document), clean pages the kernel reclaims under pressure."""
        for m in self._maps:
            if hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                m.madvise(mmap.MADV_DONTNEED)

    def where(self, value: int) -> np.ndarray:
        """The positions that hold ``value``, one file at a time."""
        bases = self.bounds[:-1]
        found = [np.flatnonzero(p == value) + b for p, b in zip(self.parts, bases, strict=True)]
        return np.concatenate(found).astype(np.int64)


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


def as_u4(ids: np.ndarray) -> np.ndarray:
    """The ids as little-endian uint32 (what a digest is taken of, whatever the file's dtype):
    a view of 4-byte ids, a copy of others."""
    if ids.dtype.itemsize == 4 and ids.dtype.kind in "iu" and ids.dtype.byteorder in "<=|":
        return ids.view("<u4")
    return ids.astype("<u4")


def dedup(sources: list[MixInput]) -> None:
    """Keep the first of each distinct document (a 128-bit digest of its ids), in source order."""
    digests = [d for s in sources for d in s.ids.digests(s.starts, s.ends, 16)]
    keep = first_occurrences(digests)
    at = 0
    for s in sources:
        mine = keep[at : at + s.starts.size]
        at += s.starts.size
        s.kept = np.flatnonzero(mine).astype(np.int64)
        s.duplicates = int(mine.size - s.kept.size)


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
