"""What a stage reads, resolved once: one reader per kind of input, in a registry.

``batch`` and ``embed`` take whatever the user points at: text (files, directories, stdin,
jsonl, compressed), a token file, several token files, a shard manifest, a windows file, a split
output's ``.index.json``, or any safetensors file holding ids. :func:`open_input` spools a pipe
to a temporary file (once), asks each registered reader in turn whether it claims the inputs,
and returns the first one's :class:`Resolved`: the files it will read (so the output can be
checked against them before any work) and ``load(progress)``.

A new input format is one module with a reader (see ``base.Reader``) and one entry in
:data:`READERS` (or, from outside the package, one :func:`register` call). Example::

    with open_input(["corpus.tokens.safetensors"], Request()) as found:
        check_output(out, inputs=found.paths)
        source = found.load(no_progress)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from embedcli.documents.base import split_suffix
from embedcli.documents.sources import text_suffixes
from embedcli.formats import TRAINER_FORMATS
from embedcli.formats.base import named_output
from embedcli.inputs.base import Reader, Request, Resolved, TokenSource, WindowSource
from embedcli.inputs.safetensors_file import SafetensorsReader
from embedcli.inputs.split_file import SplitReader, WindowPartsReader
from embedcli.inputs.text_input import TextReader
from embedcli.inputs.token_files import ManifestReader, TokenFilesReader
from embedcli.inputs.trainer_files import TokenFormatReader, sniffed
from embedcli.options import TOKEN_INPUT_FORMATS
from embedcli.progress import ProgressFactory, no_progress
from embedcli.storage.pipes import spool
from embedcli.storage.remote import fetched, is_url, public_url

__all__ = [
    "READERS",
    "TOKEN_INPUT_FORMATS",
    "Reader",
    "Request",
    "Resolved",
    "TokenSource",
    "WindowSource",
    "load_input",
    "open_input",
    "register",
    "spool",
    "spooled",
]

# Asked in order; the text reader takes whatever is left. A trainer's file is never
# safetensors, so their readers come first.
READERS: list[Reader] = [
    *(TokenFormatReader(fmt) for fmt in TRAINER_FORMATS),
    ManifestReader(),
    SplitReader(),
    WindowPartsReader(),
    TokenFilesReader(),
    SafetensorsReader(),
    TextReader(),
]


# The readers of the token formats ``--format`` can name for batch and embed.
_BY_NAME = {f.name: TokenFormatReader(f) for f in TRAINER_FORMATS if f.name in TOKEN_INPUT_FORMATS}


def register(reader: Reader, *, before: str | None = "text") -> None:
    """Add a reader, asked before the reader named ``before`` (the text catch-all by default)."""
    names = [r.name for r in READERS]
    READERS.insert(names.index(before) if before in names else len(READERS), reader)


@contextlib.contextmanager
def open_input(inputs: list[str], request: Request | None = None) -> Iterator[Resolved]:
    """Resolve ``inputs`` (``[]`` is stdin) with the first reader that claims them, or with
    the token format ``request.tokenize.format`` names. A spooled pipe has no name to go by:
    its magic number says llm.c or npy (safetensors' readers sniff for themselves)."""
    request = request or Request()
    inputs = [named_output(p) for p in inputs] or ["-"]
    with spooled(inputs) as (paths, shown):
        forced = _BY_NAME.get(request.tokenize.format)
        if forced is None and len(paths) == 1 and paths != inputs and not is_url(inputs[0]):
            forced = _BY_NAME.get(sniffed(paths[0]) or "")
        reader = forced or next(r for r in READERS if r.claims(paths))
        yield reader.resolve(paths, request, shown)


@contextlib.contextmanager
def load_input(
    inputs: list[str], request: Request | None = None, progress: ProgressFactory = no_progress
) -> Iterator[TokenSource | WindowSource]:
    """Resolve and read ``inputs`` in one step: the ids (or windows) they hold.

    Example:
        >>> with load_input(["corpus.tokens.manifest.json"]) as source:  # doctest: +SKIP
        ...     source.ids.size, source.metadata["documents"]
    """
    with open_input(inputs, request) as found:
        yield found.load(progress)


@contextlib.contextmanager
def spooled(inputs: list[str]) -> Iterator[tuple[list[str], list[str]]]:
    """``(paths, shown)``: a single stdin or pipe input copied to a temporary file (readers
    sniff and reread it; safetensors' reader needs a seekable file), named ``<stdin>`` or by
    its path in messages. A URL of a file that is memory-mapped (token files, safetensors,
    manifests with their shards) is fetched to a temporary directory first; text URLs are
    streamed by the text reader. Other inputs are passed through."""
    if any(is_url(p) for p in inputs):
        with contextlib.ExitStack() as stack:
            paths = [
                stack.enter_context(fetched(p)) if is_url(p) and not streamed_url(p) else p
                for p in inputs
            ]
            yield paths, [public_url(p) for p in inputs]
        return
    single = inputs[0] if len(inputs) == 1 else None
    if single is None:
        yield inputs, [_shown(p) for p in inputs]
        return
    with spool(single) as path:
        yield [path], [_shown(single)]


def streamed_url(url: str) -> bool:
    """Whether the text reader streams ``url``: a document file, a prefix or a glob."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return (
        url.endswith("/")
        or any(c in name for c in "*?[")
        or split_suffix(name)[0].endswith(text_suffixes())
    )


def _shown(path: str) -> str:
    return "<stdin>" if path == "-" else path
