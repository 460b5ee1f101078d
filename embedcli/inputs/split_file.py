"""A split output (``NAME.safetensors.index.json`` and its parts) read back as one file."""

from __future__ import annotations

from dataclasses import dataclass

from ..contract import kind_of
from ..errors import FormatError
from ..progress import ProgressFactory
from ..split import IndexedTensor, is_index, read_index
from ..store import load_array
from .base import Request, TokenSource, WindowSource
from .safetensors_file import check_windows


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
