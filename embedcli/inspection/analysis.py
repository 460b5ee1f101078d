"""What ``inspect`` adds about the data itself (see ``stats.py``): corpus statistics for token
files, window checks for windows files, value histograms and row norms for float tensors, and the
nearest tokens of a token table (``--neighbors``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from embedcli import contract as c
from embedcli.bpe.encodings import Decoding, decoding_for, get_encoding
from embedcli.errors import FormatError, UsageError
from embedcli.inspection.report import FileReport, TensorReport, iter_chunks
from embedcli.storage.store import Header, TensorInfo, memmap_array

if TYPE_CHECKING:
    import numpy as np

    from embedcli.inspection.stats import CorpusStats

FLOATS = ("F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2")


def add_pictures(
    report: FileReport,
    header: Header,
    infos: list[TensorInfo],
    *,
    top: int,
    tokenizer: str | None = None,
) -> None:
    meta = header.metadata or {}
    names = {i.name: i for i in infos}
    if report.kind == "tokens" and "ids" in names:
        doc = header.tensor("doc_offsets") if "doc_offsets" in names else None
        decoding = decoding_for(meta, tokenizer=tokenizer)
        report.corpus = corpus_report(
            memmap_array(header, names["ids"]),
            None if doc is None else memmap_array(header, doc),
            meta,
            top,
            decoding,
        )
        report.decode_note = decoding.note
    if report.kind == "windows" and "inputs" in names:
        from embedcli.inspection.stats import window_stats

        report.windows = window_stats(
            memmap_array(header, names["inputs"]),
            eot_id=c.get_int(meta, c.EOT_ID),
            covered=c.get_int(meta, c.TOKENS_COVERED),
        )
    for info, entry in zip(infos, report.tensors, strict=True):
        if info.dtype in FLOATS and entry.stats is not None and entry.stats.min is not None:
            add_histograms(entry, header, info)


def corpus_report(
    ids: np.ndarray,
    doc_offsets: np.ndarray | None,
    meta: dict[str, str],
    top: int,
    decoding: Decoding,
) -> CorpusStats:
    """Counts, lengths and the ``top`` tokens, their text by ``decoding``."""
    from embedcli.inspection.stats import corpus_stats

    corpus = corpus_stats(
        ids,
        doc_offsets,
        vocab_size=c.get_int(meta, c.VOCAB_SIZE),
        eot_id=c.get_int(meta, c.EOT_ID),
        decode=decoding.decode,
        top=top,
    )
    corpus.eot_label = c.separator_label(meta)
    return corpus


def add_histograms(entry: TensorReport, header: Header, info: TensorInfo) -> None:
    """The value histogram of a float tensor (its min and max are known), and for a 2-D table
    the distribution of its row norms."""
    from embedcli.inspection.stats import RowNorms, histogram_of, row_norms

    assert entry.stats is not None and entry.stats.min is not None and entry.stats.max is not None
    low, high = float(entry.stats.min), float(entry.stats.max)
    entry.histogram = histogram_of(iter_chunks(header, info), low, high)
    if len(info.shape) == 2 and info.shape[0] and info.shape[1]:
        import numpy as np

        cols = info.shape[1]
        chunks = iter_chunks(header, info, row=cols)
        values = np.concatenate([row_norms(chunk.reshape(-1, cols)) for chunk in chunks])
        low, high = float(values.min()), float(values.max())
        entry.norms = RowNorms(low, float(values.mean()), high, histogram_of([values], low, high))


def add_neighbors(
    report: FileReport, header: Header, text: str, k: int = 10, tokenizer: str | None = None
) -> None:
    """The ``k`` tokens nearest to ``text``'s token in the file's token table, ``text`` encoded
    with ``tokenizer`` (an encoding name) or else the one the file records (GPT-2 if none)."""
    import numpy as np

    from embedcli.embedding.checkpoints import TOKEN_KEYS
    from embedcli.inspection.stats import Neighbor, Neighbors, nearest

    names = {t.name: t for t in header.tensors}
    key = next((k for k in TOKEN_KEYS if k in names), None)
    if key is None:
        raise FormatError(
            f"{header.path}: no token table for --neighbors (looked for {', '.join(TOKEN_KEYS)})"
        )
    info = names[key]
    enc = get_encoding(tokenizer or (header.metadata or {}).get(c.ENCODING, "gpt2"))
    ids = enc.encode(text, allowed_special="all")
    if len(ids) != 1:
        pieces = ", ".join(repr(enc.decode([i])) for i in ids)
        raise UsageError(f"--neighbors takes one token; {text!r} is {len(ids)}: {pieces}")
    if len(info.shape) != 2 or ids[0] >= info.shape[0]:
        raise FormatError(f"{header.path}: {key!r} has no row {ids[0]} for {text!r}")
    table = np.concatenate(list(iter_chunks(header, info))).reshape(info.shape)  # bf16 widened
    found = nearest(table, ids[0], k)
    nearest_rows = [Neighbor(i, enc.decode([i]), score) for i, score in found]
    report.neighbors = Neighbors(text, ids[0], key, nearest_rows)
