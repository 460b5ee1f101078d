"""Token ids to training windows: ``(N, max_length)`` inputs and targets, grouped in batches.

Exactly the reference data loader, vectorised::

    for i in range(0, len(ids) - max_length, stride):      # window starts
        inputs.append(ids[i : i + max_length])
        targets.append(ids[i + 1 : i + max_length + 1])
    DataLoader(..., batch_size=B, shuffle=False, drop_last=True)

A plan (:func:`plan_windows`) is just the array of window starts, in output order; the windows
themselves are rows gathered from a strided view of the ids, chunk by chunk, so memory is the ids
plus the output (:mod:`embedcli.window_rows`). No torch here: importing it costs more than the work.

Not covered: shuffling the order the same way torch's ``RandomSampler`` does (``--shuffle`` uses
numpy's PCG64, reproducible on every machine, but its own order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from embedcli.errors import InputError, UsageError
from embedcli.options import OUTPUT_DTYPES  # noqa: F401 (re-exported: the dtypes windows are written in)


def count_windows(n_tokens: int, max_length: int, stride: int) -> int:
    """``len(range(0, n_tokens - max_length, stride))``: windows whose targets fit.

    Example:
        >>> count_windows(10, 4, 4)
        2
    """
    return len(range(0, n_tokens - max_length, stride))


@dataclass(frozen=True)
class WindowPlan:
    starts: np.ndarray | ArithmeticStarts  # (N,) int64 (int32 shuffled, where it fits): starts
    max_length: int
    stride: int
    batch_size: int
    drop_last: bool
    shuffle_seed: int | None
    cross_docs: bool
    available: int  # windows before batching (and before --num-batches)
    n_tokens: int
    covered: int | None = None  # tokens_covered, when plan_windows counted it (shuffled plans)

    @property
    def n_windows(self) -> int:
        return int(self.starts.size)

    @property
    def n_batches(self) -> int:
        return -(-self.n_windows // self.batch_size)

    @property
    def tokens_covered(self) -> int:
        """Distinct token positions that appear in some kept window's inputs or targets."""
        if not self.n_windows:
            return 0
        span = self.max_length + 1
        if self.covered is not None:
            return self.covered
        if self.shuffle_seed is None and self.cross_docs:  # starts 0, s, 2s, ...: arithmetic
            return (self.n_windows - 1) * min(self.stride, span) + span
        # In text order the starts are already sorted; a shuffled plan's are sorted here.
        s = self.starts if self.shuffle_seed is None else np.sort(self.starts)
        return int(np.minimum(np.diff(s), span).sum()) + span

    def facts(self) -> PlanFacts:
        """The plan's numbers, computed once (only a shuffled plan's coverage sorts)."""
        return PlanFacts(
            windows=self.n_windows,
            available=self.available,
            batches=self.n_batches,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            max_length=self.max_length,
            stride=self.stride,
            shuffle_seed=self.shuffle_seed,
            cross_docs=self.cross_docs,
            tokens=self.n_tokens,
            tokens_covered=self.tokens_covered,
            tail_dropped=self.tail_dropped,
        )

    @property
    def tail_dropped(self) -> int:
        """Tokens after the end of the last kept window's targets."""
        if not self.n_windows:
            return self.n_tokens
        last = int(self.starts[-1]) if self.shuffle_seed is None else int(self.starts.max())
        return self.n_tokens - last - self.max_length - 1


class ArithmeticStarts:
    """The starts ``0, stride, 2*stride, ...`` of an in-order plan, made on demand: a plan of
    28M windows costs nothing until a chunk of it is gathered. Slicing gives int64 arrays;
    numpy functions see the whole array (``np.asarray``)."""

    def __init__(self, count: int, stride: int):
        self.count, self.stride = count, stride

    @property
    def size(self) -> int:
        return self.count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: Any) -> Any:  # a slice: an int64 array; an index: np.int64
        if isinstance(key, slice):
            return np.arange(*key.indices(self.count), dtype=np.int64) * self.stride
        index = int(key) + (self.count if int(key) < 0 else 0)
        if not 0 <= index < self.count:
            raise IndexError(f"window {key} of {self.count}")
        return np.int64(index * self.stride)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def tolist(self) -> list[int]:
        return self[:].tolist()

    def max(self) -> int:
        return (self.count - 1) * self.stride

    def head(self, count: int) -> ArithmeticStarts:
        """The first ``count`` starts, still made on demand."""
        return ArithmeticStarts(min(count, self.count), self.stride)


@dataclass(frozen=True)
class PlanFacts:
    """What a plan amounts to, as plain numbers (for metadata, summaries and library callers)."""

    windows: int
    available: int
    batches: int
    batch_size: int
    drop_last: bool
    max_length: int
    stride: int
    shuffle_seed: int | None
    cross_docs: bool
    tokens: int
    tokens_covered: int
    tail_dropped: int


def plan_windows(
    n_tokens: int,
    *,
    max_length: int,
    stride: int | None = None,
    batch_size: int = 1,
    drop_last: bool = True,
    num_batches: int | None = None,
    shuffle_seed: int | None = None,
    doc_offsets: np.ndarray | None = None,
) -> WindowPlan:
    """Window starts in output order, after shuffling, dropping and ``num_batches``.

    ``doc_offsets`` (start of each document plus the end) keeps every window inside one
    document's span (its text and the ``<|endoftext|>`` that closes it).
    """
    stride = max_length if stride is None else stride
    for name, value in (("max-length", max_length), ("stride", stride), ("batch-size", batch_size)):
        if value < 1:
            raise UsageError(f"--{name} must be at least 1 (got {value})")
    if num_batches is not None and num_batches < 1:
        raise UsageError(f"--num-batches must be at least 1 (got {num_batches})")
    if n_tokens < max_length + 1:
        raise InputError(
            f"{n_tokens} tokens are too few for one window: --max-length {max_length} needs "
            f"at least {max_length + 1} (inputs plus the next token as target)"
        )

    starts: np.ndarray | ArithmeticStarts
    if doc_offsets is None:
        starts = ArithmeticStarts(count_windows(n_tokens, max_length, stride), stride)
    else:
        starts = _document_starts(np.asarray(doc_offsets, dtype=np.int64), max_length, stride)
        if starts.size == 0:
            raise InputError(
                f"no document is long enough for one window of --max-length {max_length} "
                "(each needs max-length + 1 tokens with --no-cross-docs)"
            )
    available = int(starts.size)
    keep = (available // batch_size) * batch_size if drop_last else available
    if num_batches is not None:
        keep = min(keep, num_batches * batch_size)
    if keep == 0:
        raise InputError(
            f"{available} windows make no full batch of --batch-size {batch_size} "
            "(use a smaller batch size, or --keep-last)"
        )
    covered = None
    if shuffle_seed is not None:
        order = shuffle_order(shuffle_seed, available)
        covered = covered_tokens(starts, order, keep, max_length + 1)
        if isinstance(starts, ArithmeticStarts):  # starts[order], in place: one array, not three
            if starts.max() > np.iinfo(order.dtype).max:
                order = order.astype(np.int64)
            order *= stride
            starts = order
        else:
            starts = starts[order]
    return WindowPlan(
        starts=starts.head(keep) if isinstance(starts, ArithmeticStarts) else starts[:keep],
        max_length=max_length,
        stride=stride,
        batch_size=batch_size,
        drop_last=drop_last,
        shuffle_seed=shuffle_seed,
        cross_docs=doc_offsets is None,
        available=available,
        n_tokens=n_tokens,
        covered=covered,
    )


def covered_tokens(
    starts: np.ndarray | ArithmeticStarts,
    order: np.ndarray,
    keep: int,
    span: int,
    chunk: int = 1 << 20,
) -> int:
    """Tokens covered by the windows ``order[:keep]`` of the text-ordered ``starts``: a mask
    over the windows (one byte each) walked in text order, a chunk at a time, instead of a
    sorted copy of the kept starts (8 bytes each)."""
    available = len(starts)
    if keep == available:
        kept = None  # all of them: the shuffle changed only the order
    elif keep * 2 <= available:
        kept = np.zeros(available, bool)
        kept[order[:keep]] = True
    else:
        kept = np.ones(available, bool)
        kept[order[keep:]] = False
    if kept is None and isinstance(starts, ArithmeticStarts):
        return (available - 1) * min(starts.stride, span) + span
    total, last = span, None
    for a in range(0, available, chunk):
        if kept is None:
            index = np.arange(a, min(a + chunk, available))
        else:
            index = np.flatnonzero(kept[a : a + chunk]) + a
        if index.size == 0:
            continue
        s = index * starts.stride if isinstance(starts, ArithmeticStarts) else starts[index]
        if last is not None:
            total += min(int(s[0]) - last, span)
        total += int(np.minimum(np.diff(s), span).sum())
        last = int(s[-1])
    return total


def windows_per_document(doc_offsets: np.ndarray, max_length: int, stride: int) -> np.ndarray:
    """How many windows (inputs and targets) fit inside each document's span: the reference
    loop's count over each document alone. One home for ``batch --no-cross-docs`` and the
    loader's ``cross_docs=False``."""
    length = doc_offsets[1:] - doc_offsets[:-1]
    return np.where(length > max_length, (length - max_length - 1) // stride + 1, 0)


class DocumentWindows:
    """The windows inside documents (``--no-cross-docs``), found by index without listing
    them: ``start(i)`` is where window ``i`` starts, in text order, as
    ``plan_windows(..., doc_offsets=...)`` would place it (the loader's random access).

    Example:
        >>> w = DocumentWindows(np.array([0, 6, 7, 14]), max_length=2, stride=2)
        >>> len(w), [w.start(i) for i in range(len(w))]
        (5, [0, 2, 7, 9, 11])
    """

    def __init__(self, doc_offsets: np.ndarray, max_length: int, stride: int):
        counts = windows_per_document(doc_offsets, max_length, stride)
        self.begin = doc_offsets[:-1]
        self.first = np.cumsum(counts) - counts  # index of each document's first window
        self.count, self.stride = int(counts.sum()), stride

    def __len__(self) -> int:
        return self.count

    def start(self, index: int) -> int:
        # The last document whose first window is at or before index (documents without a
        # window share their successor's first index, and side="right" skips past them).
        d = int(np.searchsorted(self.first, index, side="right")) - 1
        return int(self.begin[d]) + (index - int(self.first[d])) * self.stride

    def starts(self, indices: np.ndarray) -> np.ndarray:
        """:meth:`start` of each of ``indices`` (in range), in one pass."""
        d = np.searchsorted(self.first, indices, side="right") - 1
        return self.begin[d] + (indices - self.first[d]) * self.stride


def shuffle_order(seed: int | list[int], count: int) -> np.ndarray:
    """The order ``--shuffle --seed SEED`` puts ``count`` windows in (batch and the loader):
    ``np.random.default_rng(seed).permutation(count)``, made as int32 where it fits (half
    the memory; ``Generator.shuffle`` draws the same swaps whatever the dtype, so the order
    is the same).

    Example:
        >>> (shuffle_order(7, 1000) == np.random.default_rng(7).permutation(1000)).all()
        np.True_
    """
    if count > np.iinfo(np.int32).max:
        return np.random.default_rng(seed).permutation(count)
    order = np.arange(count, dtype=np.int32)
    np.random.default_rng(seed).shuffle(order)
    return order


def _document_starts(doc_offsets: np.ndarray, max_length: int, stride: int) -> np.ndarray:
    """Starts of windows (inputs and targets) that stay inside one document's span."""
    begin = doc_offsets[:-1]
    counts = windows_per_document(doc_offsets, max_length, stride)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # For window j of the run, its document d and its index k inside d: begin[d] + k * stride.
    doc = np.repeat(np.arange(begin.size), counts)
    first = np.cumsum(counts) - counts
    k = np.arange(total, dtype=np.int64) - first[doc]
    return begin[doc] + k * stride


def batched_shape(n: int, batch_size: int, batched: bool) -> tuple[int, ...]:
    """The leading dimensions of a windows tensor: ``(N,)``, or ``(K, B)`` with ``batched``."""
    if not batched:
        return (n,)
    if batch_size < 1 or n % batch_size:
        raise UsageError(
            f"--batched needs whole batches: {n} windows are not a multiple of --batch-size "
            f"{batch_size} (use --drop-last)"
        )
    return (n // batch_size, batch_size)


def windows_metadata(base: dict[str, str], facts: PlanFacts, dtype: str) -> dict[str, str]:
    """A windows file's metadata: the input's lineage plus how the windows were made."""
    from embedcli import contract as c

    return c.stage_metadata(
        "windows",
        {
            c.MAX_LENGTH: facts.max_length,
            c.STRIDE: facts.stride,
            c.BATCH_SIZE: facts.batch_size,
            c.DROP_LAST: facts.drop_last,
            c.SHUFFLE_SEED: facts.shuffle_seed,
            c.CROSS_DOCS: facts.cross_docs,
            c.WINDOWS: facts.windows,
            c.BATCHES: facts.batches,
            c.WINDOWS_AVAILABLE: facts.available,
            c.TOKENS_COVERED: facts.tokens_covered,
            c.TOKENS_DROPPED_TAIL: facts.tail_dropped,
            c.IDS_DTYPE: dtype,
        },
        base,
    )


def gather(ids: np.ndarray, starts: np.ndarray, max_length: int, *, shift: int = 0) -> np.ndarray:
    """Rows ``ids[s + shift : s + shift + max_length]`` for each start ``s``: ``(len(starts), T)``.

    Copies straight from a strided view of ``ids``, no index matrix.
    """
    view = sliding_window_view(ids[shift:], max_length)
    return view[np.asarray(starts)]
