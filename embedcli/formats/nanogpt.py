"""nanoGPT's token file: raw little-endian uint16 ids, nothing else.

Exactly what ``np.memmap(path, dtype=np.uint16, mode='r')`` in nanoGPT's ``train.py`` reads, and
what its ``prepare.py`` writes (``<|endoftext|>`` after every document: ``--eot after``). The
lineage goes to ``NAME.bin.json``; reading a ``.bin`` from elsewhere, ``--encoding`` says whose
ids they are.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .. import contract as c
from ..errors import FormatError
from ..inputs.base import Request, TokenSource
from ..outputs import check_output
from .common import (
    ResolvedFile,
    atomic_files,
    copy_ids,
    lineage,
    memmap,
    require_uint16,
    write_sidecar,
)

NAME = "nanogpt"


def write(output, ids_file, count, doc_offsets, metadata, *, inputs, no_clobber, **settings):
    require_uint16(NAME, metadata)
    if output == "-":  # a pipe: the raw ids, no sidecar
        check_output(output)
        copy_ids(ids_file, 0, count, np.dtype(np.uint16), sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return [output]
    with atomic_files([output], inputs=inputs, no_clobber=no_clobber) as (f,):
        copy_ids(ids_file, 0, count, np.dtype(np.uint16), f)
    return [output, write_sidecar(output, NAME, [output], metadata)]


class Reader:
    name = NAME

    def claims(self, inputs: list[str]) -> bool:
        from .llmc import has_magic
        from .megatron import prefix_of

        path = inputs[0] if len(inputs) == 1 else ""
        return (
            path.endswith(".bin")
            and os.path.isfile(path)
            and not has_magic(path)
            and (prefix_of(path) is None)
        )

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedFile:
        encoding = request.tokenize.encoding
        return ResolvedFile(self.name, list(inputs), 0, lambda: load(inputs[0], encoding))


def load(path: str, encoding: str) -> TokenSource:
    size = os.path.getsize(path)
    if size % 2:
        raise FormatError(f"{path}: {size:,} bytes is not a whole number of uint16 ids")
    meta = lineage(path, NAME, encoding, {c.IDS_DTYPE: "uint16"})
    return TokenSource(memmap(path, np.uint16, 0, size // 2), None, meta)
