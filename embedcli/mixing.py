"""Corpus assembly as arithmetic on document lengths: which documents of each source a token
budget takes at given weights, in what order they are written, which are duplicates.

Everything here is a function of document lengths (and, for dedup, digests), the weights, the
budget and the seed, never of how the documents are stored or read, so the stage that writes
the ids (``stages/mix.py``) and any later way of running it agree on every document.

Randomness is a keyed hash (splitmix64, the finaliser of Java's ``SplittableRandom``) of the
seed, a purpose, the source, the pass and the document's index, never a generator's stream: a
document's place is a property of the document, computable wherever the document is read.

* **Selection.** A source's documents are taken in whole passes, each pass in the order of its
  keys, the last pass cut at the first document that reaches the source's share of the budget
  (so the tokens taken are within one document of the target). At most ``max_repeat`` passes'
  worth of tokens: a budget that would need more is refused, naming the source and the largest
  budget that fits.
* **Order.** Every document taken, of every source and pass, sorted by a second key (the global
  shuffle), or in source order (sources as given, then pass, then the document's index).
* **Dedup.** The first occurrence, in source order, of each distinct digest is kept.

Example:
    >>> sel = select([np.array([5, 5, 5, 5]), np.array([10, 10])], [0.5, 0.5], budget=20)
    >>> [s.tokens for s in sel.sources], [s.documents for s in sel.sources]
    ([10, 10], [2, 1])
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedcli.errors import UsageError

SELECT, ORDER, HELD = 1, 2, 3  # what a key is for: which documents a pass takes, where
# they go, where a held-out (validation) document goes
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    return x ^ (x >> np.uint64(31))


def keys(seed: int, purpose: int, source: int, passes: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """One 64-bit key per (pass, document) of ``source``."""
    head = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64))
    head = _mix64(head ^ np.uint64(purpose))
    head = _mix64(head ^ np.uint64(source))
    lows = (passes.astype(np.uint64) << np.uint64(40)) | docs.astype(np.uint64)
    return _mix64(head ^ _mix64(lows))


@dataclass
class Taken:
    """What the budget took of one source: document indices with their pass, and totals."""

    docs: np.ndarray  # int64 indices into the source's documents, pass by pass
    passes: np.ndarray  # int64: which pass each one belongs to
    target: int  # the tokens its weight asked for
    tokens: int  # the tokens taken (within one document of ``target``)
    available: int  # the source's tokens (after dedup)

    @property
    def documents(self) -> int:
        return int(self.docs.size)

    @property
    def repeats(self) -> float:
        """Passes' worth of tokens taken: 1.0 is every document once."""
        return self.tokens / self.available if self.available else 0.0


@dataclass
class Selection:
    sources: list[Taken]
    budget: int  # the tokens asked for (the sum of the targets)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.sources)


def default_budget(totals: Sequence[int], weights: Sequence[float], max_repeat: float) -> int:
    """The largest budget these weights allow with at most ``max_repeat`` passes a source:
    no source's share of it, exact or rounded to tokens as :func:`select` rounds it, is more.

    Example (two one-token sources, 3.5 passes each: a budget of 7 would round a share of 3.5
    up to 4 tokens, past the cap of 3):
        >>> default_budget([1, 1], [0.5, 0.5], 3.5)
        6
    """
    fits = [max_repeat * t / w for t, w in zip(totals, weights, strict=True) if w > 0]
    if not fits:
        return 0
    budget = int(math.floor(min(fits)))
    for t, w in zip(totals, weights, strict=True):
        if w > 0:  # the largest budget whose rounded share of this source fits its cap
            cap = int(math.floor(max_repeat * t))
            most = int(math.floor((cap + 0.5) / w))
            while most > 0 and int(round(w * most)) > cap:  # a step or two: float rounding
                most -= 1
            budget = min(budget, most)
    return budget


def select(
    lengths: Sequence[np.ndarray],
    weights: Sequence[float],
    budget: int | None = None,
    max_repeat: float = 1.0,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> Selection:
    """The documents each source gives to a ``budget`` of tokens at ``weights`` (one per
    source, summing to 1; :func:`parse_weights`). ``budget=None``: :func:`default_budget`.

    Raises :class:`UsageError` when a source would need more than ``max_repeat`` passes."""
    names = list(names or [f"source {k}" for k in range(len(lengths))])
    totals = [int(x.sum()) for x in lengths]
    given = budget is not None
    budget = default_budget(totals, weights, max_repeat) if budget is None else budget
    taken = []
    for k, (sizes, weight) in enumerate(zip(lengths, weights, strict=True)):
        target = int(round(weight * budget))
        cap = int(math.floor(max_repeat * totals[k]))
        if target > cap:
            if given:
                raise UsageError(
                    _too_much(names[k], target, totals[k], max_repeat, totals, weights)
                )
            target = cap  # the default budget's rounding
        taken.append(_take(sizes, target, seed, k))
    return Selection(taken, sum(t.target for t in taken))


def _too_much(
    name: str,
    target: int,
    total: int,
    max_repeat: float,
    totals: Sequence[int],
    weights: Sequence[float],
) -> str:
    fits = default_budget(totals, weights, max_repeat)
    return (
        f"source {name}: the budget asks for {target:,} of its tokens, more than "
        f"{max_repeat:g} pass{'' if max_repeat == 1 else 'es'} over its {total:,} (--max-repeat {max_repeat:g}); "
        f"the largest budget these weights allow is {fits:,} (--tokens {fits})"
    )


def _take(sizes: np.ndarray, target: int, seed: int, source: int) -> Taken:
    """Whole passes, then the part of the next pass (in key order) that reaches ``target``."""
    sizes = np.asarray(sizes, np.int64)
    total = int(sizes.sum())
    n = sizes.size
    if target <= 0 or total == 0:
        empty = np.zeros(0, np.int64)
        return Taken(empty, empty, max(target, 0), 0, total)
    full, rest = divmod(target, total)
    docs, passes = [], []
    for p in range(full + (1 if rest else 0)):
        order = np.argsort(keys(seed, SELECT, source, np.full(n, p), np.arange(n)), kind="stable")
        if p == full:  # the last, partial pass: up to the first document reaching the target
            reach = np.cumsum(sizes[order])
            order = order[: int(np.searchsorted(reach, rest)) + 1]
        docs.append(order)
        passes.append(np.full(order.size, p, np.int64))
    picked = np.concatenate(docs).astype(np.int64)
    return Taken(picked, np.concatenate(passes), target, int(sizes[picked].sum()), total)


def order(selection: Selection, seed: int, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(source, position in that source's taken list)`` of every output document, in
    output order: sorted by key (``shuffle``), else sources as given, each pass by pass with
    its documents in their own order."""
    sources, positions, sort_by = [], [], []
    for k, taken in enumerate(selection.sources):
        at = np.arange(taken.documents)
        if shuffle:
            sort_by.append(keys(seed, ORDER, k, taken.passes, taken.docs))
        else:  # source order: pass, then document index
            at = at[np.lexsort((taken.docs, taken.passes))]
        sources.append(np.full(at.size, k, np.int64))
        positions.append(at)
    if not sources:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    source, position = np.concatenate(sources), np.concatenate(positions)
    if shuffle:
        # a 64-bit key per document: ties (one in 2**64 a pair) keep source order (stable)
        by = np.argsort(np.concatenate(sort_by), kind="stable")
        source, position = source[by], position[by]
    return source, position


def first_occurrences(digests: Sequence[bytes]) -> np.ndarray:
    """A mask keeping the first of each distinct digest, in the order given."""
    seen: set[bytes] = set()
    keep = np.zeros(len(digests), bool)
    for i, d in enumerate(digests):
        if d not in seen:
            seen.add(d)
            keep[i] = True
    return keep


def parse_weights(text: str | None, names: Sequence[str], totals: Sequence[int]) -> list[float]:
    """``--weights``: ``0.7,0.2,0.1`` (the sources in order) or ``web=0.7,code=0.3`` (by name);
    ``None``: each source's share of all the tokens (every document once). Weights are at
    least 0 and sum to 1.

    Example:
        >>> parse_weights("code=0.25,web=0.75", ["web", "code"], [10, 10])
        [0.75, 0.25]
    """
    if text is None:
        whole = sum(totals)
        return [t / whole if whole else 1 / len(totals) for t in totals]
    parts = [p.strip() for p in text.split(",") if p.strip()]
    named = all("=" in p for p in parts)
    if not named and any("=" in p for p in parts):
        raise UsageError(f"--weights {text}: give every weight by name or none")
    try:
        if named:
            pairs = dict(_pair(p) for p in parts)
            unknown = sorted(set(pairs) - set(names))
            if unknown or len(pairs) != len(names):
                raise UsageError(
                    f"--weights {text}: name each source once ({', '.join(names)})"
                    + (f"; no source is called {unknown[0]}" if unknown else "")
                )
            weights = [pairs[n] for n in names]
        else:
            weights = [float(p) for p in parts]
    except ValueError:
        raise UsageError(
            f"--weights {text}: not numbers (e.g. 0.7,0.3 or web=0.7,code=0.3)"
        ) from None
    if len(weights) != len(names):
        raise UsageError(f"--weights {text}: {len(weights)} weights for {len(names)} sources")
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise UsageError(f"--weights {text}: a weight is negative or not a number")
    if abs(sum(weights) - 1) > 1e-6:
        raise UsageError(f"--weights {text}: they sum to {sum(weights):g}, not 1")
    return weights


def _pair(part: str) -> tuple[str, float]:
    name, _, value = part.partition("=")
    return name.strip(), float(value)


_COUNT_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}


def parse_count(text: str, option: str = "--tokens") -> int:
    """``--tokens``: ``10B`` -> 10,000,000,000; ``500M``, ``1.5k`` and plain numbers too."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]?)\s*", text.replace("_", ""))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _COUNT_UNITS:
        raise UsageError(f"{option} {text}: not a count (e.g. 10B, 500M, 250000)")
    return int(float(match.group(1)) * _COUNT_UNITS[unit])
