"""embedcli's own token file: ``doc_offsets`` (int64) then ``ids`` (int32), safetensors, with
the lineage in its metadata (``contract.py``). The format the book's path writes and reads."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

from embedcli import contract as c
from embedcli.errors import EmbedcliError, FormatError, InputError
from embedcli.formats.base import TokenFormat, TokenSource, check_ids
from embedcli.options import DEFAULT_TOKEN_KEY
from embedcli.storage.outputs import safetensors_output
from embedcli.storage.store import (
    INTEGER_DTYPES,
    Header,
    TensorSpec,
    build_header,
    copy_stream,
    load_array,
    memmap_array,
    read_header,
    write_array,
)

if TYPE_CHECKING:
    import numpy as np


NAME = "safetensors"


def write(
    output: str,
    ids_file: BinaryIO,
    count: int,
    doc_offsets: np.ndarray,
    metadata: dict[str, str],
    *,
    inputs: list[str],
    no_clobber: bool,
    **settings: Any,
) -> list[str]:
    specs = [
        TensorSpec("doc_offsets", "I64", tuple(doc_offsets.shape)),
        TensorSpec("ids", "I32", (count,)),
    ]
    files = None if output == "-" else settings.get("files")  # a pair: committed together
    with safetensors_output(output, inputs=inputs, no_clobber=no_clobber, files=files) as f:
        f.write(build_header(specs, metadata))
        write_array(f, doc_offsets)
        copy_stream(ids_file, f, count * 4)
    return [output]


def token_header(path: str, key: str = DEFAULT_TOKEN_KEY, *, where: str = "") -> Header:
    """The header of a token file, checked: ``key`` holds 1-D integer ids, and the file is not
    another stage's output. ``where`` adds to the message (``" (listed in M)"``)."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file{where}")
    header = read_header(path)
    if header.embedcli_kind not in (None, "tokens"):
        raise FormatError(f"{path}: is a {header.embedcli_kind} file; expected token files")
    info = header.tensor(key)
    if info.dtype not in INTEGER_DTYPES or len(info.shape) != 1:
        raise FormatError(f"{path}: {key!r} must be 1-D integer ids, got {info.dtype} {info.shape}")
    check_pair(path, header.metadata or {})
    return header


def check_pair(path: str, meta: dict[str, str]) -> None:
    """Refuse one side of a train/validation pair whose other side is there but was written
    by another run. A rewrite renames the training file first, then the validation file (one
    :class:`~embedcli.storage.output_set.OutputSet`); a ``kill -9`` between the two leaves a
    new training file beside the old validation file, which this tells apart by the digest
    both sides of one run carry (``split_pair``). A side whose partner is gone is read: it is
    whole, and a user may have moved the other away."""
    partner_name = meta.get(c.SPLIT_PARTNER)
    if meta.get(c.SPLIT) not in ("train", "val") or not partner_name:
        return
    partner = os.path.join(os.path.dirname(path), partner_name)
    try:
        other = read_header(partner).metadata or {}
    except (OSError, EmbedcliError):
        return  # no partner (or not a token file any more): nothing to pair with
    if other.get(c.SPLIT_PAIR) != meta.get(c.SPLIT_PAIR):
        raise FormatError(
            f"{path}: its {'validation' if meta[c.SPLIT] == 'train' else 'training'} split "
            f"{partner} was written by another run (a rewrite was cut short): "
            "run the tokenize command again"
        )


def read_ids(header: Header, key: str = DEFAULT_TOKEN_KEY) -> TokenSource:
    """The ids (memory-mapped, checked) and document offsets of a checked token file."""
    import numpy as np

    ids = check_ids(memmap_array(header, header.tensor(key)), where=header.path)
    doc = None
    if "doc_offsets" in {t.name for t in header.tensors}:
        doc = load_array(header.path, header.tensor("doc_offsets")).astype(np.int64)
    return TokenSource(ids, doc, dict(header.metadata or {}))


def load(path: str, encoding: str) -> TokenSource:
    return read_ids(token_header(path))


SAFETENSORS = TokenFormat(
    name=NAME,
    summary="ids int32 and doc_offsets int64, with metadata (embedcli's own)",
    suffixes=(".tokens.safetensors", ".safetensors"),
    default_eot="between",
    default_special="special",
    default_name=".tokens.safetensors",
    write=write,
    load=load,
)
