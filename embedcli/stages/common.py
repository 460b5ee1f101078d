"""What the window stages share (``batch``, ``embed``): the window plan over an input's ids,
the dry-run's plan, the announcement of a large output, the first window shown in a summary.
What every stage that writes shares is in ``staging.py``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from embedcli import contract as c
from embedcli.errors import UsageError
from embedcli.inputs import TokenSource
from embedcli.options import (
    DEFAULT_BATCH_SIZE,
    WindowOptions,
)
from embedcli.stages.results import FirstWindow, PlanResult
from embedcli.storage.store import TensorSpec
from embedcli.units import human_bytes
from embedcli.windows import (
    PlanFacts,
    WindowPlan,
    batched_shape,
    gather,
    plan_windows,
    windows_metadata,
)

if TYPE_CHECKING:
    from embedcli.window_rows import Ids

CHUNK_BYTES = 32 << 20  # default bytes of windows gathered (batch) or embedded (embed) at once


R = TypeVar("R")


def make_plan(source: TokenSource, opts: WindowOptions) -> WindowPlan:
    """The windows ``opts`` asks for over ``source``'s ids."""
    max_length = opts.effective_max_length
    if not opts.cross_docs and source.doc_offsets is None:
        raise UsageError("--no-cross-docs needs document boundaries: give text or a token file")
    return plan_windows(
        source.size,  # the segments never joined for it
        max_length=max_length,
        stride=opts.stride or max_length,
        batch_size=opts.batch_size or DEFAULT_BATCH_SIZE,
        drop_last=opts.drop_last,
        num_batches=opts.num_batches,
        shuffle_seed=opts.seed if opts.shuffle else None,
        doc_offsets=None if opts.cross_docs else source.doc_offsets,
    )


def windows_file(
    plan: WindowPlan,
    opts: WindowOptions,
    base: dict[str, str],
    facts: PlanFacts,
    max_shard_size: int | None,
) -> tuple[list[TensorSpec], dict[str, str]]:
    """The tensors and metadata of a windows file."""
    if opts.batched and max_shard_size:
        raise UsageError("--batched and --max-shard-size cannot be combined: use one")
    st_dtype = "I64" if opts.dtype == "int64" else "I32"
    shape = (*batched_shape(plan.n_windows, plan.batch_size, opts.batched), plan.max_length)
    specs = [TensorSpec("inputs", st_dtype, shape), TensorSpec("targets", st_dtype, shape)]
    meta = windows_metadata(base, facts, opts.dtype)
    if opts.batched:
        meta[c.LAYOUT] = "batches"
    return specs, meta


def plan_result(
    stage: str,
    read: list[str],
    files: list[tuple[str, int | None]],
    specs: list[TensorSpec],
    notes: list[str],
    *,
    windows: int,
) -> PlanResult:
    sizes = [os.path.getsize(p) for p in read if p != "-" and os.path.isfile(p)]
    tensors = [(s.name, s.dtype, tuple(s.shape)) for s in specs]
    return PlanResult(stage, list(read), sum(sizes), files, tensors, notes, windows=windows)


LARGE_OUTPUT = 1_000_000_000  # announced before it is written


def split_note(paths: list[str], max_shard_size: int | None) -> list[str]:
    """A word on a split output: how many files, and what ties them together."""
    if len(paths) < 2 or not max_shard_size:
        return []
    return [
        f"--max-shard-size {human_bytes(max_shard_size)} split the output into "
        f"{len(paths) - 1:,} files; {paths[-1]} lists them (give it to embed, inspect, "
        "or safetensors' readers)"
    ]


def announce(
    notify: Callable[[str], None] | None, output: str, files: list[tuple[str, int | None]]
) -> None:
    total = sum(size or 0 for _, size in files)
    special = output == "-" or (os.path.exists(output) and not os.path.isfile(output))
    if notify is not None and total >= LARGE_OUTPUT and not special:
        where = output if len(files) == 1 else f"{len(files)} files beside {output}"
        notify(f"writing {human_bytes(total)} to {where}")


def ids_of(source: TokenSource) -> Ids:
    """A token input's ids as the window writers read them: one file's array, or a shard
    set's segments read where they lie (:class:`~embedcli.stages.segmented.Segmented`), never
    joined into one copy."""
    if len(source.segments) == 1:
        return source.segments[0]
    from embedcli.stages.segmented import Segmented

    return Segmented(source.segments)


def first_window(source: TokenSource, plan: WindowPlan) -> FirstWindow:
    from embedcli.bpe.encodings import decoder_for

    held = ids_of(source)
    if isinstance(held, np.ndarray):
        first = gather(held, plan.starts[:1], plan.max_length)[0]
    else:
        first = held.read_rows(np.asarray(plan.starts[:1], np.int64), plan.max_length)[0]
    ids = [int(i) for i in first]
    decode = decoder_for(source.metadata, None)
    return FirstWindow(ids, decode(ids) if decode is not None else "")
