"""``embedcli.Windows``: the training windows ``embedcli batch`` makes, as a value a caller
holds: planned at once, gathered only when asked.

    >>> import numpy as np, embedcli as ec
    >>> windows = ec.Tokens.from_ids(np.arange(10)).windows(4, stride=2, batch_size=3)
    >>> len(windows), windows.shape, windows[2][0].tolist(), windows[2][1].tolist()
    (3, (3, 4), [4, 5, 6, 7], [5, 6, 7, 8])

``windows[i]`` is window ``i``'s inputs and targets (the targets its inputs shifted by one),
``batches()`` yields them ``batch_size`` at a time as the book's ``DataLoader`` does,
``inputs``/``targets`` are the whole ``(N, T)`` arrays, and ``save(path)`` writes the bytes
``embedcli batch`` writes for the same ids and options, streamed (a plan of billions of
windows is never held in memory). The options are ``batch``'s, with its defaults: the last
partial batch dropped, windows in order unless ``shuffle``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from embedcli.options import WindowOptions
from embedcli.paths import PathArg, one_path
from embedcli.stages.common import make_plan

if TYPE_CHECKING:
    from embedcli.formats.base import TokenSource
    from embedcli.token_windows import TokenStream


class Windows:
    """``len()`` windows of ``max_length`` ids over some token ids, ``(inputs, targets)``
    each, in ``batch_size`` batches: :meth:`Tokens.windows`'s result."""

    def __init__(self, source: TokenSource, opts: WindowOptions, paths: list[str]) -> None:
        self.source, self.opts, self.paths = source, opts, list(paths)
        self.plan = make_plan(source, opts)  # refuses what batch refuses, in its words
        self._dtype = np.dtype(opts.dtype)
        self._ids: TokenStream | None = None  # the segments, read by position

    def __len__(self) -> int:
        return self.plan.n_windows

    @property
    def max_length(self) -> int:
        return self.plan.max_length

    @property
    def batch_size(self) -> int:
        return self.plan.batch_size

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, T)``: the shape of :attr:`inputs` and of :attr:`targets`."""
        return (len(self), self.max_length)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Window ``i``'s inputs and targets (``T`` ids each, the targets shifted by one)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"window {i} of {n}")
        inputs, targets = self.rows(i % n, i % n + 1)
        return inputs[0], targets[0]

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``start..stop``: their inputs and targets, ``(stop - start, T)`` each,
        gathered from the ids' segments as they are (a shard set is never joined for it)."""
        stop = max(start, min(stop, len(self)))
        starts = np.asarray(self.plan.starts[start:stop], np.int64)
        rows = self._stream().read_rows(starts, self.max_length + 1)
        return rows[:, :-1].astype(self._dtype), rows[:, 1:].astype(self._dtype)

    def _stream(self) -> TokenStream:
        if self._ids is None:
            from embedcli.token_windows import TokenStream

            source = self.source
            self._ids = TokenStream(source.segments, source.doc_offsets, source.metadata)
        return self._ids

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(inputs, targets)`` of ``batch_size`` windows at a time, in the plan's order: the
        book's ``DataLoader(..., shuffle=False, drop_last=True)`` batches (a last one smaller
        only with ``drop_last=False``)."""
        for start in range(0, len(self), self.batch_size):
            yield self.rows(start, start + self.batch_size)

    @property
    def inputs(self) -> np.ndarray:
        """All the inputs, ``(N, T)``, gathered into memory."""
        return self.rows(0, len(self))[0]

    @property
    def targets(self) -> np.ndarray:
        """All the targets, ``(N, T)``, gathered into memory."""
        return self.rows(0, len(self))[1]

    def save(
        self, path: PathArg, *, no_clobber: bool = False, max_shard_size: int | None = None
    ) -> list[str]:
        """Write the windows as ``embedcli batch`` does (the same bytes for the same ids and
        options), streamed; ``max_shard_size`` splits it as ``--max-shard-size``. The paths
        written, all of them committed together."""
        from embedcli.stages.batch import write_windows_file
        from embedcli.stages.common import windows_file
        from embedcli.storage.outputs import check_output

        output = one_path(path, "output")
        check_output(output, inputs=self.paths, no_clobber=no_clobber)
        facts = self.plan.facts()
        specs, meta = windows_file(
            self.plan, self.opts, self.source.metadata, facts, max_shard_size
        )
        return write_windows_file(
            output,
            self.source,
            self.plan,
            self.opts,
            specs,
            meta,
            read=self.paths,
            no_clobber=no_clobber,
            max_shard_size=max_shard_size,
        )

    def __repr__(self) -> str:
        order = "shuffled" if self.opts.shuffle else "in order"
        return (
            f"Windows({len(self):,} of {self.max_length} ids, batches of {self.batch_size}, "
            f"{order})"
        )
