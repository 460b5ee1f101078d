from __future__ import annotations

import numpy as np
import pytest
import torch

from embedcli.embedding.tables import (
    Embedder,
    check_id_range,
    load_weights,
    random_tables,
    resolve_device,
    sinusoidal_table,
)
from embedcli.errors import DeviceError, FormatError, InputError, UsageError
from embedcli.windows import gather, plan_windows

from reference import reference_embeddings


def test_seed_123_first_row():
    tok, _ = random_tables(6, 3, 4, seed=123)
    assert torch.allclose(tok[0], torch.tensor([0.3374, -0.1778, -0.1690]), atol=5e-5)
    torch.manual_seed(123)
    assert torch.equal(tok, torch.nn.Embedding(6, 3).weight.detach())


def test_tables_match_two_nn_embeddings_from_one_seed():
    tok, pos = random_tables(50257, 16, 7, seed=9)
    torch.manual_seed(9)
    assert torch.equal(tok, torch.nn.Embedding(50257, 16).weight.detach())
    assert torch.equal(pos, torch.nn.Embedding(7, 16).weight.detach())


def test_global_rng_untouched():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    random_tables(10, 4, 4, seed=1)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize(("t", "s", "b", "dim"), [(4, 4, 8, 256), (4, 1, 3, 5), (6, 9, 2, 3)])
def test_bitwise_equal_to_reference_pipeline(enc, story_text, t, s, b, dim):
    ids = enc.encode(story_text, allowed_special={"<|endoftext|>"})
    want, want_tok, want_pos = reference_embeddings(
        ids, vocab_size=enc.n_vocab, dim=dim, batch_size=b, max_length=t, stride=s, seed=123
    )
    tok, pos = random_tables(enc.n_vocab, dim, t, seed=123)
    assert torch.equal(tok, want_tok) and torch.equal(pos, want_pos)
    plan = plan_windows(len(ids), max_length=t, stride=s, batch_size=b)
    embedder = Embedder(tok, pos, device=torch.device("cpu"), dtype=torch.float32)
    ids_np = np.asarray(ids, dtype=np.int32)
    chunks = [
        embedder.embed(gather(ids_np, plan.starts[i : i + 5], t))
        for i in range(0, plan.n_windows, 5)
    ]
    got = torch.cat(chunks)
    assert got.shape == want.shape == (plan.n_windows, t, dim)
    assert torch.equal(got, want)  # bitwise, float32


def test_seed_shape_8_4_256(enc, story_text):
    ids = np.asarray(enc.encode(story_text), dtype=np.int64)
    plan = plan_windows(ids.size, max_length=4, stride=4, batch_size=8, num_batches=1)
    tok, pos = random_tables(50257, 256, 4, seed=123)
    out = Embedder(tok, pos, device=torch.device("cpu"), dtype=torch.float32).embed(
        gather(ids, plan.starts, 4)
    )
    assert out.shape == (8, 4, 256)


def test_pos_kinds():
    tok, none = random_tables(10, 4, 3, seed=0, pos="none")
    assert none is None
    _, sin = random_tables(10, 4, 3, seed=0, pos="sinusoidal")
    assert torch.equal(sin, sinusoidal_table(3, 4))
    # PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(...)
    assert torch.allclose(
        sin[1],
        torch.tensor([np.sin(1), np.cos(1), np.sin(0.01), np.cos(0.01)], dtype=torch.float32),
    )
    odd = sinusoidal_table(5, 7)
    assert odd.shape == (5, 7) and torch.isfinite(odd).all()
    ids = np.array([[1, 2, 3]])
    e = Embedder(tok, sin, device=torch.device("cpu"), dtype=torch.float32).embed(ids)
    assert torch.equal(e[0], tok[[1, 2, 3]] + sin)
    e_none = Embedder(tok, None, device=torch.device("cpu"), dtype=torch.float32).embed(ids)
    assert torch.equal(e_none[0], tok[[1, 2, 3]])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_is_tables_cast_then_added(dtype):
    tok, pos = random_tables(20, 8, 4, seed=3)
    ids = np.array([[1, 5, 7, 19]])
    out = Embedder(tok, pos, device=torch.device("cpu"), dtype=dtype).embed(ids)
    assert out.dtype == dtype
    assert torch.equal(out[0], tok.to(dtype)[[1, 5, 7, 19]] + pos.to(dtype))


def test_load_gpt2_style_weights(tmp_path):
    from safetensors.torch import save_file

    wte, wpe = torch.randn(50, 6), torch.randn(10, 6)
    for prefix in ("", "transformer."):
        path = tmp_path / f"gpt2{prefix}.safetensors"
        save_file(
            {
                f"{prefix}wte.weight": wte,
                f"{prefix}wpe.weight": wpe,
                f"{prefix}h.0.attn.bias": torch.zeros(3),
            },
            str(path),
        )
        loaded = load_weights(str(path))
        assert loaded.token_key == f"{prefix}wte.weight"
        assert torch.equal(loaded.token, wte) and torch.equal(loaded.pos, wpe)
    custom = tmp_path / "custom.safetensors"
    save_file({"emb": wte.half()}, str(custom))
    with pytest.raises(FormatError, match="no token embedding table found"):
        load_weights(str(custom))
    assert torch.equal(
        load_weights(str(custom), token_key="emb", want_pos=False).token, wte.half().float()
    )
    with pytest.raises(FormatError, match="no tensor 'nope'"):
        load_weights(str(custom), token_key="nope")


@pytest.mark.parametrize("bad", [[[0, 6]], [[-1, 2]]])
def test_ids_out_of_range_refused(bad):
    with pytest.raises(InputError, match="outside the embedding table"):
        check_id_range(np.array(bad), 6, where="x")
    check_id_range(np.array([[0, 5]]), 6, where="x")


def test_devices(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu:x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match="has 2 CUDA device"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_bitwise():
    tok, pos = random_tables(1000, 64, 8, seed=123)
    ids = np.random.default_rng(0).integers(0, 1000, size=(32, 8))
    cpu = Embedder(tok, pos, device=torch.device("cpu"), dtype=torch.float32).embed(ids)
    gpu = Embedder(tok, pos, device=torch.device("cuda"), dtype=torch.float32).embed(ids)
    assert gpu.device.type == "cpu" and torch.equal(cpu, gpu)


def test_unallocatable_table_is_a_clear_error():
    with pytest.raises(InputError, match="cannot allocate the embedding tables"):
        random_tables(50257, 10**9, 4, seed=1)
