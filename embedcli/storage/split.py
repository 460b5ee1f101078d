"""Outputs split across files: their names, how rows are shared out, and the index that ties
them together (Hugging Face's checkpoint layout).

``out.safetensors`` split in three is ``out-00001-of-00003.safetensors`` ... plus
``out.safetensors.index.json``. Tensors split by rows (windows, embeddings) are listed under the
index's ``embedcli`` key with the row range of each file; whole tensors (the tables) are in
Hugging Face's ``weight_map``. ``tokenize --shard`` names its files with :func:`split_names` too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedcli.contract import part_fields
from embedcli.errors import FormatError, InputError
from embedcli.storage.output_set import check_complete
from embedcli.storage.store import (
    Header,
    TensorInfo,
    TensorSpec,
    build_header,
    load_array,
    read_header,
)

if TYPE_CHECKING:
    import numpy as np


def split_names(
    output: str, count: int, suffixes: tuple[str, ...] = (".safetensors",)
) -> list[str]:
    """The names of ``count`` files standing for ``output``, numbered from 1 as Hugging Face
    numbers checkpoint shards; the first of ``suffixes`` that ``output`` ends with is kept last.

    Example:
        >>> split_names("out.safetensors", 2)
        ['out-00001-of-00002.safetensors', 'out-00002-of-00002.safetensors']
        >>> split_names("c.tokens.safetensors", 1, (".tokens.safetensors", ".safetensors"))
        ['c-00001-of-00001.tokens.safetensors']
    """
    stem, suffix = output, ""
    for ext in suffixes:
        if output.endswith(ext) and len(os.path.basename(output)) > len(ext):
            stem, suffix = output[: -len(ext)], ext
            break
    return [f"{stem}-{i + 1:05d}-of-{count:05d}{suffix}" for i in range(count)]


MAX_FILES = 1000  # more files than this is a mistyped size, not a plan


def index_path(output: str) -> str:
    """``out.safetensors`` -> ``out.safetensors.index.json`` (Hugging Face's name)."""
    return output + ".index.json"


@dataclass
class OutputShard:
    """One file of a split output: rows ``[start, stop)`` of the row tensors, or whole ones."""

    path: str
    specs: list[TensorSpec]
    start: int = 0
    stop: int = 0
    has_rows: bool = True


def plan_output_shards(
    output: str,
    rows: list[TensorSpec],  # shape (n, ...): split along the first dimension
    whole: list[TensorSpec],  # never split; packed, in order, into files after the rows
    max_bytes: int,
    metadata: dict[str, str],
) -> list[OutputShard]:
    """Files of at most ``max_bytes`` (a row is never split; a whole tensor larger than that
    has a file of its own)."""
    n = rows[0].shape[0]
    row_bytes = sum(spec.nbytes // max(spec.shape[0], 1) for spec in rows)
    # The largest header any file can have: every tensor at full size, and the part keys with
    # the widest values they can take (there are at most n + len(whole) + 1 files).
    most = n + len(whole) + 1
    widest = part_fields(most, most, (n, n))
    overhead = len(build_header([*rows, *whole], {**metadata, **widest}))
    per_file = max(1, (max_bytes - overhead) // max(row_bytes, 1))
    ranges = [(a, min(a + per_file, n)) for a in range(0, n, per_file)] or [(0, 0)]
    groups: list[list[TensorSpec]] = []
    for spec in whole:  # greedy: a tensor joins the last file while the file fits
        if groups and sum(s.nbytes for s in groups[-1]) + spec.nbytes + overhead <= max_bytes:
            groups[-1].append(spec)
        else:
            groups.append([spec])
    paths = split_names(output, len(ranges) + len(groups))
    shards = [
        OutputShard(path, [TensorSpec(s.name, s.dtype, (b - a, *s.shape[1:])) for s in rows], a, b)
        for path, (a, b) in zip(paths, ranges, strict=False)
    ]
    for path, group in zip(paths[len(ranges) :], groups, strict=True):
        shards.append(OutputShard(path, group, has_rows=False))
    return shards


def index_document(
    output: str, shards: list[OutputShard], rows: list[TensorSpec], metadata: dict[str, str]
) -> dict:
    """The ``.index.json``: Hugging Face's ``weight_map`` for whole tensors, and the row ranges
    of tensors split across files (which ``weight_map`` cannot express) under ``embedcli``."""
    names = [os.path.basename(shard.path) for shard in shards]
    return {
        "metadata": {
            "total_size": sum(spec.nbytes for shard in shards for spec in shard.specs),
            **dict(sorted(metadata.items())),
        },
        "weight_map": {
            spec.name: name
            for shard, name in zip(shards, names, strict=True)
            if not shard.has_rows
            for spec in shard.specs
        },
        "embedcli": {
            "row_tensors": {s.name: {"dtype": s.dtype, "shape": list(s.shape)} for s in rows},
            "files": [
                {"file": name, "start": shard.start, "stop": shard.stop}
                for shard, name in zip(shards, names, strict=True)
                if shard.has_rows
            ],
        },
    }


# --------------------------------------------------------------------------- reading


@dataclass
class IndexedTensor:
    """A tensor of a split output: its pieces, in order (one piece unless split by rows)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    pieces: list[tuple[Header, TensorInfo]]


def is_index(path: str) -> bool:
    return path.endswith(".index.json")


def read_index(path: str) -> tuple[dict, list[IndexedTensor], list[Header]]:
    """The index's document, every tensor with its pieces, and the headers of its files."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable index ({exc})") from None
    check_complete(path, doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map", {}), dict):
        raise FormatError(f'{path}: an index needs a "weight_map" object')
    base = os.path.dirname(path)
    extra = doc.get("embedcli") or {}
    files = list(
        dict.fromkeys(
            [*(f["file"] for f in extra.get("files", [])), *doc.get("weight_map", {}).values()]
        )
    )
    headers = {}
    for name in files:
        full = name if os.path.isabs(name) else os.path.join(base, name)
        if not os.path.exists(full):
            raise InputError(f"{full}: no such file (listed in {path})")
        headers[name] = read_header(full)
    tensors: list[IndexedTensor] = []
    for name, meta in (extra.get("row_tensors") or {}).items():
        pieces = [
            (headers[f["file"]], headers[f["file"]].tensor(name))
            for f in extra["files"]
            if name in {t.name for t in headers[f["file"]].tensors}
        ]
        tensors.append(IndexedTensor(name, meta["dtype"], tuple(meta["shape"]), pieces))
    for name, file in doc.get("weight_map", {}).items():
        info = headers[file].tensor(name)
        tensors.append(IndexedTensor(name, info.dtype, info.shape, [(headers[file], info)]))
    return doc, tensors, list(headers.values())


def load_index(path: str) -> dict[str, np.ndarray]:
    """Every tensor of a split output as one numpy array (pieces concatenated)."""
    import numpy as np

    _, tensors, _ = read_index(path)
    return {
        t.name: np.concatenate([load_array(h.path, info) for h, info in t.pieces])
        if len(t.pieces) > 1
        else load_array(t.pieces[0][0].path, t.pieces[0][1])
        for t in tensors
    }
