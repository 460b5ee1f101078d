"""A token input's ids as its files hold them (:class:`Segmented`): read by span, gather,
search and digest, never joined (``mix``'s sources, :class:`~embedcli.stages.tokens.Tokens`).
"""

from __future__ import annotations

import bisect
import hashlib
import mmap

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
        return separators_in(self.parts, value)


def as_u4(ids: np.ndarray) -> np.ndarray:
    """The ids as little-endian uint32 (what a digest is taken of, whatever the file's dtype):
    a view of 4-byte ids, a copy of others."""
    if ids.dtype.itemsize == 4 and ids.dtype.kind in "iu" and ids.dtype.byteorder in "<=|":
        return ids.view("<u4")
    return ids.astype("<u4")
