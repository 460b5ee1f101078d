"""What differs between two files ``inspect`` reads: safetensors files, split outputs (through
their ``.index.json``), shard manifests and the trainers' token files (nanoGPT, llm.c, Megatron,
npy). Tensors present on one side only, dtype or shape changes, the largest difference between
values, and metadata keys that differ.

Values are read in chunks (``pread`` for safetensors, memory maps for token files) and compared
element-aligned, so a split output compares equal to the single file it was written instead of,
and a manifest's parts to the one run they were sharded from. A token file is its whole token
stream, ``ids`` (and ``doc_offsets`` where the format marks documents), as ``inspect`` shows it;
ids in different integer dtypes (a nanoGPT ``uint16`` file, an int32 token file) are compared by
value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.inspection.report import CHUNK_BYTES, can_read, iter_chunks
from embedcli.paths import PathArg, one_path
from embedcli.storage.split import is_index, read_index
from embedcli.storage.store import NUMPY_TO_ST, Header, TensorInfo, is_safetensors, read_header

Pieces = list[tuple[Header, TensorInfo]]

# Metadata that says how a run was made, not what it made: both tokenizer engines are exact, so
# the same input through either gives the same ids. A diff reports these; --strict counts them.
RUN_KEYS = frozenset({c.TOKENIZER_BACKEND})


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
    # keys saying only how the run was made (RUN_KEYS) that differ: reported, not a difference
    # (key -> [value in A, value in B]; None where a side lacks it)
    run_changed: dict[str, list[str | None]] = field(default_factory=dict)

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
class _Tensor:
    """One side's tensor: its layout and where its elements are, safetensors ``pieces`` (one
    per file it is split over) or in-memory / memory-mapped ``segments`` of a token stream."""

    dtype: str
    shape: tuple[int, ...]
    pieces: Pieces | None = None
    segments: list | None = None

    @property
    def itemsize(self) -> int:
        if self.segments is not None:
            return max((s.dtype.itemsize for s in self.segments), default=1)
        assert self.pieces is not None
        info = self.pieces[0][1]
        return max(1, info.nbytes // max(info.numel, 1))

    def chunks(self, chunk_bytes: int) -> Iterator:
        if self.segments is not None:
            for segment in self.segments:
                step = max(1, chunk_bytes // max(segment.dtype.itemsize, 1))
                for i in range(0, segment.size, step):
                    yield segment[i : i + step]
            return
        assert self.pieces is not None
        for header, info in self.pieces:
            yield from iter_chunks(header, info, chunk_bytes)


@dataclass
class _Side:
    tensors: dict[str, _Tensor]
    metadata: dict[str, str]


def _open(path: str) -> _Side:
    if is_index(path):
        doc, tensors, _ = read_index(path)
        meta = {k: str(v) for k, v in (doc.get("metadata") or {}).items() if k != "total_size"}
        return _Side({t.name: _Tensor(t.dtype, t.shape, t.pieces) for t in tensors}, meta)
    if not is_safetensors(path):
        side = _token_stream(path)
        if side is not None:
            return side
    header = read_header(path)  # not safetensors: its reader says what it looks like
    return _Side(
        {t.name: _Tensor(t.dtype, tuple(t.shape), [(header, t)]) for t in header.tensors},
        header.metadata or {},
    )


def _token_stream(path: str) -> _Side | None:
    """A manifest or a trainer's token file as ``ids`` (and ``doc_offsets``), the way ``batch``
    reads it; None for anything else (text is never tokenized here)."""
    from embedcli.inputs import TokenSource, open_input
    from embedcli.inputs.token_files import ResolvedTokenFiles
    from embedcli.progress import no_progress

    with open_input([path]) as found:
        if found.reader == "text":
            return None
        if isinstance(found, ResolvedTokenFiles):  # a manifest: its parts' ids, not copied
            segments, offsets, meta = found.join()
        else:
            source = found.load(no_progress)
            if not isinstance(source, TokenSource):
                return None  # windows: safetensors files, read as such
            segments, offsets, meta = [source.ids], source.doc_offsets, source.metadata
    total = sum(int(s.size) for s in segments)
    dtype = segments[0].dtype.name if segments else "int32"
    tensors = {"ids": _Tensor(NUMPY_TO_ST.get(dtype, dtype), (total,), segments=segments)}
    if offsets is not None:
        kind = NUMPY_TO_ST.get(offsets.dtype.name, offsets.dtype.name)
        tensors["doc_offsets"] = _Tensor(kind, (int(offsets.size),), segments=[offsets])
    return _Side(tensors, dict(meta))


def diff_files(
    path_a: PathArg,
    path_b: PathArg,
    *,
    tensor: str | None = None,
    ignore_metadata: bool = False,
    strict: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> DiffReport:
    """Tensors only in one file, dtype/shape changes, max |a - b| for matching tensors (only
    ``tensor`` when given), and the metadata keys that differ (none with ``ignore_metadata``:
    the same data reached two ways, merged shards and one whole run, differs in lineage).
    Keys of :data:`RUN_KEYS` (the tokenizer engine) are ``run_changed``, not a difference,
    unless ``strict``."""
    path_a, path_b = one_path(path_a), one_path(path_b)
    sa, sb = _open(path_a), _open(path_b)
    if tensor is not None:
        if tensor not in sa.tensors and tensor not in sb.tensors:
            raise FormatError(f"no tensor named {tensor!r} in {path_a} or {path_b}")
        sa.tensors = {k: v for k, v in sa.tensors.items() if k == tensor}
        sb.tensors = {k: v for k, v in sb.tensors.items() if k == tensor}
    changed: list[TensorDiff] = []
    compared: list[TensorDiff] = []
    for name in sorted(sa.tensors.keys() & sb.tensors.keys()):
        ta, tb = sa.tensors[name], sb.tensors[name]
        da, db = Layout(ta.dtype, list(ta.shape)), Layout(tb.dtype, list(tb.shape))
        # a token stream's integer dtype is its format's storage choice: compare the values
        by_value = (
            (ta.segments is not None or tb.segments is not None)
            and da.shape == db.shape
            and _integer(ta.dtype)
            and _integer(tb.dtype)
        )
        if da != db and not by_value:
            changed.append(TensorDiff(name, da, db))
            continue
        entry = TensorDiff(name, da, db)
        if not can_read(ta.dtype) or ta.dtype == "C64":
            assert ta.pieces is not None and tb.pieces is not None  # token streams are integers
            entry.equal = _raw_equal(ta.pieces, tb.pieces, chunk_bytes)
            entry.note = f"{ta.dtype}: compared bytes only"
        else:
            entry.max_abs_diff, entry.equal = _compare(ta, tb, chunk_bytes)
            if da.dtype != db.dtype:
                entry.note = (
                    f"{da.dtype} and {db.dtype} compared by value: "
                    f"max |a-b| = {entry.max_abs_diff:g}"
                )
        compared.append(entry)
    ma, mb = sa.metadata, sb.metadata
    differing = [] if ignore_metadata else sorted(k for k in ma | mb if ma.get(k) != mb.get(k))
    run = [] if strict else [k for k in differing if k in RUN_KEYS]
    return DiffReport(
        path_a,
        path_b,
        only_in_a=sorted(sa.tensors.keys() - sb.tensors.keys()),
        only_in_b=sorted(sb.tensors.keys() - sa.tensors.keys()),
        changed=changed,
        compared=compared,
        metadata_changed=[k for k in differing if k not in run],
        run_changed={k: [ma.get(k), mb.get(k)] for k in run},
    )


def _integer(dtype: str) -> bool:
    return dtype[:1] in "IU" and dtype[1:].isdigit()


def _compare(a: _Tensor, b: _Tensor, chunk_bytes: int) -> tuple[float, bool]:
    """(max |a - b| with NaN == NaN, all equal) over two element-aligned streams."""
    import numpy as np

    worst, equal = 0.0, True
    size = max(1, chunk_bytes // max(a.itemsize, b.itemsize))  # the same count on both sides
    for ca, cb in zip(_aligned(a, chunk_bytes, size), _aligned(b, chunk_bytes, size), strict=True):
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


def _aligned(tensor: _Tensor, chunk_bytes: int, size: int) -> Iterator:
    """The elements of a tensor, in chunks of ``size`` elements (the same on both sides of a
    diff, however each side is split into files or segments)."""
    import numpy as np

    held: list = []
    count = 0
    for chunk in tensor.chunks(chunk_bytes):
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
