"""``embed`` as a library call: token plus positional embeddings ``(N, T, dim)`` for text, a
token file or windows, on the device asked for (``embed_plan.py`` holds the plan and the
writer; under ``torchrun`` the processes split the windows and write one file together).

Example:
    >>> from embedcli import run_embed, EmbedOptions
    >>> run_embed(["w.safetensors"], "e.safetensors", EmbedOptions(dim=256))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from embedcli.errors import UsageError
from embedcli.inputs import Request, Resolved, TokenSource, WindowSource, open_input
from embedcli.options import EmbedOptions, TokenizeOptions, WindowOptions
from embedcli.progress import ProgressFactory, no_progress
from embedcli.stages.common import (
    CHUNK_BYTES,
    announce,
    make_plan,
    plan_result,
    split_note,
)
from embedcli.stages.results import EmbedResult, PlanResult, Written
from embedcli.stages.staging import remote_output
from embedcli.storage.outputs import check_disk, check_output, oversized, planned_files, stale_temps
from embedcli.storage.store import header_if_file
from embedcli.windows import WindowPlan

if TYPE_CHECKING:
    import torch

    from embedcli.embedding.distributed import Group
    from embedcli.stages.embed_plan import EmbedPlan, EmbedWrite

# embed's own options that make its output smaller, named when the disk is too small
EMBED_SHRINK = "--num-batches, --dim, --dtype float16"


@dataclass
class _Job:
    """An embed run resolved and planned, before anything is written."""

    found: Resolved
    source: TokenSource | WindowSource
    plan: EmbedPlan
    read: list[str]
    files: list[tuple[str, int | None]]
    notes: list[str]
    device: torch.device
    group: Group | None


@contextlib.contextmanager
def _planned(
    inputs: list[str],
    output: str,
    opts: EmbedOptions,
    window_opts: WindowOptions,
    tokenize_opts: TokenizeOptions | None,
    key: str,
    no_clobber: bool,
    progress: ProgressFactory,
    chunk_bytes: int,
) -> Iterator[_Job]:
    from embedcli.embedding.tables import resolve_device, torch_dtype
    from embedcli.stages.embed_plan import join_group, make_embed_plan

    opts, defaults = _checkpoint_defaults(opts)
    torch_dtype(opts.output_dtype)  # an unknown dtype fails before any work
    device = resolve_device(opts.device)
    group = join_group(device)  # under torchrun: each rank's own device
    device = group.device if group is not None else device
    request = Request(key=key, tokenize=tokenize_opts or TokenizeOptions(), allow_windows=True)
    with open_input(inputs, request) as found:
        read = found.paths + ([opts.weights] if opts.weights else [])
        check_output(output, inputs=read, no_clobber=no_clobber)
        notes = stale_temps(output) + defaults
        src = found.load(progress)
        where = inputs[0] if inputs and inputs[0] != "-" else "<stdin>"
        plan = make_embed_plan(
            src,
            _embed_windows(src, window_opts),
            opts,
            device,
            where=where,
            chunk_bytes=chunk_bytes,
            batched=window_opts.batched,
        )
        notes += oversized(plan.specs[1:], opts.max_shard_size)
        files = planned_files(
            output, plan.specs[:1], plan.specs[1:], plan.metadata, opts.max_shard_size
        )
        yield _Job(found, src, plan, read, files, notes, device, group)


def _checkpoint_defaults(opts: EmbedOptions) -> tuple[EmbedOptions, list[str]]:
    """The dtype and positional table a ``--weights`` checkpoint implies when they are not
    given: its table's dtype (bf16 stays bf16), and no position table for a model that has
    none (RoPE models: positions act inside attention, not on the embeddings)."""
    if not opts.weights or (opts.dtype is not None and opts.pos is not None):
        return opts, []
    from embedcli.embedding.checkpoints import POS_KEYS, open_checkpoint
    from embedcli.embedding.tables import DTYPE_NAMES

    ckpt = open_checkpoint(opts.weights)
    notes = []
    if opts.dtype is None:
        stored = ckpt.dtype(ckpt.require_token_key(opts.token_key))
        # The output dtype that keeps the table's values exactly (F64 and others: float32).
        kept = {st: name for name, st in DTYPE_NAMES.items()}
        dtype = kept.get(stored, "float32")
        opts = replace(opts, dtype=dtype)
    if opts.pos is None:
        if ckpt.find(opts.pos_key, POS_KEYS, "positional") is None:
            opts = replace(opts, pos="none")
            notes.append(
                f"{opts.weights} has no position table (a RoPE model: positions act inside "
                "attention): --pos none, the token embeddings alone (--pos sinusoidal adds "
                "fixed ones)"
            )
        else:
            opts = replace(opts, pos="learned")
    return opts, notes


@remote_output
def plan_embed(
    inputs: list[str],
    output: str,
    opts: EmbedOptions | None = None,
    window_opts: WindowOptions | None = None,
    tokenize_opts: TokenizeOptions | None = None,
    *,
    key: str = "ids",
    no_clobber: bool = False,
    progress: ProgressFactory = no_progress,
) -> PlanResult:
    """What :func:`run_embed` would write (``--dry-run``): the input is read, the tables
    planned (a weights file's header read), nothing is computed or written."""
    with _planned(
        inputs, output, opts or EmbedOptions(), window_opts or WindowOptions(), tokenize_opts,
        key, no_clobber, progress, CHUNK_BYTES,
    ) as job:  # fmt: skip
        return plan_result(
            "embed", job.read, job.files, job.plan.specs, job.notes, windows=job.plan.n
        )


@remote_output
def run_embed(
    inputs: list[str],
    output: str,
    opts: EmbedOptions | None = None,
    window_opts: WindowOptions | None = None,
    tokenize_opts: TokenizeOptions | None = None,
    *,
    key: str = "ids",
    no_clobber: bool = False,
    progress: ProgressFactory = no_progress,
    chunk_bytes: int = CHUNK_BYTES,
    notify: Callable[[str], None] | None = None,
) -> EmbedResult:
    """Token plus positional embeddings ``(N, T, dim)`` for text, a token file or windows.

    Under ``torchrun`` the processes split the windows and write one file together (see
    :mod:`embedcli.embedding.distributed`). ``chunk_bytes`` bounds the windows embedded at once.
    """
    from embedcli.stages.embed_plan import write_embed

    opts = opts or EmbedOptions()
    window_opts = window_opts or WindowOptions()
    started = time.perf_counter()
    with _planned(
        inputs, output, opts, window_opts, tokenize_opts, key, no_clobber, progress, chunk_bytes
    ) as job:
        check_disk(
            output, job.plan.total_bytes, EMBED_SHRINK
        )  # before the tables are allocated: refuse early
        announce(notify, output, job.files)
        done = write_embed(
            job.plan,
            output,
            device=job.device,
            group=job.group,
            read=job.read,
            no_clobber=no_clobber,
            progress=progress,
        )
    seconds = time.perf_counter() - started
    job.notes += split_note(done.paths, opts.max_shard_size)
    return _embed_result(output, job.plan, done, job.source, str(job.device), seconds, job.notes)


def _embed_windows(
    src: TokenSource | WindowSource, window_opts: WindowOptions
) -> WindowPlan | None:
    """The windows to embed: planned over ids, or ``None`` for already-windowed input (which
    windowing options cannot apply to)."""
    if isinstance(src, TokenSource):
        return make_plan(src, window_opts)
    if window_opts.given():
        raise UsageError(
            f"the input is already windowed; {', '.join(window_opts.given())} apply "
            "only to text or token inputs"
        )
    return None


def _embed_result(
    output: str,
    plan: EmbedPlan,
    done: EmbedWrite,
    src: TokenSource | WindowSource,
    device: str,
    seconds: float,
    notes: list[str],
) -> EmbedResult:
    opts = plan.opts
    return EmbedResult(
        output,
        Written.of(done.paths),
        shape=(plan.n, plan.max_length, plan.tables.dim),
        dtype=opts.output_dtype,
        device=device,
        vocab_size=plan.tables.vocab_size,
        context_length=plan.tables.context_length,
        pos=opts.pos_kind,
        has_pos=plan.tables.has_pos,
        tables=plan.tables.origin,
        tables_saved=opts.save_weights,
        bytes_planned=plan.total_bytes,
        embed_seconds=done.seconds,
        total_seconds=seconds,
        tokenized=src.stats if isinstance(src, TokenSource) else None,
        plan=plan.windows_facts,
        table_head=done.table_head,
        processes=done.processes,
        header=header_if_file(output),
        values=done.values,
        notes=notes,
    )
