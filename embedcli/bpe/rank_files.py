"""Tiktoken-format rank files: the families embedcli knows by their sha256 (each one's
pattern, special tokens and normalization, from the family's published reference code), the
options that define any other (``--tokenizer-option pattern= special_tokens= normalizer=``),
and the checks every rank file passes before any text is encoded: special ids of their own, a
pattern that compiles, and a round trip that gives every probe back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from embedcli.errors import EncodingLoadError, UsageError

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

# Llama 4's tokenizer.model (llama-models 0.3.0, llama_models/llama4/tokenizer.py): o200k's
# pattern, 2,048 special tokens after the ranks (these names, then reserved ones), no
# normalization.
LLAMA4_SHA256 = "d0bdbaf59b0762c8c807617e2d8ea51420eb1b1de266df2495be755c8e0ed6ed"
LLAMA4_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _reserved(name: str, count: int, start: int) -> list[str]:
    return [f"<|{name}_reserved_special_token_{i}|>" for i in range(start, start + count)]


_LLAMA4_NAMED = [
    *("<|begin_of_text|>", "<|end_of_text|>", "<|fim_prefix|>", "<|fim_middle|>"),
    *("<|fim_suffix|>", "<|header_start|>", "<|header_end|>", "<|eom|>", "<|eot|>", "<|step|>"),
    *_reserved("text_post_train", 6, 0),
    *("<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>"),
    *_reserved("text_post_train", 61, 8),
    *("<|image_start|>", "<|image_end|>", "<|vision_reserved_special_token_0|>"),
    *("<|vision_reserved_special_token_1|>", "<|tile_x_separator|>", "<|tile_y_separator|>"),
    *_reserved("vision", 4, 2),
    *("<|image|>", "<|vision_reserved_special_token_6|>", "<|patch|>"),
    *_reserved("vision", 1041, 7),
    *_reserved("reasoning", 8, 0),
    *("<|reasoning_thinking_start|>", "<|reasoning_thinking_end|>"),
]
LLAMA4_SPECIALS = _LLAMA4_NAMED + [
    f"<|reserved_special_token_{i}|>" for i in range(2048 - len(_LLAMA4_NAMED))
]

# Qwen's qwen.tiktoken (the dashscope 2.0.2 wheel, dashscope/tokenizers/qwen_tokenizer.py): its
# own pattern (one digit a piece), special tokens at fixed ids from 151,643, and text
# NFC-normalized before encoding.
QWEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIALS = {
    text: 151643 + i
    for i, text in enumerate(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{k}|>" for k in range(205))]
    )
}


@dataclass(frozen=True)
class Family:
    """A rank file embedcli knows by its sha256: what the family's reference code adds to
    the ranks. ``specials``: names given ids right after the ranks, or fixed ids."""

    name: str
    pattern: str
    specials: list[str] | dict[str, int]
    normalizer: str = "none"

    def special_ids(self, ranks: int) -> dict[str, int]:
        if isinstance(self.specials, dict):
            return dict(self.specials)
        return {text: ranks + i for i, text in enumerate(self.specials)}


KNOWN_RANK_FILES = {
    LLAMA3_SHA256: Family("llama3", LLAMA3_PATTERN, LLAMA3_SPECIALS),
    LLAMA4_SHA256: Family("llama4", LLAMA4_PATTERN, LLAMA4_SPECIALS),
    QWEN_SHA256: Family("qwen", QWEN_PATTERN, QWEN_SPECIALS, "NFC"),
}
# ``--tokenizer-option normalizer=``: unicodedata's forms, applied to each document's text
# before it is encoded, as a family's reference code does.
NORMALIZERS = ("NFC", "NFKC", "NFD", "NFKD", "none")


@dataclass
class RankFile:
    """A rank file's tokenizer as its family defines it, checked (:func:`load_rank_file`)."""

    encoding: Any  # tiktoken.Encoding
    pattern: str
    specials: dict[str, int]
    normalizer: str  # one of NORMALIZERS


def load_rank_file(path: str, digest: str, choices: dict[str, str]) -> RankFile:
    """A tiktoken-format rank file; its pattern and special tokens from the family's own code
    (recognised by the file's sha256), or from ``--tokenizer-option pattern=``,
    ``special_tokens=`` and ``normalizer=``; checked (:func:`_check_specials`, the pattern
    compiles). The caller checks the round trip (:func:`check_round_trip`) on what it builds."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from embedcli.bpe.cache import cached_ranks

    # tiktoken's loader, hash-checked; kept parsed by the file's sha256 (bpe/cache.py)
    ranks = cached_ranks(digest, lambda: load_tiktoken_bpe(path, expected_hash=digest))
    known = KNOWN_RANK_FILES.get(digest)
    normalizer = choices.get("normalizer", known.normalizer if known else "none")
    if normalizer not in NORMALIZERS:
        raise UsageError(
            f"--tokenizer-option normalizer={normalizer}: use one of {', '.join(NORMALIZERS)}"
        )
    if "pattern" in choices:
        family, pattern = os.path.basename(path), choices["pattern"]
        specials = _special_tokens(choices.get("special_tokens"))
    elif known is not None:
        family, pattern, specials = known.name, known.pattern, known.special_ids(len(ranks))
    else:
        raise EncodingLoadError(
            f"{path}: a rank file embedcli does not know (sha256 {digest[:12]}...): its "
            "pre-tokenizer pattern and special tokens are not in the file; give them with "
            "--tokenizer-option pattern=REGEX and --tokenizer-option special_tokens=FILE "
            "(and normalizer=NFC if its model normalizes text; see the README's \"Other "
            "models' tokenizers\")"
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
    return RankFile(enc, pattern, specials, normalizer)


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


def check_round_trip(path: str, pattern: str, enc: Any) -> None:
    """Refuse a pattern (or rank table) that drops or changes text: every probe, and each
    special token's literal text as text, decodes to itself (normalized, when the family
    normalizes)."""
    for raw in (*ROUND_TRIP, *enc.special_tokens):
        text = enc.normalize(raw)
        try:
            back = enc.decode(enc.encode(raw))
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


# How much of the corpus's first text a rank file must give back before a run starts.
SAMPLE_CHARS = 1 << 18


def check_corpus_sample(enc: Any, sources: list[Any], text_key: str) -> None:
    """Refuse a rank file's tokenizer that does not give the corpus's own first text back
    (up to :data:`SAMPLE_CHARS` characters of local files, normalized as its family does):
    the probes of :func:`check_round_trip` cannot hold every script and symbol a corpus has.
    stdin and URLs are not read twice; their documents are checked by the probes alone."""
    from embedcli.documents.base import without_lone_surrogates
    from embedcli.documents.sources import iter_blocks
    from embedcli.storage.remote import is_url

    seen = 0
    for source in sources:
        if source.path == "-" or is_url(source.path):
            continue
        for block in iter_blocks(source, text_key=text_key, block_bytes=1 << 16):
            text = block.text[: SAMPLE_CHARS - seen]
            if not text.isascii():  # as the pipeline encodes it (pieces.counted)
                text = without_lone_surrogates(text)
            back, want = enc.decode(enc.encode(text)), enc.normalize(text)
            if back != want:
                at = next(
                    (i for i, (a, b) in enumerate(zip(back, want, strict=False)) if a != b), None
                )
                at = min(len(back), len(want)) if at is None else at
                lost = want[max(at - 10, 0) : at + 20]
                got = back[max(at - 10, 0) : at + 20]
                raise UsageError(
                    f"{source.name}: {enc.path} does not give this corpus's text back: "
                    f"{_short(lost)!r} encodes and decodes to {_short(got)!r} (check "
                    "--tokenizer-option pattern= and normalizer=)"
                )
            seen += len(text)
            if seen >= SAMPLE_CHARS:
                return
