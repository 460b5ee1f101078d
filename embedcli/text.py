"""Reading documents: files, directories, stdin; plain text and jsonl; gzip and zstd.

A ``.txt`` (or any non-jsonl) file is one document; a ``.jsonl`` file is one document per
non-blank line, its text under ``text_key``. Plain text is decoded as strict UTF-8 with universal
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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .errors import InputError, UsageError

TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".jsonl")
COMPRESSED_SUFFIXES = (".gz", ".zst")
FORMATS = ("auto", "text", "jsonl")
BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input: a file path, or ``-`` for standard input."""

    path: str
    format: str  # "text" or "jsonl"
    compression: str | None = None  # "gz", "zst" or None
    size: int = 0  # bytes on disk (compressed size for compressed files), 0 if unknown

    @property
    def name(self) -> str:
        return "<stdin>" if self.path == "-" else self.path


@dataclass
class Block:
    """A piece of one document's text. ``last`` marks the end of the document."""

    text: str
    doc: str  # where the document comes from, for messages ("a.txt", "b.jsonl:12")
    line: int  # 1-based line number of the block's first character in its file
    nbytes: int  # input bytes this block accounts for (for progress)
    last: bool


def _split_suffix(path: str) -> tuple[str, str | None]:
    for suffix in COMPRESSED_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)], suffix[1:]
    return path, None


def _make_source(path: str, fmt: str) -> Source:
    base, compression = _split_suffix(path)
    if fmt == "auto":
        fmt = "jsonl" if base.endswith((".jsonl", ".ndjson")) else "text"
    return Source(path, fmt, compression, os.path.getsize(path))


def resolve_sources(paths: list[str], fmt: str = "auto") -> list[Source]:
    """Expand paths into sources: ``-`` is stdin, directories give their text files, sorted.

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
            found = sorted(_walk_text_files(path))
            if not found:
                raise InputError(
                    f"{path}: no text files in this directory "
                    f"(looked for {', '.join('*' + s for s in TEXT_SUFFIXES)}, optionally .gz/.zst)"
                )
            sources.extend(_make_source(p, fmt) for p in found)
        elif os.path.exists(path):
            if not os.path.isfile(path) and not _is_stream(path):
                raise InputError(f"{path}: not a regular file")
            sources.append(_make_source(path, fmt))
        else:
            raise InputError(f"{path}: no such file or directory")
    return sources


def _is_stream(path: str) -> bool:
    import stat

    mode = os.stat(path).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _walk_text_files(root: str) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            base, _ = _split_suffix(name)
            if base.endswith(TEXT_SUFFIXES):
                yield os.path.join(dirpath, name)


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


def iter_blocks(source: Source, *, text_key: str = "text") -> Iterator[Block]:
    """The documents of one source as blocks of text, in order."""
    try:
        stream, raw = _open_binary(source)
    except OSError as exc:
        raise InputError(f"{source.name}: cannot open: {_reason(exc)}") from None
    reader = _CountingReader(stream, raw, source)
    try:
        if source.format == "jsonl":
            yield from _jsonl_blocks(reader, source, text_key)
        else:
            yield from _text_blocks(reader, source)
    finally:
        if raw is not sys.stdin.buffer:
            stream.close()
            raw.close()


def _text_blocks(reader: _CountingReader, source: Source) -> Iterator[Block]:
    """One document, decoded incrementally: strict UTF-8, universal newlines."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("strict"), True)
    consumed = 0  # input bytes handed to the decoder so far
    line = 1
    pending: Block | None = None
    while True:
        data, advanced = reader.read(BLOCK_BYTES)
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


def _jsonl_blocks(reader: _CountingReader, source: Source, text_key: str) -> Iterator[Block]:
    stream = _LineReader(reader)
    for lineno, line, nbytes in stream:
        if not line.strip():
            continue
        where = f"{source.name}:{lineno}"
        try:
            record = json.loads(line)
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: invalid UTF-8 at column {exc.start + 1}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object with a {text_key!r} key")
        if text_key not in record:
            keys = ", ".join(map(repr, list(record)[:5])) or "none"
            raise InputError(
                f"{where}: no {text_key!r} key (keys: {keys}); choose one with --text-key"
            )
        value = record[text_key]
        if not isinstance(value, str):
            raise InputError(f"{where}: {text_key!r} is {type(value).__name__}, not a string")
        yield Block(value, where, lineno, nbytes, last=True)


class _LineReader:
    """Lines of a binary stream with their numbers and the input bytes they account for."""

    def __init__(self, reader: _CountingReader):
        self.reader = reader

    def __iter__(self) -> Iterator[tuple[int, bytes, int]]:
        buf = b""
        lineno = 0
        owed = 0  # progress bytes not yet attributed to a line
        while True:
            data, advanced = self.reader.read(BLOCK_BYTES)
            owed += advanced
            if not data:
                break
            buf += data
            lines = buf.split(b"\n")
            buf = lines.pop()
            for line in lines:
                lineno += 1
                yield lineno, line, owed
                owed = 0
        if buf:
            yield lineno + 1, buf, owed
