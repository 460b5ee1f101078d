"""Encoding in a pool of workers, written in order: the engine under ``tokenizer.tokenize``.

Tasks (lists of pieces of text) are encoded by worker processes (forked, so the built encoding is
shared) or, where forking is unsafe, threads; their ids are written to the sinks in submission
order, with ``<|endoftext|>`` placed as the stream's ``eot`` mode says. A piece belongs to one of
two streams, the main one or the validation split (``--val-fraction``), each with its own sink,
document offsets and counts. At most ``2 * workers`` tasks are in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from embedcli.bpe.engines import EngineKey, engine_for
from embedcli.bpe.pieces import IdSink, Origins, TokenizeStats, as_task
from embedcli.bpe.ranges import ChunkSetup, add_counts, encode_chunk, eots_before
from embedcli.documents import Source

if TYPE_CHECKING:  # the pools' modules load only when a run starts one (issue 47, item 6)
    from concurrent.futures import Executor, Future

T = TypeVar("T")


@dataclass
class Stream:
    """Where one split's ids go: its sink, its statistics (``tokens``, ``eot``, ``eot_id``)
    and its document offsets."""

    sink: IdSink
    stats: TokenizeStats
    offsets: list[np.ndarray] = field(default_factory=list)  # one array per task
    documents: int = 0  # documents written so far
    # (file, places) of each task's documents, where they are kept (--provenance)
    origins: list[tuple[int, np.ndarray]] | None = None

    def take(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        starts: np.ndarray,
        eots: np.ndarray,
        origin: tuple[int, np.ndarray] | None = None,
    ) -> None:
        """Write one task's pieces: their ids end to end (``<|endoftext|>`` in place), each
        piece's length without it, which pieces start a document and which have one before;
        ``origin``, the task's file and each piece's document's place in it.

        Every task is encoded as if documents came before it (:func:`chunked.eots_before`), in
        the main process or a worker; here, in order, the very first document of a mode that
        closes documents loses the ``<|endoftext|>`` nothing needed. Whole-array operations:
        a task of a thousand small documents costs a few numpy calls.
        """
        if self.documents == 0 and self.stats.eot in ("between", "after") and starts.any():
            first = int(np.argmax(starts))
            ids = np.delete(ids, int((lengths[:first] + eots[:first]).sum()))
            eots = eots.copy()
            eots[first] = False
        self.documents += int(starts.sum())
        spans = lengths + eots  # each piece's ids, its <|endoftext|> included
        at = np.cumsum(spans) - spans + self.stats.tokens
        if self.stats.eot != "before":  # offsets point past a closing EOT, at an opening one
            at += eots
        self.offsets.append(at[starts])
        if self.origins is not None and origin is not None:
            self.origins.append((origin[0], origin[1][starts]))
        self.stats.tokens += int(ids.size)
        if ids.size:
            self.sink.write(ids)

    def finish(self) -> None:
        if self.documents and self.stats.eot == "after":  # closes the last document
            self.sink.write(np.array([self.stats.eot_id], dtype=np.int32))
            self.stats.tokens += 1

    def doc_offsets(self) -> np.ndarray:
        """Where each document starts, and the end: ``doc_offsets`` of the token file."""
        end = np.array([self.stats.tokens], np.int64)
        return np.concatenate([*self.offsets, end]).astype(np.int64, copy=False)

    def doc_origins(self) -> Origins | None:
        """Each document's file and place, where they are kept."""
        if self.origins is None:
            return None
        files = [np.full(at.size, f, np.int32) for f, at in self.origins]
        places = [at for _, at in self.origins]
        empty = [np.zeros(0, np.int32)], [np.zeros(0, np.int64)]
        return Origins(np.concatenate(files or empty[0]), np.concatenate(places or empty[1]))


class OrderedEncoder:
    """``submit(task)`` with a task of ``(piece, starts a document, stream index)`` (or
    ``submit_texts`` with the same as four arrays), or ``submit_chunk`` with a range of a
    jsonl file; results are placed in submission order."""

    def __init__(self, engine: EngineKey, streams: list[Stream], workers: int, threads: bool):
        self.engine, self.streams = engine, streams  # engine: (backend, encoding, special)
        self.workers, self.threads = workers, threads
        self.pool: Executor | None = None  # started with the second task: small inputs never pay
        # (job or its result, what places the result once it is its turn)
        self.pending: deque[tuple[Future | tuple, Callable[[tuple], None]]] = deque()

    def submit(self, task: list[tuple[str, bool, int, int]], file: int = 0) -> None:
        self.submit_texts(*as_task(task), file=file)

    def submit_texts(
        self,
        texts: list[str],
        starts: np.ndarray,
        which: np.ndarray,
        at: np.ndarray,
        *,
        file: int = 0,
    ) -> None:
        """A task given as its pieces, which of them start a document, their streams, and
        their documents' places in the source ``file`` (an index into the run's sources)."""
        if self.pool is None and self.workers > 1 and self.pending:
            from embedcli.processes import make_pool

            self.pool = make_pool(self.workers, self.threads)
        eots = eots_before(starts, self.streams[0].stats.eot)
        job = (self.pool.submit if self.pool else _call)(encode_task, self.engine, texts, eots)
        self.pending.append(
            (job, lambda result: self._place(result[0], result[1], starts, which, eots, (file, at)))
        )
        self.drain(2 * self.workers)

    def submit_chunk(
        self,
        part: Source,
        setup: ChunkSetup,
        on_progress: Callable[[int], None] | None = None,
        *,
        file: int = 0,
    ) -> None:
        """A range of a jsonl file for a worker to read and encode (see ``chunked.py``)."""
        if self.pool is None and self.workers > 1:
            # Forked workers may use gigatoken: its one-text encode runs on the calling thread
            # (0.10, the range pinned), never on its thread pool, which a fork would leave
            # without threads.
            from embedcli.processes import make_pool

            self.pool = make_pool(self.workers, threads=False)
        job = (self.pool.submit if self.pool else _call)(encode_chunk, self.engine, part, setup)
        self.pending.append((job, lambda result: self._place_chunk(result, on_progress, file)))
        self.drain(2 * self.workers)

    def drain(self, limit: int) -> None:
        while len(self.pending) > limit:
            job, place = self.pending.popleft()
            place(job if isinstance(job, tuple) else job.result())  # a tuple: encoded in place

    def _place_chunk(
        self, result: tuple, on_progress: Callable[[int], None] | None, file: int
    ) -> None:
        """A worker's range: its arrays, and the counts the main process did not see."""
        ids, lengths, starts, which, eots, at, counts = result
        for stream, added in zip(self.streams, counts, strict=False):  # val: no stream
            add_counts(stream.stats, added)
        if on_progress is not None:
            on_progress(sum(c[-1] for c in counts))
        self._place(ids, lengths, starts, which, eots, (file, at))

    def _place(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        starts: np.ndarray,
        which: np.ndarray,
        eots: np.ndarray,
        origin: tuple[int, np.ndarray],
    ) -> None:
        if len(self.streams) == 1 or not which.any():
            self.streams[0].take(ids, lengths, starts, eots, origin)
            return
        tokens = np.repeat(which, lengths + eots)  # --val-fraction: pieces of both splits
        for k, stream in enumerate(self.streams):
            mine = which == k
            at = (origin[0], origin[1][mine])
            stream.take(ids[tokens == k], lengths[mine], starts[mine], eots[mine], at)

    def __enter__(self) -> OrderedEncoder:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.drain(0)
                for stream in self.streams:
                    stream.finish()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def encode_task(
    engine: EngineKey, task: list[str], eots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A task's ids end to end, ``<|endoftext|>`` before the pieces ``eots`` marks, and each
    piece's length without it (in a worker: the engine is already built, copied by fork)."""
    return engine_for(*engine)(task, eots)


def _call(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)
