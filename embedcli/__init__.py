"""embedcli: raw text to GPT-style token windows and embeddings, stored as safetensors.

The library API mirrors the commands::

    from embedcli import run_tokenize, run_batch, run_embed, inspect_file
    run_tokenize(["corpus.txt"], "corpus.tokens.safetensors")
    run_batch(["corpus.tokens.safetensors"], "corpus.windows.safetensors",
              WindowOptions(max_length=4, batch_size=8))
    run_embed(["corpus.windows.safetensors"], "corpus.embeddings.safetensors",
              EmbedOptions(dim=256, seed=123))

Each returns a typed result (``TokenizeResult``, ``BatchResult``, ``EmbedResult``) of numbers,
shapes and paths. Underneath are the pure pieces: ``resolve_sources`` and ``tokenize`` (text to
ids), ``plan_windows``/``gather``, ``random_tables``/``Embedder``, ``read_header``; the file
contract's keys live in ``embedcli.contract``. Names load lazily, so importing embedcli (and
running ``embedcli --help``) does not import torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "EmbedcliError": "errors",
    "UsageError": "errors",
    "InputError": "errors",
    "FormatError": "errors",
    "get_encoding": "encoding",
    "tokenize": "tokenizer",
    "split_text": "tokenizer",
    "MemorySink": "tokenizer",
    "TokenizeStats": "tokenizer",
    "Source": "text",
    "resolve_sources": "text",
    "shard_sources": "text",
    "plan_windows": "windows",
    "count_windows": "windows",
    "gather": "windows",
    "random_tables": "embedding",
    "sinusoidal_table": "embedding",
    "Embedder": "embedding",
    "resolve_device": "embedding",
    "load_weights": "embedding",
    "read_header": "store",
    "open_output": "outputs",
    "open_input": "inputs",
    "inspect_file": "inspection",
    "diff_files": "diff",
    "run_tokenize": "stages",
    "run_batch": "stages",
    "run_embed": "stages",
    "TokenizeOptions": "options",
    "WindowOptions": "options",
    "EmbedOptions": "options",
    "TokenizeResult": "results",
    "BatchResult": "results",
    "EmbedResult": "results",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedcli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
