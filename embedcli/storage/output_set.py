"""One output of one or many files, committed whole: :class:`OutputSet`.

An output is often several files: llm.c's numbered shards and their sidecar, a split
safetensors file and its index. Renaming each file atomically is not enough: a rerun that
writes fewer files leaves the old run's extra ones, which a trainer that globs
(``-i "out_*.bin"``) reads as part of the new corpus, and a failure half way through leaves
new files beside old ones. The anchors are git's and Delta Lake's commits: data first under
names no reader looks at, one small pointer written last.

The commit, in this order (each step a rename or an unlink; nothing before step 3 changes
what a reader sees):

1. every file of the set written to a temporary file beside its final place
   (``.NAME.XXXX.tmp``), flushed and checked (``validate``);
2. ``--no-clobber``: every final name claimed with ``link(2)``, the first file first, which
   fails if the name exists: of two racing jobs exactly one wins, and the loser removes what it
   linked and leaves the other's files alone. There is nothing to replace, and the commit ends
   with step 6;
3. the pointers (the sidecars or index through which embedcli reads the set), when the set
   has any, replaced by *incomplete* pointers: from here until step 6 a reader that opens the set
   refuses it in one line (:func:`check_complete`) instead of reading a mix of two runs;
4. the files this set replaces and does not write again removed (``replaces``: an older run's
   shards, parts, validation file);
5. the data files renamed into place, in the order they were added;
6. the pointers renamed into place last.

Until step 6 every file the commit replaces or removes keeps a second name (a hard link), so
an error at any step (a full disk, a failed rename) is undone: the previous output is back
exactly as it was. Ctrl-C and SIGTERM are held back during steps 3-6 (renames: milliseconds)
and handled once the commit is over. Only a ``kill -9`` or a power cut between steps 3 and 6
leaves a mix, beside the incomplete pointer (and the second names, ``.NAME.XXXX.replaced.tmp``);
every embedcli reader refuses such a set in one line naming the pointer, and the command that
wrote it can simply be run again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from embedcli.errors import InputError, OutputError, UsageError
from embedcli.storage import atomic
from embedcli.storage.atomic import (
    COMMITTED,
    atomic_file,
    commit,
    create_temp,
    discard,
    preallocate,
    write_errors,
)

# The key of an incomplete pointer (step 3); its value lists the files being committed.
INCOMPLETE = "embedcli_incomplete_commit"


@dataclass
class _Member:
    path: str
    temp: str
    file: BinaryIO
    validate: Callable[[str, str], None] | None


class OutputSet:
    """The files of one output, committed together (see the module's docstring).

    ``add(path)`` gives a file open for writing, ``pointer(path, doc)`` sets the JSON
    document written last, ``replaces(paths)`` names the old files to remove, and
    ``commit()`` commits; leaving the ``with`` block on an error discards everything.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with OutputSet() as out:
        ...     _ = out.add(f"{d}/a_000000.bin").write(b"ids")
        ...     out.pointer(f"{d}/a.bin.json", {"files": ["a_000000.bin"]})
        >>> sorted(os.listdir(d))
        ['a.bin.json', 'a_000000.bin']
    """

    def __init__(self, *, no_clobber: bool = False) -> None:
        self.no_clobber = no_clobber
        self.members: list[_Member] = []
        self.pointers: dict[str, dict[str, Any]] = {}  # path -> JSON document
        self.stale: list[str] = []
        self.done = False
        self._extra: list[_Member] = []  # the pointers' temp files, once written

    def add(
        self,
        path: str,
        *,
        validate: Callable[[str, str], None] | None = None,
        size: int | None = None,
    ) -> BinaryIO:
        """A new file of the set, open for writing (``size``: its blocks reserved up front;
        ``validate(temp, path)`` runs before anything is committed)."""
        fd, temp = create_temp(path)
        try:
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            discard(temp)
            raise
        self.members.append(_Member(path, temp, f, validate))
        if size:
            with write_errors(path):
                preallocate(f, size)
        return f

    def temp_of(self, path: str) -> str:
        """Where the member ``path`` is being written (other processes write into it by
        name: torchrun's ranks)."""
        return next(m.temp for m in self.members if m.path == path)

    def pointer(self, path: str, doc: dict[str, Any]) -> None:
        """A JSON document through which readers find (part of) the set, written last (a
        train/validation pair has one per side)."""
        self.pointers[path] = doc

    def replaces(self, paths: list[str]) -> None:
        """Files of an older output that this one stands in for: removed at commit unless the
        set writes them again."""
        self.stale.extend(paths)

    @property
    def paths(self) -> list[str]:
        """Every final path, the pointers last."""
        return [*(m.path for m in self.members), *self.pointers]

    def commit(self) -> list[str]:
        """Steps 1-6; returns :attr:`paths`."""
        members = list(self.members)
        members += [self._pointer_member(path, doc) for path, doc in self.pointers.items()]
        for m in members:  # 1
            with write_errors(m.path):
                m.file.flush()
                m.file.close()
            if m.validate is not None:
                m.validate(m.temp, m.path)
        if self.no_clobber:  # 2
            _claim_all(members)
        else:
            keep = {os.path.abspath(m.path) for m in members}
            stale = [p for p in dict.fromkeys(self.stale) if os.path.abspath(p) not in keep]
            with _signals_deferred():
                _replace_all(members, stale, list(self.pointers))
        self.done = True
        return self.paths

    def _pointer_member(self, path: str, doc: dict[str, Any]) -> _Member:
        fd, temp = create_temp(path)
        member = _Member(path, temp, os.fdopen(fd, "wb"), None)
        self._extra.append(member)  # discarded with the rest
        with write_errors(path):
            member.file.write((json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode())
        return member

    def discard(self) -> None:
        """Remove every temporary file; the previous output stays as it was."""
        for m in [*self.members, *self._extra]:
            m.file.close()
            discard(m.temp)

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.done:
            return
        if exc_type is not None:
            self.discard()
            return
        try:
            self.commit()
        except BaseException:
            self.discard()
            raise


@contextlib.contextmanager
def joined(files: OutputSet | None, *, no_clobber: bool) -> Iterator[OutputSet]:
    """``files`` when the caller commits several outputs as one (a train/validation pair),
    else a new set, committed on leaving the block."""
    if files is not None:
        yield files
        return
    with OutputSet(no_clobber=no_clobber) as out:
        yield out


def _claim_all(members: list[_Member]) -> None:
    """Step 2: link every temp file to its final name, none of which may exist; on the first
    name taken, unlink the names this set claimed and refuse."""
    claimed: list[_Member] = []
    try:
        for m in members:
            _claim(m)
            claimed.append(m)
    except BaseException:
        for m in claimed:
            discard(m.path)
        raise
    for m in claimed:
        discard(m.temp)
        COMMITTED.append(m.path)


def _claim(m: _Member) -> None:
    """Link ``m``'s temp file to its final name, which must not exist (``link(2)`` fails
    atomically if it does); where hard links are missing, an exclusive create claims the name
    and the rename then fills it."""
    os.chmod(m.temp, atomic.new_file_mode())
    try:
        os.link(m.temp, m.path)
        return
    except FileExistsError:
        raise OutputError(f"{m.path}: already exists (--no-clobber)") from None
    except OSError:
        pass
    try:
        os.close(os.open(m.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise OutputError(f"{m.path}: already exists (--no-clobber)") from None
    except OSError as exc:
        raise OutputError(f"{m.path}: cannot write: {exc.strerror}") from None
    os.replace(m.temp, m.path)


def _replace_all(members: list[_Member], stale: list[str], pointers: list[str]) -> None:
    """Steps 3-6, undone on an error: every name the commit changes keeps its old file under
    a second name (a hard link) until the last rename, and gets it back if a step fails."""
    mark = len(COMMITTED)
    kept = {path: aside for path in [*(m.path for m in members), *stale] if (aside := _keep(path))}
    done: list[str] = []
    try:
        for pointer in pointers:  # 3
            _write_incomplete(pointer, [m.path for m in members])
        for old in stale:  # 4
            _remove(old)
        for m in members:  # 5, then 6 (the pointer is the last member)
            commit(m.temp, m.path)
            done.append(m.path)
    except BaseException:
        for path in {*done, *pointers} - set(kept):
            discard(path)  # new names: gone again
        for path, aside in kept.items():
            with contextlib.suppress(OSError):
                os.replace(aside, path)
            discard(aside)  # rename() of two names of one file leaves both
        del COMMITTED[mark:]
        raise
    for aside in kept.values():
        _forget(aside)


def _keep(path: str) -> str | None:
    """A second name for the file at ``path`` (None: no file, or no hard links here, in
    which case a failed commit cannot restore it)."""
    return atomic.second_name(path) if os.path.isfile(path) else None


def _forget(aside: str) -> None:
    """Drop the second name of a replaced file: a large one by a detached ``rm`` (its blocks
    are freed off the critical path, as :func:`~embedcli.storage.atomic.commit` does)."""
    try:
        large = os.path.getsize(aside) >= atomic.ASIDE_BYTES
    except OSError:
        return
    if large:
        atomic.remove_detached(aside)
    else:
        discard(aside)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while the renames run (milliseconds), then handled: an
    interrupt never lands between two renames. Only the main thread can set handlers; elsewhere
    the commit runs as it is (an error is still undone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[signal.Signals] = []
    saved = {
        sig: signal.signal(sig, lambda signum, frame: caught.append(signal.Signals(signum)))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    for signum in caught[:1]:
        handler = saved[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


def allow_open_files(needed: int) -> None:
    """Raise this process's soft limit on open files to ``needed`` (at most the hard limit),
    or refuse a split that needs more, before anything is written: an :class:`OutputSet`
    holds each of its files open until it commits, so ``--max-shard-size`` parts beyond
    ``ulimit -n`` (often 1,024) would fail part way with "Too many open files"."""
    try:
        import resource
    except ImportError:  # not POSIX: no such limit to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    if ceiling < needed:
        raise UsageError(
            f"--max-shard-size: writing these parts needs {needed:,} open files and this "
            f"process may open {hard:,} (ulimit -n); give a larger size"
        )


def incomplete_document(names: list[str]) -> bytes:
    """The incomplete pointer (step 3) naming the files being committed: the bytes every
    reader refuses (:func:`check_complete`), locally or at a URL."""
    return (json.dumps({INCOMPLETE: names}, indent=2) + "\n").encode()


def _write_incomplete(path: str, files: list[str]) -> None:
    names = [os.path.basename(name) for name in files]
    with atomic_file(path, output=False) as f:  # not the command's output: a marker
        f.write(incomplete_document(names))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot remove this older part of the output: {exc.strerror}"
        ) from None


def check_complete(path: str, doc: Any) -> None:
    """Refuse a pointer that an interrupted commit left (step 3 of the module's docstring)."""
    if isinstance(doc, dict) and INCOMPLETE in doc:
        raise InputError(
            f"{path}: the run that wrote this output was killed while committing it, so its "
            "files are a mix of two runs; run that command again"
        )
