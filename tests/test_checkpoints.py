"""Embedding tables from real checkpoints: Hugging Face's sharded layout, a directory, one file;
checked against transformers' own embedding of the same ids."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file

from embedcli import EmbedOptions, WindowOptions, run_embed
from embedcli.embedding.checkpoints import open_checkpoint
from embedcli.errors import FormatError, InputError

from conftest import invoke

VOCAB, DIM, T = 1000, 64, 8


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny random Llama in bf16, saved by transformers in several shards."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("llama")
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=DIM,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path, max_shard_size="100KB")
    shards = {v for v in json.loads((path / "model.safetensors.index.json").read_text())[
        "weight_map"].values()}  # fmt: skip
    assert len(shards) > 1
    return path, model


@pytest.fixture()
def ids_file(tmp_path):
    ids = np.random.default_rng(1).integers(0, VOCAB, size=T * 6 + 1, dtype=np.int32)
    path = tmp_path / "ids.safetensors"
    save_file({"ids": ids}, str(path))
    return path, ids


def test_sharded_llama_equals_transformers_embedding(llama, ids_file, tmp_path):
    path, model = llama
    ids_path, ids = ids_file
    out = tmp_path / "e.safetensors"
    result = run_embed(
        [str(ids_path)], str(out), EmbedOptions(weights=str(path)), WindowOptions(max_length=T)
    )
    got = load_file(str(out))["embeddings"]
    windows = torch.from_numpy(ids[: T * 6].reshape(6, T).astype(np.int64))
    want = model.get_input_embeddings()(windows)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)  # bitwise, dtype kept
    assert result.pos == "none" and any("no position table" in n for n in result.notes)


def test_only_the_shard_holding_the_table_is_needed(llama, ids_file, tmp_path):
    path, _ = llama
    partial = tmp_path / "partial"
    partial.mkdir()
    index = json.loads((path / "model.safetensors.index.json").read_text())
    holder = index["weight_map"]["model.embed_tokens.weight"]
    for name in ("model.safetensors.index.json", holder):
        (partial / name).write_bytes((path / name).read_bytes())
    ids_path, _ = ids_file
    out = tmp_path / "e.safetensors"
    run_embed(
        [str(ids_path)], str(out), EmbedOptions(weights=str(partial)), WindowOptions(max_length=T)
    )
    assert load_file(str(out))["embeddings"].shape == (6, T, DIM)
    os.remove(partial / holder)
    with pytest.raises(InputError, match=f"is in {holder}, which is not there"):
        open_checkpoint(str(partial)).read("model.embed_tokens.weight")


def test_checkpoint_mistakes_are_one_line(llama, ids_file, tmp_path):
    path, _ = llama
    ids_path, _ = ids_file
    with pytest.raises(FormatError, match="looks like embeddings|look like embeddings"):
        open_checkpoint(str(path)).require_token_key("lm_head.embed")
    index = path / "model.safetensors.index.json"
    proc = invoke("embed", str(ids_path), "-T", str(T), "--weights", str(index), "--token-key",
                  "nope", "-o", str(tmp_path / "x.safetensors"))  # fmt: skip
    assert proc.returncode == 1 and b"model.embed_tokens.weight" in proc.stderr
    assert not (tmp_path / "x.safetensors").exists()
    # The ids of a larger vocabulary (GPT-2's) cannot be looked up in a 1,000-row table.
    story = invoke("embed", "sample_data/the-lighthouse.txt", "-T", "4", "--weights", str(path),
                   "-o", str(tmp_path / "y.safetensors"), cwd=os.path.dirname(os.path.dirname(__file__)))  # fmt: skip
    assert story.returncode == 1 and b"1,000 rows" in story.stderr and b"50,257" in story.stderr


def test_dtype_and_positions_can_still_be_asked_for(llama, ids_file, tmp_path):
    path, model = llama
    ids_path, ids = ids_file
    out = tmp_path / "e.safetensors"
    opts = EmbedOptions(weights=str(path), dtype="float32", pos="sinusoidal")
    result = run_embed([str(ids_path)], str(out), opts, WindowOptions(max_length=T))
    got = load_file(str(out))["embeddings"]
    assert got.dtype == torch.float32 and result.pos == "sinusoidal" and not result.notes


def test_gpt2_checkpoint_adds_its_learned_positions(ids_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=DIM, n_layer=1, n_head=2, n_positions=T
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(tmp_path / "gpt2")
    ids_path, ids = ids_file
    out = tmp_path / "e.safetensors"
    result = run_embed(
        [str(ids_path)], str(out), EmbedOptions(weights=str(tmp_path / "gpt2")),
        WindowOptions(max_length=T),
    )  # fmt: skip
    windows = torch.from_numpy(ids[: T * 6].reshape(6, T).astype(np.int64))
    want = model.transformer.wte(windows) + model.transformer.wpe(torch.arange(T))
    got = load_file(str(out))["embeddings"]
    assert result.pos == "learned" and got.dtype == torch.float32 and torch.equal(got, want)
