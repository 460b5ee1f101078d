"""What every document format shares: a source, the blocks of text it yields, the format
object that reads it, and the byte streams (files, stdin, gzip, zstd) text formats read from.

A document format is one :class:`DocumentFormat` object (``text.TEXT``, ``jsonl.JSONL``,
``columnar.PARQUET``...); ``sources.DOCUMENT_FORMATS`` lists them, so a new format is one
module plus one entry there. Nothing here knows any particular format.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar, cast

from embedcli.errors import InputError
from embedcli.storage.remote import is_url, open_object

COMPRESSED_SUFFIXES = (".gz", ".zst")
BLOCK_BYTES = 1 << 20
T = TypeVar("T")


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
    # The file's identity for --val-fraction's choice: its path inside the directory it was
    # found in, or its file name when named itself (data/x.jsonl, ./data/x.jsonl and
    # /abs/data/x.jsonl are one file). None: the name.
    key: str | None = None

    @property
    def name(self) -> str:
        return self.label or ("<stdin>" if self.path == "-" else self.path)

    def split_key(self, doc: str) -> str:
        """A document's name (``a.jsonl:12``, as messages show it) with the file's
        :attr:`key` in place of its path: what the validation split hashes."""
        name = self.name
        if self.key is None or not doc.startswith(name):
            return doc
        return self.key + doc[len(name) :]


@dataclass
class Block:
    """A piece of one document's text. ``last`` marks the end of the document."""

    text: str
    doc: str  # where the document comes from, for messages ("a.txt", "b.jsonl:12")
    line: int  # 1-based line number of the block's first character in its file
    nbytes: int  # input bytes this block accounts for (for progress)
    last: bool
    at: int | None = None  # the document's place when not its line: a row, a byte offset
    # The text's UTF-8 size where the reader knows it from its bytes (a text file: the bytes
    # decoded, less one for each \r\n made \n); a block's may include bytes the decoder held
    # back for the next, so only a document's sum is exact. None: count the text itself.
    utf8: int | None = None


def place_kind(source: Source) -> str:
    """What a document's place in ``source`` counts (``--provenance``): ``row`` of a columnar
    file (from 0), else ``line`` (from 1), or ``byte`` (the offset of its line) for a jsonl
    range read from mid-file, whose line numbers are not known (``--shard``)."""
    if source.format in ("parquet", "arrow"):
        return "row"
    begin = source.byte_range[0] if source.byte_range else 0
    if source.format == "jsonl" and begin > 0 and source.first_line is None:
        return "byte"
    return "line"


BlockReader = Callable[[Source, str, int], Iterator[Block]]  # (source, text_key, block_bytes)


@dataclass(frozen=True)
class Rows:
    """A batch of whole documents of a columnar file, one a row, in order: what its blocks
    hold, without a :class:`Block` and a name made for every row (issue 47: 126,574 rows of
    Parquet spent 1 s on those alone)."""

    texts: list[str]
    first_row: int  # the row number of texts[0] in its file
    nbytes: int  # input bytes these rows account for (for progress)
    text_bytes: int  # the texts' UTF-8 size


RowReader = Callable[[Source, str], Iterator[Rows]]  # (source, text_key)


@dataclass(frozen=True)
class DocumentFormat:
    """A kind of document file: the suffixes that select it (``--format auto``, directories),
    how its documents are read, and how ``--shard`` may split one file (``None``: it is one
    unit, owned by the shard holding its first byte)."""

    name: str
    suffixes: tuple[str, ...]
    blocks: BlockReader
    # (source, first byte, end byte of this shard inside the file, last shard?) -> its part
    shard: Callable[[Source, int, int, bool], Source | None] | None = None
    # A format of whole documents by rows can give them in batches as well as blocks.
    rows: RowReader | None = None


def split_suffix(path: str) -> tuple[str, str | None]:
    for suffix in COMPRESSED_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)], suffix[1:]
    return path, None


# stdin's first bytes when they were read ahead (:func:`stdin_size`), and the stream they
# came from: its reader gets them first. One process reads one stdin.
_READ_AHEAD: list[tuple[BinaryIO, bytes]] = []


def stdin_size(limit: int) -> int | None:
    """The size of stdin when it ends within ``limit`` bytes, else None (a terminal, or more).

    A file's size is known before it is read; a pipe's is not. To treat both alike (the
    tokenizer engine chosen for a small input, issue 36), up to ``limit + 1`` bytes of a pipe
    are read ahead here and kept: :func:`open_binary` hands them out before the rest."""
    stream = sys.stdin.buffer
    if stream.isatty():
        return None
    if not _READ_AHEAD or _READ_AHEAD[0][0] is not stream:
        try:
            data = stream.read(limit + 1)
        except OSError:
            return None  # the reader reports it
        _READ_AHEAD[:] = [(stream, data)]
    held = _READ_AHEAD[0][1]
    return len(held) if len(held) <= limit else None


class _ReadAhead:
    """stdin with the bytes :func:`stdin_size` read ahead put back in front."""

    def __init__(self, held: bytes, stream: BinaryIO) -> None:
        self.held, self.stream = held, stream

    def read(self, n: int) -> bytes:
        if self.held:
            data, self.held = self.held[:n], self.held[n:]
            return data
        return self.stream.read(n)

    def close(self) -> None:
        pass  # stdin stays open


def open_binary(source: Source) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, underlying file): the file's position measures progress."""
    if source.path == "-":
        if sys.stdin.isatty():  # one Ctrl-D ends the text, as for cat
            terminal = cast(BinaryIO, _TerminalReader(sys.stdin.buffer))
            return terminal, terminal
        if _READ_AHEAD and _READ_AHEAD[0][0] is sys.stdin.buffer:
            stream, held = _READ_AHEAD.pop()
            reader = cast(BinaryIO, _ReadAhead(held, stream))
            return reader, reader
        return sys.stdin.buffer, sys.stdin.buffer
    # An object is streamed (ranged reads as it is consumed); the caller closes either.
    opener = open_object if is_url(source.path) else lambda path: open(path, "rb")  # noqa: SIM115
    raw = cast(BinaryIO, opener(source.path))
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


class _TerminalReader:
    """Reads of a terminal, a line at a time: a buffered ``read(n)`` would swallow the first
    Ctrl-D while collecting ``n`` bytes and wait for a second one."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def read(self, n: int) -> bytes:
        return self.stream.read1(n)  # type: ignore[attr-defined]

    def close(self) -> None:
        pass


class CountingReader:
    """Reads blocks from a (possibly decompressing) stream; reports file bytes consumed."""

    def __init__(self, stream: BinaryIO, raw: BinaryIO, source: Source):
        self.stream, self.raw, self.source = stream, raw, source
        self._pos = 0

    def read(self, n: int) -> tuple[bytes, int]:
        try:
            data = self.stream.read(n)
        except (OSError, EOFError, ValueError) as exc:
            raise InputError(f"{self.source.name}: cannot read: {reason(exc)}") from None
        if self.stream is self.raw:
            return data, len(data)
        pos = self.raw.tell()
        advanced, self._pos = pos - self._pos, pos
        return data, advanced


def reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def streamed(
    read: Callable[[CountingReader, Source, str, int], Iterator[T]],
) -> Callable[[Source, str, int], Iterator[T]]:
    """What ``read`` yields (blocks, or a format's own records) from a source read as a byte
    stream: opened, decompressed on the fly (stdin included), closed at the end."""

    def blocks(source: Source, text_key: str, block_bytes: int) -> Iterator[T]:
        try:
            stream, raw = open_binary(source)
        except OSError as exc:
            raise InputError(f"{source.name}: cannot open: {reason(exc)}") from None
        try:
            yield from read(CountingReader(stream, raw, source), source, text_key, block_bytes)
        finally:
            if raw is not sys.stdin.buffer:
                stream.close()
                raw.close()

    return blocks


def without_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate as U+FFFD (tiktoken's own UTF-16 round trip)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
