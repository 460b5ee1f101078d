"""A window plan's rows gathered from the ids and written: ``embedcli batch``'s inner loop.

In-order plans copy strided slices of the ids; indexed plans (shuffled, or windows kept inside
documents) gather rows as opaque items, from ids narrowed to ``uint16`` where they fit, and a
shuffled plan into a regular file gathers each row once for its inputs and targets. Chunks are
gathered while the previous one is written, so memory stays flat.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import BinaryIO, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from embedcli.windows import ArithmeticStarts, WindowPlan


class RowSource(Protocol):
    """Ids held as several files (a shard set's segments: ``TokenStream``), read as rows."""

    def read_rows(self, starts: np.ndarray, count: int) -> np.ndarray: ...

    def release_before(self, position: int) -> None: ...

    def span(self, start: int, stop: int) -> np.ndarray: ...


Ids = np.ndarray | RowSource  # one array, or segments never joined


def gather_into(
    out: np.ndarray,
    ids: Ids,
    starts: np.ndarray | ArithmeticStarts,
    i: int,
    j: int,
    max_length: int,
    shift: int = 0,
) -> np.ndarray:
    """Windows ``i..j`` of a plan's ``starts`` (shifted by ``shift``: 1 for targets) into
    ``out[: j - i]``, converted to ``out``'s dtype in the same pass.

    An in-order plan's rows are a strided slice of the sliding view (no index array at all);
    other plans index it; segments are read row by row where they lie (``read_rows``).
    """
    if not isinstance(ids, np.ndarray) and isinstance(starts, ArithmeticStarts):
        step, lo = starts.stride, i * starts.stride  # the chunk's ids: one range of the stream
        span = ids.span(lo + shift, (j - 1) * step + max_length + shift)
        rows = sliding_window_view(span, max_length)[::step]
    elif not isinstance(ids, np.ndarray):
        rows = ids.read_rows(np.asarray(starts[i:j], np.int64) + shift, max_length)
    elif isinstance(starts, ArithmeticStarts):
        step = starts.stride
        rows = sliding_window_view(ids[shift:], max_length)[i * step : (j - 1) * step + 1 : step]
    else:
        rows = take_rows(row_items(ids[shift:], max_length), starts[i:j], ids.dtype)
    dest = out[: j - i]
    np.copyto(dest, rows, casting="unsafe")  # ids are below the vocabulary size: no overflow
    return dest


def row_items(ids: np.ndarray, max_length: int) -> np.ndarray:
    """The windows of ``ids`` as one opaque item each (``max_length`` ids of bytes): fancy
    indexing then copies a row with one ``memcpy``, where the ``(N, max_length)`` sliding view
    loops over its ids one by one (1.6x slower on random rows of 4 ids, 1.3x on the loader's
    batches of 32 rows of 257). :func:`take_rows` gathers them as ids."""
    if not ids.flags.c_contiguous:
        ids = np.ascontiguousarray(ids)
    item = np.dtype((np.void, max_length * ids.itemsize))
    count = max(0, ids.size - max_length + 1)
    return np.ndarray((count,), item, buffer=ids, strides=(ids.itemsize,))


def segment_rows(
    bounds: np.ndarray | list[int],
    starts: np.ndarray,
    count: int,
    dtype: np.dtype,
    rows_in: Callable[[int, np.ndarray], np.ndarray],
    row_at: Callable[[int], np.ndarray],
) -> np.ndarray:
    """``(len(starts), count)`` ids from each start of a stream held in parts (a shard set's
    files) that begin at ``bounds`` (its last: the end): ``rows_in(k, starts)`` gathers at once
    the rows that lie inside part ``k`` (starts counted in it), ``row_at(start)`` reads a row
    across two parts on its own."""
    out = np.empty((starts.size, count), dtype)
    bounds = np.asarray(bounds, np.int64)
    k = np.searchsorted(bounds, starts, "right") - 1
    inside = starts + count <= bounds[np.minimum(k + 1, bounds.size - 1)]
    for part in np.unique(k[inside]).tolist():
        rows = np.flatnonzero(inside & (k == part))
        out[rows] = rows_in(part, starts[rows] - bounds[part])
    for row in np.flatnonzero(~inside).tolist():
        out[row] = row_at(int(starts[row]))
    return out


def take_rows(items: np.ndarray, starts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The windows of :func:`row_items` at ``starts``, as ``(len(starts), max_length)`` ids of
    ``dtype`` (the dtype ``items`` was made from)."""
    index = np.asarray(starts)
    return items[index].view(dtype).reshape(index.size, items.dtype.itemsize // dtype.itemsize)


def random_access_ids(segments: list[np.ndarray], step: int = 1 << 22) -> np.ndarray:
    """The ids a shuffled plan gathers from, as one array: a ``uint16`` copy when every id
    fits in one (GPT-2's vocabulary does), else the ids in their own dtype.

    A shuffled plan reads windows at random, so every page of the ids stays in memory; two
    bytes an id halve that memory (the copy's) and the cache footprint of the gather, and the
    pages of a memory-mapped segment are handed back as they are copied. A shard set's
    segments are copied one after another into the one array, never joined at their own
    width first (which held both copies at once). Ids outside ``[0, 65535]`` (a file beyond
    its vocabulary, or a large one) keep their own dtype.
    """
    from embedcli.storage.store import release_pages

    if len(segments) == 1 and (segments[0].dtype.itemsize <= 2 or segments[0].size == 0):
        return segments[0]
    total = sum(int(s.size) for s in segments)
    small = np.empty(total, np.uint16)
    at = 0
    for ids in segments:
        for a in range(0, ids.size, step):
            part = ids[a : a + step]
            fits = part.dtype.kind == "u" and part.dtype.itemsize <= 2
            if not fits and part.size and (int(part.min()) < 0 or int(part.max()) > 0xFFFF):
                return segments[0] if len(segments) == 1 else np.concatenate(segments)
            small[at + a : at + a + part.size] = part
            release_pages(ids, min(a + step, ids.size))
        at += int(ids.size)
    return small


def write_windows(
    f: BinaryIO,
    ids: Ids,
    plan: WindowPlan,
    a: int,
    b: int,
    dtype: np.dtype,
    shift: int,
    rows: int,
) -> None:
    """Windows ``a..b`` of ``plan`` (inputs, or targets with ``shift=1``) written to ``f`` in
    chunks of ``rows`` windows.

    Chunk k+1 is gathered while chunk k is written (:class:`~embedcli.storage.atomic.WriteBehind`),
    into two reused buffers, so memory stays flat; an in-order plan also hands the pages of a
    memory-mapped ``ids`` it has passed back to the kernel (:func:`store.release_pages`).
    """
    from embedcli.storage.atomic import WriteBehind
    from embedcli.storage.store import array_bytes, release_pages

    t, in_order = plan.max_length, isinstance(plan.starts, ArithmeticStarts)
    buffers = [np.empty((min(rows, b - a), t), dtype) for _ in range(2)]
    with WriteBehind(f) as writer:
        for k, i in enumerate(range(a, b, rows)):
            chunk = gather_into(buffers[k % 2], ids, plan.starts, i, min(i + rows, b), t, shift)
            writer.write(array_bytes(chunk))
            if in_order and k:  # chunk k-1 is written: the ids before it are not needed again
                upto = (i - rows) * plan.stride + shift
                if isinstance(ids, np.ndarray):
                    release_pages(ids, upto)
                else:
                    ids.release_before(upto)


def write_window_pairs(
    f: BinaryIO,
    ids: Ids,
    plan: WindowPlan,
    a: int,
    b: int,
    dtype: np.dtype,
    rows: int,
) -> bool:
    """Windows ``a..b`` of an indexed plan written as :func:`write_windows` writes them (all
    inputs rows, then all targets rows), from one gather a chunk: each start's
    ``max_length + 1`` ids hold its inputs row and its targets row, and the two land at their
    own offsets of ``f`` (``pwrite``), where two passes would gather every random row twice
    (the cost of a shuffled batch: 28M rows, 2.0 -> 1.0 s).

    Only into a regular file not opened for appending, which can be written out of order:
    False (nothing written) for anything else (a pipe, a device, ``>> file``); ``f``'s
    position is left after the targets.
    """
    if not isinstance(ids, np.ndarray):  # segments: the two passes of write_windows
        return False
    import fcntl
    import stat

    from embedcli.storage.atomic import WriteBehind
    from embedcli.storage.store import array_bytes

    try:
        f.flush()
        fd = f.fileno()
        # O_APPEND (stdout sent to a file with >>): Linux pwrite appends, whatever the offset
        if not stat.S_ISREG(os.fstat(fd).st_mode) or fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            return False
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    t = plan.max_length
    row_bytes = t * dtype.itemsize
    inputs_at = f.tell()
    targets_at = inputs_at + (b - a) * row_bytes
    items = row_items(ids, t + 1)  # planned windows have their targets: start + t + 1 <= n
    n = min(rows, b - a)
    buffers = [(np.empty((n, t), dtype), np.empty((n, t), dtype)) for _ in range(2)]
    with WriteBehind(f) as writer:
        for k, i in enumerate(range(a, b, rows)):
            j = min(i + rows, b)
            both = take_rows(items, plan.starts[i:j], ids.dtype)
            inputs, targets = (buffer[: j - i] for buffer in buffers[k % 2])
            np.copyto(inputs, both[:, :-1], casting="unsafe")  # ids fit: as gather_into
            np.copyto(targets, both[:, 1:], casting="unsafe")
            offset = (i - a) * row_bytes
            writer.write_at(
                [
                    (array_bytes(inputs), inputs_at + offset),
                    (array_bytes(targets), targets_at + offset),
                ]
            )
    f.seek(targets_at + (b - a) * row_bytes)
    return True
