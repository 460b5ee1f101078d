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
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from embedcli.options import DEFAULT_ENCODING, Backend, SpecialPolicy

if TYPE_CHECKING:
    import numpy as np

    from embedcli.bpe.engines import Choice


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
        from embedcli.bpe.encodings import encode_kwargs, get_encoding
        from embedcli.bpe.foreign import is_foreign, resolve_spec

        name = os.fspath(name)
        if not is_foreign(name) and (os.path.exists(name) or os.sep in name):
            name = resolve_spec(name)  # a file or directory: another model's tokenizer
        encode_kwargs(special)  # an unknown policy is refused here, not at the first encode
        self.encoding, self.special, self.backend = name, special, backend
        self._enc = get_encoding(name)  # built once; loading errors are raised here
        self._chosen: Choice | None = None  # the engine, chosen on first use

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
        from embedcli.bpe.foreign import resolve_spec

        tokens = os.fspath(special_tokens) if special_tokens is not None else None
        spec = resolve_spec(
            os.fspath(path), pattern=pattern, special_tokens=tokens, normalizer=normalizer,
            bos=bos, eos=eos,
        )  # fmt: skip
        return cls(spec, special=special, backend=backend)

    @property
    def spec(self) -> str:
        """A short printable identity: the encoding's name, or the file's name and options."""
        from embedcli.bpe.foreign import describe

        return describe(self.encoding)

    @property
    def n_vocab(self) -> int:
        return int(self._enc.n_vocab)

    @property
    def bos_id(self) -> int | None:
        """The token that opens a document, where the tokenizer has one."""
        from embedcli.bpe.foreign import ForeignEncoding

        enc = self._enc
        return enc.bos[1] if isinstance(enc, ForeignEncoding) and enc.bos else None

    @property
    def eos_id(self) -> int | None:
        """The token that ends a document (GPT-2's ``<|endoftext|>``)."""
        from embedcli.bpe.foreign import ForeignEncoding

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
        from embedcli.bpe.engines import reference_name

        name = self._choice().name
        return name if name == "gigatoken" else reference_name(self._enc)

    @property
    def engine_note(self) -> str | None:
        """Why :attr:`engine` is not the one asked for (``None``: it is)."""
        return self._choice().note

    def _choice(self) -> Choice:  # chosen once
        if self._chosen is None:
            from embedcli.bpe.engines import SMALL_INPUT_BYTES, choose_backend

            self._chosen = choose_backend(self.backend, self.encoding, self.special,
                                          SMALL_INPUT_BYTES)  # fmt: skip
        return self._chosen

    def encode(self, text: str) -> np.ndarray:
        """The ids of one document (int32), no separator."""
        if not isinstance(text, str):
            raise TypeError(
                f"encode takes one str; for several use encode_batch (got {type(text).__name__})"
            )
        return self.encode_batch([text], workers=1)[0]

    def encode_batch(self, texts: Iterable[str], *, workers: int | None = None) -> list[np.ndarray]:
        """The ids of each document (int32 arrays), in order, encoded in parallel."""
        from embedcli.bpe.tokenizer import encode_documents

        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of str; for one document use encode")
        return encode_documents(
            texts, encoding=self.encoding, special=self.special, backend=self.backend,
            workers=workers,
        )  # fmt: skip

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids`` (an id the vocabulary does not have: ``<invalid id N>``)."""
        from embedcli.bpe.encodings import decode_leniently

        return decode_leniently(self._enc, [int(i) for i in ids])

    def __repr__(self) -> str:
        return f"Tokenizer({self.spec!r}, n_vocab={self.n_vocab:,}, special={self.special!r})"
