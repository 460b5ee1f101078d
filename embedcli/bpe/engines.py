"""Which engine turns text into ids: tiktoken (the definition of correct) or gigatoken.

``gigatoken`` (the extra ``embedcli[fast]``) is an exact BPE written in Rust, several times
faster than tiktoken (``benchmarks/backend.py``). It is used only where it provably gives
tiktoken's ids:

* Its rank tables are tiktoken's own files: the bundled GPT-2 ranks, or the rank files tiktoken
  has cached (and hash-checked) for ``cl100k_base``/``o200k_base``.
* Special tokens: gigatoken recognises every special token it is given, always. So the tokenizer
  is built with exactly the specials the policy treats as special: ``<|endoftext|>`` for
  ``--special special`` (tiktoken's ``allowed_special={"<|endoftext|>"}``), none at all for
  ``text``/``error`` (tiktoken's ``encode_ordinary``). A literal special string is then ordinary
  text to gigatoken exactly where it is to tiktoken; no cutting or falling back per document.
* Every load runs a self-check: :data:`PROBES` (letters, digits, every Unicode whitespace class,
  contractions, emoji, NUL, the encoding's special strings, long runs) is encoded by both engines
  and must agree id for id, or ``auto`` falls back to tiktoken with a note (and an explicit
  ``--backend gigatoken`` is refused). This guards any gigatoken version, not only the one tested.
  A tokenizer file's pass is kept in the cache directory, keyed by the file, the policy, the
  probes and both libraries' versions, so later runs need not load the file's library at all.

Lone surrogates (``"\\ud83d"`` from a JSON escape) are not this module's business: the reader
replaces them with U+FFFD as tiktoken's own ``encode`` does, before any engine sees the text.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedcli.bpe.cache import cache_dir, keep
from embedcli.bpe.encodings import (
    EOT,
    R50K_URL,
    bundled_bytes,
    cached_rank_file,
    encode_kwargs,
    get_encoding,
    seed_tiktoken_cache,
    separator,
)
from embedcli.bpe.foreign import REFERENCE, ForeignEncoding, is_foreign
from embedcli.errors import EncodingLoadError, UsageError
from embedcli.options import BACKENDS, Backend, SpecialPolicy

if TYPE_CHECKING:
    import numpy as np
    import tiktoken

    from embedcli.bpe.unicode_gaps import GapCheck

EXTRA = "pip install 'embedcli[fast]'"

# gigatoken's name for each encoding's pre-tokenizer (its split regex), and tiktoken's URL of
# the rank file it caches. Encodings not listed here are tiktoken's alone.
GIGATOKEN_ENCODINGS = {
    "gpt2": ("gpt2", R50K_URL),
    "r50k_base": ("gpt2", R50K_URL),
    "cl100k_base": (
        "gpt4",
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    ),
    "o200k_base": (
        "o200k",
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    ),
}

# The self-check: strings where BPE engines have been seen to differ. Kept small enough that
# encoding all of them with both engines takes a few milliseconds.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f\x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
PROBES: tuple[str, ...] = (
    "Hello, world! It's a test: don't, won't, I'm, you're, we've, they'll, he'd.",
    "IT'S DON'T I'M YOU'RE WE'VE THEY'LL HE'D 'S 'T 'Re 'vE",
    "1234567890 12 345 6789 3.14159 1,000,000 0x1F 2024-11-27",
    "x" + _WHITESPACE.join("abcdefghijklmnopqrstuvwxyz") + "  \n\n  \t\t" + _WHITESPACE,
    "  leading and trailing spaces   \n\n\n   ",
    "\x00NUL\x00 \x00\x00 byte\x01\x7f",
    "emoji 😀🎉👩‍👩‍👧 flags 🇫🇷 keycap 1️⃣ ☃︎",
    "日本語のテキスト 中文 한국어 Ελληνικά русский עברית العربية हिन्दी",
    "e\u0301 cafe\u0301 n\u0303 \ufffd\ufeff\u200b\u200d zero width",
    "def f(x):\n    return x**2  # comment\n\tif a != b: pass\r\n",
    "a" * 600 + " " + "7" * 300 + " " * 200 + "!" * 100 + "\n" * 50,
    "<|endoftext|>",
    "before<|endoftext|>after <|endoftext|> <|endoftext|><|endoftext|>",
    "<|fim_prefix|><|fim_middle|><|fim_suffix|><|endofprompt|> <|endoftext",
    "Ａｂｃ１２３ ＡＢＣ ﬁ ǅ Ǆ ß ẞ ΐ",
    # normalization (NFC/NFKC folds these) and combining marks
    "① ㍿ ﬀ ℌ Å Å ｶﾞ 가 가 ﾟ x\u0308\u0301 a\u0328\u0301 \u0345 ½ ™ ℃ ⅷ",
    # byte fallback: characters no vocabulary of this size holds
    "\ue000\uf8ff \U000f0000 \U0010fffd 𠀀𪛖 𝔘𝔫𝔦 ꙮ ᚠᛇᚻ \u0378",
)


@dataclass(frozen=True)
class Choice:
    """The engine a run uses, and why it is not the one asked for (``None``: it is)."""

    name: str  # "tiktoken" or "gigatoken"
    note: str | None = None


# Below this much input ``auto`` keeps the reference engine: building gigatoken and its
# self-check cost 0.1-0.2 s, more than gigatoken saves on encoding under about 2-4 MB (GPT-2,
# 2 cores); a shell loop over small files pays that on every call (issue 23).
SMALL_INPUT_BYTES = 1 << 20


def choose_backend(
    requested: Backend, encoding: str, special: SpecialPolicy, input_bytes: int | None = None
) -> Choice:
    """The engine for ``--backend requested``: ``auto`` takes gigatoken when it is installed,
    loads this encoding and passes the self-check, else tiktoken with a note saying why.
    ``input_bytes``, when known, under :data:`SMALL_INPUT_BYTES` keeps ``auto`` on tiktoken.

    Raises :class:`UsageError` for an unknown name, and for an explicit ``gigatoken`` that
    cannot be used (not installed, encoding not supported, self-check failed).
    """
    check_backend(requested)
    if requested == "tiktoken":
        return Choice("tiktoken")
    if requested == "auto" and input_bytes is not None and input_bytes < SMALL_INPUT_BYTES:
        return Choice("tiktoken", "input under 1 MiB: the reference starts faster")
    why = _gigatoken_unusable(encoding, special)
    if why is None:
        if is_foreign(encoding):  # say why the fast engine may stand in for the file's library
            reference = reference_name(get_encoding(encoding))
            return Choice("gigatoken", f"it passed its self-check against {reference}")
        return Choice("gigatoken")
    if requested == "gigatoken":
        raise UsageError(f"--backend gigatoken: {why}; use --backend tiktoken (the reference)")
    return Choice("tiktoken", f"gigatoken not used: {why}")


def check_backend(requested: str) -> None:
    """Raises :class:`UsageError` for a ``--backend`` embedcli does not have."""
    if requested not in BACKENDS:
        raise UsageError(f"unknown --backend {requested!r}; use one of {', '.join(BACKENDS)}")


def _gigatoken_unusable(encoding: str, special: str) -> str | None:
    """Why gigatoken cannot encode ``encoding`` under ``special`` exactly, or None."""
    try:
        import gigatoken  # noqa: F401
    except ImportError:
        return f"it is not installed ({EXTRA})"
    if not is_foreign(encoding) and encoding not in GIGATOKEN_ENCODINGS:
        return f"it has no loader for encoding {encoding!r}"
    from embedcli.bpe.fast_files import NotLoadable, probes_for
    from embedcli.bpe.unicode_gaps import TooDifferent

    try:
        engine = _built("gigatoken", encoding, special, "between")
    except NotLoadable as exc:  # gigatoken's own errors and panics, in its words
        return str(exc)
    except EncodingLoadError as exc:  # no rank file for it here
        return f"it could not load {encoding!r} ({exc})"
    enc = get_encoding(encoding)
    probes = probes_for(enc)
    passed = _pass_kept(encoding, special, probes)
    if passed is not None and os.path.isfile(passed):
        why = None  # passed before: the reference library is not even loaded
    else:
        reference = _built("tiktoken", encoding, special, "between")
        why = self_check(engine, reference, probes, reference_name(enc))
        if why is None and passed is not None:
            keep(passed, b"")
    if why is None:
        try:
            engine_for("gigatoken", encoding, special)  # samples the Unicode gaps (cached)
        except TooDifferent as exc:
            return str(exc)
    return why


def _pass_kept(encoding: str, special: str, probes: tuple[str, ...]) -> str | None:
    """Where the cache directory keeps that gigatoken passed this self-check on a tokenizer
    file: the same file, policy, probes and versions of gigatoken and the file's library. Only
    tokenizer files keep one (None for tiktoken's encodings, whose check costs 5 ms): their
    reference library takes 0.35 s to load (a 128k ``tokenizer.json``), which a later run on
    the fast engine then never pays."""
    if not is_foreign(encoding):
        return None
    what = "\0".join((special, _SELF_CHECK, *PROBES, *probes))
    return os.path.join(cache_dir(), f"selfcheck-{_engines_key(encoding, what)}.passed")


# The self-check's own version: bump it when :func:`self_check` checks something new.
_SELF_CHECK = "self-check 1"


def _engines_key(encoding: str, what: str = "") -> str:
    """A cache key for what gigatoken and the reference do with this encoding: its file and
    choices (or its name), both libraries' versions, and ``what``."""
    enc = get_encoding(encoding)
    library = reference_name(enc)
    identity = (
        f"{enc.sha256}{encoding.partition('?')[2]}"
        if isinstance(enc, ForeignEncoding)
        else encoding
    )
    versions = f"{identity}|gigatoken {_version('gigatoken')}|{library} {_version(library)}"
    if what:
        versions = f"{versions}|{what}"
    return hashlib.sha256(versions.encode()).hexdigest()[:32]


@functools.cache
def _version(package: str) -> str:
    """A package's version, read from its metadata once a process (a scan of sys.path)."""
    from importlib.metadata import version

    return version(package)


def reference_name(enc: tiktoken.Encoding) -> str:
    """The library whose ids are the definition of correct: tiktoken, or a tokenizer file's."""
    return REFERENCE[enc.kind] if isinstance(enc, ForeignEncoding) else "tiktoken"


def self_check(
    engine: Engine, reference: Engine, extra: tuple[str, ...] = (), name: str = "tiktoken"
) -> str | None:
    """None when ``engine`` gives ``reference``'s ids on every probe (:data:`PROBES` and
    ``extra``), alone and as one task (with and without the separator placed between
    pieces), else what differed."""
    import numpy as np

    probes = PROBES + extra
    for i, probe in enumerate(probes):
        got, want = engine([probe], np.zeros(1, bool))[0], reference([probe], np.zeros(1, bool))[0]
        if got.shape != want.shape or not np.array_equal(got, want):
            return f"its ids differ from {name}'s on self-check probe {i} ({probe[:20]!r}...)"
    for eots in (np.zeros(len(probes), bool), np.arange(len(probes)) % 2 == 1):
        (got, got_lengths), (want, want_lengths) = (
            e(list(probes), eots) for e in (engine, reference)
        )
        if not (np.array_equal(got_lengths, want_lengths) and np.array_equal(got, want)):
            return f"its ids differ from {name}'s on the self-check probes encoded as one task"
    return None


# Engines encode a task: its pieces, and which get <|endoftext|> before them; out come their ids
# end to end (EOTs in place) and each piece's length without its EOT.
Engine = Callable[[list[str], "np.ndarray"], "tuple[np.ndarray, np.ndarray]"]

# Joins a task's pieces for one gigatoken call (a call costs ~10 us, a jsonl line's worth of
# encoding). Registered as a special token with an id past the vocabulary, it cuts the text
# exactly as separate calls would (special tokens are matched first and the text between them
# is encoded on its own; the self-check covers this), and its ids mark where pieces end. Its
# first character occurs nowhere else in it, so two occurrences cannot overlap: a piece that
# holds this text itself shows up as one id too many, and that task is encoded piece by piece.
# ASCII, so joining ASCII text keeps it ASCII (which CPython hands to Rust without a copy).
JOIN_MARKER = "<|embedcli piece boundary|>"


# What a worker needs to build the same engine: (backend, encoding, special, placement).
EngineKey = tuple[str, str, str, str]


@functools.lru_cache(maxsize=8)
def engine_for(backend: str, encoding: str, special: str, placement: str = "between") -> Engine:
    """The function that encodes a task, built once per process (the separator placed before
    pieces is the encoding's for ``placement``: GPT-2's ``<|endoftext|>``, or another
    tokenizer's BOS or EOS). gigatoken's hands a piece holding a character the two engines'
    Unicode tables class differently (:mod:`unicode_gaps`) to the reference.

    Worker processes forked after the main process built it share it copy-on-write.
    """
    import numpy as np

    built = _built(backend, encoding, special, placement)
    if backend == "tiktoken":
        return built
    gaps = _risky(encoding, special)
    reference = _built("tiktoken", encoding, special, placement)
    eot = _eot(get_encoding(encoding), placement)
    single = np.zeros(1, bool)

    def encode(texts: list[str], eots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(texts) == 1 and len(texts[0]) >= OVERLAP_CHARS:
            return _checked_while_encoding(texts, eots, gaps, built, reference)
        # a task of many small documents is checked in one scan; only one that holds a gap
        # is checked document by document (about 1 us each)
        if len(texts) > 1 and not gaps.holds("".join(texts)):
            return built(texts, eots)
        risky = gaps.risky(texts)
        if not any(risky):
            return built(texts, eots)
        parts = [
            (reference if bad else built)([text], single)[0]
            for text, bad in zip(texts, risky, strict=True)
        ]
        return _end_to_end(parts, eots, eot)

    return encode


# A task of one text this long (a whole .txt document, for a tokenizer that encodes documents
# whole) is checked for gaps on this thread while gigatoken, which releases the GIL, encodes it
# on another: 70 MB with DeepSeek V3's tokenizer.json spent 0.4 s checking before a 0.7 s encode.
OVERLAP_CHARS = 1 << 22


def _checked_while_encoding(
    texts: list[str], eots: np.ndarray, gaps: GapCheck, built: Engine, reference: Engine
) -> tuple[np.ndarray, np.ndarray]:
    """One long text encoded by ``built`` while its gap check runs beside it; encoded by
    ``reference`` instead when it holds a gap (the fast engine's ids then thrown away)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="embedcli-encode") as encoder:
        fast = encoder.submit(built, texts, eots)
        if gaps.holds(texts[0]):
            fast.cancel()
            return reference(texts, eots)
        return fast.result()


def _risky(encoding: str, special: str) -> GapCheck:
    """The characters gigatoken and the reference class differently for this tokenizer, as
    far as measured (the rest are measured as text brings them)."""
    import numpy as np

    from embedcli.bpe.unicode_gaps import gap_check

    key = _engines_key(encoding)
    fast, reference = (_built(b, encoding, special, "between") for b in ("gigatoken", "tiktoken"))
    single = np.zeros(1, bool)
    return gap_check(
        key, lambda t: fast([t], single)[0], lambda t: reference([t], single)[0], cache_dir()
    )


def _eot(enc: tiktoken.Encoding, placement: str) -> np.ndarray:
    """The separator's id as a one-element array (a tokenizer with neither BOS nor EOS runs
    only with --eot none: nothing is placed)."""
    import numpy as np

    mark = ("", 0) if _unmarked(enc) else separator(enc, placement)
    return np.array([mark[1]], np.int32)


@functools.lru_cache(maxsize=8)
def _built(backend: str, encoding: str, special: str, placement: str) -> Engine:
    """The engine itself (:func:`engine_for` without the Unicode routing)."""
    import numpy as np

    enc = get_encoding(encoding)
    eot = _eot(enc, placement)
    if backend == "tiktoken":  # the reference: tiktoken, or a tokenizer file's own library
        kwargs = encode_kwargs(special)
        return lambda texts, eots: _end_to_end(
            [enc.encode_to_numpy(text, **kwargs).view(np.int32) for text in texts], eots, eot
        )
    if isinstance(enc, ForeignEncoding):
        fast, normalize = _fast_file(encoding, special), enc.normalize
        # One call per piece: gigatoken's per-call cost (a few us) is small beside a
        # document's encoding, and its batch call would bring in awkward (0.4 s to import).
        # A rank file's family normalization is the reference's too (ForeignEncoding).
        return lambda texts, eots: _end_to_end(
            [fast.encode(normalize(text)).view(np.int32) for text in texts], eots, eot
        )
    join_id = enc.n_vocab
    tokenizer = _gigatoken_tokenizer(enc, encoding, special, join_id)
    # Without the marker, for the rare task whose text holds it; loaded only then.
    plain = functools.cache(lambda: _gigatoken_tokenizer(enc, encoding, special, None))

    def encode(texts: list[str], eots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # gigatoken gives uint32; every id of these vocabularies is below 2**31.
        ids = tokenizer.encode(JOIN_MARKER + JOIN_MARKER.join(texts)).view(
            np.int32
        )  # a marker per piece
        is_join = ids == join_id
        marks = np.flatnonzero(is_join)
        if marks.size != len(texts):
            parts = [plain().encode(text).view(np.int32) for text in texts]
            return _end_to_end(parts, eots, eot)
        lengths = np.diff(marks, append=ids.size) - 1
        ids[marks[eots]] = eot[0]  # the markers before pieces that get one become the EOT
        is_join[marks[eots]] = False
        return ids[~is_join], lengths

    return encode


@functools.lru_cache(maxsize=4)
def _fast_file(encoding: str, special: str) -> Any:
    """gigatoken's tokenizer of a tokenizer file, loaded once per process whatever the
    separator's placement (the self-check's and the run's engines share it: a 128k-vocabulary
    ``tokenizer.json`` was parsed twice)."""
    from embedcli.bpe.fast_files import load

    enc = get_encoding(encoding)
    assert isinstance(enc, ForeignEncoding)  # only tokenizer files come here
    return load(enc, special)


def _unmarked(enc: tiktoken.Encoding) -> bool:
    return isinstance(enc, ForeignEncoding) and enc.bos is None and enc.eos is None


def _end_to_end(
    parts: list[np.ndarray], eots: np.ndarray, eot: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pieces' ids end to end with an EOT before those ``eots`` marks; their lengths."""
    import numpy as np

    lengths = np.fromiter((p.size for p in parts), np.int64, len(parts))
    if eots.any():
        parts = [
            x for part, e in zip(parts, eots, strict=True) for x in ((eot, part) if e else (part,))
        ]
    return (np.concatenate(parts) if len(parts) > 1 else parts[0]), lengths


def _gigatoken_tokenizer(
    enc: tiktoken.Encoding, encoding: str, special: str, join_id: int | None
) -> Any:  # gigatoken.BPETokenizer (untyped)
    from gigatoken.gigatoken_rs import BPETokenizer

    pretokenizer, url = GIGATOKEN_ENCODINGS[encoding]
    specials = {EOT: enc.eot_token} if special == "special" else {}
    if join_id is not None:
        specials[JOIN_MARKER] = join_id
    # get_encoding above left the ranks in tiktoken's cache, hash-checked by tiktoken's loader
    # (gpt2: the bundled file seeded there); gigatoken reads the same bytes.
    from embedcli.bpe.fast_files import guarded  # a panic or error becomes NotLoadable

    cached = cached_rank_file(url)
    if cached is not None and (url != R50K_URL or seed_tiktoken_cache()):  # a good copy there
        return guarded(lambda: BPETokenizer.from_tiktoken(cached, pretokenizer, specials))
    if url != R50K_URL:
        raise EncodingLoadError(f"no cached rank file for {encoding!r}")
    # Caching disabled (TIKTOKEN_CACHE_DIR=""): hand gigatoken the bundled ranks in a temp file.
    with tempfile.NamedTemporaryFile(prefix="embedcli-r50k-", suffix=".tiktoken") as f:
        f.write(bundled_bytes())
        f.flush()
        return guarded(lambda: BPETokenizer.from_tiktoken(f.name, pretokenizer, specials))
