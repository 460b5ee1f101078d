"""llm.c's token shards: a header of 256 int32 (magic, version, token count), then the ids.

GPT-2-sized vocabularies use magic 20240520, version 1 and uint16 ids; larger ones the llama-3
header (magic 20240801, version 7) and uint32 ids, as llm.c's ``dev/data`` scripts write them.
``-o NAME.bin`` writes ``NAME_000000.bin``, ``NAME_000001.bin``, ... of at most
``--shard-tokens`` ids each, cutting documents across files as ``fineweb.py`` does
(``<|endoftext|>`` before every document: ``--eot before``), and the sidecar ``NAME.bin.json``
listing them, as one :class:`~embedcli.storage.output_set.OutputSet`: a rerun leaves no shard
of the old set. ``NAME.bin`` (or the sidecar) reads the set back.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, Any, BinaryIO

from embedcli import contract as c
from embedcli.errors import FormatError, UsageError
from embedcli.formats.base import (
    HeaderSays,
    TokenFormat,
    TokenSource,
    copy_ids,
    has_sidecar,
    lineage,
    memmap,
    sidecar_files,
    sidecar_path,
    vocab_of,
    written_set,
)

if TYPE_CHECKING:
    import numpy as np


NAME = "llmc"
HEADER_INTS = 256
GPT2 = (20240520, 1, "<u2")  # magic, version, dtype of the ids
LLAMA3 = (20240801, 7, "<u4")
SHARD_TOKENS = 100_000_000  # llm.c's fineweb.py
MAX_SHARD_TOKENS = 2**31 - 1  # the header's int32 count


def shard_paths(output: str, count: int) -> list[str]:
    """``NAME.bin`` -> ``NAME_000000.bin`` ... (llm.c's numbering)."""
    stem = output[: -len(".bin")] if output.endswith(".bin") else output
    return [f"{stem}_{i:06d}.bin" for i in range(count)]


def header(version: tuple, tokens: int) -> bytes:
    import numpy as np

    ints = np.zeros(HEADER_INTS, dtype="<i4")
    ints[0], ints[1], ints[2] = version[0], version[1], tokens
    return ints.tobytes()


def write(
    output: str,
    ids_file: BinaryIO,
    count: int,
    doc_offsets: np.ndarray,
    metadata: dict[str, str],
    *,
    inputs: list[str],
    no_clobber: bool,
    **settings: Any,
) -> list[str]:
    if output == "-":
        raise UsageError("--to llmc writes numbered files: name them with -o NAME.bin")
    per_file = settings.get("shard_tokens") or SHARD_TOKENS
    if not 1 <= per_file <= MAX_SHARD_TOKENS:
        raise UsageError(f"--shard-tokens must be between 1 and {MAX_SHARD_TOKENS:,}")
    version = _version(vocab_of(metadata))
    ranges = [(a, min(a + per_file, count)) for a in range(0, count, per_file)] or [(0, 0)]
    paths = shard_paths(output, len(ranges))
    # A rerun that writes fewer shards removes the old run's others: llm.c globs them.
    with written_set(
        paths, output, NAME, metadata, inputs, no_clobber, settings.get("files"),
        replaces=_numbered(output),
    ) as files:  # fmt: skip
        for f, (a, b) in zip(files, ranges, strict=True):
            f.write(header(version, b - a))
            copy_ids(ids_file, a, b - a, version[2], f)
    return [*paths, sidecar_path(output)]


def read_header(path: str) -> tuple[tuple[int, int, str], int]:
    """(version, token count) of an llm.c file, checked against its size."""
    with open(path, "rb") as f:
        raw = f.read(HEADER_INTS * 4)
    return parse_header(raw, os.path.getsize(path), path, "file")


def parse_header(
    raw: bytes, size: int, where: str, kind: str = "file"
) -> tuple[tuple[int, int, str], int]:
    """:func:`read_header` of a header's bytes ``raw``, checked against the ``size`` of the
    file (or object: ``kind``) named ``where``."""
    import numpy as np

    if len(raw) != HEADER_INTS * 4:
        raise FormatError(f"{where}: not an llm.c token file (shorter than its header)")
    ints = np.frombuffer(raw, dtype="<i4")
    version = next((v for v in (GPT2, LLAMA3) if ints[0] == v[0]), None)
    if version is None or ints[1] != version[1]:
        raise FormatError(f"{where}: not an llm.c token file (bad magic or version)")
    tokens = int(ints[2])
    expected = HEADER_INTS * 4 + tokens * np.dtype(version[2]).itemsize
    if size != expected:
        raise FormatError(
            f"{where}: header says {tokens:,} tokens ({expected:,} bytes) but the {kind} has "
            f"{size:,} bytes"
        )
    return version, tokens


def has_magic(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and int.from_bytes(head, "little") in (GPT2[0], LLAMA3[0])


def expand(path: str) -> list[str]:
    """A logical ``NAME.bin`` (what ``-o`` and a manifest name), or its sidecar
    ``NAME.bin.json``, as its numbered files in order: those the sidecar lists when embedcli
    wrote the set (each checked present; a set whose commit was interrupted refused), else
    every ``NAME_DDDDDD.bin`` there is (a set from llm.c's own scripts)."""
    logical = logical_name(path)
    listed = sidecar_files(logical)
    return listed if listed is not None else _numbered(logical)


def _numbered(logical: str) -> list[str]:
    stem = logical[: -len(".bin")] if logical.endswith(".bin") else logical
    return sorted(glob.glob(glob.escape(stem) + "_" + "[0-9]" * 6 + ".bin"))


def logical_name(path: str) -> str:
    """``NAME.bin.json`` (the sidecar) -> ``NAME.bin``; other names as they are."""
    return path[: -len(".json")] if path.endswith(".bin.json") else path


def _is_set(path: str) -> bool:
    """``NAME.bin`` or ``NAME.bin.json`` naming a set of llm.c shards that embedcli wrote."""
    logical = logical_name(path)
    return logical.endswith(".bin") and not os.path.isfile(logical) and has_sidecar(logical, NAME)


def load(paths: list[str], encoding: str, logical: str | None = None) -> TokenSource:
    """The ids of llm.c files in order (documents are not marked in the format); a set's
    logical name (``NAME.bin``, or its sidecar) stands for its shards."""

    if len(paths) == 1 and _is_set(paths[0]):
        logical = logical_name(paths[0])
        paths = expand(logical)
        if not paths:
            raise FormatError(f"{logical}: its sidecar lists no shards")
    parts, version = [], GPT2
    for path in paths:
        version, tokens = read_header(path)
        parts.append(memmap(path, version[2], HEADER_INTS * 4, tokens))
    name = logical or _logical(paths[0])
    fields = {
        c.IDS_DTYPE: str(parts[0].dtype),
        "llmc_magic": version[0],
        "llmc_version": version[1],
    }
    meta = lineage(name, NAME, encoding, fields, header_says(version))
    return TokenSource(None, None, meta, segments=parts)  # the shards as they are: no copy


def header_says(version: tuple) -> HeaderSays:
    """llm.c's own data scripts: version 1 is GPT-2's layout, version 7 Llama 3's."""
    if version == GPT2:
        return HeaderSays(names_default=True)
    return HeaderSays(
        rules_out="an llm.c version-7 header: uint32 ids, Llama 3's by llm.c's convention, "
        "not GPT-2's"
    )


def _logical(path: str) -> str:
    """``NAME_000003.bin`` -> ``NAME.bin``, where the sidecar is."""
    stem = path[: -len(".bin")]
    if len(stem) > 7 and stem[-7] == "_" and stem[-6:].isdigit():
        return stem[:-7] + ".bin"
    return path


def _version(vocab: int) -> tuple:
    """The header llm.c's scripts write for a vocabulary: GPT-2's up to 65,536 ids, else
    llama-3's (uint32 ids)."""
    return GPT2 if vocab <= 1 << 16 else LLAMA3


def claims(inputs: list[str]) -> bool:
    if len(inputs) == 1 and _is_set(inputs[0]):
        return True
    return all(p.endswith(".bin") and os.path.isfile(p) and has_magic(p) for p in inputs)


def files(inputs: list[str]) -> list[str]:
    """Every file the inputs stand for: a set's shards and its sidecar."""
    if len(inputs) == 1 and _is_set(inputs[0]):
        logical = logical_name(inputs[0])
        return [*expand(logical), sidecar_path(logical)]
    return list(inputs)


LLMC = TokenFormat(
    name=NAME,
    summary="llm.c shards NAME_000000.bin...: a 256-int32 header, then uint16 ids",
    suffixes=(".bin",),
    default_eot="before",
    default_special="text",
    default_name=".bin",
    write=write,
    load=lambda path, encoding: load(expand(path), encoding, logical=path),
    exists=lambda path: bool(expand(path)),
    claims=claims,
    read=load,
    files=files,
    id_bytes=lambda vocab: int(_version(vocab)[2][-1]),
)
