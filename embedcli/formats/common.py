"""What the trainers' token formats share: id dtypes, streaming the ids, the lineage sidecar."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .. import contract as c
from ..atomic import atomic_file
from ..errors import FormatError, UsageError
from ..outputs import check_output, write_json

CHUNK_IDS = 1 << 22  # ids converted and written at once (16 MB of int32)


@dataclass
class ResolvedFile:
    """A trainer's token file found by its reader: ``load()`` is ``loader()``, which reads the
    ids (memory-mapped) and the lineage."""

    reader: str
    paths: list[str]
    size: int
    loader: Callable[[], Any]

    def load(self, progress) -> Any:
        return self.loader()


def vocab_of(metadata: dict[str, str]) -> int:
    vocab = c.get_int(metadata, c.VOCAB_SIZE)
    if vocab is None:
        raise UsageError("the token metadata has no vocab_size")
    return vocab


def require_uint16(fmt: str, metadata: dict[str, str]) -> None:
    vocab = vocab_of(metadata)
    if vocab > 1 << 16:
        raise UsageError(
            f"{fmt} files hold uint16 ids but {metadata.get(c.ENCODING)} has {vocab:,} ids; "
            "use --to llmc, megatron or npy"
        )


def copy_ids(ids_file: BinaryIO, start: int, count: int, dtype: np.dtype, out) -> None:
    """Ids ``[start, start + count)`` of an int32 spill file, converted to ``dtype``, to ``out``."""
    fd, done = ids_file.fileno(), 0
    while done < count:
        n = min(CHUNK_IDS, count - done)
        raw = os.pread(fd, n * 4, (start + done) * 4)
        if len(raw) != n * 4:
            raise FormatError("internal error: temporary ids ended early")
        out.write(np.frombuffer(raw, dtype="<i4").astype(dtype.newbyteorder("<")).tobytes())
        done += n


@contextlib.contextmanager
def atomic_files(paths: list[str], *, inputs: list[str], no_clobber: bool) -> Iterator[list]:
    """Open every path of one output atomically; all are renamed into place together."""
    for path in paths:
        check_output(path, inputs=inputs, no_clobber=no_clobber)
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_file(p)) for p in paths]


def sidecar_path(output: str) -> str:
    return output + ".json"


def write_sidecar(output: str, fmt: str, files: list[str], metadata: dict[str, str]) -> str:
    """Lineage for formats with no metadata slot: ``OUTPUT.json`` beside the files."""
    path = sidecar_path(output)
    write_json(
        path,
        {
            "embedcli_tokens": 1,
            "format": fmt,
            "files": [os.path.basename(f) for f in files],
            "metadata": dict(sorted(metadata.items())),
        },
    )
    return path


def read_sidecar(output: str) -> dict[str, str] | None:
    """The lineage of a token file embedcli wrote, or None (a file from elsewhere)."""
    path = sidecar_path(output)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        meta = doc["metadata"]
    except (OSError, ValueError, KeyError, TypeError):
        raise FormatError(f"{path}: not a readable embedcli sidecar") from None
    return {str(k): str(v) for k, v in meta.items()}


def foreign_metadata(fmt: str, encoding: str, extra: dict[str, Any]) -> dict[str, str]:
    """Metadata for a token file embedcli did not write: whose ids they are (``--encoding``)."""
    from ..encoding import eot_id, get_encoding

    enc = get_encoding(encoding)
    meta = {
        c.ENCODING: encoding,
        c.VOCAB_SIZE: str(enc.n_vocab),
        c.EOT_ID: str(eot_id(enc)),
        c.FORMAT: fmt,
    }
    meta.update({k: c.to_str(v) for k, v in extra.items()})
    return meta


def lineage(path: str, fmt: str, encoding: str, extra: dict[str, Any]) -> dict[str, str]:
    """The sidecar's metadata when there is one, else :func:`foreign_metadata`."""
    meta = read_sidecar(path)
    if meta is None:
        return foreign_metadata(fmt, encoding, extra)
    meta.update({c.FORMAT: fmt, **{k: c.to_str(v) for k, v in extra.items()}})
    return meta


def memmap(path: str, dtype, offset: int, count: int) -> np.ndarray:
    """``count`` ids of ``dtype`` at ``offset``: memory-mapped, so opening is instant."""
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))
