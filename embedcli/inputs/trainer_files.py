"""The trainers' token files as inputs: one reader per :class:`TokenFormat` that recognises
its own files (nanoGPT, llm.c, Megatron, NumPy), asked before the safetensors readers.

A file's name says its format; a pipe has no name, so stdin is sniffed by magic number
(:func:`sniffed`: llm.c's header, NumPy's ``\\x93NUMPY``) or named with ``--format``
(nanoGPT's raw ids have no magic).
"""

from __future__ import annotations

from dataclasses import dataclass

from embedcli.errors import FormatError
from embedcli.formats.base import TokenFormat, TokenSource
from embedcli.inputs.base import Request
from embedcli.progress import ProgressFactory

NPY_MAGIC = b"\x93NUMPY"


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
    shown: list[str] | None = None  # the inputs' names in messages (``<stdin>`` for a spool)

    def load(self, progress: ProgressFactory) -> TokenSource:
        assert self.fmt.read is not None  # only formats with a reader are resolved
        try:
            return self.fmt.read(self.inputs, self.encoding)
        except FormatError as exc:  # name a spooled pipe as the user knows it
            message = str(exc)
            for path, name in zip(self.inputs, self.shown or self.inputs, strict=True):
                message = message.replace(path, name)
            raise FormatError(message) from None


class TokenFormatReader:
    """The input reader of one token format."""

    def __init__(self, fmt: TokenFormat) -> None:
        self.fmt, self.name = fmt, fmt.name

    def claims(self, inputs: list[str]) -> bool:
        return self.fmt.claims is not None and self.fmt.claims(inputs)

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedTokenFile:
        paths = self.fmt.files(inputs)
        return ResolvedTokenFile(
            self.name, paths, 0, self.fmt, list(inputs), request.tokenize.encoding, list(shown)
        )


def sniffed(path: str) -> str | None:
    """The token format a nameless file's first bytes say it is: llm.c or npy, else None."""
    from embedcli.formats.llmc import has_magic

    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError:
        return None
    if head == NPY_MAGIC:
        return "npy"
    return "llmc" if has_magic(path) else None
