"""Encoding in a pool of workers, written in order: the engine under ``tokenizer.tokenize``.

Tasks (lists of pieces of text) are encoded by worker processes (forked, so the built encoding is
shared) or, where forking is unsafe, threads; their ids are written to the sinks in submission
order, with ``<|endoftext|>`` placed as the stream's ``eot`` mode says. A piece belongs to one of
two streams, the main one or the validation split (``--val-fraction``), each with its own sink,
document offsets and counts. At most ``2 * workers`` tasks are in flight.
"""

from __future__ import annotations

import signal
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .encoding import encode_kwargs, get_encoding


@dataclass
class Stream:
    """Where one split's ids go: its sink, its statistics (``tokens``, ``eot``, ``eot_id``)
    and its document offsets."""

    sink: Any
    stats: Any
    offsets: list[int] = field(default_factory=list)
    held: list[np.ndarray] = field(default_factory=list)  # this task's ids, in order
    eot: np.ndarray = field(init=False)  # one array, reused for every <|endoftext|>

    def __post_init__(self) -> None:
        self.eot = np.array([self.stats.eot_id], dtype=np.int32)

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

    def write(self, ids: np.ndarray) -> None:
        self.held.append(ids)
        self.stats.tokens += int(ids.size)

    def flush(self) -> None:
        """One sink write per task: many small documents cost one copy, not two writes each."""
        if self.held:
            self.sink.write(np.concatenate(self.held) if len(self.held) > 1 else self.held[0])
            self.held.clear()

    def finish(self) -> None:
        if self.offsets and self.stats.eot == "after":  # closes the last document
            self.write_eot()
        self.flush()


class OrderedEncoder:
    """``submit(task)`` with a task of ``(piece, starts a document, stream index)``."""

    def __init__(self, encoding: str, special: str, streams: list[Stream], workers: int):
        self.encoding, self.special, self.streams = encoding, special, streams
        self.workers = workers
        self.pool = None  # started with the second task: small inputs never pay for it
        self.pending: deque[tuple[Future | list[np.ndarray], list[tuple[bool, int]]]] = deque()

    def submit(self, task: list[tuple[str, bool, int]]) -> None:
        if self.pool is None and self.workers > 1 and self.pending:
            self.pool = make_pool(self.workers)
        texts = [piece for piece, _, _ in task]
        job = (self.pool.submit if self.pool else _call)(
            encode_task, self.encoding, self.special, texts
        )
        self.pending.append((job, [(starts, k) for _, starts, k in task]))
        self.drain(2 * self.workers)

    def drain(self, limit: int) -> None:
        while len(self.pending) > limit:
            job, marks = self.pending.popleft()
            results = job.result() if isinstance(job, Future) else job
            for ids, (starts_doc, k) in zip(results, marks, strict=True):
                stream = self.streams[k]
                if starts_doc:
                    stream.start_document()
                if ids.size:
                    stream.write(ids)
            for stream in self.streams:
                stream.flush()

    def __enter__(self) -> OrderedEncoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.drain(0)
                for stream in self.streams:
                    stream.finish()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def encode_task(encoding: str, special: str, task: list[str]) -> list[np.ndarray]:
    """Encode a task's pieces (in a worker: the encoding is already built, copied by fork)."""
    enc, kwargs = get_encoding(encoding), encode_kwargs(special)
    return [enc.encode_to_numpy(piece, **kwargs).view(np.int32) for piece in task]


def _call(fn, *args):
    return fn(*args)


def make_pool(workers: int):
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
