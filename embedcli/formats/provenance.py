"""Where each document of a token file came from: ``OUTPUT.provenance.safetensors``.

Written beside the output, in the same output set, whatever the output's format:

- by ``embedcli mix``: for every output document its source (an index into the sources the
  file lists), its index among that source's documents, and the pass that took it (0 the first
  time; a source repeated by ``--max-repeat`` gives a document again in a later pass): 16
  bytes a document;
- by ``embedcli tokenize --provenance``: for every document the text file it was read from
  (an index into the files listed) and its place there (``at``: a line from 1, a Parquet or
  Arrow row from 0, or for a jsonl range read from mid-file without line numbers the byte
  offset of its line; each file says which): 12 bytes a document.

The file carries a digest of the output's document offsets, so a provenance file left beside a
token file that something else rewrote since is recognised and not believed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from embedcli.contract import EOT_ID, EOT_PLACEMENT, SPECIAL, get_int
from embedcli.storage.output_set import OutputSet
from embedcli.storage.store import write_arrays

if TYPE_CHECKING:
    from embedcli.bpe.pieces import Origins

SUFFIX = ".provenance.safetensors"


def provenance_path(output: str) -> str:
    """``mix.tokens.safetensors`` -> ``mix.tokens.safetensors.provenance.safetensors``; a
    trainer's output by its logical name (``train.bin``, a Megatron prefix)."""
    return output + SUFFIX


def provenance_beside(output: str) -> str | None:
    """The provenance file beside a token file, if there is one: ``output``'s own, or for a
    Megatron pair's ``.bin``/``.idx`` its prefix's."""
    path = provenance_path(output)
    if not os.path.isfile(path) and output.endswith((".bin", ".idx")):
        path = provenance_path(output[: -len(".bin")])
    return path if os.path.isfile(path) else None


def offsets_at_separators(ids: np.ndarray, eot: int, placement: str) -> np.ndarray:
    """Document offsets (as tokenize records them) of ids whose documents the separator
    ``eot`` marks where ``placement`` put it: right only where no document holds that id
    itself (the caller knows: ``--special text``, or a provenance digest that matches)."""
    return offsets_at(np.flatnonzero(np.asarray(ids) == eot), int(np.asarray(ids).size), placement)


def offsets_at(at: np.ndarray, size: int, placement: str) -> np.ndarray:
    """:func:`offsets_at_separators` of a stream of ``size`` ids with the separator at ``at``."""
    at = np.asarray(at).astype(np.int64)
    end = np.array([size], np.int64)
    if placement == "before":  # each document opens with one
        starts = at
    else:  # after: each closes its document; between: each closes all but the last
        starts = np.concatenate([[0], at + 1])
        if placement == "after" and starts[-1] == end[0]:
            starts = starts[:-1]
    return np.concatenate([starts, end]).astype(np.int64)


def separators_in(segments: Sequence[np.ndarray], eot: int) -> np.ndarray:
    """Where ``eot`` stands in the stream the ``segments`` make, one segment at a time."""
    at, base = [], 0
    for segment in segments:
        at.append(np.flatnonzero(np.asarray(segment) == eot) + base)
        base += int(segment.size)
    return np.concatenate(at).astype(np.int64) if at else np.zeros(0, np.int64)


def documents(
    subject: str,
    doc_offsets: np.ndarray | None,
    metadata: dict[str, str],
    segments: Sequence[np.ndarray],
) -> tuple[np.ndarray | None, Provenance | None, str | None]:
    """A token file's document offsets, its mix provenance where one belongs to them, and
    why one beside it does not. A trainer's file marks no documents: they are found at its
    separators, believed where the provenance's digest confirms them or where its lineage says
    no document holds one (``--special text``); else None."""
    if doc_offsets is None:
        eot = get_int(metadata, EOT_ID)
        if eot is None:
            return None, None, None
        size = sum(int(s.size) for s in segments)
        placement = metadata.get(EOT_PLACEMENT, "between")
        derived = offsets_at(separators_in(segments, eot), size, placement)
        found, why = read_provenance(subject, derived)
        if found is None and metadata.get(SPECIAL) != "text":
            return None, None, None
        return derived, found, why
    found, why = read_provenance(subject, doc_offsets)
    return doc_offsets, found, why


def joined_documents(
    doc_offsets: np.ndarray | None,
    metadata: dict[str, str],
    segments: Sequence[np.ndarray],
    found: Provenance | None,
) -> tuple[np.ndarray | None, Provenance | None]:
    """The document offsets of a stream of several parts (a manifest's, a shard set's) and
    ``found``, their provenance joined (:func:`join_provenance`), kept where it holds one
    entry a document. Parts in a trainer's format mark no documents: they are found at the
    separators, as :func:`documents` finds them in one file, believed where every part's own
    provenance confirmed its own."""
    if found is None:
        return doc_offsets, None
    offsets = doc_offsets
    if offsets is None:
        eot = get_int(metadata, EOT_ID)
        if eot is None:
            return None, None
        size = sum(int(s.size) for s in segments)
        offsets = offsets_at(
            separators_in(segments, eot), size, metadata.get(EOT_PLACEMENT, "between")
        )
    return offsets, (found if len(found) == offsets.size - 1 else None)


def join_provenance(found: Sequence[Provenance]) -> Provenance:
    """The provenance of parts read one after another, document for document: their sources
    and text files gathered into one list each (an entry the parts share listed once), each
    document's index into them renumbered."""
    sources: dict[str, int] = {}
    files: dict[str, int] = {}

    def renumber(table: dict[str, int], entries: list[dict[str, Any]]) -> np.ndarray:
        keys = [json.dumps(e, sort_keys=True, ensure_ascii=False) for e in entries]
        return np.array([table.setdefault(k, len(table)) for k in keys] + [-1], np.int64)

    mixed = all(p.source is not None and p.document is not None and p.passes is not None
                for p in found)  # fmt: skip
    texts = all(p.file is not None and p.at is not None for p in found)
    source, file = [], []
    for p in found:
        if mixed:
            source.append(renumber(sources, p.sources)[np.asarray(p.source, np.int64)])
        if texts:
            local = np.asarray(p.file, np.int64)  # -1: not recorded, kept so
            file.append(renumber(files, p.files)[np.where(local >= 0, local, -1)])

    def joined(arrays: Sequence[np.ndarray | None], dtype: Any) -> np.ndarray:
        return (
            np.concatenate([np.asarray(a, dtype) for a in arrays]) if arrays else np.zeros(0, dtype)
        )

    ids = (
        [i for p in found for i in (p.ids or [])] if all(p.ids is not None for p in found) else None
    )
    return Provenance(
        joined(source, np.int32) if mixed else None,
        joined([p.document for p in found], np.int64) if mixed else None,
        joined([p.passes for p in found], np.int32) if mixed else None,
        [json.loads(k) for k in sources],
        joined(file, np.int32) if texts else None,
        joined([p.at for p in found], np.int64) if texts else None,
        [json.loads(k) for k in files],
        ids,
    )


def _digest(doc_offsets: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(doc_offsets, "<i8").tobytes()).hexdigest()[:16]


def write_provenance(
    files: OutputSet,
    output: str,
    doc_offsets: np.ndarray,
    source: np.ndarray,
    document: np.ndarray,
    passes: np.ndarray,
    sources: list[dict[str, Any]],
    text: TextOrigins | None = None,
) -> str:
    """Add the provenance of ``output``'s documents to ``files``; returns its path. ``text``:
    each document's text file (-1: not recorded) and place there, and the files, carried
    through from the sources' own ``tokenize --provenance``."""
    path = provenance_path(output)
    tensors: dict[str, np.ndarray] = {
        "source": np.ascontiguousarray(source, np.int32),
        "document": np.ascontiguousarray(document, np.int64),
        "pass": np.ascontiguousarray(passes, np.int32),
    }
    meta = {
        "embedcli_provenance": "1",
        "sources": json.dumps(sources, ensure_ascii=False),
        "doc_offsets_sha256": _digest(doc_offsets),
    }
    if text is not None:
        tensors["file"] = np.ascontiguousarray(text.file, np.int32)
        tensors["at"] = np.ascontiguousarray(text.at, np.int64)
        meta["files"] = json.dumps(text.files, ensure_ascii=False)
        if text.ids is not None:
            tensors |= pack_ids(text.ids)
    write_arrays(files.add(path), tensors, meta)  # embedcli's header: deterministic bytes
    return path


def write_origins(
    files: OutputSet,
    output: str,
    doc_offsets: np.ndarray,
    origins: Origins,
    texts: list[dict[str, str]],
) -> str:
    """Add the text files and places of ``output``'s documents (``tokenize --provenance``) to
    ``files``; ``texts`` lists the files (``path``, and what ``at`` counts there); returns
    its path."""
    path = provenance_path(output)
    tensors: dict[str, np.ndarray] = {
        "file": np.ascontiguousarray(origins.file, np.int32),
        "at": np.ascontiguousarray(origins.at, np.int64),
    }
    meta = {
        "embedcli_provenance": "1",
        "files": json.dumps(texts, ensure_ascii=False),
        "doc_offsets_sha256": _digest(doc_offsets),
    }
    if origins.ids is not None:
        tensors |= pack_ids(origins.ids)
    write_arrays(files.add(path), tensors, meta)
    return path


def pack_ids(ids: list[str]) -> dict[str, np.ndarray]:
    """Documents' ids as two tensors: their UTF-8 end to end, and where each starts."""
    data = [i.encode("utf-8", "surrogatepass") for i in ids]
    sizes = np.fromiter(map(len, data), np.int64, len(data))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return {"id_bytes": np.frombuffer(b"".join(data), np.uint8).copy(), "id_offsets": offsets}


def unpack_ids(id_bytes: np.ndarray, id_offsets: np.ndarray) -> list[str]:
    blob, cuts = id_bytes.tobytes(), id_offsets.tolist()
    pairs = zip(cuts[:-1], cuts[1:], strict=True)
    return [blob[a:b].decode("utf-8", "surrogatepass") for a, b in pairs]


MIX_TENSORS = ("source", "document", "pass")
TEXT_TENSORS = ("file", "at", "id_bytes", "id_offsets")


@dataclass
class TextOrigins:
    """Documents' text files and places (and ids), as a provenance file stores them: ``file``
    indexes ``files`` (-1: not recorded), ``at`` the place there."""

    file: np.ndarray
    at: np.ndarray
    files: list[dict[str, Any]]
    ids: list[str] | None = None


@dataclass
class Provenance:
    """The provenance of a token file's documents, checked against its offsets: the mix
    sources they were taken from, the text files they were read from, or both."""

    source: np.ndarray | None  # mix: each document's source, index there and pass
    document: np.ndarray | None
    passes: np.ndarray | None
    sources: list[dict[str, Any]]
    file: np.ndarray | None = None  # tokenize: each document's text file and place there
    at: np.ndarray | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] | None = None  # each document's id field (--id-key)

    def __len__(self) -> int:
        """The documents it describes."""
        held = self.source if self.source is not None else self.file
        return 0 if held is None else int(held.size)

    def of(self, doc: int) -> dict[str, Any]:
        """Where document ``doc`` came from: its source (name, inputs), index and pass, for a
        mixed file; its text file and line (``line``, ``row`` or ``byte``), for one that
        ``tokenize --provenance`` wrote."""
        found: dict[str, Any] = {}
        if self.source is not None and self.document is not None and self.passes is not None:
            k = int(self.source[doc])
            found |= {
                "source": self.sources[k].get("name", str(k)),
                "inputs": self.sources[k].get("inputs", []),
                "document": int(self.document[doc]),
                "pass": int(self.passes[doc]),
            }
        if self.file is not None and self.at is not None and self.file[doc] >= 0:
            text = self.files[int(self.file[doc])]
            found |= {"file": text["path"], text.get("at", "line"): int(self.at[doc])}
            if self.ids is not None:
                found["id"] = self.ids[doc]
        return found


def read_provenance(output: str, doc_offsets: np.ndarray) -> tuple[Provenance | None, str | None]:
    """The provenance beside ``output`` when there is one that belongs to it: ``(None, why)``
    for one written with other documents, ``(None, None)`` when there is none."""
    from safetensors import safe_open

    path = provenance_beside(output)
    if path is None:
        return None, None
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            held = set(f.keys())
            t = {k: f.get_tensor(k) for k in (*MIX_TENSORS, *TEXT_TENSORS) if k in held}
        sources = json.loads(meta.get("sources") or "[]")
        texts = json.loads(meta.get("files") or "[]")
    except Exception:  # noqa: BLE001 (a damaged file: said, not believed)
        return None, f"{path} is not a readable provenance file"
    if meta.get("doc_offsets_sha256") != _digest(doc_offsets):
        return None, f"{path} describes other documents (the token file was rewritten since)"
    ids = unpack_ids(t["id_bytes"], t["id_offsets"]) if "id_offsets" in t else None
    mixed = (t.get("source"), t.get("document"), t.get("pass"))
    return Provenance(*mixed, sources, t.get("file"), t.get("at"), texts, ids), None
