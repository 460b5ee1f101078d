"""``embedcli.Tokens``: token ids of documents as a value a caller holds, with no file needed.

    >>> import numpy as np, embedcli as ec
    >>> tokens = ec.Tokens.from_ids(np.array([15496, 50256, 3886, 68]), doc_offsets=[0, 2, 4])
    >>> len(tokens), tokens.n_documents, tokens.document(1).tolist()
    (4, 2, [3886, 68])

``Tokens.open(path)`` reads any token file embedcli reads (its safetensors, nanoGPT, llm.c shard
sets, Megatron pairs, npy, manifests, several files) as memory-mapped segments, never joined;
``Tokens.from_text(paths, tokenizer=...)`` makes one from text as ``embedcli tokenize`` does; ``save``
writes any ``--to`` format through an output set (all of its files or none); ``windows``
gives the windows ``embedcli batch`` would write (a :class:`Windows`), ``dataset`` a
training loop's :class:`TokenWindows`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embedcli import contract as c
from embedcli.errors import UsageError
from embedcli.options import (
    DEFAULT_ENCODING,
    DEFAULT_SEED,
    EotPlacement,
    IdsDtype,
    WindowOptions,
)
from embedcli.paths import PathArg, one_path, path_list
from embedcli.stages.segmented import Segmented

if TYPE_CHECKING:
    from embedcli.bpe.value import Tokenizer
    from embedcli.stages.windows_value import Windows
    from embedcli.token_windows import TokenWindows


class Tokens:
    """Ids (``len()`` of them) and where each document starts (``doc_offsets``: one more
    than ``n_documents``, or None where the file marks no documents), with the lineage
    metadata token files carry (``metadata``: encoding, vocab size, separator...)."""

    def __init__(
        self,
        segments: Sequence[np.ndarray],
        doc_offsets: np.ndarray | None,
        metadata: dict[str, str],
        paths: Sequence[str] = (),
    ) -> None:
        self.segments = list(segments)
        self.doc_offsets = None if doc_offsets is None else np.asarray(doc_offsets, np.int64)
        self.metadata, self.paths = dict(metadata), list(paths)

    @classmethod
    def open(cls, path: PathArg | Sequence[PathArg]) -> Tokens:
        """The token file(s) at ``path``, memory-mapped, as ``batch`` and ``mix`` read them."""
        from embedcli.inputs import Request, TokenSource, open_input
        from embedcli.progress import no_progress

        paths = path_list(path)
        with open_input(paths, Request()) as found:
            if found.reader == "text":
                raise UsageError(f"{paths[0]} is text: tokenize it (Tokenizer(...).tokenize)")
            source = found.load(no_progress)
            if not isinstance(source, TokenSource):
                raise UsageError(f"{paths[0]} holds windows, not token ids")
            return cls(source.segments, source.doc_offsets, source.metadata, found.paths)

    @classmethod
    def from_ids(
        cls,
        ids: Sequence[int] | np.ndarray,
        doc_offsets: Sequence[int] | np.ndarray | None = None,
        *,
        tokenizer: str | Tokenizer = DEFAULT_ENCODING,
        eot: EotPlacement = "between",
    ) -> Tokens:
        """Ids in memory, of ``tokenizer``'s vocabulary (a name, or a :class:`Tokenizer`),
        their separators placed as ``eot`` says, documents starting at ``doc_offsets``."""
        from embedcli.bpe.value import Tokenizer

        tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer)
        array = np.asarray(ids)
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise UsageError(f"ids must be a 1-D integer array, not {array.dtype} {array.shape}")
        offsets = None if doc_offsets is None else np.asarray(doc_offsets, np.int64)
        rising = offsets is None or (
            offsets.size >= 1
            and offsets[0] == 0
            and offsets[-1] == array.size
            and not (np.diff(offsets) < 0).any()
        )
        if not rising:
            raise UsageError("doc_offsets must rise from 0 to len(ids)")
        separator = tok.eos_id if eot != "before" else (tok.bos_id or tok.eos_id)
        facts: dict[str, Any] = {
            c.ENCODING: tok.encoding,
            c.VOCAB_SIZE: tok.n_vocab,
            c.EOT_ID: separator,
            c.EOT_PLACEMENT: eot,
            c.SPECIAL: tok.special,
            c.DOCUMENTS: 0 if offsets is None else offsets.size - 1,
            c.TOKENS: array.size,
            c.SOURCES: [],
        }
        meta = c.stage_metadata("tokens", facts)
        return cls([array.astype(np.int32, copy=False)], offsets, meta)

    @classmethod
    def from_text(
        cls,
        inputs: PathArg | Sequence[PathArg],
        *,
        tokenizer: str | Tokenizer = DEFAULT_ENCODING,
        eot: EotPlacement = "between",
    ) -> Tokens:
        """Text files, directories, jsonl or Parquet tokenized as ``embedcli tokenize`` does
        (documents, separators, engines), the ids held in memory."""
        import tempfile

        from embedcli.bpe.value import Tokenizer
        from embedcli.options import TokenizeOptions
        from embedcli.stages.tokenize import run_tokenize

        tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer)
        opts = TokenizeOptions(
            encoding=tok.encoding, special=tok.special, backend=tok.backend, eot=eot
        )
        with tempfile.TemporaryDirectory(prefix="embedcli-tokens-") as tmp:
            out = os.path.join(tmp, "t.tokens.safetensors")
            run_tokenize(path_list(inputs), out, opts)
            found = cls.open(out)
            # in memory: the file goes with the directory
            ids, offsets = np.array(found.ids), found.doc_offsets
            return cls([ids], None if offsets is None else np.array(offsets), found.metadata)

    @property
    def ids(self) -> np.ndarray:
        """All ids as one array (the segments joined, in memory, where there are several)."""
        if len(self.segments) == 1:
            return self.segments[0]
        return np.concatenate(self.segments) if self.segments else np.zeros(0, np.int32)

    def __len__(self) -> int:
        return sum(int(s.size) for s in self.segments)

    @property
    def n_documents(self) -> int | None:
        return None if self.doc_offsets is None else int(self.doc_offsets.size - 1)

    @property
    def encoding(self) -> str:
        return self.metadata.get(c.ENCODING, DEFAULT_ENCODING)

    def document(self, i: int) -> np.ndarray:
        """Document ``i``'s ids, its separator included where its placement gives it one."""
        if self.doc_offsets is None:
            raise UsageError("these ids mark no documents")
        a, b = (int(x) for x in self.doc_offsets[i : i + 2])
        return Segmented(self.segments).span(a, b)  # the segments are never joined for it

    def save(
        self,
        path: PathArg,
        *,
        format: str | None = None,  # noqa: A002 (the --to option's name)
        no_clobber: bool = False,
    ) -> list[str]:
        """Write the ids as ``format`` (a ``--to`` name; by default as the name says, else
        embedcli's safetensors): the paths written, all of them committed together."""
        from embedcli.formats import format_for
        from embedcli.stages.staging import SpillSink, spill_file
        from embedcli.storage.output_set import OutputSet
        from embedcli.storage.outputs import check_output

        output = one_path(path, "output")
        fmt = format_for(format, output)
        check_output(output, inputs=self.paths, no_clobber=no_clobber)
        offsets = self.doc_offsets
        if offsets is None:
            offsets = np.array([0, len(self)], np.int64)
        with contextlib.ExitStack() as stack:
            sink = SpillSink(stack.enter_context(spill_file(output)), output)
            for segment in self.segments:
                sink.write(np.asarray(segment).astype(np.int32, copy=False))
            sink.f.flush()
            files = stack.enter_context(OutputSet(no_clobber=no_clobber))
            meta = {**self.metadata, c.TOKENS: c.to_str(sink.count)}
            paths = fmt.write(
                output,
                sink.f,
                sink.count,
                offsets,
                meta,
                inputs=self.paths,
                no_clobber=no_clobber,
                files=files,
            )
            files.commit()
        return paths

    def windows(
        self,
        max_length: int | None = None,
        stride: int | None = None,
        *,
        batch_size: int | None = None,
        shuffle: bool = False,
        seed: int = DEFAULT_SEED,
        drop_last: bool = True,
        num_batches: int | None = None,
        cross_docs: bool = True,
        dtype: IdsDtype = "int64",
    ) -> Windows:
        """The windows ``embedcli batch`` makes of these ids with the same options (and
        defaults: ``max_length`` 256, ``stride`` ``max_length``, batches of 1 as the
        ``DataLoader``'s, a last partial batch dropped): planned now, gathered when asked,
        ``save`` writing batch's bytes."""
        from embedcli.formats.base import TokenSource
        from embedcli.stages.windows_value import Windows

        opts = WindowOptions(
            max_length=max_length, stride=stride, batch_size=batch_size, drop_last=drop_last,
            num_batches=num_batches, shuffle=shuffle, seed=seed, cross_docs=cross_docs,
            dtype=dtype,
        )  # fmt: skip
        source = TokenSource(None, self.doc_offsets, self.metadata, segments=self.segments)
        return Windows(source, opts, self.paths)

    def dataset(
        self, max_length: int, stride: int | None = None, *, cross_docs: bool = True
    ) -> TokenWindows:
        """A training loop's dataset of these ids: a :class:`TokenWindows` (every window,
        ``(inputs, targets)`` as int64 tensors, read from the files where these came from
        one; for ``create_dataloader``-style shuffled batches)."""
        from embedcli.token_windows import TokenStream, TokenWindows

        # from the files where these came from them; else these ids, documents and all
        source: Any = self.paths or TokenStream(self.segments, self.doc_offsets, self.metadata)
        return TokenWindows(source, max_length, stride, cross_docs=cross_docs)

    def __repr__(self) -> str:
        n = self.n_documents
        docs = "no documents" if n is None else f"{n:,} document{'' if n == 1 else 's'}"
        return f"Tokens({len(self):,} ids, {docs}, encoding={self.encoding!r})"
