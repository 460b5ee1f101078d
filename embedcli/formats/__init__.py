"""Token files for trainers: nanoGPT, llm.c, Megatron-LM and NumPy, written and read back.

Each module is one format: a writer (registered for ``tokenize --to`` in
:data:`embedcli.outputs.TOKEN_FORMATS`) and a reader, registered here in the input registry, so
``batch``, ``embed`` and ``inspect`` take the trainers' files too.
"""

from __future__ import annotations

from ..inputs import register
from . import llmc, megatron, nanogpt, npy

READERS = [megatron.Reader(), llmc.Reader(), nanogpt.Reader(), npy.Reader()]
# Before the generic safetensors readers: a trainer's file is never safetensors.
for _reader in READERS:
    register(_reader, before="manifest")

# Loaders by format name, for the files a manifest lists: (path, encoding) -> TokenSource.
LOADERS = {
    nanogpt.NAME: nanogpt.load,
    llmc.NAME: lambda path, encoding: llmc.load(llmc.expand(path), encoding, logical=path),
    megatron.NAME: megatron.load,
    npy.NAME: npy.load,
}


def exists(fmt: str, path: str) -> bool:
    """Whether the files of ``path`` (a manifest entry in format ``fmt``) are there."""
    if fmt == llmc.NAME:
        return bool(llmc.expand(path))
    if fmt == megatron.NAME:
        return megatron.prefix_of(path) is not None
    import os

    return os.path.isfile(path)
