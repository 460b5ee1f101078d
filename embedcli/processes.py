"""The one place embedcli starts worker processes: forked only where a fork is safe, each worker
with the signals a worker should have, stopped by closing and joining, never by signalling.

Why one place: a worker forked from the CLI inherits the CLI's SIGTERM handler, which raises
``Terminated`` (a ``KeyboardInterrupt``) in the worker. ``multiprocessing.Pool`` ends its
workers on ``__exit__`` with ``terminate()``, a SIGTERM each, while it holds the task queue's
lock; a worker whose handler turned that signal into an exception outlived it and waited for
the lock forever, and a first run hung in the Unicode-gap scan of that time (issue 48). Here
workers ignore SIGINT (a Ctrl-C in the terminal reaches the whole process group: the parent
handles it) and take SIGTERM at its default (a signal meant for a worker ends it), and pools
are ``concurrent.futures`` executors, which end their workers with a sentinel on their queue
after the last result and on error alike. A worker's task is bounded work (one task of text), so an
interrupted parent waits at most for the tasks already running.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor


def fork_is_safe() -> bool:
    """A fork is safe while this process runs no other thread (a forked child would inherit
    locks held by them, never to be released) and no torch process group is up (its
    communicator's threads and sockets do not survive a fork)."""
    import multiprocessing
    import threading

    distributed = sys.modules.get("torch.distributed")
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and not (
            distributed is not None and distributed.is_available() and distributed.is_initialized()
        )
    )


def process_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` forked processes (the caller checked :func:`fork_is_safe`), each started
    by :func:`worker_init`. They share what the parent built before the first task, copy on
    write."""
    import multiprocessing

    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=worker_init
    )


def make_pool(workers: int, threads: bool = False) -> Executor:
    """Worker processes where a fork is safe (and ``threads`` is not asked for), else threads.

    tiktoken's Rust core releases the GIL, yet threads gain much less over one call than
    forked processes do (``benchmarks/run.py tokenize`` measures both).
    """
    if not threads and fork_is_safe():
        return process_pool(workers)
    return ThreadPoolExecutor(workers, thread_name_prefix="encode")


def worker_init() -> None:
    """The signals of a worker: Ctrl-C is the parent's to handle (it stops the pool and
    cleans up), SIGTERM ends the worker (never the parent's handler, inherited by the fork);
    and tokenizers' own threads off."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The pool is the parallelism: a tokenizers call in a worker runs on that worker alone
    # (set here, in the worker's own environment, never in the caller's).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
