"""Token files straight into a training loop: a memory-mapped ``Dataset`` and ``DataLoader``.

The book's ``create_dataloader_v1`` keeps the whole text and every window in memory; nanoGPT's
``get_batch`` reads random windows from an ``np.memmap``. This module does the latter for any
token file embedcli reads (a token file, several, a shard manifest, nanoGPT/llm.c/Megatron files,
``.npy``): opening a multi-GB file takes milliseconds and memory stays at a window, and the
windows and batches are exactly the rows ``embedcli batch`` writes.

Example:
    >>> loader = create_dataloader("corpus.tokens.safetensors", batch_size=8, max_length=4)
    >>> for inputs, targets in loader:                  # doctest: +SKIP
    ...     logits = model(inputs)                      # inputs, targets: (8, 4) int64

The windows themselves are ``token_windows.py``'s; a mixture of several inputs ``mixture.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from embedcli.errors import UsageError
from embedcli.mixture import MixtureWindows, is_mixture
from embedcli.options import DEFAULT_SEED
from embedcli.paths import PathArg
from embedcli.token_windows import Cache, TokenStream, TokenWindows, WindowBatch, open_tokens
from embedcli.windows import shuffle_order

if TYPE_CHECKING:
    from embedcli.mixture import MixtureSpec
    from embedcli.storage.shard_cache import Prefetcher

__all__ = [  # the dataset's names, here too: where the loader's users import them from
    "Cache",
    "TokenStream",
    "TokenWindows",
    "WindowBatch",
    "WindowBatchSampler",
    "WindowLoader",
    "create_dataloader",
    "create_dataloader_v1",
    "open_tokens",
]


def collate_windows(data: Any) -> Any:
    """``default_collate``, except for a :class:`WindowBatch`, which is stacked already."""
    if isinstance(data, WindowBatch):
        return data.inputs, data.targets
    return default_collate(data)


class WindowBatchSampler(Sampler[list[int]]):
    """Batches of window indices: ``embedcli batch``'s order, split between ranks, resumable.

    ``shuffle=False`` is text order; ``shuffle=True`` is ``embedcli batch --shuffle --seed
    SEED``'s permutation for epoch 0 and another reproducible one for each later epoch. Batch
    ``k`` goes to rank ``k % world_size``; with ``equal_shares`` every rank gets the same
    number (the last ``world_size - 1`` batches at most are left out), as
    ``DistributedDataParallel`` needs: a rank with one step more would wait for the others
    forever. :meth:`state_dict` records the batches this rank has consumed in the epoch; after
    :meth:`load_state_dict` the iteration continues from there.
    """

    def __init__(
        self,
        windows: int,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = DEFAULT_SEED,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        epoch: int = 0,
        equal_shares: bool = False,
    ):
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1 (got {batch_size})")
        if world_size < 1:
            raise UsageError(f"world_size must be at least 1 (got {world_size})")
        if not 0 <= rank < world_size:
            raise UsageError(f"rank must be in 0..{world_size - 1} for world_size {world_size}")
        self.windows, self.batch_size, self.shuffle, self.seed = windows, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch, self.consumed, self.equal_shares = epoch, 0, equal_shares

    def order(self) -> np.ndarray:
        """Every window index, in this epoch's order."""
        if not self.shuffle:
            return np.arange(self.windows, dtype=np.int64)
        # Epoch 0 is exactly `embedcli batch --shuffle --seed SEED`; later epochs differ.
        seed = self.seed if self.epoch == 0 else [self.seed, self.epoch]
        return shuffle_order(seed, self.windows)

    def batches(self) -> list[np.ndarray]:
        """This rank's batches of the epoch, in order."""
        order = self.order()
        keep = (order.size // self.batch_size) * self.batch_size if self.drop_last else order.size
        cuts = range(0, keep, self.batch_size)
        every = [order[i : min(i + self.batch_size, keep)] for i in cuts]
        if self.equal_shares:
            every = every[: len(every) // self.world_size * self.world_size]
        return every[self.rank :: self.world_size]

    def __iter__(self):
        for batch in self.batches()[self.consumed :]:
            yield batch.tolist()

    def __len__(self) -> int:
        """This rank's batches in the epoch, by arithmetic (no permutation built)."""
        keep = self.windows // self.batch_size * self.batch_size if self.drop_last else self.windows
        count = -(-keep // self.batch_size)
        if self.equal_shares:
            count = count // self.world_size * self.world_size
        return len(range(self.rank, count, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``, from its first batch; the epoch already under way (loaded
        from a saved state, or partly iterated) keeps its position, so a training loop that
        calls ``set_epoch(epoch)`` at the top of every epoch resumes where it stopped."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_consumed": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise UsageError(f"the saved state is for seed {state['seed']}, not {self.seed}")
        self.epoch, self.consumed = int(state["epoch"]), int(state["batches_consumed"])


class WindowLoader(DataLoader):
    """A ``DataLoader`` that counts the batches it hands out, so its sampler can resume."""

    def __iter__(self):
        sampler = self.window_sampler
        batches = super().__iter__()  # the workers are forked here, before any thread starts:
        prefetch = _prefetcher(self)  # a fork while a thread holds the import lock hangs
        try:
            for batch in batches:
                sampler.consumed += 1
                yield batch
        finally:
            if prefetch is not None:
                prefetch.stop()
        sampler.consumed = 0  # the epoch is complete: the next pass starts at its beginning

    @property
    def window_sampler(self) -> WindowBatchSampler:
        sampler = self.batch_sampler
        assert isinstance(sampler, WindowBatchSampler)  # create_dataloader makes it so
        return sampler

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (its own reproducible order when shuffling); the epoch already
        under way keeps its position (see :meth:`WindowBatchSampler.set_epoch`)."""
        self.window_sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        return self.window_sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.window_sampler.load_state_dict(state)


def _prefetcher(loader: WindowLoader) -> Prefetcher | None:
    """For windows of shards in an object store: a thread that fetches the shards this
    rank's remaining batches need, in the order they first need them, ahead of the batches
    (and of the workers' own read-ahead)."""
    from embedcli.storage.shard_cache import Prefetcher, RemoteIds

    ds, sampler = loader.dataset, loader.window_sampler
    if not isinstance(ds, TokenWindows) or not ds.stream().remote:
        return None
    held: list[Any] = list(ds.stream().segments)  # the shards' RemoteIds, and separators
    remote = [j for j, s in enumerate(held) if isinstance(s, RemoteIds)]
    base = sampler.consumed
    lead = max(loader.num_workers, 1) * (loader.prefetch_factor or 2)  # the workers' read-ahead
    needs = _first_needs(ds, sampler, base, remote)  # from the batch the epoch resumes at
    at = lambda: sampler.consumed - base + lead  # noqa: E731
    return Prefetcher([held[j] for j in remote], needs, at).start()


def _first_needs(
    ds: TokenWindows,
    sampler: WindowBatchSampler,
    consumed: int,
    remote: list[int],
    block: int = 1024,
) -> Iterator[tuple[int, int]]:
    """``(batch, shard)``: the batch (counted from where the epoch resumes) in which each
    remote shard is first needed, in batch order; worked out in the prefetch thread, a block
    of batches at a time, and no further than every shard's first need (a shuffled epoch
    needs them all within its first batches)."""
    stream, place = ds.stream(), {j: i for i, j in enumerate(remote)}
    batches = sampler.batches()[consumed:]
    last, seen = len(stream.segments) - 1, set()
    for b0 in range(0, len(batches), block):
        chunk = batches[b0 : b0 + block]
        starts = ds.starts(np.concatenate(chunk))
        first = np.searchsorted(stream.bounds, starts, side="right") - 1
        end = np.searchsorted(stream.bounds, starts + ds.max_length, side="right") - 1
        when = np.repeat(np.arange(b0, b0 + len(chunk)), [b.size for b in chunk])
        segment = np.concatenate([first, np.minimum(end, last)])
        when = np.concatenate([when, when])
        by = np.lexsort((segment, when))
        found, at = np.unique(segment[by], return_index=True)
        for batch, k in sorted((int(when[by][a]), int(k)) for k, a in zip(found, at, strict=True)):
            if k in place and k not in seen:
                seen.add(k)
                yield batch, place[k]
        if len(seen) == len(place):
            return


def create_dataloader(
    path: PathArg | Sequence[PathArg] | np.ndarray | MixtureSpec,
    batch_size: int,
    max_length: int,
    stride: int | None = None,
    *,
    shuffle: bool = False,
    seed: int = DEFAULT_SEED,
    drop_last: bool = True,
    cross_docs: bool = True,
    num_workers: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    epoch: int = 0,
    equal_shares: bool = False,
    encoding: str | None = None,
    num_windows: int | None = None,
    cache_dir: str | None = None,
    cache_limit: int | str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> WindowLoader:
    """``(inputs, targets)`` batches ``(batch_size, max_length)`` from a token file, or from
    a mixture of several: ``[("web.bin", 0.7), ("code.bin", 0.3)]`` (or a dict), windows drawn
    from each in proportion to its weight, ``num_windows`` of them in all (default: as many as
    no source repeats; see :mod:`embedcli.mixture`), shuffled, sharded and resumed alike.

    ``shuffle=False`` gives exactly the rows ``embedcli batch`` writes, in order (and
    ``drop_last`` as ``--drop-last``/``--keep-last``); ``shuffle=True, seed=s`` the order of
    ``embedcli batch --shuffle --seed s`` for epoch 0, and another reproducible order per
    ``epoch``. ``rank``/``world_size`` (default: from ``torch.distributed`` when it is
    initialised) give disjoint shares that together cover every batch; ``equal_shares=True``
    makes the shares the same size, as ``DistributedDataParallel`` needs. Resume with
    ``loader.load_state_dict(saved)``, where ``saved = loader.state_dict()``.

    ``path`` may be in an object store (``s3://bucket/c.tokens.manifest.json``: embedcli's
    safetensors token files or their manifest): the headers are read once, and each shard is
    fetched whole into ``cache_dir`` when a batch first needs it (the least recently used
    removed past ``cache_limit``, e.g. ``"20GB"``), with ``storage_options`` for the
    filesystem; the batches are the local files' exactly.
    """
    if rank is None or world_size is None:
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        rank = rank if rank is not None else (dist.get_rank() if ready else 0)
        world_size = (
            world_size if world_size is not None else (dist.get_world_size() if ready else 1)
        )
    dataset: Dataset
    cache = Cache(cache_dir, cache_limit, storage_options=storage_options)
    if is_mixture(path):
        dataset = MixtureWindows(
            path, max_length, stride, num_windows=num_windows, cross_docs=cross_docs,
            encoding=encoding, cache=cache,
        )  # fmt: skip
    elif num_windows is not None:
        raise UsageError("num_windows applies to a mixture of several token inputs only")
    else:
        dataset = TokenWindows(
            path,  # type: ignore[arg-type]  # not a mixture: a path, paths or ids
            max_length, stride, cross_docs=cross_docs, encoding=encoding, cache=cache,
        )  # fmt: skip
    sampler = WindowBatchSampler(
        len(dataset),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
        epoch=epoch,
        equal_shares=equal_shares,
    )
    return WindowLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_windows
    )


def create_dataloader_v1(
    path: str | list[str],
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
) -> WindowLoader:
    """The book's ``create_dataloader_v1``, same arguments and defaults, over a token file
    (``embedcli tokenize`` it first) instead of a string held in memory.

    With ``shuffle=False`` the batches are the book's exactly. With ``shuffle=True`` the book's
    ``DataLoader`` draws its order from torch's global random state, which whatever ran before
    (a model's initialisation, another loader) has advanced, so no fixed seed reproduces it; this
    one uses ``embedcli batch --shuffle``'s seeded order (seed 123), the same on every machine.
    """
    return create_dataloader(
        path,
        batch_size,
        max_length,
        stride,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
    )
