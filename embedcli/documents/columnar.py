"""Parquet and Arrow documents: one document per row, its text in the ``--text-key`` column.

Parquet (FineWeb, Hugging Face exports) is read one record batch at a time, only the text column,
so memory is bounded by a row group whatever the file size, with any codec pyarrow reads.
``--shard I/N`` splits a Parquet file by row group: a row group belongs to the shard holding its
first byte (placed by the compressed bytes before it), so one large file still splits N ways. Arrow IPC files are what
``datasets.save_to_disk`` writes (``data-0000i-of-0000N.arrow``, the IPC stream format); the IPC
file format works too. pyarrow is the optional extra ``embedcli[parquet]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from embedcli.documents.base import Block, DocumentFormat, Rows, Source
from embedcli.errors import InputError
from embedcli.storage.remote import is_url, open_object

BATCH_ROWS = 1024  # rows per record batch read


def _pyarrow(source: Source) -> Any:  # the pyarrow module (untyped)
    try:
        import pyarrow
    except ImportError:
        raise InputError(
            f"{source.name}: reading .{source.format} needs pyarrow "
            "(pip install 'embedcli[parquet]')"
        ) from None
    return pyarrow


def _check_file(source: Source) -> None:
    if source.path == "-" or source.compression is not None:
        raise InputError(
            f"{source.name}: {source.format} is read from a file, not stdin or {source.compression}"
        )


def _column(source: Source, schema: Any, text_key: str) -> int:
    """The text column's position, checked to hold strings."""
    names = list(schema.names)
    if text_key not in names:
        shown = ", ".join(map(repr, names[:8])) + (", ..." if len(names) > 8 else "")
        raise InputError(
            f"{source.name}: no {text_key!r} column (columns: {shown}); choose one with --text-key"
        )
    kind = schema.field(text_key).type
    if str(kind) not in ("string", "large_string", "string_view"):
        raise InputError(f"{source.name}: column {text_key!r} is {kind}, not a string")
    return names.index(text_key)


def _row_batches(
    source: Source, batches: Iterable[Any], first_row: int, text_key: str, nbytes: int
) -> Iterator[Rows]:
    """The text column's record batches as :class:`Rows`; ``nbytes`` (progress) counted by
    the first of them. A null row is refused, naming its row."""
    row = first_row
    for batch in batches:
        column = batch.column(0)
        texts = column.to_pylist()  # a string column: each value a str or None
        if column.null_count:
            at = row + texts.index(None)
            raise InputError(f"{source.name}:row {at}: {text_key!r} is null, not a string")
        if texts:
            yield Rows(texts, row, nbytes, _utf8_size(column, texts))
            nbytes = 0
        row += len(texts)


def _utf8_size(column: Any, texts: list[str]) -> int:
    """The UTF-8 bytes of a string column's values: its offsets' span, read from the buffer
    (Arrow's strings are UTF-8 already); a ``string_view`` column's, counted."""
    kind = str(column.type)
    if kind not in ("string", "large_string"):
        return sum(len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts)
    import numpy as np

    width = np.dtype(np.int32 if kind == "string" else np.int64)
    buffer = column.buffers()[1]
    offsets = np.frombuffer(buffer, width, len(column) + 1, column.offset * width.itemsize)
    return int(offsets[-1] - offsets[0])


def _blocks(source: Source, rows: Iterator[Rows]) -> Iterator[Block]:
    """Rows as blocks, one a document, named by row (``b.parquet:row 3``)."""
    for batch in rows:
        for k, text in enumerate(batch.texts):
            share = batch.nbytes if k == 0 else 0  # progress: the rows' share, once
            row = batch.first_row + k
            yield Block(text, f"{source.name}:row {row}", 0, share, last=True, at=row)


# --------------------------------------------------------------------------- parquet


def _parquet_file(source: Source) -> Any:  # pyarrow.parquet.ParquetFile
    pa = _pyarrow(source)
    import pyarrow.parquet as pq

    _check_file(source)
    try:
        if is_url(source.path):  # ranged reads: the footer, then only the text column's chunks
            return pq.ParquetFile(open_object(source.path))
        return pq.ParquetFile(source.path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.name}: not a readable Parquet file ({exc})") from None


def _parquet_blocks(source: Source, text_key: str, block_bytes: int) -> Iterator[Block]:
    return _blocks(source, _parquet_rows(source, text_key))


def _parquet_rows(source: Source, text_key: str) -> Iterator[Rows]:
    pa = _pyarrow(source)
    pf = _parquet_file(source)
    _column(source, pf.schema_arrow, text_key)
    meta = pf.metadata
    groups = list(
        source.row_groups if source.row_groups is not None else range(meta.num_row_groups)
    )
    if not groups:
        return
    starts = [0]
    for g in range(meta.num_row_groups):
        starts.append(starts[-1] + meta.row_group(g).num_rows)
    try:
        # Consecutive row groups read as one run, so row numbers stay exact.
        for run in _runs(groups):
            batches = pf.iter_batches(BATCH_ROWS, row_groups=run, columns=[text_key])
            share = source.size * len(run) // max(meta.num_row_groups, 1)
            yield from _row_batches(source, batches, starts[run[0]], text_key, share)
    except pa.ArrowException as exc:
        raise InputError(f"{source.name}: not a readable Parquet file ({exc})") from None


def _runs(groups: list[int]) -> list[list[int]]:
    runs: list[list[int]] = [[groups[0]]]
    for g in groups[1:]:
        if g == runs[-1][-1] + 1:
            runs[-1].append(g)
        else:
            runs.append([g])
    return runs


def _parquet_shard(source: Source, begin: int, end: int, last: bool) -> Source | None:
    """The row groups that start in ``[begin, end)`` of the file, each placed in proportion to
    the compressed bytes before it (so the footer's bytes do not bunch them into one shard)."""
    meta = _parquet_file(source).metadata
    sizes = [
        sum(meta.row_group(g).column(j).total_compressed_size for j in range(meta.num_columns))
        for g in range(meta.num_row_groups)
    ]
    total, before, mine = max(sum(sizes), 1), 0, []
    for g, size in enumerate(sizes):
        start = source.size * before // total
        if begin <= start < end or (last and start >= end):
            mine.append(g)
        before += size
    return replace(source, row_groups=tuple(mine)) if mine else None


# --------------------------------------------------------------------------- arrow


def _arrow_blocks(source: Source, text_key: str, block_bytes: int) -> Iterator[Block]:
    return _blocks(source, _arrow_rows(source, text_key))


def _arrow_rows(source: Source, text_key: str) -> Iterator[Rows]:
    pa = _pyarrow(source)
    _check_file(source)
    try:
        with _arrow_stream(pa, source.path) as stream:
            magic = stream.read(6)
            stream.seek(0)
            if magic == b"ARROW1":  # the IPC file format; datasets writes the stream format
                reader = pa.ipc.open_file(stream)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                reader = pa.ipc.open_stream(stream)
                batches = iter(reader)
            index = _column(source, reader.schema, text_key)
            selected = (b.select([index]) for b in batches)
            yield from _row_batches(source, selected, 0, text_key, source.size)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.name}: not a readable Arrow IPC file ({exc})") from None


def _arrow_stream(pa: Any, path: str) -> Any:
    """A local file memory-mapped; an object streamed (the IPC stream is read front to back)."""
    return pa.PythonFile(open_object(path), mode="r") if is_url(path) else pa.memory_map(path)


def column_values(source: Source, key: str) -> list[Any]:
    """Every row's value in column ``key`` of a Parquet or Arrow file (``tokenize --id-key``:
    ids are small beside the text); a missing column or a null is refused in one line."""
    pa = _pyarrow(source)
    try:
        if source.format == "parquet":
            pf = _parquet_file(source)
            _id_column(source, pf.schema_arrow, key)
            values = pf.read(columns=[key]).column(0).to_pylist()
        else:
            with _arrow_stream(pa, source.path) as stream:
                magic = stream.read(6)
                stream.seek(0)
                ipc = pa.ipc.open_file if magic == b"ARROW1" else pa.ipc.open_stream
                table = ipc(stream).read_all()
            _id_column(source, table.schema, key)
            values = table.column(key).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.name}: not a readable {source.format} file ({exc})") from None
    if None in values:
        raise InputError(f"{source.name}:row {values.index(None)}: {key!r} is null (--id-key)")
    return values


def _id_column(source: Source, schema: Any, key: str) -> None:
    if key not in schema.names:
        shown = ", ".join(map(repr, list(schema.names)[:8]))
        raise InputError(f"{source.name}: no {key!r} column for --id-key (columns: {shown})")


PARQUET = DocumentFormat("parquet", (".parquet",), _parquet_blocks, _parquet_shard, _parquet_rows)
ARROW = DocumentFormat("arrow", (".arrow",), _arrow_blocks, rows=_arrow_rows)
