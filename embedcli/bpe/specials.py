"""Special tokens found in text: counted by name (``--special`` says what they become), and
refused with their place (``--special error``). GPT-2 has one, ``<|endoftext|>``; another
model's tokenizer hundreds (Llama 3: 256, DeepSeek V3: 1,230), found without a regex.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Protocol

from embedcli.errors import InputError


class TokenizeStats(Protocol):
    """What of a run's counts (``pieces.TokenizeStats``) these functions read and add to."""

    special_texts: tuple[str, ...]  # every special token's text
    special_found: int
    specials_found: dict[str, int]


def count_specials_each(texts: list[str], stats: TokenizeStats) -> None:
    """:func:`count_specials` of every text, in one search of them joined by NUL where no
    special token holds one (a match then never spans two texts)."""
    if any("\0" in t for t in stats.special_texts):
        for text in texts:
            count_specials(text, stats)
        return
    count_specials("\0".join(texts), stats)


def count_specials(text: str, stats: TokenizeStats) -> None:
    """Count the tokenizer's special tokens (``stats.special_texts``) that ``text`` holds
    literally, each by name (``--special`` says what they become)."""
    global _LAST
    texts, last = stats.special_texts, _LAST
    if last[0] is not texts:  # one run asks with one tuple: hashing 1,283 names costs 11 us
        last = _LAST = (texts, _special_finder(texts))
    names = last[1](text)
    if names:
        found(stats, names)


# The last (special_texts, finder) asked for, replaced whole (threads read it as they go).
_LAST: tuple[tuple[str, ...] | None, Callable[[str], list[str]]] = (None, lambda text: [])


def found(stats: TokenizeStats, names: list[str]) -> None:
    stats.special_found += len(names)
    for name in names:
        stats.specials_found[name] = stats.specials_found.get(name, 0) + 1


@functools.lru_cache(maxsize=4)
def _special_finder(texts: tuple[str, ...]) -> Callable[[str], list[str]]:
    """The special tokens a text holds, in order: GPT-2's one ``<|endoftext|>`` by a substring
    count; a tokenizer's hundreds (Llama 3: 256, DeepSeek V3: 1,230) by :class:`_Literals`."""
    if not texts:
        return lambda text: []
    if len(texts) == 1:
        (only,) = texts
        return lambda text: [only] * text.count(only)
    return _literals(texts).find


class _Literals:
    """Find many literal strings in text as ``re.findall`` of their alternation, longest
    first, would (leftmost match; the longest of those starting there; non-overlapping),
    without that regex: compiling DeepSeek V3's 1,230 alternatives takes 0.17 s, a tenth of a
    whole run, and one stray ``<|`` in a corpus made every run pay it. The text is searched
    (in C) only for the strings' first two characters; at each place one is found, each length
    of string beginning so is one set lookup."""

    def __init__(self, texts: tuple[str, ...]) -> None:
        self._heads = sorted({t[:2] for t in texts})
        self._at_heads = _head_places(self._heads)
        self._strings = frozenset(texts)
        lengths: dict[str, set[int]] = {}
        for t in texts:
            if len(t) > 1:
                lengths.setdefault(t[:2], set()).add(len(t))
        # the lengths of the strings that begin with each two characters, longest first
        self._lengths = {head: sorted(n, reverse=True) for head, n in lengths.items()}

    def find(self, text: str, first: bool = False) -> list[str]:
        # every place a string can start: one of the heads is there (a one-character string
        # is its own head)
        places = (m.start() for m in self._at_heads.finditer(text))
        found: list[str] = []
        end = 0
        for at in places:
            if at < end:  # inside the last match
                continue
            lengths = self._lengths.get(text[at : at + 2], ())
            match = next(
                (text[at : at + n] for n in lengths if text[at : at + n] in self._strings), ""
            )
            if not match and text[at] in self._strings:
                match = text[at]
            if match:
                found.append(match)
                if first:
                    break
                end = at + len(match)
        return found


def _head_places(heads: list[str]) -> re.Pattern[str]:
    """A pattern matching one character at every place one of ``heads`` (one or two
    characters each) begins, overlapping ones too: each head's first character, followed (a
    lookahead) by one of its second ones. One scan of the text in C with a literal first
    character (DeepSeek V3's heads, ``<|`` and ``<｜``: 0.05 s for 70 MB of wide text, where
    a ``str.find`` for each head took 0.17 s)."""
    seconds: dict[str, set[str]] = {}
    alone: set[str] = set()
    for head in heads:
        if len(head) == 1:
            alone.add(head)
        else:
            seconds.setdefault(head[0], set()).add(head[1])
    parts = [re.escape(c) for c in sorted(alone)]
    parts += [
        f"{re.escape(c)}(?=[{''.join(re.escape(x) for x in sorted(after))}])"
        for c, after in sorted(seconds.items())
        if c not in alone  # a one-character head already matches everywhere it begins
    ]
    return re.compile("|".join(parts))


def first_special(texts: tuple[str, ...], text: str) -> str | None:
    """The first of the special tokens ``texts`` that ``text`` holds literally, or None."""
    if not texts:
        return None
    if len(texts) == 1:  # GPT-2's one <|endoftext|>: a substring test
        return texts[0] if texts[0] in text else None
    found = _literals(texts).find(text, first=True)
    return found[0] if found else None


@functools.lru_cache(maxsize=4)
def _literals(texts: tuple[str, ...]) -> _Literals:
    return _Literals(texts)


def refuse_special(stats: TokenizeStats, doc: str, text: str, first_line: int) -> None:
    """``--special error``: raise :class:`InputError` naming the first literal special token
    of the tokenizer's in ``text`` and where it is; nothing when there is none."""
    mark = first_special(stats.special_texts, text)
    if mark is None:
        return
    at = text.index(mark)
    where = doc if ":" in doc else f"{doc}:{first_line + text.count(chr(10), 0, at)}"
    raise InputError(
        f"{where}: text contains {mark} (refused by --special error; "
        "use --special text to encode it as plain text)"
    )
