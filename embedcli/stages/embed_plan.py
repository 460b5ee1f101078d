"""``embed`` as a plan and a write.

:func:`plan_embed` is pure: from the input (ids or windows) and the options it works out the
windows, the table sizes, the tensors of the output, its metadata and header, and how the
windows are cut into chunks; nothing large is allocated. :func:`write_embed` makes the tables
and streams the chunks through the embedder into the output: one process writes one file (or a
split output), or ``torchrun`` ranks write their share of one file (``distributed.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embedcli import contract as c
from embedcli.embedding.tables import (
    DTYPE_NAMES,
    Embedder,
    TablePlan,
    check_id_range,
    plan_tables,
    stream_embeddings,
    tensor_bytes,
    torch_dtype,
)
from embedcli.errors import UsageError
from embedcli.inputs import TokenSource, WindowSource
from embedcli.options import EmbedOptions
from embedcli.progress import ProgressFactory
from embedcli.stages.common import ids_of
from embedcli.storage.atomic import Writable
from embedcli.storage.outputs import write_tensors
from embedcli.storage.store import TensorSpec, build_header
from embedcli.windows import (
    ArithmeticStarts,
    PlanFacts,
    WindowPlan,
    batched_shape,
    gather,
    windows_metadata,
)

if TYPE_CHECKING:
    import torch

    from embedcli.embedding.distributed import Group
    from embedcli.inspection.stats import Histogram
    from embedcli.window_rows import Ids


@dataclass
class EmbedPlan:
    """Everything about an ``embed`` output that is known before computing it."""

    n: int  # windows
    max_length: int
    tables: TablePlan
    opts: EmbedOptions
    specs: list[TensorSpec]  # the embeddings, then the tables that are saved
    metadata: dict[str, str]
    header: bytes
    total_bytes: int  # header included
    rows_per_chunk: int
    windows_facts: PlanFacts | None  # None when the input was already windowed
    windows: np.ndarray | None = None  # already-windowed input, or
    ids: Ids | None = None  # ids (a shard set's as its files) and the window starts to gather
    starts: np.ndarray | ArithmeticStarts | None = None

    @property
    def row_bytes(self) -> int:
        return self.max_length * self.tables.dim * torch_dtype(self.opts.output_dtype).itemsize

    def chunks(self, a: int, b: int) -> Iterator[np.ndarray]:
        """Windows ``[a, b)`` as ``(rows, max_length)`` integer arrays, chunk by chunk."""
        step = self.rows_per_chunk
        for i in range(a, b, step):
            j = min(i + step, b)
            if self.windows is not None:
                yield self.windows[i:j]
            else:
                assert self.ids is not None and self.starts is not None
                if isinstance(self.ids, np.ndarray):
                    yield gather(self.ids, self.starts[i:j], self.max_length)
                else:  # a shard set's files, read where the rows lie
                    starts = np.asarray(self.starts[i:j], np.int64)
                    yield self.ids.read_rows(starts, self.max_length)


def make_embed_plan(
    src: TokenSource | WindowSource,
    windows: WindowPlan | None,
    opts: EmbedOptions,
    device: torch.device,
    *,
    where: str,
    chunk_bytes: int,
    batched: bool = False,
    tables: TablePlan | None = None,
) -> EmbedPlan:
    """The plan for embedding ``src``: already-windowed input, or ids cut by ``windows`` (see
    the module docstring), with the tables ``opts`` asks for (or ``tables``, made already:
    an :class:`~embedcli.Embedding`'s). Checks every id against the token table's size."""
    import torch

    ids: Ids  # windows already made, one file's ids, or a shard set's files
    if isinstance(src, WindowSource):
        n, t = (int(d) for d in src.inputs.shape)
        facts, base, starts, ids = None, dict(src.metadata), None, src.inputs
        checked: np.ndarray | list[np.ndarray] = src.inputs
    else:
        assert windows is not None
        n, t, facts = windows.n_windows, windows.max_length, windows.facts()
        starts, ids, checked = windows.starts, ids_of(src), src.segments
        # The lineage: the input's metadata plus how the windows were made here.
        base = windows_metadata(src.metadata, facts, "int64")
    base.pop(c.IDS_DTYPE, None)
    tables = tables or plan_tables(
        max_length=t, vocab_size=opts.vocab_size, default_vocab_size=c.get_int(base, c.VOCAB_SIZE),
        dim=opts.dim, context_length=opts.context_length, seed=opts.seed, pos=opts.pos_kind,
        weights=opts.weights, token_key=opts.token_key, pos_key=opts.pos_key,
    )  # fmt: skip
    check_id_range(checked, tables.vocab_size, where=where)
    specs = _specs(opts, tables, _lead_dims(n, windows, base, opts, batched), t)
    meta = c.stage_metadata(
        "embeddings",
        {
            c.VOCAB_SIZE: tables.vocab_size,
            c.DIM: tables.dim,
            c.CONTEXT_LENGTH: tables.context_length,
            c.MAX_LENGTH: t,
            c.WINDOWS: n,
            c.SEED: opts.seed,
            c.POS: opts.pos_kind,
            c.TABLES: tables.origin,
            c.DEVICE: device.type,  # not the index: any layout of ranks writes the same bytes
            c.DTYPE: opts.output_dtype,
            c.TORCH_VERSION: torch.__version__,
        },
        base,
    )
    header = build_header(specs, meta)
    row_bytes = t * tables.dim * torch_dtype(opts.output_dtype).itemsize
    return EmbedPlan(
        n=n,
        max_length=t,
        tables=tables,
        opts=opts,
        specs=specs,
        metadata=meta,
        header=header,
        total_bytes=len(header) + sum(s.nbytes for s in specs),
        rows_per_chunk=max(1, chunk_bytes // 2 // row_bytes),  # two chunks in flight
        windows_facts=facts,
        windows=src.inputs if isinstance(src, WindowSource) else None,
        ids=None if isinstance(src, WindowSource) else ids,
        starts=starts,
    )


def _lead_dims(
    n: int, windows: WindowPlan | None, base: dict[str, str], opts: EmbedOptions, batched: bool
) -> tuple[int, ...]:
    """``(N,)``, or ``(K, B)`` for ``--batched`` (marked in the lineage ``base``)."""
    if not batched:
        return (n,)
    if opts.max_shard_size:
        raise UsageError("--batched and --max-shard-size cannot be combined: use one")
    size = windows.batch_size if windows is not None else c.get_int(base, c.BATCH_SIZE) or 1
    base[c.LAYOUT] = "batches"
    return batched_shape(n, size, True)


def _specs(
    opts: EmbedOptions, tables: TablePlan, lead: tuple[int, ...], t: int
) -> list[TensorSpec]:
    st_dtype = DTYPE_NAMES[opts.output_dtype]
    specs = [TensorSpec("embeddings", st_dtype, (*lead, t, tables.dim))]
    if opts.save_weights:
        specs.append(
            TensorSpec("token_embedding.weight", st_dtype, (tables.vocab_size, tables.dim))
        )
        if tables.has_pos:
            specs.append(
                TensorSpec("pos_embedding.weight", st_dtype, (tables.context_length, tables.dim))
            )
    return specs


def join_group(device: torch.device) -> Group | None:
    """The torchrun job this process belongs to, or ``None`` when run alone."""
    from embedcli.embedding.distributed import Group, world_size

    return Group.join(device) if world_size() > 1 else None


@dataclass
class EmbedWrite:
    """What :func:`write_embed` did."""

    paths: list[str]
    seconds: float
    table_head: torch.Tensor  # the token table's first rows, in the output dtype
    processes: tuple[int, str, int] | None  # torchrun: (world size, device type, rank)
    values: Histogram | None = None  # of the first chunk embedded


def write_embed(
    plan: EmbedPlan,
    output: str,
    *,
    device: torch.device,
    group: Group | None,
    read: list[str],
    no_clobber: bool,
    progress: ProgressFactory,
) -> EmbedWrite:
    """Make the tables and stream the plan's windows through them into ``output``."""
    opts = plan.opts
    tdtype = torch_dtype(opts.output_dtype)
    token, pos_table = plan.tables.materialize(opts.seed, opts.pos_kind)
    embedder = Embedder(token, pos_table, device=device, dtype=tdtype)
    lo, hi = group.rows(plan.n) if group else (0, plan.n)  # this process's windows
    buffer_shape = (max(1, min(plan.rows_per_chunk, hi - lo)), plan.max_length, plan.tables.dim)
    started = time.perf_counter()
    with progress("embed", hi - lo, "windows") as advance:

        def write_rows(f: Writable, a: int, b: int) -> None:
            stream_embeddings(f, embedder, plan.chunks(a, b), buffer_shape, advance)

        # A table that is not there (--pos none) has no spec either.
        tables = {"token_embedding.weight": token, "pos_embedding.weight": pos_table}

        def write_table(f: Writable, spec: TensorSpec) -> None:
            table = tables[spec.name]
            assert table is not None
            f.write(tensor_bytes(table.to(tdtype)))

        if group is None:
            paths = write_tensors(
                output, plan.specs[:1], plan.specs[1:], plan.metadata, write_rows, write_table,
                read=read, no_clobber=no_clobber, max_shard_size=opts.max_shard_size,
                rows_count=plan.n,
            )  # fmt: skip
        else:
            paths = _write_distributed(
                plan, output, group, (lo, hi), write_rows, write_table, no_clobber=no_clobber
            )
    seconds = time.perf_counter() - started
    processes = (group.world, group.device.type, group.rank) if group is not None else None
    values = _first_chunk_histogram(plan, embedder) if hi > lo else None
    return EmbedWrite(paths, seconds, token[:3].to(tdtype), processes, values)


def _first_chunk_histogram(plan: EmbedPlan, embedder: Embedder) -> Histogram:
    """The value distribution of the first windows (at most 256): a look, not a census."""
    from embedcli.inspection.stats import histogram_of

    chunk = next(plan.chunks(0, min(plan.n, 256)))
    values = embedder.embed(chunk).float().numpy()
    return histogram_of([values], float(values.min()), float(values.max()))


def _write_all(
    f: Writable, plan: EmbedPlan, write_table: Callable[[Writable, TensorSpec], None]
) -> None:
    for spec in plan.specs[1:]:  # the tables that are saved, in file order
        write_table(f, spec)


def _write_distributed(
    plan: EmbedPlan,
    output: str,
    group: Group,
    rows: tuple[int, int],
    write_rows: Callable[[Writable, int, int], None],
    write_table: Callable[[Writable, TensorSpec], None],
    *,
    no_clobber: bool,
) -> list[str]:
    from embedcli.embedding.distributed import PositionalWriter, write_shared

    if plan.opts.max_shard_size:
        raise UsageError("--max-shard-size and torchrun cannot be combined yet: one file")
    start, (lo, hi) = len(plan.header), rows
    try:
        write_shared(
            group,
            output,
            plan.header,
            plan.total_bytes,
            write_rows=lambda fd: write_rows(
                PositionalWriter(fd, start + lo * plan.row_bytes), lo, hi
            ),
            write_tables=lambda fd, offset: _write_all(
                PositionalWriter(fd, offset), plan, write_table
            ),
            tables_offset=start + plan.n * plan.row_bytes,
            no_clobber=no_clobber,
        )
    finally:  # on error too: a failed run leaves no process group of embedcli's behind
        group.close()
    return [output]
