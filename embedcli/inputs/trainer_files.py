"""The trainers' token files as inputs: one reader per :class:`TokenFormat` that recognises
its own files (nanoGPT, llm.c, Megatron, NumPy), asked before the safetensors readers."""

from __future__ import annotations

from dataclasses import dataclass

from embedcli.formats.base import TokenFormat, TokenSource
from embedcli.inputs.base import Request
from embedcli.progress import ProgressFactory


@dataclass
class ResolvedTokenFile:
    """A trainer's token file found by its reader: ``load()`` reads the ids (memory-mapped)
    and the lineage; ``encoding`` says whose ids a file from elsewhere holds."""

    reader: str
    paths: list[str]
    size: int
    fmt: TokenFormat
    inputs: list[str]
    encoding: str

    def load(self, progress: ProgressFactory) -> TokenSource:
        assert self.fmt.read is not None  # only formats with a reader are resolved
        return self.fmt.read(self.inputs, self.encoding)


class TokenFormatReader:
    """The input reader of one token format."""

    def __init__(self, fmt: TokenFormat) -> None:
        self.fmt, self.name = fmt, fmt.name

    def claims(self, inputs: list[str]) -> bool:
        return self.fmt.claims is not None and self.fmt.claims(inputs)

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedTokenFile:
        paths = self.fmt.files(inputs)
        return ResolvedTokenFile(
            self.name, paths, 0, self.fmt, list(inputs), request.tokenize.encoding
        )
