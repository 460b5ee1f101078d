"""Writing a mix's documents in their order: each document's ids read from its source, its
separator placed as the output format's trainers expect.

A shuffled order reads the sources at random. Through a memory map, each such read brings a
large folio around its document into this process's resident memory (on this kernel, 1,024
random documents of twelve 27 MB files mapped 310 MB of them; letting go of the pages each
1,024 documents did not help), so a mix's peak grew with its corpus (459 MiB at 4x the bench
corpus). Sources larger than ``--memory`` together are read with ``pread`` instead
(:class:`~embedcli.stages.segmented.FileSpans`): nothing is mapped, resident memory stays
flat, and the kernel's page cache serves what fits; sources within it are read through their
maps, which is faster.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from embedcli.progress import ProgressFactory
from embedcli.stages.segmented import FileSpans, Segmented
from embedcli.stages.staging import SpillSink

WRITE_IDS = 1 << 22  # ids gathered and written at once
GATHER_IDS = 1 << 20  # the same, placed by index arrays (16 bytes of index an id)
GATHER_DOCS = 1 << 12  # documents of a bucket gathered by index arrays at once
DEFAULT_MEMORY = 256 << 20  # --memory: the most of the sources read through their maps


def write_documents(
    ids: list[Segmented],
    source_of: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    placement: str,
    eot: int | None,
    sink: SpillSink,
    progress: ProgressFactory,
    memory: int = DEFAULT_MEMORY,
) -> np.ndarray:
    """The documents ``ids[source_of[j]].span(starts[j], ends[j])`` to ``sink`` in order,
    separated as ``placement`` says; their offsets. Sources larger than ``memory`` together
    are read from their files with ``pread``, not through their memory maps."""
    offsets = document_offsets(ends - starts, placement)
    if len(ids) == 1 and len(ids[0].parts) == 1 and not ids[0].mapped:  # a gather's bucket
        _write_gathered(ids[0].parts[0], starts, ends, offsets, placement, eot, sink, progress)
        return offsets
    if sum(s.nbytes for s in ids) > memory:
        _write_from_files(ids, source_of, starts, ends, offsets, placement, eot, sink, progress)
        return offsets
    spans = [s.span for s in ids]
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
            parts.append(spans[k](a, b))
            if after:
                parts.append(mark)
            pending += b - a + 1
            if pending >= WRITE_IDS:
                _flush(parts, sink, advance)
                pending = 0
        _flush(parts, sink, advance)
    return offsets


def read_spans(
    ids: list[Segmented],
    source_of: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    memory: int = DEFAULT_MEMORY,
) -> np.ndarray:
    """The spans ``ids[source_of[j]].span(starts[j], ends[j])`` end to end, as int32 (a
    scatter job's bucket): each ``pread`` into its place where the sources are larger than
    ``memory`` together, else gathered through the maps a window at a time by index arrays
    (a source of one file) or span by span (one of several)."""
    lengths = ends - starts
    at = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    out = np.empty(int(at[-1]), np.int32)
    if sum(s.nbytes for s in ids) > memory:
        with _Preads(ids, source_of, starts, ends, at[:-1]) as reads:
            reads.into(out, 0, source_of.size)
        return out
    for k, s in enumerate(ids):
        mine = np.flatnonzero(source_of == k)
        if len(s.parts) != 1:
            for j in mine.tolist():
                out[at[j] : at[j + 1]] = s.span(int(starts[j]), int(ends[j]))
            continue
        for w in range(0, mine.size, GATHER_DOCS):
            docs = mine[w : w + GATHER_DOCS]
            dest, source = _index_pairs(at[docs], starts[docs], lengths[docs])
            out[dest] = s.parts[0][source]
    return out


def _index_pairs(
    dest: np.ndarray, source: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays that copy span ``i`` (``lengths[i]`` ids from ``source[i]``) to
    ``dest[i]``, all spans in one gather."""
    step = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    return np.repeat(dest, lengths) + step, np.repeat(source, lengths) + step


class _Preads:
    """Documents read from the sources' files, each with one ``pread`` into its place ``at``
    in a buffer where :func:`_file_places` found its file, else through :class:`FileSpans`
    (2-byte ids, a span across two files); the descriptors closed on exit."""

    def __init__(
        self,
        ids: list[Segmented],
        source_of: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        at: np.ndarray,
    ) -> None:
        self.fds, which, where = _file_places(ids, source_of, starts, ends)
        self.spans = [FileSpans(s).span for s in ids]
        # six lists of ints, zipped a window at a time: a tuple a document would be 57 MB more
        # for 506k documents
        self.columns = [c.tolist() for c in (which, where, source_of, starts, ends - starts, at)]

    def into(self, out: np.ndarray, j0: int, j1: int, base: int = 0) -> None:
        """Documents ``j0..j1`` into ``out``, each at its place less ``base``."""
        view = out.data.cast("B")
        for f, offset, k, a, n, p in zip(*(c[j0:j1] for c in self.columns), strict=True):
            p -= base
            if f >= 0:
                got = os.preadv(self.fds[f], [view[4 * p : 4 * (p + n)]], offset)
                if got != 4 * n:
                    raise OSError(f"a source file shrank: read {got} of {4 * n} bytes")
            elif n:
                out[p : p + n] = self.spans[k](a, a + n)

    def __enter__(self) -> _Preads:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds:
            os.close(fd)


def _write_from_files(
    ids: list[Segmented],
    source_of: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    offsets: np.ndarray,
    placement: str,
    eot: int | None,
    sink: SpillSink,
    progress: ProgressFactory,
) -> None:
    """:func:`write_documents` reading each document with one ``pread`` into its place in a
    buffer of the output (filled with the separator first: what no document fills is one),
    a window of about :data:`WRITE_IDS` ids at a time."""
    at = offsets[:-1] + (placement == "before")
    cuts = document_cuts(offsets)
    longest = int(np.diff(offsets).max()) if offsets.size > 1 else 0
    buf = np.empty(WRITE_IDS + longest + 1, np.int32)
    with (
        _Preads(ids, source_of, starts, ends, at) as reads,
        progress("mix", int(offsets[-1]), "tokens") as advance,
    ):
        for j0, j1 in zip(cuts[:-1], cuts[1:], strict=True):
            base, size = int(offsets[j0]), int(offsets[j1] - offsets[j0])
            buf[:size] = eot if eot is not None else 0
            reads.into(buf, j0, j1, base)
            sink.write(buf[:size])
            advance(size)


def _write_gathered(
    array: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    offsets: np.ndarray,
    placement: str,
    eot: int | None,
    sink: SpillSink,
    progress: ProgressFactory,
) -> None:
    """:func:`write_documents` from one array in memory (a gather job's bucket): a window of
    the output at a time, its documents' ids placed by two index arrays in one gather, into a
    buffer filled with the separator first (what no document fills is one)."""
    at = offsets[:-1] + (placement == "before")
    lengths = ends - starts
    cuts = document_cuts(offsets, GATHER_IDS)
    with progress("mix", int(offsets[-1]), "tokens") as advance:
        for j0, j1 in zip(cuts[:-1], cuts[1:], strict=True):
            base, size = int(offsets[j0]), int(offsets[j1] - offsets[j0])
            buf = np.full(size, eot if eot is not None else 0, np.int32)
            dest, source = _index_pairs(at[j0:j1] - base, starts[j0:j1], lengths[j0:j1])
            buf[dest] = array[source]
            sink.write(buf)
            advance(size)


def _file_places(
    ids: list[Segmented], source_of: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Open descriptors of the sources' files of 4-byte ids, and for each document the one
    it is read from and the byte where it starts (-1: read otherwise)."""
    fds: list[int] = []
    which = np.full(source_of.size, -1, np.int64)
    where = np.zeros(source_of.size, np.int64)
    for k, s in enumerate(ids):
        if s.dtype.itemsize != 4 or s.dtype.kind not in "iu" or s.dtype.byteorder == ">":
            continue  # other widths: through FileSpans, converted
        mine = np.flatnonzero(source_of == k)
        bounds = np.asarray(s.bounds, np.int64)
        part = np.searchsorted(bounds, starts[mine], "right") - 1
        for i, found in enumerate(s.files):
            if found is None:
                continue
            inside = mine[(part == i) & (ends[mine] <= bounds[i + 1])]
            if not inside.size:
                continue
            which[inside] = len(fds)
            where[inside] = found[1] + (starts[inside] - bounds[i]) * 4
            fds.append(os.open(found[0], os.O_RDONLY))
    return fds, which, where


def document_cuts(offsets: np.ndarray, size: int = WRITE_IDS) -> list[int]:
    """Document indices cutting the output into windows of about ``size`` ids (a longer
    document its own)."""
    cuts, j, n = [0], 0, offsets.size - 1
    while j < n:
        j = max(int(np.searchsorted(offsets, offsets[j] + size, "right")) - 1, j + 1)
        cuts.append(min(j, n))
    return cuts


def document_offsets(lengths: np.ndarray, placement: str) -> np.ndarray:
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
