"""What a token-file format is, and what the formats share.

One :class:`TokenFormat` object per format (``safetensors.SAFETENSORS``, ``nanogpt.NANOGPT``...)
holds everything about it: its name and help line, the suffixes its outputs take, where its
trainers expect ``<|endoftext|>`` and how they treat a literal one, the writer (``tokenize
--to``, which also picks the ids' dtype for the vocabulary), and the reader (``batch``, ``embed`` and ``inspect``
given its files, and a shard manifest's entries). ``formats/__init__.py`` lists them, in one
tuple. Also here: streaming the ids from the tokenizer's spill file, and the lineage sidecar
(``OUTPUT.json``) of the formats that have no metadata slot.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from embedcli import contract as c
from embedcli.errors import FormatError, InputError, UsageError
from embedcli.options import EotPlacement, SpecialPolicy
from embedcli.storage.manifest import is_sidecar
from embedcli.storage.output_set import OutputSet, check_complete, joined
from embedcli.storage.outputs import check_output

if TYPE_CHECKING:
    import numpy as np

    from embedcli.bpe.pieces import TokenizeStats

CHUNK_IDS = 1 << 22  # ids converted and written at once (16 MB of int32)


class TokenSource:
    """Ids read from a token file (any format), a safetensors file, or text tokenized on the
    fly: the ids (often memory-mapped), where each document starts (``None`` when the format
    does not mark documents), and the lineage metadata.

    Several files (an llm.c shard set, a manifest's parts) are ``segments``: memory maps in
    order, never joined unless a caller asks for :attr:`ids` as one array (the loader reads the
    segments as they are: a 20 GB shard set stays on disk)."""

    def __init__(
        self,
        ids: np.ndarray | None,
        doc_offsets: np.ndarray | None,
        metadata: dict[str, str],
        stats: TokenizeStats | None = None,  # when the ids were tokenized here
        *,
        segments: list[np.ndarray] | None = None,
    ) -> None:
        if (ids is None) == (segments is None):
            raise ValueError("give the ids or their segments")
        self._ids = ids
        self.segments: list[np.ndarray] = [ids] if ids is not None else list(segments or [])
        self.doc_offsets, self.metadata, self.stats = doc_offsets, metadata, stats

    @property
    def ids(self) -> np.ndarray:
        """The ids as one array: the only segment, else the segments joined (in memory, once)."""
        if self._ids is None:
            import numpy as np

            if len(self.segments) == 1:
                self._ids = self.segments[0]
            elif self.segments:
                self._ids = np.concatenate(self.segments)
            else:
                self._ids = np.zeros(0, np.int32)
        return self._ids

    @property
    def size(self) -> int:
        """The number of ids, without joining the segments."""
        return sum(int(s.size) for s in self.segments)

    def __repr__(self) -> str:
        return f"TokenSource({self.size:,} ids in {len(self.segments)} segments, {self.metadata})"


class TokenWriter(Protocol):
    """Writes a token file: ``count`` int32 ids waiting in ``ids_file`` (from its start),
    ``doc_offsets`` and the metadata. Returns the paths written. ``settings`` are the
    format's own options (``shard_tokens`` for llm.c); a writer ignores the others. With
    ``files`` (an :class:`~embedcli.storage.output_set.OutputSet`) its files join that set,
    which the caller commits (a train/validation pair is one output)."""

    def __call__(
        self,
        output: str,
        ids_file: BinaryIO,
        count: int,
        doc_offsets: np.ndarray,
        metadata: dict[str, str],
        *,
        inputs: list[str],
        no_clobber: bool,
        **settings: Any,
    ) -> list[str]: ...


@dataclass(frozen=True)
class TokenFormat:
    """Everything about one token-file format.

    The trainers' formats take their prepare scripts' defaults: nanoGPT's ``prepare.py``,
    llm.c's ``fineweb.py`` and Megatron's ``preprocess_data.py`` encode with tiktoken's
    ``encode_ordinary`` (a literal ``<|endoftext|>`` is text) and place the separator as each
    trainer expects; embedcli's safetensors keeps the reference pipeline's.

    ``claims(paths)`` says whether the paths a user gave are this format's files (cheaply:
    names and a few bytes), ``files(paths)`` lists every file they stand for (Megatron's
    ``.bin`` and ``.idx``), ``read(paths, encoding)`` reads them; ``load(path, encoding)``
    reads a file as ``tokenize -o`` named it (a manifest's entry) and ``exists(path)`` says
    whether it is there. ``encoding`` names whose ids a file from elsewhere holds.
    """

    name: str
    summary: str  # for --help and the README
    suffixes: tuple[str, ...]  # kept last when a --shard run numbers the name
    default_eot: EotPlacement  # where its trainers expect <|endoftext|>
    default_special: SpecialPolicy  # what its trainers make of a literal <|endoftext|>
    default_name: str  # added to an input's stem when no -o is given
    write: TokenWriter
    load: Callable[[str, str], TokenSource]
    exists: Callable[[str], bool] = os.path.isfile
    claims: Callable[[list[str]], bool] | None = None  # None: read as safetensors
    read: Callable[[list[str], str], TokenSource] | None = None
    files: Callable[[list[str]], list[str]] = list
    id_bytes: Callable[[int], int] = lambda vocab: 4  # an id's size on disk, for a vocabulary


def vocab_of(metadata: dict[str, str]) -> int:
    vocab = c.get_int(metadata, c.VOCAB_SIZE)
    if vocab is None:
        raise UsageError("the token metadata has no vocab_size")
    return vocab


def require_uint16(fmt: str, metadata: dict[str, str]) -> None:
    vocab = vocab_of(metadata)
    if vocab > 1 << 16:
        raise UsageError(
            f"{fmt} files hold uint16 ids but {metadata.get(c.ENCODING)} has {vocab:,} ids; "
            "use --to llmc, megatron or npy"
        )


def copy_ids(
    ids_file: BinaryIO, start: int, count: int, dtype: str | np.dtype, out: BinaryIO
) -> None:
    """Ids ``[start, start + count)`` of an int32 spill file, converted to ``dtype``, to ``out``."""
    import numpy as np

    fd, done = ids_file.fileno(), 0
    while done < count:
        n = min(CHUNK_IDS, count - done)
        raw = os.pread(fd, n * 4, (start + done) * 4)
        if len(raw) != n * 4:
            raise FormatError("internal error: temporary ids ended early")
        out.write(
            np.frombuffer(raw, dtype="<i4").astype(np.dtype(dtype).newbyteorder("<")).tobytes()
        )
        done += n


@contextlib.contextmanager
def written_set(
    paths: list[str],
    output: str,
    fmt: str,
    metadata: dict[str, str],
    inputs: list[str],
    no_clobber: bool,
    files: OutputSet | None = None,
    *,
    replaces: Sequence[str] = (),
) -> Iterator[list[BinaryIO]]:
    """The data files of one token output and its sidecar, as one
    :class:`~embedcli.storage.output_set.OutputSet` (or added to ``files``): the files open
    for writing, in order, committed on leaving the block (the sidecar last); ``replaces``,
    an older output's files this one stands in for (removed unless written again)."""
    for path in [*paths, sidecar_path(output)]:  # refused before the work, enforced at commit
        check_output(path, inputs=inputs, no_clobber=no_clobber)
    with joined(files, no_clobber=no_clobber) as out:
        out.replaces(list(replaces))
        yield [out.add(p) for p in paths]
        out.pointer(sidecar_path(output), sidecar_document(fmt, paths, metadata))


def sidecar_path(output: str) -> str:
    return output + ".json"


def named_output(path: str) -> str:
    """An output as ``-o`` named it, the way its readers take it: a sidecar stands for the
    token output it describes (:func:`sidecar_subject`), and a split output's name
    (``-o w.safetensors`` wrote ``w-0000K-of-0000N.safetensors`` and the index, never that
    file) for its index."""
    from embedcli.storage.split import index_path

    path = sidecar_subject(path)
    if path != "-" and not os.path.exists(path) and os.path.isfile(index_path(path)):
        return index_path(path)
    return path


def sidecar_subject(path: str) -> str:
    """A token file's sidecar stands for the output it describes: ``fw.bin.json`` ->
    ``fw.bin`` (an llm.c set, a nanoGPT file), ``c.json`` -> ``c`` (a Megatron prefix); any
    other path as it is."""
    return path[: -len(".json")] if is_sidecar(path) else path


def sidecar_document(fmt: str, files: list[str], metadata: dict[str, str]) -> dict[str, Any]:
    """Lineage for formats with no metadata slot: ``OUTPUT.json`` beside the files, naming
    them (the set's pointer: see :mod:`embedcli.storage.output_set`)."""
    return {
        "embedcli_tokens": 1,
        "format": fmt,
        "files": [os.path.basename(f) for f in files],
        "metadata": dict(sorted(metadata.items())),
    }


def _sidecar(output: str) -> dict[str, Any] | None:
    """The sidecar document beside ``output``, or None; refused when unreadable or left by
    an interrupted commit."""
    path = sidecar_path(output)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        raise FormatError(f"{path}: not a readable embedcli sidecar") from None
    return checked_sidecar(doc, path)


def checked_sidecar(doc: Any, where: str) -> dict[str, Any]:
    """A sidecar document as parsed from its JSON (a file's, or an object's), refused when it
    is not one or was left by an interrupted commit."""
    check_complete(where, doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        raise FormatError(f"{where}: not a readable embedcli sidecar")
    return doc


def has_sidecar(output: str, fmt: str) -> bool:
    """Whether ``output`` has a sidecar of format ``fmt`` (cheap: no validation beyond it)."""
    try:
        doc = _sidecar(output)
    except FormatError:
        return False
    return doc is not None and doc.get("format") == fmt


def read_sidecar(output: str) -> dict[str, str] | None:
    """The lineage of a token file embedcli wrote, or None (a file from elsewhere)."""
    doc = _sidecar(output)
    if doc is None:
        return None
    return {str(k): str(v) for k, v in doc["metadata"].items()}


def sidecar_files(output: str) -> list[str] | None:
    """The files the sidecar of ``output`` lists, beside it, each checked present (None: no
    sidecar, or one that lists none)."""
    doc = _sidecar(output)
    names = doc.get("files") if doc is not None else None
    if not isinstance(names, list) or not names:
        return None
    directory = os.path.dirname(output)
    paths = [os.path.join(directory, str(n)) for n in names]
    for path in paths:
        if not os.path.isfile(path):
            raise InputError(
                f"{path}: listed in {sidecar_path(output)} but missing; the output is not whole"
            )
    return paths


@dataclass(frozen=True)
class HeaderSays:
    """What a trainer's file header says of whose ids it holds (for a file with no
    sidecar): ``names_default``, that they are the default encoding's (llm.c's version 1
    header is GPT-2's); ``rules_out``, why they cannot be (llm.c's version 7: uint32 ids)."""

    names_default: bool = False
    rules_out: str = ""


def foreign_metadata(
    fmt: str, encoding: str, extra: dict[str, Any], header: HeaderSays = HeaderSays()
) -> dict[str, str]:
    """Metadata for a token file embedcli did not write: whose ids they are (``--encoding``).
    The default encoding is only a guess unless ``header`` names it: the metadata then says
    why (``encoding_assumed``), which keeps anything from decoding with it; where the header
    rules it out, the file gets no encoding, vocabulary or separator at all."""
    from embedcli.bpe.encodings import get_encoding, separator
    from embedcli.bpe.foreign import ForeignEncoding, tokenizer_fields
    from embedcli.options import DEFAULT_ENCODING

    meta: dict[str, str] = {c.FORMAT: fmt}
    assumed = encoding == DEFAULT_ENCODING and not header.names_default
    if not (assumed and header.rules_out):
        enc = get_encoding(encoding)
        meta |= {
            c.ENCODING: encoding,
            c.VOCAB_SIZE: str(enc.n_vocab),
            c.EOT_ID: str(separator(enc)[1]),
        }
        if isinstance(enc, ForeignEncoding):
            meta.update(tokenizer_fields(enc))
    meta.update({k: c.to_str(v) for k, v in extra.items()})
    if assumed:
        meta[c.ENCODING_ASSUMED] = (
            f"no sidecar, and {header.rules_out}"
            if header.rules_out
            else f"no sidecar: nothing says which tokenizer made these {fmt} ids"
        )
    return meta


def lineage(
    path: str,
    fmt: str,
    encoding: str,
    extra: dict[str, Any],
    header: HeaderSays = HeaderSays(),
) -> dict[str, str]:
    """The sidecar's metadata when there is one, else :func:`foreign_metadata`."""
    return lineage_of(read_sidecar(path), fmt, encoding, extra, header)


def lineage_of(
    recorded: dict[str, Any] | None,
    fmt: str,
    encoding: str,
    extra: dict[str, Any],
    header: HeaderSays = HeaderSays(),
) -> dict[str, str]:
    """A token file's metadata: its sidecar's ``recorded`` metadata with what its own header
    says (``extra``), or without a sidecar :func:`foreign_metadata`."""
    if recorded is None:
        return foreign_metadata(fmt, encoding, extra, header)
    meta = {str(k): str(v) for k, v in recorded.items()}
    meta.update({c.FORMAT: fmt, **{k: c.to_str(v) for k, v in extra.items()}})
    return meta


def check_ids(ids: np.ndarray, *, where: str) -> np.ndarray:
    """A 1-D integer array, or a clear error."""
    if ids.ndim != 1:
        raise InputError(f"{where}: ids must be 1-D, got shape {tuple(ids.shape)}")
    if ids.dtype.kind not in "iu":
        raise InputError(f"{where}: ids must be integers, got {ids.dtype}")
    return ids


def memmap(path: str, dtype: str | np.dtype, offset: int, count: int) -> np.ndarray:
    """``count`` ids of ``dtype`` at ``offset``: memory-mapped, so opening is instant."""
    import numpy as np

    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))
