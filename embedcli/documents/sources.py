"""Which documents a command reads: paths, directories and stdin resolved to sources,
each with its format, and ``--shard I/N``'s fixed share of them.

Every document format is listed in :data:`DOCUMENT_FORMATS`, explicitly: importing any module
of this package gives the same list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

from embedcli.documents.base import (
    BLOCK_BYTES,
    Block,
    DocumentFormat,
    Rows,
    Source,
    split_suffix,
)
from embedcli.documents.columnar import ARROW, PARQUET
from embedcli.documents.jsonl import JSONL
from embedcli.documents.text import TEXT
from embedcli.errors import InputError, UsageError
from embedcli.storage.pipes import is_stream
from embedcli.storage.remote import is_url, list_objects, public_url

DOCUMENT_FORMATS: dict[str, DocumentFormat] = {f.name: f for f in (TEXT, JSONL, PARQUET, ARROW)}
FORMATS = ("auto", *DOCUMENT_FORMATS)  # --format's choices


def text_suffixes() -> tuple[str, ...]:
    """Suffixes a directory input gives (each optionally followed by .gz or .zst)."""
    return tuple(s for fmt in DOCUMENT_FORMATS.values() for s in fmt.suffixes)


def _make_source(path: str, fmt: str, size: int | None = None) -> Source:
    base, compression = split_suffix(path)
    if fmt == "auto":
        fmt = next((f.name for f in DOCUMENT_FORMATS.values() if base.endswith(f.suffixes)), "text")
    return Source(path, fmt, compression, os.path.getsize(path) if size is None else size)


def resolve_sources(
    paths: list[str],
    fmt: str = "auto",
    *,
    include: tuple[str, ...] = (),
    skipped: list[str] | None = None,
) -> list[Source]:
    """Expand paths into sources: ``-`` is stdin, directories give their text files, sorted.

    ``include`` globs (matched against the path inside the directory and against the file
    name) choose which files a directory gives instead of the suffixes; the files a directory
    does not give are appended to ``skipped``.

    Example:
        >>> [s.path for s in resolve_sources(["sample_data"])]  # doctest: +SKIP
        ['sample_data/articles.jsonl', 'sample_data/the-lighthouse.txt']
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not paths:
        paths = ["-"]
    if paths.count("-") > 1:
        raise UsageError("standard input ('-') can be read only once")
    sources: list[Source] = []
    for path in paths:
        if is_url(path):
            sources.extend(_url_sources(path, fmt, include, skipped))
        elif path == "-":
            sources.append(Source("-", "text" if fmt == "auto" else fmt))
        elif os.path.isdir(path):
            found, left = _walk_files(path, include)
            if skipped is not None:
                skipped.extend(sorted(left))
            if not found:
                wanted = include or tuple("*" + s for s in text_suffixes())
                raise InputError(
                    f"{path}: no text files in this directory (looked for {', '.join(wanted)}"
                    f"{'' if include else ', optionally .gz/.zst'}; --include GLOB chooses)"
                )
            sources.extend(replace(_make_source(p, fmt), key=_inside(p, path)) for p in found)
        elif os.path.exists(path):
            if not os.path.isfile(path) and not is_stream(path):
                raise InputError(f"{path}: not a regular file")
            sources.append(replace(_make_source(path, fmt), key=os.path.basename(path)))
        else:
            check_flag_words([path])
            raise InputError(f"{path}: no such file or directory")
    return sources


def _url_sources(
    url: str, fmt: str, include: tuple[str, ...], skipped: list[str] | None
) -> list[Source]:
    """An object, a prefix read as a directory (``s3://bucket/dir/``), or a glob."""
    from fnmatch import fnmatch

    def wanted(inner: str, name: str) -> bool:
        if include:
            return any(fnmatch(inner, g) or fnmatch(name, g) for g in include)
        return split_suffix(name)[0].endswith(text_suffixes())

    found, left = list_objects(url, wanted)
    if skipped is not None:
        skipped.extend(left)
    if not found:
        raise InputError(f"{public_url(url)}: no objects to read here (--include GLOB chooses)")
    sources = []
    for path, size in found:
        source = replace(_make_source(path, fmt, size), key=_object_key(path, url))
        shown = public_url(path)
        sources.append(replace(source, label=shown) if shown != path else source)
    return sources


def _inside(path: str, directory: str) -> str:
    """``path`` relative to the directory it was found in, with ``/`` (the same key on every
    system and however the directory was spelled)."""
    return os.path.relpath(path, directory).replace(os.sep, "/")


def _object_key(path: str, url: str) -> str:
    """An object's key below the prefix it was listed from (its name when named itself)."""
    prefix = url.rstrip("/")
    if path.rstrip("/") == prefix or not path.startswith(prefix + "/"):
        return path.rsplit("/", 1)[-1]
    return path[len(prefix) + 1 :]


def check_flag_words(paths: list[str]) -> None:
    """``--shuffle true`` makes ``true`` an input: say what happened instead of 'no such file'."""
    for path in paths:
        if path.lower() in ("true", "false", "yes", "no", "on", "off") and not os.path.exists(path):
            raise UsageError(
                f"{path}: no such file or directory; flags such as --shuffle take no value "
                f"(write --shuffle, not --shuffle {path})"
            )


def parse_shard(spec: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard 2 (counting from 0) of 8, as Slurm array ids count."""
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard takes I/N, e.g. 0/4 (got {spec!r})") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {spec}: need 0 <= I < N")
    return index, count


def shard_sources(sources: list[Source], index: int, count: int) -> list[Source]:
    """The documents of shard ``index`` of ``count``: a fixed 1/N of the input, by bytes.

    Picture the sources (sorted by path) laid end to end and cut into ``count`` equal byte
    ranges. A document belongs to the range holding its first byte: a text or compressed file
    is one unit at its start; an uncompressed jsonl file is split between lines. The assignment
    depends only on the paths and sizes, so every shard can compute it alone, and the shards
    in order hold every document exactly once, in the single run's order.
    """
    import bisect

    if any(s.path == "-" for s in sources):
        raise UsageError("--shard needs files or directories, not stdin")
    total = sum(s.size for s in sources)
    bounds = [i * total // count for i in range(count)] + [total]
    begin, end = bounds[index], bounds[index + 1]
    out, position = [], 0
    for source in sources:
        splitter = DOCUMENT_FORMATS[source.format].shard
        if splitter is not None and source.compression is None:
            local = (max(begin - position, 0), min(end - position, source.size))
            part = splitter(source, *local, index == count - 1)
            if part is not None:
                out.append(part)
        else:
            owner = min(bisect.bisect_right(bounds, position) - 1, count - 1)
            if owner == index:
                out.append(source)
        position += source.size
    return out


def _walk_files(root: str, include: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(files the directory gives, sorted; files it skips). Hidden files and directories are
    neither."""
    from fnmatch import fnmatch

    found: list[str] = []
    left: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            inner = os.path.relpath(path, root)
            if include:
                wanted = any(fnmatch(inner, g) or fnmatch(name, g) for g in include)
            else:
                wanted = split_suffix(name)[0].endswith(text_suffixes())
            (found if wanted else left).append(path)
    return sorted(found), left


def iter_blocks(
    source: Source, *, text_key: str = "text", block_bytes: int = BLOCK_BYTES
) -> Iterator[Block]:
    """The documents of one source as blocks of text, in order."""
    yield from DOCUMENT_FORMATS[source.format].blocks(source, text_key, block_bytes)


def row_batches(source: Source, *, text_key: str = "text") -> Iterator[Rows] | None:
    """The documents of a columnar source as batches of rows, in order; None for a format
    that is not read by rows (text, jsonl)."""
    rows = DOCUMENT_FORMATS[source.format].rows
    return None if rows is None else rows(source, text_key)
