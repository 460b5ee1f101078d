"""Other models' tokenizers, each exact against its own library: a Hugging Face
``tokenizer.json`` (``tokenizers``), a SentencePiece ``.model`` (``sentencepiece``), and a
tiktoken-format rank file such as Llama 3's ``tokenizer.model`` (tiktoken, with the family's
pattern and special tokens).

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

# Llama 3's tokenizer.model (the rank file Meta ships, also inside llama-models): its pattern
# and special tokens are in Meta's reference code (llama_models/llama3/tokenizer.py).
LLAMA3_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
] + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - 12)]
KNOWN_RANK_FILES = {LLAMA3_SHA256: ("llama3", LLAMA3_PATTERN, LLAMA3_SPECIALS)}

# Names a tokenizer's document markers usually have, when its config names none.
_BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "[CLS]")
_EOS_NAMES = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "[SEP]")


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
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise EncodingLoadError(
            f"{path}: reading a tokenizer.json needs tokenizers ({EXTRA})"
        ) from None
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the worker pool is the parallelism
    try:
        parsing = Tokenizer.from_file(path)
    except Exception as exc:  # the library's own words, whatever it raises
        raise EncodingLoadError(f"{path}: not a readable tokenizer.json ({exc})") from None

    @functools.cache
    def plain() -> Any:
        """The same tokenizer reading a literal special token as text: loaded when a run
        first asks for that policy (in the main process, by the self-check, before workers
        fork), never for the other (a 128k-vocabulary file takes 0.25 s to load)."""
        loaded = Tokenizer.from_file(path)
        loaded.encode_special_tokens = True
        return loaded

    specials = {t.content: i for i, t in parsing.get_added_tokens_decoder().items() if t.special}
    bos, eos = _markers(os.path.dirname(path), specials)
    return ForeignEncoding(
        name, "tokenizer.json", path, digest, parsing.get_vocab_size(with_added_tokens=True),
        specials, bos, eos, cuttable=False,
        _encode=lambda text, special: (parsing if special else plain()).encode(
            text, add_special_tokens=False
        ).ids,
        _decode=lambda ids: parsing.decode(ids, skip_special_tokens=False),
        _token_bytes=lambda i: _hf_token_bytes(parsing, i),
    )  # fmt: skip


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

    return pick("bos_token", _BOS_NAMES), pick("eos_token", _EOS_NAMES)


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
    """A tiktoken-format rank file; its pattern and special tokens from the family's own code
    (recognised by the file's sha256), or from ``--tokenizer-option pattern=`` and
    ``special_tokens=``; checked before any text is encoded (:func:`_check_specials`, the
    pattern compiles, :func:`_check_round_trip`)."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from embedcli.bpe.cache import cached_ranks

    # tiktoken's loader, hash-checked; kept parsed by the file's sha256 (bpe/cache.py)
    ranks = cached_ranks(digest, lambda: load_tiktoken_bpe(path, expected_hash=digest))
    known = KNOWN_RANK_FILES.get(digest)
    if "pattern" in choices:
        family, pattern = os.path.basename(path), choices["pattern"]
        specials = _special_tokens(choices.get("special_tokens"))
    elif known is not None:
        family, pattern, special_names = known
        specials = {text: len(ranks) + i for i, text in enumerate(special_names)}
    else:
        raise EncodingLoadError(
            f"{path}: a rank file embedcli does not know (sha256 {digest[:12]}...): its "
            "pre-tokenizer pattern and special tokens are not in the file; give them with "
            "--tokenizer-option pattern=REGEX and --tokenizer-option special_tokens=FILE"
        )
    _check_specials(path, ranks, specials)
    try:
        enc = tiktoken.Encoding(
            name=family, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials
        )
    except ValueError as exc:  # the regex engine's own words, with the position
        raise UsageError(
            f"{path}: --tokenizer-option pattern={_short(pattern)}: not a valid pattern ({exc})"
        ) from None
    _check_round_trip(path, pattern, enc)
    bos = next(((t, specials[t]) for t in _BOS_NAMES if t in specials), None)
    eos = next(((t, specials[t]) for t in _EOS_NAMES if t in specials), None)
    return ForeignEncoding(
        name, "tiktoken", path, digest, enc.n_vocab, specials, bos, eos, cuttable=True,
        _encode=lambda text, special: enc.encode_to_numpy(
            text, allowed_special="all" if special else set(), disallowed_special=()
        ),
        _decode=enc.decode,
        _token_bytes=enc.decode_single_token_bytes,
    )  # fmt: skip


# Text that every tokenizer must give back as it was: each script, whitespace runs, digits,
# emoji with joiners, combining marks, control characters (a rank file has no normalizer).
ROUND_TRIP = (
    "Hello world, it's 2026!",
    "  two leading spaces, tabs\tand newlines\n\n\r\nend  ",
    "digits 1234567890 and 3.14159",
    "CJK 漢字 かな カナ 한국어",
    "emoji 👩\u200d👩\u200d👧 ✨🎉 flags 🇺🇳",
    "combining e\u0301 a\u0308 \u0928\u093f",
    "Привет мир. Γειά σου. مرحبا. שלום.",
    "NUL \x00 and DEL \x7f",
)


def _check_specials(path: str, ranks: dict[bytes, int], specials: dict[str, int]) -> None:
    """Special tokens whose ids are their own: distinct, no rank's id, and inside the
    vocabulary (the ranks, then the special tokens)."""
    by_id = {rank: token for token, rank in ranks.items()}
    top = max(by_id, default=-1) + 1 + len(specials)
    seen: dict[int, str] = {}
    for text, i in specials.items():
        if i in seen:
            raise UsageError(
                f"{path}: special tokens {seen[i]!r} and {text!r} have the same id {i}"
            )
        seen[i] = text
        if i in by_id:
            raise UsageError(
                f"{path}: special token {text!r} has id {i}, which is the rank of "
                f"{by_id[i]!r}: the two could not be told apart"
            )
        if not 0 <= i < top:
            raise UsageError(
                f"{path}: special token {text!r} has id {i:,}, outside the vocabulary "
                f"({len(ranks):,} ranks and {len(specials)} special tokens: ids 0-{top - 1:,})"
            )


def _check_round_trip(path: str, pattern: str, enc: Any) -> None:
    """Refuse a pattern (or rank table) that drops or changes text: every probe, and each
    special token's literal text as text, decodes to itself."""
    for text in (*ROUND_TRIP, *enc.special_tokens_set):
        try:
            back = enc.decode(enc.encode(text, allowed_special=set(), disallowed_special=()))
        except BaseException as exc:  # a panic in the Rust core is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            back = f"<an error: {type(exc).__name__}>"
        if back != text:
            raise UsageError(
                f"{path}: --tokenizer-option pattern={_short(pattern)} does not give text back: "
                f"{_short(text)!r} encodes and decodes to {_short(back)!r}"
            )


def _short(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


def _special_tokens(path: str | None) -> dict[str, int]:
    """``--tokenizer-option special_tokens=FILE``: a JSON object of ``{text: id}``."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if not isinstance(doc, dict):
            raise TypeError
        return {str(k): int(v) for k, v in doc.items()}
    except (OSError, ValueError, TypeError):
        raise UsageError(
            f"--tokenizer-option special_tokens={path}: not a JSON object of text -> id"
        ) from None
