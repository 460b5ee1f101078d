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
    from embedcli.inputs.token_files import documents_of
    from embedcli.progress import no_progress

    with open_input([path], Request()) as found:
        if found.reader == "text":
            raise UsageError(f"{path}: not a token file; --doc and --token read token files")
        source = found.load(no_progress)
        if not isinstance(source, TokenSource):
            raise UsageError(f"{path}: holds windows, not documents; give its token file")
        offsets, origin, why = documents_of(found, source, path)
        notes = [why] if why else []
        if offsets is None:
            raise FormatError(f"{path}: does not record where its documents start (no doc_offsets)")
        n = int(offsets.size - 1)
        if token is not None:
            if not 0 <= token < int(offsets[-1]):
                raise UsageError(f"--token {token}: the file has ids 0 to {int(offsets[-1]) - 1}")
            doc = int(np.searchsorted(offsets, token, side="right")) - 1
        assert doc is not None
        if not 0 <= doc < n:
            raise UsageError(f"--doc {doc}: the file has documents 0 to {n - 1}")
        start, end = int(offsets[doc]), int(offsets[doc + 1])
        ids = _ids(source.segments, start, end)
        decoding = decoding_for(source.metadata, None, tokenizer)
        text = decoding.decode(ids)[:SHOWN_CHARS] if decoding.decode else None
        if decoding.note:
            notes.append(decoding.note)
        return DocumentReport(
            path, doc, n, start, end, ids[:SHOWN_IDS], text,
            origin.of(doc) if origin is not None else None, notes,
        )  # fmt: skip


def _ids(segments: list[np.ndarray], start: int, end: int) -> list[int]:
    """Ids ``[start, end)`` of the stream the segments make, read from the segments they lie
    in (a manifest's parts are never joined into memory for one document)."""
    out, base = [], 0
    for segment in segments:
        lo, hi = max(start - base, 0), min(end - base, segment.size)
        if lo < hi:
            out.append(np.asarray(segment[lo:hi]).astype(np.int64))
        base += int(segment.size)
    return np.concatenate(out).tolist() if out else []
