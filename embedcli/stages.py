"""The producing stages as library calls: resolve the input, plan, write, report.

``batch`` and ``embed`` are here; ``tokenize`` is in ``tokenizing.py`` (re-exported).

Each ``run_*`` function takes plain arguments, reads through the input registry
(:func:`embedcli.inputs.open_input`), writes through the output layer
(:mod:`embedcli.outputs`: atomic, validated) and returns a typed result
(:mod:`embedcli.results`). Nothing here knows Typer or rich.

Example:
    >>> from embedcli import run_tokenize, run_batch, run_embed, WindowOptions, EmbedOptions
    >>> run_tokenize(["corpus.txt"], "corpus.tokens.safetensors")           # doctest: +SKIP
    >>> run_batch(["corpus.tokens.safetensors"], "w.safetensors",
    ...           WindowOptions(max_length=4, batch_size=8))                 # doctest: +SKIP
    >>> run_embed(["w.safetensors"], "e.safetensors", EmbedOptions(dim=256))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from . import contract as c
from .errors import EmbedcliError, UsageError
from .inputs import Request, TokenSource, open_input
from .options import (
    DEFAULT_BATCH_SIZE,
    OUTPUT_DTYPES,
    EmbedOptions,
    TokenizeOptions,
    WindowOptions,
)
from .outputs import (
    check_disk,
    check_output,
    default_output,
    oversized,
    planned_files,
    stale_temps,
    write_tensors,
)
from .progress import ProgressFactory, no_progress
from .results import BatchResult, EmbedResult, FirstWindow, PlanResult, Written
from .store import TensorSpec, header_if_file
from .tokenizing import run_tokenize
from .units import human_bytes
from .windows import (
    WindowPlan,
    batched_shape,
    gather,
    plan_windows,
    windows_metadata,
    write_windows,
)

__all__ = [
    "CHUNK_BYTES",
    "EmbedOptions",
    "TokenizeOptions",
    "WindowOptions",
    "default_output",
    "make_plan",
    "run_batch",
    "run_embed",
    "run_tokenize",
    "windows_metadata",
]

CHUNK_BYTES = 32 << 20  # default bytes of windows gathered (batch) or embedded (embed) at once

# --------------------------------------------------------------------------- batch


def make_plan(source: TokenSource, opts: WindowOptions) -> WindowPlan:
    """The windows ``opts`` asks for over ``source``'s ids."""
    max_length = opts.effective_max_length
    if not opts.cross_docs and source.doc_offsets is None:
        raise UsageError("--no-cross-docs needs document boundaries: give text or a token file")
    return plan_windows(
        int(source.ids.size),
        max_length=max_length,
        stride=opts.stride or max_length,
        batch_size=opts.batch_size or DEFAULT_BATCH_SIZE,
        drop_last=opts.drop_last,
        num_batches=opts.num_batches,
        shuffle_seed=opts.seed if opts.shuffle else None,
        doc_offsets=None if opts.cross_docs else source.doc_offsets,
    )


def _windows_file(plan: WindowPlan, opts: WindowOptions, base, facts, max_shard_size):
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


def _plan_result(stage, read, files, specs, notes, **facts) -> PlanResult:
    sizes = [os.path.getsize(p) for p in read if p != "-" and os.path.isfile(p)]
    shown = {
        k.replace("_", " "): f"{v:,}" if isinstance(v, int) else str(v) for k, v in facts.items()
    }
    return PlanResult(
        stage,
        list(read),
        sum(sizes),
        files,
        [(s.name, s.dtype, tuple(s.shape)) for s in specs],
        shown,
        notes,
    )


LARGE_OUTPUT = 1_000_000_000  # announced before it is written


def _announce(notify, output: str, files: list[tuple[str, int | None]]) -> None:
    total = sum(size or 0 for _, size in files)
    special = output == "-" or (os.path.exists(output) and not os.path.isfile(output))
    if notify is not None and total >= LARGE_OUTPUT and not special:
        where = output if len(files) == 1 else f"{len(files)} files beside {output}"
        notify(f"writing {human_bytes(total)} to {where}")


def _first_window(source: TokenSource, plan: WindowPlan) -> FirstWindow:
    from .encoding import get_encoding

    ids = [int(i) for i in gather(source.ids, plan.starts[:1], plan.max_length)[0]]
    name = source.metadata.get(c.ENCODING)
    try:
        return FirstWindow(ids, get_encoding(name).decode(ids) if name else "")
    except EmbedcliError:
        return FirstWindow(ids, "")


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
    dry_run: bool = False,
    notify: Callable[[str], None] | None = None,
) -> BatchResult | PlanResult:
    """Windows ``(N, max_length)`` of inputs and targets from a token file, ids or text.

    ``max_shard_size`` (bytes) splits the output into files of at most that size plus an
    ``.index.json``; ``chunk_bytes`` is how much is gathered at once (memory, not results).
    ``dry_run`` returns the :class:`PlanResult` and writes nothing; ``notify`` hears of a large
    output before it is written.
    """
    opts = opts or WindowOptions()
    if opts.dtype not in OUTPUT_DTYPES:
        raise UsageError(f"unknown --dtype {opts.dtype!r}; use one of {', '.join(OUTPUT_DTYPES)}")
    started = time.perf_counter()
    request = Request(key=key, tokenize=tokenize_opts or TokenizeOptions())
    with open_input(inputs, request) as found:
        check_output(output, inputs=found.paths, no_clobber=no_clobber)
        notes = stale_temps(output)
        src = found.load(progress)
        assert isinstance(src, TokenSource)  # windows are refused without allow_windows
        plan = make_plan(src, opts)
        facts = plan.facts()
        dtype, t = np.dtype(opts.dtype), plan.max_length
        specs, meta = _windows_file(plan, opts, src.metadata, facts, max_shard_size)
        rows = max(1, chunk_bytes // (t * dtype.itemsize))

        def write_rows(f, a: int, b: int) -> None:
            for shift in (0, 1):  # all inputs rows, then all targets rows
                write_windows(f, src.ids, plan, a, b, dtype, shift, rows)

        files = planned_files(output, specs, [], meta, max_shard_size)
        if dry_run:
            return _plan_result("batch", found.paths, files, specs, notes, windows=facts.windows)
        check_disk(output, sum(size or 0 for _, size in files))
        _announce(notify, output, files)
        paths = write_tensors(
            output,
            specs,
            [],
            meta,
            write_rows,
            lambda f, spec: None,
            read=found.paths,
            no_clobber=no_clobber,
            max_shard_size=max_shard_size,
            rows_count=plan.n_windows,
        )
        first = _first_window(src, plan)
    from .stats import histogram_of

    # Where windows start along the ids, for the summary's picture: an even sample of at most
    # 100k starts (each standing for `step`), so a 28M-window plan costs milliseconds.
    step = max(1, plan.n_windows // 100_000)
    coverage = histogram_of([plan.starts[::step]], 0, max(plan.n_tokens - 1, 1), bins=40)
    coverage = coverage.to_json() | {"counts": [c * step for c in coverage.counts]}
    return BatchResult(
        output,
        Written.of(paths),
        facts,
        opts.dtype,
        int(src.ids.size),
        time.perf_counter() - started,
        tokenized=src.stats,
        first_window=first,
        header=header_if_file(output),
        coverage=coverage,
        notes=notes,
    )


# --------------------------------------------------------------------------- embed


def _embed_windows(src, window_opts: WindowOptions) -> WindowPlan | None:
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
    dry_run: bool = False,
    notify: Callable[[str], None] | None = None,
) -> EmbedResult | PlanResult:
    """Token plus positional embeddings ``(N, T, dim)`` for text, a token file or windows.

    Under ``torchrun`` the processes split the windows and write one file together (see
    :mod:`embedcli.distributed`). ``chunk_bytes`` bounds the windows embedded at once.
    """
    from .embed_plan import join_group, plan_embed, write_embed
    from .embedding import resolve_device, torch_dtype

    opts = opts or EmbedOptions()
    window_opts = window_opts or WindowOptions()
    torch_dtype(opts.dtype)  # an unknown dtype fails before any work
    device = resolve_device(opts.device)
    group = join_group(device)  # under torchrun: each rank's own device
    device = group.device if group is not None else device
    started = time.perf_counter()
    request = Request(key=key, tokenize=tokenize_opts or TokenizeOptions(), allow_windows=True)
    with open_input(inputs, request) as found:
        read = found.paths + ([opts.weights] if opts.weights else [])
        check_output(output, inputs=read, no_clobber=no_clobber)
        notes = stale_temps(output)
        src = found.load(progress)
        where = inputs[0] if inputs and inputs[0] != "-" else "<stdin>"
        plan = plan_embed(
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
        if dry_run:
            return _plan_result("embed", read, files, plan.specs, notes, windows=plan.n)
        check_disk(output, plan.total_bytes)  # before the tables are allocated: refuse early
        _announce(notify, output, files)
        done = write_embed(
            plan,
            output,
            device=device,
            group=group,
            read=read,
            no_clobber=no_clobber,
            progress=progress,
        )
    seconds = time.perf_counter() - started
    return _embed_result(output, plan, done, src, str(device), seconds, notes)


def _embed_result(output, plan, done, src, device: str, seconds: float, notes) -> EmbedResult:
    opts = plan.opts
    return EmbedResult(
        output,
        Written.of(done.paths),
        shape=(plan.n, plan.max_length, plan.tables.dim),
        dtype=opts.dtype,
        device=device,
        vocab_size=plan.tables.vocab_size,
        context_length=plan.tables.context_length,
        pos=opts.pos,
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
