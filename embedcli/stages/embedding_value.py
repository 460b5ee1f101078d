"""``embedcli.Embedding``: the token and positional tables as a value, applied to windows in
memory (``embedcli embed`` streams large outputs to a file; this is for what fits)::

    >>> import embedcli as ec
    >>> emb = ec.Embedding.random(vocab_size=6, dim=3, context_length=4, seed=123)
    >>> emb.token[0]
    tensor([ 0.3374, -0.1778, -0.1690])
    >>> emb.embed([[0, 1], [2, 3]]).shape
    torch.Size([2, 2, 3])

``random`` draws the book's tables (``torch.manual_seed(seed)``; ``nn.Embedding(vocab, dim)``;
``nn.Embedding(context, dim)``), ``from_checkpoint`` reads them from a model's safetensors
(GPT-2's ``wte``/``wpe``, a sharded checkpoint, a directory); ``embed`` gives
``token[ids] + pos[:T]``, the numbers ``embedcli embed`` writes for the same windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from embedcli.errors import UsageError
from embedcli.options import DEFAULT_DEVICE, DEFAULT_DIM, DEFAULT_MAX_LENGTH, DEFAULT_SEED

if TYPE_CHECKING:
    import torch


class Embedding:
    """A token table ``(vocab_size, dim)`` and a positional table ``(context_length, dim)``
    (None: no positional embeddings, as RoPE models have), float tensors on the CPU."""

    def __init__(self, token: torch.Tensor, pos: torch.Tensor | None) -> None:
        if token.ndim != 2 or (
            pos is not None and (pos.ndim != 2 or pos.shape[1] != token.shape[1])
        ):
            raise UsageError("tables must be 2-D, the positional one as wide as the token one")
        self.token, self.pos = token, pos
        self._embedders: dict[tuple[Any, ...], Any] = {}  # the last tables moved to a device

    @classmethod
    def random(
        cls,
        vocab_size: int = 50257,
        dim: int = DEFAULT_DIM,
        context_length: int = DEFAULT_MAX_LENGTH,
        *,
        seed: int = DEFAULT_SEED,
        pos: str = "learned",
    ) -> Embedding:
        """Random tables as the book draws them (``pos``: learned, sinusoidal or none)."""
        from embedcli.embedding.tables import random_tables

        return cls(*random_tables(vocab_size, dim, context_length, seed=seed, pos=pos))

    @classmethod
    def from_checkpoint(
        cls, path: str, *, token_key: str | None = None, pos_key: str | None = None
    ) -> Embedding:
        """The tables of a model's checkpoint, found by their usual names or named."""
        from embedcli.embedding.tables import load_weights

        loaded = load_weights(path, token_key=token_key, pos_key=pos_key)
        return cls(loaded.token, loaded.pos)

    @property
    def vocab_size(self) -> int:
        return int(self.token.shape[0])

    @property
    def dim(self) -> int:
        return int(self.token.shape[1])

    @property
    def context_length(self) -> int | None:
        return None if self.pos is None else int(self.pos.shape[0])

    def embed(
        self, windows: Any, *, device: str = DEFAULT_DEVICE, dtype: str | None = None
    ) -> torch.Tensor:
        """``(N, T, dim)`` on the CPU for ``windows``: ids ``(N, T)`` (an array, a tensor,
        nested lists), a :class:`Windows` or a :class:`TokenWindows` (all of its inputs). ``device`` as ``--device``
        (cpu, cuda, cuda:N, mps, auto); ``dtype`` the tables' and output's (default: theirs)."""

        from embedcli.embedding.tables import (
            Embedder,
            check_id_range,
            resolve_device,
            torch_dtype,
        )

        ids = _window_ids(windows)
        if ids.ndim != 2:
            raise UsageError(f"windows must be (N, T) ids, not of shape {ids.shape}")
        check_id_range(ids, self.vocab_size, where="windows")
        if self.pos is not None and ids.shape[1] > self.pos.shape[0]:
            raise UsageError(
                f"windows of {ids.shape[1]} ids need a positional table of at least that many "
                f"rows (it has {self.pos.shape[0]})"
            )
        kind = torch_dtype(dtype) if dtype is not None else self.token.dtype
        where = resolve_device(device)
        # the tables moved to a device (and cast) once, not for every call of a loop
        key = (where, kind, id(self.token), id(self.pos))  # tables replaced: moved again
        embedder = self._embedders.get(key)
        if embedder is None:
            embedder = Embedder(self.token, self.pos, device=where, dtype=kind)
            self._embedders = {key: embedder}
        return embedder.embed(ids)

    def __repr__(self) -> str:
        pos = "no positional table" if self.pos is None else f"context {self.context_length:,}"
        return f"Embedding(vocab {self.vocab_size:,}, dim {self.dim}, {pos})"


def _window_ids(windows: Any) -> np.ndarray:
    """The ids of ``windows`` as one integer array."""
    import torch

    from embedcli.stages.windows_value import Windows

    if isinstance(windows, Windows):
        return windows.inputs.astype(np.int64, copy=False)
    if hasattr(windows, "rows") and hasattr(windows, "max_length"):  # a TokenWindows
        return np.asarray(windows.rows(np.arange(len(windows)))[:, :-1])
    if isinstance(windows, torch.Tensor):
        windows = windows.cpu().numpy()
    ids = np.asarray(windows)
    if ids.size and ids.dtype.kind not in "iu":
        raise UsageError(f"windows must be integer ids, not {ids.dtype}")
    return ids.astype(np.int64, copy=False)
