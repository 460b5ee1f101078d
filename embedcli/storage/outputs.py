"""Writing outputs: the checks before writing, and the writers.

Every file embedcli writes (token, windows and embeddings files, split parts, JSON manifests and
indexes, the file ``torchrun`` ranks write together, the tiktoken cache entry) goes through the
atomic commit of :mod:`embedcli.atomic`: a reader never sees a half-written file, and an
interrupted run leaves the previous output untouched.

Token files are written by their formats (``embedcli/formats/``). Tensor outputs of ``batch`` and ``embed`` go through
:func:`write_tensors`: one safetensors file, or several plus an index (``split.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from embedcli.errors import OutputError, UsageError
from embedcli.storage.atomic import atomic_file, preallocate, validate_safetensors, write_errors
from embedcli.storage.output_set import OutputSet, allow_open_files, joined
from embedcli.units import human_bytes

if TYPE_CHECKING:
    from embedcli.storage.split import OutputShard
    from embedcli.storage.store import TensorSpec

# --------------------------------------------------------------------------- checks


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(path: str, *, inputs: Iterable[str] = (), no_clobber: bool = False) -> None:
    """Refuse outputs that would destroy an input, or an existing file under ``no_clobber``.

    Called by :func:`open_output`, and by stages before they start long work.
    """
    if path == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write binary data to a terminal; redirect or pipe it")
        return
    try:
        out_st = os.stat(path)
    except FileNotFoundError:
        out_st = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror}") from None
    if out_st is None:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"{path}: directory {parent} does not exist")
        return
    if stat.S_ISDIR(out_st.st_mode):
        raise OutputError(f"{path}: is a directory; name a file with -o")
    for inp in inputs:
        if inp == "-":
            continue
        with contextlib.suppress(OSError):
            if _same_file(out_st, os.stat(inp)):
                raise OutputError(f"{path}: is also an input ({inp}); choose another -o")
    if no_clobber and stat.S_ISREG(out_st.st_mode):
        raise OutputError(f"{path}: already exists (--no-clobber)")


def stale_temps(output: str) -> list[str]:
    """Notes on temporary files a killed run left beside ``output`` (never deleted here:
    another process may still be writing one)."""
    if output == "-":
        return []
    directory = os.path.dirname(os.path.abspath(output))
    prefix = f".{os.path.basename(output)}."
    notes = []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(directory)):
            if name.startswith(prefix) and name.endswith(".tmp"):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    size = human_bytes(os.path.getsize(path))
                    notes.append(
                        f"{path} ({size}) is a temporary file of an earlier run that was killed; "
                        f"unless another embedcli is writing {output} now, remove it: rm {path!r}"
                    )
    return notes


def check_disk(output: str, nbytes: int, shrink: str) -> None:
    """Refuse early when the output's filesystem has less than ``nbytes`` free.

    ``shrink`` names the calling stage's own options that make its output smaller.
    """
    if output == "-" or (os.path.exists(output) and not os.path.isfile(output)):
        return
    directory = os.path.dirname(os.path.abspath(output))
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(directory).free
        if nbytes > free:
            raise OutputError(
                f"{output}: needs {human_bytes(nbytes)} but {directory} has {human_bytes(free)} free; "
                f"free space, write elsewhere, or shrink the job ({shrink})"
            )


_STRIPPED_SUFFIXES = (
    ".gz",
    ".zst",
    ".json",
    ".manifest",
    ".safetensors",
    ".jsonl",
    ".txt",
    ".text",
    ".md",
    ".rst",
    ".parquet",
    ".arrow",
    ".ndjson",
    ".bin",
    ".npy",
    ".tokens",
    ".windows",
    ".embeddings",
)


def default_output(inputs: list[str], suffix: str) -> str:
    """``corpus.txt`` -> ``corpus.<suffix>.safetensors`` in the current directory."""
    return stem_output(inputs, f".{suffix}.safetensors")


def stem_output(inputs: list[str], ending: str) -> str:
    """The one input's name without its known suffixes, plus ``ending``, in the current
    directory: ``data/corpus.jsonl.gz`` + ``.bin`` -> ``corpus.bin``."""
    if len(inputs) != 1 or inputs[0] == "-":
        raise UsageError("name the output with -o PATH (or -o - for stdout)")
    name = os.path.basename(os.path.normpath(inputs[0]))
    for ext in _STRIPPED_SUFFIXES:
        if name.endswith(ext) and len(name) > len(ext):
            name = name[: -len(ext)]
    return name + ending


# --------------------------------------------------------------------------- opening outputs


@dataclass
class Output:
    """An open output: ``file`` to write to; ``path`` where it lands (``-`` for stdout)."""

    path: str
    file: BinaryIO


@contextlib.contextmanager
def open_output(
    path: str,
    *,
    inputs: Iterable[str] = (),
    no_clobber: bool = False,
    validate: bool = True,
    size: int | None = None,
) -> Iterator[Output]:
    """Open ``path`` for writing a safetensors file, atomically.

    Regular files go through :func:`atomic_file` and are checked with safetensors' own reader
    before the rename (``validate``). ``-`` writes to stdout (refused on a terminal); an
    existing non-regular file such as ``/dev/null`` or a FIFO is written in place. ``size``,
    when the caller knows it, lets the file's blocks be reserved up front (:func:`preallocate`).
    """
    check_output(path, inputs=list(inputs), no_clobber=no_clobber)
    if path == "-":
        yield Output(path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        with write_errors(path), open(path, "wb") as f:
            yield Output(path, f)
        return
    with atomic_file(path, validate=validate_safetensors if validate else None) as f:
        if size:  # the whole file's size is known: reserve its blocks
            preallocate(f, size)
        yield Output(path, f)


@contextlib.contextmanager
def safetensors_output(
    path: str,
    *,
    inputs: Iterable[str] = (),
    no_clobber: bool = False,
    size: int | None = None,
    files: OutputSet | None = None,
    replaces: Sequence[str] = (),
) -> Iterator[BinaryIO]:
    """One safetensors file, checked with safetensors' reader and committed atomically: on
    its own (:func:`open_output`), as a member of ``files`` (committed by its owner: one side
    of a train/validation pair), or, when it stands in for older files (``replaces``: a split
    of the same name), as a set of its own that removes them."""
    if files is None and not replaces:
        with open_output(path, inputs=inputs, no_clobber=no_clobber, size=size) as out:
            yield out.file
        return
    check_output(path, inputs=list(inputs), no_clobber=no_clobber)
    with joined(files, no_clobber=no_clobber) as out:
        out.replaces(list(replaces))
        yield out.add(path, validate=validate_safetensors, size=size)


# --------------------------------------------------------------------------- tensor outputs

WriteRows = Callable[[Any, int, int], None]  # (file, start, stop): rows [start, stop) of each


def write_tensors(
    output: str,
    rows: list,  # TensorSpec, split along the first dimension when the output is split
    whole: list,  # TensorSpec, written after the rows, never split
    meta: dict[str, str],
    write_rows: WriteRows,
    write_whole: Callable[[Any, Any], None],
    *,
    read: list[str],
    no_clobber: bool,
    max_shard_size: int | None = None,
    rows_count: int | None = None,
) -> list[str]:
    """Write one safetensors file, or (``max_shard_size``) several plus an index.

    ``write_rows(f, start, stop)`` writes rows ``[start, stop)`` of every row tensor, in
    order; ``write_whole(f, spec)`` writes one whole tensor. Hugging Face's rule for a split:
    output that fits in ``max_shard_size`` is one plain file; otherwise files of at most that
    size, ``NAME-00001-of-0000K.safetensors``, each with its row range in its metadata, and
    ``NAME.safetensors.index.json`` (see :mod:`embedcli.split`); a whole tensor larger than the
    limit gets a file of its own. The files are one
    :class:`~embedcli.storage.output_set.OutputSet`, the index its pointer: an earlier split of
    the same name loses the parts this one does not have. Returns the paths written, the index
    last.
    """
    from embedcli.storage.split import MAX_FILES, index_document, index_path

    # Rows as write_rows counts them (windows), which a batched (K, B, ...) layout groups.
    n = rows[0].shape[0] if rows_count is None else rows_count
    header, parts, total = _layout(output, rows, whole, meta, max_shard_size)
    if header is not None:
        stale = old_split(output) if output != "-" else []
        for path in stale:  # an input is never destroyed, even one this output replaces
            check_output(path, inputs=read)
        # the old split's parts go with it
        with safetensors_output(
            output, inputs=read, no_clobber=no_clobber, size=total, replaces=stale
        ) as f:
            f.write(header)
            write_rows(f, 0, n)
            for spec in whole:
                write_whole(f, spec)
        return [output]
    if output == "-":
        raise UsageError("--max-shard-size writes several files: name them with -o PATH")
    if len(parts) > MAX_FILES and max_shard_size:
        least = human_bytes(-(-total // MAX_FILES))
        raise UsageError(
            f"--max-shard-size {human_bytes(max_shard_size)} would write {len(parts):,} files; "
            f"use at least {least} (about {MAX_FILES:,} files) or more"
        )
    allow_open_files(len(parts) + 64)  # the set holds every part open until it commits
    index = index_path(output)
    for path in [*(shard.path for shard, _ in parts), index]:  # refused before the work
        check_output(path, inputs=read, no_clobber=no_clobber)
    # an older split's other parts, and a single file of the same name, are replaced
    older = [p for p in [*old_split(output), output] if os.path.exists(p)]
    for path in older:  # an input is never destroyed, even one this output replaces
        check_output(path, inputs=read)
    with OutputSet(no_clobber=no_clobber) as files:  # every part a temp file until all are done
        files.replaces(older)
        for shard, part_header in parts:
            size = len(part_header) + sum(spec.nbytes for spec in shard.specs)
            f = files.add(shard.path, validate=validate_safetensors, size=size)
            f.write(part_header)
            if shard.has_rows:
                write_rows(f, shard.start, shard.stop)
            else:
                for spec in shard.specs:
                    write_whole(f, spec)
        files.pointer(index, index_document(output, [shard for shard, _ in parts], rows, meta))
    return files.paths


def old_split(output: str) -> list[str]:
    """The parts and index of a split output already at ``output``'s name (an earlier run's)."""
    import glob

    from embedcli.storage.split import index_path, split_names

    pattern = split_names(glob.escape(output), 1)[0].replace("00001-of-00001", _NUMBERED)
    found = sorted(glob.glob(pattern))
    index = index_path(output)
    return [*found, index] if os.path.isfile(index) else found


_NUMBERED = "[0-9]" * 5 + "-of-" + "[0-9]" * 5


def _layout(
    output: str,
    rows: list[TensorSpec],
    whole: list[TensorSpec],
    meta: dict[str, str],
    max_shard_size: int | None,
) -> tuple[bytes | None, list[tuple[OutputShard, bytes]], int]:
    """``(header, [], total)`` for one file; ``(None, [(shard, its header)], total)`` for a
    split (Hugging Face's rule: what fits in ``max_shard_size`` stays one file)."""
    from embedcli.contract import part_fields
    from embedcli.storage.split import plan_output_shards
    from embedcli.storage.store import build_header

    header = build_header([*rows, *whole], meta)
    total = len(header) + sum(spec.nbytes for spec in (*rows, *whole))
    if not max_shard_size or total <= max_shard_size:
        return header, [], total
    shards = plan_output_shards(output, rows, whole, max_shard_size, meta)
    parts = []
    for k, shard in enumerate(shards):
        part = part_fields(k, len(shards), (shard.start, shard.stop) if shard.has_rows else None)
        parts.append((shard, build_header(shard.specs, {**meta, **part})))
    return None, parts, total


def planned_files(
    output: str, rows: list, whole: list, meta: dict[str, str], max_shard_size: int | None
) -> list[tuple[str, int | None]]:
    """The files :func:`write_tensors` would write, with their sizes (the index's: unknown)."""
    from embedcli.storage.split import index_path

    header, parts, total = _layout(output, rows, whole, meta, max_shard_size)
    if header is not None:
        return [(output, total)]
    sizes = [(s.path, len(h) + sum(t.nbytes for t in s.specs)) for s, h in parts]
    return [*sizes, (index_path(output), None)]


def oversized(whole: list, max_shard_size: int | None) -> list[str]:
    """Notes on whole tensors larger than ``max_shard_size`` (each gets a file of its own)."""
    if not max_shard_size:
        return []
    return [
        f"{spec.name} ({human_bytes(spec.nbytes)}) is larger than --max-shard-size "
        f"{human_bytes(max_shard_size)}: it has a file of its own"
        for spec in whole
        if spec.nbytes > max_shard_size
    ]
