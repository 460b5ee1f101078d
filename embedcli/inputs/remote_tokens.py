"""Token files in an object store, opened for the loader without fetching their ids: a
safetensors token file (``s3://b/c.tokens.safetensors``), several, or a shard manifest
(``s3://b/c.tokens.manifest.json``, every part of ``tokenize --shard``, a two-phase mix or
``mix --max-shard-size``).

Each shard's header, and its document offsets, are read by ranged GETs (a few KB of a shard
of GBs); its ids are a :class:`~embedcli.storage.shard_cache.RemoteIds`, fetched whole into
the local cache when a window first needs it. The shards are checked, ordered and joined as
local ones are (:class:`~embedcli.inputs.token_files.ResolvedTokenFiles`), so the stream, its
documents and its metadata are the local files' exactly.
"""

from __future__ import annotations

import json
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from embedcli import contract as c
from embedcli.errors import FormatError, InputError, UsageError
from embedcli.formats.base import TokenSource
from embedcli.inputs.token_files import Part, ResolvedTokenFiles, _ordered
from embedcli.options import DEFAULT_TOKEN_KEY
from embedcli.storage.manifest import check_listed
from embedcli.storage.output_set import check_complete
from embedcli.storage.remote import public_url
from embedcli.storage.shard_cache import (
    CacheConfig,
    RemoteIds,
    cached_file,
    listed_sizes,
    object_size,
    read_range,
)
from embedcli.storage.store import DTYPES, INTEGER_DTYPES, MAX_HEADER_BYTES, parse_header

if TYPE_CHECKING:
    from embedcli.formats.provenance import Provenance

_LOCAL_ONLY = "copy it (and its shards) to local disk first, e.g. aws s3 cp --recursive"


def open_remote(
    urls: list[str], config: CacheConfig, encoding: str
) -> tuple[list[Any], np.ndarray | None, dict[str, str]]:
    """The stream of the token files ``urls`` stand for (safetensors files, or their manifest;
    llm.c shards: :mod:`~embedcli.inputs.remote_trainers`): its segments (no ids fetched), its
    document offsets and metadata, as the local files give them."""
    from embedcli.inputs.remote_trainers import is_llmc, is_megatron, megatron_part, open_llmc

    if len(urls) == 1 and is_megatron(urls[0], config):
        source = megatron_part(urls[0], config, encoding).load()  # one pair, as it is
        return source.segments, source.doc_offsets, source.metadata
    if len(urls) == 1 and is_llmc(urls[0], config):
        return open_llmc(urls[0], config, encoding)
    return _safetensors(urls, config, encoding).join()


def remote_provenance(urls: list[str], config: CacheConfig, encoding: str) -> Provenance | None:
    """The provenance of the remote stream ``urls`` stand for: each part's own
    (``PART.provenance.safetensors`` beside it, fetched into the cache's ``.provenance``
    folder), checked against that part's documents and joined; None when a part has none (or
    the stream marks no documents: llm.c)."""
    import hashlib
    import os

    from embedcli.formats.provenance import SUFFIX, join_provenance, read_provenance
    from embedcli.inputs.remote_trainers import is_llmc, is_megatron, megatron_part

    if len(urls) == 1 and is_megatron(urls[0], config):
        parts = [megatron_part(urls[0], config, encoding)]
    elif len(urls) == 1 and is_llmc(urls[0], config):
        return None
    else:
        parts = _safetensors(urls, config, encoding).parts
    found = []
    for part in parts:
        offsets = part.load().doc_offsets
        if offsets is None:
            return None
        folder = os.path.join(config.directory, ".provenance",
                              hashlib.sha256(part.path.encode()).hexdigest()[:16])  # fmt: skip
        local = os.path.join(folder, part.path.rstrip("/").rsplit("/", 1)[-1])
        try:
            raw = read_range(part.path + SUFFIX, 0, None, config)
        except InputError as exc:
            if "no such object" not in str(exc):
                raise
            return None
        os.makedirs(folder, exist_ok=True)
        with open(local + SUFFIX, "wb") as f:
            f.write(raw)
        own, _ = read_provenance(local, offsets)
        if own is None:
            return None
        found.append(own)
    return join_provenance(found) if found else None


def _safetensors(urls: list[str], config: CacheConfig, encoding: str) -> ResolvedTokenFiles:
    """embedcli's safetensors token files ``urls`` stand for, or one manifest's shards
    (safetensors, or Megatron pairs)."""
    if len(urls) == 1 and urls[0].endswith(".manifest.json"):
        shards, shard_set, fmt = _manifest(urls[0], config)
    else:
        shards, shard_set, fmt = urls, None, "safetensors"
    if fmt == "megatron":
        from embedcli.inputs.remote_trainers import megatron_part

        with ThreadPoolExecutor(max_workers=min(8, len(shards))) as pool:
            pairs = list(pool.map(lambda url: megatron_part(url, config, encoding), shards))
        check_listed(public_url(urls[0]), shard_set, [p.metadata for p in pairs])
        return ResolvedTokenFiles("remote", list(urls), 0, _ordered(pairs))
    for url in shards:
        if not url.endswith(".safetensors"):
            shown = public_url(url)
            raise UsageError(
                f"{shown}: the loader reads embedcli's safetensors token files (and their "
                f"manifests), llm.c shards and Megatron pairs from object storage; for this "
                f"format, "
                f"{_LOCAL_ONLY} {shown.rsplit('/', 1)[0]}/ data/"
            )
    known = _sizes(shards, config)
    with ThreadPoolExecutor(max_workers=min(8, len(shards))) as pool:  # a few GETs a shard
        parts = list(pool.map(lambda url: _part(url, config, known.get(url)), shards))
    if shard_set is not None:
        check_listed(public_url(urls[0]), shard_set, [p.metadata for p in parts])
    alone = len(parts) == 1 and shard_set is None  # one file, read as it is (as locally)
    return ResolvedTokenFiles("remote", list(urls), 0, parts if alone else _ordered(parts))


def _manifest(url: str, config: CacheConfig) -> tuple[list[str], str | None, str]:
    """The shard URLs a manifest object lists (beside it), its run's fingerprint, and the
    shards' format (safetensors or megatron; another is refused)."""
    shown = public_url(url)
    try:
        doc = json.loads(read_range(url, 0, None, config))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{shown}: not a readable embedcli manifest ({exc})") from None
    check_complete(shown, doc)
    shards = doc.get("shards") if isinstance(doc, dict) else None
    if not isinstance(shards, list) or not shards or not all(isinstance(s, str) for s in shards):
        raise FormatError(f'{shown}: a manifest needs a non-empty "shards" list of paths')
    fmt = doc.get("format", "safetensors")
    if fmt not in ("safetensors", "megatron"):
        raise UsageError(
            f"{shown}: lists {fmt} shards; the loader reads a manifest of safetensors or "
            f"Megatron shards from object storage: {_LOCAL_ONLY} {shown.rsplit('/', 1)[0]}/ data/"
        )
    parent = url.rsplit("/", 1)[0]
    listed = [s if "://" in s else f"{parent}/{s}" for s in shards]
    return listed, doc.get("shard_set") or None, fmt


def _sizes(urls: list[str], config: CacheConfig) -> dict[str, tuple[int, str]]:
    """The shards' sizes and versions: one listing of the directory most of them are in."""
    parents = {u.rsplit("/", 1)[0] + "/" for u in urls}
    if len(urls) < 3 or len(parents) != 1:
        return {}
    found = listed_sizes(parents.pop(), config)
    return {u: found[u] for u in urls if u in found}


def _part(url: str, config: CacheConfig, known: tuple[int, str] | None) -> Part:
    """One shard: its header read by ranged GETs (or from its cached file, when the cache
    holds this version of it), checked as a local token file's is."""
    shown = public_url(url)
    size, tag = known if known is not None else object_size(url, config)
    if size < 8:
        raise FormatError(f"{shown}: not a safetensors file: {size} bytes")
    local = cached_file(RemoteIds(url, size, tag, 0, np.dtype("u1"), 0, config))

    def read(start: int, end: int) -> bytes:
        if local is None:
            return read_range(url, start, end, config)
        with open(local, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    (n,) = struct.unpack("<Q", read(0, 8))
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise FormatError(f"{shown}: not a safetensors token file (header length {n:,})")
    header = parse_header(read(8, 8 + n), path=shown, file_size=size)
    if header.embedcli_kind not in (None, "tokens"):
        raise FormatError(f"{shown}: is a {header.embedcli_kind} file; expected token files")
    info = header.tensor(DEFAULT_TOKEN_KEY)
    if info.dtype not in INTEGER_DTYPES or len(info.shape) != 1:
        raise FormatError(f"{shown}: 'ids' must be 1-D integer ids, got {info.dtype} {info.shape}")
    meta = dict(header.metadata or {})
    ids = RemoteIds(
        url, size, tag, header.data_start + info.start, np.dtype(DTYPES[info.dtype][1]),
        info.numel, config, c.get_int(meta, c.VOCAB_SIZE),
    )  # fmt: skip
    doc = None
    if "doc_offsets" in {t.name for t in header.tensors}:
        offsets = header.tensor("doc_offsets")
        at = header.data_start + offsets.start
        raw = read(at, at + offsets.nbytes)
        doc = np.frombuffer(raw, dtype=DTYPES[offsets.dtype][1]).astype(np.int64)
    return Part(url, meta, lambda: TokenSource(ids, doc, meta))  # type: ignore[arg-type]
