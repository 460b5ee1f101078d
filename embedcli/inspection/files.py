"""``inspect`` of one path: a safetensors file, a split output's index, or a trainer's token
file, with what ``analysis.py`` adds about the data."""

from __future__ import annotations

import math

from embedcli.contract import kind_of
from embedcli.errors import FormatError
from embedcli.formats.base import named_output
from embedcli.inspection.analysis import add_neighbors, add_pictures
from embedcli.inspection.report import (
    FileReport,
    TensorReport,
    can_read,
    decoded_windows,
    header_report,
    pieces_stats,
    preview_text,
    tensor_stats,
)
from embedcli.paths import PathArg, one_path
from embedcli.storage.manifest import is_manifest
from embedcli.storage.split import is_index, read_index
from embedcli.storage.store import is_safetensors, read_header


def inspect_file(
    path: PathArg,
    *,
    stats: bool = True,
    preview: int = 0,
    tensor: str | None = None,
    top: int = 10,
    neighbors: str | None = None,
    tokenizer: str | None = None,
) -> FileReport:
    """Everything ``embedcli inspect`` shows about one file; ids decoded with ``tokenizer``
    (an encoding name) when given, else with the tokenizer the file records.

    Example:
        >>> report = inspect_file("out.safetensors", stats=False)  # doctest: +SKIP
        >>> [(t.name, t.shape) for t in report.tensors]
    """
    path = named_output(one_path(path))
    if is_index(path):
        return inspect_index(path, stats=stats, preview=preview, tensor=tensor)
    if is_manifest(path):
        from embedcli.inspection.token_files import inspect_manifest

        return inspect_manifest(
            path, stats=stats, preview=preview, tensor=tensor, top=top, tokenizer=tokenizer
        )
    if not is_safetensors(path):  # perhaps a trainer's token file (imports numpy: not before)
        from embedcli.inspection.token_files import inspect_token_file

        report = inspect_token_file(
            path, stats=stats, preview=preview, tensor=tensor, top=top, tokenizer=tokenizer
        )
        if report is not None:
            return report
    header = read_header(path)
    if header.embedcli_kind == "tokens":  # one side of a pair cut in two is refused here too
        from embedcli.formats.safetensors import check_pair

        check_pair(path, header.metadata or {})
    infos = [header.tensor(tensor)] if tensor else header.tensors
    report = header_report(header, infos)
    if stats:
        for info, entry in zip(infos, report.tensors, strict=True):
            if info.dtype == "C64":
                entry.note = "no stats for complex values"
            elif not can_read(info.dtype):
                entry.note = f"no stats: torch {_torch_version()} cannot hold {info.dtype}"
            elif info.numel:
                entry.stats = tensor_stats(header, info)
        add_pictures(report, header, infos, top=top, tokenizer=tokenizer)
    if neighbors is not None:
        add_neighbors(report, header, neighbors, tokenizer=tokenizer)
    if preview > 0:
        for info in infos:
            report.previews[info.name] = preview_text(header, info, preview)
        report.decoded, note = decoded_windows(header, infos, preview, tokenizer)
        report.decode_note = report.decode_note or note
    return report


def inspect_index(
    path: str, *, stats: bool = True, preview: int = 0, tensor: str | None = None
) -> FileReport:
    """A sharded output seen whole through its ``.index.json``: full shapes, merged stats."""
    doc, tensors, headers = read_index(path)
    if tensor is not None:
        tensors = [t for t in tensors if t.name == tensor]
        if not tensors:
            raise FormatError(f"{path}: no tensor named {tensor!r}")
    metadata = {k: str(v) for k, v in (doc.get("metadata") or {}).items()}
    report = FileReport(
        path=path,
        file_size=sum(h.file_size for h in headers),
        header_size=sum(h.header_size for h in headers),
        kind=kind_of(metadata),
        metadata=metadata,
        tensors=[],
        files=[h.path for h in headers],
    )
    for t in tensors:
        numel = math.prod(t.shape)
        entry = TensorReport(
            t.name, t.dtype, list(t.shape), numel, sum(info.nbytes for _, info in t.pieces), []
        )
        if stats and numel and can_read(t.dtype) and t.dtype != "C64":
            entry.stats = pieces_stats(t.pieces)
        report.tensors.append(entry)
        if preview > 0:
            header, info = t.pieces[0]
            report.previews[t.name] = preview_text(header, info, preview)
    return report


def _torch_version() -> str:
    try:
        import torch

        return torch.__version__
    except ImportError:
        return "(not installed)"
