"""Each document's id field (``tokenize --id-key``), read again at the places that
``--provenance`` recorded: a jsonl line's value under the key, a Parquet or Arrow row's in
that column.

Read again after the text, rather than beside it in each of the tokenizer's readers (the block
reader, the row batches, the workers' jsonl ranges), so those stay as they are: it costs one
more parse of a jsonl file, or one column read of a Parquet file, and only when asked.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from embedcli.documents.base import BLOCK_BYTES, Source
from embedcli.errors import UsageError


def id_text(value: Any) -> str:
    """An id as stored: a string as it is, anything else (a number) as JSON writes it."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def check_id_source(source: Source, key: str) -> None:
    """Refuse, before any work, a source whose documents carry no id field to read again."""
    if source.path == "-":
        raise UsageError(f"--id-key {key} reads the input again: give files, not stdin")
    if source.format not in ("jsonl", "parquet", "arrow"):
        raise UsageError(
            f"--id-key {key}: {source.name} is {source.format}; ids are read from jsonl lines "
            "and Parquet or Arrow rows"
        )


def ids_at(source: Source, kind: str, places: np.ndarray, key: str) -> list[str]:
    """The ids of the documents at ``places`` of ``source`` (lines, rows or byte offsets, as
    ``kind`` says: :func:`embedcli.documents.place_kind`)."""
    from embedcli.documents.columnar import column_values
    from embedcli.documents.jsonl import jsonl_fields

    check_id_source(source, key)
    wanted = places.tolist()
    if source.format != "jsonl":
        values = column_values(source, key)
        return [id_text(values[row]) for row in wanted]
    want, found = set(wanted), {}
    for lineno, offset, value in jsonl_fields(source, key, BLOCK_BYTES):
        place = offset if kind == "byte" else lineno
        if place in want:
            found[place] = id_text(value)
    return [found[p] for p in wanted]
