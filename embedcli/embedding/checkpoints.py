"""Embedding tables from model checkpoints: one ``.safetensors`` file, Hugging Face's sharded
layout (``model.safetensors.index.json`` naming ``model-0000i-of-0000N.safetensors``), or a
checkpoint directory holding either.

Only the shard that holds a table is opened, through safetensors' memory map, and only that
tensor is read: a 16 GB checkpoint costs the table's bytes, not the checkpoint's. Tables keep
their dtype (bf16 stays bf16) until the embedder casts them to the output's.

Example:
    >>> ckpt = open_checkpoint("Llama-3.2-1B/")                          # doctest: +SKIP
    >>> ckpt.find(None, TOKEN_KEYS, "token")                              # doctest: +SKIP
    'model.embed_tokens.weight'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedcli.errors import FormatError, InputError

if TYPE_CHECKING:
    import torch

# The token table's usual names, most common first: GPT-2 (HF and nanoGPT), Llama/Mistral/Qwen/
# Gemma (HF), Llama (Meta's own), GPT-NeoX/Pythia, BLOOM, OPT, BERT-style, embedcli's own.
TOKEN_KEYS = (
    "wte.weight",
    "transformer.wte.weight",
    "model.embed_tokens.weight",
    "embed_tokens.weight",
    "tok_embeddings.weight",
    "tok_emb.weight",
    "gpt_neox.embed_in.weight",
    "transformer.word_embeddings.weight",
    "model.decoder.embed_tokens.weight",
    "embeddings.word_embeddings.weight",
    "token_embedding.weight",
)
# Learned position tables; RoPE models (Llama, Mistral, Qwen, Gemma...) have none.
POS_KEYS = (
    "wpe.weight",
    "transformer.wpe.weight",
    "pos_emb.weight",
    "embeddings.position_embeddings.weight",
    "pos_embedding.weight",
)
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


@dataclass
class Checkpoint:
    """Where each tensor of a checkpoint lives (tensor name -> file)."""

    path: str  # as given
    weight_map: dict[str, str]

    def find(self, explicit: str | None, candidates: tuple[str, ...], what: str) -> str | None:
        """``explicit`` (which must exist), else the first of ``candidates`` present."""
        if explicit is not None:
            if explicit not in self.weight_map:
                raise FormatError(
                    f"{self.path}: no tensor {explicit!r} for the {what} table{self._looks_like()}"
                )
            return explicit
        return next((k for k in candidates if k in self.weight_map), None)

    def require_token_key(self, explicit: str | None) -> str:
        name = self.find(explicit, TOKEN_KEYS, "token")
        if name is None:
            raise FormatError(
                f"{self.path}: no token embedding table found{self._looks_like()}; "
                "name it with --token-key"
            )
        return name

    def dtype(self, name: str) -> str:
        """The safetensors dtype of ``name`` (``BF16``, ``F32``...), from its shard's header."""
        from embedcli.storage.store import read_header

        return read_header(self._shard(name)).tensor(name).dtype

    def read(self, name: str) -> torch.Tensor:
        """One tensor, read from the one shard that holds it (memory-mapped)."""
        from safetensors import safe_open

        with safe_open(self._shard(name), framework="pt") as f:
            return f.get_tensor(name)

    def _shard(self, name: str) -> str:
        """The file holding ``name``; only the shards a run needs must be there."""
        shard = self.weight_map[name]
        if not os.path.isfile(shard):
            raise InputError(
                f"{self.path}: {name!r} is in {os.path.basename(shard)}, which is not there"
            )
        return shard

    def _looks_like(self) -> str:
        """The tensors whose names look like embeddings, for the message."""
        words = ("embed", "wte", "wpe", "tok_emb", "word_emb")
        found = sorted(k for k in self.weight_map if any(w in k for w in words))
        if not found:
            return f" ({len(self.weight_map):,} tensors, none named like an embedding)"
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        return f" (tensors that look like embeddings: {shown})"


def open_checkpoint(path: str) -> Checkpoint:
    """A ``.safetensors`` file, a ``*.index.json``, or a directory holding one of them."""
    if os.path.isdir(path):
        for name in (INDEX_NAME, SINGLE_NAME):
            if os.path.isfile(os.path.join(path, name)):
                return _open(os.path.join(path, name), shown=path)
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if len(files) == 1:
            return _open(os.path.join(path, files[0]), shown=path)
        what = f"{len(files)} .safetensors files and" if files else "no .safetensors file and"
        raise InputError(f"{path}: {what} no {INDEX_NAME} to say which holds what")
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    return _open(path, shown=path)


def _open(path: str, *, shown: str) -> Checkpoint:
    if path.endswith(".json"):
        return _open_index(path, shown)
    from embedcli.storage.store import read_header

    header = read_header(path)
    return Checkpoint(shown, {t.name: path for t in header.tensors})


def _open_index(path: str, shown: str) -> Checkpoint:
    """Hugging Face's index: ``{"metadata": ..., "weight_map": {tensor: shard file}}``."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        mapping = doc["weight_map"]
        if not isinstance(mapping, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise FormatError(
            f"{path}: not a checkpoint index (no weight_map of tensor -> file)"
        ) from None
    base = os.path.dirname(path)
    weight_map = {str(k): os.path.join(base, str(v)) for k, v in mapping.items()}
    return Checkpoint(shown, weight_map)
