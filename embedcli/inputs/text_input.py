"""Text for ``batch`` and ``embed``: documents tokenized on the fly (see ``tokenizer.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from embedcli.documents import Source, check_flag_words, resolve_sources
from embedcli.errors import NotTextError, UsageError
from embedcli.inputs.base import Request, TokenSource
from embedcli.progress import ProgressFactory
from embedcli.storage.store import is_safetensors


class TextReader:
    """The catch-all: text files, directories of them, stdin, jsonl, gzip and zstd."""

    name = "text"

    def claims(self, inputs: list[str]) -> bool:
        return True

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedText:
        check_flag_words(inputs)
        for path in inputs:
            if path != "-" and os.path.isfile(path) and is_safetensors(path):
                raise UsageError(f"{path}: give either token files or text, not both")
        skipped: list[str] = []
        opts = request.tokenize
        sources = resolve_sources(inputs, opts.format, include=opts.include, skipped=skipped)
        if shown != inputs:  # a spooled pipe keeps its own name
            sources = [replace(s, label=label) for s, label in zip(sources, shown, strict=True)]
        size = sum(s.size for s in sources)
        return ResolvedText(self.name, [s.path for s in sources], size, sources, request, skipped)


@dataclass
class ResolvedText:
    reader: str
    paths: list[str]
    size: int
    sources: list[Source]
    request: Request
    skipped: list[str]

    def load(self, progress: ProgressFactory) -> TokenSource:
        from embedcli.bpe.pieces import MemorySink
        from embedcli.bpe.tokenizer import tokenize_with
        from embedcli.bpe.value import Tokenizer

        opts, sink = self.request.tokenize, MemorySink()
        tok = Tokenizer.of(opts.encoding, opts.special or "special", opts.backend)  # the one
        try:
            with progress("tokenize", self.size, "bytes") as advance:
                stats = tokenize_with(tok, opts, self.sources, sink, on_progress=advance)
        except NotTextError as exc:  # a token stream read as text: say how to read it
            raise NotTextError(
                f"{exc}; if it holds token ids, name their format: --format nanogpt, llmc or npy"
            ) from None
        stats.skipped = self.skipped
        return TokenSource(sink.array(), stats.doc_offsets, stats.metadata(), stats)
