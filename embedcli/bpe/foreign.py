"""Other models' tokenizers, each exact against its own library: a Hugging Face
``tokenizer.json`` (``tokenizers``), a SentencePiece ``.model`` (``sentencepiece``), and a
tiktoken-format rank file such as Llama 3's ``tokenizer.model`` (tiktoken, with the family's
pattern and special tokens: :mod:`embedcli.bpe.rank_files`).

A :class:`ForeignEncoding` answers the few questions the pipeline asks of a tiktoken
``Encoding`` (``encode_to_numpy``, ``decode``, ``n_vocab``...), so the engines, the worker pool
and the readers take it as they take GPT-2; and it knows what tiktoken's encodings leave to
``<|endoftext|>``: which token begins a document (BOS) and which ends one (EOS).

Documents of ``tokenizer.json`` and SentencePiece models are encoded whole: their normalizers
and prefix-space rules make a cut inside a document change the ids (``cuttable`` is False). A
rank file's pattern is tiktoken's kind, and its documents are cut at the same safe points.

The specs it takes (:func:`resolve_spec`): a file, a model directory (a downloaded snapshot,
with ``tokenizer.json``, or ``tokenizer.model``), or a hub name (``org/name``) found in the
local Hugging Face cache. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from embedcli.errors import EncodingLoadError, UsageError
from embedcli.options import EotPlacement

# The library that defines each kind of file's ids: the reference engine.
REFERENCE = {
    "tokenizer.json": "tokenizers",
    "sentencepiece": "sentencepiece",
    "tiktoken": "tiktoken",
}
PREFIX = "file:"  # an encoding name that is a tokenizer file: file:/abs/path
EXTRA = "pip install -e '.[hf]'"

# Names a tokenizer's document markers usually have, when its config names none.
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "[CLS]")
EOS_NAMES = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "[SEP]")


@dataclass
class ForeignEncoding:
    """One tokenizer file, loaded: encode and decode as its library does."""

    name: str  # the encoding name runs record: file:/abs/path
    kind: str  # tokenizer.json, sentencepiece or tiktoken
    path: str
    sha256: str
    n_vocab: int
    special_tokens: dict[str, int]  # literal text -> id
    bos: tuple[str, int] | None
    eos: tuple[str, int] | None
    cuttable: bool  # documents may be cut at safe points (a tiktoken-style pattern)
    normalizer: str = field(default="none", init=False)  # a rank file's (NORMALIZERS)
    _encode: Callable[[str, bool], Any] = field(repr=False)  # (text, parse specials) -> ids
    _decode: Callable[[list[int]], str] = field(repr=False)
    _token_bytes: Callable[[int], bytes] = field(repr=False)

    # ---------------------------------------------------------------- tiktoken's interface
    def encode_to_numpy(
        self, text: str, *, allowed_special: Any = (), disallowed_special: Any = ()
    ) -> Any:
        import numpy as np

        ids = self._encode(text, bool(allowed_special))
        return np.asarray(ids, dtype=np.uint32)

    def encode(
        self, text: str, *, allowed_special: Any = (), disallowed_special: Any = ()
    ) -> list[int]:
        return [int(i) for i in self._encode(text, bool(allowed_special))]

    def decode(self, ids: list[int]) -> str:
        return self._decode([int(i) for i in ids])

    def decode_single_token_bytes(self, token: int) -> bytes:
        return self._token_bytes(int(token))

    def normalize(self, text: str) -> str:
        """``text`` as a rank file's family encodes it (``unicodedata.normalize``); as it is
        for every other tokenizer (its library normalizes inside the encode)."""
        if self.normalizer == "none":
            return text
        return unicodedata.normalize(self.normalizer, text)  # type: ignore[arg-type]

    def encode_single_token(self, text: str) -> int:
        if text in self.special_tokens:
            return self.special_tokens[text]
        raise KeyError(text)

    # ---------------------------------------------------------------- documents
    def separator(self, placement: EotPlacement) -> tuple[str, int]:
        """The token that marks documents: the BOS where it goes before each, the EOS where
        it goes after or between them (either where the tokenizer has only one)."""
        first, second = (self.bos, self.eos) if placement == "before" else (self.eos, self.bos)
        chosen = first or second
        if chosen is None:
            raise EncodingLoadError(
                f"{self.path}: the tokenizer names no BOS or EOS token to mark documents; "
                "use --eot none"
            )
        return chosen


def tokenizer_fields(enc: ForeignEncoding) -> dict[str, str]:
    """What token files record of the tokenizer (``contract.py``'s tokenizer keys)."""
    from embedcli import contract as c

    fields = {
        c.TOKENIZER_KIND: enc.kind,
        c.TOKENIZER_FILE: enc.path,
        c.TOKENIZER_SHA256: enc.sha256,
    }
    if enc.bos is not None:
        fields[c.BOS_ID] = str(enc.bos[1])
    if enc.eos is not None:
        fields[c.EOS_ID] = str(enc.eos[1])
    if enc.normalizer != "none":
        fields[c.TOKENIZER_NORMALIZER] = enc.normalizer
    return fields


def is_foreign(name: str) -> bool:
    return name.startswith(PREFIX)


def resolve_spec(spec: str, **choices: str | None) -> str:
    """The encoding name (``file:/abs/path``) of a ``--tokenizer`` spec: a file, a model
    directory, or a hub name in the local Hugging Face cache. ``choices`` the file cannot say
    (``bos``/``eos``: the document markers by name; ``pattern`` and ``special_tokens``, a JSON
    file of ``{text: id}``, for a rank file embedcli does not know) join the name as a query,
    so that every process and every later reader of the token file builds the same tokenizer.

    Example:
        >>> resolve_spec("tokenizer.model", eos="<|eot_id|>")             # doctest: +SKIP
        'file:/home/me/tokenizer.model?eos=%3C%7Ceot_id%7C%3E'
    """
    name = _locate(spec)
    given = {k: v for k, v in choices.items() if v is not None}
    if given.get("special_tokens"):
        given["special_tokens"] = os.path.abspath(str(given["special_tokens"]))
    if not given:
        return name
    from urllib.parse import urlencode

    return f"{name}?{urlencode(sorted(given.items()))}"


def describe(name: str) -> str:
    """An encoding name as a person reads it: a tiktoken encoding's own name, or a tokenizer
    file's name with what the command line added (the full name, URL-encoded, stays in the
    metadata, so a file can be decoded later).

    Example:
        >>> describe("file:/m/ranks.tiktoken?normalizer=NFC&pattern=%5Cs%2B")
        'ranks.tiktoken (pattern given, normalizer NFC)'
    """
    if not is_foreign(name):
        return name
    from urllib.parse import parse_qsl

    path, _, query = name[len(PREFIX) :].partition("?")
    shown: list[str] = []
    for key, value in sorted(parse_qsl(query)):
        if key == "pattern":
            shown.insert(0, "pattern given")
        elif key == "special_tokens":
            shown.append(f"special tokens from {os.path.basename(value)}")
        else:
            shown.append(f"{key} {value}")
    base = os.path.basename(path)
    if base in ("tokenizer.json", "tokenizer.model"):  # say which model's
        base = os.path.join(os.path.basename(os.path.dirname(path)), base)
    return f"{base} ({', '.join(shown)})" if shown else base


def decoding_name(spec: str) -> str:
    """The encoding name of ``inspect --tokenizer SPEC``: a tiktoken encoding's own name
    (``gpt2``, ``cl100k_base``), else a ``--tokenizer`` spec resolved as :func:`resolve_spec`."""
    if "/" not in spec and not os.path.exists(os.path.expanduser(spec)):
        return spec
    return resolve_spec(spec)


def _locate(spec: str) -> str:
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        for name in ("tokenizer.json", "tokenizer.model"):
            if os.path.isfile(os.path.join(path, name)):
                return PREFIX + os.path.abspath(os.path.join(path, name))
        raise UsageError(f"--tokenizer {spec}: no tokenizer.json or tokenizer.model in it")
    if os.path.isfile(path):
        return PREFIX + os.path.abspath(path)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return PREFIX + _from_hf_cache(spec)
    raise UsageError(f"--tokenizer {spec}: no such file or directory")


def _from_hf_cache(repo: str) -> str:
    """A hub model's tokenizer from the local cache, in the layout ``huggingface_hub`` writes
    (``$HF_HOME/hub/models--ORG--NAME/snapshots/REV/``), as ``transformers`` finds it offline."""
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    root = os.path.join(home, "models--" + repo.replace("/", "--"))
    snapshots = os.path.join(root, "snapshots")
    revision = None
    ref = os.path.join(root, "refs", "main")
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            revision = f.read().strip()
    candidates = [revision] if revision else sorted(os.listdir(snapshots), reverse=True) if (
        os.path.isdir(snapshots)
    ) else []  # fmt: skip
    for rev in candidates:
        for name in ("tokenizer.json", "tokenizer.model"):
            path = os.path.join(snapshots, rev, name)
            if os.path.isfile(path):
                return path
    raise UsageError(
        f"--tokenizer {repo}: not in the Hugging Face cache ({home}); embedcli downloads nothing: "
        f"fetch it with `huggingface-cli download {repo} tokenizer.json tokenizer_config.json`"
    )


def load_foreign(name: str) -> ForeignEncoding:
    """The tokenizer an encoding name ``file:/abs/path[?choices]`` names, by the file's kind;
    loaded once while the file stays the same (its size and modification time)."""
    path = name[len(PREFIX) :].partition("?")[0]
    try:
        seen = os.stat(path)
    except OSError:
        raise EncodingLoadError(f"{path}: no such tokenizer file") from None
    return _load(name, seen.st_size, seen.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load(name: str, size: int, mtime_ns: int) -> ForeignEncoding:
    from urllib.parse import parse_qsl

    path, _, query = name[len(PREFIX) :].partition("?")
    choices = dict(parse_qsl(query))
    if not os.path.isfile(path):
        raise EncodingLoadError(f"{path}: no such tokenizer file")
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if path.endswith(".json"):
        enc = _huggingface(name, path, digest)
    elif _looks_like_ranks(data):
        enc = _rank_file(name, path, digest, choices)
    else:
        enc = _sentencepiece(name, path, digest)
    if "normalizer" in choices and enc.kind != "tiktoken":
        raise UsageError(
            f"--tokenizer-option normalizer={choices['normalizer']}: {path} is a {enc.kind} "
            "file, which normalizes text as its own normalizer says; the option is for rank files"
        )
    for key in ("bos", "eos"):
        if key in choices:  # --tokenizer-option bos=/eos=: a special token, by its text
            text = choices[key]
            if text not in enc.special_tokens:
                raise UsageError(f"--tokenizer-option {key}={text}: not a special token of {path}")
            setattr(enc, key, (text, enc.special_tokens[text]))
    return enc


def _looks_like_ranks(data: bytes) -> bool:
    """A tiktoken rank file: lines of ``base64-token rank``."""
    first = data[:200].split(b"\n", 1)[0].split(b" ")
    return len(first) == 2 and first[1].isdigit()


def _huggingface(name: str, path: str, digest: str) -> ForeignEncoding:
    """A ``tokenizer.json``, its ``tokenizers.Tokenizer`` built only when something encodes or
    decodes with it: a run on the fast engine whose self-check passed before
    (:mod:`embedcli.bpe.engines`) never does, and a 128k-vocabulary file takes 0.35 s to build.
    Its size and special tokens are the library's own answers, kept by :func:`_hf_facts`."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        library = version("tokenizers")
    except PackageNotFoundError:
        raise EncodingLoadError(
            f"{path}: reading a tokenizer.json needs tokenizers ({EXTRA})"
        ) from None

    @functools.cache
    def loaded(encode_special_tokens: bool) -> Any:
        """The tokenizer; with ``True`` the same one reading a literal special token as text,
        built when a run first asks for that policy, never for the other."""
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(path)
        except Exception as exc:  # the library's own words, whatever it raises
            raise EncodingLoadError(f"{path}: not a readable tokenizer.json ({exc})") from None
        tokenizer.encode_special_tokens = encode_special_tokens
        return tokenizer

    size, specials = _hf_facts(path, digest, library, lambda: loaded(False))
    bos, eos = _markers(os.path.dirname(path), specials)
    return ForeignEncoding(
        name, "tokenizer.json", path, digest, size, specials, bos, eos, cuttable=False,
        _encode=lambda text, special: loaded(not special).encode(
            text, add_special_tokens=False
        ).ids,
        _decode=lambda ids: loaded(False).decode(ids, skip_special_tokens=False),
        _token_bytes=lambda i: _hf_token_bytes(loaded(False), i),
    )  # fmt: skip


def _hf_facts(
    path: str, digest: str, library: str, tokenizer: Callable[[], Any]
) -> tuple[int, dict[str, int]]:
    """A ``tokenizer.json``'s vocabulary size and special tokens (``{text: id}``), as
    ``tokenizers`` reports them: asked of ``tokenizer()`` once per file and library version,
    then read back from the cache directory (a file of a few kB, by the file's sha256)."""
    from embedcli.bpe.cache import cache_dir, keep

    kept = os.path.join(cache_dir(), f"hf-{digest[:32]}-tokenizers-{library}-facts.json")
    try:
        with open(kept, encoding="utf-8") as f:
            facts = json.load(f)
        if facts.get("sha256") == digest:
            return int(facts["vocab_size"]), {str(k): int(v) for k, v in facts["specials"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent or damaged: asked again
    loaded = tokenizer()
    specials = {t.content: i for i, t in loaded.get_added_tokens_decoder().items() if t.special}
    size = loaded.get_vocab_size(with_added_tokens=True)
    facts = {"sha256": digest, "vocab_size": size, "specials": specials}
    keep(kept, json.dumps(facts, ensure_ascii=False).encode("utf-8"))
    return size, specials


def _hf_token_bytes(tokenizer: Any, token: int) -> bytes:
    piece = tokenizer.id_to_token(token)
    if piece is None:
        raise KeyError(token)
    return tokenizer.decode([token], skip_special_tokens=False).encode("utf-8", "replace")


def _markers(directory: str, specials: dict[str, int]) -> tuple[Any, Any]:
    """(BOS, EOS) as ``(text, id)``: named by ``tokenizer_config.json`` or
    ``special_tokens_map.json`` beside the tokenizer, else by their usual names."""
    named: dict[str, str] = {}
    for config in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            with open(os.path.join(directory, config), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        for key in ("bos_token", "eos_token"):
            value = doc.get(key)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and key not in named:
                named[key] = value

    def pick(key: str, usual: tuple[str, ...]) -> tuple[str, int] | None:
        text = named.get(key) or next((n for n in usual if n in specials), None)
        return (text, specials[text]) if text in specials else None

    return pick("bos_token", BOS_NAMES), pick("eos_token", EOS_NAMES)


def _sentencepiece(name: str, path: str, digest: str) -> ForeignEncoding:
    try:
        import sentencepiece
    except ImportError:
        raise EncodingLoadError(
            f"{path}: reading a SentencePiece model needs sentencepiece ({EXTRA})"
        ) from None
    model = sentencepiece.SentencePieceProcessor()
    try:
        model.Load(path)
    except Exception as exc:  # sentencepiece raises OSError or RuntimeError by version
        raise EncodingLoadError(
            f"{path}: not a SentencePiece model, a tokenizer.json or a rank file ({exc})"
        ) from None
    size = model.get_piece_size()
    specials = {model.id_to_piece(i): i for i in range(size) if model.is_control(i)}
    bos = (model.id_to_piece(model.bos_id()), model.bos_id()) if model.bos_id() >= 0 else None
    eos = (model.id_to_piece(model.eos_id()), model.eos_id()) if model.eos_id() >= 0 else None

    def token_bytes(i: int) -> bytes:
        if not 0 <= i < size:
            raise KeyError(i)
        return model.decode([i]).encode("utf-8", "replace")

    # SentencePiece never reads a control token out of the text: every policy encodes it so.
    return ForeignEncoding(
        name, "sentencepiece", path, digest, size, specials, bos, eos, cuttable=False,
        _encode=lambda text, special: model.encode(text),
        _decode=lambda ids: model.decode(ids),
        _token_bytes=token_bytes,
    )  # fmt: skip


def _rank_file(name: str, path: str, digest: str, choices: dict[str, str]) -> ForeignEncoding:
    """A tiktoken-format rank file (:mod:`embedcli.bpe.rank_files`), its round trip checked on
    the encoding as the pipeline will call it (normalizer included)."""
    from embedcli.bpe.rank_files import check_round_trip, load_rank_file

    ranks = load_rank_file(path, digest, choices)
    enc, specials = ranks.encoding, ranks.specials
    bos = next(((t, specials[t]) for t in BOS_NAMES if t in specials), None)
    eos = next(((t, specials[t]) for t in EOS_NAMES if t in specials), None)
    # Each piece is normalized on its own: pieces are cut only before a space or newline
    # (bpe/pieces.py), which no normalization form composes with what precedes it.
    foreign = ForeignEncoding(
        name, "tiktoken", path, digest, enc.n_vocab, specials, bos, eos, cuttable=True,
        _encode=lambda text, special: enc.encode_to_numpy(
            foreign.normalize(text),
            allowed_special="all" if special else set(),
            disallowed_special=(),
        ),
        _decode=enc.decode,
        _token_bytes=enc.decode_single_token_bytes,
    )  # fmt: skip
    foreign.normalizer = ranks.normalizer
    check_round_trip(path, ranks.pattern, foreign)
    return foreign
