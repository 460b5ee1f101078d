"""``torchrun`` support for ``embed``: ranks split the windows and write into one output file.

Started by ``torchrun --nproc-per-node N -m embedcli embed ...`` (or across nodes, with the
output directory on a shared filesystem), every rank reads the same input, plans the same
windows and builds the same header — all deterministic — so no data is exchanged, only a few
small messages:

1. rank 0 creates the temporary output file, writes the header and sizes the file (the header
   depends only on shapes, so it is known before any data);
2. rank r embeds windows ``[N*r/W, N*(r+1)/W)`` on its own device and writes them at their byte
   offset (``pwrite`` into the shared file);
3. rank 0 writes the tables; once every rank reports success, rank 0 validates the file with
   safetensors' reader and renames it into place. The bytes are those of a one-process run.

Backend: ``nccl`` when the device is CUDA, ``gloo`` otherwise (tested on CPU in CI).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from embedcli.errors import OutputError, UsageError
from embedcli.storage.atomic import pwrite_all, validate_safetensors, write_errors
from embedcli.storage.output_set import OutputSet

if TYPE_CHECKING:
    import torch
    from typing_extensions import Buffer

T = TypeVar("T")


def world_size() -> int:
    """Processes in the torchrun job (1 when not started by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass
class Group:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owned: bool = True  # embedcli started the process group (a caller's own is left alone)

    @classmethod
    def join(cls, device: torch.device) -> Group:
        """Join the torchrun job; each process takes its local GPU when the device is CUDA."""
        import torch
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        elif device.type == "cpu":
            backend = "gloo"
        else:
            raise UsageError(f"torchrun runs need --device cpu or cuda, not {device.type}")
        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group(backend, timeout=timedelta(minutes=30))
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, device, owned)

    def rows(self, n: int) -> tuple[int, int]:
        """This rank's windows: a contiguous, balanced slice of ``range(n)``."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def broadcast(self, value: T) -> T:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def all_ok(self, ok: bool) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if ok else 0], device=self._comm_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def close(self) -> None:
        """End the process group embedcli started; one the caller started stays theirs."""
        import torch.distributed as dist

        if self.owned and dist.is_initialized():
            dist.destroy_process_group()

    def _comm_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None


def write_shared(
    group: Group,
    output: str,
    header: bytes,
    total_bytes: int,
    write_rows: Callable[[int], None],  # this rank's windows, at their offset
    write_tables: Callable[[int, int], None],  # (fd, offset): rank 0 only
    tables_offset: int,
    *,
    no_clobber: bool = False,
) -> None:
    """Every rank writes its part of one file; rank 0 commits it only if all succeeded. The
    file is the one member of rank 0's :class:`~embedcli.storage.output_set.OutputSet` (the
    same commit as every other output: it replaces an older split output of the same name,
    and ``--no-clobber`` holds at the commit); the other ranks write into its temporary file
    by name."""
    import stat

    from embedcli.storage.outputs import old_split

    if output == "-" or (os.path.exists(output) and not stat.S_ISREG(os.stat(output).st_mode)):
        raise UsageError("a torchrun embed writes a regular file: name it with -o PATH")
    files, temp, problem = None, None, None
    if group.rank == 0:
        try:
            files = OutputSet(no_clobber=no_clobber)
            files.replaces(old_split(output))
            f = files.add(output, validate=validate_safetensors, size=total_bytes)
            with write_errors(output):
                f.write(header)
                f.truncate(total_bytes)  # the ranks write into reserved blocks
                f.flush()
            temp = files.temp_of(output)
        except Exception as exc:  # any failure here must reach the ranks waiting below
            problem = str(exc) if isinstance(exc, OutputError) else f"rank 0: {exc!r}"
            if files is not None:
                files.discard()
                files = None
    temp, problem = group.broadcast((temp, problem))
    if problem or temp is None:
        raise OutputError(problem or f"{output}: rank 0 made no temporary file")

    committed = False
    try:
        error: BaseException | None = None
        try:
            fd = os.open(temp, os.O_WRONLY)
            try:
                write_rows(fd)
                if group.rank == 0:
                    write_tables(fd, tables_offset)
            finally:
                os.close(fd)
        except Exception as exc:  # CUDA out of memory too: the other ranks must not wait
            error = exc  # for this one until the 30-minute timeout
        if not group.all_ok(error is None):
            if error is not None:
                raise error
            raise OutputError(f"{output}: another rank failed; nothing written")
        if files is not None:
            files.commit()
        committed = True
    finally:
        if files is not None and not committed:
            files.discard()


class PositionalWriter:
    """A file-like ``write`` that puts data at a fixed, advancing offset of a shared file."""

    def __init__(self, fd: int, offset: int):
        self.fd, self.offset = fd, offset

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        pwrite_all(self.fd, view, self.offset)
        self.offset += n
        return n
