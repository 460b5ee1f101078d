"""Token plus positional embeddings: tables, devices, dtypes, seeds, chunked lookup.

The random tables are made exactly as the reference does::

    torch.manual_seed(seed)
    tok = torch.nn.Embedding(vocab_size, dim)        # first
    pos = torch.nn.Embedding(context_length, dim)    # second, from the same stream

on the CPU (a private generator seeded the same way, so the global RNG is left alone), and only
then moved to the device, so a seed gives the same numbers on every device. Each window is
``tok[ids] + pos[arange(T)]``: an exact copy plus one elementwise add, so the result is bitwise
the reference's on the CPU in float32, however the windows are chunked.

:func:`plan_tables` sizes the tables before anything is allocated (from options, the input's
metadata or a ``--weights`` file) and :func:`stream_embeddings` embeds chunks of windows into a
file while the previous chunk is written.

Not covered: training the tables, and tables larger than device memory (they are held whole).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedcli.embedding.checkpoints import POS_KEYS, open_checkpoint
from embedcli.errors import DeviceError, FormatError, InputError, UsageError
from embedcli.options import DEFAULT_DIM, POS_KINDS, FloatDtype
from embedcli.storage.atomic import Writable, WriteBehind
from embedcli.units import human_bytes
from embedcli.vocab import out_of_vocab, out_of_vocab_in

if TYPE_CHECKING:
    import numpy as np
    import torch

# -> safetensors dtype
DTYPE_NAMES: dict[FloatDtype, str] = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


# Key names in pretrained checkpoints, tried in order (GPT-2, with and without its "transformer."
# prefix; "LLMs from scratch"'s GPTModel; Hugging Face BERT-style; embedcli's own output).
def resolve_device(spec: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` to a usable ``torch.device``.

    Raises :class:`DeviceError` when this machine or torch build cannot provide it.
    """
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
            raise DeviceError(f"CUDA is not available (torch {torch.__version__}, {build})")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"no device {spec}: this machine has {count} CUDA device(s)")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError("MPS is not available (needs Apple silicon and a torch built for it)")
        return device
    raise UsageError(f"unsupported device {spec!r}; use cpu, cuda, cuda:N, mps or auto")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def torch_dtype(name: str) -> torch.dtype:
    import torch

    if name not in DTYPE_NAMES:
        raise UsageError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_NAMES)}")
    return getattr(torch, name)


def random_tables(
    vocab_size: int, dim: int, context_length: int, *, seed: int, pos: str = "learned"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The token table and the positional table (``None`` for ``pos="none"``), float32, CPU.

    Same numbers as ``torch.manual_seed(seed)`` then ``nn.Embedding(vocab_size, dim)`` and
    ``nn.Embedding(context_length, dim)``.

    Example:
        >>> tok, _ = random_tables(6, 3, 4, seed=123)
        >>> tok[0]
        tensor([ 0.3374, -0.1778, -0.1690])
    """
    import torch

    if pos not in POS_KINDS:
        raise UsageError(f"unknown --pos {pos!r}; use one of {', '.join(POS_KINDS)}")
    for name, value in (
        ("vocab-size", vocab_size),
        ("dim", dim),
        ("context-length", context_length),
    ):
        if value < 1:
            raise UsageError(f"--{name} must be at least 1 (got {value})")
    gen = torch.Generator().manual_seed(seed)
    try:
        # nn.Embedding.reset_parameters is init.normal_(weight): the same draws, without a Module.
        tok = torch.empty(vocab_size, dim).normal_(generator=gen)
        if pos == "learned":
            table = torch.empty(context_length, dim).normal_(generator=gen)
        elif pos == "sinusoidal":
            table = sinusoidal_table(context_length, dim)
        else:
            table = None
    except RuntimeError as exc:
        if "alloc" not in str(exc).lower():
            raise
        size = (vocab_size + context_length) * dim * 4
        raise InputError(
            f"cannot allocate the embedding tables ({human_bytes(size)} for {vocab_size:,} x {dim} "
            "and the positional table); use a smaller --vocab-size or --dim"
        ) from None
    return tok, table


def sinusoidal_table(context_length: int, dim: int) -> torch.Tensor:
    """The fixed table of "Attention Is All You Need": sin on even, cos on odd features."""
    import torch

    position = torch.arange(context_length, dtype=torch.float64).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(context_length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table.to(torch.float32)


@dataclass
class LoadedWeights:
    token: torch.Tensor
    pos: torch.Tensor | None
    token_key: str
    pos_key: str | None


def load_weights(
    path: str, *, token_key: str | None = None, pos_key: str | None = None, want_pos: bool = True
) -> LoadedWeights:
    """Token (and positional) tables from a checkpoint (a ``.safetensors`` file, a sharded
    checkpoint's index, or a directory: see :mod:`embedcli.embedding.checkpoints`), keys found
    or named. Only the shards holding the tables are read; the tables keep their dtype."""
    ckpt = open_checkpoint(path)
    tok_name = ckpt.require_token_key(token_key)
    pos_name = ckpt.find(pos_key, POS_KEYS, "positional") if want_pos else None
    token = ckpt.read(tok_name)
    pos = ckpt.read(pos_name) if pos_name else None
    for name, table in ((tok_name, token), (pos_name, pos)):
        if table is not None and (table.ndim != 2 or not table.is_floating_point()):
            raise FormatError(
                f"{path}: {name!r} must be a 2-D float table, got {tuple(table.shape)} {table.dtype}"
            )
    if pos is not None and pos.shape[1] != token.shape[1]:
        raise FormatError(
            f"{path}: token table dim {token.shape[1]} differs from positional dim {pos.shape[1]}"
        )
    return LoadedWeights(token, pos, tok_name, pos_name)


def check_id_range(ids: np.ndarray | list[np.ndarray], vocab_size: int, *, where: str) -> None:
    """Refuse ids outside ``[0, vocab_size)`` before any lookup (on CUDA it would be a device
    assert that kills the process); ``ids`` an array, or a shard set's files as a list."""
    if isinstance(ids, list):
        found = out_of_vocab_in(ids, vocab_size)
        shape: tuple[int, ...] = (sum(int(s.size) for s in ids),)
    else:
        found, shape = out_of_vocab(ids, vocab_size), tuple(ids.shape)
    if found is not None:
        raise InputError(
            found.message(where, vocab_size, shape, of="the embedding table")
            + ": use the ids' own vocabulary (--vocab-size, --weights)"
        )


class Embedder:
    """Holds the tables on the device and embeds chunks of windows.

    ``embed(ids)`` takes an integer array ``(C, T)`` and returns ``(C, T, dim)`` on the CPU in the
    output dtype: ``tok[ids] + pos[:T]``.
    """

    def __init__(
        self,
        token: torch.Tensor,
        pos: torch.Tensor | None,
        *,
        device: torch.device,
        dtype: torch.dtype,
    ):
        self.device, self.dtype = device, dtype
        self.token = token.to(device=device, dtype=dtype)
        self.pos = None if pos is None else pos.to(device=device, dtype=dtype)

    def embed(self, ids: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(C, T)`` ids -> ``(C, T, dim)`` on the CPU; into ``out[:C]`` when given (a buffer
        reused across chunks, so the allocator never sees a stream of large blocks)."""
        import numpy as np
        import torch

        c, t = ids.shape
        index = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(self.device)
        if out is not None and self.device.type == "cpu":
            result = out[:c]
            torch.index_select(self.token, 0, index.view(-1), out=result.view(c * t, -1))
        else:
            result = torch.nn.functional.embedding(index, self.token)  # (C, T, D)
        if self.pos is not None:
            result.add_(self.pos[:t])  # broadcast (T, D) over C
        if result.device.type == "cpu":
            return result
        if out is None:
            return result.cpu()
        # A pinned buffer (see stream_embeddings) takes an asynchronous copy: the caller
        # waits on an event before the bytes are read, while the device computes the next chunk.
        return out[:c].copy_(result, non_blocking=out.is_pinned())


def _event() -> torch.cuda.Event:
    """A CUDA event recorded after the work queued so far (the chunk's copy to the host)."""
    import torch

    event = torch.cuda.Event()
    event.record()
    return event


# --------------------------------------------------------------------------- table planning


@dataclass
class TablePlan:
    """Table sizes (known before anything is allocated) and, for ``--weights``, the tables."""

    vocab_size: int
    dim: int
    context_length: int
    has_pos: bool
    origin: str  # "random (seed 123)" or "FILE (token key, pos key)"
    token: torch.Tensor | None = None
    pos: torch.Tensor | None = None

    def materialize(self, seed: int, pos: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The token table and the positional table (``None`` for ``pos="none"``)."""
        if self.token is None:
            return random_tables(self.vocab_size, self.dim, self.context_length, seed=seed, pos=pos)
        if self.pos is None and pos == "sinusoidal":
            self.pos = sinusoidal_table(self.context_length, self.dim)
        return self.token, self.pos


def plan_tables(
    *,
    max_length: int,
    vocab_size: int | None,
    default_vocab_size: int | None = None,
    dim: int | None,
    context_length: int | None,
    seed: int,
    pos: str,
    weights: str | None = None,
    token_key: str | None = None,
    pos_key: str | None = None,
) -> TablePlan:
    """Sizes of the token and positional tables for windows of ``max_length``: from
    ``weights`` (loaded here), else from the arguments. ``default_vocab_size`` (the input's,
    from its metadata) applies to random tables when ``vocab_size`` is not given."""
    if not weights:
        vocab_size = vocab_size or default_vocab_size
        if vocab_size is None:
            raise UsageError(
                "the input has no embedcli metadata: say the table size with --vocab-size"
            )
        context_length = context_length or max_length
        if context_length < max_length:
            raise UsageError(
                f"--context-length {context_length} is shorter than --max-length {max_length}"
            )
        origin = f"random (seed {seed})"
        return TablePlan(vocab_size, dim or DEFAULT_DIM, context_length, pos != "none", origin)
    loaded = load_weights(weights, token_key=token_key, pos_key=pos_key, want_pos=pos == "learned")
    rows, width = (int(d) for d in loaded.token.shape)
    if default_vocab_size is not None and rows < default_vocab_size:
        raise InputError(
            f"{weights}: its token table has {rows:,} rows, but the ids come from a vocabulary "
            f"of {default_vocab_size:,}: embed the model's own tokenizer's ids"
        )
    if dim is not None and dim != width:
        raise UsageError(f"--dim {dim} differs from the loaded table's dim {width}")
    if vocab_size is not None and vocab_size != rows:
        raise UsageError(f"--vocab-size {vocab_size} differs from the loaded table's {rows} rows")
    if pos == "learned":
        context_length = _loaded_context(weights, loaded, context_length, max_length)
    origin = f"{weights} ({loaded.token_key}, {loaded.pos_key or pos})"
    return TablePlan(
        rows, width, context_length or max_length, pos != "none", origin, loaded.token, loaded.pos
    )


def _loaded_context(
    weights: str, loaded: LoadedWeights, context_length: int | None, max_length: int
) -> int:
    if loaded.pos is None:
        raise FormatError(
            f"{weights}: no positional table found; name it with --pos-key, "
            "or use --pos sinusoidal or --pos none"
        )
    rows = int(loaded.pos.shape[0])
    if context_length is not None and context_length != rows:
        raise UsageError(
            f"--context-length {context_length} differs from the loaded positional "
            f"table's {rows} rows"
        )
    if rows < max_length:
        raise UsageError(f"the positional table has {rows} rows, windows are {max_length}")
    return rows


# --------------------------------------------------------------------------- streaming


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """A CPU tensor's bytes, C order (bfloat16 through its int16 view: numpy has no bf16)."""
    import torch

    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().data.cast("B")


def stream_embeddings(
    f: Writable,
    embedder: Embedder,
    chunks: Iterable[np.ndarray],
    buffer_shape: tuple[int, int, int],
    advance: Callable[[int], None] | None = None,
) -> None:
    """Embed each chunk of windows and write it to ``f``, in order.

    Chunk k is written while chunk k+1 is computed (:class:`~embedcli.atomic.WriteBehind`).
    Two output buffers are reused throughout, so memory stays flat and the allocator never sees
    a stream of large blocks.
    """
    import torch

    # On CUDA the host buffers are pinned: the device-to-host copy is then asynchronous and
    # overlaps the disk write of the previous chunk (the writer waits on the copy's event).
    cuda = embedder.device.type == "cuda"
    buffers = [torch.empty(buffer_shape, dtype=embedder.dtype, pin_memory=cuda) for _ in range(2)]
    with WriteBehind(f) as writer:
        for k, chunk in enumerate(chunks):
            data = tensor_bytes(embedder.embed(chunk, out=buffers[k % 2]))
            writer.write(data, ready=_event() if cuda else None)
            if advance:
                advance(len(chunk))
