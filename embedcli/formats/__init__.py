"""Token files, written and read back: embedcli's safetensors and the trainers' formats
(nanoGPT, llm.c, Megatron-LM, NumPy).

Each module is one format and ends with its :class:`~embedcli.formats.base.TokenFormat`;
:data:`TOKEN_FORMATS` lists them all, in ``--to``'s order. A new format is one module plus one
entry here: ``tokenize --to``, the input readers (``batch``, ``embed``, ``inspect``) and shard
manifests all read this list.
"""

from __future__ import annotations

import os

from embedcli.errors import UsageError
from embedcli.formats.base import TokenFormat, TokenSource
from embedcli.formats.llmc import LLMC
from embedcli.formats.megatron import MEGATRON
from embedcli.formats.nanogpt import NANOGPT
from embedcli.formats.npy import NPY
from embedcli.formats.safetensors import SAFETENSORS
from embedcli.storage.manifest import older_shards
from embedcli.storage.outputs import stem_output

__all__ = [
    "TOKEN_FORMATS",
    "TRAINER_FORMATS",
    "TokenFormat",
    "TokenSource",
    "default_token_output",
    "format_for",
    "output_files",
    "stale_shards",
    "token_format",
]

TOKEN_FORMATS: dict[str, TokenFormat] = {
    f.name: f for f in (SAFETENSORS, NANOGPT, LLMC, MEGATRON, NPY)
}
# The formats whose files are recognised by their own reader, asked in this order (a Megatron
# prefix and an llm.c magic number are checked before a nanoGPT .bin, which has neither).
TRAINER_FORMATS: tuple[TokenFormat, ...] = (MEGATRON, LLMC, NANOGPT, NPY)


# What an output's name says about its content: a name ending so is one format's file.
_BY_SUFFIX = {".safetensors": SAFETENSORS, ".npy": NPY, ".idx": MEGATRON}
_AMBIGUOUS = {".bin": (NANOGPT, LLMC, MEGATRON)}


def format_for(to: str | None, output: str | None) -> TokenFormat:
    """The format ``tokenize`` writes: ``to`` when given, else the one ``output``'s suffix
    names (``x.npy``: npy), else embedcli's safetensors. A name whose suffix would lie about
    the content (``-o train.bin`` without ``--to``, ``-o ids.npy --to nanogpt``) is refused.

    Example:
        >>> format_for(None, "ids.npy").name, format_for("llmc", "c.bin").name
        ('npy', 'llmc')
    """
    name = os.path.basename(output) if output and output != "-" else ""
    suffix = next((s for s in (*_BY_SUFFIX, *_AMBIGUOUS) if name.endswith(s)), None)
    if to is None:
        if suffix in _AMBIGUOUS:
            choices = " or ".join(f"--to {f.name}" for f in _AMBIGUOUS[suffix])
            raise UsageError(
                f"-o {output}: a {suffix} file could be several formats; say {choices}"
            )
        return _BY_SUFFIX.get(suffix, SAFETENSORS) if suffix else SAFETENSORS
    fmt = token_format(to)
    if suffix is None:
        return fmt
    named = _AMBIGUOUS[suffix] if suffix in _AMBIGUOUS else (_BY_SUFFIX[suffix],)
    if fmt not in named:
        stem = output[: -len(suffix)] if output else ""
        raise UsageError(
            f"-o {output} names a {' or '.join(f.name for f in named)} file, but --to "
            f"{fmt.name} writes {fmt.name}'s; name it {stem}{fmt.default_name} (or drop --to)"
        )
    return fmt


def default_token_output(inputs: list[str], fmt: TokenFormat) -> str:
    """The output ``tokenize`` names when no ``-o`` is given: the input's stem and the
    format's own ending (``notes.txt`` -> ``notes.tokens.safetensors``, ``notes.bin`` for
    nanoGPT and llm.c, ``notes_text_document`` for Megatron, ``notes.tokens.npy``)."""
    return stem_output(inputs, fmt.default_name)


def token_format(name: str) -> TokenFormat:
    try:
        return TOKEN_FORMATS[name]
    except KeyError:
        raise UsageError(
            f"unknown token format {name!r}; use one of {', '.join(TOKEN_FORMATS)}"
        ) from None


def output_files(path: str, fmt: TokenFormat) -> list[str]:
    """The files one token output ``path`` of ``fmt`` stands for that are there: its data files
    (a Megatron prefix's ``.bin`` and ``.idx``), its sidecar and its provenance file."""
    from embedcli.formats.base import sidecar_path
    from embedcli.formats.provenance import provenance_path

    found = [*fmt.files([path]), sidecar_path(path), provenance_path(path)]
    return [p for p in dict.fromkeys(found) if os.path.isfile(p)]


def stale_shards(where: str, manifest: dict, inputs: list[str]) -> list[str]:
    """Every file of the shards the older manifest at ``where`` lists and ``manifest`` does
    not, in the older manifest's format, sidecars and provenance included (inputs never)."""

    def expand(shard: str, name: str) -> list[str]:
        fmt = TOKEN_FORMATS.get(name)
        return output_files(shard, fmt) if fmt else [shard]

    return older_shards(where, manifest, inputs=inputs, expand=expand)
