"""``embedcli.Tokenizer``: a tokenizer as a value a caller holds, built once.

GPT-2 and tiktoken's other encodings by name, or another model's tokenizer file (a
``tokenizer.json``, a SentencePiece ``.model``, a tiktoken rank file, a model directory, a
hub name in the local Hugging Face cache), with the reference library's ids exactly::

    >>> import embedcli as ec
    >>> tok = ec.Tokenizer("gpt2")
    >>> tok.encode("Hello, world").tolist(), tok.eos_id, tok.n_vocab
    ([15496, 11, 995], 50256, 50257)
    >>> [ids.tolist() for ids in tok.encode_batch(["Hello", "Bye"])]
    [[15496], [3886, 68]]
    >>> tok.decode([15496, 11, 995])
    'Hello, world'

``encode_batch`` runs as ``embedcli tokenize`` does (the fast engine where it passes its
self-check, documents in parallel), one array per document.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from embedcli import contract as c
from embedcli.bpe.encodings import (
    decode_leniently,
    encode_kwargs,
    eot_id,
    get_encoding,
    known_encodings,
    separator,
)
from embedcli.bpe.engines import (
    SMALL_INPUT_BYTES,
    Choice,
    check_backend,
    choose_backend,
    reference_name,
)
from embedcli.bpe.foreign import (
    REFERENCE,
    ForeignEncoding,
    describe,
    is_foreign,
    resolve_spec,
    tokenizer_fields,
)
from embedcli.bpe.pieces import PIECE_CHARS, MemorySink, TokenizeStats, text_pieces
from embedcli.bpe.pool import OrderedEncoder, Stream
from embedcli.errors import UsageError
from embedcli.options import DEFAULT_ENCODING, EOT_MODES, Backend, EotPlacement, SpecialPolicy

if TYPE_CHECKING:
    import numpy as np
    import tiktoken


class Tokenizer:
    """A tokenizer: ``name`` is a tiktoken encoding (``gpt2``, ``cl100k_base``) or a
    tokenizer file, directory or local hub name (see :meth:`from_file`).

    ``special`` is what a literal special token in the text becomes (``special``: the token,
    as the reference does; ``text``: text, as the trainers' data scripts do; ``error``:
    refused); ``backend`` the engine (``auto``: gigatoken where it is exact)."""

    def __init__(
        self,
        name: str | os.PathLike[str] = DEFAULT_ENCODING,
        *,
        special: SpecialPolicy = "special",
        backend: Backend = "auto",
    ) -> None:
        name = os.fspath(name)
        path_like = not is_foreign(name) and (os.path.exists(name) or os.sep in name)
        if path_like and name not in known_encodings():  # a directory called gpt2: the name
            name = resolve_spec(name)  # a file or directory: another model's tokenizer
        encode_kwargs(special)  # an unknown policy is refused here, not at the first encode
        self.encoding, self.special, self.backend = name, special, backend
        self._enc = get_encoding(name)  # built once; loading errors are raised here
        self._chosen: dict[bool, Choice] = {}  # the engine, chosen on first use (small: True)

    @classmethod
    def _of(
        cls, spec: str, special: SpecialPolicy, backend: Backend, enc: tiktoken.Encoding
    ) -> Tokenizer:
        """A tokenizer from what another has already resolved and built (no lookup)."""
        encode_kwargs(special)
        check_backend(backend)
        tok = cls.__new__(cls)
        tok.encoding, tok.special, tok.backend, tok._enc = spec, special, backend, enc
        tok._chosen = {}
        return tok

    @classmethod
    def of(cls, encoding: str | Tokenizer, special: SpecialPolicy, backend: Backend) -> Tokenizer:
        """``encoding`` (an encoding name or ``file:/`` spec, as the options carry it, or a
        tokenizer already built) under ``special`` and ``backend``: a stage builds its one
        tokenizer so. A built one is reused, its loaded encoding shared; a name is taken as
        it is (never as a path: a directory called ``gpt2`` stays beside the point)."""
        if isinstance(encoding, Tokenizer):
            return encoding.using(special=special, backend=backend)
        return cls._of(encoding, special, backend, get_encoding(encoding))

    def using(
        self, *, special: SpecialPolicy | None = None, backend: Backend | None = None
    ) -> Tokenizer:
        """This tokenizer under another special-token policy or engine, its loaded encoding
        shared (itself where nothing changes)."""
        special, backend = special or self.special, backend or self.backend
        if (special, backend) == (self.special, self.backend):
            return self
        return Tokenizer._of(self.encoding, special, backend, self._enc)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        pattern: str | None = None,
        special_tokens: str | os.PathLike[str] | None = None,
        normalizer: str | None = None,
        bos: str | None = None,
        eos: str | None = None,
        special: SpecialPolicy = "special",
        backend: Backend = "auto",
    ) -> Tokenizer:
        """Another model's tokenizer file, as ``--tokenizer`` with ``--tokenizer-option``:
        ``pattern``, ``special_tokens`` (a JSON file of ``{text: id}``) and ``normalizer`` for
        a rank file embedcli does not know, ``bos``/``eos`` to name the document markers."""
        tokens = os.fspath(special_tokens) if special_tokens is not None else None
        spec = resolve_spec(
            os.fspath(path), pattern=pattern, special_tokens=tokens, normalizer=normalizer,
            bos=bos, eos=eos,
        )  # fmt: skip
        return cls(spec, special=special, backend=backend)

    @property
    def spec(self) -> str:
        """A short printable identity: the encoding's name, or the file's name and options."""
        return describe(self.encoding)

    @property
    def n_vocab(self) -> int:
        return int(self._enc.n_vocab)

    @property
    def bos_id(self) -> int | None:
        """The token that opens a document, where the tokenizer has one."""
        enc = self._enc
        return enc.bos[1] if isinstance(enc, ForeignEncoding) and enc.bos else None

    @property
    def eos_id(self) -> int | None:
        """The token that ends a document (GPT-2's ``<|endoftext|>``)."""
        enc = self._enc
        if isinstance(enc, ForeignEncoding):
            return enc.eos[1] if enc.eos else None
        return int(enc.eot_token)

    @property
    def engine(self) -> str:
        """The engine that encodes a corpus with this tokenizer (``gigatoken``, or the
        reference: ``tiktoken``, ``tokenizers``, ``sentencepiece``), as ``tokenize`` chooses it
        for an input of 1 MB or more (smaller ones take the reference: building the fast
        engine costs more than it saves); :attr:`engine_note` says why where it is not the
        one ``backend`` asked for. Chosen on first use: the fast engine's self-check runs then
        (its verdict is kept on the machine)."""
        name = self._choice().name
        return name if name == "gigatoken" else reference_name(self._enc)

    @property
    def engine_note(self) -> str | None:
        """Why :attr:`engine` is not the one asked for (``None``: it is)."""
        return self._choice().note

    @property
    def built(self) -> tiktoken.Encoding:
        """The encoding itself: tiktoken's ``Encoding``, or for a tokenizer file embedcli's
        wrapper of its library (the same methods)."""
        return self._enc

    def choice(self, input_bytes: int | None = None) -> Choice:
        """The engine for a run over ``input_bytes`` of text (None: not known), chosen once
        for each kind of input (under :data:`~embedcli.bpe.engines.SMALL_INPUT_BYTES` the
        reference starts faster): the fast engine's self-check runs the first time."""
        small = input_bytes is not None and input_bytes < SMALL_INPUT_BYTES
        if small not in self._chosen:
            size = input_bytes if small else None
            self._chosen[small] = choose_backend(self.backend, self.encoding, self.special, size)
        return self._chosen[small]

    def _choice(self) -> Choice:  # a corpus's engine
        return self.choice(None)

    def encode(self, text: str) -> np.ndarray:
        """The ids of one document (int32), no separator."""
        if not isinstance(text, str):
            raise TypeError(
                f"encode takes one str; for several use encode_batch (got {type(text).__name__})"
            )
        return self.encode_batch([text], workers=1)[0]

    def encode_batch(self, texts: Iterable[str], *, workers: int | None = None) -> list[np.ndarray]:
        """The ids of each document (int32 arrays), in order, encoded in parallel."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of str; for one document use encode")
        return encode_documents(texts, self, workers=workers)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids`` (an id the vocabulary does not have: ``<invalid id N>``)."""
        return decode_leniently(self._enc, [int(i) for i in ids])

    def __repr__(self) -> str:
        return f"Tokenizer({self.spec!r}, n_vocab={self.n_vocab:,}, special={self.special!r})"


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def encode_documents(
    texts: Iterable[str], tokenizer: Tokenizer, *, workers: int | None = None
) -> list[np.ndarray]:
    """The ids of each document, one int32 array each, no separators: the reference
    library's ids exactly, encoded as ``tokenize`` encodes (the tokenizer's engine, long
    documents in pieces, ``workers`` processes or threads)."""
    docs = list(texts)
    stats, chosen = start_run(tokenizer, "none", sum(len(d) for d in docs))
    sink = MemorySink()
    stream = Stream(sink, stats)
    workers = max(1, workers or default_workers())
    threads = chosen.name == "gigatoken"
    special = tokenizer.special
    key = (chosen.name, tokenizer.encoding, special, "none")
    with OrderedEncoder(key, [stream], workers, threads) as e:
        submit_pieces(e, text_pieces(docs, special, stats, PIECE_CHARS), PIECE_CHARS)
    ids, offsets = sink.array(), stream.doc_offsets()
    return [ids[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]


def start_run(
    tok: Tokenizer, eot: EotPlacement, input_bytes: int | None = None
) -> tuple[TokenizeStats, Choice]:
    """The checks every run makes before any worker starts (the tokenizer was built before
    any fork, so workers share it), the engine chosen (``input_bytes``: how much there is to
    encode, when known), and the counts to fill in."""
    if eot not in EOT_MODES:
        raise UsageError(f"unknown --eot {eot!r}; use one of {', '.join(EOT_MODES)}")
    chosen = tok.choice(input_bytes)
    stats = empty_counts(tok, eot)
    stats.backend, stats.backend_note = chosen.name, chosen.note
    if stats.tokenizer and chosen.name == "tiktoken":  # the reference: the file's own library
        stats.backend = REFERENCE[stats.tokenizer[c.TOKENIZER_KIND]]
    return stats, chosen


def empty_counts(tok: Tokenizer, eot: EotPlacement) -> TokenizeStats:
    """Empty counts for a run: the encoding's size, its document marker for ``eot`` and, for
    another model's tokenizer, what the metadata records of it."""
    enc, encoding, special = tok.built, tok.encoding, tok.special
    if not isinstance(enc, ForeignEncoding):
        return TokenizeStats(encoding, enc.n_vocab, eot_id(enc), special, eot)
    # --eot none needs no marker: a tokenizer without BOS and EOS can still run so.
    mark = separator(enc, eot) if eot != "none" or enc.eos or enc.bos else ("", -1)
    stats = TokenizeStats(encoding, enc.n_vocab, mark[1], special, eot)
    stats.separator_text, stats.cuttable = mark[0], enc.cuttable
    stats.special_texts = tuple(t for t in enc.special_tokens if t)
    stats.tokenizer = tokenizer_fields(enc)
    return stats


def submit_pieces(
    encoder: OrderedEncoder,
    pieces: Iterator[tuple[str, bool, int, int]],
    size: int,
    file: int = 0,
) -> None:
    """Small documents (jsonl lines) are grouped into tasks of about ``size`` characters, so
    100k tiny documents cost 100 hand-offs, not 100k; ``file``: the source they come from."""
    task: list[tuple[str, bool, int, int]] = []
    chars = 0
    for item in pieces:
        task.append(item)
        chars += len(item[0])
        if chars >= size:
            encoder.submit(task, file)
            task, chars = [], 0
    if task:
        encoder.submit(task, file)
