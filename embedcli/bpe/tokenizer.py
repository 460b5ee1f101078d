"""Documents to token ids, in parallel, identical to encoding each document whole.

By default documents are joined with ``<|endoftext|>`` *between* them, so one document encodes
to exactly ``enc.encode(text, allowed_special={"<|endoftext|>"})`` — the reference pipeline's
call. ``eot`` places it *after* every document instead (nanoGPT's ``prepare.py``, Megatron's
``--append-eod``), *before* every document (llm.c's ``fineweb.py``), or nowhere. Either way
``doc_offsets[d]`` is where document *d*'s span starts, its ``<|endoftext|>`` included.

Parallelism: pieces go to worker processes (forked, so the built encoding is shared) or, where
forking is unsafe, threads (tiktoken releases the GIL). Long text is cut into pieces only at
*safe points*: just after a letter that is followed by a space or newline. Every
pre-tokenizer pattern tiktoken ships ends a letter run's piece before whitespace (none of them
lets a letter piece absorb what follows), and no pattern looks behind, so the pieces on both sides
tokenize exactly as they would inside the whole text. ``tests/test_tokenizer.py`` checks this
identity with hypothesis over adversarial text. Text without such points (a 10 MB run of one
character) is encoded in one piece, which is still correct, only not parallel.

Memory: ids leave as small numpy arrays handed to a sink (a file or memory), never as one Python
list; at most ``2 * workers`` pieces of about ``piece_chars`` characters are in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from embedcli.bpe.engines import SMALL_INPUT_BYTES
from embedcli.bpe.foreign import ForeignEncoding
from embedcli.bpe.pieces import (
    PIECE_CHARS,
    IdSink,
    MemorySink,
    TokenizeStats,
    pieces,
    source_row_tasks,
    text_pieces,
)
from embedcli.bpe.pool import OrderedEncoder, Stream
from embedcli.bpe.ranges import CHUNK_BYTES, ChunkSetup, line_ranges, splittable
from embedcli.bpe.value import Tokenizer, default_workers, empty_counts, start_run, submit_pieces
from embedcli.documents import BLOCK_BYTES, Source
from embedcli.documents.base import stdin_size
from embedcli.errors import InputError, UsageError
from embedcli.options import (
    DEFAULT_ENCODING,
    EOT_MODES,
    Backend,
    EotPlacement,
    SpecialPolicy,
)
from embedcli.progress import ProgressFactory

if TYPE_CHECKING:
    from embedcli.options import TokenizeOptions


def tokenize(
    sources: Iterable[Source],
    sink: IdSink,
    tokenizer: Tokenizer | str = DEFAULT_ENCODING,
    *,
    text_key: str = "text",
    workers: int | None = None,
    eot: EotPlacement = "between",
    split_on_eot: bool = False,
    val: tuple[IdSink, float, int] | None = None,
    piece_chars: int = PIECE_CHARS,
    block_bytes: int = BLOCK_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
    on_progress: Callable[[int], None] | None = None,
    allow_empty: bool = False,
    provenance: bool = False,
) -> TokenizeStats:
    """Encode every document of ``sources`` into ``sink`` (int32 arrays) with ``tokenizer``
    (a :class:`Tokenizer`, which carries the special-token policy and the engine asked for,
    or an encoding's name), ``<|endoftext|>`` between documents; return counts and
    ``doc_offsets`` (and with ``provenance`` each document's source and place there,
    ``origins``). The engine is the tokenizer's choice for this much input: the ids are the
    same either way.
    ``val=(val_sink, fraction, seed)`` sends a fraction of the documents to ``val_sink``
    instead (chosen by a hash of the seed and the document's name, see :func:`goes_to_val`);
    their counts are ``stats.val``. ``piece_chars`` is the size of the pieces encoded in
    parallel, ``block_bytes`` the size of the reads, ``chunk_bytes`` the size of the ranges of a
    large jsonl file that workers read themselves (``chunked.py``); none of them changes the ids.

    Raises :class:`InputError` for unreadable or malformed input, empty input (unless
    ``allow_empty``: a shard may hold no document), and (with ``special="error"``) text
    containing a literal ``<|endoftext|>``.
    """
    started = time.perf_counter()
    tok = (
        tokenizer
        if isinstance(tokenizer, Tokenizer)
        else Tokenizer.of(tokenizer, "special", "auto")
    )
    special = tok.special
    if special != "special" and split_on_eot:
        raise UsageError(
            "--split-on-eot reads a literal document marker as a boundary: it needs --special "
            "special"
        )
    sources = list(sources)
    known = _input_bytes(sources, read_ahead=tok.backend == "auto")
    stats, chosen = start_run(tok, eot, known)
    stats.sources = [s.name for s in sources]
    streams = [Stream(sink, stats)]
    if val is not None:
        stats.val = empty_counts(tok, eot)
        stats.val.sources, stats.val.backend = stats.sources, chosen.name
        streams.append(Stream(val[0], stats.val))
    for stream in streams if provenance else ():
        stream.origins = []
    chooser = None if val is None else (val[1], val[2])
    workers = max(1, workers or default_workers())
    setup = ChunkSetup(text_key, piece_chars, block_bytes, special, split_on_eot, chooser, eot,
                       stats.separator_text, stats.cuttable, stats.special_texts)  # fmt: skip
    # gigatoken releases the GIL and encodes faster than a piece can be pickled to a process.
    threads = chosen.name == "gigatoken"
    key = (chosen.name, tok.encoding, special, eot)  # the workers build the same from it
    with OrderedEncoder(key, streams, workers, threads) as encoder:
        for i, source in enumerate(sources):
            if splittable(source, workers, chunk_bytes):  # workers read it, ranges of lines
                for part in line_ranges(source, chunk_bytes):
                    encoder.submit_chunk(part, setup, on_progress, file=i)
                continue
            tasks = None if split_on_eot else source_row_tasks(
                source, text_key, piece_chars, special, stats, on_progress, chooser, block_bytes
            )  # fmt: skip
            if tasks is not None:  # whole documents by rows or lines: a task a batch
                for task in tasks:
                    encoder.submit_texts(*task, file=i)
                continue
            items = pieces([source], text_key, piece_chars, block_bytes, special, stats,
                             on_progress, split_on_eot, chooser)  # fmt: skip
            submit_pieces(encoder, items, piece_chars, file=i)
    everything = stats.documents + (stats.val.documents if stats.val else 0)
    if not allow_empty and (
        everything == 0 or stats.chars + (stats.val.chars if stats.val else 0) == 0
    ):
        names = ", ".join(stats.sources[:3]) + (", ..." if len(stats.sources) > 3 else "")
        raise InputError(f"{names}: no text to tokenize (the input is empty)")
    for stream in streams:
        stream.stats.doc_offsets = stream.doc_offsets()
        stream.stats.origins = stream.doc_origins()
        stream.stats.seconds = time.perf_counter() - started
    return stats


def encode(
    texts: str | Iterable[str],
    *,
    encoding: str | Tokenizer = DEFAULT_ENCODING,
    special: SpecialPolicy = "special",
    eot: EotPlacement = "between",
    backend: Backend = "auto",
    workers: int | None = 1,
) -> np.ndarray:
    """The ids of documents given as strings (one string: one document), exactly as
    ``tokenize`` writes them for the same documents read from files: int32, ``<|endoftext|>``
    placed as ``eot`` says, a literal one treated as ``special`` says. ``encoding``: a name,
    or a :class:`Tokenizer` (used under ``special`` and ``backend``).

    Example:
        >>> encode(["Hello, world", "Bye"]).tolist()
        [15496, 11, 995, 50256, 3886, 68]
    """
    docs = [texts] if isinstance(texts, str) else list(texts)
    tok = Tokenizer.of(encoding, special, backend)
    stats, chosen = start_run(tok, eot, sum(len(d) for d in docs))
    sink = MemorySink()
    workers = max(1, workers or default_workers())
    threads = chosen.name == "gigatoken"
    with OrderedEncoder(
        (chosen.name, tok.encoding, special, eot), [Stream(sink, stats)], workers, threads
    ) as encoder:
        submit_pieces(encoder, text_pieces(docs, special, stats, PIECE_CHARS), PIECE_CHARS)
    return sink.array()


def _input_bytes(sources: list[Source], *, read_ahead: bool = False) -> int | None:
    """How many bytes the sources hold on disk (a shard: its range), None when a pipe's is
    not known. With ``read_ahead``, a pipe that ends within :data:`SMALL_INPUT_BYTES` is
    measured by reading it ahead (kept for its reader): a small input takes the same engine
    whether it arrives as a file or on stdin."""
    total = 0
    for source in sources:
        if source.path == "-" and not source.size:
            size = stdin_size(SMALL_INPUT_BYTES) if read_ahead else None
            if size is None:
                return None
            total += size
            continue
        total += source.byte_range[1] - source.byte_range[0] if source.byte_range else source.size
    return total


def tokenize_with(
    tok: Tokenizer,
    opts: TokenizeOptions,
    sources: Iterable[Source],
    sink: IdSink,
    *,
    on_progress: Callable[[int], None] | None = None,
    allow_empty: bool = False,
    val: tuple[IdSink, float, int] | None = None,
    provenance: bool = False,
) -> TokenizeStats:
    """:func:`tokenize` with the stage's one tokenizer, as its options ask (``batch`` and
    ``embed`` on text name no ``--eot``: the reference's, between documents)."""
    return tokenize(
        sources,
        sink,
        tok,
        text_key=opts.text_key,
        workers=opts.workers,
        eot=opts.eot or EOT_MODES[0],
        split_on_eot=opts.split_on_eot,
        val=val,
        on_progress=on_progress,
        allow_empty=allow_empty,
        provenance=provenance,
    )


def check_first_text(tok: Tokenizer, sources: list[Source], text_key: str) -> None:
    """Before a run: a rank file's tokenizer must give the corpus's own first text back
    (:func:`~embedcli.bpe.rank_files.check_corpus_sample`); other tokenizers are their
    libraries' own definition of their ids."""
    enc = tok.built
    if isinstance(enc, ForeignEncoding) and enc.kind == "tiktoken":
        from embedcli.bpe.rank_files import check_corpus_sample

        check_corpus_sample(enc, sources, text_key)


def choose_engine_first(tok: Tokenizer, sources: list[Source], progress: ProgressFactory) -> None:
    """Choose the engine before the run starts, so that a first run's one-off sample of the
    fast engine's Unicode tables (a second or less, once per machine and tokenizer) shows
    its own progress (``progress``) instead of holding the run's bar at 0%. The run then finds
    the choice made (the tokenizer keeps it). A pipe of unknown size is left to the run (its
    size decides the engine)."""
    from embedcli.bpe.unicode_gaps import reported

    known = _input_bytes(sources)
    if known is None or tok.backend == "tiktoken":
        return
    with reported(progress):
        tok.choice(known)
