"""Standard input and pipes as seekable files: what cannot be read twice is spooled once.

Light on purpose (no numpy): ``inspect --no-stats`` reads a pipe through it too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

from embedcli.errors import InputError


@contextlib.contextmanager
def spool(path: str) -> Iterator[str]:
    """A seekable file for ``path``: stdin (``-``), a pipe or ``/dev/stdin`` is copied to a
    temporary file first; a URL is fetched (with the files it refers to); anything else is
    itself (a missing path: its reader says so)."""
    from embedcli.storage.remote import fetched, is_url

    if is_url(path):
        with fetched(path) as local:
            yield local
        return
    if path != "-" and not is_stream(path):
        yield path
        return
    try:
        src = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    with tempfile.NamedTemporaryFile(prefix="embedcli-stdin-", suffix=".spool") as tmp:
        with contextlib.closing(src) if src is not sys.stdin.buffer else contextlib.nullcontext():
            while chunk := src.read(1 << 24):
                tmp.write(chunk)
        tmp.flush()
        yield tmp.name


def is_stream(path: str) -> bool:
    """A pipe, FIFO or character device: something that can be read only once."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
