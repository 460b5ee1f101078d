"""A NumPy ``.npy`` of the ids (uint16 when they fit, else int32): ``np.load(path, mmap_mode='r')``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.formats.base import (
    TokenFormat,
    TokenSource,
    copy_ids,
    lineage,
    read_sidecar,
    sidecar_path,
    vocab_of,
    written_set,
)

if TYPE_CHECKING:
    import numpy as np


NAME = "npy"


def ids_dtype(vocab: int) -> np.dtype:
    """uint16 when every id fits, else int32."""
    import numpy as np

    return np.dtype("<u2" if vocab <= 1 << 16 else "<i4")


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
    from numpy.lib import format as npformat

    if output == "-":
        raise UsageError("--to npy writes a file: name it with -o NAME.npy")
    dtype = ids_dtype(vocab_of(metadata))
    header = {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": (count,)}
    with written_set(
        [output], output, NAME, metadata, inputs, no_clobber, settings.get("files")
    ) as (f,):
        npformat.write_array_header_2_0(f, header)
        copy_ids(ids_file, 0, count, dtype, f)
    return [output, sidecar_path(output)]


def load(path: str, encoding: str) -> TokenSource:
    import numpy as np

    read_sidecar(path)  # first: a set whose commit was killed is refused as such
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise FormatError(f"{path}: not a .npy file (it does not start with NumPy's magic)")
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable .npy file ({exc})") from None
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise FormatError(f"{path}: ids must be a 1-D integer array, got {ids.shape} {ids.dtype}")
    return TokenSource(ids, None, lineage(path, NAME, encoding, {c.IDS_DTYPE: str(ids.dtype)}))


NPY = TokenFormat(
    name=NAME,
    summary="a NumPy .npy of the ids (uint16, or int32 for large vocabularies)",
    suffixes=(".npy",),
    default_eot="between",
    default_special="special",
    default_name=".tokens.npy",
    write=write,
    load=load,
    claims=lambda inputs: (
        len(inputs) == 1 and inputs[0].endswith(".npy") and os.path.isfile(inputs[0])
    ),
    read=lambda paths, encoding: load(paths[0], encoding),
    id_bytes=lambda vocab: ids_dtype(vocab).itemsize,
)
