"""Token files, written and read back: embedcli's safetensors and the trainers' formats
(nanoGPT, llm.c, Megatron-LM, NumPy).

Each module is one format and ends with its :class:`~embedcli.formats.base.TokenFormat`;
:data:`TOKEN_FORMATS` lists them all, in ``--to``'s order. A new format is one module plus one
entry here: ``tokenize --to``, the input readers (``batch``, ``embed``, ``inspect``) and shard
manifests all read this list.
"""

from __future__ import annotations

from embedcli.errors import UsageError
from embedcli.formats.base import TokenFormat, TokenSource
from embedcli.formats.llmc import LLMC
from embedcli.formats.megatron import MEGATRON
from embedcli.formats.nanogpt import NANOGPT
from embedcli.formats.npy import NPY
from embedcli.formats.safetensors import SAFETENSORS

__all__ = ["TOKEN_FORMATS", "TRAINER_FORMATS", "TokenFormat", "TokenSource", "token_format"]

TOKEN_FORMATS: dict[str, TokenFormat] = {
    f.name: f for f in (SAFETENSORS, NANOGPT, LLMC, MEGATRON, NPY)
}
# The formats whose files are recognised by their own reader, asked in this order (a Megatron
# prefix and an llm.c magic number are checked before a nanoGPT .bin, which has neither).
TRAINER_FORMATS: tuple[TokenFormat, ...] = (MEGATRON, LLMC, NANOGPT, NPY)


def token_format(name: str) -> TokenFormat:
    try:
        return TOKEN_FORMATS[name]
    except KeyError:
        raise UsageError(
            f"unknown token format {name!r}; use one of {', '.join(TOKEN_FORMATS)}"
        ) from None
