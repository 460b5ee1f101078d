"""The file contract: every metadata key embedcli writes, how it is built and how it is read.

safetensors metadata is a flat ``str -> str`` map. Each stage copies its input's metadata (the
lineage) and adds its own keys, so an embeddings file still says which encoding, documents and
windowing produced it. This module is the one place those keys are spelled: writers use the
builders below, readers the parsers, and ``summary.py`` shows them with :data:`LABELS`.
The README's "File contract" section documents the same keys.

Example:
    >>> meta = stage_metadata("windows", {MAX_LENGTH: "4"})
    >>> meta[KIND], get_int(meta, MAX_LENGTH)
    ('windows', 4)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from embedcli.version import __version__

# --------------------------------------------------------------------------- every stage
KIND = "embedcli"  # "tokens", "windows" or "embeddings": the stage that wrote the file
VERSION = "embedcli_version"
KINDS = ("tokens", "windows", "embeddings")

# --------------------------------------------------------------------------- tokens
ENCODING = "encoding"
# Set on a trainer's token file that records no tokenizer (no sidecar, a header that names
# none): why ``encoding`` is only --encoding's default, which nothing decodes with.
ENCODING_ASSUMED = "encoding_assumed"
VOCAB_SIZE = "vocab_size"
EOT_ID = "eot_id"
EOT_PLACEMENT = "eot"  # between (absent in files before 0.2: between), after, before, none
SPECIAL = "special"
SPECIAL_FOUND = "special_found"  # literal special tokens in the text (GPT-2: <|endoftext|>)
SPECIALS_FOUND = "specials_found"  # another model's tokenizer: the same, by name (JSON object)
TOKENIZER_BACKEND = "tokenizer_backend"  # the engine that encoded: tiktoken or gigatoken
# --tokenizer: another model's tokenizer (ENCODING is then file:/abs/path)
TOKENIZER_KIND = "tokenizer"  # tokenizer.json, sentencepiece or tiktoken (a rank file)
TOKENIZER_FILE = "tokenizer_file"
TOKENIZER_SHA256 = "tokenizer_sha256"
TOKENIZER_NORMALIZER = "tokenizer_normalizer"  # a rank file's unicodedata form (NFC...)
BOS_ID = "bos_id"
EOS_ID = "eos_id"
DOCUMENTS = "documents"
TOKENS = "tokens"
SOURCES = "sources"  # JSON list of the inputs' names
SHARDS = "shards"  # JSON list of the token files merged into this input
# tokenize --shard I/N
SHARD_INDEX = "shard_index"
SHARD_COUNT = "shard_count"
SHARD_SET = "shard_set"  # fingerprint of the whole input: shards of one run agree on it
SHARD_KEYS = (SHARD_INDEX, SHARD_COUNT, SHARD_SET)
# tokenize --val-fraction: which split this file is, of what fraction, chosen by what seed
SPLIT = "split"
VAL_FRACTION = "val_fraction"
SPLIT_SEED = "split_seed"
# ... and which file is the other side (its base name), and what both sides agree on: a
# digest of the pair written together, so that a reader can tell a pair of one run from the
# sides of two (a kill -9 between the two renames of a rewrite: see formats.safetensors).
SPLIT_PARTNER = "split_partner"
SPLIT_PAIR = "split_pair"
# Token files joined into one stream must agree on these.
JOIN_KEYS = (ENCODING, VOCAB_SIZE, EOT_ID, SPECIAL, EOT_PLACEMENT)

# embedcli mix: how a corpus was assembled from its sources
MIXTURE_FORMAT = "embedcli-mixture"  # the "format" of the JSON mixture mix --emit-weights writes
MIX_SOURCES = "mix_sources"  # JSON list: name, inputs, weight, target_tokens, tokens, documents...
MIX_BUDGET = "mix_budget"  # the tokens asked for
MIX_MAX_REPEAT = "mix_max_repeat"
MIX_SEED = "mix_seed"
MIX_SHUFFLE = "mix_shuffle"  # global or none
MIX_DEDUP = "mix_dedup"  # exact or none

# --------------------------------------------------------------------------- windows
MAX_LENGTH = "max_length"
STRIDE = "stride"
BATCH_SIZE = "batch_size"
DROP_LAST = "drop_last"
SHUFFLE_SEED = "shuffle_seed"
CROSS_DOCS = "cross_docs"
WINDOWS = "windows"
BATCHES = "batches"
WINDOWS_AVAILABLE = "windows_available"
TOKENS_COVERED = "tokens_covered"
TOKENS_DROPPED_TAIL = "tokens_dropped_tail"
IDS_DTYPE = "ids_dtype"
LAYOUT = "layout"  # "batches" for (K, B, T[, dim]) tensors (--batched); absent: (N, T[, dim])

# --------------------------------------------------------------------------- embeddings
DIM = "dim"
CONTEXT_LENGTH = "context_length"
SEED = "seed"
POS = "pos"
TABLES = "tables"
DEVICE = "device"
DTYPE = "dtype"
TORCH_VERSION = "torch_version"

# --------------------------------------------------------------------------- token formats
FORMAT = "format"  # the token-file format (a sidecar's, or a foreign file's as read back)

# --------------------------------------------------------------------------- split outputs
# Each file of an output split with --max-shard-size says which part it is.
PART_INDEX = "part_index"
PART_COUNT = "part_count"
PART_ROWS = "part_rows"  # "start:stop" of the row tensors, or "whole" for the tables' file

# Labels for people, in reading order (summary.py shows lineage in this order).
LABELS: dict[str, str] = {
    KIND: "stage",
    VERSION: "embedcli version",
    ENCODING: "encoding",
    VOCAB_SIZE: "vocab size",
    EOT_ID: "<|endoftext|> id",
    EOT_PLACEMENT: "<|endoftext|> placed",
    SPECIAL: "special-token policy",
    SPECIAL_FOUND: "literal <|endoftext|> found",
    SPECIALS_FOUND: "specials by name",
    MIX_SOURCES: "mixed from",
    MIX_BUDGET: "mix budget (tokens)",
    MIX_MAX_REPEAT: "mix max repeat",
    MIX_SEED: "mix seed",
    MIX_SHUFFLE: "mix shuffle",
    MIX_DEDUP: "mix dedup",
    ENCODING_ASSUMED: "encoding not recorded",
    TOKENIZER_BACKEND: "tokenizer backend",
    TOKENIZER_KIND: "tokenizer",
    TOKENIZER_FILE: "tokenizer file",
    TOKENIZER_SHA256: "tokenizer sha256",
    TOKENIZER_NORMALIZER: "tokenizer normalizer",
    BOS_ID: "BOS id",
    EOS_ID: "EOS id",
    DOCUMENTS: "documents",
    TOKENS: "tokens",
    SOURCES: "sources",
    SPLIT: "split",
    VAL_FRACTION: "validation fraction",
    SPLIT_SEED: "split seed",
    SPLIT_PARTNER: "other split",
    SPLIT_PAIR: "split pair digest",
    MAX_LENGTH: "max length",
    STRIDE: "stride",
    BATCH_SIZE: "batch size",
    DROP_LAST: "drop last partial batch",
    SHUFFLE_SEED: "shuffle seed",
    CROSS_DOCS: "windows cross documents",
    WINDOWS: "windows",
    WINDOWS_AVAILABLE: "windows available",
    BATCHES: "batches",
    TOKENS_COVERED: "tokens covered",
    TOKENS_DROPPED_TAIL: "tokens dropped at tail",
    IDS_DTYPE: "ids dtype",
    LAYOUT: "layout",
    DIM: "dim",
    CONTEXT_LENGTH: "context length",
    SEED: "seed",
    POS: "positional",
    TABLES: "tables",
    DEVICE: "device",
    DTYPE: "dtype",
    TORCH_VERSION: "torch version",
    FORMAT: "format",
}


# --------------------------------------------------------------------------- builders


def stage_metadata(
    kind: str, fields: Mapping[str, object], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (the input's lineage) plus the stage's ``fields``, stamped with the stage and
    this embedcli's version. Values become strings: bools as ``true``/``false``, ``None`` as
    ``none``, lists as JSON."""
    meta = dict(base or {})
    meta[KIND] = kind
    meta[VERSION] = __version__
    meta.update({key: to_str(value) for key, value in fields.items()})
    return meta


def to_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    return str(value)


def shard_fields(index: int, count: int, shard_set: str) -> dict[str, str]:
    return {SHARD_INDEX: str(index), SHARD_COUNT: str(count), SHARD_SET: shard_set}


def split_fields(name: str, fraction: float, seed: int, partner: str, pair: str) -> dict[str, str]:
    """The keys of one side of a ``--val-fraction`` split: ``partner`` is the other side's
    path, ``pair`` the digest both sides carry."""
    return {
        SPLIT: name,
        VAL_FRACTION: str(fraction),
        SPLIT_SEED: str(seed),
        SPLIT_PARTNER: os.path.basename(partner),
        SPLIT_PAIR: pair,
    }


def part_fields(index: int, count: int, rows: tuple[int, int] | None) -> dict[str, str]:
    """The keys of file ``index`` of ``count`` in a split output (``rows`` None: the tables)."""
    return {
        PART_INDEX: str(index),
        PART_COUNT: str(count),
        PART_ROWS: "whole" if rows is None else f"{rows[0]}:{rows[1]}",
    }


def without(meta: Mapping[str, str], keys: Iterable[str]) -> dict[str, str]:
    drop = set(keys)
    return {k: v for k, v in meta.items() if k not in drop}


# --------------------------------------------------------------------------- parsers


def kind_of(meta: Mapping[str, str] | None) -> str | None:
    """The stage that wrote a file (``None`` for files embedcli did not write)."""
    return (meta or {}).get(KIND)


def separator_label(meta: Mapping[str, str]) -> str:
    """What the document marker is called in summaries: ``<|endoftext|>`` for tiktoken's
    encodings, else the tokenizer's token by its role (``BOS (id 1)``, ``EOS (id 2)``), as
    the keys ``EOT_ID``, ``BOS_ID`` and ``EOS_ID`` say.

    Example:
        >>> separator_label({TOKENIZER_KIND: "sentencepiece", EOT_ID: "1", BOS_ID: "1"})
        'BOS (id 1)'
    """
    if TOKENIZER_KIND not in meta:
        return "<|endoftext|>"
    eot = meta.get(EOT_ID)
    role = "BOS" if eot == meta.get(BOS_ID) else "EOS" if eot == meta.get(EOS_ID) else "marker"
    return f"{role} (id {eot})" if eot is not None else "document marker"


# The lineage labels that name the document marker: GPT-2's text, or the role.
_MARKER_LABELS = {
    EOT_ID: "marker id ({})",
    EOT_PLACEMENT: "{} placed",
    SPECIAL_FOUND: "literal {} found",
}


def label(key: str, meta: Mapping[str, str]) -> str:
    """The label of ``key`` in ``meta``'s lineage table (:data:`LABELS`, the marker by role)."""
    if key == SPECIAL_FOUND and SPECIALS_FOUND in meta:  # every special token, not the marker's
        return "literal specials found"
    if key in _MARKER_LABELS and TOKENIZER_KIND in meta:
        role = separator_label(meta).split(" (")[0]
        return _MARKER_LABELS[key].format(role)
    return LABELS.get(key, key)


def get_int(meta: Mapping[str, str], key: str) -> int | None:
    """An integer value, or ``None`` when absent or not an integer (foreign files)."""
    value = meta.get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def counts_str(counts: Mapping[str, int]) -> str:
    """Counts by name as the JSON object the metadata keeps, the most frequent first."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return json.dumps(dict(ordered), ensure_ascii=False)


def get_counts(meta: Mapping[str, str], key: str) -> dict[str, int]:
    """Counts by name (:func:`counts_str`); ``{}`` when absent or malformed."""
    try:
        parsed = json.loads(meta.get(key) or "{}")
        return {str(k): int(v) for k, v in parsed.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def get_list(meta: Mapping[str, str], key: str) -> list[str]:
    """A JSON list value as strings (``[]`` when absent or malformed)."""
    try:
        parsed = json.loads(meta.get(key) or "[]")
    except (ValueError, TypeError):
        return []
    return [str(v) for v in parsed] if isinstance(parsed, list) else []
