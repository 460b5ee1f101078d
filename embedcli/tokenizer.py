"""Documents to token ids, in parallel, identical to encoding each document whole.

Documents are joined with ``<|endoftext|>`` *between* them, so one document encodes to exactly
``enc.encode(text, allowed_special={"<|endoftext|>"})`` — the reference pipeline's call.

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
from typing import Protocol

import numpy as np

from .encoding import EOT, encode_kwargs, eot_id, get_encoding
from .errors import InputError
from .text import Source, iter_blocks

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
    documents: int = 0
    tokens: int = 0
    input_bytes: int = 0
    chars: int = 0
    special_found: int = 0
    seconds: float = 0.0
    sources: list[str] = field(default_factory=list)
    doc_offsets: np.ndarray | None = None  # start of each document in the ids, plus the end

    def metadata(self) -> dict[str, str]:
        """The token-file metadata later stages read (see README, "File contract")."""
        import json

        from . import __version__

        return {
            "embedcli": "tokens",
            "embedcli_version": __version__,
            "encoding": self.encoding,
            "vocab_size": str(self.vocab_size),
            "eot_id": str(self.eot_id),
            "special": self.special,
            "special_found": str(self.special_found),
            "documents": str(self.documents),
            "tokens": str(self.tokens),
            "sources": json.dumps(self.sources, ensure_ascii=False),
        }


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def tokenize(
    sources: Iterable[Source],
    sink: IdSink,
    *,
    encoding: str = "gpt2",
    special: str = "special",
    text_key: str = "text",
    workers: int | None = None,
    piece_chars: int = PIECE_CHARS,
    on_progress: Callable[[int], None] | None = None,
    allow_empty: bool = False,
) -> TokenizeStats:
    """Encode every document of ``sources`` into ``sink`` (int32 arrays), ``<|endoftext|>``
    between documents; return counts and ``doc_offsets``.

    Raises :class:`InputError` for unreadable or malformed input, empty input (unless
    ``allow_empty``: a shard may hold no document), and (with ``special="error"``) text
    containing a literal ``<|endoftext|>``.
    """
    started = time.perf_counter()
    enc = get_encoding(encoding)  # built here, before any worker is forked
    encode_kwargs(special)  # an unknown policy fails now, not in a worker
    stats = TokenizeStats(encoding, enc.n_vocab, eot_id(enc), special)
    sources = list(sources)
    stats.sources = [s.name for s in sources]
    eot = np.array([stats.eot_id], dtype=np.int32)
    workers = max(1, workers or default_workers())

    offsets: list[int] = []
    pieces = _pieces(sources, text_key, piece_chars, special, stats, on_progress)
    pool = None  # started with the second task: small inputs never pay for it
    # (encoded task, which of its pieces start a document), oldest first
    pending: deque[tuple[Future[list[np.ndarray]] | list[np.ndarray], list[bool]]] = deque()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            job, starts = pending.popleft()
            for ids, starts_doc in zip(
                job.result() if isinstance(job, Future) else job, starts, strict=True
            ):
                if starts_doc:
                    if offsets:
                        sink.write(eot)
                        stats.tokens += 1
                    offsets.append(stats.tokens)
                if ids.size:
                    sink.write(ids)
                    stats.tokens += int(ids.size)

    def submit(task: list[str], starts: list[bool]) -> None:
        nonlocal pool
        if pool is None and workers > 1 and pending:
            pool = _make_pool(workers)
        job = (pool.submit if pool else _call)(_encode_task, encoding, special, task)
        pending.append((job, starts))
        drain(2 * workers)

    # Small documents (jsonl lines) are grouped into tasks of about piece_chars characters, so
    # 100k tiny documents cost 100 thread hand-offs, not 100k.
    task: list[str] = []
    starts: list[bool] = []
    size = 0
    try:
        for piece, starts_doc in pieces:
            task.append(piece)
            starts.append(starts_doc)
            size += len(piece)
            if size >= piece_chars:
                submit(task, starts)
                task, starts, size = [], [], 0
        if task:
            submit(task, starts)
        drain(0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    if not allow_empty and (stats.documents == 0 or stats.chars == 0):
        names = ", ".join(stats.sources[:3]) + (", ..." if len(stats.sources) > 3 else "")
        raise InputError(f"{names}: no text to tokenize (the input is empty)")
    offsets.append(stats.tokens)
    stats.doc_offsets = np.asarray(offsets, dtype=np.int64)
    stats.seconds = time.perf_counter() - started
    return stats


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
    special: str,
    stats: TokenizeStats,
    on_progress: Callable[[int], None] | None,
) -> Iterator[tuple[str, bool]]:
    """(piece of text, starts a new document) in order, cut at safe points."""
    for source in sources:
        carry, carry_line, starts_doc = "", 1, True
        for block in iter_blocks(source, text_key=text_key):
            if on_progress is not None:
                on_progress(block.nbytes)
            stats.input_bytes += block.nbytes
            if not carry:
                carry_line = block.line
            carry += block.text
            if block.last:
                stats.documents += 1
                stats.chars += len(carry)
                found = carry.count(EOT)
                if found and special == "error":
                    _refuse_special(block.doc, carry, carry_line)
                stats.special_found += found
                for piece in split_text(carry, piece_chars):
                    yield piece, starts_doc
                    starts_doc = False
                if starts_doc:  # an empty document still counts and gets its separator
                    yield "", True
                carry, starts_doc = "", True
            elif len(carry) >= 2 * piece_chars:
                pieces = split_text(carry, piece_chars)
                carry = pieces.pop()
                for piece in pieces:
                    stats.chars += len(piece)
                    found = piece.count(EOT)
                    if found and special == "error":
                        _refuse_special(block.doc, piece, carry_line)
                    stats.special_found += found
                    carry_line += piece.count("\n")
                    yield piece, starts_doc
                    starts_doc = False


def _refuse_special(doc: str, text: str, first_line: int) -> None:
    at = text.index(EOT)
    where = doc if ":" in doc else f"{doc}:{first_line + text.count(chr(10), 0, at)}"
    raise InputError(
        f"{where}: text contains {EOT} (refused by --special error; "
        "use --special text to encode it as plain text)"
    )
