"""Characters two engines classify differently, measured one by one as text brings them.

A pre-tokenizer splits text by Unicode classes (``\\p{L}``, ``\\p{N}``, ``\\s``...), and a
normalizer folds by Unicode tables; each engine carries the tables of the Unicode version it was
built with. gigatoken 0.10 knows Unicode 17, tiktoken 0.12's regex an older one: a character
assigned since (CJK Extension J, U+323B0...) is a letter to one and unassigned to the other, and
``"\\U000323b0's"`` splits differently. No fixed probe list keeps up with that, so it is
measured: a character goes through both engines in a probe that shows its class (:func:`_probe`),
many characters at once, a group that differs bisected down to its characters (:func:`find_gaps`).
Text holding a character that differs (a "gap") is encoded by the reference instead (exact; such
text is rare).

What is measured: every character a run's text holds, the first time one arrives (a run checks
each piece of text against :class:`GapCheck`'s table of verdicts; unknown characters are
measured there and then, in the worker that met them), plus ASCII, Latin-1 and a sample of
every plane when a tokenizer is first used. The verdicts are kept per engine pair and tokenizer
in embedcli's cache directory, so a machine measures a character once. Measuring every code
point of planes 0-3 and 14 up front, as embedcli did before, took 25-45 s on a first run with a
128k-vocabulary ``tokenizer.json`` (the reference's regexes run at about 0.4 M characters a
second on probes) for the same routing of the characters a corpus holds: a corpus holds a few
hundred to a few thousand distinct characters, measured in well under a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from embedcli.errors import OutputError
from embedcli.progress import ProgressFactory, no_progress
from embedcli.storage.atomic import atomic_file

# The planes that hold characters: 0-3 and 14 (planes 4-13 hold no character in any Unicode
# version so far, 15-16 are private use). A first use samples them; text brings any code point.
PLANES = ((0, 0x40000), (0xE0000, 0xF0000))
SAMPLE_STEP = 128  # every 128th code point of PLANES: 2,560 characters
BLOCK = 256  # characters measured in one pair of engine calls before bisecting
# More of the sample than this differing: the engines differ on more than Unicode versions.
MOST_SHARE = 0.15

# A verdict per code point: the engines agree on it, disagree, or nobody has measured it yet.
SAME, GAP, UNKNOWN = 0, 1, 2
CODE_POINTS = 0x110000
_SURROGATES = (0xD800, 0xE000)  # never in text an engine sees (the reader replaces them)

Encode = Callable[[str], "np.ndarray"]


class TooDifferent(Exception):
    """The engines disagree on more characters than Unicode versions explain."""


def _probe(c: str) -> str:
    """Text in which a character's class (letter, number, mark, space, case) shows in the
    ids: next to a contraction, inside a word and a number, doubled, after punctuation (a
    shorter probe, ``a{c}1{c}``, missed CJK Extension J: the merges hid the split)."""
    return f"{c}'s a{c}b 1{c}2 {c}{c} A{c}z .{c}\n"


def find_gaps(
    fast: Encode,
    reference: Encode,
    points: Sequence[int],
    advance: Callable[[int], None] = lambda n: None,
) -> list[int]:
    """The code points among ``points`` whose probes the two encoders encode differently,
    measured :data:`BLOCK` at a time (``advance(1)`` after each block)."""
    bad: list[int] = []

    def scan(group: Sequence[int]) -> None:
        text = "".join(_probe(chr(c)) for c in group)
        a, b = fast(text), reference(text)
        if a.shape == b.shape and np.array_equal(a, b):
            return
        if len(group) == 1:
            bad.append(group[0])
            return
        scan(group[: len(group) // 2])
        scan(group[len(group) // 2 :])

    for at in range(0, len(points), BLOCK):
        scan(points[at : at + BLOCK])
        advance(1)
    return bad


# CPython keeps a str in 1, 2 or 4 bytes a character, 4 only when one is past U+FFFF: the
# size of a compact str without its characters tells which (where it cannot, the UTF-16 copy's
# length does, at the price of that copy)
_UCS4_HEADER = sys.getsizeof("\U00010000") - 2 * 4


HOLDS_SLICE = 1 << 20  # characters: a 70 MB document's check took 140 MB of copies whole


class GapCheck:
    """Whether a text holds a gap character, at memory speed, measuring characters nobody has
    measured yet as they arrive.

    ``re.search`` over a character class of the 26 GPT-2 gap ranges ran at about 10 M
    characters a second, half of a tokenize run (issue 47). Here: ASCII text, and Latin-1 text
    when none of U+0000-U+00FF is a gap, holds none (checks CPython does in C without a copy or,
    for Latin-1, failing at the first wider character); other text is encoded to UTF-16 (UTF-32
    where it has characters past U+FFFF: a copy at memory speed), and its non-ASCII code points
    (all of them, if an ASCII character is a gap) looked up in a table of verdicts, one byte per
    code point. Code points the table does not know yet go to ``measure`` (which returns the gaps
    among them); without ``measure`` the table knows them all. Lone surrogates hold no gap.

    ``ranges``: the gaps of a table that knows every code point (all others agree).

    Example:
        >>> check = GapCheck([(0x88F, 0x88F), (0x323B0, 0x3347F)])
        >>> check.holds("text \\U000323b0's"), check.holds("caf\\u00e9 \\u2014"), check.holds("\\u088f")
        (True, False, True)
    """

    def __init__(
        self,
        ranges: Sequence[tuple[int, int]] = (),
        *,
        table: np.ndarray | None = None,
        measure: Callable[[np.ndarray], Sequence[int]] | None = None,
    ) -> None:
        if table is None:
            table = np.full(CODE_POINTS, SAME, np.uint8)
            for a, b in ranges:
                table[a : b + 1] = GAP
        table[slice(*_SURROGATES)] = SAME
        self.table, self.measure = table, measure
        self._lock = threading.Lock()  # a thread pool's workers share one check
        self._shortcuts()

    def _shortcuts(self) -> None:
        self.ascii_clean = not self.table[:0x80].any()  # every verdict SAME
        self.latin1_clean = not self.table[:0x100].any()

    def holds(self, text: str) -> bool:
        """Whether ``text`` holds a gap; a long text looked at a slice at a time, so the
        check's copies of it stay small (a slice never splits a character)."""
        return any(
            self.risky([text[at : at + HOLDS_SLICE]])[0]
            for at in range(0, max(len(text), 1), HOLDS_SLICE)
        )

    def risky(self, texts: Sequence[str]) -> list[bool]:
        """:meth:`holds` of each text; the characters none of them had measured are measured
        together, once."""
        points = [self._points(text) for text in texts]
        verdicts = [None if p is None else self.table[p] for p in points]
        if any(v is not None and v.max(initial=SAME) == UNKNOWN for v in verdicts):
            unknown = [
                p[v == UNKNOWN]
                for p, v in zip(points, verdicts, strict=True)
                if p is not None and v is not None
            ]
            self.learn(np.concatenate(unknown))
            verdicts = [None if p is None else self.table[p] for p in points]
        return [v is not None and v.max(initial=SAME) == GAP for v in verdicts]

    def _points(self, text: str) -> np.ndarray | None:
        """The text's code points that can be gaps (its non-ASCII ones when no ASCII
        character is one); None where a shortcut shows it holds no gap."""
        if self.ascii_clean and text.isascii():
            return None
        if self.latin1_clean:
            try:
                text.encode("latin-1")
                return None
            except UnicodeEncodeError:
                pass
        points: np.ndarray | None = None
        if sys.getsizeof(text) - _UCS4_HEADER < 4 * (len(text) + 1):  # no character past U+FFFF
            # UTF-16 is half UTF-32's copy, and the code points themselves when it has no
            # surrogate pair (a lone surrogate stays one unit, and is never a gap)
            units = text.encode("utf-16-le", "surrogatepass")
            if len(units) == 2 * len(text):
                points = np.frombuffer(units, "<u2")
        if points is None:
            points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")
        # most text is mostly ASCII: a comparison and a compress at memory speed, then the
        # table is read only at the few characters left
        return points[points >= 0x80] if self.ascii_clean else points

    def learn(self, points: np.ndarray) -> None:
        """Measure those of ``points`` the table does not know yet."""
        if self.measure is None:
            raise ValueError("this check knows every code point it can")
        with self._lock:
            points = np.unique(points)
            points = points[self.table[points] == UNKNOWN]
            if points.size:
                bad = np.asarray(self.measure(points), np.int64)
                self.table[points] = SAME
                self.table[bad] = GAP
                self._shortcuts()

    def ranges(self) -> list[tuple[int, int]]:
        """The gaps known so far, as ``[first, last]`` ranges."""
        return [(a, b) for a, b in _ranges(self.table == GAP)]


def _ranges(mask: np.ndarray) -> list[list[int]]:
    """``[first, last]`` of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return [[int(a), int(b) - 1] for a, b in edges.reshape(-1, 2)]


class Verdicts:
    """The verdicts kept in the cache directory: a JSON file of ``same`` and ``gaps`` ranges.
    Several processes add to it; each addition merges with what is there (a lost race costs
    only measuring again next time), written atomically."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> np.ndarray:
        table = np.full(CODE_POINTS, UNKNOWN, np.uint8)
        try:
            with open(self.path, encoding="utf-8") as f:
                kept = json.load(f)
            for verdict, key in ((SAME, "same"), (GAP, "gaps")):
                for a, b in kept[key]:
                    table[int(a) : int(b) + 1] = verdict
        except (OSError, ValueError, TypeError, KeyError, IndexError):
            table[:] = UNKNOWN  # nothing kept, or not readable: measured again
        return table

    def add(self, points: np.ndarray, bad: Sequence[int]) -> None:
        table = self.read()
        table[points] = SAME
        table[np.asarray(bad, np.int64)] = GAP
        kept = {"same": _ranges(table == SAME), "gaps": _ranges(table == GAP)}
        try:  # atomically (a reader sees the whole file or none; no temporary file left on error)
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with atomic_file(self.path, output=False) as f:  # a cache: not what the command wrote
                f.write(json.dumps(kept).encode())
        except (OSError, OutputError):  # a read-only home: measured again next time
            pass


# What the progress line says while a first use measures its sample (a first run on a machine
# sat silent for 30-40 s with a large tokenizer.json while the whole planes were measured:
# issue 32).
SCANNING = "first run: checking the fast engine's Unicode tables"
_PROGRESS: list[ProgressFactory] = []  # who draws the check's progress, while one is set


@contextlib.contextmanager
def reported(progress: ProgressFactory) -> Iterator[None]:
    """A first use's sample measured inside the block reports its blocks through ``progress``."""
    _PROGRESS.append(progress)
    try:
        yield
    finally:
        _PROGRESS.pop()


def sample() -> np.ndarray:
    """What a first use measures before any text: ASCII and Latin-1 (the shortcuts of
    :class:`GapCheck` rest on them), then every :data:`SAMPLE_STEP`-th code point of
    :data:`PLANES` (the share of those that differ tells engines that differ on more than
    Unicode versions)."""
    spread = [np.arange(max(a, 0x100), b, SAMPLE_STEP) for a, b in PLANES]
    points = np.concatenate([np.arange(0x100), *spread])
    return points[(points < _SURROGATES[0]) | (points >= _SURROGATES[1])]


def gap_check(key: str, fast: Encode, reference: Encode, cache: str) -> GapCheck:
    """The :class:`GapCheck` of the engine pair and tokenizer ``key``, its verdicts kept in
    ``cache``: what earlier runs on this machine measured, the :func:`sample` measured now if
    it is not among them.

    Raises :class:`TooDifferent` when more than :data:`MOST_SHARE` of the sample differs.
    """
    verdicts = Verdicts(os.path.join(cache, f"unicode-verdicts-{key}.json"))

    def measure(points: np.ndarray, advance: Callable[[int], None] = lambda n: None) -> list[int]:
        bad = find_gaps(fast, reference, points.tolist(), advance)
        verdicts.add(points, bad)
        return bad

    check = GapCheck(table=verdicts.read(), measure=measure)
    points = sample()
    unknown = points[check.table[points] == UNKNOWN]
    if unknown.size:
        factory = _PROGRESS[-1] if _PROGRESS else no_progress
        with factory(SCANNING, -(-unknown.size // BLOCK), "blocks") as advance:
            bad = measure(unknown, advance)
        check.table[unknown] = SAME
        check.table[np.asarray(bad, np.int64)] = GAP
        check._shortcuts()
    share = float(np.mean(check.table[points[points >= 0x100]] == GAP))
    if share > MOST_SHARE:
        raise TooDifferent(
            f"its ids differ from the reference's on {share:.0%} of a sample of characters"
        )
    return check


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
