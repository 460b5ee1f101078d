"""Characters two engines classify differently, found by trying every one of them.

A pre-tokenizer splits text by Unicode classes (``\\p{L}``, ``\\p{N}``, ``\\s``...), and a
normalizer folds by Unicode tables; each engine carries the tables of the Unicode version it was
built with. gigatoken 0.10 knows Unicode 17, tiktoken 0.12's regex an older one: a character
assigned since (CJK Extension J, U+323B0...) is a letter to one and unassigned to the other, and
``"\\U000323b0's"`` splits differently. No fixed probe list keeps up with that, so the self-check
measures it: every code point of planes 0-3 and 14 (planes 4-13 hold no character in any Unicode
version so far, 15-16 are private use) goes through both engines in probes that show its class,
block by block, a block that differs bisected down to its characters. The ranges found are kept
per engine pair and tokenizer in embedcli's cache directory, and any text holding one of them
is encoded by the reference instead (exact; such text is rare).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator

import numpy as np

from embedcli.errors import OutputError
from embedcli.processes import ordered_map
from embedcli.progress import ProgressFactory, no_progress
from embedcli.storage.atomic import atomic_file

PLANES = ((0, 0x40000), (0xE0000, 0xF0000))
BLOCK = 4096
# More disagreeing characters than this: the engines differ on more than Unicode versions.
MOST = 50_000

Encode = Callable[[str], "np.ndarray"]


class TooDifferent(Exception):
    """The engines disagree on more characters than Unicode versions explain."""


def _probe(c: str) -> str:
    """Text in which a character's class (letter, number, mark, space, case) shows in the
    ids: next to a contraction, inside a word and a number, doubled, after punctuation (a
    shorter probe, ``a{c}1{c}``, missed CJK Extension J: the merges hid the split)."""
    return f"{c}'s a{c}b 1{c}2 {c}{c} A{c}z .{c}\n"


def _block_text(lo: int, hi: int) -> str:
    return "".join(_probe(chr(c)) for c in range(lo, hi) if not 0xD800 <= c < 0xE000)


_REFERENCE: list[Encode] = []  # the reference a forked scan worker inherits


def _reference_ids(block: tuple[int, int]) -> np.ndarray:
    return _REFERENCE[0](_block_text(*block))


def _reference_blocks(
    reference: Encode, blocks: list[tuple[int, int]], processes: int
) -> Iterator[np.ndarray]:
    """The reference's ids for each block, in order: in forked worker processes when there
    are cores to spare (the reference libraries hold the GIL while they encode, and they are
    the slow side: 0.26 s a block for tokenizers' BPE against gigatoken's 0.01 s). The workers
    come from :func:`embedcli.processes.ordered_map`, with a worker's signals."""
    _REFERENCE[:] = [reference]
    try:
        yield from ordered_map(_reference_ids, blocks, processes)
    finally:
        _REFERENCE.clear()


def find_gaps(
    fast: Encode,
    reference: Encode,
    processes: int = 1,
    advance: Callable[[int], None] = lambda n: None,
) -> list[tuple[int, int]]:
    """The code point ranges ``[first, last]`` whose probes the two encoders encode
    differently (the reference's side of the first pass in ``processes`` workers;
    ``advance(1)`` after each block of :data:`BLOCK` code points)."""
    bad: list[int] = []

    def same(lo: int, hi: int, want: np.ndarray | None = None) -> bool:
        text = _block_text(lo, hi)
        a, b = fast(text), reference(text) if want is None else want
        return a.shape == b.shape and bool(np.array_equal(a, b))

    def scan(lo: int, hi: int, want: np.ndarray | None = None) -> None:
        if same(lo, hi, want):
            return
        if hi - lo == 1:
            bad.append(lo)
            return
        mid = (lo + hi) // 2
        scan(lo, mid)
        scan(mid, hi)

    blocks = _blocks()
    for block, want in zip(blocks, _reference_blocks(reference, blocks, processes), strict=True):
        scan(*block, want)
        advance(1)
        if len(bad) > MOST:
            raise TooDifferent(
                f"its ids differ from the reference's on more than {MOST:,} characters"
            )
    ranges: list[list[int]] = []
    for c in bad:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return [(a, b) for a, b in ranges]


def _blocks() -> list[tuple[int, int]]:
    return [(lo, min(lo + BLOCK, end)) for begin, end in PLANES for lo in range(begin, end, BLOCK)]


# What the progress line says while the scan runs (a first run on a machine sat silent for
# 30-40 s with a large tokenizer.json: issue 32).
SCANNING = "first run: checking the fast engine's Unicode tables"
_PROGRESS: list[ProgressFactory] = []  # who draws the scan's progress, while one is set


@contextlib.contextmanager
def reported(progress: ProgressFactory) -> Iterator[None]:
    """A scan that runs inside the block reports its blocks through ``progress``."""
    _PROGRESS.append(progress)
    try:
        yield
    finally:
        _PROGRESS.pop()


def gaps(key: str, fast: Encode, reference: Encode, cache: str) -> list[tuple[int, int]]:
    """:func:`find_gaps`, kept in ``cache`` under ``key`` (the engines' versions and the
    tokenizer): measured once per machine, in seconds (all cores)."""
    path = os.path.join(cache, f"unicode-gaps-{key}.json")
    try:
        with open(path, encoding="utf-8") as f:
            return [(int(a), int(b)) for a, b in json.load(f)]
    except (OSError, ValueError, TypeError):
        pass
    factory = _PROGRESS[-1] if _PROGRESS else no_progress
    with factory(SCANNING, len(_blocks()), "blocks") as advance:
        found = find_gaps(fast, reference, processes=_cores(), advance=advance)
    try:  # atomically (a reader sees the whole file or none; no temporary file left on error)
        os.makedirs(cache, exist_ok=True)
        with atomic_file(path, output=False) as f:  # a cache: not what the command wrote
            f.write(json.dumps(found).encode())
    except (OSError, OutputError):  # a read-only home: measured again next time
        pass
    return found


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class GapCheck:
    """Whether a text holds a character of ``ranges`` (the gaps), at memory speed.

    ``re.search`` over a character class of the 26 GPT-2 gap ranges ran at about 10 M
    characters a second, half of a tokenize run (issue 47). Here: ASCII text, and Latin-1 text
    when the first gap is past U+00FF, holds none (checks CPython does in C without a copy
    or, for Latin-1, failing at the first wider character); other text is encoded to UTF-16 (a
    copy at memory speed) and its code units looked up in a table of the Basic Multilingual
    Plane (15x the regex on prose); the surrogate pairs among them (characters past U+FFFF, such
    as emoji) are combined into code points and only those looked up in the ranges' bounds.
    ``ranges`` hold no surrogate (the scan never probes one); two lone surrogates in a text
    read as the pair they spell, which at worst sends the text to the reference.

    Example:
        >>> check = GapCheck([(0x88F, 0x88F), (0x323B0, 0x3347F)])
        >>> check.holds("text \\U000323b0's"), check.holds("caf\\u00e9 \\u2014"), check.holds("\\u088f")
        (True, False, True)
    """

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.first = min(a for a, _ in ranges)
        self.table = np.zeros(1 << 16, bool)  # BMP gaps, and every surrogate: look closer
        for a, b in ranges:
            if a < 1 << 16:
                self.table[a : min(b, 0xFFFF) + 1] = True
        self.table[0xD800:0xE000] = True
        # [a0, b0 + 1, a1, b1 + 1, ...]: a code point is in a range where its insertion index
        # is odd
        self.bounds = np.array([x for a, b in ranges for x in (a, b + 1)], np.uint32)

    def holds(self, text: str) -> bool:
        if text.isascii() and self.first >= 0x80:
            return False
        if self.first >= 0x100:
            try:
                text.encode("latin-1")
                return False
            except UnicodeEncodeError:
                pass
        units = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), "<u2")
        at = np.flatnonzero(self.table[units])
        if not at.size:
            return False
        found = units[at].astype(np.uint32)
        surrogate = (found >= 0xD800) & (found < 0xE000)
        if not surrogate.all():
            return True  # a gap character of the Basic Multilingual Plane itself
        # Past U+FFFF: a high surrogate and the low one after it are one code point (a lone
        # surrogate stands for itself, and is in no range: the scan never probes one).
        high = at[found < 0xDC00]
        high = high[high + 1 < units.size]
        low = units[high + 1].astype(np.uint32)
        paired = (low >= 0xDC00) & (low < 0xE000)
        hi = units[high[paired]].astype(np.uint32)
        points = 0x10000 + ((hi - 0xD800) << 10) + (low[paired] - 0xDC00)
        return bool((np.searchsorted(self.bounds, points, side="right") & 1).any())


def check(ranges: list[tuple[int, int]]) -> GapCheck | None:
    """A :class:`GapCheck` of ``ranges`` (None: there are none)."""
    return GapCheck(ranges) if ranges else None


def pattern(ranges: list[tuple[int, int]]) -> re.Pattern[str] | None:
    """A character class matching any of ``ranges`` (None: there are none); the slow,
    obvious form of :class:`GapCheck`, kept to test it against.

    Example:
        >>> pattern([(0x323B0, 0x3347F)]).search("text \\U000323b0's") is not None
        True
    """
    if not ranges:
        return None
    parts = "".join(
        re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges
    )
    return re.compile(f"[{parts}]")
