"""nanoGPT's token file: raw little-endian uint16 ids, nothing else.

Exactly what ``np.memmap(path, dtype=np.uint16, mode='r')`` in nanoGPT's ``train.py`` reads, and
what its ``prepare.py`` writes (``<|endoftext|>`` after every document: ``--eot after``). The
lineage goes to ``NAME.bin.json``; reading a ``.bin`` from elsewhere, ``--encoding`` says whose
ids they are.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

from embedcli import contract as c
from embedcli.errors import FormatError
from embedcli.formats.base import (
    TokenFormat,
    TokenSource,
    copy_ids,
    lineage,
    memmap,
    require_uint16,
    sidecar_path,
    written_set,
)
from embedcli.formats.llmc import has_magic
from embedcli.formats.megatron import prefix_of
from embedcli.storage.outputs import check_output

if TYPE_CHECKING:
    import numpy as np


NAME = "nanogpt"


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

    require_uint16(NAME, metadata)
    if output == "-":  # a pipe: the raw ids, no sidecar
        check_output(output)
        copy_ids(ids_file, 0, count, np.dtype("<u2"), sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return [output]
    with written_set(
        [output], output, NAME, metadata, inputs, no_clobber, settings.get("files")
    ) as (f,):
        copy_ids(ids_file, 0, count, np.dtype(np.uint16), f)
    return [output, sidecar_path(output)]


def load(path: str, encoding: str) -> TokenSource:
    meta = lineage(path, NAME, encoding, {c.IDS_DTYPE: "uint16"})  # first: refuses a killed set
    size = os.path.getsize(path)
    if size % 2:
        raise FormatError(f"{path}: {size:,} bytes is not a whole number of uint16 ids")
    return TokenSource(memmap(path, "<u2", 0, size // 2), None, meta)


def claims(inputs: list[str]) -> bool:
    """One ``.bin`` that is neither an llm.c file (magic) nor a Megatron dataset (``.idx``)."""
    path = inputs[0] if len(inputs) == 1 else ""
    return (
        path.endswith(".bin")
        and os.path.isfile(path)
        and not has_magic(path)
        and prefix_of(path) is None
    )


NANOGPT = TokenFormat(
    name=NAME,
    summary="raw uint16 ids, as nanoGPT's train.py memory-maps them",
    suffixes=(".bin",),
    default_eot="after",
    default_special="text",
    default_name=".bin",
    write=write,
    load=load,
    claims=claims,
    read=lambda paths, encoding: load(paths[0], encoding),
    id_bytes=lambda vocab: 2,
)
