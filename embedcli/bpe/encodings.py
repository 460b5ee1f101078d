"""Tokenizer encodings by name, offline GPT-2, and the policy for literal special tokens.

``gpt2`` and its twin ``r50k_base`` load from the rank table bundled in ``embedcli/assets`` (see
``assets/NOTICE.md``), so they work with no network at all. Every other name goes through tiktoken's
own download-and-cache path; when that cannot work (no network, nothing cached) the user gets one
line naming the encoding and ``TIKTOKEN_CACHE_DIR`` within seconds, never a hang.

Not covered here: reading text (``text.py``) and splitting it for parallel encoding
(``tokenizer.py``).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Collection, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, TypedDict

from embedcli.bpe.cache import cached_ranks
from embedcli.bpe.foreign import ForeignEncoding, is_foreign, load_foreign
from embedcli.errors import EmbedcliError, EncodingLoadError, UsageError
from embedcli.options import DEFAULT_ENCODING, SPECIAL_POLICIES

if TYPE_CHECKING:
    import tiktoken

EOT = "<|endoftext|>"
BUNDLED_ENCODINGS = ("gpt2", "r50k_base")

# tiktoken's r50k_base blob; the bundled file is byte-identical to it.
R50K_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
R50K_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


# How long a non-bundled encoding may take to load (download included) before we give up.
LOAD_TIMEOUT_S = float(os.environ.get("EMBEDCLI_ENCODING_TIMEOUT", "60"))


def tiktoken_cache_path(url: str) -> str | None:
    """Where tiktoken's ``read_file_cached`` keeps its download of ``url`` (the SHA-1 of the
    URL in its cache directory), or None when its cache is disabled."""
    cache_dir = _tiktoken_cache_dir()
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()) if cache_dir else None


def cached_rank_file(url: str) -> str | None:
    """tiktoken's cached copy of ``url``, when there is one."""
    path = tiktoken_cache_path(url)
    return path if path is not None and os.path.isfile(path) else None


def _tiktoken_cache_dir() -> str:
    """The directory tiktoken's ``read_file_cached`` uses, resolved the same way it does."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def bundled_bytes() -> bytes:
    """The bundled GPT-2 rank file (``assets/gpt2.tiktoken.gz``), decompressed."""
    return gzip.decompress(
        resources.files("embedcli").joinpath("assets/gpt2.tiktoken.gz").read_bytes()
    )


def seed_tiktoken_cache() -> bool:
    """Put the bundled r50k ranks where tiktoken caches its download of them.

    tiktoken's loader then finds the file in its cache, checks its sha256 and never touches the
    network; ``tiktoken.get_encoding("r50k_base")`` works offline afterwards too. Returns False
    when caching is disabled (``TIKTOKEN_CACHE_DIR=""``) or the cache directory is not writable.
    """
    path = tiktoken_cache_path(R50K_URL)
    if path is None:
        return False
    try:
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() == R50K_SHA256:
                return True
    except OSError:
        pass
    from embedcli.errors import OutputError
    from embedcli.storage.atomic import atomic_file

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_file(path, output=False) as f:  # a cache: not what the command wrote
            f.write(bundled_bytes())
    except (OSError, OutputError):
        return False
    return True


def bundled_ranks() -> dict[bytes, int]:
    """The GPT-2 mergeable ranks, loaded by tiktoken's loader with its hash check, offline;
    kept parsed in embedcli's cache after the first load (``bpe/cache.py``)."""
    return cached_ranks(R50K_SHA256, _load_bundled_ranks)


def _load_bundled_ranks() -> dict[bytes, int]:
    from tiktoken.load import load_tiktoken_bpe

    if seed_tiktoken_cache():
        return load_tiktoken_bpe(R50K_URL, expected_hash=R50K_SHA256)
    # No usable cache (disabled, or a read-only TIKTOKEN_CACHE_DIR that lacks the file): tiktoken
    # reads files only through that cache, so check the hash with tiktoken's own check and
    # parse its documented format (base64 token, space, rank) here, without touching os.environ.
    from tiktoken.load import check_hash

    data = bundled_bytes()
    if not check_hash(data, R50K_SHA256):
        raise EncodingLoadError("the bundled GPT-2 rank file is corrupt (sha256 mismatch)")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _load_remote(name: str) -> tiktoken.Encoding:
    """tiktoken's normal path (download and cache), bounded in time and with a readable error."""
    import tiktoken

    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["enc"] = tiktoken.get_encoding(name)
        except BaseException as exc:  # handed to the caller's thread below
            result["exc"] = exc

    # requests has no default timeout; a firewalled network would hang the caller for minutes.
    worker = threading.Thread(target=target, daemon=True, name=f"load-{name}")
    worker.start()
    worker.join(LOAD_TIMEOUT_S)
    if worker.is_alive():
        raise EncodingLoadError(_offline_message(name, f"timed out after {LOAD_TIMEOUT_S:.0f} s"))
    exc = result.get("exc")
    if exc is not None:
        if isinstance(exc, ValueError) and "Unknown encoding" in str(exc):
            raise UsageError(f"unknown encoding {name!r}; known: {', '.join(known_encodings())}")
        raise EncodingLoadError(_offline_message(name, type(exc).__name__)) from None
    return result["enc"]  # type: ignore[return-value]


def _offline_message(name: str, why: str) -> str:
    return (
        f"cannot load encoding {name!r} ({why}): it needs a download and there is no cached copy; "
        f"fetch it once where there is network and point TIKTOKEN_CACHE_DIR at that cache, "
        f"or use --encoding gpt2, which is bundled"
    )


def known_encodings() -> list[str]:
    import tiktoken

    return sorted(set(tiktoken.list_encoding_names()) | set(BUNDLED_ENCODINGS))


def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """Return the tiktoken ``Encoding`` called ``name``; ``gpt2``/``r50k_base`` need no network.
    Built once per process (a tokenizer file: once while it stays the same).

    Example:
        >>> get_encoding("gpt2").encode("Hello, world")
        [15496, 11, 995]
    """
    if is_foreign(name):  # file:/path: a tokenizer.json, SentencePiece model or rank file
        return load_foreign(name)  # type: ignore[return-value]  # duck-types what is used
    return _named_encoding(name)


@functools.lru_cache(maxsize=8)
def _named_encoding(name: str) -> tiktoken.Encoding:
    if name in BUNDLED_ENCODINGS:
        import tiktoken
        from tiktoken_ext.openai_public import r50k_pat_str

        return tiktoken.Encoding(
            name=name,
            pat_str=r50k_pat_str,
            mergeable_ranks=bundled_ranks(),
            special_tokens={EOT: 50256},
            explicit_n_vocab=50257,
        )
    return _load_remote(name)


@dataclass(frozen=True)
class Decoding:
    """How a file's ids become text: ``decode``, or None and (``note``) why not."""

    decode: Callable[[list[int]], str] | None
    note: str | None = None


def decoding_for(
    metadata: Mapping[str, str] | None,
    default: str | None = DEFAULT_ENCODING,
    tokenizer: str | None = None,
) -> Decoding:
    """``decode(ids)`` with ``tokenizer`` (an encoding name, ``--tokenizer``) when given, else
    with the encoding a file's metadata names (``default`` when it names none). When that
    cannot be loaded here, or a recorded tokenizer file has changed since, there is no
    ``decode`` and the note says why: inspecting a file never fails for want of its tokenizer.
    An id the encoding does not have decodes as ``<invalid id N>``."""
    if tokenizer is not None:  # asked for: failing to load it is an error
        chosen = get_encoding(tokenizer)
        return Decoding(lambda ids: decode_leniently(chosen, ids))
    meta = metadata or {}
    name = meta.get("encoding", default)  # contract.ENCODING
    if name is None:
        return Decoding(None)
    why = "ids shown without text: {}; give --tokenizer to decode them"
    if meta.get("encoding_assumed"):  # contract.ENCODING_ASSUMED: never decoded by a guess
        return Decoding(None, why.format(meta["encoding_assumed"]))
    try:
        enc = get_encoding(name)
    except EmbedcliError as exc:  # gone, unreadable, or (a tokenizer file) unloadable here
        return Decoding(None, why.format(exc))
    recorded = meta.get("tokenizer_sha256")  # contract.TOKENIZER_SHA256
    if isinstance(enc, ForeignEncoding) and recorded and enc.sha256 != recorded:
        changed = f"{enc.path} has changed since the ids were written (its sha256 differs)"
        return Decoding(None, why.format(changed))
    return Decoding(lambda ids: decode_leniently(enc, ids))


def decoder_for(
    metadata: Mapping[str, str] | None, default: str | None = DEFAULT_ENCODING
) -> Callable[[list[int]], str] | None:
    """:func:`decoding_for`'s ``decode`` alone (stage summaries: no room for a note)."""
    return decoding_for(metadata, default).decode


def decode_leniently(enc: tiktoken.Encoding, ids: list[int]) -> str:
    """``enc.decode(ids)``, with ids it does not have shown as ``<invalid id N>`` instead of a
    ``KeyError`` (a token file from another tokenizer, or a corrupt one).

    Example:
        >>> decode_leniently(get_encoding("gpt2"), [15496, 53983, 11])
        'Hello<invalid id 53983>,'
    """
    try:
        return enc.decode(ids)
    except (KeyError, ValueError, OverflowError):
        pass
    out: list[str] = []
    run: list[int] = []
    for i in ids:
        try:
            enc.decode_single_token_bytes(i)
        except (KeyError, ValueError, OverflowError):
            out += [enc.decode(run), f"<invalid id {i}>"]
            run = []
        else:
            run.append(i)
    return "".join(out) + enc.decode(run)


def separator(enc: tiktoken.Encoding, placement: str = "between") -> tuple[str, int]:
    """The token that marks documents, as ``(text, id)``: GPT-2's one ``<|endoftext|>``; for
    another model's tokenizer its BOS before documents and its EOS after or between them."""
    if isinstance(enc, ForeignEncoding):
        return enc.separator(placement)
    return EOT, eot_id(enc)


def eot_id(enc: tiktoken.Encoding) -> int:
    """The id of ``<|endoftext|>``, the separator placed between documents."""
    try:
        return enc.encode_single_token(EOT)
    except KeyError:
        raise EncodingLoadError(f"encoding {enc.name!r} has no {EOT} token") from None


class EncodeKwargs(TypedDict):
    """tiktoken's special-token arguments to ``encode``."""

    allowed_special: AbstractSet[str]
    disallowed_special: Collection[str]


def encode_kwargs(policy: str) -> EncodeKwargs:
    """tiktoken keyword arguments for a special-token policy.

    ``special``: a literal ``<|endoftext|>`` in the text is the special token (as the reference
    pipeline's ``allowed_special={"<|endoftext|>"}``); any other special string is plain text.
    ``text`` and ``error`` encode it as plain text (``error`` refuses such input before encoding).
    """
    if policy == "special":
        return {"allowed_special": frozenset({EOT}), "disallowed_special": ()}
    if policy in ("text", "error"):
        return {"allowed_special": frozenset(), "disallowed_special": ()}
    raise UsageError(f"unknown special-token policy {policy!r}; use one of {SPECIAL_POLICIES}")
