"""A one-process mix written as parts (``mix --max-shard-size SIZE``): the output's documents,
in the order they would have in one file, cut between documents into files whose ids take at
most SIZE each (a longer document is a part of its own), numbered as ``tokenize --shard``
numbers its parts, with the same manifest, so every reader of a shard set (the loader, batch,
embed, another mix) reads them as the one file's stream, separators and all.

A rerun replaces what an older run of the other shape left under the same name: a whole file
where parts are now written, or parts and their manifest where one file is (see
:class:`~embedcli.storage.output_set.OutputSet`), never an input.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from embedcli.errors import EmbedcliError, UsageError
from embedcli.formats import TokenFormat, output_files, stale_shards
from embedcli.stages.mix_writer import document_cuts, document_offsets
from embedcli.stages.tokenize import stale_val, val_name
from embedcli.storage.manifest import manifest_path, read_manifest
from embedcli.storage.output_set import OutputSet, allow_open_files
from embedcli.storage.split import MAX_FILES, split_names


def check_split(max_shard_size: int | None, fmt: TokenFormat, output: str) -> None:
    """Refuse a split the output cannot take, before anything is read."""
    if max_shard_size is None:
        return
    if output == "-":
        raise UsageError("--max-shard-size writes files: name the output with -o PATH")
    if fmt.name == "llmc":
        raise UsageError("--to llmc splits its output with --shard-tokens N, not --max-shard-size")
    if max_shard_size < 1:
        raise UsageError("--max-shard-size must be above 0")


def part_cuts(
    lengths: np.ndarray, placement: str, max_shard_size: int, fmt: TokenFormat, vocab: int
) -> list[int]:
    """Document indices cutting the output (documents of ``lengths`` ids, separated as
    ``placement``) into parts of at most ``max_shard_size`` bytes of ids each."""
    per_part = max_shard_size // fmt.id_bytes(vocab)
    if per_part < 1:
        raise UsageError(
            f"--max-shard-size {max_shard_size} is smaller than one id ({fmt.id_bytes(vocab)} "
            f"bytes in {fmt.name} files)"
        )
    cuts = document_cuts(document_offsets(lengths, placement), per_part) if lengths.size else [0]
    if len(cuts) < 2:
        cuts.append(0)  # no documents: one empty part, as an empty mix writes one empty file
    if len(cuts) - 1 > MAX_FILES:
        raise UsageError(
            f"--max-shard-size {max_shard_size} would split the mix into {len(cuts) - 1:,} "
            f"files (at most {MAX_FILES:,}); give a larger size"
        )
    return cuts


def part_names(output: str, count: int, fmt: TokenFormat) -> list[str]:
    """The parts' names; the files they need open at once allowed (each part's spill file,
    and its file and provenance held by the output set until it commits)."""
    allow_open_files(3 * count + 64)
    return split_names(output, count, fmt.suffixes)


def set_name(metas: list[dict[str, str]]) -> str:
    """The parts' ``shard_set``: a digest of what each part's metadata says it holds."""
    digest = hashlib.sha256()
    for meta in metas:
        digest.update(repr(sorted(meta.items())).encode())
    return digest.hexdigest()[:16]


def stale_whole(output: str, fmt: TokenFormat, inputs: list[str]) -> list[str]:
    """The whole file (and its sidecars) an older run wrote at ``output``, which parts now
    stand for."""
    if not fmt.exists(output):
        return []
    keep = {os.path.abspath(p) for p in inputs}
    return [p for p in output_files(output, fmt) if os.path.abspath(p) not in keep]


def stale_parts(output: str, inputs: list[str]) -> list[str]:
    """The manifest an older split run wrote for ``output`` and the parts it lists, which one
    file now stands for; nothing when the manifest is an input, or not embedcli's."""
    where = manifest_path(output)
    keep = {os.path.abspath(p) for p in inputs}
    if not os.path.isfile(where) or os.path.abspath(where) in keep:
        return []
    try:
        read_manifest(where)
    except EmbedcliError:
        return []
    return [where, *stale_shards(where, {"shards": []}, inputs)]


def replace_older(
    files: OutputSet,
    output: str,
    fmt: TokenFormat,
    manifest: dict | None,
    inputs: list[str],
    val_output: str | None,
) -> list[str]:
    """What an older run left that this one stands for, replaced in ``files``: a whole file
    or parts of the other shape, a validation split this run does not write; and this run's
    manifest, written last (returned)."""
    if output == "-":
        return []
    if val_output is None:
        files.replaces(stale_val(val_name(output, fmt.suffixes), fmt))
    if manifest is None:
        files.replaces(stale_parts(output, inputs))
        return []
    where = manifest_path(output)
    files.replaces(stale_shards(where, manifest, inputs) + stale_whole(output, fmt, inputs))
    files.pointer(where, manifest)
    return [where]
