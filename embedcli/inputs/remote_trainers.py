"""Trainers' token files in an object store, for the loader.

**llm.c**: ``s3://b/fineweb_train_*.bin`` (a glob of llm.c's own shards), one shard, or a set
embedcli wrote (``NAME.bin`` or its sidecar ``NAME.bin.json``, which lists the shards). Each
shard's 1 KB header (magic, version, token count) is read by a ranged GET and checked against
the object's size, as :func:`embedcli.formats.llmc.read_header` checks a local file. llm.c
marks no documents, so the stream has none (``cross_docs=False`` is refused, as for the same
files on disk).

**Megatron**: ``PREFIX.idx`` or ``PREFIX.bin`` (the pair), or a manifest of such pairs that
``tokenize --to megatron --shard`` wrote: each index is fetched whole (its documents' offsets)
and checked against the ``.bin`` object's size, as :func:`embedcli.formats.megatron.load`
checks a local pair.

The ids are :class:`~embedcli.storage.shard_cache.RemoteIds`, fetched into the local cache
when a window needs them; the metadata is what the local reader gives (the sidecar's lineage,
or, for files embedcli did not write, what their headers say).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from embedcli import contract as c
from embedcli.errors import FormatError, InputError
from embedcli.formats.base import TokenSource, checked_sidecar, lineage_of
from embedcli.formats.llmc import GPT2, HEADER_INTS, LLAMA3, NAME, header_says, parse_header
from embedcli.inputs.token_files import Part
from embedcli.storage.remote import list_objects, public_url
from embedcli.storage.shard_cache import CacheConfig, RemoteIds, object_size, read_range

MAGICS = (GPT2[0], LLAMA3[0])


def is_llmc(url: str, config: CacheConfig) -> bool:
    """Whether ``url`` names llm.c shards: a glob of ``.bin`` objects, a set's sidecar, a
    ``.bin`` object whose first bytes are llm.c's magic, or a set's logical ``NAME.bin``."""
    if url.endswith(".bin.json"):
        return _sidecar(url, config) is not None
    if not url.endswith(".bin"):
        return False
    if any(ch in url.rsplit("/", 1)[-1] for ch in "*?["):
        return True
    try:
        head = read_range(url, 0, 4, config)
    except InputError as exc:
        if "no such object" not in str(exc):
            raise
        return _sidecar(url + ".json", config) is not None  # NAME.bin of an embedcli set
    return len(head) == 4 and int.from_bytes(head, "little") in MAGICS


def open_llmc(
    url: str, config: CacheConfig, encoding: str
) -> tuple[list[Any], None, dict[str, str]]:
    """The shards ``url`` names as a stream's segments (none fetched), no document offsets,
    and the metadata the local reader gives."""
    logical = url[: -len(".json")] if url.endswith(".bin.json") else url
    sidecar = _sidecar(logical + ".json", config)
    if sidecar is not None and isinstance(sidecar.get("files"), list) and sidecar["files"]:
        parent = logical.rsplit("/", 1)[0]
        shards = [f"{parent}/{name}" for name in sidecar["files"]]
    elif any(ch in logical.rsplit("/", 1)[-1] for ch in "*?["):
        shards = [u for u, _ in list_objects(logical, lambda _, n: True)[0]]
        if not shards:
            raise InputError(f"{public_url(logical)}: matches no object")
    else:
        shards = [logical]
    with ThreadPoolExecutor(max_workers=min(8, len(shards))) as pool:  # one GET a header
        found = list(pool.map(lambda u: _shard(u, config), shards))
    versions = {v for _, v in found}
    if len(versions) > 1:
        raise FormatError(f"{public_url(url)}: its shards have different llm.c headers")
    version = versions.pop()
    fields = {c.IDS_DTYPE: str(np.dtype(version[2])), "llmc_magic": version[0],
              "llmc_version": version[1]}  # fmt: skip
    recorded = sidecar["metadata"] if sidecar is not None else None
    meta = lineage_of(recorded, NAME, encoding, fields, header_says(version))
    vocab = c.get_int(meta, c.VOCAB_SIZE)
    segments = []
    for ids, _ in found:
        ids.vocab = vocab
        segments.append(ids)
    return segments, None, meta


def _shard(url: str, config: CacheConfig) -> tuple[RemoteIds, tuple]:
    """One shard's ids (after its header), checked as the local reader checks a file."""
    size, tag = object_size(url, config)
    raw = read_range(url, 0, HEADER_INTS * 4, config)
    version, tokens = parse_header(raw, size, public_url(url), "object")
    dtype = np.dtype(version[2])
    return RemoteIds(url, size, tag, HEADER_INTS * 4, dtype, tokens, config), version


def _sidecar(url: str, config: CacheConfig, fmt: str = NAME) -> dict[str, Any] | None:
    """An embedcli sidecar object of format ``fmt`` (llm.c's by default), or None when there
    is none (or it is another format's: a nanoGPT ``NAME.bin.json``)."""
    try:
        raw = read_range(url, 0, None, config)
    except InputError as exc:
        if "no such object" not in str(exc):
            raise
        return None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise FormatError(f"{public_url(url)}: not a readable embedcli sidecar") from None
    doc = checked_sidecar(doc, public_url(url))
    return doc if doc.get("format") == fmt else None


def is_megatron(url: str, config: CacheConfig) -> bool:
    """Whether ``url`` is one of a Megatron pair: ``PREFIX.idx``, or a ``.bin`` beside one."""
    if url.endswith(".idx"):
        return True
    if not url.endswith(".bin"):
        return False
    try:
        object_size(url[: -len(".bin")] + ".idx", config)
    except InputError as exc:
        if "no such object" not in str(exc):
            raise
        return False
    return True


def megatron_part(url: str, config: CacheConfig, encoding: str) -> Part:
    """The pair ``url`` names (``PREFIX``, ``PREFIX.bin`` or ``PREFIX.idx``): its index fetched,
    checked against the ``.bin`` object, its ids not."""
    from embedcli.formats.megatron import NAME as MEGATRON
    from embedcli.formats.megatron import layout, parse_index

    prefix = url[: -len(".bin")] if url.endswith((".bin", ".idx")) else url
    shown = public_url(prefix)
    index = parse_index(read_range(prefix + ".idx", 0, None, config), shown + ".idx")
    size, tag = object_size(prefix + ".bin", config)
    dtype, total, offsets, fields = layout(shown, index, size)
    sidecar = _sidecar(prefix + ".json", config, MEGATRON)
    meta = lineage_of(sidecar["metadata"] if sidecar is not None else None, MEGATRON, encoding,
                      fields)  # fmt: skip
    ids = RemoteIds(prefix + ".bin", size, tag, 0, np.dtype(dtype), total, config,
                    c.get_int(meta, c.VOCAB_SIZE))  # fmt: skip
    return Part(prefix, meta, lambda: TokenSource(ids, offsets, meta))  # type: ignore[arg-type]
