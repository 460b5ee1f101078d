"""Reading documents: text, jsonl, Parquet and Arrow files, directories and stdin, as blocks
of text in order. The layer below tokenization; it knows nothing of ids."""

from embedcli.documents.base import BLOCK_BYTES, Block, DocumentFormat, Rows, Source, place_kind
from embedcli.documents.sources import (
    DOCUMENT_FORMATS,
    FORMATS,
    check_flag_words,
    iter_blocks,
    parse_shard,
    resolve_sources,
    row_batches,
    shard_sources,
)

__all__ = [
    "BLOCK_BYTES",
    "DOCUMENT_FORMATS",
    "FORMATS",
    "Block",
    "DocumentFormat",
    "Rows",
    "Source",
    "check_flag_words",
    "iter_blocks",
    "parse_shard",
    "place_kind",
    "resolve_sources",
    "row_batches",
    "shard_sources",
]
