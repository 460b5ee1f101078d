"""``batch`` as a library call: ids (from a token file, several, or text tokenized on the fly)
to ``(N, max_length)`` inputs and targets, the reference data loader's windows.

Example:
    >>> from embedcli import run_batch, WindowOptions
    >>> run_batch(["corpus.tokens.safetensors"], "w.safetensors",
    ...           WindowOptions(max_length=4, batch_size=8))                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from embedcli import contract as c
from embedcli.errors import UsageError
from embedcli.inputs import Request, Resolved, TokenSource, open_input
from embedcli.options import OUTPUT_DTYPES, TokenizeOptions, WindowOptions
from embedcli.progress import ProgressFactory, no_progress
from embedcli.stages.common import (
    CHUNK_BYTES,
    announce,
    first_window,
    ids_of,
    make_plan,
    plan_result,
    split_note,
    windows_file,
)
from embedcli.stages.results import BatchResult, PlanResult, Written
from embedcli.stages.staging import remote_output
from embedcli.storage.outputs import (
    check_disk,
    check_output,
    planned_files,
    stale_temps,
    write_tensors,
)
from embedcli.storage.store import TensorSpec, header_if_file, release_pages
from embedcli.vocab import out_of_vocab_in
from embedcli.window_rows import random_access_ids, write_window_pairs, write_windows
from embedcli.windows import ArithmeticStarts, PlanFacts, WindowPlan

if TYPE_CHECKING:
    from embedcli.inspection.stats import Histogram


SHUFFLED_CHUNK_BYTES = 8 << 20
# batch's own options that make its output smaller, named when the disk is too small
BATCH_SHRINK = "--num-batches, a larger --stride, --dtype int32"


@dataclass
class _Job:
    """A batch run resolved and planned, before anything is written."""

    found: Resolved
    source: TokenSource
    plan: WindowPlan
    facts: PlanFacts
    specs: list[TensorSpec]
    meta: dict[str, str]
    files: list[tuple[str, int | None]]
    notes: list[str]


@contextlib.contextmanager
def _planned(
    inputs: list[str],
    output: str,
    opts: WindowOptions,
    tokenize_opts: TokenizeOptions | None,
    key: str,
    no_clobber: bool,
    progress: ProgressFactory,
    max_shard_size: int | None,
) -> Iterator[_Job]:
    if opts.dtype not in OUTPUT_DTYPES:
        raise UsageError(f"unknown --dtype {opts.dtype!r}; use one of {', '.join(OUTPUT_DTYPES)}")
    request = Request(key=key, tokenize=tokenize_opts or TokenizeOptions())
    with open_input(inputs, request) as found:
        check_output(output, inputs=found.paths, no_clobber=no_clobber)
        notes = stale_temps(output)
        src = found.load(progress)
        assert isinstance(src, TokenSource)  # windows are refused without allow_windows
        notes += _vocab_notes(src, inputs)
        plan = make_plan(src, opts)
        facts = plan.facts()
        specs, meta = windows_file(plan, opts, src.metadata, facts, max_shard_size)
        files = planned_files(output, specs, [], meta, max_shard_size)
        yield _Job(found, src, plan, facts, specs, meta, files, notes)


@remote_output
def plan_batch(
    inputs: list[str],
    output: str,
    opts: WindowOptions | None = None,
    tokenize_opts: TokenizeOptions | None = None,
    *,
    key: str = "ids",
    no_clobber: bool = False,
    progress: ProgressFactory = no_progress,
    max_shard_size: int | None = None,
) -> PlanResult:
    """What :func:`run_batch` would write (``--dry-run``): the input is read (text is
    tokenized: the windows depend on the ids), nothing is written."""
    with _planned(
        inputs, output, opts or WindowOptions(), tokenize_opts, key, no_clobber, progress,
        max_shard_size,
    ) as job:  # fmt: skip
        return plan_result(
            "batch", job.found.paths, job.files, job.specs, job.notes, windows=job.facts.windows
        )


@remote_output
def run_batch(
    inputs: list[str],
    output: str,
    opts: WindowOptions | None = None,
    tokenize_opts: TokenizeOptions | None = None,
    *,
    key: str = "ids",
    no_clobber: bool = False,
    progress: ProgressFactory = no_progress,
    max_shard_size: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    notify: Callable[[str], None] | None = None,
) -> BatchResult:
    """Windows ``(N, max_length)`` of inputs and targets from a token file, ids or text.

    ``max_shard_size`` (bytes) splits the output into files of at most that size plus an
    ``.index.json``; ``chunk_bytes`` is how much is gathered at once (memory, not results).
    ``notify`` hears of a large output before it is written.
    """
    opts = opts or WindowOptions()
    started = time.perf_counter()
    with _planned(
        inputs, output, opts, tokenize_opts, key, no_clobber, progress, max_shard_size
    ) as job:
        src, plan = job.source, job.plan
        check_disk(output, sum(size or 0 for _, size in job.files), BATCH_SHRINK)
        announce(notify, output, job.files)
        paths = write_windows_file(
            output, src, plan, opts, job.specs, job.meta, read=job.found.paths,
            no_clobber=no_clobber, max_shard_size=max_shard_size, chunk_bytes=chunk_bytes,
        )  # fmt: skip
        first = first_window(src, plan)
        job.notes += split_note(paths, max_shard_size)
    return BatchResult(
        output,
        Written.of(paths),
        job.facts,
        opts.dtype,
        src.size,
        time.perf_counter() - started,
        tokenized=src.stats,
        first_window=first,
        header=header_if_file(output),
        coverage=_coverage(plan),
        notes=job.notes,
    )


def write_windows_file(
    output: str,
    src: TokenSource,
    plan: WindowPlan,
    opts: WindowOptions,
    specs: list[TensorSpec],
    meta: dict[str, str],
    *,
    read: list[str],
    no_clobber: bool,
    max_shard_size: int | None,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[str]:
    """Write ``plan``'s inputs and targets of ``src``'s ids (the tensors ``specs`` and
    ``meta`` describe: :func:`~embedcli.stages.common.windows_file`); the paths written."""
    dtype = np.dtype(opts.dtype)
    if plan.shuffle_seed is not None:  # random rows: big chunks gain nothing, cost memory
        chunk_bytes = min(chunk_bytes, SHUFFLED_CHUNK_BYTES)
    rows = max(1, chunk_bytes // (plan.max_length * dtype.itemsize))
    # A shuffled plan reads at random: from ids as small as they fit (windows.py)
    ids = random_access_ids(src.segments) if plan.shuffle_seed is not None else ids_of(src)
    indexed = not isinstance(plan.starts, ArithmeticStarts)

    def write_rows(f: BinaryIO, a: int, b: int) -> None:
        # random rows: each gathered once for both tensors where the file allows it
        if indexed and write_window_pairs(f, ids, plan, a, b, dtype, rows):
            return
        for shift in (0, 1):  # all inputs rows, then all targets rows
            write_windows(f, ids, plan, a, b, dtype, shift, rows)

    return write_tensors(
        output,
        specs,
        [],
        meta,
        write_rows,
        lambda f, spec: None,
        read=read,
        no_clobber=no_clobber,
        max_shard_size=max_shard_size,
        rows_count=plan.n_windows,
    )


def _vocab_notes(src: TokenSource, inputs: list[str]) -> list[str]:
    """A warning when ids lie outside the vocabulary: they are windowed as they are (a file
    of ids is data, whatever they index), but no embedding of the encoding can take them."""
    vocab = c.get_int(src.metadata, c.VOCAB_SIZE)
    # the scan reads every id once: pages of a memory map are handed back behind it
    found = out_of_vocab_in(src.segments, vocab, release_pages) if vocab else None
    if found is None or vocab is None:
        return []
    name = inputs[0] if len(inputs) == 1 and inputs[0] != "-" else "the input"
    message = found.message(name, vocab, (src.size,))
    return [f"{message}; windowed as they are (embed refuses them)"]


def _coverage(plan: WindowPlan) -> Histogram:
    """Where windows start along the ids, for the summary's picture: an even sample of at most
    100k starts (each standing for ``step``), so a 28M-window plan costs milliseconds."""
    from embedcli.inspection.stats import histogram_of  # numpy: only once there is a plan

    step = max(1, plan.n_windows // 100_000)
    sample = plan.starts[::step]
    return histogram_of([sample], 0, max(plan.n_tokens - 1, 1), bins=40).scaled(step)
