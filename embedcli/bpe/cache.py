"""What embedcli keeps between runs because it is slow to rebuild, never because it is needed.

Everything here can be thrown away: a missing, truncated or altered entry is rebuilt from its
verified source. Entries live in :func:`cache_dir`.

Parsed rank tables: tiktoken's ``load_tiktoken_bpe`` decodes one base64 line per token on every
start (50,256 lines for GPT-2, 0.15-0.25 s, the largest part of a small command's run). The first
load of a table still goes through that loader and its sha256 check; the parsed table is then
written here in ``marshal``'s format (the dict itself, rebuilt by C in 13 ms where splitting a
blob of token bytes in Python took 36 ms), headed by the sha256 of that payload, and later starts
read it back after checking that hash. marshal only builds plain values (never runs code), and
its format can change between Python versions, so the version is in the entry's name and magic.
tiktoken has no serialised form of a parsed table, hence this one.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from collections.abc import Callable

# The layout: magic, sha256 of the payload, payload (``marshal.dumps`` of the dict).
_PY = f"py{sys.version_info[0]}{sys.version_info[1]}"
_MAGIC = f"embedcli-ranks-2-marshal{marshal.version}-{_PY}\n".encode()


def cache_dir() -> str:
    """Where embedcli keeps what it can rebuild: ``$EMBEDCLI_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/embedcli`` (``~/.cache/embedcli``)."""
    explicit = os.environ.get("EMBEDCLI_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "embedcli")


def cached_ranks(digest: str, load: Callable[[], dict[bytes, int]]) -> dict[bytes, int]:
    """The rank table whose source file has sha256 ``digest``: from the cache when an intact
    entry is there, else ``load()`` (which must check ``digest`` itself), then kept."""
    path = os.path.join(cache_dir(), f"ranks-{digest}-{_PY}.marshal")
    ranks = _read(path)
    if ranks is None:
        ranks = load()
        _write(path, ranks)
    return ranks


def _read(path: str) -> dict[bytes, int] | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(_MAGIC) + 32
    payload = memoryview(data)[head:]
    if (
        data[: len(_MAGIC)] != _MAGIC
        or hashlib.sha256(payload).digest() != data[len(_MAGIC) : head]
    ):
        return None
    try:
        ranks = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):  # the hash matched, so only another marshal
        return None
    return ranks if isinstance(ranks, dict) else None


def _write(path: str, ranks: dict[bytes, int]) -> None:
    """Keep ``ranks`` at ``path``."""
    if not ranks:
        return
    payload = marshal.dumps(ranks)
    keep(path, _MAGIC + hashlib.sha256(payload).digest() + payload)


def keep(path: str, data: bytes) -> None:
    """Keep a derived file in the cache directory, atomically (a reader sees the whole file or
    none; no temporary file is left on an error); a read-only or full cache only costs speed."""
    from embedcli.errors import OutputError
    from embedcli.storage.atomic import atomic_file

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_file(path, output=False) as f:  # a cache: not what the command wrote
            f.write(data)
    except (OSError, OutputError):
        return
