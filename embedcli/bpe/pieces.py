"""Cutting documents into the pieces the engines encode, and counting what they hold.

A piece is ``(text, starts a document, stream, place)``: stream 0 is the main output, 1 the
validation split (``--val-fraction``); a piece that starts a document carries the document's
place in its file (:func:`embedcli.documents.place_kind`: its line, row or byte offset), which
``--provenance`` records. Long text is cut only at *safe points*: just after a
letter that is followed by a space or newline. Every pre-tokenizer pattern tiktoken ships ends
a letter run's piece before whitespace (none of them lets a letter piece absorb what follows),
and no pattern looks behind, so the pieces on both sides tokenize exactly as they would inside
the whole text. ``tests/test_tokenizer.py`` checks this identity with hypothesis over
adversarial text. Text without such points (a 10 MB run of one character) is one piece,
which is still correct, only not parallel.

:class:`TokenizeStats` counts documents, characters, bytes and literal ``<|endoftext|>`` as
the pieces are made, in the main process or in a worker reading a range (``ranges.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from embedcli import contract as c
from embedcli.bpe.encodings import EOT
from embedcli.bpe.specials import (
    count_specials,
    count_specials_each,
    first_special,
    found,
    refuse_special,
)
from embedcli.documents import BLOCK_BYTES, Block, Rows, Source, iter_blocks, row_batches
from embedcli.documents.base import without_lone_surrogates
from embedcli.documents.jsonl import doc_name, jsonl_records
from embedcli.options import EotPlacement, SpecialPolicy

# A task: its pieces, which of them start a document, their streams, their documents' places.
Task = tuple[list[str], np.ndarray, np.ndarray, np.ndarray]
PIECE_CHARS = 1 << 18  # 256k characters: fine enough to keep 2+ threads busy
# A letter (not a digit or underscore) followed by a space or newline: cut after the letter.
_SAFE_POINT = re.compile(r"[^\W\d_](?=[ \n])")


def split_text(text: str, piece_chars: int = PIECE_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at least ``piece_chars`` characters at safe points.

    ``"".join(pieces) == text`` and encoding the pieces one by one gives the same ids as
    encoding ``text`` whole.

    Example:
        >>> split_text("one two three", 2)
        ['one', ' two', ' three']
    """
    pieces, start = [], 0
    while True:
        m = _SAFE_POINT.search(text, start + max(piece_chars, 1) - 1)
        if m is None:
            break
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return [p for p in pieces if p] or [text]


class IdSink(Protocol):
    def write(self, ids: np.ndarray) -> None: ...


class MemorySink:
    """Collects ids in memory; :meth:`array` joins them once at the end."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def write(self, ids: np.ndarray) -> None:
        self.parts.append(ids)

    def array(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0, dtype=np.int32)
        return np.concatenate(self.parts).astype(np.int32, copy=False)


@dataclass
class TokenizeStats:
    encoding: str
    vocab_size: int
    eot_id: int
    special: SpecialPolicy
    eot: EotPlacement = "between"  # where <|endoftext|> goes: between, after, before or none
    documents: int = 0
    tokens: int = 0
    input_bytes: int = 0
    chars: int = 0
    text_bytes: int = 0  # UTF-8 bytes of the text (input_bytes is what was read: compressed, JSON)
    special_found: int = 0  # literal special tokens of the tokenizer's in the text, in all
    specials_found: dict[str, int] = field(default_factory=dict)  # the same, by name
    replaced: int = 0  # lone surrogates (JSON "\\ud83d") encoded as U+FFFD, as tiktoken does
    backend: str = "tiktoken"  # the engine that encoded: tiktoken or gigatoken
    separator_text: str = EOT  # the document marker's literal text (--special, --split-on-eot)
    special_texts: tuple[str, ...] = (EOT,)  # every special token's text (--special error)
    cuttable: bool = True  # documents may be cut at safe points (tiktoken-style patterns)
    tokenizer: dict[str, str] = field(default_factory=dict)  # another model's: file, kind...
    backend_note: str | None = None  # why it is not the one asked for
    seconds: float = 0.0
    sources: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files input directories did not give
    val: TokenizeStats | None = None  # the validation split's counts (--val-fraction)
    doc_offsets: np.ndarray | None = None  # start of each document in the ids, plus the end
    origins: Origins | None = None  # each document's file and place there (--provenance)

    def metadata(self) -> dict[str, str]:
        """The token-file metadata later stages read (see ``contract.py``)."""
        return c.stage_metadata(
            "tokens",
            {
                c.ENCODING: self.encoding,
                c.VOCAB_SIZE: self.vocab_size,
                c.EOT_ID: self.eot_id,
                c.EOT_PLACEMENT: self.eot,
                c.SPECIAL: self.special,
                c.SPECIAL_FOUND: self.special_found,
                **self._by_name(),
                c.TOKENIZER_BACKEND: self.backend,
                c.DOCUMENTS: self.documents,
                c.TOKENS: self.tokens,
                c.SOURCES: self.sources,
                **self.tokenizer,
            },
        )

    def _by_name(self) -> dict[str, str]:
        """Another model's tokenizer has many special tokens: which of them the text held."""
        if not self.tokenizer:
            return {}
        return {c.SPECIALS_FOUND: c.counts_str(self.specials_found)}


@dataclass(frozen=True)
class Origins:
    """Where each document of a tokenize run came from: ``file[d]`` indexes the run's
    sources, ``at[d]`` is its place in that file (a line, a row or a byte offset, as
    :func:`embedcli.documents.place_kind` says for the file)."""

    file: np.ndarray  # int32
    at: np.ndarray  # int64
    ids: list[str] | None = None  # each document's id field (--id-key)


def goes_to_val(doc: str, fraction: float, seed: int) -> bool:
    """Whether the document named ``doc`` (``a.jsonl:12``, ``b.parquet:row 3``) belongs to the
    validation split: a hash of the seed and the name, so the choice is the same in every run
    and in every ``--shard`` of one run, whatever the order documents are read in."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}\0{doc}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little") < fraction * 2**64


def pieces(
    sources: list[Source],
    text_key: str,
    piece_chars: int,
    block_bytes: int,
    special: SpecialPolicy,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
    split_on_eot: bool = False,
    chooser: tuple[float, int] | None = None,
) -> Iterator[tuple[str, bool, int, int]]:
    """(piece of text, starts a new document, stream: 0 main, 1 validation, the document's
    place in its file) in order, cut at safe points. With ``split_on_eot`` a literal
    ``<|endoftext|>`` ends a document (TinyStories' separator); ``chooser=(fraction, seed)``
    sends documents to validation."""

    for source in sources:

        def stream_of(doc: str, source: Source = source) -> int:
            return int(chooser is not None and goes_to_val(source.split_key(doc), *chooser))

        args = (piece_chars, block_bytes, special, stats, on_progress, chooser)
        whole = None if split_on_eot else _whole_documents(source, text_key, *args)
        if whole is not None:
            yield from whole
            continue
        carry, carry_line, starts_doc, k, part = "", 1, True, 0, 0
        for block in iter_blocks(source, text_key=text_key, block_bytes=block_bytes):
            if on_progress is not None:
                on_progress(block.nbytes)
            stats.input_bytes += block.nbytes
            # the reader's UTF-8 size, where one document's blocks all go to one split
            sized = block.utf8 is not None and not split_on_eot
            if block.last and not carry and not split_on_eot:  # a whole document in one block
                k = stream_of(block.doc) if chooser is not None else k
                yield from _block_document(block, k, stats, special, piece_chars)
                continue
            if not carry:
                carry_line = block.line
                if starts_doc:  # a document begins: which split it goes to
                    k, part = stream_of(block.doc), 0
                    at = block.line if block.at is None else block.at
            target = _split(stats, k)
            if sized:
                target.text_bytes += block.utf8 or 0
            carry += block.text
            while split_on_eot and stats.separator_text and stats.separator_text in carry:
                head, carry = carry.split(stats.separator_text, 1)
                found(target, [stats.separator_text])
                for piece, first in _document(head, starts_doc, target, piece_chars):
                    yield piece, first, k, at
                carry_line += head.count("\n")
                at = carry_line if block.at is None else block.at  # the next one's
                starts_doc, part = True, part + 1
                k = stream_of(f"{block.doc}#{part}")
                target = _split(stats, k)
            if block.last:
                if special == "error":
                    refuse_special(stats, block.doc, carry, carry_line)
                for piece, first in _document(carry, starts_doc, target, piece_chars, sized):
                    yield piece, first, k, at
                carry, starts_doc = "", True
            elif len(carry) >= 2 * piece_chars and stats.cuttable:
                pieces = split_text(carry, piece_chars)
                carry = pieces.pop()
                for piece in pieces:
                    target.chars += len(piece)
                    piece = piece if sized else counted(piece, target)
                    count_specials(piece, target)
                    if special == "error":  # the line is for its message
                        refuse_special(stats, block.doc, piece, carry_line)
                    if special == "error" or split_on_eot:  # and the next document's place
                        carry_line += piece.count("\n")
                    yield piece, starts_doc, k, at
                    starts_doc = False


def _block_document(
    block: Block, k: int, stats: TokenizeStats, special: SpecialPolicy, piece_chars: int
) -> list[tuple[str, bool, int, int]]:
    """The pieces of a document read in one block, sent to stream ``k``."""
    if special == "error":
        refuse_special(stats, block.doc, block.text, block.line)
    at = block.line if block.at is None else block.at
    target = _split(stats, k)
    target.text_bytes += block.utf8 or 0
    sized = block.utf8 is not None
    return [
        (p, first, k, at) for p, first in _document(block.text, True, target, piece_chars, sized)
    ]


def _split(stats: TokenizeStats, k: int) -> TokenizeStats:
    """The counts of stream ``k``: the main one, or (1) the validation split's."""
    if k and stats.val is not None:
        return stats.val
    return stats


def text_pieces(
    texts: list[str], special: SpecialPolicy, stats: TokenizeStats, piece_chars: int
) -> Iterator[tuple[str, bool, int, int]]:
    """:func:`pieces` of documents given as strings (``tokenizer.encode``), named
    ``texts[i]`` in messages, placed at ``i``."""
    for i, text in enumerate(texts):
        if special == "error":
            refuse_special(stats, f"texts[{i}]", text, 1)
        for piece, first in _document(text, True, stats, piece_chars):
            yield piece, first, 0, i


def _document(
    text: str, starts_doc: bool, stats: TokenizeStats, piece_chars: int, sized: bool = False
) -> list[tuple[str, bool]]:
    """The last text of a document (all of it when ``starts_doc``), in pieces; counted (its
    UTF-8 size, unless ``sized``: the reader's, counted already)."""
    stats.documents += 1
    stats.chars += len(text)
    text = text if sized else counted(text, stats)
    count_specials(text, stats)
    if (
        len(text) < piece_chars or not stats.cuttable
    ):  # an empty document too: it still gets its separator
        return [(text, starts_doc)]
    pieces = split_text(text, piece_chars)
    return [(piece, starts_doc and i == 0) for i, piece in enumerate(pieces)]


def _whole_documents(
    source: Source,
    text_key: str,
    piece_chars: int,
    block_bytes: int,
    special: SpecialPolicy,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
    chooser: tuple[float, int] | None,
) -> Iterator[tuple[str, bool, int, int]] | None:
    """:func:`pieces` of a source whose documents are each whole where they are read (a
    jsonl line, a row), read without blocks; None for a text source."""
    if source.format == "jsonl":
        return _jsonl_pieces(
            source, text_key, piece_chars, block_bytes, special, stats, on_progress, chooser
        )
    tasks = source_row_tasks(source, text_key, piece_chars, special, stats, on_progress, chooser)
    if tasks is None:
        return None
    return (
        item
        for texts, starts, which, at in tasks
        for item in zip(texts, starts.tolist(), which.tolist(), at.tolist(), strict=True)
    )


def _jsonl_pieces(
    source: Source,
    text_key: str,
    piece_chars: int,
    block_bytes: int,
    special: SpecialPolicy,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
    chooser: tuple[float, int] | None,
) -> Iterator[tuple[str, bool, int, int]]:
    """:func:`pieces` of a jsonl source, a whole document per line: the same pieces and
    counts, without a :class:`Block` or a document name per line unless one is needed."""
    for text, lineno, offset, nbytes in jsonl_records(source, text_key, block_bytes):
        if on_progress is not None:
            on_progress(nbytes)
        stats.input_bytes += nbytes
        if text is None:  # the file ended with blank lines
            continue
        k = int(
            chooser is not None
            and goes_to_val(source.split_key(doc_name(source, lineno, offset)), *chooser)
        )
        if special == "error" and first_special(stats.special_texts, text):
            refuse_special(stats, doc_name(source, lineno, offset), text, lineno or 0)
        at = offset if lineno is None else lineno  # a byte offset where lines are not known
        for piece, first in _document(text, True, _split(stats, k), piece_chars):
            yield piece, first, k, at


def source_row_tasks(
    source: Source,
    text_key: str,
    piece_chars: int,
    special: SpecialPolicy,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
    chooser: tuple[float, int] | None,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[Task] | None:
    """:func:`row_tasks` of a source read by rows (Parquet, Arrow), :func:`jsonl_tasks` of
    a jsonl source that needs nothing per line; None for any other."""
    if source.format == "jsonl":
        if chooser is not None or special == "error":
            return None
        return jsonl_tasks(source, text_key, piece_chars, block_bytes, stats, on_progress)
    rows = row_batches(source, text_key=text_key)
    if rows is None:
        return None
    return row_tasks(source, rows, piece_chars, special, stats, on_progress, chooser)


def jsonl_tasks(
    source: Source,
    text_key: str,
    piece_chars: int,
    block_bytes: int,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
) -> Iterator[Task]:
    """:func:`pieces` of a jsonl source with no ``--val-fraction`` or ``--special error``, as
    tasks of about ``piece_chars`` characters, counted a task at a time: the general reader's
    five calls a line cost twice the JSON parsing (``.jsonl.gz``, stdin, ``--workers 1``)."""
    texts: list[str] = []
    places: list[int] = []
    chars = nbytes = 0
    for text, lineno, offset, size in jsonl_records(source, text_key, block_bytes):
        nbytes += size
        if text is None:  # the file ended with blank lines
            continue
        at = offset if lineno is None else lineno  # a byte offset where lines are not known
        if stats.cuttable and len(text) >= piece_chars:  # a long document: cut, a task apart
            yield from _flushed(texts, places, stats)
            texts, places, chars = [], [], 0
            yield as_task(
                [(p, first, 0, at) for p, first in _document(text, True, stats, piece_chars)]
            )
            continue
        texts.append(text)
        places.append(at)
        chars += len(text)
        if chars >= piece_chars:
            if on_progress is not None:
                on_progress(nbytes)
            stats.input_bytes += nbytes
            nbytes = 0
            yield from _flushed(texts, places, stats)
            texts, places, chars = [], [], 0
    if on_progress is not None:
        on_progress(nbytes)
    stats.input_bytes += nbytes
    yield from _flushed(texts, places, stats)


def _flushed(texts: list[str], places: list[int], stats: TokenizeStats) -> Iterator[Task]:
    """Whole documents as one task, counted (their UTF-8 sizes, lone surrogates replaced)."""
    if not texts:
        return
    texts = [counted(text, stats) for text in texts]
    stats.documents += len(texts)
    stats.chars += sum(map(len, texts))
    count_specials_each(texts, stats)
    n = len(texts)
    yield texts, np.ones(n, bool), np.zeros(n, np.int8), np.asarray(places, np.int64)


def row_tasks(
    source: Source,
    rows: Iterator[Rows],
    piece_chars: int,
    special: SpecialPolicy,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
    chooser: tuple[float, int] | None,
) -> Iterator[Task]:
    """:func:`pieces` of a columnar source (a whole document per row), a batch of rows at a
    time, as a task (its pieces, which of them start a document, their streams, places): the same
    pieces and counts as its blocks give. A batch that needs nothing per row
    (no ``--val-fraction``, no ``--special error``, no document to cut) is counted as a
    whole: its UTF-8 size is its column's (Arrow's UTF-8 holds no lone surrogate to
    replace), its special tokens found in one search."""
    for batch in rows:
        if on_progress is not None:
            on_progress(batch.nbytes)
        stats.input_bytes += batch.nbytes
        texts = batch.texts
        if (
            chooser is None
            and special != "error"
            and (not stats.cuttable or max(map(len, texts)) < piece_chars)
        ):
            stats.documents += len(texts)
            stats.chars += sum(map(len, texts))
            stats.text_bytes += batch.text_bytes
            count_specials_each(texts, stats)
            places = np.arange(batch.first_row, batch.first_row + len(texts), dtype=np.int64)
            yield texts, np.ones(len(texts), bool), np.zeros(len(texts), np.int8), places
            continue
        task: list[tuple[str, bool, int, int]] = []
        chars = 0
        for n, text in enumerate(texts):
            doc = f"{source.name}:row {batch.first_row + n}"
            k = int(chooser is not None and goes_to_val(source.split_key(doc), *chooser))
            if special == "error":
                refuse_special(stats, doc, text, 0)
            for piece, first in _document(text, True, _split(stats, k), piece_chars):
                task.append((piece, first, k, batch.first_row + n))
                chars += len(piece)
                if chars >= piece_chars:  # a long document's pieces go to the workers apart
                    yield as_task(task)
                    task, chars = [], 0
        if task:
            yield as_task(task)


def as_task(task: list[tuple[str, bool, int, int]]) -> Task:
    """A task's pieces, which of them start a document, their streams and places, apart."""
    return (
        [piece for piece, _, _, _ in task],
        np.fromiter((first for _, first, _, _ in task), bool, len(task)),
        np.fromiter((k for _, _, k, _ in task), np.int8, len(task)),
        np.fromiter((at for _, _, _, at in task), np.int64, len(task)),
    )


def counted(text: str, stats: TokenizeStats) -> str:
    """``text`` with its UTF-8 size counted, lone surrogates replaced by U+FFFD (and counted).

    A JSON escape such as ``"\\ud83d"`` is valid JSON and gives a str holding a lone surrogate,
    which no engine can encode as UTF-8. tiktoken's ``encode`` replaces it by U+FFFD through a
    UTF-16 round trip; this is the same round trip, done once here for every engine. (A str
    from JSON never holds a valid pair: the decoder joins those, so cutting cannot split one.)
    """
    if text.isascii():
        stats.text_bytes += len(text)
        return text
    try:
        stats.text_bytes += len(text.encode("utf-8"))
        return text
    except UnicodeEncodeError:
        fixed = without_lone_surrogates(text)
        stats.replaced += fixed.count("\ufffd") - text.count("\ufffd")
        stats.text_bytes += len(fixed.encode("utf-8"))
        return fixed
