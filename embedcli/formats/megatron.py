"""Megatron-LM's indexed dataset: ``PREFIX.bin`` (the ids) and ``PREFIX.idx`` (the index).

The index, as megatron-core's ``IndexedDataset`` reads it: ``MMIDIDX\\x00\\x00``, version 1 (u64),
a dtype code (u8), the sequence count and the document count (u64 each), then every sequence's
length (int32), every sequence's byte offset in ``.bin`` (int64), and the sequence index where
each document starts, plus the end (int64). One sequence per document, ``<|endoftext|>`` after
each (``--append-eod``: ``--eot after``); uint16 ids when the vocabulary is under 65,500, else
int32 (Megatron's own rule).
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any, BinaryIO

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.formats.base import (
    TokenFormat,
    TokenSource,
    copy_ids,
    lineage,
    memmap,
    read_sidecar,
    sidecar_path,
    vocab_of,
    written_set,
)

if TYPE_CHECKING:
    import numpy as np


NAME = "megatron"
MAGIC = b"MMIDIDX\x00\x00"
DTYPES = {1: "u1", 2: "i1", 3: "<i2", 4: "<i4", 5: "<i8", 6: "<f8", 7: "<f4", 8: "<u2"}
CODES = {"<u2": 8, "<i4": 4}  # the dtypes written, by numpy dtype string


def prefix_of(path: str) -> str | None:
    """The dataset prefix a path names (``P``, ``P.bin`` or ``P.idx``), if ``P.idx`` exists."""
    for suffix in (".idx", ".bin", ""):
        if path.endswith(suffix):
            prefix = path[: len(path) - len(suffix)] if suffix else path
            if os.path.isfile(prefix + ".idx"):
                return prefix
    return None


def ids_dtype(vocab: int) -> np.dtype:
    """Megatron's own rule: uint16 for vocabularies under 65,500, else int32."""
    import numpy as np

    return np.dtype("<u2" if vocab < 65500 else "<i4")


def write(
    output: str,
    ids_file: BinaryIO,
    count: int,
    doc_offsets: np.ndarray,
    metadata: dict[str, str],
    *,
    inputs: list[str],
    no_clobber: bool,
    **settings: Any,
) -> list[str]:
    import numpy as np

    if output == "-":
        raise UsageError("--to megatron writes PREFIX.bin and PREFIX.idx: name them with -o PREFIX")
    prefix = output[: -len(".bin")] if output.endswith((".bin", ".idx")) else output
    dtype = ids_dtype(vocab_of(metadata))
    lengths = np.diff(np.asarray(doc_offsets, dtype=np.int64))
    if lengths.size and lengths.max() > np.iinfo(np.int32).max:
        raise UsageError("a document longer than 2^31 - 1 tokens cannot be a Megatron sequence")
    pointers = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype("<i8") * dtype.itemsize
    index = b"".join(
        [
            MAGIC,
            struct.pack("<Q", 1),
            struct.pack("<B", CODES[dtype.str]),
            struct.pack("<Q", lengths.size),
            struct.pack("<Q", lengths.size + 1),
            lengths.astype("<i4").tobytes(),
            pointers.tobytes(),
            np.arange(lengths.size + 1, dtype="<i8").tobytes(),
        ]
    )
    paths = [prefix + ".bin", prefix + ".idx"]
    # .bin renamed before .idx (Megatron opens the index first), the sidecar last
    with written_set(paths, prefix, NAME, metadata, inputs, no_clobber, settings.get("files")) as (
        data,
        idx,
    ):
        copy_ids(ids_file, 0, count, dtype, data)
        idx.write(index)
    return [*paths, sidecar_path(prefix)]


def read_index(prefix: str) -> tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray]:
    """(dtype, sequence lengths, sequence pointers, document indices), checked."""
    path = prefix + ".idx"
    with open(path, "rb") as f:
        return parse_index(f.read(), path)


def parse_index(raw: bytes, path: str) -> tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`read_index` of the index's bytes ``raw`` (read from ``path``)."""
    import numpy as np

    head = 9 + 8 + 1 + 8 + 8
    if len(raw) < head or raw[:9] != MAGIC:
        raise FormatError(f"{path}: not a Megatron index (bad magic)")
    version, code, sequences, documents = struct.unpack("<QBQQ", raw[9:head])
    if version != 1 or code not in DTYPES:
        raise FormatError(f"{path}: unsupported Megatron index (version {version}, dtype {code})")
    need = head + sequences * 12 + documents * 8
    if len(raw) < need:
        raise FormatError(f"{path}: truncated: {len(raw):,} bytes, the header needs {need:,}")
    lengths = np.frombuffer(raw, "<i4", sequences, head)
    pointers = np.frombuffer(raw, "<i8", sequences, head + sequences * 4)
    docs = np.frombuffer(raw, "<i8", documents, head + sequences * 12)
    return np.dtype(DTYPES[code]), lengths, pointers, docs


def load(prefix: str, encoding: str) -> TokenSource:
    read_sidecar(prefix)  # first: a set whose commit was killed is refused as such
    index = read_index(prefix)
    path = prefix + ".bin"
    if not os.path.isfile(path):
        raise FormatError(f"{path}: no such file (the data of {prefix}.idx)")
    dtype, total, offsets, fields = layout(prefix, index, os.path.getsize(path))
    return TokenSource(
        memmap(path, dtype, 0, total), offsets, lineage(prefix, NAME, encoding, fields)
    )


def layout(
    prefix: str, index: tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray], size: int
) -> tuple[np.dtype, int, np.ndarray, dict[str, Any]]:
    """What an index says of ``PREFIX.bin`` of ``size`` bytes, checked against it: the ids'
    dtype and count, the document offsets, and the metadata fields the format records."""
    import numpy as np

    dtype, lengths, pointers, docs = index
    total = int(lengths.sum(dtype=np.int64))
    if size != total * dtype.itemsize:
        raise FormatError(f"{prefix}.bin: {size:,} bytes but {prefix}.idx says {total:,} ids")
    starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    if lengths.size and not np.array_equal(pointers, starts[:-1] * dtype.itemsize):
        raise FormatError(f"{prefix}.idx: sequences are not stored back to back")
    offsets = starts[docs] if docs.size else np.array([0, total], dtype=np.int64)
    fields = {
        c.IDS_DTYPE: str(dtype),
        c.DOCUMENTS: max(offsets.size - 1, 0),
        c.TOKENS: total,
        "megatron_sequences": lengths.size,
        "megatron_dtype_code": next(k for k, v in DTYPES.items() if np.dtype(v) == dtype),
    }
    return dtype, total, offsets, fields


def _files(inputs: list[str]) -> list[str]:
    prefix = prefix_of(inputs[0]) or inputs[0]
    return [prefix + ".bin", prefix + ".idx"]


MEGATRON = TokenFormat(
    name=NAME,
    summary="Megatron-LM's PREFIX.bin and PREFIX.idx, one sequence per document",
    suffixes=(),
    default_eot="after",
    default_special="text",
    default_name="_text_document",
    write=write,
    load=load,
    exists=lambda path: prefix_of(path) is not None,
    claims=lambda inputs: len(inputs) == 1 and prefix_of(inputs[0]) is not None,
    read=lambda paths, encoding: load(prefix_of(paths[0]) or paths[0], encoding),
    files=_files,
    id_bytes=lambda vocab: ids_dtype(vocab).itemsize,
)
