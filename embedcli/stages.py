"""The four stages as library calls: read inputs, run the core, write outputs, report facts.

Each ``run_*`` function takes plain arguments, writes its output through
:func:`embedcli.store.open_output` (atomic, validated) and returns a :class:`StageResult` whose
``facts`` the CLI renders. Nothing here knows Typer or rich.

Example:
    >>> from embedcli.stages import run_tokenize, run_batch, run_embed
    >>> run_tokenize(["corpus.txt"], "corpus.tokens.safetensors")           # doctest: +SKIP
    >>> run_batch(["corpus.tokens.safetensors"], "w.safetensors",
    ...           WindowOptions(max_length=4, batch_size=8))                 # doctest: +SKIP
    >>> run_embed(["w.safetensors"], "e.safetensors", EmbedOptions(dim=256))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .distributed import world_size
from .errors import EmbedcliError, FormatError, InputError, OutputError, UsageError
from .store import (
    INTEGER_DTYPES,
    Header,
    TensorSpec,
    build_header,
    check_output,
    copy_stream,
    index_document,
    index_path,
    is_safetensors,
    load_array,
    local_path,
    open_output,
    plan_output_shards,
    read_header,
    write_array,
)
from .text import Source, resolve_sources, shard_sources
from .tokenizer import MemorySink, TokenizeStats, tokenize
from .units import bytes_rate, human_bytes, rate
from .windows import OUTPUT_DTYPES, WindowPlan, check_ids, gather, plan_windows

if TYPE_CHECKING:
    import torch

Progress = Callable[[int], None]
CHUNK_BYTES = 32 << 20


@dataclass
class StageResult:
    """What a stage did: ordered facts for the summary, and where the output went."""

    stage: str
    output: str
    facts: dict[str, Any] = field(default_factory=dict)
    header: Header | None = None  # the output's header (None when written to a stream)
    preview: str | None = None  # e.g. the first rows of the token table
    decoded: list[tuple[list[int], str]] = field(default_factory=list)


@dataclass
class TokenizeOptions:
    encoding: str = "gpt2"
    special: str = "special"
    text_key: str = "text"
    format: str = "auto"
    workers: int | None = None


@dataclass
class WindowOptions:
    max_length: int | None = None
    stride: int | None = None
    batch_size: int | None = None
    drop_last: bool = True
    num_batches: int | None = None
    shuffle: bool = False
    seed: int = 123
    cross_docs: bool = True
    dtype: str = "int64"

    DEFAULT_MAX_LENGTH = 256
    DEFAULT_BATCH_SIZE = 1  # the DataLoader's default: every full window is kept

    def given(self) -> list[str]:
        """Windowing options set explicitly (they cannot apply to already-windowed input)."""
        names = {
            "max_length": "--max-length",
            "stride": "--stride",
            "batch_size": "--batch-size",
            "num_batches": "--num-batches",
        }
        out = [flag for attr, flag in names.items() if getattr(self, attr) is not None]
        if self.shuffle:
            out.append("--shuffle")
        if not self.cross_docs:
            out.append("--no-cross-docs")
        return out


# --------------------------------------------------------------------------- helpers


def default_output(inputs: list[str], suffix: str) -> str:
    """``corpus.txt`` -> ``corpus.<suffix>.safetensors`` in the current directory."""
    if len(inputs) != 1 or inputs[0] == "-":
        raise UsageError("name the output with -o PATH (or -o - for stdout)")
    name = os.path.basename(os.path.normpath(inputs[0]))
    for ext in (
        ".gz",
        ".zst",
        ".json",
        ".manifest",
        ".safetensors",
        ".jsonl",
        ".txt",
        ".text",
        ".md",
        ".tokens",
        ".windows",
        ".embeddings",
    ):
        if name.endswith(ext) and len(name) > len(ext):
            name = name[: -len(ext)]
    return f"{name}.{suffix}.safetensors"


def _describe_output(output: str) -> str:
    """``corpus.tokens.safetensors (3.9 KB)``, or ``<stdout>``."""
    if output == "-":
        return "<stdout>"
    with contextlib.suppress(OSError):
        return f"{output} ({human_bytes(os.path.getsize(output))})"
    return output


def _header_if_file(output: str) -> Header | None:
    if output == "-" or not os.path.isfile(output):
        return None
    return read_header(output)


def _check_disk(output: str, nbytes: int) -> None:
    if output == "-" or (os.path.exists(output) and not os.path.isfile(output)):
        return
    directory = os.path.dirname(os.path.abspath(output))
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(directory).free
        if nbytes > free:
            raise OutputError(
                f"{output}: needs {human_bytes(nbytes)} but {directory} has {human_bytes(free)} free; "
                "free space, write elsewhere, or shrink the job (--num-batches, --dim, --dtype)"
            )


# --------------------------------------------------------------------------- tokenize


def tokenize_sources(
    sources: list[Source],
    opts: TokenizeOptions,
    sink,
    on_progress: Progress | None = None,
    *,
    allow_empty: bool = False,
) -> TokenizeStats:
    return tokenize(
        sources,
        sink,
        encoding=opts.encoding,
        special=opts.special,
        text_key=opts.text_key,
        workers=opts.workers,
        on_progress=on_progress,
        allow_empty=allow_empty,
    )


def input_files(inputs: list[str], fmt: str = "auto") -> list[str]:
    """The paths a stage will read: directories expanded to their text files.

    For :func:`check_output`, so an output can never replace a file read from a directory.
    Unresolvable inputs are returned as given; reading them reports the problem.
    """
    if len(inputs) == 1 and is_manifest(inputs[0]):
        with contextlib.suppress(EmbedcliError):
            return [inputs[0], *read_manifest(inputs[0])]
    try:
        return [s.path for s in resolve_sources(inputs, fmt)]
    except (InputError, UsageError):
        return list(inputs)


def is_manifest(path: str) -> bool:
    return path.endswith(".json") and os.path.isfile(path)


def read_manifest(path: str) -> list[str]:
    """The token files a manifest lists, in order, as paths relative to the manifest."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable embedcli manifest ({exc})") from None
    shards = doc.get("shards") if isinstance(doc, dict) else None
    if not isinstance(shards, list) or not all(isinstance(s, str) for s in shards) or not shards:
        raise FormatError(f'{path}: a manifest needs a non-empty "shards" list of paths')
    base = os.path.dirname(path)
    return [s if os.path.isabs(s) else os.path.join(base, s) for s in shards]


def input_size(inputs: list[str], opts: TokenizeOptions) -> int:
    """Total bytes to read (0 when unknown, e.g. stdin): the progress bar's length."""
    with contextlib.suppress(Exception):
        return sum(s.size for s in resolve_sources(inputs, opts.format))
    return 0


class _SpillSink:
    """int32 ids appended to an anonymous temporary file, so memory stays flat."""

    def __init__(self, f) -> None:
        self.f = f
        self.count = 0

    def write(self, ids: np.ndarray) -> None:
        write_array(self.f, ids)
        self.count += int(ids.size)


def _tokenize_facts(stats: TokenizeStats) -> dict[str, Any]:
    return {
        "documents": f"{stats.documents:,}",
        "tokens": f"{stats.tokens:,}",
        "input": human_bytes(stats.input_bytes),
        "tokens/byte": f"{stats.tokens / max(stats.input_bytes, 1):.3f}",
        "encoding": f"{stats.encoding} (vocab {stats.vocab_size:,}, EOT {stats.eot_id})",
        f"literal {'<|endoftext|>'}": f"{stats.special_found:,} ({stats.special})",
        "tokenize time": f"{stats.seconds:.2f} s",
        "throughput": f"{bytes_rate(stats.input_bytes, stats.seconds)}, "
        f"{rate(stats.tokens, stats.seconds, 'tok')}",
    }


def run_tokenize(
    inputs: list[str],
    output: str,
    opts: TokenizeOptions | None = None,
    *,
    no_clobber: bool = False,
    on_progress: Progress | None = None,
    shard: tuple[int, int] | None = None,
) -> StageResult:
    """Tokenize text files, directories or stdin into a token file (``ids``, ``doc_offsets``).

    With ``shard=(i, n)`` only shard i's documents are read (see
    :func:`embedcli.text.shard_sources`); ``output`` names the whole, the shard is written as
    ``NAME-0000<i+1>-of-0000<n>.tokens.safetensors`` beside it, and every shard writes the same
    manifest ``NAME.tokens.manifest.json`` listing all n files.
    """
    opts = opts or TokenizeOptions()
    sources = resolve_sources(inputs, opts.format)
    # Every file read is an input the output must not replace (directories list theirs).
    inputs = [s.path for s in sources]
    manifest, whole = None, output
    if shard is not None:
        if output == "-":
            raise UsageError("--shard writes files: name the whole with -o PATH, not -o -")
        manifest = shard_manifest(whole, sources, shard[1])
        output = os.path.join(os.path.dirname(whole), manifest["shards"][shard[0]])
        sources = shard_sources(sources, *shard)
    check_output(output, inputs=inputs, no_clobber=no_clobber)
    spill_dir = None if output == "-" else os.path.dirname(os.path.abspath(output))
    try:
        spill = tempfile.TemporaryFile(dir=spill_dir, prefix=".embedcli-ids-")  # noqa: SIM115
    except OSError as exc:
        raise OutputError(f"{output}: cannot write in {spill_dir}: {exc.strerror}") from None
    with spill:
        sink = _SpillSink(spill)
        stats = tokenize_sources(sources, opts, sink, on_progress, allow_empty=shard is not None)
        metadata = stats.metadata()
        if manifest is not None:
            metadata.update(
                shard_index=str(shard[0]),
                shard_count=str(shard[1]),
                shard_set=manifest["shard_set"],
            )
        offsets = stats.doc_offsets
        specs = [
            TensorSpec("doc_offsets", "I64", offsets.shape),
            TensorSpec("ids", "I32", (sink.count,)),
        ]
        spill.flush()
        with open_output(output, inputs=inputs, no_clobber=no_clobber) as out:
            out.file.write(build_header(specs, metadata))
            write_array(out.file, offsets)
            copy_stream(spill, out.file, sink.count * 4)
    facts = _tokenize_facts(stats)
    facts["output"] = _describe_output(output)
    if manifest is not None:
        path = manifest_path(whole)
        write_json_atomic(path, manifest)
        facts["shard"] = f"{shard[0]} of {shard[1]} ({len(sources)} of {len(inputs)} files)"
        facts["manifest"] = path
    return StageResult("tokenize", output, facts, _header_if_file(output))


def shard_file_name(output: str, index: int, count: int) -> str:
    """``corpus.tokens.safetensors``, 2, 8 -> ``corpus-00003-of-00008.tokens.safetensors``
    (numbered from 1, as Hugging Face numbers checkpoint shards)."""
    name = os.path.basename(output)
    stem, suffix = name, ""
    for ext in (".tokens.safetensors", ".safetensors"):
        if name.endswith(ext) and len(name) > len(ext):
            stem, suffix = name[: -len(ext)], ext
            break
    return f"{stem}-{index + 1:05d}-of-{count:05d}{suffix}"


def manifest_path(output: str) -> str:
    """``corpus.tokens.safetensors`` -> ``corpus.tokens.manifest.json``."""
    base = output[: -len(".safetensors")] if output.endswith(".safetensors") else output
    return base + ".manifest.json"


def shard_manifest(output: str, sources: list[Source], count: int) -> dict[str, Any]:
    """What every shard of one sharded run agrees on: the files and a fingerprint of the input."""
    import hashlib

    listing = json.dumps([[s.path, s.size] for s in sources], ensure_ascii=False)
    return {
        "embedcli_manifest": 1,
        "kind": "tokens",
        "shard_count": count,
        "shard_set": hashlib.sha256(listing.encode()).hexdigest()[:16],
        "shards": [shard_file_name(output, i, count) for i in range(count)],
    }


def write_json_atomic(path: str, doc: dict[str, Any]) -> None:
    """Write ``doc`` as JSON via a temporary file and a rename (shards may race: same bytes)."""
    with open_output(path, validate=False) as out:
        out.file.write((json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode())


# --------------------------------------------------------------------------- token sources


@dataclass
class TokenSource:
    """Ids from a token file, a foreign safetensors file or text tokenized on the fly."""

    ids: np.ndarray
    doc_offsets: np.ndarray | None
    metadata: dict[str, str]
    stats: TokenizeStats | None = None  # when the ids were tokenized here


@dataclass
class WindowSource:
    """Already-windowed input: a 2-D integer ``inputs`` tensor."""

    inputs: np.ndarray
    metadata: dict[str, str]


@contextlib.contextmanager
def open_input(
    inputs: list[str],
    *,
    key: str = "ids",
    tokenize_opts: TokenizeOptions | None = None,
    on_progress: Progress | None = None,
    allow_windows: bool = False,
) -> Iterator[TokenSource | WindowSource]:
    """Whatever the user pointed at, as ids (or windows, where ``allow_windows``)."""
    opts = tokenize_opts or TokenizeOptions()
    inputs = inputs or ["-"]
    if len(inputs) == 1 and is_manifest(inputs[0]):
        yield _from_token_files(read_manifest(inputs[0]), key=key, manifest=inputs[0])
        return
    if len(inputs) > 1 and all(os.path.isfile(p) and is_safetensors(p) for p in inputs):
        yield _from_token_files(inputs, key=key)
        return
    single = inputs[0] if len(inputs) == 1 else None
    if single is not None and not os.path.isdir(single):
        if single != "-" and not os.path.exists(single):
            raise InputError(f"{single}: no such file or directory")
        with local_path(single) as path:
            if is_safetensors(path):
                yield _from_safetensors(path, single, key=key, allow_windows=allow_windows)
                return
            if single == "-" or path != single:  # stdin/pipe spooled: tokenize the spool
                inputs = [path]
                yield _from_text(inputs, opts, on_progress, shown=[single])
                return
    for path in inputs:
        if path != "-" and os.path.isfile(path) and is_safetensors(path):
            raise UsageError(f"{path}: give either token files or text, not both")
    yield _from_text(inputs, opts, on_progress)


def _from_text(inputs, opts, on_progress, shown=None) -> TokenSource:
    sink = MemorySink()
    stats = tokenize_sources(resolve_sources(inputs, opts.format), opts, sink, on_progress)
    if shown is not None:
        stats.sources = ["<stdin>" if s == "-" else s for s in shown]
    return TokenSource(sink.array(), stats.doc_offsets, stats.metadata(), stats)


def _from_safetensors(path: str, shown: str, *, key: str, allow_windows: bool):
    header = read_header(path)
    header.path = shown if shown != "-" else "<stdin>"
    meta = dict(header.metadata or {})
    kind = header.embedcli_kind
    names = {t.name for t in header.tensors}
    if kind == "embeddings":
        raise FormatError(f"{header.path}: is an embeddings file; give a token or windows file")
    if kind == "windows" or (key not in names and "inputs" in names):
        if not allow_windows:
            raise FormatError(
                f"{header.path}: is already windowed (has 'inputs'); give a token file or text"
            )
        info = header.tensor("inputs")
        array = load_array(path, info)
        if array.ndim != 2 or array.dtype.kind not in "iu":
            raise FormatError(
                f"{header.path}: 'inputs' must be a 2-D integer tensor, got "
                f"{tuple(array.shape)} {array.dtype}"
            )
        return WindowSource(array, meta)
    info = header.tensor(key)
    if info.dtype not in ("U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64"):
        raise FormatError(f"{header.path}: {key!r} must be integer ids, got {info.dtype}")
    ids = check_ids(load_array(path, info), where=header.path)
    offsets = None
    if "doc_offsets" in names and kind == "tokens":
        offsets = load_array(path, header.tensor("doc_offsets")).astype(np.int64)
    return TokenSource(ids, offsets, meta)


def _from_token_files(paths: list[str], *, key: str, manifest: str | None = None) -> TokenSource:
    """Several token files (the shards of one run, or any list) as one stream of ids.

    Shards are put in shard order whatever order they were given in, and must form one complete
    run; other files keep the order given. Files are joined with ``<|endoftext|>`` between
    those holding documents, exactly as one run over all the inputs would have joined them.
    """
    where = f" (listed in {manifest})" if manifest else ""
    headers = []
    for path in paths:
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file{where}")
        header = read_header(path)
        if header.embedcli_kind not in (None, "tokens"):
            raise FormatError(f"{path}: is a {header.embedcli_kind} file; expected token files")
        info = header.tensor(key)
        if info.dtype not in INTEGER_DTYPES or len(info.shape) != 1:
            raise FormatError(
                f"{path}: {key!r} must be 1-D integer ids, got {info.dtype} {info.shape}"
            )
        headers.append(header)
    metas = [h.metadata or {} for h in headers]
    if all("shard_index" in m for m in metas):
        headers, metas = _shard_order(headers, metas)
    for field_name in ("encoding", "vocab_size", "eot_id", "special"):
        values = {m.get(field_name) for m in metas}
        if len(values) > 1:
            raise FormatError(f"token files disagree on {field_name}: {sorted(map(str, values))}")
    eot = _int_meta(metas[0], "eot_id")

    parts, offsets, position, documents = [], [], 0, 0
    for header in headers:
        ids = check_ids(load_array(header.path, header.tensor(key)), where=header.path)
        names = {t.name for t in header.tensors}
        if "doc_offsets" in names:
            doc = load_array(header.path, header.tensor("doc_offsets")).astype(np.int64)
        else:
            doc = np.array([0, ids.size] if ids.size else [0], dtype=np.int64)
        if doc.size <= 1:
            continue  # no document: nothing to join
        if documents:
            if eot is None:
                raise FormatError(f"{header.path}: no eot_id in the metadata to join files with")
            parts.append(np.array([eot], dtype=ids.dtype))
            position += 1
        offsets.append(doc[:-1] + position)
        parts.append(ids)
        position += ids.size
        documents += doc.size - 1
    merged = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    doc_offsets = np.concatenate([*offsets, [position]]).astype(np.int64)

    meta = {k: v for k, v in metas[0].items() if not k.startswith("shard_")}
    sources = [s for m in metas for s in _json_list(m.get("sources"))]
    meta.update(
        documents=str(documents),
        tokens=str(int(merged.size)),
        sources=json.dumps(sources, ensure_ascii=False),
        special_found=str(sum(_int_meta(m, "special_found") or 0 for m in metas)),
        shards=json.dumps([h.path for h in headers], ensure_ascii=False),
    )
    return TokenSource(merged, doc_offsets, meta)


def _shard_order(headers: list[Header], metas: list[dict[str, str]]):
    counts = {m.get("shard_count") for m in metas}
    sets = {m.get("shard_set") for m in metas}
    if len(counts) > 1 or len(sets) > 1:
        raise FormatError(
            "these shards come from different sharded runs (shard_count/shard_set differ)"
        )
    count = int(counts.pop())
    by_index: dict[int, int] = {}
    for k, m in enumerate(metas):
        index = int(m["shard_index"])
        if index in by_index:
            raise FormatError(
                f"shard {index} given twice: {headers[by_index[index]].path}, {headers[k].path}"
            )
        by_index[index] = k
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise FormatError(f"incomplete set of {count} shards: missing shard(s) {shown}")
    order = [by_index[i] for i in range(count)]
    return [headers[k] for k in order], [metas[k] for k in order]


def _json_list(value: str | None) -> list[str]:
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(value or "[]")
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    return []


# --------------------------------------------------------------------------- outputs


def write_outputs(
    output: str,
    rows: list[TensorSpec],
    whole: list[TensorSpec],
    meta: dict[str, str],
    write_rows: Callable[[Any, int, int], None],
    write_whole: Callable[[Any], None],
    *,
    read: list[str],
    no_clobber: bool,
    max_shard_size: int | None = None,
) -> list[str]:
    """Write one safetensors file, or (``max_shard_size``) several plus an index.

    ``rows`` are tensors split along their first dimension (``write_rows(f, start, stop)``
    writes rows ``[start, stop)`` of each, in order); ``whole`` tensors are written by
    ``write_whole(f)``. Sharded: ``NAME-00001-of-0000K.safetensors`` files, each with its
    row range in its metadata, and ``NAME.safetensors.index.json`` (Hugging Face's layout:
    ``weight_map`` for whole tensors, row ranges under ``embedcli``). All files are renamed
    into place together at the end, then the index is written.
    """
    n = rows[0].shape[0]
    if not max_shard_size:
        with open_output(output, inputs=read, no_clobber=no_clobber) as out:
            out.file.write(build_header([*rows, *whole], meta))
            write_rows(out.file, 0, n)
            write_whole(out.file)
        return [output]
    if output == "-":
        raise UsageError("--max-shard-size writes several files: name them with -o PATH")
    shards = plan_output_shards(output, rows, whole, max_shard_size, meta)
    with contextlib.ExitStack() as stack:  # every file stays a temp file until all are done
        for k, shard in enumerate(shards):
            part = {
                "part_index": str(k),
                "part_count": str(len(shards)),
                "part_rows": f"{shard.start}:{shard.stop}" if shard.has_rows else "whole",
            }
            out = stack.enter_context(open_output(shard.path, inputs=read, no_clobber=no_clobber))
            out.file.write(build_header(shard.specs, {**meta, **part}))
            if shard.has_rows:
                write_rows(out.file, shard.start, shard.stop)
            else:
                write_whole(out.file)
    index = index_path(output)
    write_json_atomic(index, index_document(output, shards, rows, meta))
    return [s.path for s in shards] + [index]


def _describe_outputs(output: str, written: list[str]) -> str:
    if len(written) == 1:
        return _describe_output(written[0])
    size = sum(os.path.getsize(p) for p in written if os.path.exists(p))
    return f"{written[-1]} + {len(written) - 1} files ({human_bytes(size)})"


# --------------------------------------------------------------------------- batch


def make_plan(source: TokenSource, opts: WindowOptions) -> WindowPlan:
    max_length = opts.max_length or WindowOptions.DEFAULT_MAX_LENGTH
    if not opts.cross_docs and source.doc_offsets is None:
        raise UsageError("--no-cross-docs needs document boundaries: give text or a token file")
    return plan_windows(
        int(source.ids.size),
        max_length=max_length,
        stride=opts.stride or max_length,
        batch_size=opts.batch_size or WindowOptions.DEFAULT_BATCH_SIZE,
        drop_last=opts.drop_last,
        num_batches=opts.num_batches,
        shuffle_seed=opts.seed if opts.shuffle else None,
        doc_offsets=None if opts.cross_docs else source.doc_offsets,
    )


def window_metadata(source: TokenSource, plan: WindowPlan, dtype: str) -> dict[str, str]:
    meta = dict(source.metadata)
    meta.update(
        {
            "embedcli": "windows",
            "embedcli_version": __version__,
            "max_length": str(plan.max_length),
            "stride": str(plan.stride),
            "batch_size": str(plan.batch_size),
            "drop_last": "true" if plan.drop_last else "false",
            "shuffle_seed": "none" if plan.shuffle_seed is None else str(plan.shuffle_seed),
            "cross_docs": "true" if plan.cross_docs else "false",
            "windows": str(plan.n_windows),
            "batches": str(plan.n_batches),
            "windows_available": str(plan.available),
            "tokens_covered": str(plan.tokens_covered),
            "tokens_dropped_tail": str(plan.tail_dropped),
            "ids_dtype": dtype,
        }
    )
    return meta


def _plan_facts(plan: WindowPlan, dtype: str) -> dict[str, Any]:
    order = "text order" if plan.shuffle_seed is None else f"shuffled (seed {plan.shuffle_seed})"
    return {
        "windows": f"{plan.n_windows:,} of {plan.available:,} ({plan.n_batches:,} batches of "
        f"{plan.batch_size}{', last kept' if not plan.drop_last else ''})",
        "max length / stride": f"{plan.max_length} / {plan.stride}",
        "inputs, targets": f"({plan.n_windows}, {plan.max_length}) {dtype}, {order}",
        "tokens covered": f"{plan.tokens_covered:,} of {plan.n_tokens:,} "
        f"({plan.tail_dropped:,} dropped at the tail)",
    }


def _decode_first(source: TokenSource, first: np.ndarray) -> list[tuple[list[int], str]]:
    from .encoding import get_encoding
    from .errors import EmbedcliError

    ids = [int(i) for i in first]
    name = source.metadata.get("encoding")
    if not name:
        return [(ids, "")]
    try:
        return [(ids, get_encoding(name).decode(ids))]
    except EmbedcliError:
        return [(ids, "")]


def run_batch(
    inputs: list[str],
    output: str,
    opts: WindowOptions | None = None,
    tokenize_opts: TokenizeOptions | None = None,
    *,
    key: str = "ids",
    no_clobber: bool = False,
    on_progress: Progress | None = None,
    max_shard_size: int | None = None,
) -> StageResult:
    """Windows ``(N, max_length)`` of inputs and targets from a token file, ids or text.

    ``max_shard_size`` (bytes) splits the output into files of at most that size plus an
    ``.index.json`` (see :func:`write_outputs`)."""
    opts = opts or WindowOptions()
    if opts.dtype not in OUTPUT_DTYPES:
        raise UsageError(f"unknown --dtype {opts.dtype!r}; use one of {', '.join(OUTPUT_DTYPES)}")
    tokenize_opts = tokenize_opts or TokenizeOptions()
    read = input_files(inputs, tokenize_opts.format)
    check_output(output, inputs=read, no_clobber=no_clobber)
    started = time.perf_counter()
    with open_input(inputs, key=key, tokenize_opts=tokenize_opts, on_progress=on_progress) as src:
        plan = make_plan(src, opts)
        dtype = np.dtype(opts.dtype)
        t = plan.max_length
        shape = (plan.n_windows, t)
        st_dtype = "I64" if opts.dtype == "int64" else "I32"
        specs = [TensorSpec("inputs", st_dtype, shape), TensorSpec("targets", st_dtype, shape)]
        meta = window_metadata(src, plan, opts.dtype)
        _check_disk(output, 2 * plan.n_windows * t * dtype.itemsize)
        rows = max(1, CHUNK_BYTES // (t * dtype.itemsize))

        def write_rows(f, a: int, b: int) -> None:
            for shift in (0, 1):  # all inputs rows, then all targets rows
                for i in range(a, b, rows):
                    starts = plan.starts[i : min(i + rows, b)]
                    write_array(f, gather(src.ids, starts, t, shift=shift).astype(dtype))

        written = write_outputs(
            output,
            specs,
            [],
            meta,
            write_rows,
            lambda f: None,
            read=read,
            no_clobber=no_clobber,
            max_shard_size=max_shard_size,
        )
        facts = _tokenize_facts(src.stats) if src.stats else {"input": f"{src.ids.size:,} ids"}
        facts.update(_plan_facts(plan, opts.dtype))
        decoded = _decode_first(src, gather(src.ids, plan.starts[:1], t)[0])
    facts["time"] = f"{time.perf_counter() - started:.2f} s"
    facts["output"] = _describe_outputs(output, written)
    return StageResult("batch", output, facts, _header_if_file(output), decoded=decoded)


# --------------------------------------------------------------------------- embed


@dataclass
class EmbedOptions:
    dim: int | None = None
    vocab_size: int | None = None
    context_length: int | None = None
    seed: int = 123
    pos: str = "learned"
    device: str = "cpu"
    dtype: str = "float32"
    weights: str | None = None
    token_key: str | None = None
    pos_key: str | None = None
    save_weights: bool = True
    max_shard_size: int | None = None  # bytes per output file; None: one file

    DEFAULT_DIM = 256


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    import torch

    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return memoryview(t.numpy()).cast("B")


def run_embed(
    inputs: list[str],
    output: str,
    opts: EmbedOptions | None = None,
    window_opts: WindowOptions | None = None,
    tokenize_opts: TokenizeOptions | None = None,
    *,
    key: str = "ids",
    no_clobber: bool = False,
    on_progress: Progress | None = None,
    on_windows: Callable[[int], Callable[[int], None]] | None = None,
) -> StageResult:
    """Token plus positional embeddings ``(N, T, dim)`` for text, a token file or windows.

    ``on_windows(total)`` is called once the window count is known and returns a callback
    advanced by each chunk of windows written (the CLI's progress bar).
    """
    import torch

    from .embedding import DTYPE_NAMES, Embedder, check_id_range, resolve_device, torch_dtype

    opts = opts or EmbedOptions()
    window_opts = window_opts or WindowOptions()
    tokenize_opts = tokenize_opts or TokenizeOptions()
    device = resolve_device(opts.device)
    tdtype = torch_dtype(opts.dtype)
    group = None
    if world_size() > 1:  # started by torchrun: split the windows across the processes
        from .distributed import Group

        group = Group.join(device)
        device = group.device
    read = input_files(inputs, tokenize_opts.format) + ([opts.weights] if opts.weights else [])
    check_output(output, inputs=read, no_clobber=no_clobber)
    started = time.perf_counter()
    with open_input(
        inputs, key=key, tokenize_opts=tokenize_opts, on_progress=on_progress, allow_windows=True
    ) as src:
        facts: dict[str, Any] = {}
        if isinstance(src, WindowSource):
            if window_opts.given():
                raise UsageError(
                    f"the input is already windowed; {', '.join(window_opts.given())} apply "
                    "only to text or token inputs"
                )
            windows, plan, t = src.inputs, None, int(src.inputs.shape[1])
            n = int(windows.shape[0])
            facts["input"] = f"windows ({n:,}, {t})"
        else:
            plan = make_plan(src, window_opts)
            windows, t, n = None, plan.max_length, plan.n_windows
            if src.stats:
                facts.update(_tokenize_facts(src.stats))
            facts.update(_plan_facts(plan, "int64"))
        # The lineage: the input's metadata plus, when windows are made here, how.
        meta = dict(src.metadata) if plan is None else window_metadata(src, plan, "int64")
        meta.pop("ids_dtype", None)

        tables = _plan_tables(opts, meta, t)
        vocab_size, dim, context_length = tables.vocab_size, tables.dim, tables.context_length
        origin = tables.origin

        where = inputs[0] if inputs and inputs[0] != "-" else "<stdin>"
        if windows is not None:
            check_id_range(windows, vocab_size, where=where)
        else:
            check_id_range(src.ids, vocab_size, where=where)

        st_dtype = DTYPE_NAMES[opts.dtype]
        specs = [TensorSpec("embeddings", st_dtype, (n, t, dim))]
        if opts.save_weights:
            specs.append(TensorSpec("token_embedding.weight", st_dtype, (vocab_size, dim)))
            if tables.has_pos:
                specs.append(TensorSpec("pos_embedding.weight", st_dtype, (context_length, dim)))
        meta.update(
            {
                "embedcli": "embeddings",
                "embedcli_version": __version__,
                "vocab_size": str(vocab_size),
                "dim": str(dim),
                "context_length": str(context_length),
                "max_length": str(t),
                "windows": str(n),
                "seed": str(opts.seed),
                "pos": opts.pos,
                "tables": origin,
                "device": device.type,  # not the index: any layout of ranks writes the same bytes
                "dtype": opts.dtype,
                "torch_version": torch.__version__,
            }
        )
        header_bytes = build_header(specs, meta)
        total_bytes = len(header_bytes) + sum(s.nbytes for s in specs)
        _check_disk(output, total_bytes)  # before the tables are allocated: refuse early

        token, pos_table = tables.materialize(opts.seed, opts.pos)
        embedder = Embedder(token, pos_table, device=device, dtype=tdtype)
        row_bytes = t * dim * torch.tensor([], dtype=tdtype).element_size()
        rows = max(1, CHUNK_BYTES // 2 // row_bytes)  # two chunks in flight
        lo, hi = group.rows(n) if group else (0, n)  # this process's windows
        advance = on_windows(hi - lo) if on_windows else None
        compute_started = time.perf_counter()
        buffer_shape = (max(1, min(rows, hi - lo)), t, dim)

        def write_rows(f, a: int, b: int) -> None:
            if windows is not None:
                chunks = (windows[i : min(i + rows, b)] for i in range(a, b, rows))
            else:
                chunks = (
                    gather(src.ids, plan.starts[i : min(i + rows, b)], t) for i in range(a, b, rows)
                )
            _stream_embeddings(f, embedder, chunks, buffer_shape, advance)

        def write_tables(f) -> None:
            if opts.save_weights:
                f.write(_tensor_bytes(token.to(tdtype)))
                if pos_table is not None:
                    f.write(_tensor_bytes(pos_table.to(tdtype)))

        if group is None:
            written = write_outputs(
                output,
                specs[:1],
                specs[1:],
                meta,
                write_rows,
                write_tables,
                read=read,
                no_clobber=no_clobber,
                max_shard_size=opts.max_shard_size,
            )
        else:
            from .distributed import PositionalWriter, write_shared

            if opts.max_shard_size:
                raise UsageError("--max-shard-size and torchrun cannot be combined yet: one file")
            written = [output]
            write_shared(
                group,
                output,
                header_bytes,
                total_bytes,
                write_rows=lambda fd: write_rows(
                    PositionalWriter(fd, len(header_bytes) + lo * row_bytes), lo, hi
                ),
                write_tables=lambda fd, offset: write_tables(PositionalWriter(fd, offset)),
                tables_offset=len(header_bytes) + n * row_bytes,
            )
            facts["processes"] = (
                f"{group.world} (torchrun, {group.device.type}); this is rank {group.rank}"
            )
            group.close()
        seconds = time.perf_counter() - compute_started

    facts.update(
        {
            "embeddings": f"({n:,}, {t}, {dim}) {opts.dtype} on {device}",
            "token table": f"({vocab_size:,}, {dim}) {origin}",
            "positional": f"{opts.pos}" + (f" ({context_length}, {dim})" if tables.has_pos else ""),
            "written": human_bytes(total_bytes)
            + ("" if opts.save_weights else " (tables not saved)"),
            "embed time": f"{seconds:.2f} s ({rate(n, seconds, 'windows')}, "
            f"{bytes_rate(total_bytes, seconds)})",
            "total time": f"{time.perf_counter() - started:.2f} s",
            "output": _describe_outputs(output, written),
        }
    )
    from .inspection import torch_repr

    preview = "token_embedding.weight[:3]\n" + torch_repr(token[:3].to(tdtype))
    return StageResult("embed", output, facts, _header_if_file(output), preview=preview)


def _stream_embeddings(f, embedder, chunks, buffer_shape, advance) -> None:
    """Embed each chunk of windows and write it to ``f``, in order.

    One writer thread: chunk k is written while chunk k+1 is computed (both release the GIL).
    Two output buffers are reused throughout, so memory stays flat and the allocator never sees
    a stream of large blocks.
    """
    import torch

    buffers = [torch.empty(buffer_shape, dtype=embedder.dtype) for _ in range(2)]
    with ThreadPoolExecutor(1, thread_name_prefix="write") as writer:
        pending: Future | None = None
        for k, chunk in enumerate(chunks):
            # buffers[k % 2] last held chunk k-2, whose write finished before k-1 was submitted
            data = _tensor_bytes(embedder.embed(chunk, out=buffers[k % 2]))
            if pending is not None:
                pending.result()
            pending = writer.submit(f.write, data)
            if advance:
                advance(len(chunk))
        if pending is not None:
            pending.result()


@dataclass
class _Tables:
    """Table sizes (known before anything is allocated) and, for --weights, the tables."""

    vocab_size: int
    dim: int
    context_length: int
    has_pos: bool
    origin: str
    token: torch.Tensor | None = None
    pos: torch.Tensor | None = None

    def materialize(self, seed: int, pos: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        from .embedding import random_tables, sinusoidal_table

        if self.token is None:
            return random_tables(self.vocab_size, self.dim, self.context_length, seed=seed, pos=pos)
        if self.pos is None and pos == "sinusoidal":
            self.pos = sinusoidal_table(self.context_length, self.dim)
        return self.token, self.pos


def _plan_tables(opts: EmbedOptions, meta: dict[str, str], t: int) -> _Tables:
    """Sizes of the token and positional tables, from --weights, options or the metadata."""
    from .embedding import load_weights

    if not opts.weights:
        vocab_size = opts.vocab_size or _int_meta(meta, "vocab_size")
        if vocab_size is None:
            raise UsageError(
                "the input has no embedcli metadata: say the table size with --vocab-size"
            )
        context_length = opts.context_length or t
        if context_length < t:
            raise UsageError(f"--context-length {context_length} is shorter than --max-length {t}")
        return _Tables(
            vocab_size,
            opts.dim or EmbedOptions.DEFAULT_DIM,
            context_length,
            opts.pos != "none",
            f"random (seed {opts.seed})",
        )

    loaded = load_weights(
        opts.weights, token_key=opts.token_key, pos_key=opts.pos_key, want_pos=opts.pos == "learned"
    )
    vocab_size, dim = (int(d) for d in loaded.token.shape)
    if opts.dim is not None and opts.dim != dim:
        raise UsageError(f"--dim {opts.dim} differs from the loaded table's dim {dim}")
    if opts.vocab_size is not None and opts.vocab_size != vocab_size:
        raise UsageError(
            f"--vocab-size {opts.vocab_size} differs from the loaded table's {vocab_size} rows"
        )
    context_length = opts.context_length or t
    if opts.pos == "learned":
        if loaded.pos is None:
            raise FormatError(
                f"{opts.weights}: no positional table found; name it with --pos-key, "
                "or use --pos sinusoidal or --pos none"
            )
        context_length = int(loaded.pos.shape[0])
        if opts.context_length is not None and opts.context_length != context_length:
            raise UsageError(
                f"--context-length {opts.context_length} differs from the loaded positional "
                f"table's {context_length} rows"
            )
        if context_length < t:
            raise UsageError(f"the positional table has {context_length} rows, windows are {t}")
    origin = f"{opts.weights} ({loaded.token_key}, {loaded.pos_key or opts.pos})"
    return _Tables(
        vocab_size, dim, context_length, opts.pos != "none", origin, loaded.token, loaded.pos
    )


def _int_meta(meta: dict[str, str], key: str) -> int | None:
    value = meta.get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
