"""What the stages share: the window plan over an input's ids (``batch``, ``embed``), the
dry-run's plan, the announcement of a large output, the first window shown in a summary, and
the spill file ids wait in before a token format's writer takes them (``tokenize``, ``mix``)."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

import numpy as np

from embedcli import contract as c
from embedcli.errors import OutputError, UsageError
from embedcli.inputs import TokenSource
from embedcli.options import (
    DEFAULT_BATCH_SIZE,
    WindowOptions,
)
from embedcli.progress import no_progress
from embedcli.stages.results import FirstWindow, PlanResult
from embedcli.storage.atomic import COMMITTED, UNFINISHED
from embedcli.storage.remote import is_url, public_url, staged
from embedcli.storage.store import TensorSpec, write_array
from embedcli.units import human_bytes
from embedcli.windows import (
    PlanFacts,
    WindowPlan,
    batched_shape,
    gather,
    plan_windows,
    windows_metadata,
)

CHUNK_BYTES = 32 << 20  # default bytes of windows gathered (batch) or embedded (embed) at once


R = TypeVar("R")


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


def first_window(source: TokenSource, plan: WindowPlan) -> FirstWindow:
    from embedcli.bpe.encodings import decoder_for

    ids = [int(i) for i in gather(source.ids, plan.starts[:1], plan.max_length)[0]]
    decode = decoder_for(source.metadata, None)
    return FirstWindow(ids, decode(ids) if decode is not None else "")


def remote_output(stage: Callable[..., R]) -> Callable[..., R]:
    """A stage's ``output`` may be a URL (``s3://bucket/out/train.bin``): the stage writes into
    a local staging directory, every file it commits there is uploaded when it returns
    (manifests and indexes last; see :func:`embedcli.storage.remote.staged`), and the result
    names the URLs. Under torchrun the ranks write one shared file: a URL is refused there."""

    @functools.wraps(stage)
    def wrapper(inputs: list[str], output: str, *args: Any, **kwargs: Any) -> R:
        if not is_url(output):
            return stage(inputs, output, *args, **kwargs)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError(
                f"{public_url(output)}: under torchrun the ranks write one local file; "
                "write it locally and upload it once"
            )
        no_clobber, progress = kwargs.get("no_clobber", False), kwargs.get("progress")
        with staged(
            output,
            COMMITTED,
            no_clobber=no_clobber,
            progress=progress or no_progress,
            unfinished=UNFINISHED,
        ) as where:
            result = stage(inputs, where.local, *args, **kwargs)
        return where.shown(result)

    return wrapper


class SpillSink:
    """int32 ids appended to an anonymous temporary file, so memory stays flat."""

    def __init__(self, f: BinaryIO, output: str) -> None:
        self.f, self.output = f, output
        self.count = 0

    def write(self, ids: np.ndarray) -> None:
        try:
            write_array(self.f, ids)
        except OSError as exc:  # a full disk: say where, the spill file has no name
            where = os.path.dirname(os.path.abspath(self.output))
            raise OutputError(
                f"{self.output}: cannot write the ids in {where}: {exc.strerror or exc}"
            ) from None
        self.count += int(ids.size)


@contextlib.contextmanager
def spill_file(output: str) -> Iterator[BinaryIO]:
    """An anonymous temporary file beside the output (same filesystem: a kernel copy)."""
    spill_dir = None if output == "-" else os.path.dirname(os.path.abspath(output))
    try:
        spill = tempfile.TemporaryFile(dir=spill_dir, prefix=".embedcli-ids-")  # noqa: SIM115
    except OSError as exc:
        raise OutputError(f"{output}: cannot write in {spill_dir}: {exc.strerror}") from None
    with spill:
        yield spill
