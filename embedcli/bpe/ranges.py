"""Large jsonl files read by the workers themselves, a range of whole lines each.

At the engines' speed, the per-line work (JSON parsing, counting, cutting) is what
limits a jsonl corpus when one process does it all. So for a plain jsonl file the main process
only finds line boundaries (a scan for newlines that also numbers the lines) and hands each
worker a byte range, which it reads, parses and encodes exactly as the main process would have:
the same reader, the same line numbers in messages and document names, the same ``--val-fraction``
choices. The results come back in order and are written by the main process.

Each chunk is encoded as if documents came before it, as every task is (:func:`eots_before`):
``<|endoftext|>`` before its first document too; the writer takes away the one the very first
document of a split does not need (``Stream.take``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from embedcli.bpe.encodings import EOT
from embedcli.bpe.engines import EngineKey, engine_for
from embedcli.bpe.pieces import TokenizeStats, as_task, counted, pieces
from embedcli.bpe.specials import count_specials
from embedcli.documents import Source
from embedcli.documents.jsonl import json_loads
from embedcli.options import EotPlacement, SpecialPolicy
from embedcli.storage.remote import is_url

CHUNK_BYTES = 4 << 20  # of jsonl per worker task
COUNTS = (
    "documents",
    "chars",
    "text_bytes",
    "special_found",
    "specials_found",
    "replaced",
    "input_bytes",
)


@dataclasses.dataclass(frozen=True)
class ChunkSetup:
    """What a worker needs to read a range as the main process would (``pieces.pieces``)."""

    text_key: str
    piece_chars: int
    block_bytes: int
    policy: SpecialPolicy  # --special
    split_on_eot: bool
    chooser: tuple[float, int] | None  # --val-fraction, --seed
    placement: EotPlacement  # --eot
    separator_text: str = EOT  # the document marker's text: another tokenizer's BOS or EOS
    cuttable: bool = True  # documents may be cut (False for tokenizer.json, SentencePiece)
    special_texts: tuple[str, ...] = (EOT,)  # every special token's text (--special error)


def splittable(source: Source, workers: int, chunk_bytes: int = CHUNK_BYTES) -> bool:
    """Whether ``source`` is read in ranges by the workers: a plain jsonl file, not a shard of
    one, large enough for two ranges, with two workers or more."""
    return (
        workers > 1
        and source.format == "jsonl"
        and source.compression is None
        and source.path != "-"
        and not is_url(source.path)  # workers are forks: fsspec's event loop does not survive one
        and source.byte_range is None
        and source.size >= 2 * chunk_bytes
    )


def line_ranges(source: Source, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Source]:
    """``source`` as ranges of about ``chunk_bytes`` ending at a newline, each knowing the
    number of its first line."""
    begin = pos = 0
    line = 1
    with open(source.path, "rb") as f:
        while data := f.read(chunk_bytes):
            cut = data.rfind(b"\n")
            pos += len(data)
            if cut < 0:  # inside one long line: the range grows
                continue
            end = pos - len(data) + cut + 1
            yield dataclasses.replace(source, byte_range=(begin, end), first_line=line)
            line += data.count(b"\n")  # all of them lie before the cut
            begin = end
    if begin < pos:
        yield dataclasses.replace(source, byte_range=(begin, pos), first_line=line)


def encode_chunk(engine: EngineKey, part: Source, setup: ChunkSetup) -> tuple:
    """Read, parse and encode one range in a worker (see ``OrderedEncoder.submit_chunk``).

    Returns the task arrays (ids, lengths, starts, streams, eots, places) and each split's
    counts.
    """
    stats, stats.val = _counts(setup), _counts(setup)
    plain = plain_texts(part, setup, stats)
    if plain is not None:
        texts, at = plain
        starts, which = np.ones(len(texts), bool), np.zeros(len(texts), np.int8)
    else:  # the general reader: messages, --val-fraction, long documents and all
        stats, stats.val = _counts(setup), _counts(setup)
        items = list(
            pieces(
                [part],
                setup.text_key,
                setup.piece_chars,
                setup.block_bytes,
                setup.policy,
                stats,
                None,
                setup.split_on_eot,
                setup.chooser,
            )
        )
        texts, starts, which, at = as_task(items)
    counts = [tuple(getattr(s, name) for name in COUNTS) for s in (stats, stats.val)]
    eots = eots_before(starts, setup.placement)
    if not texts:  # blank lines only
        return np.zeros(0, np.int32), np.zeros(0, np.int64), starts, which, eots, at, counts
    ids, lengths = engine_for(*engine)(texts, eots)
    return ids, lengths, starts, which, eots, at, counts


def _counts(setup: ChunkSetup) -> TokenizeStats:
    stats = TokenizeStats("", 0, 0, setup.policy)
    stats.separator_text, stats.cuttable = setup.separator_text, setup.cuttable
    stats.special_texts = setup.special_texts
    return stats


def plain_texts(
    part: Source, setup: ChunkSetup, stats: TokenizeStats
) -> tuple[list[str], np.ndarray] | None:
    """The range's documents, counted into ``stats``, and their line numbers, when every
    line is the plain case: a JSON object whose text is a string shorter than a piece, with
    no ``--val-fraction``, ``--special error`` or ``--split-on-eot`` to apply, in a range
    that knows its first line. None at the first line that is not (the general reader then
    reads the range again and says what is wrong).

    The same texts, places and counts as the general reader (``tests/test_backends.py``
    compares them), at about half its cost a line: no generators, no names.
    """
    if setup.chooser is not None or setup.policy == "error" or setup.split_on_eot:
        return None
    begin, end = part.byte_range or (0, part.size)
    if begin and part.first_line is None:  # its documents are placed by byte offset
        return None
    with open(part.path, "rb") as f:
        f.seek(begin)
        data = f.read(end - begin)
    loads, key, limit = json_loads(), setup.text_key, setup.piece_chars
    texts, lines = [], []
    for n, line in enumerate(data.split(b"\n")):
        try:
            value = loads(line)[key]
        except (ValueError, KeyError, TypeError, IndexError):
            if not line.strip():  # a blank line
                continue
            return None
        if type(value) is not str or len(value) >= limit:
            return None
        texts.append(value)
        lines.append(n)
    texts = [counted(text, stats) for text in texts]  # UTF-8 sizes; lone surrogates replaced
    stats.documents += len(texts)
    stats.chars += sum(map(len, texts))
    for text in texts:
        count_specials(text, stats)
    stats.input_bytes += len(data)
    first = part.first_line or 1  # a range starting the file, or one that knows its line
    return texts, np.asarray(lines, np.int64) + first


def eots_before(starts: np.ndarray, placement: str) -> np.ndarray:
    """Which pieces get ``<|endoftext|>`` before them, as if documents came before the task:
    every document's first piece (``between``/``after``: closing the one before; ``before``:
    opening its own), none for ``none``. The writer drops the one the very first document
    does not need (``Stream.take``)."""
    return starts.copy() if placement != "none" else np.zeros_like(starts)


def add_counts(stats: TokenizeStats, counts: tuple) -> None:
    """Add a worker's counts (:data:`COUNTS`) to the main process's."""
    for name, value in zip(COUNTS, counts, strict=True):
        if isinstance(value, dict):  # by name
            mine = getattr(stats, name)
            for key, n in value.items():
                mine[key] = mine.get(key, 0) + n
        else:
            setattr(stats, name, getattr(stats, name) + value)
