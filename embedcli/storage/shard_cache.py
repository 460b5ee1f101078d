"""Token files in an object store, read by a training loop through a local cache of whole shards.

A loader reads windows at random positions, which an object store serves badly (a request a
window). So each shard is fetched whole, once, into ``cache_dir`` (ranged reads of the object,
written to a temporary name and renamed, so a reader never sees a partial shard), then
memory-mapped like a local file. ``cache_limit`` bounds the cache: when a new shard would go
past it, the least recently used shards are removed (a shard in use by this process is
unmapped first; another process's map of a removed shard stays valid until it lets go, as
POSIX keeps an unlinked file's pages for whoever maps it). DataLoader workers share the cache:
a lock file a shard means one process downloads it while the others wait for it.

What the loader needs before any window is read (each shard's size, dtype and document
offsets: a safetensors header is its first bytes) is read by ranged GETs once, in the process
that opens the dataset, and travels to the workers with it (:class:`RemoteIds` pickles as its
description, never as its ids).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedcli.errors import FormatError, InputError, OutputError
from embedcli.storage.remote import (
    READ_BLOCK,
    filesystem,
    public_url,
    storage_errors,
)

DEFAULT_RETRIES = 3
# what storage_errors says of a failure no retry mends: the object, the key, the permission
_FINAL = ("no such object", "no credentials", "access denied")


def default_cache_dir() -> str:
    """``$EMBEDCLI_CACHE/shards``, else ``~/.cache/embedcli/shards`` (``$XDG_CACHE_HOME``)."""
    base = os.environ.get("EMBEDCLI_CACHE")
    if base is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "embedcli")
    return os.path.join(base, "shards")


@dataclass(frozen=True)
class CacheConfig:
    """Where shards are kept, how many bytes at most (None: no limit), how often a failed read
    is tried, and the filesystem's options (``storage_options``)."""

    directory: str
    limit: int | None = None
    retries: int = DEFAULT_RETRIES
    storage_options: tuple[tuple[str, Any], ...] = ()

    @property
    def options(self) -> dict[str, Any] | None:
        return dict(self.storage_options) if self.storage_options else None


def read_range(url: str, start: int, end: int | None, config: CacheConfig) -> bytes:
    """Bytes ``[start, end)`` of the object ``url`` (a header, an index; ``end`` None: to its
    end), tried ``config.retries`` times."""

    def get() -> bytes:
        fs, path = filesystem(url, config.options)
        return bytes(fs.cat_file(path, start=start, end=end))

    return _tried(url, config, get)


def object_size(url: str, config: CacheConfig) -> tuple[int, str]:
    """The object's size and a tag that changes when it is rewritten (its ETag, else its
    modification time; empty when the store gives neither)."""

    def get() -> tuple[int, str]:
        fs, path = filesystem(url, config.options)
        info = fs.info(path)
        tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        return int(info.get("size") or 0), str(tag or "").strip('"')

    return _tried(url, config, get)


def listed_sizes(prefix: str, config: CacheConfig) -> dict[str, tuple[int, str]]:
    """Every object directly under ``prefix`` (a URL ending in ``/``): its URL -> its size and
    version tag, in one listing (the shards of a manifest, rather than a request each)."""

    def get() -> dict[str, tuple[int, str]]:
        fs, path = filesystem(prefix, config.options)
        found = {}
        for info in fs.ls(path.rstrip("/"), detail=True):
            if info.get("type", "file") != "file":
                continue
            tag = (
                info.get("ETag")
                or info.get("etag")
                or info.get("LastModified")
                or info.get("mtime")
            )
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            found[prefix + name] = (int(info.get("size") or 0), str(tag or "").strip('"'))
        return found

    return _tried(prefix, config, get)


def cached_file(shard: RemoteIds) -> str | None:
    """The shard's file in the cache when it is there whole (its header can be read there)."""
    path = os.path.join(shard.config.directory, shard.local_name())
    return path if _is_whole(path, shard.size_bytes) else None


def _tried(url: str, config: CacheConfig, action: Any) -> Any:
    """``action()``, again after a pause when the store fails, ``config.retries`` times in all;
    then the last failure as one line naming the URL. A missing object, missing credentials
    or a denied access are not tried again."""
    tries = max(config.retries, 1)
    for attempt in range(tries):
        try:
            with storage_errors(url):
                return action()
        except InputError as exc:
            if any(word in str(exc) for word in _FINAL):
                raise  # trying again cannot help
            if attempt == tries - 1:
                raise InputError(
                    f"{exc} (after {tries} tries)" if tries > 1 else str(exc)
                ) from None
            time.sleep(min(0.2 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


@dataclass
class RemoteIds:
    """The ids of one shard in an object store: ``count`` ids of ``dtype`` at byte ``offset``
    of the object ``url`` (``size`` bytes, ``tag`` its version), memory-mapped from the local
    cache when first read (:meth:`array`). Sized and typed like the array it stands for, so a
    stream's layout is known before any shard is fetched."""

    url: str
    size_bytes: int
    tag: str
    offset: int
    dtype: np.dtype
    count: int
    config: CacheConfig
    vocab: int | None = None  # ids are checked against it when the shard is first mapped
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def size(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int]:
        return (self.count,)

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def array(self) -> np.ndarray:
        """The ids, memory-mapped from the cached shard (fetched first if it is not there)."""
        with self._lock:
            return _MAPS.get(self)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.array()[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        ids = self.array()
        return ids if dtype is None else ids.astype(dtype)

    def local_name(self) -> str:
        """The shard's file in the cache: a digest of its URL and version, and its own name."""
        digest = hashlib.sha256(f"{self.url}\0{self.tag}\0{self.size_bytes}".encode()).hexdigest()
        return f"{digest[:20]}-{self.url.rstrip('/').rsplit('/', 1)[-1]}"


class _OpenShards:
    """This process's memory maps of cached shards, least recently used first: a map is
    dropped before its file is evicted, and the maps kept hold at most the cache's limit."""

    def __init__(self) -> None:
        self.maps: OrderedDict[str, tuple[RemoteIds, np.ndarray]] = OrderedDict()
        self.lock = threading.Lock()
        self.checked: set[str] = set()  # shards whose ids this process has checked

    def get(self, ids: RemoteIds) -> np.ndarray:
        name = ids.local_name()
        with self.lock:
            if name in self.maps:
                self.maps.move_to_end(name)
                return self.maps[name][1]
        mapped = ShardCache(ids.config).open(ids)
        if ids.vocab and name not in self.checked:  # once, not at each map after an eviction
            _check_vocab(mapped, ids)
            self.checked.add(name)
        with self.lock:
            self.maps[name] = (ids, mapped)
            self._trim(ids.config.limit)
        return mapped

    def forget(self, name: str) -> None:
        with self.lock:
            self.maps.pop(name, None)

    def _trim(self, limit: int | None) -> None:
        if limit is None:
            return
        held = sum(i.size_bytes for i, _ in self.maps.values())
        while len(self.maps) > 1 and held > limit:
            _, (old, _) = self.maps.popitem(last=False)
            held -= old.size_bytes

    def clear(self) -> None:
        with self.lock:
            self.maps.clear()
            self.checked.clear()


_MAPS = _OpenShards()


def _check_vocab(ids: np.ndarray, shard: RemoteIds) -> None:
    from embedcli.vocab import out_of_vocab

    assert shard.vocab is not None
    found = out_of_vocab(ids, shard.vocab)
    if found is not None:
        raise FormatError(found.message(public_url(shard.url), shard.vocab, ids.shape))


class ShardCache:
    """Whole shards in ``config.directory``, fetched once, the least recently used removed
    past ``config.limit``."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.directory = config.directory

    def open(self, shard: RemoteIds) -> np.ndarray:
        """``shard``'s ids memory-mapped from its cached file (fetched first if need be), mapped
        under the cache's lock, which eviction takes too: the file cannot go in between."""
        for _ in range(3):  # evicted by another process between its fetch and its map: again
            path = self.local(shard)
            with _locked(self._cache_lock):
                if _is_whole(path, shard.size_bytes):
                    os.utime(path)  # most recently used
                    return np.memmap(
                        path, dtype=shard.dtype, mode="r", offset=shard.offset,
                        shape=(shard.count,),
                    )  # fmt: skip
        raise OutputError(
            f"{self.directory}: {public_url(shard.url)} is evicted as soon as it is fetched: "
            "the cache limit is too small for the processes sharing it"
        )

    def local(self, shard: RemoteIds) -> str:
        """The cached file of ``shard``, fetched (by one process at a time) if it is not there."""
        os.makedirs(self._locks, exist_ok=True)
        name = shard.local_name()
        path = os.path.join(self.directory, name)
        with _locked(os.path.join(self._locks, name)):
            if not _is_whole(path, shard.size_bytes):
                with _locked(self._cache_lock):
                    self._make_room(shard.size_bytes, keep=path)
                    fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".part-")
                    os.ftruncate(fd, shard.size_bytes)  # counted by the others' room from now
                try:
                    _tried(shard.url, self.config, lambda: self._download(shard, fd, temp, path))
                finally:
                    os.close(fd)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp)
        return path

    @property
    def _locks(self) -> str:
        return os.path.join(self.directory, ".locks")  # one a shard, beside the cache

    @property
    def _cache_lock(self) -> str:
        return os.path.join(self._locks, ".cache")  # eviction, and mapping

    def _download(self, shard: RemoteIds, fd: int, temp: str, path: str) -> None:
        fs, where = filesystem(shard.url, shard.config.options)
        os.lseek(fd, 0, os.SEEK_SET)  # a try again starts from the first byte
        with (
            fs.open(where, "rb", block_size=READ_BLOCK) as src,
            open(fd, "wb", closefd=False) as dst,
        ):
            shutil.copyfileobj(src, dst, READ_BLOCK)
            got = dst.tell()
        if got != shard.size_bytes:
            raise InputError(
                f"{public_url(shard.url)}: read {got:,} bytes of {shard.size_bytes:,} (the "
                "object changed while it was read?)"
            )
        os.replace(temp, path)

    def _make_room(self, needed: int, *, keep: str) -> None:
        """Remove the least recently used shards until ``needed`` more bytes fit the limit
        (shards being fetched count at their full size; called under the cache's lock)."""
        if self.config.limit is None:
            return
        cached, held = [], 0
        for entry in os.scandir(self.directory):
            if entry.path == keep or not entry.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat()
                held += st.st_size
                if not entry.name.startswith("."):  # a fetch under way is never a victim
                    cached.append((st.st_mtime, st.st_size, entry.path, entry.name))
        for _, size, path, name in sorted(cached):
            if held + needed <= self.config.limit:
                break
            _MAPS.forget(name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            held -= size


def _is_whole(path: str, size: int) -> bool:
    try:
        return os.path.getsize(path) == size
    except OSError:
        return False


_NAMED: dict[str, threading.Lock] = {}  # one lock a shard among this process's threads
_NAMED_LOCK = threading.Lock()


def _after_fork() -> None:
    """A forked DataLoader worker starts with no lock held (one held by a thread of the parent,
    the prefetcher, would never be released in the child)."""
    global _NAMED_LOCK
    _NAMED.clear()
    _NAMED_LOCK = threading.Lock()
    _MAPS.lock = threading.Lock()
    _MAPS.maps.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


@contextlib.contextmanager
def _locked(path: str, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on ``path`` among this process's threads and across processes.
    Across processes it is a POSIX record lock (``lockf``), which a forked child does not
    inherit (a ``flock`` held by the parent's prefetch thread at a fork would stay held by the
    child's copy of the descriptor); none where the platform has no ``fcntl``."""
    with _NAMED_LOCK:
        mine = _NAMED.setdefault(path, threading.Lock())
    if not mine.acquire(blocking=wait):
        yield False
        return
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: processes may fetch the same shard twice, harmlessly
            yield True
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot lock the shard cache ({exc.strerror})") from None
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by another process (only when not waiting)
                yield False
                return
            yield True
        finally:
            os.close(fd)
    finally:
        mine.release()


class Prefetcher:
    """Fetches shards into the cache ahead of a consumer, in the order it will first need
    them: ``needs`` gives each shard's first batch (``(batch, shard)`` pairs, in batch order;
    an iterable, worked through in the thread), ``at()`` the batch the consumer is at. At most ``ahead`` shards beyond the one in use are
    fetched (fewer when the cache's limit holds fewer, none when it holds two shards or
    less), so prefetching does not evict what the consumer reads now. A failed fetch is left for the consumer's own read to report."""

    def __init__(
        self, shards: list[RemoteIds], needs: Iterable[tuple[int, int]], at: Any, ahead: int = 2
    ) -> None:
        self.shards, self.needs, self.at = shards, needs, at
        limit = shards[0].config.limit if shards else None
        largest = max((s.size_bytes for s in shards), default=1)
        # room for the shard in use and the one the read-ahead of batches may still be in
        fits = ahead if limit is None else max(0, min(ahead, limit // max(largest, 1) - 2))
        self.ahead = fits
        self.stopped = threading.Event()
        self.fetched = 0  # shards this thread brought into the cache
        self.thread = threading.Thread(target=self._run, name="embedcli-prefetch", daemon=True)

    def start(self) -> Prefetcher:
        if self.ahead > 0 and self.shards:
            self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=60)

    def _run(self) -> None:
        try:
            self._fetch_ahead()
        except Exception:  # noqa: BLE001 (the consumer's own read reports it, in its words)
            return

    def _fetch_ahead(self) -> None:
        firsts: list[int] = []  # each shard's first batch, as the needs come
        for when, shard in self.needs:
            firsts.append(when)
            # wait until the consumer is within `ahead` shards of this one
            behind = firsts[max(len(firsts) - 1 - self.ahead, 0)]
            while self.at() < behind:
                if self.stopped.wait(0.01):
                    return
            if self.stopped.is_set():
                return
            ids = self.shards[shard]
            ShardCache(ids.config).local(ids)
            self.fetched += 1
