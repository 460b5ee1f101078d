"""Several token files as one stream of ids: the shards of a ``tokenize --shard`` run (given
one by one or through their manifest), or any list of token files.

Shards are put in shard order whatever order they were given in, and must form one complete run;
other files keep the order given. Files are joined with ``<|endoftext|>`` between those holding
documents, exactly as one run over all the inputs would have joined them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import contract as c
from ..errors import FormatError, InputError
from ..manifest import is_manifest, order_shards, read_manifest
from ..progress import ProgressFactory
from ..store import INTEGER_DTYPES, Header, is_safetensors, load_array, read_header
from ..windows import check_ids
from .base import Request, TokenSource


class TokenFilesReader:
    name = "token-files"

    def claims(self, inputs: list[str]) -> bool:
        return len(inputs) > 1 and all(os.path.isfile(p) and is_safetensors(p) for p in inputs)

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedTokenFiles:
        headers = _headers(inputs, request.key, where="")
        return ResolvedTokenFiles(self.name, list(inputs), 0, headers, request.key)


class ManifestReader:
    name = "manifest"

    def claims(self, inputs: list[str]) -> bool:
        return len(inputs) == 1 and is_manifest(inputs[0])

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedTokenFiles:
        files = read_manifest(inputs[0])
        headers = _headers(files, request.key, where=f" (listed in {inputs[0]})")
        return ResolvedTokenFiles(self.name, [inputs[0], *files], 0, headers, request.key)


def _headers(paths: list[str], key: str, *, where: str) -> list[Header]:
    """Every file's header, checked to hold 1-D integer ids under ``key``, in joining order."""
    headers = []
    for path in paths:
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file{where}")
        header = read_header(path)
        if header.embedcli_kind not in (None, "tokens"):
            raise FormatError(f"{path}: is a {header.embedcli_kind} file; expected token files")
        info = header.tensor(key)
        if info.dtype not in INTEGER_DTYPES or len(info.shape) != 1:
            raise FormatError(
                f"{path}: {key!r} must be 1-D integer ids, got {info.dtype} {info.shape}"
            )
        headers.append(header)
    metas = [h.metadata or {} for h in headers]
    if all(c.SHARD_INDEX in m for m in metas):
        headers = [headers[k] for k in order_shards([h.path for h in headers], metas)]
    for field_name in c.JOIN_KEYS:
        values = {(h.metadata or {}).get(field_name) for h in headers}
        if len(values) > 1:
            raise FormatError(f"token files disagree on {field_name}: {sorted(map(str, values))}")
    return headers


@dataclass
class ResolvedTokenFiles:
    reader: str
    paths: list[str]
    size: int
    headers: list[Header]
    key: str

    def load(self, progress: ProgressFactory) -> TokenSource:
        metas = [h.metadata or {} for h in self.headers]
        eot = c.get_int(metas[0], c.EOT_ID)
        parts, offsets, position, documents = [], [], 0, 0
        for header in self.headers:
            ids, doc = _read(header, self.key)
            if doc.size <= 1:
                continue  # no document: nothing to join
            if documents:
                if eot is None:
                    raise FormatError(
                        f"{header.path}: no eot_id in the metadata to join files with"
                    )
                parts.append(np.array([eot], dtype=ids.dtype))
                position += 1
            offsets.append(doc[:-1] + position)
            parts.append(ids)
            position += ids.size
            documents += doc.size - 1
        merged = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        doc_offsets = np.concatenate([*offsets, [position]]).astype(np.int64)
        return TokenSource(merged, doc_offsets, self._metadata(metas, documents, merged.size))

    def _metadata(self, metas: list[dict[str, str]], documents: int, tokens: int) -> dict:
        meta = c.without(metas[0], c.SHARD_KEYS)
        meta.update(
            {
                c.DOCUMENTS: str(documents),
                c.TOKENS: str(int(tokens)),
                c.SOURCES: c.to_str([s for m in metas for s in c.get_list(m, c.SOURCES)]),
                c.SPECIAL_FOUND: str(sum(c.get_int(m, c.SPECIAL_FOUND) or 0 for m in metas)),
                c.SHARDS: c.to_str([h.path for h in self.headers]),
            }
        )
        return meta


def _read(header: Header, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A file's ids and its document offsets (one document when it has none)."""
    ids = check_ids(load_array(header.path, header.tensor(key)), where=header.path)
    if "doc_offsets" in {t.name for t in header.tensors}:
        doc = load_array(header.path, header.tensor("doc_offsets")).astype(np.int64)
    else:
        doc = np.array([0, ids.size] if ids.size else [0], dtype=np.int64)
    return ids, doc
