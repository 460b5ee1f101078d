"""A NumPy ``.npy`` of the ids (uint16 when they fit, else int32): ``np.load(path, mmap_mode='r')``."""

from __future__ import annotations

import os

import numpy as np

from .. import contract as c
from ..errors import FormatError, UsageError
from ..inputs.base import Request, TokenSource
from .common import ResolvedFile, atomic_files, copy_ids, lineage, vocab_of, write_sidecar

NAME = "npy"


def write(output, ids_file, count, doc_offsets, metadata, *, inputs, no_clobber, **settings):
    from numpy.lib import format as npformat

    if output == "-":
        raise UsageError("--to npy writes a file: name it with -o NAME.npy")
    dtype = np.dtype("<u2" if vocab_of(metadata) <= 1 << 16 else "<i4")
    header = {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": (count,)}
    with atomic_files([output], inputs=inputs, no_clobber=no_clobber) as (f,):
        npformat.write_array_header_2_0(f, header)
        copy_ids(ids_file, 0, count, dtype, f)
    return [output, write_sidecar(output, NAME, [output], metadata)]


class Reader:
    name = NAME

    def claims(self, inputs: list[str]) -> bool:
        return len(inputs) == 1 and inputs[0].endswith(".npy") and os.path.isfile(inputs[0])

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedFile:
        encoding = request.tokenize.encoding
        return ResolvedFile(self.name, list(inputs), 0, lambda: load(inputs[0], encoding))


def load(path: str, encoding: str) -> TokenSource:
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable .npy file ({exc})") from None
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise FormatError(f"{path}: ids must be a 1-D integer array, got {ids.shape} {ids.dtype}")
    return TokenSource(ids, None, lineage(path, NAME, encoding, {c.IDS_DTYPE: str(ids.dtype)}))
