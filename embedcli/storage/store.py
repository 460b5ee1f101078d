"""safetensors on disk: a strict header reader and a streaming writer.

Why our own header reader next to safetensors' (which we still use to read data and to validate
every file we write): it must answer ``inspect --no-stats`` without importing numpy or torch, name
the exact fault in a broken file (gap, overlap, duplicate name, LFS pointer...) instead of a terse
``InvalidOffset``, and never read more than the header the file declares.

Why our own writer: ``safetensors.*.save_file`` needs every tensor in memory at once. Stages here
stream (the header depends only on shapes and dtypes, so it is written first, then the data in
pieces). Where the bytes land, atomically and validated with safetensors' own reader, is
``outputs.py``'s concern; files split across several parts are ``split.py``'s.

The file layout is the standard one: 8-byte little-endian header length, a JSON header padded
with spaces to a multiple of 8 bytes, then the tensors' bytes back to back.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import struct
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from embedcli.contract import kind_of
from embedcli.errors import FormatError, InputError, OutputError

if TYPE_CHECKING:
    import numpy as np

MAX_HEADER_BYTES = 100_000_000  # safetensors' own cap
METADATA_KEY = "__metadata__"

# safetensors dtype -> (bits per element, numpy dtype or None, torch dtype name or None)
DTYPES: dict[str, tuple[int, str | None, str | None]] = {
    "BOOL": (8, "bool", "bool"),
    "U8": (8, "uint8", "uint8"),
    "I8": (8, "int8", "int8"),
    "I16": (16, "<i2", "int16"),
    "U16": (16, "<u2", "uint16"),
    "I32": (32, "<i4", "int32"),
    "U32": (32, "<u4", "uint32"),
    "I64": (64, "<i8", "int64"),
    "U64": (64, "<u8", "uint64"),
    "F16": (16, "<f2", "float16"),
    "BF16": (16, None, "bfloat16"),
    "F32": (32, "<f4", "float32"),
    "F64": (64, "<f8", "float64"),
    "C64": (64, "<c8", "complex64"),
    "F8_E4M3": (8, None, "float8_e4m3fn"),
    "F8_E5M2": (8, None, "float8_e5m2"),
    "F8_E4M3FNUZ": (8, None, "float8_e4m3fnuz"),
    "F8_E5M2FNUZ": (8, None, "float8_e5m2fnuz"),
    "F8_E8M0": (8, None, "float8_e8m0fnu"),
    "F6_E2M3": (6, None, None),
    "F6_E3M2": (6, None, None),
    "F4": (4, None, None),
}
INTEGER_DTYPES = frozenset({"U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64"})
NUMPY_TO_ST = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "int32": "I32",
    "uint32": "U32",
    "int64": "I64",
    "uint64": "U64",
    "float16": "F16",
    "float32": "F32",
    "float64": "F64",
    "complex64": "C64",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # byte offsets inside the data section
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass
class Header:
    path: str
    file_size: int
    header_size: int  # the JSON part, padding included
    tensors: list[TensorInfo]  # in file order
    metadata: dict[str, str] | None = None

    @property
    def data_start(self) -> int:
        return 8 + self.header_size

    def tensor(self, name: str) -> TensorInfo:
        for info in self.tensors:
            if info.name == name:
                return info
        names = ", ".join(t.name for t in self.tensors) or "none"
        raise FormatError(f"{self.path}: no tensor named {name!r} (tensors: {names})")

    @property
    def embedcli_kind(self) -> str | None:
        return kind_of(self.metadata)


# --------------------------------------------------------------------------- reading headers


def _sniff_text(head: bytes) -> str:
    if head.startswith(b"version https://git-lfs.github.com/spec"):
        return "it is a Git LFS pointer, not the file itself (run `git lfs pull`)"
    if head[:1] in (b"{", b"[", b"<") or all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "it looks like text"
    return "the first 8 bytes are not a plausible header length"


def read_header(path: str) -> Header:
    """Read and check a safetensors header; raise :class:`FormatError` naming any fault.

    Reads at most 8 bytes plus the declared header, and only after checking that the declared
    length fits in the file and under safetensors' 100 MB cap.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory, not a safetensors file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
            if len(head) < 8:
                raise FormatError(
                    f"{path}: not a safetensors file: {len(head)} bytes, shorter than the "
                    "8-byte header length"
                )
            (n,) = struct.unpack("<Q", head[:8])
            if n > MAX_HEADER_BYTES:
                if head[8:9] != b"{":
                    raise FormatError(f"{path}: not a safetensors file: {_sniff_text(head)}")
                raise FormatError(
                    f"{path}: header of {n:,} bytes exceeds safetensors' 100 MB limit"
                )
            if n > size - 8:
                if head[8:9] != b"{":
                    raise FormatError(f"{path}: not a safetensors file: {_sniff_text(head)}")
                raise FormatError(
                    f"{path}: header length {n:,} runs past the end of the file "
                    f"({size:,} bytes): the file is truncated"
                )
            f.seek(8)
            raw = f.read(n)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_header(raw, path=path, file_size=size)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class _Duplicate(Exception):
    pass


def parse_header(raw: bytes, *, path: str, file_size: int) -> Header:
    """Check the JSON header ``raw`` of a file of ``file_size`` bytes (see :func:`read_header`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: header is not UTF-8 (byte {exc.start + 8})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as dup:
        raise FormatError(f"{path}: header names {_show(str(dup))} twice") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = getattr(exc, "msg", "too deeply nested")
        raise FormatError(f"{path}: header is not valid JSON ({msg})") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: header is JSON but not an object")

    metadata = doc.pop(METADATA_KEY, None)
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise FormatError(f"{path}: __metadata__ is not an object of strings")
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise FormatError(
                    f"{path}: metadata value for {_show(key)} is {type(value).__name__}, "
                    "not a string"
                )

    tensors = [_tensor_info(path, name, entry) for name, entry in doc.items()]
    data_size = file_size - 8 - len(raw)
    _check_layout(path, sorted(tensors, key=lambda t: (t.start, t.end)), data_size)
    tensors.sort(key=lambda t: (t.start, t.end))
    return Header(path, file_size, len(raw), tensors, metadata)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_info(path: str, name: str, entry: object) -> TensorInfo:
    where = f"{path}: tensor {_show(name)}"
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise FormatError(f"{where}: unknown dtype {_show(str(dtype))}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise FormatError(f"{where}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise FormatError(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end")
    bits = DTYPES[dtype][0]
    numel = math.prod(shape)
    if (numel * bits) % 8:
        raise FormatError(f"{where}: {numel} {dtype} elements do not fill whole bytes")
    expected = numel * bits // 8
    if expected != offsets[1] - offsets[0]:
        raise FormatError(
            f"{where}: shape {tuple(shape)} of {dtype} needs {expected:,} bytes "
            f"but data_offsets span {offsets[1] - offsets[0]:,}"
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(path: str, tensors: list[TensorInfo], data_size: int) -> None:
    position = 0
    previous = None
    for info in tensors:
        if info.start > position:
            after = f"after {_show(previous.name)}" if previous else "at the start of the data"
            raise FormatError(
                f"{path}: gap of {info.start - position:,} bytes {after} "
                f"(before {_show(info.name)})"
            )
        if info.start < position:
            raise FormatError(
                f"{path}: tensors {_show(previous.name if previous else '')} and "
                f"{_show(info.name)} overlap"
            )
        position = info.end
        previous = info
    if position > data_size:
        raise FormatError(
            f"{path}: tensor data runs {position - data_size:,} bytes past the end of the file: "
            "the file is truncated"
        )
    if position < data_size:
        raise FormatError(f"{path}: {data_size - position:,} trailing bytes after the last tensor")


def _show(text: str) -> str:
    """Quote a name for a message, escaping control characters so a terminal shows them."""
    return repr(text)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class TensorSpec:
    """What the header says about a tensor about to be written."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype][0] // 8


def build_header(specs: Iterable[TensorSpec], metadata: Mapping[str, str] | None) -> bytes:
    """The 8-byte length plus the JSON header for tensors written in the order given.

    Deterministic: metadata keys sorted, tensors in the given order, no whitespace, padded with
    spaces to 8 bytes (as safetensors' own writer does) so the data section stays aligned.
    """
    doc: dict[str, object] = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise TypeError(f"metadata value for {key!r} must be str, got {type(value)}")
        doc[METADATA_KEY] = dict(sorted(metadata.items()))
    offset = 0
    for spec in specs:
        if spec.name in doc:
            raise ValueError(f"duplicate tensor name {spec.name!r}")
        doc[spec.name] = {
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def spec_of(name: str, array: np.ndarray) -> TensorSpec:
    try:
        dtype = NUMPY_TO_ST[array.dtype.name]
    except KeyError:
        raise TypeError(f"cannot store numpy dtype {array.dtype} in safetensors") from None
    return TensorSpec(name, dtype, tuple(array.shape))


def write_array(f: BinaryIO, array: np.ndarray) -> None:
    """Write an array's bytes little-endian, C order, without an intermediate copy if possible."""
    if array.size:
        f.write(array_bytes(array))


def array_bytes(array: np.ndarray) -> memoryview:
    """An array's bytes as safetensors stores them: little-endian, C order (a copy only when
    the array is not so already)."""
    import numpy as np

    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).data.cast("B")


def write_arrays(
    f: BinaryIO, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str]
) -> None:
    """Write a whole safetensors file of in-memory arrays to an open binary file."""
    f.write(build_header([spec_of(k, v) for k, v in arrays.items()], metadata))
    for array in arrays.values():
        write_array(f, array)


def _is_regular(f: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):  # in-memory streams, test runners
        return False


def copy_stream(src: BinaryIO, dst: BinaryIO, nbytes: int) -> None:
    """Copy the first ``nbytes`` of file ``src`` to ``dst``; in the kernel where it can."""
    dst.flush()
    src_fd, done = src.fileno(), 0
    if _is_regular(dst) and hasattr(os, "copy_file_range"):
        with contextlib.suppress(OSError):
            while done < nbytes:
                n = os.copy_file_range(src_fd, dst.fileno(), min(nbytes - done, 1 << 30), done)
                if n == 0:
                    break
                done += n
    # Pipes, other filesystems, old kernels: through user space, from where the kernel stopped.
    while done < nbytes:
        chunk = os.pread(src_fd, min(nbytes - done, 1 << 24), done)
        if not chunk:
            raise OutputError("internal error: temporary data ended early")
        dst.write(chunk)
        done += len(chunk)


# --------------------------------------------------------------------------- reading data


def header_if_file(path: str) -> Header | None:
    """The header of an output just written, when it is a regular file (not stdout or a FIFO)."""
    if path == "-" or not os.path.isfile(path):
        return None
    return read_header(path)


def is_safetensors(path: str) -> bool:
    """True if ``path`` starts like a safetensors file (8-byte length that fits, then ``{``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return struct.unpack("<Q", head[:8])[0] <= size - 8


def load_array(path: str, info: TensorInfo) -> np.ndarray:
    """Load one tensor into memory as a numpy array, through safetensors' reader."""
    from safetensors import safe_open

    if DTYPES[info.dtype][1] is None:
        raise FormatError(
            f"{path}: tensor {info.name!r} has dtype {info.dtype}, which numpy cannot hold"
        )
    with safe_open(path, framework="numpy") as f:
        return f.get_tensor(info.name)


def memmap_array(header: Header, info: TensorInfo) -> np.ndarray:
    """One tensor as a read-only memory map: opening costs nothing whatever its size, and
    only the pages read are loaded (the ids of a multi-GB token file, a window at a time)."""
    import numpy as np

    npdtype = DTYPES[info.dtype][1]
    if npdtype is None:
        raise FormatError(
            f"{header.path}: tensor {info.name!r} has dtype {info.dtype}, which numpy cannot hold"
        )
    if info.numel == 0:
        return np.zeros(info.shape, dtype=npdtype)
    offset = header.data_start + info.start
    return np.memmap(header.path, dtype=npdtype, mode="r", offset=offset, shape=info.shape)


def release_pages(array: np.ndarray, upto: int) -> None:
    """Hand the pages of a memory-mapped ``array`` before element ``upto`` back to the kernel:
    they leave this process's memory (the page cache keeps them, so a later read is cheap).
    A no-op for arrays that are not memory maps, and where ``madvise`` is missing."""
    import mmap

    m = getattr(array, "_mmap", None)
    if m is None or upto <= 0 or not hasattr(mmap, "MADV_DONTNEED"):
        return
    # np.memmap maps from the allocation boundary below its offset; the array starts after it.
    offset: int = getattr(array, "offset", 0)  # an np.memmap's, from its file's start
    lead = offset % mmap.ALLOCATIONGRANULARITY
    end = (lead + upto * array.itemsize) // mmap.PAGESIZE * mmap.PAGESIZE
    if 0 < end <= len(m):
        m.madvise(mmap.MADV_DONTNEED, 0, end)
