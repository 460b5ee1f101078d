"""Several token files as one stream of ids: the shards of a ``tokenize --shard`` run (given
one by one or through their manifest), or any list of token files.

Shards are put in shard order whatever order they were given in, and must form one complete run;
other files keep the order given. Files are joined as one run over all the inputs would have
joined their documents: with ``<|endoftext|>`` between files holding documents when it goes
between documents, by plain concatenation when every document carries its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embedcli import contract as c
from embedcli.errors import FormatError, InputError
from embedcli.formats import TRAINER_FORMATS, TokenFormat, token_format
from embedcli.formats.base import TokenSource
from embedcli.formats.safetensors import read_ids, token_header
from embedcli.inputs.base import Request
from embedcli.progress import ProgressFactory
from embedcli.storage.manifest import check_listed, is_manifest, order_shards, read_manifest
from embedcli.storage.remote import origin
from embedcli.storage.store import is_safetensors

if TYPE_CHECKING:
    from embedcli.formats.provenance import Provenance


@dataclass
class Part:
    """One token file of the set: its name, its metadata (read up front) and its ids."""

    path: str
    metadata: dict[str, str]
    load: Callable[[], TokenSource]


class TokenFilesReader:
    name = "token-files"

    def claims(self, inputs: list[str]) -> bool:
        """Several token files: embedcli's safetensors, or trainers' files each its format's
        reader claims alone (a nanoGPT or llm.c ``.bin``, a Megatron pair, ``.npy``)."""
        return len(inputs) > 1 and all(_safetensors(p) or _trainer_format(p) for p in inputs)

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedTokenFiles:
        encoding = request.tokenize.encoding
        parts = [
            _safetensors_part(p, request.key, where="")
            if _safetensors(p)
            else _trainer_part(p, encoding)
            for p in inputs
        ]
        return ResolvedTokenFiles(self.name, list(inputs), 0, _ordered(parts))


def _safetensors(path: str) -> bool:
    return os.path.isfile(path) and is_safetensors(path)


def _trainer_format(path: str) -> TokenFormat | None:
    """The trainer's format whose reader claims ``path`` on its own, if one does."""
    return next((f for f in TRAINER_FORMATS if f.claims is not None and f.claims([path])), None)


def _trainer_part(path: str, encoding: str) -> Part:
    """A trainer's token file among several, read as its format reads it alone."""
    fmt = _trainer_format(path)
    assert fmt is not None and fmt.read is not None  # claims() checked it
    source = fmt.read([path], encoding)
    return Part(path, source.metadata, lambda: source)


class ManifestReader:
    name = "manifest"

    def claims(self, inputs: list[str]) -> bool:
        return len(inputs) == 1 and is_manifest(inputs[0])

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> ResolvedTokenFiles:
        manifest = read_manifest(inputs[0])
        files, fmt = manifest.files, manifest.format
        where = f" (listed in {inputs[0]})"
        if fmt == "safetensors":
            parts = [_safetensors_part(p, request.key, where=where) for p in files]
        else:
            parts = [_foreign_part(p, fmt, request.tokenize.encoding, where) for p in files]
        check_listed(inputs[0], manifest.shard_set, [p.metadata for p in parts])
        return ResolvedTokenFiles(self.name, [inputs[0], *files], 0, _ordered(parts))


def _safetensors_part(path: str, key: str, *, where: str) -> Part:
    header = token_header(path, key, where=where)
    return Part(path, dict(header.metadata or {}), lambda: read_ids(header, key))


def _foreign_part(path: str, name: str, encoding: str, where: str) -> Part:
    """A shard written in a trainer's format (its sidecar holds the shard's metadata)."""
    fmt = token_format(name)
    if not fmt.exists(path):
        raise InputError(f"{path}: no such file{where}")
    source = fmt.load(path, encoding)
    return Part(path, source.metadata, lambda: source)


def _ordered(parts: list[Part]) -> list[Part]:
    """Shards in shard order (checked complete); files that must agree, checked."""
    metas = [p.metadata for p in parts]
    if all(c.SHARD_INDEX in m for m in metas):
        parts = [parts[k] for k in order_shards([p.path for p in parts], metas)]
    for key in c.JOIN_KEYS:
        default = "between" if key == c.EOT_PLACEMENT else None
        values = {p.metadata.get(key, default) for p in parts}
        if len(values) > 1:
            raise FormatError(f"token files disagree on {key}: {sorted(map(str, values))}")
    return parts


@dataclass
class ResolvedTokenFiles:
    reader: str
    paths: list[str]
    size: int
    parts: list[Part]

    def load(self, progress: ProgressFactory) -> TokenSource:
        segments, doc_offsets, meta = self.join()
        if not segments:
            segments = [np.zeros(0, dtype=np.int32)]
        return TokenSource(None, doc_offsets, meta, segments=segments)  # joined only if asked

    def join(self) -> tuple[list[np.ndarray], np.ndarray | None, dict[str, str]]:
        """The files' ids as segments in order (memory maps and separators, nothing copied),
        the joined document offsets (None when a file does not mark its documents) and the
        metadata of the whole."""
        metas = [p.metadata for p in self.parts]
        between = metas[0].get(c.EOT_PLACEMENT, "between") == "between"
        eot = c.get_int(metas[0], c.EOT_ID)
        segments, offsets, position, documents = [], [], 0, 0
        known = True  # every file marks its documents
        for part in self.parts:
            source = part.load()
            ids, doc = source.ids, source.doc_offsets
            if doc is None:
                known = False
                doc = np.array([0, ids.size] if ids.size else [0], dtype=np.int64)
            if doc.size <= 1:
                continue  # no document: nothing to join
            if documents and between:
                if eot is None:
                    raise FormatError(f"{part.path}: no eot_id in the metadata to join files with")
                segments.append(np.array([eot], dtype=ids.dtype))
                position += 1
            offsets.append(doc[:-1] + position)
            segments.append(ids)
            position += ids.size
            documents += doc.size - 1
        doc_offsets = np.concatenate([*offsets, [position]]).astype(np.int64)
        if not known:
            documents = sum(c.get_int(m, c.DOCUMENTS) or 0 for m in metas)
        meta = self._metadata(metas, documents, position)
        return segments, doc_offsets if known else None, meta

    def provenance(self) -> Provenance | None:
        """The parts' provenance joined, document for document, in the order :meth:`join`
        reads them; None unless every part with documents has one that belongs to it."""
        from embedcli.formats.base import sidecar_subject
        from embedcli.formats.provenance import documents, join_provenance

        found = []
        for part in self.parts:
            source = part.load()
            subject = sidecar_subject(part.path)
            offsets, own, _ = documents(
                subject, source.doc_offsets, source.metadata, source.segments
            )
            if offsets is not None and offsets.size <= 1:
                continue  # no document: join skips it too
            if own is None:
                return None
            found.append(own)
        return join_provenance(found) if found else None

    def _metadata(self, metas: list[dict[str, str]], documents: int, tokens: int) -> dict:
        meta = c.without(metas[0], c.SHARD_KEYS)
        meta.update(
            {
                c.DOCUMENTS: str(documents),
                c.TOKENS: str(int(tokens)),
                c.SOURCES: c.to_str([s for m in metas for s in c.get_list(m, c.SOURCES)]),
                c.SPECIAL_FOUND: str(sum(c.get_int(m, c.SPECIAL_FOUND) or 0 for m in metas)),
                **_by_name(metas),
                c.SHARDS: c.to_str([origin(p.path) for p in self.parts]),
            }
        )
        return meta


def _by_name(metas: list[dict[str, str]]) -> dict[str, str]:
    """The parts' literal special tokens by name, added up (when they record them)."""
    if not any(c.SPECIALS_FOUND in m for m in metas):
        return {}
    total: dict[str, int] = {}
    for m in metas:
        for name, n in c.get_counts(m, c.SPECIALS_FOUND).items():
            total[name] = total.get(name, 0) + n
    return {c.SPECIALS_FOUND: c.counts_str(total)}


def documents_of(
    found: object, source: Any, path: str
) -> tuple[np.ndarray | None, Provenance | None, str | None]:
    """Where the documents of ``source`` (what ``found`` loaded from ``path``) start, and
    where they came from, as ``inspect --doc`` finds them: a manifest's or shard set's parts'
    provenance joined (:func:`~embedcli.formats.provenance.joined_documents`), else the one
    file's own (:func:`~embedcli.formats.provenance.documents`, with why it has none)."""
    from embedcli.formats.base import sidecar_subject
    from embedcli.formats.provenance import documents, joined_documents

    if isinstance(found, ResolvedTokenFiles) and len(found.parts) > 1:
        joined = found.provenance()
        offsets, own = joined_documents(
            source.doc_offsets, source.metadata, source.segments, joined
        )
        return offsets, own, None
    subject = sidecar_subject(path)
    return documents(subject, source.doc_offsets, source.metadata, source.segments)
