"""A split output (``NAME.safetensors.index.json`` and its parts) read back as one file."""

from __future__ import annotations

import os
from dataclasses import dataclass

from embedcli import contract as c
from embedcli.contract import kind_of
from embedcli.errors import FormatError
from embedcli.inputs.base import Request, TokenSource, WindowSource
from embedcli.inputs.safetensors_file import check_windows
from embedcli.progress import ProgressFactory
from embedcli.storage.split import IndexedTensor, is_index, read_index
from embedcli.storage.store import load_array, read_header


class WindowPartsReader:
    """The part files of a split windows output, given directly (any order): one windows file."""

    name = "window-parts"

    def claims(self, inputs: list[str]) -> bool:
        from embedcli.storage.store import is_safetensors

        if len(inputs) < 2 or not all(os.path.isfile(p) and is_safetensors(p) for p in inputs):
            return False
        return all(kind_of(read_header(p).metadata) == "windows" for p in inputs)

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedParts:
        headers = [read_header(p) for p in inputs]
        metas = [h.metadata or {} for h in headers]
        if all(c.PART_INDEX in m for m in metas):
            counts = {c.get_int(m, c.PART_COUNT) for m in metas}
            order = sorted(range(len(headers)), key=lambda k: int(metas[k][c.PART_INDEX]))
            if len(counts) > 1 or len(order) != counts.pop():
                raise FormatError("these windows files are not all the parts of one split output")
            headers = [headers[k] for k in order]
        return ResolvedParts(self.name, list(inputs), 0, headers, request)


@dataclass
class ResolvedParts:
    reader: str
    paths: list[str]
    size: int
    headers: list
    request: Request

    def load(self, progress: ProgressFactory) -> WindowSource:
        import numpy as np

        if not self.request.allow_windows:
            raise FormatError(f"{self.paths[0]}: is already windowed; give a token file or text")
        parts = [load_array(h.path, h.tensor("inputs")) for h in self.headers]
        meta = c.without(self.headers[0].metadata or {}, (c.PART_INDEX, c.PART_COUNT, c.PART_ROWS))
        return WindowSource(check_windows(np.concatenate(parts), self.paths[0]), meta)


class SplitReader:
    name = "split"

    def claims(self, inputs: list[str]) -> bool:
        return len(inputs) == 1 and is_index(inputs[0])

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedSplit:
        doc, tensors, headers = read_index(inputs[0])
        meta = {k: str(v) for k, v in (doc.get("metadata") or {}).items() if k != "total_size"}
        paths = [inputs[0], *(h.path for h in headers)]
        return ResolvedSplit(self.name, paths, 0, shown[0], meta, tensors, request)


@dataclass
class ResolvedSplit:
    reader: str
    paths: list[str]
    size: int
    shown: str
    metadata: dict[str, str]
    tensors: list[IndexedTensor]
    request: Request

    def load(self, progress: ProgressFactory) -> TokenSource | WindowSource:
        import numpy as np

        by_name = {t.name: t for t in self.tensors}
        kind = kind_of(self.metadata)
        if kind == "embeddings":
            raise FormatError(f"{self.shown}: is an embeddings file; give a token or windows file")
        if "inputs" not in by_name or not self.request.allow_windows:
            what = "windowed (has 'inputs')" if "inputs" in by_name else "not a token file"
            raise FormatError(f"{self.shown}: is {what}; give a token file or text")
        pieces = [load_array(h.path, info) for h, info in by_name["inputs"].pieces]
        array = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        return WindowSource(check_windows(array, self.shown), self.metadata)
