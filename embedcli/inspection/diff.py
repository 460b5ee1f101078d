"""What differs between two safetensors files (or split outputs, through their ``.index.json``):
tensors present on one side only, dtype or shape changes, the largest difference between values,
and metadata keys that differ.

Values are read in chunks with ``pread`` (see ``inspection.py``) and compared element-aligned, so
a split output compares equal to the single file it was written instead of.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from embedcli.errors import FormatError, UsageError
from embedcli.inspection.report import CHUNK_BYTES, can_read, iter_chunks
from embedcli.storage.split import is_index, read_index
from embedcli.storage.store import Header, TensorInfo, read_header

Pieces = list[tuple[Header, TensorInfo]]


@dataclass
class Layout:
    """A tensor's dtype and shape on one side of a diff."""

    dtype: str
    shape: list[int]


@dataclass
class TensorDiff:
    name: str
    a: Layout
    b: Layout
    max_abs_diff: float | None = None
    equal: bool | None = None
    note: str | None = None


@dataclass
class DiffReport:
    a: str
    b: str
    only_in_a: list[str]
    only_in_b: list[str]
    changed: list[TensorDiff]  # dtype or shape differs
    compared: list[TensorDiff]  # same dtype and shape: values compared
    metadata_changed: list[str]  # keys whose value differs or exists on one side only

    @property
    def tensors_identical(self) -> bool:
        return not (self.only_in_a or self.only_in_b or self.changed) and all(
            d.equal for d in self.compared
        )

    @property
    def identical(self) -> bool:
        return not (
            self.only_in_a or self.only_in_b or self.changed or self.metadata_changed
        ) and all(d.equal for d in self.compared)

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["identical"] = self.identical
        return out


@dataclass
class _Side:
    tensors: dict[str, tuple[str, tuple[int, ...], Pieces]]  # name -> dtype, shape, pieces
    metadata: dict[str, str]


def _open(path: str) -> _Side:
    if is_index(path):
        doc, tensors, _ = read_index(path)
        meta = {k: str(v) for k, v in (doc.get("metadata") or {}).items() if k != "total_size"}
        return _Side({t.name: (t.dtype, t.shape, t.pieces) for t in tensors}, meta)
    header = read_header(path)
    return _Side(
        {t.name: (t.dtype, t.shape, [(header, t)]) for t in header.tensors}, header.metadata or {}
    )


def diff_files(
    path_a: str,
    path_b: str,
    *,
    tensor: str | None = None,
    ignore_metadata: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> DiffReport:
    """Tensors only in one file, dtype/shape changes, max |a - b| for matching tensors (only
    ``tensor`` when given), and the metadata keys that differ (none with ``ignore_metadata``:
    the same data reached two ways, merged shards and one whole run, differs in lineage)."""
    sa, sb = _open(path_a), _open(path_b)
    if tensor is not None:
        if tensor not in sa.tensors and tensor not in sb.tensors:
            raise FormatError(f"no tensor named {tensor!r} in {path_a} or {path_b}")
        sa.tensors = {k: v for k, v in sa.tensors.items() if k == tensor}
        sb.tensors = {k: v for k, v in sb.tensors.items() if k == tensor}
    changed: list[TensorDiff] = []
    compared: list[TensorDiff] = []
    for name in sorted(sa.tensors.keys() & sb.tensors.keys()):
        (dtype_a, shape_a, pieces_a), (dtype_b, shape_b, pieces_b) = (
            sa.tensors[name],
            sb.tensors[name],
        )
        da, db = Layout(dtype_a, list(shape_a)), Layout(dtype_b, list(shape_b))
        if da != db:
            changed.append(TensorDiff(name, da, db))
            continue
        entry = TensorDiff(name, da, db)
        if not can_read(dtype_a) or dtype_a == "C64":
            entry.equal = _raw_equal(pieces_a, pieces_b, chunk_bytes)
            entry.note = f"{dtype_a}: compared bytes only"
        else:
            entry.max_abs_diff, entry.equal = _compare(pieces_a, pieces_b, chunk_bytes)
        compared.append(entry)
    ma, mb = sa.metadata, sb.metadata
    return DiffReport(
        path_a,
        path_b,
        only_in_a=sorted(sa.tensors.keys() - sb.tensors.keys()),
        only_in_b=sorted(sb.tensors.keys() - sa.tensors.keys()),
        changed=changed,
        compared=compared,
        metadata_changed=[]
        if ignore_metadata
        else sorted(k for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k)),
    )


def _compare(a: Pieces, b: Pieces, chunk_bytes: int) -> tuple[float, bool]:
    """(max |a - b| with NaN == NaN, all equal) over two element-aligned streams."""
    import numpy as np

    worst, equal = 0.0, True
    for ca, cb in zip(_aligned(a, chunk_bytes), _aligned(b, chunk_bytes), strict=True):
        if ca.dtype.kind in "iub":
            delta = np.abs(ca.astype(np.int64) - cb.astype(np.int64))
        else:
            delta = np.abs(ca.astype(np.float64) - cb.astype(np.float64))
            delta = np.where(np.isnan(ca) & np.isnan(cb), 0.0, delta)
        if delta.size:
            m = float(np.nanmax(delta)) if not np.isnan(delta).all() else math.nan
            worst = m if math.isnan(m) else max(worst, m)
            equal = equal and bool((delta == 0).all())
    return worst, equal


def _aligned(pieces: Pieces, chunk_bytes: int) -> Iterator:
    """The elements of a tensor stored in ``pieces``, in chunks of a fixed element count
    (the same on both sides of a diff, however each side is split into files)."""
    import numpy as np

    itemsize = max(1, pieces[0][1].nbytes // max(pieces[0][1].numel, 1))
    size = max(1, chunk_bytes // itemsize)
    held: list = []
    count = 0
    for header, info in pieces:
        for chunk in iter_chunks(header, info, chunk_bytes):
            held.append(chunk)
            count += chunk.size
            while count >= size:
                joined = np.concatenate(held) if len(held) > 1 else held[0]
                yield joined[:size]
                rest = joined[size:]
                held, count = ([rest] if rest.size else []), rest.size
    if held:
        yield np.concatenate(held)


def _raw_equal(a: Pieces, b: Pieces, chunk: int) -> bool:
    """Byte equality of two tensors, each stored in one or more pieces."""
    return _joined_bytes(a, chunk) == _joined_bytes(b, chunk)


def _joined_bytes(pieces: Pieces, chunk: int) -> bytes:
    import hashlib
    import os

    digest = hashlib.sha256()
    for header, info in pieces:
        with open(header.path, "rb") as f:
            for off in range(0, info.nbytes, chunk):
                n = min(chunk, info.nbytes - off)
                digest.update(os.pread(f.fileno(), n, header.data_start + info.start + off))
    return digest.digest()


def check_diff_request(paths: list[str], *, stats: bool, preview: int) -> tuple[str, str]:
    """The two paths of ``inspect --diff``, refusing options a diff cannot honour."""
    if len(paths) != 2:
        raise UsageError(f"--diff compares exactly two files (got {len(paths)})")
    if not stats:
        raise UsageError("--diff compares values; --no-stats cannot apply (drop one of them)")
    if preview:
        raise UsageError("--diff shows no preview; inspect each file for --preview")
    return paths[0], paths[1]
