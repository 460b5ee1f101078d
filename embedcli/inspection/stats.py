"""What the data looks like: corpus statistics, histograms, window checks, nearest tokens.

Pure numpy over chunks, so a few-GB file streams through in bounded memory: token counts with
``np.bincount`` per chunk, histograms with fixed edges per chunk, row norms per block of rows.
Every result is a dataclass; rendering is ``cli/pictures.py``'s (terminal) and ``plot.py``'s
(images), and ``--json`` is :func:`dataclasses.asdict` of them.

Example:
    >>> h = histogram_of([np.array([0.0, 1.0, 1.0, 3.0])], 0.0, 3.0, bins=3)
    >>> h.counts
    [1, 2, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

CHUNK_IDS = 1 << 22
MAX_COUNTED_ID = 1 << 24  # without a vocabulary size: ids counted one by one below this


@dataclass
class Histogram:
    """``counts[i]`` values lie in ``[edges[i], edges[i + 1])`` (the last bin is closed)."""

    edges: list[float]
    counts: list[int]
    log: bool = False  # log-spaced edges

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @property
    def single(self) -> float | None:
        """The one value every counted value has, when that is so (one bin around it)."""
        if len(self.counts) == 1 and len(self.edges) == 2 and self.edges[1] - self.edges[0] == 1:
            return (self.edges[0] + self.edges[1]) / 2
        return None

    def scaled(self, factor: int) -> Histogram:
        """The same bins, each count standing for ``factor`` values (a sample's histogram)."""
        return Histogram(self.edges, [c * factor for c in self.counts], self.log)


def histogram_of(
    chunks: Iterable[np.ndarray], low: float, high: float, *, bins: int = 24, log: bool = False
) -> Histogram:
    """Counts of the finite values of ``chunks`` in ``bins`` bins spanning ``[low, high]``
    (log-spaced when ``log``: for lengths spanning decades)."""
    if log:
        edges = np.geomspace(max(low, 1), max(high, low + 1, 2), bins + 1)
    elif high > low:
        edges = np.linspace(low, high, bins + 1)
    else:
        edges = np.array([low - 0.5, low + 0.5])
    counts = np.zeros(edges.size - 1, dtype=np.int64)
    for chunk in chunks:
        values = np.asarray(chunk, dtype=np.float64).ravel()
        counts += np.histogram(values[np.isfinite(values)], bins=edges)[0]
    return Histogram([float(e) for e in edges], [int(c) for c in counts], log)


# --------------------------------------------------------------------------- corpus


@dataclass
class DocLengths:
    """Document lengths in tokens (their ``<|endoftext|>`` included)."""

    min: int
    p50: float
    p90: float
    max: int
    mean: float
    histogram: Histogram  # log-spaced when the lengths span more than two decades


@dataclass
class TopToken:
    id: int
    count: int
    share: float  # of all tokens
    text: str | None  # decoded, when the encoding is known


@dataclass
class CorpusStats:
    """A token file seen whole: sizes, vocabulary use, document lengths, the top tokens."""

    documents: int | None
    tokens: int
    distinct_ids: int
    vocab_size: int | None
    vocab_share: float | None  # distinct ids / vocab size
    eot_count: int | None
    out_of_vocab: int  # ids the vocabulary does not have (another tokenizer's, or corrupt)
    doc_length: DocLengths | None
    top_tokens: list[TopToken] = field(default_factory=list)
    eot_label: str = "<|endoftext|>"  # the document marker, by role (contract.separator_label)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def id_chunks(ids: np.ndarray, chunk: int = CHUNK_IDS) -> Iterator[np.ndarray]:
    for start in range(0, ids.size, chunk):
        yield ids[start : start + chunk]


def corpus_stats(
    ids: np.ndarray,
    doc_offsets: np.ndarray | None,
    *,
    vocab_size: int | None,
    eot_id: int | None,
    decode: Callable[[list[int]], str] | None = None,
    top: int = 10,
) -> CorpusStats:
    """One streaming pass over ``ids`` (``np.bincount`` per chunk) plus the document lengths.

    Ids outside ``[0, vocab_size)`` (or, without a vocabulary, negative or beyond
    :data:`MAX_COUNTED_ID`) are counted in ``out_of_vocab``, not binned.
    """
    counts = np.zeros(max(vocab_size or 0, 1), dtype=np.int64)
    limit = vocab_size or MAX_COUNTED_ID
    outside = 0
    for chunk in id_chunks(ids):
        chunk = chunk.astype(np.int64, copy=False)
        keep = (chunk >= 0) & (chunk < limit)
        if not keep.all():
            outside += int(chunk.size - np.count_nonzero(keep))
            chunk = chunk[keep]
        if chunk.size:
            found = np.bincount(chunk, minlength=counts.size)
            if found.size > counts.size:
                counts = np.concatenate([counts, np.zeros(found.size - counts.size, np.int64)])
            counts += found
    total = int(ids.size)
    distinct = int(np.count_nonzero(counts))
    order = np.argsort(-counts, kind="stable")[: max(top, 0)]
    top_tokens = [
        TopToken(
            int(i),
            int(counts[i]),
            float(counts[i] / total) if total else 0.0,
            decode([int(i)]) if decode is not None else None,
        )
        for i in order
        if counts[i]
    ]
    eot = int(counts[eot_id]) if eot_id is not None and eot_id < counts.size else None
    return CorpusStats(
        documents=None if doc_offsets is None else int(doc_offsets.size - 1),
        tokens=total,
        distinct_ids=distinct,
        vocab_size=vocab_size,
        vocab_share=distinct / vocab_size if vocab_size else None,
        eot_count=eot,
        out_of_vocab=outside,
        doc_length=None if doc_offsets is None else doc_length_stats(doc_offsets),
        top_tokens=top_tokens,
    )


def doc_length_stats(doc_offsets: np.ndarray) -> DocLengths | None:
    """min, p50, p90, max, mean of document lengths (in tokens, their EOT included), and a
    histogram: log-spaced when the lengths span more than two decades."""
    lengths = np.diff(np.asarray(doc_offsets, dtype=np.int64))
    if lengths.size == 0:
        return None
    low, high = int(lengths.min()), int(lengths.max())
    log = high >= 100 * max(low, 1)
    return DocLengths(
        min=low,
        p50=float(np.percentile(lengths, 50)),
        p90=float(np.percentile(lengths, 90)),
        max=high,
        mean=float(lengths.mean()),
        histogram=histogram_of([lengths], low, high, bins=16, log=log),
    )


# --------------------------------------------------------------------------- windows


@dataclass
class WindowStats:
    windows: int
    tokens_covered: int | None  # from the lineage
    crossing: int | None  # windows with <|endoftext|> before their last position
    duplicates: int  # windows equal to an earlier one

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def window_stats(inputs: np.ndarray, *, eot_id: int | None, covered: int | None) -> WindowStats:
    """Windows that cross a document boundary and duplicate windows, block by block.

    A window (its inputs and its last target) stays inside one document when its
    ``<|endoftext|>``, if any, is the last token: an earlier one is a boundary it crosses.
    Duplicates are found by a 64-bit hash of each row, so memory is 8 bytes a window.
    """
    n, t = (int(d) for d in inputs.shape)
    weights = np.random.default_rng(0).integers(1, 2**61, size=t, dtype=np.uint64) | np.uint64(1)
    hashes = np.empty(n, dtype=np.uint64)
    crossing = 0
    step = max(1, CHUNK_IDS // max(t, 1))
    for a in range(0, n, step):
        rows = np.asarray(inputs[a : a + step]).astype(np.uint64)
        with np.errstate(over="ignore"):
            hashes[a : a + rows.shape[0]] = (rows * weights).sum(axis=1, dtype=np.uint64)
        if eot_id is not None:
            crossing += int((np.asarray(inputs[a : a + step]) == eot_id).any(axis=1).sum())
    duplicates = n - int(np.unique(hashes).size)
    return WindowStats(n, covered, crossing if eot_id is not None else None, duplicates)


# --------------------------------------------------------------------------- tables


@dataclass
class RowNorms:
    """The L2 norms of a 2-D table's rows."""

    min: float
    mean: float
    max: float
    histogram: Histogram


@dataclass
class Neighbor:
    id: int
    text: str
    cosine: float


@dataclass
class Neighbors:
    """``--neighbors``: a token and the rows of a token table nearest to its row."""

    text: str
    id: int
    table: str  # the tensor searched
    nearest: list[Neighbor]


def row_norms(table: np.ndarray, rows: int = 4096) -> np.ndarray:
    """L2 norm of every row of a 2-D table, a block of rows at a time (float64)."""
    out = np.empty(table.shape[0], dtype=np.float64)
    for a in range(0, table.shape[0], rows):
        block = np.asarray(table[a : a + rows], dtype=np.float64)
        out[a : a + block.shape[0]] = np.sqrt((block * block).sum(axis=1))
    return out


def nearest(table: np.ndarray, row: int, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` rows most similar to ``table[row]`` by cosine similarity (itself excluded)."""
    query = np.asarray(table[row], dtype=np.float64)
    query = query / (np.linalg.norm(query) or 1.0)
    scores = np.empty(table.shape[0], dtype=np.float64)
    for a in range(0, table.shape[0], 4096):
        block = np.asarray(table[a : a + 4096], dtype=np.float64)
        norms = np.linalg.norm(block, axis=1)
        scores[a : a + block.shape[0]] = block @ query / np.where(norms == 0, 1.0, norms)
    scores[row] = -np.inf
    best = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), float(scores[i])) for i in best]
