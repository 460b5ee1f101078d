"""One document of a token file (``inspect --doc N``, or the one holding ``--token I``): where
it lies, its ids and text, and, for a mixed file, the source it came from.

Any token input the stages read works (a file of any format, a manifest: its parts joined).
Documents come from ``doc_offsets``; a trainer's file that records none (nanoGPT, llm.c) gives
them at its separators when its mix provenance confirms them (the offsets' digest matches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embedcli.bpe.encodings import decoding_for
from embedcli.errors import FormatError, UsageError
from embedcli.formats.base import sidecar_subject
from embedcli.formats.provenance import Provenance, documents

SHOWN_IDS = 64  # ids listed; the text is shown whole up to SHOWN_CHARS
SHOWN_CHARS = 2000


@dataclass
class DocumentReport:
    path: str
    document: int
    documents: int
    start: int  # its first id in the stream (separators included, as doc_offsets says)
    end: int
    ids: list[int]  # the first SHOWN_IDS
    text: str | None  # decoded (up to SHOWN_CHARS), None when it cannot be
    origin: dict[str, Any] | None  # mix provenance: source, inputs, document, pass
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def document_report(
    path: str, *, doc: int | None = None, token: int | None = None, tokenizer: str | None = None
) -> DocumentReport:
    """The report of document ``doc``, or of the document holding id ``token``."""
    from embedcli.inputs import Request, TokenSource, open_input
    from embedcli.inputs.token_files import ResolvedTokenFiles
    from embedcli.progress import no_progress

    with open_input([path], Request()) as found:
        if found.reader == "text":
            raise UsageError(f"{path}: not a token file; --doc and --token read token files")
        source = found.load(no_progress)
        if not isinstance(source, TokenSource):
            raise UsageError(f"{path}: holds windows, not documents; give its token file")
        parts = (
            [p.path for p in found.parts]
            if isinstance(found, ResolvedTokenFiles)
            else [sidecar_subject(path)]
        )
        notes: list[str] = []
        offsets, origin = _offsets_and_origin(source, parts, notes)
        n = int(offsets.size - 1)
        if token is not None:
            if not 0 <= token < int(offsets[-1]):
                raise UsageError(f"--token {token}: the file has ids 0 to {int(offsets[-1]) - 1}")
            doc = int(np.searchsorted(offsets, token, side="right")) - 1
        assert doc is not None
        if not 0 <= doc < n:
            raise UsageError(f"--doc {doc}: the file has documents 0 to {n - 1}")
        start, end = int(offsets[doc]), int(offsets[doc + 1])
        ids = np.asarray(source.ids[start:end]).astype(np.int64).tolist()
        decoding = decoding_for(source.metadata, None, tokenizer)
        text = decoding.decode(ids)[:SHOWN_CHARS] if decoding.decode else None
        if decoding.note:
            notes.append(decoding.note)
        return DocumentReport(
            path, doc, n, start, end, ids[:SHOWN_IDS], text,
            origin.of(doc) if origin is not None else None, notes,
        )  # fmt: skip


def _offsets_and_origin(
    source: Any, parts: list[str], notes: list[str]
) -> tuple[np.ndarray, Provenance | None]:
    """The stream's document offsets and, where every part has one, their provenance."""
    if len(parts) != 1:  # a manifest's parts: each has its own (inspect a part for it)
        offsets, found = source.doc_offsets, None
    else:
        offsets, found, why = documents(
            parts[0], source.doc_offsets, source.metadata, source.segments
        )
        if why:
            notes.append(why)
    if offsets is None:
        raise FormatError(f"{parts[0]}: does not record where its documents start (no doc_offsets)")
    return offsets, found
