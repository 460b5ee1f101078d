"""embedcli: raw text to GPT-style token windows and embeddings, stored as safetensors.

This module is the public Python API: the names below are stable, and everything else
(``embedcli.bpe``, ``embedcli.storage``...) is internal and may move. The API mirrors the
commands::

    from embedcli import run_tokenize, run_batch, run_embed, inspect_file
    from embedcli import WindowOptions, EmbedOptions
    run_tokenize(["corpus.txt"], "corpus.tokens.safetensors")
    run_batch(["corpus.tokens.safetensors"], "corpus.windows.safetensors",
              WindowOptions(max_length=4, batch_size=8))
    run_embed(["corpus.windows.safetensors"], "corpus.embeddings.safetensors",
              EmbedOptions(dim=256, seed=123))

Each ``run_*`` returns a typed result (``TokenizeResult``, ``BatchResult``, ``EmbedResult``,
``MixResult`` of ``run_mix``) of numbers, shapes and paths; ``plan_*`` returns what the run
would write (``--dry-run``). Every type a result or report holds (``TokenizeStats``,
``PlanFacts``, ``Header``, ``Histogram``...) is public here too.
``Tokenizer("gpt2")`` (or ``Tokenizer.from_file(path)``) is a tokenizer built once:
``encode``, ``encode_batch`` (one array per document), ``decode``; ``Tokens`` is ids of
documents as a value (``Tokens.open(path)``, ``.from_text``, ``.from_ids``; ``save`` in any
format, ``windows`` the windows ``batch`` makes: a ``Windows``, with ``save``); ``Embedding.random(...)`` or ``.from_checkpoint(path)``
holds the tables, and ``embed(windows)`` gives ``token[ids] + pos[:T]`` (an ``Embedded``:
``.tensor``, or ``.save(path)`` streamed); ``encode(texts)`` gives the
ids of strings in memory joined as ``tokenize`` joins documents, ``create_dataloader``/``TokenWindows``
feed a training loop from token files. Errors are :class:`EmbedcliError` and its subclasses.

Names load lazily, so ``import embedcli`` (and ``embedcli --help``) imports neither numpy nor
torch; the ``TYPE_CHECKING`` block below gives type checkers and editors the same names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from embedcli.version import __version__

# name -> the module that defines it
_EXPORTS = {
    # the library's verbs
    "run_tokenize": "embedcli.stages.tokenize",
    "run_batch": "embedcli.stages.batch",
    "run_embed": "embedcli.stages.embed",
    "plan_tokenize": "embedcli.stages.tokenize",
    "plan_batch": "embedcli.stages.batch",
    "plan_embed": "embedcli.stages.embed",
    "run_mix": "embedcli.stages.mix",
    "inspect_file": "embedcli.inspection.files",
    "diff_files": "embedcli.inspection.diff",
    "encode": "embedcli.bpe.tokenizer",
    "Tokenizer": "embedcli.bpe.value",
    "Tokens": "embedcli.stages.tokens",
    "Windows": "embedcli.stages.windows_value",
    "Embedding": "embedcli.stages.embedding_value",
    "Embedded": "embedcli.stages.embedding_value",
    # training
    "create_dataloader": "embedcli.data",
    "TokenWindows": "embedcli.data",
    "TokenStream": "embedcli.data",
    "WindowLoader": "embedcli.data",
    "Cache": "embedcli.data",
    # options and results
    "TokenizeOptions": "embedcli.options",
    "WindowOptions": "embedcli.options",
    "EmbedOptions": "embedcli.options",
    "TokenizeResult": "embedcli.stages.results",
    "BatchResult": "embedcli.stages.results",
    "EmbedResult": "embedcli.stages.results",
    "PlanResult": "embedcli.stages.results",
    "MixOptions": "embedcli.stages.mix",
    "MixResult": "embedcli.stages.results",
    "FileReport": "embedcli.inspection.report",
    "DiffReport": "embedcli.inspection.diff",
    # what the results and reports hold (fields of the above, public so a caller can name them)
    "TokenizeStats": "embedcli.bpe.pieces",
    "Origins": "embedcli.bpe.pieces",
    "PlanFacts": "embedcli.windows",
    "Written": "embedcli.stages.results",
    "FirstWindow": "embedcli.stages.results",
    "MixSource": "embedcli.stages.results",
    "Header": "embedcli.storage.store",
    "TensorInfo": "embedcli.storage.store",
    "Histogram": "embedcli.inspection.stats",
    "CorpusStats": "embedcli.inspection.stats",
    "DocLengths": "embedcli.inspection.stats",
    "TopToken": "embedcli.inspection.stats",
    "WindowStats": "embedcli.inspection.stats",
    "RowNorms": "embedcli.inspection.stats",
    "Neighbors": "embedcli.inspection.stats",
    "Neighbor": "embedcli.inspection.stats",
    "TensorReport": "embedcli.inspection.report",
    "Stats": "embedcli.inspection.report",
    "Decoded": "embedcli.inspection.report",
    "Part": "embedcli.inspection.report",
    "TensorDiff": "embedcli.inspection.diff",
    "Layout": "embedcli.inspection.diff",
    # errors
    "EmbedcliError": "embedcli.errors",
    "UsageError": "embedcli.errors",
    "InputError": "embedcli.errors",
    "FormatError": "embedcli.errors",
    "OutputError": "embedcli.errors",
    "EncodingLoadError": "embedcli.errors",
    "DeviceError": "embedcli.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from embedcli.bpe.pieces import Origins as Origins
    from embedcli.bpe.pieces import TokenizeStats as TokenizeStats
    from embedcli.bpe.tokenizer import encode as encode
    from embedcli.bpe.value import Tokenizer as Tokenizer
    from embedcli.data import Cache as Cache
    from embedcli.data import TokenStream as TokenStream
    from embedcli.data import TokenWindows as TokenWindows
    from embedcli.data import WindowLoader as WindowLoader
    from embedcli.data import create_dataloader as create_dataloader
    from embedcli.errors import DeviceError as DeviceError
    from embedcli.errors import EmbedcliError as EmbedcliError
    from embedcli.errors import EncodingLoadError as EncodingLoadError
    from embedcli.errors import FormatError as FormatError
    from embedcli.errors import InputError as InputError
    from embedcli.errors import OutputError as OutputError
    from embedcli.errors import UsageError as UsageError
    from embedcli.inspection.diff import DiffReport as DiffReport
    from embedcli.inspection.diff import Layout as Layout
    from embedcli.inspection.diff import TensorDiff as TensorDiff
    from embedcli.inspection.diff import diff_files as diff_files
    from embedcli.inspection.files import inspect_file as inspect_file
    from embedcli.inspection.report import Decoded as Decoded
    from embedcli.inspection.report import FileReport as FileReport
    from embedcli.inspection.report import Part as Part
    from embedcli.inspection.report import Stats as Stats
    from embedcli.inspection.report import TensorReport as TensorReport
    from embedcli.inspection.stats import CorpusStats as CorpusStats
    from embedcli.inspection.stats import DocLengths as DocLengths
    from embedcli.inspection.stats import Histogram as Histogram
    from embedcli.inspection.stats import Neighbor as Neighbor
    from embedcli.inspection.stats import Neighbors as Neighbors
    from embedcli.inspection.stats import RowNorms as RowNorms
    from embedcli.inspection.stats import TopToken as TopToken
    from embedcli.inspection.stats import WindowStats as WindowStats
    from embedcli.options import EmbedOptions as EmbedOptions
    from embedcli.options import TokenizeOptions as TokenizeOptions
    from embedcli.options import WindowOptions as WindowOptions
    from embedcli.stages.batch import plan_batch as plan_batch
    from embedcli.stages.batch import run_batch as run_batch
    from embedcli.stages.embed import plan_embed as plan_embed
    from embedcli.stages.embed import run_embed as run_embed
    from embedcli.stages.embedding_value import Embedded as Embedded
    from embedcli.stages.embedding_value import Embedding as Embedding
    from embedcli.stages.mix import MixOptions as MixOptions
    from embedcli.stages.mix import run_mix as run_mix
    from embedcli.stages.results import BatchResult as BatchResult
    from embedcli.stages.results import EmbedResult as EmbedResult
    from embedcli.stages.results import FirstWindow as FirstWindow
    from embedcli.stages.results import MixResult as MixResult
    from embedcli.stages.results import MixSource as MixSource
    from embedcli.stages.results import PlanResult as PlanResult
    from embedcli.stages.results import TokenizeResult as TokenizeResult
    from embedcli.stages.results import Written as Written
    from embedcli.stages.tokenize import plan_tokenize as plan_tokenize
    from embedcli.stages.tokenize import run_tokenize as run_tokenize
    from embedcli.stages.tokens import Tokens as Tokens
    from embedcli.stages.windows_value import Windows as Windows
    from embedcli.storage.store import Header as Header
    from embedcli.storage.store import TensorInfo as TensorInfo
    from embedcli.windows import PlanFacts as PlanFacts


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedcli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
