"""Plain text: a file (or stdin) is one document, decoded as strict UTF-8 with universal
newlines (``\\r\\n`` and ``\\r`` become ``\\n``), exactly as ``open(path, encoding="utf-8").read()``
in the reference pipeline does, but in blocks, never read whole."""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator

from embedcli.documents.base import (
    BLOCK_BYTES,
    Block,
    CountingReader,
    DocumentFormat,
    Source,
    streamed,
)
from embedcli.errors import NotTextError
from embedcli.storage.remote import is_url


def _text_blocks(
    reader: CountingReader, source: Source, text_key: str, block_bytes: int
) -> Iterator[Block]:
    """One document, decoded incrementally: strict UTF-8, universal newlines."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("strict"), True)
    consumed = 0  # input bytes handed to the decoder so far
    line = 1
    pending: Block | None = None
    after_cr = False  # the bytes so far end with \r: a \n first in the next is one newline
    while True:
        data, advanced = reader.read(block_bytes)
        final = not data
        try:
            text = decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            raise NotTextError(_utf8_message(source, exc, consumed, data)) from None
        consumed += len(data)
        # Strict UTF-8 text is its bytes: its size needs no encoding back (0.2 s for 70 MB of
        # wide text), only the bytes each \r\n lost becoming \n (a lone \r stays one byte).
        joined = data.count(b"\r\n") if b"\r" in data else 0  # most text has no \r: memchr
        joined += after_cr and data[:1] == b"\n"
        after_cr = data[-1:] == b"\r" if data else after_cr
        block = Block(text, source.name, line, advanced, last=False, utf8=len(data) - joined)
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
    if source.path != "-" and source.compression is None and not is_url(source.path):
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


TEXT = DocumentFormat("text", (".txt", ".text", ".md", ".rst"), streamed(_text_blocks))
