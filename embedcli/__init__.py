"""embedcli: raw text to GPT-style token windows and embeddings, stored as safetensors.

The library API mirrors the commands::

    from embedcli import run_tokenize, run_batch, run_embed, inspect_file
    run_tokenize(["corpus.txt"], "corpus.tokens.safetensors")
    run_batch(["corpus.tokens.safetensors"], "corpus.windows.safetensors",
              WindowOptions(max_length=4, batch_size=8))
    run_embed(["corpus.windows.safetensors"], "corpus.embeddings.safetensors",
              EmbedOptions(dim=256, seed=123))

and the pure pieces underneath: ``get_encoding``, ``tokenize``, ``plan_windows``/``gather``,
``random_tables``/``Embedder``, ``read_header``. Names load lazily, so importing embedcli (and
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
    "plan_windows": "windows",
    "count_windows": "windows",
    "gather": "windows",
    "random_tables": "embedding",
    "sinusoidal_table": "embedding",
    "Embedder": "embedding",
    "resolve_device": "embedding",
    "load_weights": "embedding",
    "read_header": "store",
    "open_output": "store",
    "inspect_file": "inspection",
    "diff_files": "inspection",
    "run_tokenize": "stages",
    "run_batch": "stages",
    "run_embed": "stages",
    "TokenizeOptions": "stages",
    "WindowOptions": "stages",
    "EmbedOptions": "stages",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedcli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
