"""What is in a safetensors file (or a split output): tensors, statistics, previews, lineage.

Works on any safetensors file. The header path imports neither numpy nor torch, so
``inspect --no-stats`` answers instantly whatever the file size.

Statistics (and diffs, ``diff.py``) read tensor data in chunks with ``os.pread`` rather than through
safetensors' ``safe_open``: that reader memory-maps the whole file, and every page a full scan
touches stays resident and counts against the process, so a scan of a file larger than memory
would look like (and, under pressure, behave like) loading it. ``pread`` keeps one chunk resident.
The header checks are ours too (see ``store.py``); the byte layout is safetensors' own.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from embedcli.bpe.encodings import Decoding, decoding_for
from embedcli.contract import ENCODING
from embedcli.errors import FormatError
from embedcli.storage.store import (
    DTYPES,
    INTEGER_DTYPES,
    Header,
    TensorInfo,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from embedcli.inspection.stats import (
        CorpusStats,
        Histogram,
        Neighbors,
        RowNorms,
        WindowStats,
    )

CHUNK_BYTES = 4 << 20  # float64 work arrays are 2x this; keeps a full scan near 50 MB
DISTINCT_MAX_RANGE = 1 << 24  # count distinct integer values when max - min is below this


@dataclass
class Stats:
    min: float | int | None
    max: float | int | None
    mean: float | None
    std: float | None  # sample standard deviation (torch.std's default, correction=1)
    distinct: int | None = None  # integer tensors whose value range is small
    nan: int = 0
    inf: int = 0


@dataclass
class TensorReport:
    name: str
    dtype: str
    shape: list[int]
    numel: int
    nbytes: int
    data_offsets: list[int]
    stats: Stats | None = None
    note: str | None = None
    histogram: Histogram | None = None  # float tensors' values
    norms: RowNorms | None = None  # 2-D float tables: row L2 norms


@dataclass
class Part:
    """One token file of a sharded run (``inspect`` of its manifest)."""

    path: str
    documents: int | None
    tokens: int | None


@dataclass
class Decoded:
    """A row of ids (a window, or a token file's first ids) and its text."""

    tensor: str
    row: int
    ids: list[int]
    text: str


@dataclass
class FileReport:
    path: str
    file_size: int
    header_size: int
    kind: str | None  # embedcli stage that wrote it: tokens, windows, embeddings; else None
    metadata: dict[str, str] | None
    tensors: list[TensorReport]
    previews: dict[str, str] = field(default_factory=dict)  # tensor name -> torch-style text
    decoded: list[Decoded] = field(default_factory=list)  # ids with their text
    files: list[str] = field(default_factory=list)  # for an index: the files it ties together
    parts: list[Part] = field(default_factory=list)  # for a manifest: each part's figures
    corpus: CorpusStats | None = None  # token files
    windows: WindowStats | None = None  # windows files
    neighbors: Neighbors | None = None  # --neighbors: the query and its nearest tokens
    decode_note: str | None = None  # why ids are shown without their text

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# --------------------------------------------------------------------------- reading data


def _numpy_view(raw: bytes, dtype: str) -> np.ndarray:
    """Bytes of ``dtype`` as a numpy array of a numpy-friendly type (bf16/f8 widened)."""
    import numpy as np

    npdtype = DTYPES[dtype][1]
    if npdtype is not None:
        return np.frombuffer(raw, dtype=npdtype)
    if dtype == "BF16":  # bfloat16 is the top half of a float32: widen exactly
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    import torch

    tdtype = _torch_dtype(dtype)
    return torch.frombuffer(bytearray(raw), dtype=tdtype).float().numpy()


def can_read(dtype: str) -> bool:
    if DTYPES[dtype][1] is not None or dtype == "BF16":
        return True
    name = DTYPES[dtype][2]
    if name is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return hasattr(torch, name)


def iter_chunks(header: Header, info: TensorInfo, chunk_bytes: int = CHUNK_BYTES, *, row: int = 1):
    """The tensor's elements, flat, as numpy arrays of at most ``chunk_bytes`` input bytes
    (whole rows of ``row`` elements each, when given)."""
    itemsize = DTYPES[info.dtype][0] // 8 * row
    step = max(itemsize, chunk_bytes // itemsize * itemsize)
    with open(header.path, "rb") as f:
        fd = f.fileno()
        for offset in range(info.start, info.end, step):
            n = min(step, info.end - offset)
            raw = os.pread(fd, n, header.data_start + offset)
            if len(raw) != n:
                raise FormatError(f"{header.path}: file shrank while being read")
            yield _numpy_view(raw, info.dtype)


def tensor_stats(header: Header, info: TensorInfo, chunk_bytes: int = CHUNK_BYTES) -> Stats:
    """min, max, mean, std (and distinct values for small-range integers), chunk by chunk."""
    return pieces_stats([(header, info)], chunk_bytes)


def _all_chunks(pieces: list[tuple[Header, TensorInfo]], chunk_bytes: int):
    for header, info in pieces:
        yield from iter_chunks(header, info, chunk_bytes)


def pieces_stats(pieces: list[tuple[Header, TensorInfo]], chunk_bytes: int = CHUNK_BYTES) -> Stats:
    """:func:`tensor_stats` over a tensor stored in pieces (a sharded output), in order."""
    dtype = pieces[0][1].dtype
    integer = dtype in INTEGER_DTYPES or dtype == "BOOL"
    return chunked_stats(lambda: _all_chunks(pieces, chunk_bytes), integer)


def chunked_stats(chunks, integer: bool) -> Stats:
    """Statistics over the arrays ``chunks()`` yields (called twice for distinct values)."""
    import numpy as np

    count = 0
    mean = m2 = 0.0
    low: float | None = None
    high: float | None = None
    nan = inf = 0
    for chunk in chunks():
        values = chunk.astype(np.float64) if not integer else chunk
        if not integer:
            finite = np.isfinite(values)
            if not finite.all():
                nan += int(np.isnan(values).sum())
                inf += int((~finite).sum()) - int(np.isnan(values).sum())
                values = values[finite]
        if values.size == 0:
            continue
        cmin, cmax = values.min(), values.max()
        low = cmin if low is None else min(low, cmin)
        high = cmax if high is None else max(high, cmax)
        # Chan et al.'s pairwise merge of (count, mean, M2): stable for large counts.
        as_float = values.astype(np.float64, copy=False)
        c_n = as_float.size
        c_mean = float(as_float.mean())
        c_m2 = float(((as_float - c_mean) ** 2).sum())
        delta = c_mean - mean
        total = count + c_n
        mean += delta * c_n / total
        m2 += c_m2 + delta * delta * count * c_n / total
        count = total
    if count == 0 or low is None or high is None:
        return Stats(None, None, None, None, nan=nan, inf=inf)
    std = math.sqrt(m2 / (count - 1)) if count > 1 else float("nan")
    stats = Stats(_py(low), _py(high), mean, std, nan=nan, inf=inf)
    if integer and int(high) - int(low) < DISTINCT_MAX_RANGE:
        seen = np.zeros(int(high) - int(low) + 1, dtype=np.bool_)
        for chunk in chunks():
            seen[(chunk.astype(np.int64) - int(low))] = True
        stats.distinct = int(seen.sum())
    return stats


def _torch_dtype(dtype: str) -> torch.dtype:
    import torch

    name = DTYPES[dtype][2]
    if name is None:
        raise FormatError(f"torch has no dtype for {dtype}")
    dt: torch.dtype = getattr(torch, name)
    return dt


def _py(value):
    if value is None:
        return None
    return value.item() if hasattr(value, "item") else value


def read_rows(header: Header, info: TensorInfo, rows: int):
    """The first ``rows`` entries along dim 0 as a torch tensor (0-d tensors whole)."""
    import torch

    shape = list(info.shape)
    if shape:
        shape[0] = min(rows, shape[0])
    numel = math.prod(shape)
    nbytes = numel * DTYPES[info.dtype][0] // 8
    with open(header.path, "rb") as f:
        raw = os.pread(f.fileno(), nbytes, header.data_start + info.start)
    tdtype = _torch_dtype(info.dtype)
    if numel == 0:
        return torch.empty(shape, dtype=tdtype)
    return torch.frombuffer(bytearray(raw), dtype=tdtype).reshape(shape)


def torch_repr(tensor) -> str:
    """``repr`` as torch prints it, long rows summarised with ``...`` (edge items kept)."""
    import torch

    options = getattr(torch._tensor_str, "printoptions", None)  # private, so optional
    if options is None:
        return repr(tensor)
    with options(threshold=64, edgeitems=3):
        return repr(tensor)


def preview_text(header: Header, info: TensorInfo, rows: int) -> str:
    """The first rows printed the way torch prints them: ``tensor([[ 0.3374, -0.1778, ...``."""
    name = DTYPES[info.dtype][2]
    if name is None or not can_read(info.dtype):
        return f"(no preview: {info.dtype} has no torch dtype here)"
    return torch_repr(read_rows(header, info, rows))


# --------------------------------------------------------------------------- reports


def header_report(header: Header, infos: list[TensorInfo] | None = None) -> FileReport:
    """A report of what the header alone says (no data read)."""
    return FileReport(
        path=header.path,
        file_size=header.file_size,
        header_size=header.header_size,
        kind=header.embedcli_kind,
        metadata=header.metadata,
        tensors=[
            TensorReport(t.name, t.dtype, list(t.shape), t.numel, t.nbytes, [t.start, t.end])
            for t in (header.tensors if infos is None else infos)
        ],
    )


def decoded_windows(
    header: Header, infos: list[TensorInfo], rows: int, tokenizer: str | None = None
) -> tuple[list[Decoded], str | None]:
    """For embedcli id tensors, the first window(s) (or ids) with their decoded text (with
    ``tokenizer``, else the recorded one), or none and why not."""
    meta = header.metadata or {}
    if header.embedcli_kind not in ("tokens", "windows") or ENCODING not in meta:
        return [], None
    decoding: Decoding = decoding_for(meta, None, tokenizer)
    decode = decoding.decode
    if decode is None:
        return [], decoding.note
    out: list[Decoded] = []
    for info in infos:
        if info.name not in ("ids", "inputs", "targets"):
            continue
        data = read_rows(header, info, rows if info.name != "ids" else 64)
        sequences = [data.tolist()] if data.ndim == 1 else data.tolist()
        for i, ids in enumerate(sequences):
            out.append(Decoded(info.name, i, ids, decode(ids)))
    return out, None


def dumps(obj: object) -> str:
    """JSON for ``--json``: stable key order, NaN/inf as null (strict JSON for every parser)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(obj), indent=2, ensure_ascii=False, allow_nan=False)
