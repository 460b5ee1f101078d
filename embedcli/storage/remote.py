"""Object storage and every other fsspec URL (``s3://``, ``gs://``, ``hf://``, ``memory://``):
listing, streamed reads, fetching a file that must be memory-mapped, and uploads that never
leave a partial object.

fsspec does the protocols (``s3fs`` for S3: the standard AWS credential chain, and
``AWS_ENDPOINT_URL`` for S3-compatible stores); ``--storage-options JSON`` passes anything else
the filesystem takes (:func:`set_storage_options`). What this module adds is embedcli's
contract: one line naming the URL for every failure (never a credential), prefixes read as
directories in sorted order, and outputs written as for local files. An output URL is written
to a local staging directory first (the writers reserve blocks, write at offsets and validate
the file before it counts) and each finished file is then uploaded through the filesystem's
own writer, a multipart upload on S3 that is completed only after the last byte; an error or
interrupt aborts it, so no object, whole or partial, appears for a run that did not finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from embedcli.errors import EmbedcliError, InputError, OutputError, UsageError
from embedcli.progress import ProgressFactory, no_progress

EXTRA = "pip install 'embedcli[s3]'"
UPLOAD_BLOCK = 16 << 20  # bytes a multipart part holds (S3's minimum is 5 MiB)
READ_BLOCK = 8 << 20  # read-ahead of a streamed object

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_OPTIONS: dict[str, Any] = {}
_FETCHED: dict[str, str] = {}  # local directory of fetched copies -> the URL prefix
R = TypeVar("R")


def is_url(path: str) -> bool:
    """``s3://bucket/key`` and the like: anything fsspec reads, rather than a local path."""
    return bool(_URL.match(path))


def set_storage_options(options: dict[str, Any]) -> None:
    """Keyword arguments for every filesystem this process opens (``--storage-options``)."""
    _OPTIONS.clear()
    _OPTIONS.update(options)


@contextlib.contextmanager
def using_storage_options(options: dict[str, Any] | None) -> Iterator[None]:
    """Inside, every filesystem opened takes ``options`` (``None``: whatever is set already);
    after, the options set before are back. A library call's ``storage_options=`` argument:
    the filesystems of one call, not of the process (a thread of the call opens them too, so
    two calls with different options at the same time in two threads would mix them)."""
    if options is None:
        yield
        return
    if not isinstance(options, dict):
        raise UsageError(f"storage_options must be a dict, not {type(options).__name__}")
    saved = dict(_OPTIONS)
    set_storage_options(options)
    try:
        yield
    finally:
        set_storage_options(saved)


def public_url(url: str) -> str:
    """``url`` as it may be recorded and shown: without user, password or query string (a
    presigned URL's signature lives there)."""
    if not is_url(url):
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def filesystem(url: str, options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for ``url``, opened with ``options`` (None: the
    process's, :func:`set_storage_options`); one line when its package is missing. A caller
    that holds its options (the loader's cache) passes them here: swapping the process's
    options from two threads at once could leave either thread's behind."""
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{public_url(url)}: URLs need fsspec ({EXTRA})") from None
    try:
        return fsspec.core.url_to_fs(url, **(_OPTIONS if options is None else options))
    except ImportError as exc:  # fsspec: "Install s3fs to access S3"
        raise UsageError(f"{public_url(url)}: {exc} ({EXTRA})") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{public_url(url)}: {exc}") from None


@contextlib.contextmanager
def storage_errors(url: str, *, writing: bool = False) -> Iterator[None]:
    """Whatever the store or the network says, as one line naming ``url`` (never a secret:
    only the exception's kind and the store's own short message are shown)."""
    error = OutputError if writing else InputError
    shown = public_url(url)
    try:
        yield
    except (InputError, OutputError, UsageError):
        raise
    except (TypeError, AttributeError, NameError, AssertionError):  # a bug of embedcli's own
        raise  # code in the block, not the store's word: reported as an internal error
    except FileNotFoundError:
        raise error(f"{shown}: no such object or bucket") from None
    except PermissionError:
        raise error(
            f"{shown}: access denied (check the credentials: AWS_ACCESS_KEY_ID/AWS_PROFILE, "
            "~/.aws, or the instance role)"
        ) from None
    except Exception as exc:  # botocore and aiohttp errors derive from Exception only
        raise error(f"{shown}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    kind = type(exc).__name__
    if kind == "NoCredentialsError":
        return "no credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, or an instance role)"
    if "Connect" in kind or "Endpoint" in kind or isinstance(exc, (ConnectionError, TimeoutError)):
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        where = f" at {public_url(endpoint)}" if endpoint else ""
        return f"cannot reach the storage endpoint{where} ({kind})"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{kind}: {first}" if first else kind


def _has_magic(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def list_objects(
    url: str, wanted: Callable[[str, str], bool]
) -> tuple[list[tuple[str, int]], list[str]]:
    """The objects ``url`` names, ``([(url, size)], skipped)``: one object; a prefix (ending in
    ``/``, or with objects under it) as a directory: every object under it, sorted, those
    ``wanted(inner path, name)`` kept; a glob: what it matches, sorted."""
    fs, path = filesystem(url)
    with storage_errors(url):
        if _has_magic(path):
            found = fs.glob(path, detail=True)
            return [(fs.unstrip_protocol(p), int(found[p]["size"] or 0)) for p in sorted(found)], []
        if url.endswith("/") or fs.isdir(path):
            root = path.rstrip("/")
            found = fs.find(root, detail=True)
            kept: list[tuple[str, int]] = []
            skipped: list[tuple[str, int]] = []
            for p in sorted(found):
                inner = p[len(root) :].lstrip("/")
                if any(part.startswith(".") for part in inner.split("/")):
                    continue
                name = inner.rsplit("/", 1)[-1]
                target = kept if wanted(inner, name) else skipped
                target.append((fs.unstrip_protocol(p), int(found[p]["size"] or 0)))
            return kept, [u for u, _ in skipped]
        return [(url, int(fs.info(path).get("size") or 0))], []


def open_object(url: str) -> IO[bytes]:
    """A streamed binary reader of ``url``: ranged reads as it is consumed, never the whole
    object in memory; seekable (Parquet footers, ``--shard`` byte ranges)."""
    fs, path = filesystem(url)
    with storage_errors(url):
        return fs.open(path, "rb", block_size=READ_BLOCK)


def fetch(url: str, directory: str) -> str:
    """Copy the object ``url`` into ``directory`` under its own name (files that are
    memory-mapped: token files, safetensors); the local path."""
    fs, path = filesystem(url)
    local = os.path.join(directory, path.rstrip("/").rsplit("/", 1)[-1])
    with (
        storage_errors(url),
        fs.open(path, "rb", block_size=READ_BLOCK) as src,
        open(local, "wb") as dst,
    ):
        shutil.copyfileobj(src, dst, READ_BLOCK)
    return local


def fetch_with_companions(url: str, directory: str) -> str:
    """:func:`fetch`, plus the objects beside it that its readers open: sidecars
    (``NAME.json``), the files a shard manifest, sidecar or ``.index.json`` lists (and theirs),
    a Megatron ``.bin``'s ``.idx`` and the reverse, an llm.c shard's ``NAME.bin.json``. One
    listing of the prefix says which exist."""
    parent, name = url.rstrip("/").rsplit("/", 1)
    fs, path = filesystem(url)
    with storage_errors(url):
        here = {p.rsplit("/", 1)[-1] for p in fs.ls(path.rsplit("/", 1)[0], detail=False)}
        if name not in here and not here & set(_beside(name)):  # llm.c's NAME.bin: its sidecar
            raise FileNotFoundError(path)
    seen, todo = {name}, [name]
    while todo:
        current = todo.pop()
        found = current in here
        more = _beside(current)
        if found:
            more += _listed(fetch(f"{parent}/{current}", directory))
        for other in more:  # a listed name that is no object (llm.c's logical NAME.bin) is
            if other not in seen and (found or other in here):  # followed one step only
                seen.add(other)
                todo.append(other)
    return os.path.join(directory, name)


def _beside(name: str) -> list[str]:
    """Names a reader of ``name`` opens beside it by convention: its sidecar, a Megatron
    prefix's other files, an llm.c shard's ``NAME.bin.json``."""
    names = [name + ".json"]
    if name.endswith((".bin", ".idx")):
        stem = name[: -len(".bin")]
        names += [stem + ".bin", stem + ".idx", stem + ".json"]
        if re.search(r"_\d{6}$", stem):  # llm.c: NAME_000003.bin's sidecar is NAME.bin.json
            names.append(stem[:-7] + ".bin.json")
    return names


def _listed(local: str) -> list[str]:
    """Names a JSON file lists: a manifest's shards, a sidecar's or an index's files."""
    if not local.endswith(".json"):
        return []
    try:
        with open(local, "rb") as f:
            return _names_in(f.read())
    except OSError:
        return []


def _names_in(data: bytes) -> list[str]:
    """Names a pointer's JSON lists (:func:`_listed`); none when it is not one."""
    import json

    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return []  # its reader says what is wrong with it
    if not isinstance(doc, dict):
        return []
    extra = doc.get("embedcli", {})
    weights = doc.get("weight_map", {})
    names = []
    for listed in (
        doc.get("shards"),
        doc.get("files"),
        list(weights.values()) if isinstance(weights, dict) else None,
        extra.get("files") if isinstance(extra, dict) else None,
    ):
        for item in listed if isinstance(listed, list) else []:
            item = item.get("file") if isinstance(item, dict) else item
            if isinstance(item, str) and "/" not in item:  # beside it, nothing else
                names.append(item)
    return names


@contextlib.contextmanager
def fetched(url: str) -> Iterator[str]:
    """A local copy of ``url`` (with :func:`fetch_with_companions`) in a temporary directory
    that is removed afterwards: for readers that memory-map or seek (safetensors, token files).
    Meanwhile :func:`origin` names the copies by their URLs (for lineage and messages)."""
    with tempfile.TemporaryDirectory(prefix="embedcli-fetch-") as scratch:
        _FETCHED[scratch] = public_url(url).rstrip("/").rsplit("/", 1)[0]
        try:
            yield fetch_with_companions(url, scratch)
        except EmbedcliError as exc:  # a reader's message names the copy: name the object
            text = str(exc)
            if scratch not in text:
                raise
            raise type(exc)(relabeled(text, scratch, _FETCHED[scratch])) from None
        finally:
            del _FETCHED[scratch]


def origin(path: str) -> str:
    """The URL a local copy made by :func:`fetched` came from; any other path itself."""
    directory, name = os.path.split(path)
    parent = _FETCHED.get(directory)
    return path if parent is None else f"{parent}/{name}"


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    with storage_errors(url):
        return bool(fs.exists(path))


def check_destination(url: str, *, no_clobber: bool) -> None:
    """Before any work: the bucket (or parent) is there and reachable, and, with
    ``--no-clobber``, the object is not."""
    fs, path = filesystem(url)
    bucket = path.split("/", 1)[0]
    with storage_errors(url, writing=True):
        if "/" in path.strip("/") and not fs.exists(bucket):
            raise OutputError(f"{public_url(url)}: no such bucket {bucket!r}")
        if no_clobber and fs.exists(path):
            raise OutputError(f"{public_url(url)}: exists (--no-clobber)")


def upload(local: str, url: str, advance: Callable[[int], None] = lambda n: None) -> None:
    """``local`` to ``url`` whole or not at all, in a filesystem transaction: the file is
    committed only after its last byte (S3: the multipart upload is completed), and any error
    or interrupt before that discards it (S3: aborts the upload, freeing the parts already
    sent; ``memory://`` and local: nothing was stored), so no object appears."""
    fs, path = filesystem(url)
    dst = None
    try:
        with storage_errors(url, writing=True), fs.transaction:
            dst = fs.open(path, "wb", block_size=UPLOAD_BLOCK)
            with open(local, "rb") as src:
                while chunk := src.read(UPLOAD_BLOCK):
                    dst.write(chunk)
                    advance(len(chunk))
            dst.close()  # the last part; the transaction's end commits it
    finally:
        if dst is not None and not dst.closed:  # discarded: fsspec would flush it when collected
            with contextlib.suppress(AttributeError):
                dst.closed = True


@dataclass
class Staged:
    """Where a stage writes: ``local``; for a URL output, the staging directory it lies in and
    the URL prefix its files go to (:meth:`shown` maps one to the other for summaries)."""

    local: str
    root: str | None = None
    parent: str | None = None

    def shown(self, value: R) -> R:
        """``value`` (a result, a path, a note naming one) with the staging directory as the URL."""
        if self.root is None or self.parent is None:
            return value
        return relabeled(value, self.root, self.parent)


def relabeled(value: R, directory: str, url: str) -> R:
    """``value`` with every path under the local ``directory`` written under ``url`` instead:
    strings, and those in lists, tuples and dataclasses (changed in place: fresh results)."""
    if isinstance(value, str):
        return value.replace(directory + os.sep, f"{url}/") if directory in value else value  # type: ignore[return-value]
    if isinstance(value, list):
        value[:] = [relabeled(v, directory, url) for v in value]
    elif isinstance(value, tuple):
        items = [relabeled(v, directory, url) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # type: ignore[return-value]
    elif isinstance(value, dict):
        for key in value:
            value[key] = relabeled(value[key], directory, url)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = relabeled(old, directory, url)
            if new is not old:
                object.__setattr__(value, f.name, new)  # some results are frozen
    return value


def _replaced_remotely(prefix: str, pointers: list[str], new: set[str]) -> list[str]:
    """The commit of an output at a URL, as :class:`~embedcli.storage.output_set.OutputSet`
    commits a local one: each pointer (sidecar, index, manifest) already at the URL is first
    replaced by an *incomplete* one, so that a reader refuses the set while its data files go
    up. Returned: the files the old pointers list and the new set neither writes nor lists
    (``new``), to be removed after the data files and before the pointers go up. An object
    store renames nothing, so an upload cut short leaves the incomplete pointer: a set that
    readers refuse, never a silent mix."""
    from embedcli.storage.output_set import incomplete_document

    stale: list[str] = []
    for inner in pointers:
        fs, path = filesystem(f"{prefix}/{inner}")
        with storage_errors(f"{prefix}/{inner}", writing=True):
            try:
                old = fs.cat_file(path)
            except FileNotFoundError:
                continue  # nothing to replace: no reader finds the new files before it
            listed = [posixpath.join(posixpath.dirname(inner), n) for n in _names_in(old)]
            stale += [name for name in listed if name not in new]
            with fs.transaction:
                fs.pipe_file(path, incomplete_document(sorted(new)))
    return list(dict.fromkeys(stale))


def _remove_objects(prefix: str, names: list[str]) -> None:
    for inner in names:
        fs, path = filesystem(f"{prefix}/{inner}")
        with (
            storage_errors(f"{prefix}/{inner}", writing=True),
            contextlib.suppress(FileNotFoundError),
        ):
            fs.rm_file(path)


@contextlib.contextmanager
def staged(
    output: str,
    committed: list[str],
    *,
    no_clobber: bool,
    progress: ProgressFactory = no_progress,
    unfinished: list[str] | None = None,
) -> Iterator[Staged]:
    """Where a stage writes ``output``. For a URL: a path in a fresh staging directory; once
    the stage returns, every file it committed there (``committed``: the storage layer's
    list, in commit order) is uploaded beside the URL, data files first and manifests and
    indexes last, then the directory is removed (on success or not). A local ``output`` is
    written where it is.

    ``committed`` ends up naming what is complete: each uploaded URL, never a staging file.
    An interrupt during the stage or the upload adds a note on the URL to ``unfinished``.
    """
    if not is_url(output):
        yield Staged(output)
        return
    check_destination(output, no_clobber=no_clobber)
    _, path = filesystem(output)
    parent = public_url(output).rstrip("/").rsplit("/", 1)[0]
    root = tempfile.mkdtemp(prefix="embedcli-upload-")
    mark = len(committed)
    uploaded = 0
    inside = root + os.sep
    try:
        yield Staged(os.path.join(root, path.rstrip("/").rsplit("/", 1)[-1]), root, parent)
        written = [p for p in committed[mark:] if p.startswith(inside)]
        prefix = output.rstrip("/").rsplit("/", 1)[0]
        files = [os.path.relpath(p, root).replace(os.sep, "/") for p in dict.fromkeys(written)]
        data = [f for f in files if not f.endswith(".json")]  # in commit order
        pointers = [f for f in files if f.endswith(".json")]  # manifests, sidecars, indexes
        kept = set(files) | {  # and what the new pointers list (a manifest: every shard's)
            posixpath.join(posixpath.dirname(inner), name)
            for inner in pointers
            for name in _listed(os.path.join(root, inner))
        }
        stale = _replaced_remotely(prefix, pointers, kept)
        for k, inner in enumerate(data + pointers):
            if k == len(data):
                _remove_objects(prefix, stale)  # the old set's other files, before its pointers
            local = os.path.join(root, inner)
            with progress(f"uploading {inner}", os.path.getsize(local), "bytes") as advance:
                upload(local, f"{prefix}/{inner}", advance)
            committed.append(f"{parent}/{inner}")  # complete once it is at the URL
            uploaded += 1
    except KeyboardInterrupt:
        if unfinished is not None:
            shown = public_url(output)
            unfinished.append(
                f"{shown} was not uploaded whole"
                if uploaded
                else f"nothing was uploaded to {shown}"
            )
        raise
    finally:
        # the staging files vanish with their directory: never report one as written
        committed[mark:] = [p for p in committed[mark:] if not p.startswith(inside)]
        shutil.rmtree(root, ignore_errors=True)
