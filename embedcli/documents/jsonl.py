"""jsonl: one document per non-blank line, its text under ``--text-key``.

Lines are parsed by orjson where installed and by the standard parser for whatever orjson
refuses, so messages and values are the standard parser's. An uncompressed file splits
between lines for ``--shard`` and for the workers' ranges (``bpe/ranges.py``): a line
belongs to the range where it starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from embedcli.documents.base import Block, CountingReader, DocumentFormat, Source, streamed
from embedcli.errors import InputError, NotTextError


def _jsonl_blocks(
    reader: CountingReader, source: Source, text_key: str, block_bytes: int
) -> Iterator[Block]:
    for value, lineno, offset, nbytes in _jsonl_records(reader, source, text_key, block_bytes):
        if value is None:  # trailing blank lines
            continue
        name, at = doc_name(source, lineno, offset), None if lineno else offset
        yield Block(value, name, lineno or 0, nbytes, last=True, at=at)


def _jsonl_records(
    reader: CountingReader, source: Source, text_key: str, block_bytes: int
) -> Iterator[tuple[str | None, int | None, int, int]]:
    """(text, line number or None mid-file, byte offset, bytes read) per non-blank line; the
    bytes of blank lines go with the next one, or (at the end) with a last ``None`` text."""
    loads = json_loads()
    blank = 0  # bytes of blank lines not yet counted
    for lineno, offset, line, nbytes in _source_lines(reader, source, block_bytes):
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


def json_loads() -> Callable[[bytes], Any]:
    """orjson's parser where installed (``embedcli[fast]``: several times the standard one on
    jsonl corpora, see the README's reading measurements), else the standard library's.

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
        raise NotTextError(f"{where}: invalid UTF-8 at column {exc.start + 1}") from None
    except json.JSONDecodeError as exc:
        # json's messages may end with "at" ("Unterminated string starting at"): one "at".
        what = exc.msg.removesuffix(" at")
        raise InputError(f"{where}: not valid JSON ({what} at column {exc.colno})") from None


def _refuse_record(record: object, text_key: str, where: str) -> None:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object with a {text_key!r} key")
    if text_key not in record:
        keys = ", ".join(map(repr, list(record)[:5])) or "none"
        raise InputError(f"{where}: no {text_key!r} key (keys: {keys}); choose one with --text-key")
    value = record[text_key]
    raise InputError(f"{where}: {text_key!r} is {type(value).__name__}, not a string")


def _source_lines(
    reader: CountingReader, source: Source, block_bytes: int
) -> Iterator[tuple[int | None, int, bytes, int]]:
    """:func:`_lines` of ``source``, its range's own lines only."""
    begin, end = source.byte_range or (0, None)
    skip_partial = False
    if begin > 0:  # a line belongs to the shard where it starts: skip one begun earlier
        reader.raw.seek(begin - 1)
        skip_partial = reader.raw.read(1) != b"\n"
    return _lines(reader, begin, end, skip_partial, block_bytes, source.first_line)


def _fields_at(
    reader: CountingReader, source: Source, key: str, block_bytes: int
) -> Iterator[tuple[int | None, int, Any]]:
    """(line number or None, byte offset, the value under ``key``) of each non-blank line,
    parsed again: the id of each document (``tokenize --id-key``). A line without the key
    is refused, naming it."""
    loads = json_loads()
    for lineno, offset, line, _ in _source_lines(reader, source, block_bytes):
        if not line.strip():
            continue
        record = loads(line)
        if type(record) is not dict or key not in record or record[key] is None:
            raise InputError(f"{doc_name(source, lineno, offset)}: no {key!r} key for --id-key")
        yield lineno, offset, record[key]


def _lines(
    reader: CountingReader,
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


JSONL = DocumentFormat("jsonl", (".jsonl", ".ndjson"), streamed(_jsonl_blocks), _jsonl_shard)
# A jsonl file's documents without a Block each (the tokenizer's fast path for many small ones).
jsonl_records = streamed(_jsonl_records)
jsonl_fields = streamed(_fields_at)  # (source, key, block_bytes): each line's value of key
