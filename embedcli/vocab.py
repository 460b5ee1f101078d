"""Ids and the vocabulary they index: the one check every reader of ids makes.

A token file from another tokenizer, or a corrupt one, holds ids the encoding cannot decode and
no embedding table of the encoding's size can look up. ``inspect`` counts them, ``batch`` windows
them with a warning, ``embed`` and the loader refuse them; all through :func:`out_of_vocab`.

Example:
    >>> import numpy as np
    >>> out_of_vocab(np.array([5, 1, 70000, 2, 80000], dtype=np.uint32), 50257)
    OutOfVocab(count=2, position=2, id=70000)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

CHUNK_IDS = 1 << 24  # ids checked at once: a few tens of MB of work memory


@dataclass(frozen=True)
class OutOfVocab:
    """How many ids lie outside ``[0, vocab_size)``, and the first of them."""

    count: int
    position: int  # flat index of the first one
    id: int

    def where(self, shape: tuple[int, ...]) -> str:
        """The first bad id's place: ``position 12`` in ids, ``window 3, position 1`` in
        windows."""
        if len(shape) == 2:
            row, col = divmod(self.position, shape[1])
            return f"window {row:,}, position {col:,}"
        return f"position {self.position:,}"

    def message(
        self, name: str, vocab_size: int, shape: tuple[int, ...], of: str = "the vocabulary"
    ) -> str:
        ids = "id" if self.count == 1 else "ids"
        return (
            f"{name}: {self.count:,} token {ids} outside {of} (vocab size {vocab_size:,}; "
            f"the first: {self.id} at {self.where(shape)})"
        )


def out_of_vocab_in(
    segments: list[np.ndarray],
    vocab_size: int,
    release: Callable[[np.ndarray, int], None] | None = None,
) -> OutOfVocab | None:
    """:func:`out_of_vocab` of ids held as segments (a shard set's files, never joined), the
    first one's position counted in the whole stream; ``release(segment, n)`` hears that a
    segment's first ``n`` ids are checked (its memory map's pages handed back behind)."""
    from functools import partial

    count, first, before = 0, None, 0
    for segment in segments:
        done = partial(release, segment) if release is not None else None
        found = out_of_vocab(segment, vocab_size, done)
        if found is not None:
            count += found.count
            first = first or (before + found.position, found.id)
        before += int(segment.size)
    return None if first is None else OutOfVocab(count, *first)


def out_of_vocab(
    ids: np.ndarray, vocab_size: int, done: Callable[[int], None] | None = None
) -> OutOfVocab | None:
    """The ids of ``ids`` (any shape, memory-mapped or not) outside ``[0, vocab_size)``, read a
    chunk at a time; None when every id is in range. ``done(n)`` hears that the first ``n``
    ids are checked (a caller hands a memory map's pages back behind the scan)."""
    import numpy as np

    flat = ids.reshape(-1)
    count, first = 0, None
    for start in range(0, flat.size, CHUNK_IDS):
        part = np.asarray(flat[start : start + CHUNK_IDS])
        bad = part >= vocab_size
        if part.dtype.kind == "i":
            bad |= part < 0
        found = int(np.count_nonzero(bad))
        if found:
            if first is None:
                k = int(np.argmax(bad))
                first = (start + k, int(part[k]))
            count += found
        if done is not None:
            done(min(start + CHUNK_IDS, flat.size))
    return None if first is None else OutOfVocab(count, *first)
