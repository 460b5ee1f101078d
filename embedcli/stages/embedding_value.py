"""``embedcli.Embedding``: the token and positional tables as a value, applied to windows in
memory (``embedcli embed`` streams large outputs to a file; this is for what fits)::

    >>> import embedcli as ec
    >>> emb = ec.Embedding.random(vocab_size=6, dim=3, context_length=4, seed=123)
    >>> emb.token[0]
    tensor([ 0.3374, -0.1778, -0.1690])
    >>> emb.embed([[0, 1], [2, 3]]).tensor.shape
    torch.Size([2, 2, 3])

``random`` draws the book's tables (``torch.manual_seed(seed)``; ``nn.Embedding(vocab, dim)``;
``nn.Embedding(context, dim)``), ``from_checkpoint`` reads them from a model's safetensors
(GPT-2's ``wte``/``wpe``, a sharded checkpoint, a directory); ``embed`` gives
``token[ids] + pos[:T]``, the numbers ``embedcli embed`` writes for the same windows, as an
:class:`Embedded`: ``.tensor`` computes them in memory, ``.save(path)`` streams them into the
file ``embedcli embed`` writes (the same bytes, for the same windows and tables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast, get_args

import numpy as np

from embedcli.errors import UsageError
from embedcli.options import (
    DEFAULT_DEVICE,
    DEFAULT_DIM,
    DEFAULT_MAX_LENGTH,
    DEFAULT_SEED,
    FloatDtype,
)
from embedcli.paths import PathArg, one_path

if TYPE_CHECKING:
    import torch

    from embedcli.formats.base import TokenSource


class Embedding:
    """A token table ``(vocab_size, dim)`` and a positional table ``(context_length, dim)``
    (None: no positional embeddings, as RoPE models have), float tensors on the CPU."""

    def __init__(
        self,
        token: torch.Tensor,
        pos: torch.Tensor | None,
        *,
        origin: str = "given tables",
        seed: int = DEFAULT_SEED,
        pos_kind: str | None = None,
    ) -> None:
        if token.ndim != 2 or (
            pos is not None and (pos.ndim != 2 or pos.shape[1] != token.shape[1])
        ):
            raise UsageError("tables must be 2-D, the positional one as wide as the token one")
        self.token, self.pos = token, pos
        # how the tables were made, as an embed output's metadata records it
        self.origin, self.seed = origin, seed
        self.pos_kind = pos_kind or ("none" if pos is None else "learned")
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

        token, table = random_tables(vocab_size, dim, context_length, seed=seed, pos=pos)
        return cls(token, table, origin=f"random (seed {seed})", seed=seed, pos_kind=pos)

    @classmethod
    def from_checkpoint(
        cls, path: str, *, token_key: str | None = None, pos_key: str | None = None
    ) -> Embedding:
        """The tables of a model's checkpoint, found by their usual names or named."""
        from embedcli.embedding.tables import load_weights

        loaded = load_weights(path, token_key=token_key, pos_key=pos_key)
        kind = "learned" if loaded.pos is not None else "none"
        origin = f"{path} ({loaded.token_key}, {loaded.pos_key or kind})"  # as --weights says
        return cls(loaded.token, loaded.pos, origin=origin)

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
    ) -> Embedded:
        """``token[ids] + pos[:T]`` for ``windows``: ids ``(N, T)`` (an array, a tensor,
        nested lists), a :class:`Windows` or a :class:`TokenWindows` (all of its inputs).
        ``device`` as ``--device`` (cpu, cuda, cuda:N, mps, auto); ``dtype`` the tables' and
        output's (default: theirs). Checked now, computed when asked (:class:`Embedded`)."""
        from embedcli.embedding.tables import check_id_range, resolve_device, torch_dtype
        from embedcli.stages.windows_value import Windows

        kind = torch_dtype(dtype) if dtype is not None else self.token.dtype
        if isinstance(windows, Windows):  # gathered as they are embedded, saved streamed
            ids, length = None, windows.max_length
        else:
            ids = _window_ids(windows)
            if ids.ndim != 2:
                raise UsageError(f"windows must be (N, T) ids, not of shape {ids.shape}")
            check_id_range(ids, self.vocab_size, where="windows")
            length = ids.shape[1]
        if self.pos is not None and length > self.pos.shape[0]:
            raise UsageError(
                f"windows of {length} ids need a positional table of at least that many "
                f"rows (it has {self.pos.shape[0]})"
            )
        return Embedded(self, windows if ids is None else ids, resolve_device(device), kind)

    def embedder(self, device: torch.device, dtype: torch.dtype) -> Any:  # an Embedder
        """The tables moved to ``device`` as ``dtype``: once, not for every call of a loop."""
        from embedcli.embedding.tables import Embedder

        key = (device, dtype, id(self.token), id(self.pos))  # tables replaced: moved again
        embedder = self._embedders.get(key)
        if embedder is None:
            embedder = Embedder(self.token, self.pos, device=device, dtype=dtype)
            self._embedders = {key: embedder}
        return embedder

    def __repr__(self) -> str:
        pos = "no positional table" if self.pos is None else f"context {self.context_length:,}"
        return f"Embedding(vocab {self.vocab_size:,}, dim {self.dim}, {pos})"


class Embedded:
    """Embeddings ``(N, T, dim)`` of some windows with an :class:`Embedding`'s tables:
    :attr:`tensor` computes them in memory (on the CPU), :meth:`save` streams them into the
    file ``embedcli embed`` writes for the same windows and tables."""

    def __init__(
        self, embedding: Embedding, windows: Any, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.embedding, self.windows, self.device, self.dtype = embedding, windows, device, dtype
        self._tensor: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        n, t = self.windows.shape
        return (int(n), int(t), self.embedding.dim)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def tensor(self) -> torch.Tensor:
        """All of them, computed once: for what fits in memory (``save`` streams)."""
        if self._tensor is None:
            from embedcli.embedding.tables import check_id_range

            ids = _window_ids(self.windows)
            check_id_range(ids, self.embedding.vocab_size, where="windows")  # a Windows' too
            embedder = self.embedding.embedder(self.device, self.dtype)
            self._tensor = embedder.embed(ids)
        return self._tensor

    def save(
        self,
        path: PathArg,
        *,
        save_weights: bool = True,
        max_shard_size: int | None = None,
        no_clobber: bool = False,
    ) -> list[str]:
        """Write them as ``embedcli embed`` does (the tables too unless ``save_weights`` is
        False; split as ``--max-shard-size``), computed a chunk at a time: the same bytes as
        the command with the same windows and tables. The paths written."""
        return _save_embedded(self, path, save_weights=save_weights,
                             max_shard_size=max_shard_size, no_clobber=no_clobber)  # fmt: skip

    def __repr__(self) -> str:
        n, t, d = self.shape
        return f"Embedded({n:,} windows of {t} ids, dim {d}, {self.dtype}, on {self.device})"


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


def _save_embedded(
    embedded: Embedded,
    path: PathArg,
    *,
    save_weights: bool,
    max_shard_size: int | None,
    no_clobber: bool,
) -> list[str]:
    """Write ``embedded`` to ``path`` (see :meth:`Embedded.save`): ``embed``'s plan with the
    value's own tables in place of the ones the options would make, and ``embed``'s streamed
    writer, so the file is the command's byte for byte. The paths written."""
    from embedcli.embedding.tables import TablePlan
    from embedcli.inputs import WindowSource
    from embedcli.options import EmbedOptions
    from embedcli.progress import no_progress
    from embedcli.stages.common import CHUNK_BYTES
    from embedcli.stages.embed_plan import make_embed_plan, write_embed
    from embedcli.stages.windows_value import Windows
    from embedcli.storage.outputs import check_output

    output = one_path(path, "output")
    emb, windows = embedded.embedding, embedded.windows
    source: TokenSource | WindowSource
    if isinstance(windows, Windows):  # ids and their plan: gathered a chunk at a time
        source, plan, read = windows.source, windows.plan, windows.paths
    else:  # windows in memory: as an already-windowed input file is embedded
        source, plan, read = WindowSource(np.asarray(windows), {}), None, []
    length = int(embedded.shape[1])
    opts = EmbedOptions(
        dim=emb.dim,
        vocab_size=emb.vocab_size,
        context_length=emb.context_length or length,
        seed=emb.seed,
        pos=emb.pos_kind,  # type: ignore[arg-type]  # one of POS_KINDS: random_tables checked it
        dtype=_dtype_name(embedded.dtype),
        save_weights=save_weights,
        max_shard_size=max_shard_size,
    )
    tables = TablePlan(emb.vocab_size, emb.dim, opts.context_length or length,
                       emb.pos is not None, emb.origin, emb.token, emb.pos)  # fmt: skip
    check_output(output, inputs=read, no_clobber=no_clobber)
    made = make_embed_plan(source, plan, opts, embedded.device, where="windows",
                           chunk_bytes=CHUNK_BYTES, tables=tables)  # fmt: skip
    done = write_embed(made, output, device=embedded.device, group=None, read=read,
                       no_clobber=no_clobber, progress=no_progress)  # fmt: skip
    return done.paths


def _dtype_name(dtype: torch.dtype) -> FloatDtype:
    """``--dtype``'s name for a torch dtype (float32, bfloat16, float16...)."""
    from embedcli.embedding.tables import DTYPE_NAMES, torch_dtype

    for name in get_args(FloatDtype):
        if name in DTYPE_NAMES and torch_dtype(name) == dtype:
            return cast(FloatDtype, name)
    names = ", ".join(get_args(FloatDtype))
    raise UsageError(f"embeddings of {dtype} cannot be saved: use one of {names}")
