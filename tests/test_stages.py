"""The stages as library calls, with chunks small enough that every streaming path is taken."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedcli import EmbedOptions, WindowOptions, run_batch, run_embed, run_tokenize

from conftest import SAMPLE, assert_same_as_reference
from reference import reference_embeddings, reference_windows

STORY = str(SAMPLE / "the-lighthouse.txt")


@pytest.fixture
def tiny_chunks():
    return 3000  # chunk_bytes: a few windows per chunk, so many chunks


def test_embed_streams_many_chunks_bitwise(tmp_path, enc, story_text, tiny_chunks):
    out = tmp_path / "e.safetensors"
    run_embed(
        [STORY],
        str(out),
        EmbedOptions(dim=16, seed=5),
        WindowOptions(max_length=5, stride=3, batch_size=4),
        chunk_bytes=tiny_chunks,
    )
    ids = enc.encode(story_text, allowed_special={"<|endoftext|>"})
    want, tok, pos = reference_embeddings(
        ids, vocab_size=50257, dim=16, batch_size=4, max_length=5, stride=3, seed=5
    )
    assert_same_as_reference(out, want, tok, pos)


def test_batch_streams_many_chunks(tmp_path, enc, story_text, tiny_chunks):
    out = tmp_path / "w.safetensors"
    run_batch(
        [STORY],
        str(out),
        WindowOptions(max_length=7, stride=2, batch_size=3, dtype="int32"),
        chunk_bytes=tiny_chunks,
    )
    ids = enc.encode(story_text, allowed_special={"<|endoftext|>"})
    want_x, want_y = reference_windows(ids, batch_size=3, max_length=7, stride=2)
    data = load_file(str(out))
    assert data["inputs"].dtype == np.int32
    assert np.array_equal(data["inputs"], want_x.numpy()) and np.array_equal(
        data["targets"], want_y.numpy()
    )


def test_tokenize_then_embed_from_token_file_with_keep_last(tmp_path, tiny_chunks):
    tokens, out = tmp_path / "t.safetensors", tmp_path / "e.safetensors"
    run_tokenize([str(SAMPLE)], str(tokens))
    run_embed(
        [str(tokens)],
        str(out),
        EmbedOptions(dim=4, pos="sinusoidal"),
        WindowOptions(max_length=4, batch_size=7, drop_last=False),
        chunk_bytes=tiny_chunks,
    )
    data = load_file(str(tokens))
    ids, n = data["ids"], len(range(0, data["ids"].size - 4, 4))
    emb = load_file(str(out))
    assert emb["embeddings"].shape == (n, 4, 4)  # all windows, last partial batch kept
    from embedcli.embedding.tables import random_tables

    tok, sin = random_tables(50257, 4, 4, seed=123, pos="sinusoidal")
    last = ids[(n - 1) * 4 : (n - 1) * 4 + 4]
    assert np.array_equal(emb["embeddings"][-1], (tok[last] + sin).numpy())
