"""Documents to token ids, in parallel, identical to encoding each document whole.

By default documents are joined with ``<|endoftext|>`` *between* them, so one document encodes
to exactly ``enc.encode(text, allowed_special={"<|endoftext|>"})`` — the reference pipeline's
call. ``eot`` places it *after* every document instead (nanoGPT's ``prepare.py``, Megatron's
``--append-eod``), *before* every document (llm.c's ``fineweb.py``), or nowhere. Either way
``doc_offsets[d]`` is where document *d*'s span starts, its ``<|endoftext|>`` included.

Parallelism: pieces go to worker processes (forked, so the built encoding is shared) or, where
forking is unsafe, threads (tiktoken releases the GIL). Long text is cut into pieces only at
*safe points*: just after a letter that is followed by a space or newline. Every
pre-tokenizer pattern tiktoken ships ends a letter run's piece before whitespace (none of them
lets a letter piece absorb what follows), and no pattern looks behind, so the pieces on both sides
tokenize exactly as they would inside the whole text. ``tests/test_tokenizer.py`` checks this
identity with hypothesis over adversarial text. Text without such points (a 10 MB run of one
character) is encoded in one piece, which is still correct, only not parallel.

Memory: ids leave as small numpy arrays handed to a sink (a file or memory), never as one Python
list; at most ``2 * workers`` pieces of about ``piece_chars`` characters are in flight.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .encoding import DEFAULT_ENCODING, EOT, encode_kwargs, eot_id, get_encoding
from .errors import InputError, UsageError
from .options import EOT_MODES
from .text import BLOCK_BYTES, Source, iter_blocks

if TYPE_CHECKING:
    from .options import TokenizeOptions

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
    special: str
    eot: str = EOT_MODES[0]  # where <|endoftext|> goes: between, after, before or none
    documents: int = 0
    tokens: int = 0
    input_bytes: int = 0
    chars: int = 0
    text_bytes: int = 0  # UTF-8 bytes of the text (input_bytes is what was read: compressed, JSON)
    special_found: int = 0
    seconds: float = 0.0
    sources: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files input directories did not give
    doc_offsets: np.ndarray | None = None  # start of each document in the ids, plus the end

    def metadata(self) -> dict[str, str]:
        """The token-file metadata later stages read (see ``contract.py``)."""
        from . import contract as c

        return c.stage_metadata(
            "tokens",
            {
                c.ENCODING: self.encoding,
                c.VOCAB_SIZE: self.vocab_size,
                c.EOT_ID: self.eot_id,
                c.EOT_PLACEMENT: self.eot,
                c.SPECIAL: self.special,
                c.SPECIAL_FOUND: self.special_found,
                c.DOCUMENTS: self.documents,
                c.TOKENS: self.tokens,
                c.SOURCES: self.sources,
            },
        )


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def tokenize(
    sources: Iterable[Source],
    sink: IdSink,
    *,
    encoding: str = DEFAULT_ENCODING,
    special: str = "special",
    text_key: str = "text",
    workers: int | None = None,
    eot: str = EOT_MODES[0],
    split_on_eot: bool = False,
    piece_chars: int = PIECE_CHARS,
    block_bytes: int = BLOCK_BYTES,
    on_progress: Callable[[int], None] | None = None,
    allow_empty: bool = False,
) -> TokenizeStats:
    """Encode every document of ``sources`` into ``sink`` (int32 arrays), ``<|endoftext|>``
    between documents; return counts and ``doc_offsets``.

    ``piece_chars`` is the size of the pieces encoded in parallel, ``block_bytes`` the size of
    the reads; neither changes the ids.

    Raises :class:`InputError` for unreadable or malformed input, empty input (unless
    ``allow_empty``: a shard may hold no document), and (with ``special="error"``) text
    containing a literal ``<|endoftext|>``.
    """
    started = time.perf_counter()
    enc = get_encoding(encoding)  # built here, before any worker is forked
    encode_kwargs(special)  # an unknown policy fails now, not in a worker
    if eot not in EOT_MODES:
        raise UsageError(f"unknown --eot {eot!r}; use one of {', '.join(EOT_MODES)}")
    stats = TokenizeStats(encoding, enc.n_vocab, eot_id(enc), special, eot)
    sources = list(sources)
    stats.sources = [s.name for s in sources]
    if special != "special" and split_on_eot:
        raise UsageError(
            "--split-on-eot reads a literal <|endoftext|> as a boundary: it needs --special special"
        )
    pieces = _pieces(
        sources, text_key, piece_chars, block_bytes, special, stats, on_progress, split_on_eot
    )
    with _OrderedEncoder(encoding, special, sink, stats, workers) as encoder:
        # Small documents (jsonl lines) are grouped into tasks of about piece_chars characters,
        # so 100k tiny documents cost 100 hand-offs, not 100k.
        task: list[tuple[str, bool]] = []
        size = 0
        for piece, starts_doc in pieces:
            task.append((piece, starts_doc))
            size += len(piece)
            if size >= piece_chars:
                encoder.submit(task)
                task, size = [], 0
        if task:
            encoder.submit(task)
    if not allow_empty and (stats.documents == 0 or stats.chars == 0):
        names = ", ".join(stats.sources[:3]) + (", ..." if len(stats.sources) > 3 else "")
        raise InputError(f"{names}: no text to tokenize (the input is empty)")
    stats.doc_offsets = np.asarray([*encoder.offsets, stats.tokens], dtype=np.int64)
    stats.seconds = time.perf_counter() - started
    return stats


def tokenize_with(
    opts: TokenizeOptions,
    sources: Iterable[Source],
    sink: IdSink,
    *,
    on_progress: Callable[[int], None] | None = None,
    allow_empty: bool = False,
) -> TokenizeStats:
    """:func:`tokenize` as the options of a stage ask for it."""
    return tokenize(
        sources,
        sink,
        encoding=opts.encoding,
        special=opts.special,
        text_key=opts.text_key,
        workers=opts.workers,
        eot=opts.eot or EOT_MODES[0],
        split_on_eot=opts.split_on_eot,
        on_progress=on_progress,
        allow_empty=allow_empty,
    )


class _OrderedEncoder:
    """Encodes tasks (lists of ``(piece, starts a document)``) in a pool and writes their ids
    to the sink in submission order, ``<|endoftext|>`` placed as ``stats.eot`` says.
    At most ``2 * workers`` tasks are in flight."""

    def __init__(self, encoding: str, special: str, sink: IdSink, stats, workers: int | None):
        self.encoding, self.special, self.sink, self.stats = encoding, special, sink, stats
        self.workers = max(1, workers or default_workers())
        self.pool = None  # started with the second task: small inputs never pay for it
        self.pending: deque[tuple[Future[list[np.ndarray]] | list[np.ndarray], list[bool]]]
        self.pending = deque()
        self.offsets: list[int] = []
        self.held: list[np.ndarray] = []  # ids of the task being written, in order
        self.eot = np.array([stats.eot_id], dtype=np.int32)

    def submit(self, task: list[tuple[str, bool]]) -> None:
        if self.pool is None and self.workers > 1 and self.pending:
            self.pool = _make_pool(self.workers)
        texts = [piece for piece, _ in task]
        job = (self.pool.submit if self.pool else _call)(
            _encode_task, self.encoding, self.special, texts
        )
        self.pending.append((job, [starts for _, starts in task]))
        self.drain(2 * self.workers)

    def drain(self, limit: int) -> None:
        while len(self.pending) > limit:
            job, starts = self.pending.popleft()
            results = job.result() if isinstance(job, Future) else job
            for ids, starts_doc in zip(results, starts, strict=True):
                if starts_doc:
                    self.start_document()
                if ids.size:
                    self.held.append(ids)
                    self.stats.tokens += int(ids.size)
            self.flush()

    def flush(self) -> None:
        """One sink write per task: many small documents cost one copy, not two writes each."""
        if self.held:
            self.sink.write(np.concatenate(self.held) if len(self.held) > 1 else self.held[0])
            self.held.clear()

    def start_document(self) -> None:
        mode = self.stats.eot
        if self.offsets and mode in ("between", "after"):  # closes the previous document
            self.write_eot()
        self.offsets.append(self.stats.tokens)
        if mode == "before":
            self.write_eot()

    def write_eot(self) -> None:
        self.held.append(self.eot)
        self.stats.tokens += 1

    def __enter__(self) -> _OrderedEncoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.drain(0)
                if self.offsets and self.stats.eot == "after":  # closes the last document
                    self.write_eot()
                self.flush()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def _encode_task(encoding: str, special: str, task: list[str]) -> list[np.ndarray]:
    """Encode a task's pieces (in a worker: the encoding is already built, copied by fork)."""
    enc, kwargs = get_encoding(encoding), encode_kwargs(special)
    return [enc.encode_to_numpy(piece, **kwargs).view(np.int32) for piece in task]


def _call(fn, *args):
    return fn(*args)


def _make_pool(workers: int):
    """Worker processes where a fork is safe, else threads.

    tiktoken's Rust core releases the GIL, yet on the 2-core machines measured here threads
    gained 1.2-1.6x over one call while forked processes gained 2-2.7x (benchmarks/run.py). A
    fork is safe while this process runs no other thread (a forked child would inherit locks
    held by them): then processes, sharing the already-built encoding copy-on-write.
    """
    import multiprocessing
    import threading

    distributed = sys.modules.get("torch.distributed")
    if (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and not (
            distributed is not None and distributed.is_available() and distributed.is_initialized()
        )
    ):
        return ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init
        )
    return ThreadPoolExecutor(workers, thread_name_prefix="encode")


def _worker_init() -> None:
    # Ctrl-C and SIGTERM are the parent's to handle: it stops the pool and cleans up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pieces(
    sources: list[Source],
    text_key: str,
    piece_chars: int,
    block_bytes: int,
    special: str,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
    split_on_eot: bool = False,
) -> Iterator[tuple[str, bool]]:
    """(piece of text, starts a new document) in order, cut at safe points. With
    ``split_on_eot`` a literal ``<|endoftext|>`` ends a document (TinyStories' separator)."""
    for source in sources:
        carry, carry_line, starts_doc = "", 1, True
        for block in iter_blocks(source, text_key=text_key, block_bytes=block_bytes):
            if on_progress is not None:
                on_progress(block.nbytes)
            stats.input_bytes += block.nbytes
            if not carry:
                carry_line = block.line
            carry += block.text
            while split_on_eot and EOT in carry:  # the text before it is a whole document
                head, carry = carry.split(EOT, 1)
                stats.special_found += 1
                yield from _document(head, starts_doc, stats, special, piece_chars)
                carry_line += head.count("\n")
                starts_doc = True
            if block.last:
                found = carry.count(EOT)
                if found and special == "error":
                    _refuse_special(block.doc, carry, carry_line)
                yield from _document(carry, starts_doc, stats, special, piece_chars)
                carry, starts_doc = "", True
            elif len(carry) >= 2 * piece_chars:
                pieces = split_text(carry, piece_chars)
                carry = pieces.pop()
                for piece in pieces:
                    stats.chars += len(piece)
                    stats.text_bytes += _utf8_len(piece)
                    found = piece.count(EOT)
                    if found and special == "error":
                        _refuse_special(block.doc, piece, carry_line)
                    stats.special_found += found
                    carry_line += piece.count("\n")
                    yield piece, starts_doc
                    starts_doc = False


def _document(
    text: str, starts_doc: bool, stats: TokenizeStats, special: str, piece_chars: int
) -> Iterator[tuple[str, bool]]:
    """The last text of a document (all of it when ``starts_doc``), in pieces; counted."""
    stats.documents += 1
    stats.chars += len(text)
    stats.text_bytes += _utf8_len(text)
    stats.special_found += text.count(EOT)
    for piece in split_text(text, piece_chars):
        yield piece, starts_doc
        starts_doc = False
    if starts_doc:  # an empty document still counts and gets its separator
        yield "", True


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _refuse_special(doc: str, text: str, first_line: int) -> None:
    at = text.index(EOT)
    where = doc if ":" in doc else f"{doc}:{first_line + text.count(chr(10), 0, at)}"
    raise InputError(
        f"{where}: text contains {EOT} (refused by --special error; "
        "use --special text to encode it as plain text)"
    )
