"""``embedcli.Embedding``: the tables as a value; ``embed`` gives the numbers ``embedcli embed``
writes for the same windows, and the book's tables for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import embedcli as ec
from embedcli.errors import InputError, UsageError

from conftest import SAMPLE, invoke

STORY = SAMPLE / "the-lighthouse.txt"


def test_random_tables_are_the_book_s():
    emb = ec.Embedding.random(vocab_size=6, dim=3, context_length=4, seed=123)
    torch.manual_seed(123)
    token, pos = torch.nn.Embedding(6, 3), torch.nn.Embedding(4, 3)
    assert torch.equal(emb.token, token.weight.detach()) and torch.equal(
        emb.pos, pos.weight.detach()
    )
    assert emb.token[0].tolist() == pytest.approx([0.3374, -0.1778, -0.1690], abs=1e-4)
    assert (emb.vocab_size, emb.dim, emb.context_length) == (6, 3, 4)
    ids = torch.tensor([[0, 1], [5, 2]])
    assert torch.equal(emb.embed(ids), (token(ids) + pos(torch.arange(2))).detach())


def test_embed_of_windows_equals_the_embed_command(tmp_path):
    out = tmp_path / "e.safetensors"
    args = ["embed", str(STORY), "-T", "4", "--stride", "4", "-B", "8", "--dim", "16"]
    assert invoke(*args, "--seed", "7", "-o", str(out), "-q").returncode == 0
    want = load_file(str(out))
    windows = ec.Tokens.from_text(STORY).windows(4, 4)
    emb = ec.Embedding.random(50257, 16, 4, seed=7)
    got = emb.embed(windows)
    n = want["embeddings"].shape[0]  # the command drops a last partial batch (--drop-last)
    assert np.array_equal(got[:n].numpy(), want["embeddings"])
    assert np.array_equal(emb.token.numpy(), want["token_embedding.weight"])


def test_a_checkpoint_s_tables_and_the_refusals(tmp_path):
    from safetensors.torch import save_file

    token, pos = torch.randn(10, 4), torch.randn(8, 4)
    save_file({"wte.weight": token, "wpe.weight": pos}, str(tmp_path / "model.safetensors"))
    emb = ec.Embedding.from_checkpoint(str(tmp_path / "model.safetensors"))
    assert torch.equal(emb.token, token) and torch.equal(emb.pos, pos)
    assert repr(emb) == "Embedding(vocab 10, dim 4, context 8)"
    with pytest.raises(InputError, match="outside the embedding table"):
        emb.embed([[1, 10]])
    with pytest.raises(UsageError, match="positional table of at least"):
        emb.embed(np.zeros((1, 9), np.int64))
    with pytest.raises(UsageError, match=r"\(N, T\) ids"):
        emb.embed([1, 2])
    assert emb.embed([[1, 2]], dtype="bfloat16").dtype == torch.bfloat16
