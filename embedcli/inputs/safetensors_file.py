"""One safetensors file: an embedcli token or windows file, or any file with 1-D integer ids."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedcli.contract import kind_of
from embedcli.errors import FormatError
from embedcli.formats.base import check_ids
from embedcli.inputs.base import Request, TokenSource, WindowSource
from embedcli.progress import ProgressFactory
from embedcli.storage.store import INTEGER_DTYPES, Header, load_array, memmap_array, read_header
from embedcli.storage.store import is_safetensors as _sniff

if TYPE_CHECKING:
    import numpy as np


class SafetensorsReader:
    name = "safetensors"

    def claims(self, inputs: list[str]) -> bool:
        return len(inputs) == 1 and os.path.isfile(inputs[0]) and _sniff(inputs[0])

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedFile:
        header = read_header(inputs[0])
        if kind_of(header.metadata or {}) == "tokens":  # one side of a pair cut in two: refused
            from embedcli.formats.safetensors import check_pair

            check_pair(inputs[0], header.metadata or {})
        header.path = shown[0]
        return ResolvedFile(self.name, [inputs[0]], 0, inputs[0], header, request)


@dataclass
class ResolvedFile:
    reader: str
    paths: list[str]
    size: int
    path: str  # where the bytes are (a spool for stdin)
    header: Header  # its path is the name shown in messages
    request: Request

    def load(self, progress: ProgressFactory) -> TokenSource | WindowSource:
        header, key = self.header, self.request.key
        meta = dict(header.metadata or {})
        kind = kind_of(meta)
        names = {t.name for t in header.tensors}
        if kind == "embeddings":
            raise FormatError(f"{header.path}: is an embeddings file; give a token or windows file")
        if kind == "windows" or (key not in names and "inputs" in names):
            return WindowSource(self._windows(), meta)
        info = header.tensor(key)
        if info.dtype not in INTEGER_DTYPES:
            raise FormatError(f"{header.path}: {key!r} must be integer ids, got {info.dtype}")
        ids = check_ids(memmap_array(self._data_header(), info), where=header.path)
        offsets = None
        if "doc_offsets" in names and kind == "tokens":
            offsets = load_array(self.path, header.tensor("doc_offsets")).astype("int64")
        return TokenSource(ids, offsets, meta)

    def _data_header(self) -> Header:
        """The header with the path the bytes are at (a spool for stdin)."""
        from dataclasses import replace

        return replace(self.header, path=self.path)

    def _windows(self) -> np.ndarray:
        if not self.request.allow_windows:
            raise FormatError(
                f"{self.header.path}: is already windowed (has 'inputs'); give a token file or text"
            )
        return check_windows(load_array(self.path, self.header.tensor("inputs")), self.header.path)


def check_windows(array: np.ndarray, where: str) -> np.ndarray:
    """A 2-D integer ``inputs`` tensor (a batched ``(K, B, T)`` one is seen as ``(K*B, T)``),
    or a clear error."""
    if array.ndim == 3 and array.dtype.kind in "iu":
        array = array.reshape(-1, array.shape[-1])
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise FormatError(
            f"{where}: 'inputs' must be a 2-D integer tensor, got {tuple(array.shape)} {array.dtype}"
        )
    return array
