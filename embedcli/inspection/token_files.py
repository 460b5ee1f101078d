"""``inspect`` on the trainers' token files (nanoGPT, llm.c, Megatron, NumPy): the ids and the
documents as tensors, the format's header fields and the lineage as metadata, statistics over
the ids in chunks, and the first ids decoded."""

from __future__ import annotations

import os

from embedcli import contract as c
from embedcli.bpe.encodings import decoding_for
from embedcli.formats.base import TokenSource
from embedcli.inspection.report import (
    CHUNK_BYTES,
    Decoded,
    FileReport,
    Part,
    TensorReport,
    chunked_stats,
)
from embedcli.storage.store import NUMPY_TO_ST


def inspect_token_file(
    path: str,
    *,
    stats: bool = True,
    preview: int = 0,
    tensor: str | None = None,
    top: int = 10,
    tokenizer: str | None = None,
) -> FileReport | None:
    """The report of a trainer's token file, or None when no token format claims it."""
    from embedcli.formats import TRAINER_FORMATS
    from embedcli.options import DEFAULT_ENCODING

    fmt = next((f for f in TRAINER_FORMATS if f.claims is not None and f.claims([path])), None)
    if fmt is None or fmt.read is None:
        return None
    source = fmt.read([path], DEFAULT_ENCODING)
    files = fmt.files([path])
    return _report(
        path, source, files, [], stats=stats, preview=preview, tensor=tensor, top=top,
        tokenizer=tokenizer,
    )  # fmt: skip


def inspect_manifest(
    path: str,
    *,
    stats: bool = True,
    preview: int = 0,
    tensor: str | None = None,
    top: int = 10,
    tokenizer: str | None = None,
) -> FileReport:
    """A ``tokenize --shard`` run seen whole through its manifest: every part with its
    documents and tokens, and the statistics over all of them (as ``batch`` reads them)."""
    from embedcli.inputs import open_input
    from embedcli.inputs.token_files import ResolvedTokenFiles
    from embedcli.progress import no_progress

    with open_input([path]) as found:
        assert isinstance(found, ResolvedTokenFiles)  # a manifest resolves to its token files
        source = found.load(no_progress)
        parts = [
            Part(p.path, c.get_int(p.metadata, c.DOCUMENTS), c.get_int(p.metadata, c.TOKENS))
            for p in found.parts
        ]
        files = [p.path for p in found.parts]
    report = _report(
        path, source, files, parts, stats=stats, preview=preview, tensor=tensor, top=top,
        tokenizer=tokenizer,
    )  # fmt: skip
    report.file_size += os.path.getsize(path)
    return report


def _report(
    path: str,
    source: TokenSource,
    files: list[str],
    parts: list[Part],
    *,
    stats: bool,
    preview: int,
    tensor: str | None,
    top: int,
    tokenizer: str | None = None,
) -> FileReport:
    arrays = {"ids": source.ids}
    if source.doc_offsets is not None:
        arrays["doc_offsets"] = source.doc_offsets
    if tensor is not None:
        arrays = {k: v for k, v in arrays.items() if k == tensor}
    report = FileReport(
        path=path,
        file_size=sum(os.path.getsize(p) for p in files),
        header_size=0,
        kind="tokens",
        metadata=dict(source.metadata),
        tensors=[],
        files=files if len(files) > 1 or parts else [],
        parts=parts,
    )
    for name, array in arrays.items():
        dtype = NUMPY_TO_ST.get(array.dtype.name, array.dtype.name)
        entry = TensorReport(name, dtype, [int(array.size)], int(array.size), int(array.nbytes), [])
        if stats and array.size:
            step = max(1, CHUNK_BYTES // array.dtype.itemsize)
            entry.stats = chunked_stats(
                lambda a=array, n=step: (a[i : i + n] for i in range(0, a.size, n)), True
            )
        report.tensors.append(entry)
        if preview > 0:
            report.previews[name] = repr(array[: preview * 8].tolist())
    decoding = decoding_for(source.metadata, tokenizer=tokenizer)
    if stats and "ids" in arrays:
        from embedcli.inspection.analysis import corpus_report

        report.corpus = corpus_report(
            source.ids, source.doc_offsets, source.metadata, top, decoding
        )
    if preview > 0 and "ids" in arrays and decoding.decode is not None:
        ids = arrays["ids"][:64].tolist()
        report.decoded = [Decoded("ids", 0, ids, decoding.decode(ids))]
    if stats or preview > 0:
        report.decode_note = decoding.note
    return report
