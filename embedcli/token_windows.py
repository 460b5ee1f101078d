"""Windows of a token input, read from memory maps: the ``Dataset`` the loader of ``data.py``
(and a mixture's, ``mixture.py``) draws from.

:class:`TokenStream` is any token input embedcli reads (a token file, several, a shard
manifest, nanoGPT/llm.c/Megatron files, ``.npy``, ids in memory) as segments read by
position; :class:`TokenWindows` its windows ``(inputs, targets)``, exactly the rows
``embedcli batch`` writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch
from torch.utils.data import Dataset

from embedcli.contract import VOCAB_SIZE, get_int
from embedcli.errors import FormatError, UsageError
from embedcli.paths import PathArg, path_list
from embedcli.storage.shard_cache import CacheConfig, RemoteIds, default_cache_dir
from embedcli.vocab import out_of_vocab_in
from embedcli.window_rows import row_items, segment_rows, take_rows
from embedcli.windows import DocumentWindows, count_windows


@dataclass
class TokenStream:
    """The ids of a token input as segments (memory maps, separators), read by position."""

    segments: list[np.ndarray]
    doc_offsets: np.ndarray | None
    metadata: dict[str, str]

    def __post_init__(self) -> None:
        self.bounds = np.cumsum([0, *(s.size for s in self.segments)])
        self._views: dict[tuple[int, int], np.ndarray] = {}  # (segment, count): row_items
        # shards in an object store: fetched into the local cache when first read
        self.remote = any(isinstance(s, RemoteIds) for s in self.segments)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_views"] = {}  # views of this process's memory maps
        return state

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def check_vocab(self, name: str) -> None:
        """Refuse ids outside the vocabulary the metadata names (the model's embedding would
        fail on them, on a GPU with a device assert)."""
        vocab = get_int(self.metadata, VOCAB_SIZE)
        if not vocab or self.remote:  # a remote shard checks its ids when it is first read
            return
        # the pages of each memory map handed back behind the scan: a 1 GB shard set's check
        # left 1.1 GB of its pages in the process (and in every DataLoader worker's peak)
        from embedcli.storage.store import release_pages

        found = out_of_vocab_in(self.segments, vocab, release_pages)
        if found is not None:
            raise FormatError(found.message(name, vocab, (len(self),)))

    def read_rows(self, starts: np.ndarray, count: int) -> np.ndarray:
        """``(len(starts), count)``: the ids from each start, in the file's own dtype, in one
        vectorised gather from the memory map where the rows lie in one segment (a row that
        crosses segments is read on its own)."""
        if len(self.segments) == 1:  # the common case: one fancy index, one memcpy a row
            return self._rows(0, count, starts)
        dtype = np.result_type(*(s.dtype for s in self.segments))
        return segment_rows(self.bounds, starts, count, dtype,
                            lambda k, local: self._rows(k, count, local),
                            lambda a: self.read(a, count))  # fmt: skip

    def _rows(self, segment: int, count: int, starts: np.ndarray) -> np.ndarray:
        """Rows of ``count`` ids of segment ``segment`` from ``starts``, gathered from its
        windows as opaque items (:func:`~embedcli.window_rows.row_items`: the view is kept)."""
        ids = self.segments[segment]
        if isinstance(ids, RemoteIds):  # no view kept: the cache may let go of its map
            return take_rows(row_items(ids.array(), count), starts, ids.dtype)
        items = self._views.get((segment, count))
        if items is None:
            items = self._views[segment, count] = row_items(ids, count)
        return take_rows(items, starts, ids.dtype)

    def read(self, start: int, count: int) -> np.ndarray:
        """Ids ``[start, start + count)`` as int64, across segment boundaries."""
        if len(self.segments) == 1:  # the common case: one slice, one conversion
            return self.segments[0][start : start + count].astype(np.int64)
        out = np.empty(count, dtype=np.int64)
        k = int(np.searchsorted(self.bounds, start, side="right")) - 1
        done = 0
        while done < count:
            offset = start + done - int(self.bounds[k])
            piece = self.segments[k][offset : offset + count - done]
            out[done : done + piece.size] = piece
            done += piece.size
            k += 1
        return out


@dataclass(frozen=True)
class Cache:
    """Where the loader keeps shards read from an object store (``s3://``, ``gs://``, any
    fsspec URL): ``directory`` (default ``$EMBEDCLI_CACHE/shards`` or
    ``~/.cache/embedcli/shards``), at most ``limit`` bytes (``"20GB"`` or an int; None: no
    limit), each read tried ``retries`` times; ``storage_options`` for the filesystem
    (``{"endpoint_url": ...}``, credentials: as ``--storage-options``)."""

    directory: str | None = None
    limit: int | str | None = None
    retries: int = 3
    storage_options: dict[str, Any] | None = None

    def config(self) -> CacheConfig:
        from embedcli.units import parse_size

        limit = parse_size(self.limit) if isinstance(self.limit, str) else self.limit
        if limit is not None and limit < 1:
            raise UsageError(f"cache limit must be above 0 bytes (got {self.limit!r})")
        options = tuple(sorted((self.storage_options or {}).items()))
        return CacheConfig(self.directory or default_cache_dir(), limit, self.retries, options)


def open_tokens(
    path: PathArg | Sequence[PathArg] | np.ndarray | TokenStream,
    *,
    encoding: str | None = None,
    cache: Cache | None = None,
) -> TokenStream:
    """Any token input embedcli reads, without copying its ids (see :class:`TokenStream`):
    a token file, a shard set (a list of files, or a manifest), ids already in memory (a
    1-D integer array: one stream, no document boundaries), or a stream already open (an
    ``embedcli.Tokens``'s ids, documents and all). A URL (``s3://b/c.tokens.manifest.json``,
    safetensors token files) is read through a local cache of whole shards (:class:`Cache`):
    its headers now, each shard's ids when a window first needs them."""
    if isinstance(path, TokenStream):
        return path
    if isinstance(path, np.ndarray):
        return TokenStream([_id_array(path)], None, {})
    from embedcli.inputs import Request, TokenSource, open_input
    from embedcli.inputs.token_files import ResolvedTokenFiles
    from embedcli.options import TokenizeOptions
    from embedcli.progress import no_progress
    from embedcli.storage.remote import is_url

    paths = path_list(path, "path")
    remote = [is_url(p) for p in paths]
    if any(remote):  # a training loop reads at random: whole shards, cached, not a GET a window
        from embedcli.inputs.remote_tokens import open_remote

        if not all(remote):
            raise UsageError("give token files all local or all in object storage, not both")
        return TokenStream(*open_remote(paths, (cache or Cache()).config(), encoding or "gpt2"))
    request = Request(tokenize=TokenizeOptions(encoding=encoding or "gpt2"))
    with open_input(paths, request) as found:
        if found.reader == "text":
            raise UsageError(f"{paths[0]}: not a token file; tokenize it first (embedcli tokenize)")
        if isinstance(found, ResolvedTokenFiles):
            return TokenStream(*found.join())
        source = found.load(no_progress)
    if not isinstance(source, TokenSource):
        raise FormatError(f"{paths[0]}: is already windowed; give the token file it came from")
    return TokenStream(source.segments, source.doc_offsets, source.metadata)


def _id_array(ids: np.ndarray) -> np.ndarray:
    """``ids`` checked as token ids: one dimension, integers, none negative."""
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise UsageError(f"ids must be a 1-D integer array, not {ids.dtype} of shape {ids.shape}")
    if ids.size and ids.dtype.kind == "i" and int(ids.min()) < 0:
        raise UsageError(f"ids must not be negative (found {int(ids.min())})")
    return ids


def _documents_of(
    path: Any, stream: TokenStream, encoding: str | None = None, cache: Cache | None = None
) -> tuple[np.ndarray | None, Any]:
    """:meth:`TokenWindows._documents`, as ``inspect --doc`` finds them
    (:func:`~embedcli.formats.provenance.documents`): a file's own provenance; for several
    parts (a manifest's, a shard set), theirs joined; ids in memory have none."""
    from embedcli.formats.provenance import joined_documents

    if isinstance(path, np.ndarray | TokenStream):
        return stream.doc_offsets, None
    paths = path_list(path, "path")
    if stream.remote:  # each part's provenance object, fetched beside the cache
        from embedcli.inputs.remote_tokens import remote_provenance

        found = remote_provenance(paths, (cache or Cache()).config(), encoding or "gpt2")
        return joined_documents(stream.doc_offsets, stream.metadata, stream.segments, found)
    from embedcli.inputs import Request, open_input
    from embedcli.inputs.token_files import documents_of
    from embedcli.options import TokenizeOptions

    request = Request(tokenize=TokenizeOptions(encoding=encoding or "gpt2"))
    with open_input(paths, request) as resolved:  # the files again: the stream kept no parts
        offsets, own, _ = documents_of(resolved, stream, paths[0])
    return offsets, own


class TokenWindows(Dataset):
    """Windows ``(inputs, targets)`` of a token file, each ``(max_length,)`` int64.

    ``len()`` is the number of windows ``embedcli batch`` plans with ``--keep-last``, and
    ``ds[i]`` is row ``i`` of its ``inputs`` and ``targets``: windows start at ``0, stride,
    2*stride, ...`` (``cross_docs=False``: inside each document's span, as ``--no-cross-docs``).
    Starts are arithmetic, never an array: memory is the per-document counts at most.
    ``path`` may be a URL (safetensors token files or their manifest in an object store),
    read through the local shard cache ``cache`` describes (:class:`Cache`).
    """

    def __init__(
        self,
        path: PathArg | Sequence[PathArg] | np.ndarray | TokenStream,
        max_length: int,
        stride: int | None = None,
        *,
        cross_docs: bool = True,
        encoding: str | None = None,
        cache: Cache | None = None,
    ):
        self.path, self.encoding, self.cache = path, encoding, cache
        # What errors call the input: its path, or "ids" for an array.
        name = "ids" if isinstance(path, np.ndarray | TokenStream) else str(path)
        self.max_length, self.stride = max_length, stride or max_length
        if max_length < 1 or self.stride < 1:
            raise UsageError("max_length and stride must be at least 1")
        self._open()
        self._stream.check_vocab(name)
        n = len(self._stream)
        self._inside: DocumentWindows | None = None  # cross_docs=False: windows by document
        if cross_docs:
            self._length = count_windows(n, max_length, self.stride)
        else:
            if self._stream.doc_offsets is None:
                raise UsageError(f"{name}: cross_docs=False needs document boundaries")
            self._inside = DocumentWindows(self._stream.doc_offsets, max_length, self.stride)
            self._length = len(self._inside)
        if self._length == 0:
            raise FormatError(
                f"{name}: {n} tokens make no window of max_length {max_length}"
                + ("" if cross_docs else " inside one document")
            )

    def _open(self) -> None:
        self._stream = open_tokens(self.path, encoding=self.encoding, cache=self.cache)
        self._pid = os.getpid()

    def stream(self) -> TokenStream:
        """The ids, opened in this process (a DataLoader worker opens its own memory maps; a
        remote stream travels as it is, its headers read once, its shards from the cache)."""
        if "_stream" not in self.__dict__ or self._pid != os.getpid() and not self._stream.remote:
            self._open()
        return self._stream

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if not (state.get("_stream") and state["_stream"].remote):
            state.pop("_stream", None)  # a worker process opens the files itself
        state.pop("_docs", None)
        return state

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        in_memory = isinstance(self.path, np.ndarray | TokenStream)
        source = "ids in memory" if in_memory else repr(self.path)
        inside = "" if self._inside is None else ", inside documents"
        return (
            f"TokenWindows({self._length:,} windows of {self.max_length} ids, stride "
            f"{self.stride}{inside}, from {source})"
        )

    @property
    def metadata(self) -> dict[str, str]:
        """The token input's metadata (its tokenizer, vocabulary size...; empty for ids)."""
        return self.stream().metadata

    def start(self, index: int) -> int:
        """Where window ``index`` starts in the ids."""
        if not 0 <= index < self._length:
            raise IndexError(f"window {index} of {self._length}")
        if self._inside is None:
            return index * self.stride
        return self._inside.start(index)

    def starts(self, indices: list[int] | np.ndarray) -> np.ndarray:
        """:meth:`start` of each of ``indices``, vectorised."""
        index = np.asarray(indices, dtype=np.int64)
        if isinstance(indices, list):  # a sampler's batch: Python's min and max are faster
            low, high = (min(indices), max(indices)) if indices else (0, 0)
        else:
            low, high = (int(index.min()), int(index.max())) if index.size else (0, 0)
        if low < 0 or high >= self._length:
            bad = int(index[(index < 0) | (index >= self._length)][0])
            raise IndexError(f"window {bad} of {self._length}")
        if self._inside is None:
            return index * self.stride
        return self._inside.starts(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.from_numpy(self.stream().read(self.start(index), self.max_length + 1))
        return ids[:-1], ids[1:]

    def __getitems__(self, indices: list[int]) -> WindowBatch:
        """A whole batch of windows in one gather (torch's ``DataLoader`` calls this for a
        batch when the dataset has it): a sequence of ``(inputs, targets)`` as
        ``__getitem__`` gives them, made from the two stacked ``(B, max_length)`` tensors it
        carries, so :class:`WindowLoader` hands those on without stacking again."""
        return WindowBatch.of(self.rows(indices))

    def source(self, index: int) -> dict[str, Any]:
        """Where window ``index`` comes from: ``start``, its first id's place in the stream;
        ``document``, the document it starts in (from 0), and ``offset``, its start inside
        it (both None where the input marks no documents: ids in memory, a trainer's file
        without provenance); ``origin``, for a file ``embedcli mix`` wrote, the source that
        document came from (its name and inputs, the document's index there, the pass), for
        one ``tokenize --provenance`` wrote, the text file and its ``line`` (``row``,
        ``byte``), as ``embedcli inspect FILE --doc N`` shows it."""
        start = self.start(index)
        offsets, origin = self._documents()
        place: dict[str, Any] = {"window": index, "start": start}
        if offsets is None:
            return place | {"document": None, "offset": None, "origin": None}
        doc = int(np.searchsorted(offsets, start, side="right")) - 1
        found = origin.of(doc) if origin is not None else None
        return place | {"document": doc, "offset": start - int(offsets[doc]), "origin": found}

    def _documents(self) -> tuple[np.ndarray | None, Any]:
        """The stream's document offsets and, for one file with a provenance beside it that
        belongs to it, that provenance (read once)."""
        if "_docs" not in self.__dict__:
            self._docs = _documents_of(self.path, self.stream(), self.encoding, self.cache)
        return self._docs

    def rows(self, indices: list[int] | np.ndarray) -> np.ndarray:
        """``(len(indices), max_length + 1)``: each window and the id after it, in the file's
        own dtype, in one gather from the memory map."""
        return self.stream().read_rows(self.starts(indices), self.max_length + 1)


class WindowBatch(Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """:meth:`TokenWindows.__getitems__`'s answer: the batch stacked (``inputs`` and
    ``targets``, each ``(B, max_length)``), and a sequence of its samples for a ``collate_fn``
    of one's own (``batch[i]`` is ``(inputs[i], targets[i])``, made when asked for)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        self.inputs, self.targets = inputs, targets

    @classmethod
    def of(cls, rows: np.ndarray) -> WindowBatch:
        """The batch of ``rows`` (each a window and the id after it, any integer dtype)."""
        # astype: each half converted to int64 and made contiguous in the same pass
        inputs = torch.from_numpy(rows[:, :-1].astype(np.int64))
        return cls(inputs, torch.from_numpy(rows[:, 1:].astype(np.int64)))

    def __len__(self) -> int:
        return len(self.inputs)

    @overload
    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[torch.Tensor, torch.Tensor]]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self.inputs[i], self.targets[i]
