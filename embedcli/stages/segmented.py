"""A token input's ids as its files hold them (:class:`Segmented`): read by span, gather,
search and digest, never joined (``mix``'s sources, :class:`~embedcli.stages.tokens.Tokens`).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import mmap
import os
import weakref

import numpy as np

from embedcli.formats.provenance import separators_in

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
        self._arrays = list(segments)  # as given: release_pages and files need the maps
        self.bounds = np.cumsum([0, *(p.size for p in self.parts)]).tolist()
        self.size = int(self.bounds[-1])
        self.dtype = self.parts[0].dtype

    @functools.cached_property
    def files(self) -> list[tuple[str, int] | None]:
        """Each segment's file and the byte where it starts there (None: in memory), for
        reads that bypass the maps (:class:`FileSpans`); looked up when first asked."""
        return [_file_of(p) for p in self._arrays] if self._arrays else [None]

    @property
    def nbytes(self) -> int:
        return sum(int(p.nbytes) for p in self.parts)

    @property
    def mapped(self) -> bool:
        """Whether any of its ids lie in a memory-mapped file (else all are in memory)."""
        return bool(self._maps)

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

    def read_rows(self, starts: np.ndarray, count: int) -> np.ndarray:
        """``(len(starts), count)`` ids from each start (an indexed window plan's rows), in
        one gather a file where the rows lie in it; a row across two files on its own."""
        from embedcli.window_rows import row_items, segment_rows, take_rows

        def rows_in(k: int, local: np.ndarray) -> np.ndarray:
            return take_rows(row_items(self.parts[k], count), local, self.dtype)

        return segment_rows(self.bounds, starts, count, self.dtype, rows_in,
                            lambda a: self.span(a, a + count))  # fmt: skip

    def release_before(self, position: int) -> None:
        """Hand back the pages of the files' maps before ``position`` (an in-order pass has
        read them): :func:`~embedcli.storage.store.release_pages`."""
        from embedcli.storage.store import release_pages

        for k, array in enumerate(self._arrays):
            if position <= self.bounds[k]:
                break
            release_pages(array, min(position - self.bounds[k], array.size))

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
        return separators_in(self.parts, value)


class FileSpans:
    """Spans of a :class:`Segmented` read from its files with ``pread``, not through its
    memory maps, so that a read at random maps nothing into this process (see
    :mod:`embedcli.stages.mix_writer`); a span in memory or across two files is its own."""

    def __init__(self, ids: Segmented) -> None:
        self.ids = ids
        self.fds: dict[str, int] = {}
        weakref.finalize(self, _close, self.fds)

    def span(self, a: int, b: int) -> np.ndarray:
        ids = self.ids
        k = bisect.bisect_right(ids.bounds, a) - 1
        where = ids.files[k] if 0 <= k < len(ids.files) else None
        if where is None or b <= a or b > ids.bounds[k + 1]:
            return ids.span(a, b)
        fd = self.fds.get(where[0])
        if fd is None:
            fd = self.fds[where[0]] = os.open(where[0], os.O_RDONLY)
        out = np.empty(b - a, ids.dtype)
        got = os.preadv(fd, [out.data], where[1] + (a - ids.bounds[k]) * ids.dtype.itemsize)
        if got != out.nbytes:  # the file shrank under us
            raise OSError(f"{where[0]}: read {got} of {out.nbytes} bytes")
        return out


def _close(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)


def _file_of(segment: np.ndarray) -> tuple[str, int] | None:
    """The file a memory-mapped segment lies in and the byte where it starts, checked by
    reading its first and last ids there (a view of a map may not start at its offset)."""
    path, offset = getattr(segment, "filename", None), getattr(segment, "offset", None)
    if not path or offset is None or not segment.flags.c_contiguous or segment.size == 0:
        return None
    item = segment.dtype.itemsize
    try:
        with open(path, "rb") as f:
            head = os.pread(f.fileno(), item, offset)
            tail = os.pread(f.fileno(), item, offset + (segment.size - 1) * item)
    except OSError:
        return None
    view = np.asarray(segment).view(np.ndarray)
    if head != view[:1].tobytes() or tail != view[-1:].tobytes():
        return None
    return str(path), int(offset)


def as_u4(ids: np.ndarray) -> np.ndarray:
    """The ids as little-endian uint32 (what a digest is taken of, whatever the file's dtype):
    a view of 4-byte ids, a copy of others."""
    if ids.dtype.itemsize == 4 and ids.dtype.kind in "iu" and ids.dtype.byteorder in "<=|":
        return ids.view("<u4")
    return ids.astype("<u4")
