"""Shard manifests: how the files of one ``tokenize --shard I/N`` run find each other.

Every shard of a run writes the same small JSON file, ``NAME.tokens.manifest.json``, listing all N
shard files and a fingerprint of the whole input (``shard_set``). Each shard file carries its index,
the count and the fingerprint in its metadata, so a set of shards can be checked complete and put
back in order whatever order they are given in (:func:`order_shards`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from embedcli.contract import SHARD_COUNT, SHARD_INDEX, SHARD_SET, get_int
from embedcli.errors import EmbedcliError, FormatError
from embedcli.storage.output_set import check_complete
from embedcli.storage.split import split_names

TOKEN_SUFFIXES = (".tokens.safetensors", ".safetensors")


def manifest_path(output: str) -> str:
    """``corpus.tokens.safetensors`` -> ``corpus.tokens.manifest.json``."""
    base = output[: -len(".safetensors")] if output.endswith(".safetensors") else output
    return base + ".manifest.json"


def shard_manifest(
    output: str,
    listing: list[tuple[str, int]],
    count: int,
    fmt: str = "safetensors",
    suffixes: tuple[str, ...] = TOKEN_SUFFIXES,
) -> dict[str, Any]:
    """What every shard of one run agrees on: the files, and a fingerprint of the input
    (``listing``: every input file's path and size, in reading order). ``fmt`` is the token
    format of the shards, named with its ``suffixes`` kept last."""
    fingerprint = json.dumps([list(item) for item in listing], ensure_ascii=False)
    doc: dict[str, Any] = {
        "embedcli_manifest": 1,
        "kind": "tokens",
        "shard_count": count,
        "shard_set": hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
        "shards": [os.path.basename(p) for p in split_names(output, count, suffixes)],
    }
    if fmt != "safetensors":  # manifests of embedcli 0.1 have no format: safetensors
        doc["format"] = fmt
    return doc


def is_manifest(path: str) -> bool:
    return (
        path.endswith(".json")
        and not path.endswith(".index.json")
        and os.path.isfile(path)
        and not is_sidecar(path)
    )


# How a token file's sidecar begins (formats.base.sidecar_document's first key, or the
# incomplete pointer an interrupted commit leaves: see output_set).
_SIDECAR_STARTS = (b'{\n  "embedcli_tokens"', b'{\n  "embedcli_incomplete_commit"')


def is_sidecar(path: str) -> bool:
    """Whether ``path`` is the lineage sidecar of a token file (``OUTPUT.json``), which
    stands for the files it describes: read from its first bytes."""
    if not path.endswith(".json") or path.endswith(".index.json"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(48)
    except OSError:
        return False
    if path.endswith(".manifest.json") and head.startswith(_SIDECAR_STARTS[1]):
        return False  # a shard manifest whose commit was cut short: still a manifest
    return head.startswith(_SIDECAR_STARTS)


@dataclass
class Manifest:
    """What a manifest says: its shard files (paths relative to the manifest), their format
    (``safetensors`` in manifests of embedcli 0.1, which name none) and the run's
    fingerprint (None in hand-written manifests), which every listed shard must carry."""

    files: list[str]
    format: str
    shard_set: str | None


def read_manifest(path: str) -> Manifest:
    """The manifest at ``path``, checked; one whose commit was cut short is refused."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable embedcli manifest ({exc})") from None
    check_complete(path, doc)
    shards = doc.get("shards") if isinstance(doc, dict) else None
    if not isinstance(shards, list) or not all(isinstance(s, str) for s in shards) or not shards:
        raise FormatError(f'{path}: a manifest needs a non-empty "shards" list of paths')
    base = os.path.dirname(path)
    files = [s if os.path.isabs(s) else os.path.join(base, s) for s in shards]
    shard_set = doc.get("shard_set")
    return Manifest(files, str(doc.get("format", "safetensors")), shard_set if shard_set else None)


def older_shards(
    path: str,
    manifest: dict[str, Any],
    *,
    inputs: list[str],
    expand: Callable[[str, str], list[str]] | None = None,
) -> list[str]:
    """The files of the shards an older run's manifest at ``path`` lists and ``manifest`` (this
    run's) does not: a rerun with fewer shards replaces them (see :class:`OutputSet`). Each shard
    job of the new run names the same files; whichever commits first removes them.

    ``expand(shard, format)`` gives the files on disk that one listed shard stands for (a
    Megatron prefix's ``.bin`` and ``.idx``, a sidecar, a provenance file); without it, the
    listed name alone. Inputs are never among them, nor anything when the old manifest cannot
    be read."""
    try:
        old = read_manifest(path)
    except EmbedcliError:
        return []
    base = os.path.dirname(path)
    keep = {os.path.abspath(os.path.join(base, s)) for s in manifest["shards"]}
    keep |= {os.path.abspath(p) for p in inputs}
    listed = [f for f in old.files if os.path.abspath(f) not in keep]
    found = [p for f in listed for p in (expand(f, old.format) if expand else [f])]
    return [p for p in dict.fromkeys(found) if os.path.abspath(p) not in keep]


def check_listed(path: str, shard_set: str | None, metas: list[dict[str, str]]) -> None:
    """Refuse shards that are not of the run the manifest at ``path`` describes (an older
    run's file under a listed name)."""
    if shard_set is None:
        return
    for meta in metas:
        if SHARD_SET in meta and meta[SHARD_SET] != shard_set:
            raise FormatError(
                f"{path}: lists shards of another run (shard_set {meta[SHARD_SET]}, "
                f"the manifest's {shard_set}); run the sharded tokenize again"
            )


def _shard_name(present: str, meta: dict[str, str], index: int, count: int) -> str:
    """``1 (c-00002-of-00004.tokens.safetensors)``: a missing shard's number and its file's
    name, derived from a shard that is there."""
    name = os.path.basename(present)
    mine = int(meta[SHARD_INDEX]) + 1
    pattern = f"-{mine:05d}-of-{count:05d}"
    if pattern in name:
        return f"{index} ({name.replace(pattern, f'-{index + 1:05d}-of-{count:05d}')})"
    return str(index)


def order_shards(paths: list[str], metas: list[dict[str, str]]) -> list[int]:
    """Positions of ``paths`` in shard order; refuses shards of different runs, duplicates and
    incomplete sets."""
    counts = {get_int(m, SHARD_COUNT) for m in metas}
    sets = {m.get(SHARD_SET) for m in metas}
    count = counts.pop()
    if counts or len(sets) > 1 or count is None:
        raise FormatError(
            "these shards come from different sharded runs (shard_count/shard_set differ)"
        )
    by_index: dict[int, int] = {}
    for k, m in enumerate(metas):
        index = int(m[SHARD_INDEX])
        if index in by_index:
            raise FormatError(f"shard {index} given twice: {paths[by_index[index]]}, {paths[k]}")
        by_index[index] = k
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        named = [_shard_name(paths[0], metas[0], i, count) for i in missing[:10]]
        shown = ", ".join(named) + (" ..." if len(missing) > 10 else "")
        raise FormatError(f"incomplete set of {count} shards: missing shard(s) {shown}")
    return [by_index[i] for i in range(count)]
