"""Windows of several token sets blended by weight, for training (issue 34, item 3):
``create_dataloader([("web.bin", 0.7), ("code.bin", 0.3)], 8, 1024)``.

Every source is a :class:`~embedcli.token_windows.TokenWindows` (any token input: a file, a
shard set, a manifest) with the same ``max_length`` and ``stride``, so a share of the windows
is the same share of the tokens. The mixture's order is fixed by the weights alone (Megatron's
``BlendedDataset`` makes it the same way, greedily): the ``k``-th window drawn from source ``d``
has the ideal place ``(k + 1/2) / w_d``, and the mixture takes the draws in order of place
(ties: the earlier source), so after any ``n`` windows each source has given ``n * w_d`` of
them to within fewer windows than there are sources (about one in practice). A source drawn
fewer times than it has windows gives windows spread evenly over all of it; one drawn more
often starts again from its first (upsampling).

The loader's sampler then shuffles, shards by rank and resumes the mixture exactly as it does a
single token set: ``shuffle=True, seed=s`` is a reproducible order of the mixture's windows,
each rank a disjoint share, ``state_dict()`` the batches consumed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import torch
from torch.utils.data import Dataset

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.paths import PathArg
from embedcli.storage.remote import is_url
from embedcli.token_windows import Cache, TokenWindows, WindowBatch

MixtureSpec = Sequence[tuple[Any, float]] | Mapping[Any, float] | PathArg


def is_mixture(spec: object) -> TypeGuard[MixtureSpec]:
    """Whether ``spec`` names sources with weights (a mapping, ``(path, weight)`` pairs, or
    the JSON file ``mix --emit-weights json`` writes), rather than one token input or a shard
    set."""
    if isinstance(spec, Mapping):
        return True
    if isinstance(spec, (str, os.PathLike)):
        return read_mixture(spec) is not None
    if isinstance(spec, np.ndarray) or not isinstance(spec, Sequence):
        return False
    return bool(spec) and all(
        isinstance(item, tuple) and len(item) == 2 and _is_number(item[1]) for item in spec
    )


def read_mixture(path: PathArg) -> list[tuple[str, list[str], float]] | None:
    """``(name, files, weight)`` of each source of the JSON mixture at ``path`` (its local
    files relative to it), or None when ``path`` is not one (a token file, a manifest)."""
    name = os.fspath(path)
    if not name.endswith(".json") or not os.path.isfile(name):
        return None
    try:
        with open(name, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != c.MIXTURE_FORMAT:
        return None
    base = os.path.dirname(os.path.abspath(name))
    try:
        return [
            (
                str(s["name"]),
                [f if is_url(f) else os.path.join(base, f) for f in s["files"]],
                float(s["weight"]),
            )
            for s in doc["sources"]
        ]
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{name}: a mixture whose sources lack name, files or weight") from None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mixture_order(
    weights: Sequence[float] | np.ndarray, total: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``total`` windows: the source it comes from, and how many windows that
    source gave before it (its draw number).

    Example:
        >>> source, draw = mixture_order([0.75, 0.25], 8)
        >>> source.tolist(), draw.tolist()
        ([0, 0, 1, 0, 0, 0, 1, 0], [0, 1, 0, 2, 3, 4, 1, 5])
    """
    w = _normalised(weights)
    places, sources, draws = [], [], []
    for d, share in enumerate(w):
        if share == 0:  # a source switched off: no draws
            continue
        k = np.arange(math.ceil(total * share) + 2, dtype=np.int64)
        places.append((k + 0.5) / share)
        sources.append(np.full(k.size, d, dtype=np.int32))
        draws.append(k)
    order = np.lexsort((np.concatenate(sources), np.concatenate(places)))[:total]
    return np.concatenate(sources)[order], np.concatenate(draws)[order]


def _normalised(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise UsageError("a mixture needs at least one source with a weight")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise UsageError(
            f"mixture weights must be numbers of at least 0, not all 0 (got {w.tolist()})"
        )
    return w / w.sum()


class MixtureWindows(Dataset):
    """Windows ``(inputs, targets)`` drawn from several token inputs in proportion to their
    weights (see the module's text); ``num_windows`` the mixture's length, by default the
    largest in which no source repeats a window.

    ``ds[i]`` is a window of one source, exactly as that source's ``TokenWindows`` gives it;
    :meth:`proportions` the share each source has of the mixture."""

    def __init__(
        self,
        sources: MixtureSpec,
        max_length: int,
        stride: int | None = None,
        *,
        num_windows: int | None = None,
        cross_docs: bool = True,
        encoding: str | None = None,
        cache: Cache | None = None,
    ):
        from_file = read_mixture(sources) if isinstance(sources, (str, os.PathLike)) else None
        if from_file is not None:
            pairs: list[tuple[Any, float]] = [(files, w) for _, files, w in from_file]
            self.names = [name for name, _, _ in from_file]
        elif isinstance(sources, (str, os.PathLike)):
            raise UsageError(f"{os.fspath(sources)}: not a mixture file (mix --emit-weights json)")
        else:
            pairs = list(sources.items()) if isinstance(sources, Mapping) else list(sources)
            if not pairs or not is_mixture(pairs):
                raise UsageError(
                    "a mixture is a list of (path, weight) pairs, a {path: weight} dict, "
                    "or the JSON mix --emit-weights json writes"
                )
            self.names = [_name(path) for path, _ in pairs]
        self.weights = _normalised([weight for _, weight in pairs])
        self.sets = [
            TokenWindows(
                path, max_length, stride, cross_docs=cross_docs, encoding=encoding, cache=cache
            )
            for path, _ in pairs
        ]
        _same_tokenizer(self.names, self.sets)
        lengths = np.array([len(s) for s in self.sets], dtype=np.int64)
        if num_windows is None:
            on = self.weights > 0  # a source of weight 0 is read by no window
            num_windows = int(np.min(np.floor(lengths[on] / self.weights[on])))
        if num_windows < 1:
            raise UsageError(f"num_windows must be at least 1 (got {num_windows})")
        self.source, draw = mixture_order(self.weights, num_windows)
        counts = np.bincount(self.source, minlength=len(self.sets))
        n, k = lengths[self.source], counts[self.source]
        spread = draw * n // np.maximum(k, 1)  # fewer draws than windows: evenly over the source
        self.index = np.where(k <= n, spread, draw % n)
        self.counts = counts

    def __len__(self) -> int:
        return int(self.source.size)

    def proportions(self) -> dict[str, float]:
        """Each source's share of the mixture's windows (and so of its tokens)."""
        total = max(len(self), 1)
        return {name: int(n) / total for name, n in zip(self.names, self.counts, strict=True)}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} of {len(self)}")
        return self.sets[self.source[index]][int(self.index[index])]

    def __getitems__(self, indices: list[int]) -> WindowBatch:
        """A batch gathered source by source (one gather each), in the order asked."""
        at = np.asarray(indices, dtype=np.int64)
        if at.size and (at.min() < 0 or at.max() >= len(self)):
            raise IndexError(f"a window of {at.tolist()} is outside 0..{len(self) - 1}")
        which = self.source[at]
        if which.size and (which == which[0]).all():  # the whole batch from one source
            return WindowBatch.of(self.sets[which[0]].rows(self.index[at]))
        rows = np.empty((at.size, self.sets[0].max_length + 1), dtype=np.int64)
        for d in np.unique(which):  # numpy throughout: one conversion to tensors at the end
            mine = np.flatnonzero(which == d)
            rows[mine] = self.sets[d].rows(self.index[at[mine]])
        return WindowBatch.of(rows)


def _name(path: PathArg | Sequence[PathArg]) -> str:
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    return "+".join(os.fspath(p) for p in path)


def _same_tokenizer(names: list[str], sets: list[TokenWindows]) -> None:
    """Refuse sources whose files record different tokenizers: their ids mean different text.
    A tokenizer file is known by its sha256 (the same file at two paths is one tokenizer)."""
    seen: dict[str, str] = {}
    for name, windows in zip(names, sets, strict=True):
        meta = windows.metadata
        key = meta.get(c.TOKENIZER_SHA256) or meta.get(c.ENCODING)
        if key:
            seen.setdefault(_ALIASES.get(key, key), name)
    if len(seen) > 1:
        (a, first), (b, second) = list(seen.items())[:2]
        raise UsageError(
            f"mixture sources use different tokenizers: {first} ({a[:24]}) and {second} ({b[:24]})"
        )


_ALIASES = {"r50k_base": "gpt2"}  # the bundled GPT-2 ranks go by both names
