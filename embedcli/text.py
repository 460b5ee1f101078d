"""Reading documents: files, directories, stdin; plain text and jsonl; gzip and zstd.

A ``.txt`` (or any other unrecognised) file is one document; a ``.jsonl`` file is one document
per non-blank line, its text under ``text_key``. Other document formats register a
:class:`DocumentFormat` (``columnar.py``: Parquet and Arrow, one document per row). Plain text is decoded as strict UTF-8 with universal
newlines (``\\r\\n`` and ``\\r`` become ``\\n``), exactly as ``open(path, encoding="utf-8").read()``
in the reference pipeline does. Large documents are streamed in blocks, never read whole.

Not covered here: encoding (``tokenizer.py``).
"""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

from .errors import InputError, UsageError

COMPRESSED_SUFFIXES = (".gz", ".zst")
BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input: a file path, or ``-`` for standard input."""

    path: str
    format: str  # "text" or "jsonl"
    compression: str | None = None  # "gz", "zst" or None
    size: int = 0  # bytes on disk (compressed size for compressed files), 0 if unknown
    # For --shard: read only the jsonl lines that *start* in [begin, end) of the file.
    byte_range: tuple[int, int] | None = None
    row_groups: tuple[int, ...] | None = None  # for --shard: only these Parquet row groups
    label: str | None = None  # the name shown, when not the path (a spooled pipe)
    first_line: int | None = None  # line number at byte_range's start, when known

    @property
    def name(self) -> str:
        return self.label or ("<stdin>" if self.path == "-" else self.path)


@dataclass
class Block:
    """A piece of one document's text. ``last`` marks the end of the document."""

    text: str
    doc: str  # where the document comes from, for messages ("a.txt", "b.jsonl:12")
    line: int  # 1-based line number of the block's first character in its file
    nbytes: int  # input bytes this block accounts for (for progress)
    last: bool


@dataclass(frozen=True)
class DocumentFormat:
    """A kind of document file: the suffixes that select it (``--format auto``, directories),
    how its documents are read, and how ``--shard`` may split one file (``None``: it is one
    unit, owned by the shard holding its first byte)."""

    name: str
    suffixes: tuple[str, ...]
    blocks: Callable[[Source, str, int], Iterator[Block]]  # (source, text_key, block_bytes)
    # (source, first byte, end byte of this shard inside the file, last shard?) -> its part
    shard: Callable[[Source, int, int, bool], Source | None] | None = None


DOCUMENT_FORMATS: dict[str, DocumentFormat] = {}


def register_format(fmt: DocumentFormat) -> None:
    """Make a document format available to ``--format``, suffix detection and directories."""
    DOCUMENT_FORMATS[fmt.name] = fmt


def text_suffixes() -> tuple[str, ...]:
    """Suffixes a directory input gives (each optionally followed by .gz or .zst)."""
    return tuple(s for fmt in DOCUMENT_FORMATS.values() for s in fmt.suffixes)


def _split_suffix(path: str) -> tuple[str, str | None]:
    for suffix in COMPRESSED_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)], suffix[1:]
    return path, None


def _make_source(path: str, fmt: str) -> Source:
    base, compression = _split_suffix(path)
    if fmt == "auto":
        fmt = next((f.name for f in DOCUMENT_FORMATS.values() if base.endswith(f.suffixes)), "text")
    return Source(path, fmt, compression, os.path.getsize(path))


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
        if path == "-":
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
            sources.extend(_make_source(p, fmt) for p in found)
        elif os.path.exists(path):
            if not os.path.isfile(path) and not _is_stream(path):
                raise InputError(f"{path}: not a regular file")
            sources.append(_make_source(path, fmt))
        else:
            check_flag_words([path])
            raise InputError(f"{path}: no such file or directory")
    return sources


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


def _is_stream(path: str) -> bool:
    import stat

    mode = os.stat(path).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _walk_files(root: str, include: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(files the directory gives, sorted; files it skips). Hidden files and directories are
    neither."""
    from fnmatch import fnmatch

    found, left = [], []
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
                wanted = _split_suffix(name)[0].endswith(text_suffixes())
            (found if wanted else left).append(path)
    return sorted(found), left


def _open_binary(source: Source) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, underlying file): the file's position measures progress."""
    if source.path == "-":
        return sys.stdin.buffer, sys.stdin.buffer
    raw = open(source.path, "rb")  # noqa: SIM115 (the caller closes it)
    if source.compression == "gz":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]
    if source.compression == "zst":
        try:
            import zstandard
        except ImportError:
            raw.close()
            raise InputError(
                f"{source.path}: reading .zst needs the zstandard package "
                "(pip install 'embedcli[zstd]')"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(raw), raw
    return raw, raw


class _CountingReader:
    """Reads blocks from a (possibly decompressing) stream; reports file bytes consumed."""

    def __init__(self, stream: BinaryIO, raw: BinaryIO, source: Source):
        self.stream, self.raw, self.source = stream, raw, source
        self._pos = 0

    def read(self, n: int) -> tuple[bytes, int]:
        try:
            data = self.stream.read(n)
        except (OSError, EOFError, ValueError) as exc:
            raise InputError(f"{self.source.name}: cannot read: {_reason(exc)}") from None
        if self.stream is self.raw:
            return data, len(data)
        pos = self.raw.tell()
        advanced, self._pos = pos - self._pos, pos
        return data, advanced


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def iter_blocks(
    source: Source, *, text_key: str = "text", block_bytes: int = BLOCK_BYTES
) -> Iterator[Block]:
    """The documents of one source as blocks of text, in order."""
    yield from DOCUMENT_FORMATS[source.format].blocks(source, text_key, block_bytes)


def _streamed(read: Callable) -> Callable[[Source, str, int], Iterator[Block]]:
    """Blocks of a format read as a byte stream (decompressed on the fly, stdin included)."""

    def blocks(source: Source, text_key: str, block_bytes: int) -> Iterator[Block]:
        try:
            stream, raw = _open_binary(source)
        except OSError as exc:
            raise InputError(f"{source.name}: cannot open: {_reason(exc)}") from None
        try:
            yield from read(_CountingReader(stream, raw, source), source, text_key, block_bytes)
        finally:
            if raw is not sys.stdin.buffer:
                stream.close()
                raw.close()

    return blocks


def _text_blocks(
    reader: _CountingReader, source: Source, text_key: str, block_bytes: int
) -> Iterator[Block]:
    """One document, decoded incrementally: strict UTF-8, universal newlines."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("strict"), True)
    consumed = 0  # input bytes handed to the decoder so far
    line = 1
    pending: Block | None = None
    while True:
        data, advanced = reader.read(block_bytes)
        final = not data
        try:
            text = decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            raise InputError(_utf8_message(source, exc, consumed, data)) from None
        consumed += len(data)
        block = Block(text, source.name, line, advanced, last=False)
        line += text.count("\n")
        # Emit with one block of delay so the last one can carry last=True.
        if pending is not None:
            yield pending
        pending = block
        if final:
            break
    pending.last = True
    yield pending


def _utf8_message(source: Source, exc: UnicodeDecodeError, consumed: int, data: bytes) -> str:
    # The decoder saw (bytes it kept from the previous block) + data; exc.start indexes that.
    held = len(exc.object) - len(data)
    offset = consumed - held + exc.start
    where = f"byte {offset}"
    if source.path != "-" and source.compression is None:
        where += f" (line {_line_of(source.path, offset)})"
    return f"{source.name}: invalid UTF-8 at {where}: {exc.reason}"


def _line_of(path: str, offset: int) -> int:
    """1-based line number of byte ``offset`` in a file (error path only: reads up to it)."""
    lines = 1
    with open(path, "rb") as f:
        while offset > 0:
            chunk = f.read(min(offset, BLOCK_BYTES))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            offset -= len(chunk)
    return lines


def _jsonl_blocks(
    reader: _CountingReader, source: Source, text_key: str, block_bytes: int
) -> Iterator[Block]:
    for value, lineno, offset, nbytes in _jsonl_records(reader, source, text_key, block_bytes):
        if value is None:  # trailing blank lines
            continue
        yield Block(value, doc_name(source, lineno, offset), lineno or 0, nbytes, last=True)


def _jsonl_records(
    reader: _CountingReader, source: Source, text_key: str, block_bytes: int
) -> Iterator[tuple[str | None, int | None, int, int]]:
    """(text, line number or None mid-file, byte offset, bytes read) per non-blank line; the
    bytes of blank lines go with the next one, or (at the end) with a last ``None`` text."""
    begin, end = source.byte_range or (0, None)
    skip_partial = False
    if begin > 0:  # a line belongs to the shard where it starts: skip one begun earlier
        reader.raw.seek(begin - 1)
        skip_partial = reader.raw.read(1) != b"\n"
    loads = _json_loads()
    blank = 0  # bytes of blank lines not yet counted
    lines = _lines(reader, begin, end, skip_partial, block_bytes, source.first_line)
    for lineno, offset, line, nbytes in lines:
        try:
            record = loads(line)
        except ValueError:  # blank, not JSON, or a case only the standard parser takes
            if not line.strip():
                blank += nbytes  # counted with the next document's bytes
                continue
            record = _strict_loads(line, doc_name(source, lineno, offset))
        value = record.get(text_key) if type(record) is dict else None
        if type(value) is not str:  # the standard parser says precisely what is wrong
            _refuse_record(json.loads(line), text_key, doc_name(source, lineno, offset))
        yield value, lineno, offset, nbytes + blank
        blank = 0
    if blank:  # blank lines at the end: their bytes, and no document
        yield None, None, 0, blank


def doc_name(source: Source, lineno: int | None, offset: int) -> str:
    """A jsonl document's name in messages and for ``--val-fraction``: ``file:12``, or
    ``file@4096`` for a line read from the middle of a file without its number."""
    return f"{source.name}:{lineno}" if lineno else f"{source.name}@{offset}"


def _json_loads() -> Callable[[bytes], object]:
    """orjson's parser where installed (``embedcli[fast]``: 3x the standard one on jsonl
    corpora), else the standard library's.

    Wherever orjson accepts a line it gives the standard parser's value; what it refuses (lone
    surrogates such as ``"\\ud83d"``, NaN, a byte-order mark) goes to the standard parser,
    which either takes it or raises the error the user sees. The one value orjson reads
    differently, an integer beyond 64 bits (a float to orjson), is never a text.
    """
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


def _strict_loads(line: bytes, where: str) -> object:
    try:
        return json.loads(line)
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: invalid UTF-8 at column {exc.start + 1}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _refuse_record(record: object, text_key: str, where: str) -> None:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object with a {text_key!r} key")
    if text_key not in record:
        keys = ", ".join(map(repr, list(record)[:5])) or "none"
        raise InputError(f"{where}: no {text_key!r} key (keys: {keys}); choose one with --text-key")
    value = record[text_key]
    raise InputError(f"{where}: {text_key!r} is {type(value).__name__}, not a string")


def _lines(
    reader: _CountingReader,
    begin: int,
    end: int | None,
    skip_partial: bool,
    block_bytes: int,
    first_line: int | None = None,
) -> Iterator[tuple[int | None, int, bytes, int]]:
    """(line number or None when reading from mid-file, byte offset, line, progress bytes).

    Lines whose first byte is at or past ``end`` are not read; a line longer than a block is
    collected in parts (no quadratic re-joining). ``first_line`` numbers the line at ``begin``.
    Progress is the bytes read, except in a range (``end``): there it is each line's own bytes,
    so the ranges of a file add up to its size (the reads overshoot a range's end).
    """
    lineno = first_line - 1 if first_line else (0 if begin == 0 else None)
    offset = begin  # of the line being collected
    pending: list[bytes] = []
    owed = 0  # progress bytes not yet attributed to a line
    while True:
        if end is not None and offset >= end and not pending and not skip_partial:
            return
        data, advanced = reader.read(block_bytes)
        owed += advanced
        if not data:
            break
        pieces = data.split(b"\n")
        for piece in pieces[:-1]:
            if pending:  # the line began in an earlier block
                pending.append(piece)
                line = b"".join(pending)
                pending.clear()
            else:
                line = piece
            start, offset = offset, offset + len(line) + 1
            if skip_partial:
                skip_partial = False
                continue
            if end is not None and start >= end:
                return
            if lineno is not None:
                lineno += 1
            yield lineno, start, line, owed if end is None else offset - start
            owed = 0
        pending.append(pieces[-1])
    line = b"".join(pending)
    if line and not skip_partial and (end is None or offset < end):
        progress = owed if end is None else len(line)
        yield (lineno + 1 if lineno is not None else None), offset, line, progress


def _jsonl_shard(source: Source, begin: int, end: int, last: bool) -> Source | None:
    """An uncompressed jsonl file splits between lines: a line belongs where it starts."""
    local = (begin, source.size if last else end)
    return replace(source, byte_range=local) if local[0] < local[1] else None


register_format(DocumentFormat("text", (".txt", ".text", ".md", ".rst"), _streamed(_text_blocks)))
# A jsonl file's documents without a Block each (the tokenizer's fast path for many small ones).
jsonl_records = _streamed(_jsonl_records)
register_format(
    DocumentFormat("jsonl", (".jsonl", ".ndjson"), _streamed(_jsonl_blocks), _jsonl_shard)
)
from . import columnar  # noqa: E402, F401 (registers parquet and arrow)

FORMATS = ("auto", *DOCUMENT_FORMATS)
