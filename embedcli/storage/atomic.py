"""The atomic commit every output goes through, and how its bytes reach the disk.

A temporary file in the destination's directory (:func:`create_temp`), then :func:`commit`
(permissions of a new file, atomic rename) or :func:`discard`: a reader never sees a
half-written file, and an interrupted run leaves the previous output untouched. Large files get
their blocks reserved before they are written (:func:`preallocate`), and a large file that is
replaced is freed after the rename, by a detached process (:func:`commit`).

Two ways to write, and no others: :func:`atomic_file` for one file that stands alone (a
single-file output, a plot, a manifest-free cache entry: ``output=False``), and
:class:`~embedcli.storage.output_set.OutputSet`, built on these primitives, for an output of
several files or one that replaces an older output's files (llm.c shards, split parts, a
train/validation pair, a shard and its manifest, torchrun's shared file). Uploads to object
storage commit the same way (:func:`embedcli.storage.remote.staged`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from embedcli.errors import OutputError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12


def create_temp(path: str) -> tuple[int, str]:
    """A new temporary file beside ``path``: ``(fd, temp_path)``, opened for writing."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        return tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {directory}: {exc.strerror}") from None


# Replacing a file this large frees its blocks off the critical path (see commit).
ASIDE_BYTES = 64 << 20


# Every path this process committed, in order: a command interrupted after writing its output
# can say that the output is complete (the CLI clears it when a command starts).
COMMITTED: list[str] = []
# What an interrupted command left unfinished that it must not call complete: a URL output
# whose upload had not finished (its staging files are committed locally, never to the URL).
UNFINISHED: list[str] = []


def commit(temp: str, path: str, *, output: bool = True) -> None:
    """Give a finished temporary file the permissions a new file gets, and rename it over
    ``path`` (atomic on one filesystem). ``output=False`` for a file that is not the command's
    output (a cache): it is not listed in :data:`COMMITTED`.

    Renaming over a large file frees its blocks inside the rename, which takes a noticeable
    time on filesystems mounted with ``discard`` (the README's measurements). So a large old
    file first gets a second name (a hard link, ``.NAME.XXXX.replaced.tmp``), the rename then only drops a name, and a
    detached ``rm`` frees the blocks while the next command runs. ``path`` names the old file or
    the new one at every moment, as before.
    """
    os.chmod(temp, new_file_mode())
    aside = _link_aside(path)
    try:
        os.replace(temp, path)
    except BaseException:
        if aside is not None:
            discard(aside)
        raise
    if output:
        COMMITTED.append(path)
    if aside is not None:
        remove_detached(aside)


def new_file_mode() -> int:
    """The permissions a new file gets here (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def second_name(path: str) -> str | None:
    """A hard link ``.NAME.XXXXXXXX.replaced.tmp`` beside the file at ``path``, which keeps
    the file (and its blocks) once ``path`` is renamed over or removed; None when there is no
    file or no hard links here (some network and FUSE filesystems)."""
    directory, name = os.path.split(os.path.abspath(path))
    aside = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.replaced.tmp")
    try:
        os.link(path, aside)
    except OSError:
        return None
    return aside


def _link_aside(path: str) -> str | None:
    """A second name for a large regular file at ``path``, or None (small, absent, linked)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size < ASIDE_BYTES or st.st_nlink != 1:
        return None
    return second_name(path)  # None: rename as before


def remove_detached(path: str) -> None:
    """Unlink ``path`` in a process of its own that outlives this one (inline without rm)."""
    spawn = getattr(os, "posix_spawnp", None)
    if spawn is None:
        discard(path)
        return
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    try:
        # setsid: a Ctrl-C in the terminal does not reach it; no Popen object, so nothing
        # waits for it or warns that it still runs when this process ends.
        spawn("rm", ["rm", "-f", "--", path], os.environ, file_actions=quiet, setsid=True)
    except OSError:
        discard(path)


def preallocate(f: BinaryIO, size: int) -> None:
    """Reserve the blocks of a file about to be written whole, ``size`` bytes (Linux
    ``fallocate`` keeping the file's size, so a short write still shows as short).

    Why: writing into reserved blocks spares the filesystem allocating as it writes back (the
    README's Performance section has the figures). Skipped where the call is missing
    or refused (other systems, filesystems without it); the writes then report any trouble.
    """
    fallocate = _fallocate()
    if fallocate is None or size <= 0:
        return
    f.flush()
    fallocate(f.fileno(), 1, 0, size)  # 1: FALLOC_FL_KEEP_SIZE; the result is not needed


class Writable(Protocol):
    """Anything bytes are written to: a file, or a writer at an offset of a shared file."""

    def write(self, data: Buffer, /) -> int | None: ...


def can_preallocate() -> bool:
    """Whether :func:`preallocate` reserves blocks here (Linux's ``fallocate``)."""
    return _fallocate() is not None


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.fallocate64
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return call


def discard(temp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(temp)


@contextlib.contextmanager
def atomic_file(
    path: str, *, validate: Callable[[str, str], None] | None = None, output: bool = True
) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file; ``validate(temp, path)`` runs before the rename.
    ``output=False``: a cache, not the command's output (see :func:`commit`).

    On any error or interrupt the temporary file is removed and ``path`` is left as it was.
    """
    fd, temp = create_temp(path)
    try:
        with write_errors(path), os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
        if validate is not None:
            validate(temp, path)
        commit(temp, path, output=output)
    except BaseException:
        discard(temp)
        raise


@contextlib.contextmanager
def write_errors(path: str) -> Iterator[None]:
    """Disk full, I/O errors and the like while writing ``path``: one line naming it."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None


def validate_safetensors(temp: str, path: str) -> None:
    """Open a written file with safetensors' own reader: a bug in our writer stops here."""
    from safetensors import safe_open

    try:
        with safe_open(temp, framework="numpy"):
            pass
    except Exception as exc:
        raise OutputError(
            f"{path}: written file failed validation ({exc}); nothing replaced"
        ) from None


def pwrite_all(fd: int, data: Buffer, offset: int) -> None:
    """``os.pwrite`` until every byte of ``data`` is at ``offset``."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class WriteBehind:
    """Writes to ``f`` on one writer thread, one chunk behind the caller.

    ``write(data)`` returns once the previous write has finished and this one is queued, so a
    caller that fills two buffers in turn (``buffers[k % 2]``) never overwrites one still being
    written, and computes chunk k+1 while chunk k is written (both release the GIL). ``ready``
    (a CUDA event: anything with ``synchronize()``) is waited on by the writer before it writes.
    """

    def __init__(self, f: Writable):
        from concurrent.futures import ThreadPoolExecutor

        self.f = f
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="write")
        self.pending: Future[None] | None = None

    def write(self, data: Buffer, ready: Any = None) -> None:
        self.wait()
        self.pending = self.pool.submit(self._write, data, ready)

    def write_at(self, parts: list[tuple[Buffer, int]]) -> None:
        """As :meth:`write`, each buffer of ``parts`` at its own offset of the file
        (``pwrite``: the file's position does not move; ``f`` must have a ``fileno``)."""
        self.wait()
        fd = self.f.fileno()  # type: ignore[attr-defined]

        def write() -> None:
            for data, at in parts:
                pwrite_all(fd, data, at)

        self.pending = self.pool.submit(write)

    def wait(self) -> None:
        """Until every write queued so far is done (its error, if any, raised here)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def _write(self, data: Buffer, ready: Any) -> None:
        if ready is not None:
            ready.synchronize()
        self.f.write(data)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self.pool.shutdown(wait=True)
