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
    assert torch.equal(emb.embed(ids).tensor, (token(ids) + pos(torch.arange(2))).detach())


def test_embed_of_windows_equals_the_embed_command(tmp_path):
    out = tmp_path / "e.safetensors"
    args = ["embed", str(STORY), "-T", "4", "--stride", "4", "-B", "8", "--dim", "16"]
    assert invoke(*args, "--seed", "7", "-o", str(out), "-q").returncode == 0
    want = load_file(str(out))
    windows = ec.Tokens.from_text(STORY).windows(4, 4, batch_size=8)  # as -B 8: 152 of 154
    emb = ec.Embedding.random(50257, 16, 4, seed=7)
    got = emb.embed(windows)
    assert got.shape == want["embeddings"].shape and len(got) == got.shape[0]
    assert np.array_equal(got.tensor.numpy(), want["embeddings"])
    assert np.array_equal(emb.token.numpy(), want["token_embedding.weight"])


@pytest.mark.parametrize(
    "args, pos, dtype",
    [
        (["-T", "4", "--stride", "4", "-B", "8", "--dim", "16", "--seed", "7"], "learned", None),
        (["-T", "8", "-B", "2", "--dim", "8", "--pos", "sinusoidal", "--dtype", "bfloat16"],
         "sinusoidal", "bfloat16"),
        (["-T", "4", "-B", "4", "--dim", "8", "--pos", "none", "--shuffle", "--no-weights"],
         "none", None),
    ],
)  # fmt: skip
def test_saved_embeddings_are_the_embed_command_s_bytes(tmp_path, args, pos, dtype):
    """``Embedding.random(...).embed(windows).save(path)``: the file ``embedcli embed`` writes
    for the same token file and options, byte for byte, computed a chunk at a time."""
    tokens, out = tmp_path / "t.tokens.safetensors", tmp_path / "e.safetensors"
    assert invoke("tokenize", str(STORY), "-o", str(tokens), "-q").returncode == 0
    assert invoke("embed", str(tokens), *args, "-o", str(out), "-q").returncode == 0
    flags = {a: b for a, b in zip(args, [*args[1:], ""], strict=True) if a.startswith("-")}
    t, dim = int(flags["-T"]), int(flags["--dim"])
    windows = ec.Tokens.open(tokens).windows(
        t, int(flags.get("--stride", t)), batch_size=int(flags["-B"]),
        shuffle="--shuffle" in args,
    )  # fmt: skip
    emb = ec.Embedding.random(50257, dim, t, seed=int(flags.get("--seed", 123)), pos=pos)
    embedded = emb.embed(windows, dtype=dtype)
    saved = tmp_path / "v.safetensors"
    assert embedded.save(saved, save_weights="--no-weights" not in args) == [str(saved)]
    assert saved.read_bytes() == out.read_bytes()
    from safetensors.torch import load_file as load_tensors

    assert torch.equal(embedded.tensor, load_tensors(str(out))["embeddings"])  # in memory too


def test_embeddings_of_ids_in_memory_saved_and_shown():
    emb = ec.Embedding.random(vocab_size=6, dim=3, context_length=4, seed=123)
    embedded = emb.embed([[0, 1], [5, 2]])
    assert repr(embedded) == "Embedded(2 windows of 2 ids, dim 3, torch.float32, on cpu)"
    assert embedded.tensor is embedded.tensor  # computed once
    windows = ec.Tokens.from_ids(np.arange(10)).windows(4)  # ids past the table's 6 rows
    with pytest.raises(InputError, match="outside the embedding table"):
        _ = emb.embed(windows).tensor


def test_embeddings_of_an_array_saved_are_the_embed_command_s_for_that_windows_file(tmp_path):
    from safetensors.numpy import save_file

    ids = np.array([[0, 1, 2, 3], [5, 4, 3, 2]], np.int64)
    save_file({"inputs": ids, "targets": ids}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "e.safetensors"
    args = ["embed", str(tmp_path / "w.safetensors"), "--vocab-size", "6", "--dim", "3"]
    assert invoke(*args, "-o", str(out), "-q").returncode == 0
    emb = ec.Embedding.random(vocab_size=6, dim=3, context_length=4, seed=123)
    emb.embed(ids).save(tmp_path / "v.safetensors")
    got, want = load_file(str(tmp_path / "v.safetensors")), load_file(str(out))
    assert all(np.array_equal(got[k], want[k]) for k in want) and got.keys() == want.keys()


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
    assert emb.embed([[1, 2]], dtype="bfloat16").tensor.dtype == torch.bfloat16
