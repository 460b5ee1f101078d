"""The commands in-process through Typer's CliRunner: options, outputs, summaries, errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.numpy import load, load_file, save_file
from typer.testing import CliRunner

from embedcli import __version__
from embedcli.cli.app import app

from conftest import SAMPLE, assert_same_as_reference, imported_modules
from reference import reference_embeddings, reference_windows

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def test_version_and_help():
    assert invoke("--version").stdout.strip() == f"embedcli {__version__}"
    top = invoke("--help")
    assert top.exit_code == 0
    for command in ("tokenize", "batch", "embed", "inspect", "mix"):
        assert command in top.stdout
        page = invoke(command, "--help")
        assert (
            page.exit_code == 0
            and "Examples" in page.stdout
            and f"embedcli {command}" in page.stdout
        )


def test_tokenize_default_output_and_summary(tmp_path, monkeypatch, enc, story_text):
    monkeypatch.chdir(tmp_path)
    result = invoke("tokenize", str(SAMPLE / "the-lighthouse.txt"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # data only when asked
    assert "embedcli tokenize" in result.stderr and "documents" in result.stderr
    data = load_file(str(tmp_path / "the-lighthouse.tokens.safetensors"))
    assert data["ids"].tolist() == enc.encode(story_text, allowed_special={"<|endoftext|>"})
    assert data["doc_offsets"].tolist() == [0, len(data["ids"])]


def test_tokenize_stdin_to_stdout(enc):
    result = invoke("tokenize", "-", "-o", "-", "-q", input="Hello, world")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert load(result.stdout_bytes)["ids"].tolist() == enc.encode("Hello, world")


def test_stdin_needs_an_output_name():
    result = invoke("tokenize", input="text")
    assert result.exit_code == 2
    assert "name the output with -o" in result.stderr


def test_metadata_contract(tmp_path):
    out = tmp_path / "t.safetensors"
    assert invoke("tokenize", str(SAMPLE), "-o", str(out), "-q").exit_code == 0
    meta = json.loads(invoke("inspect", str(out), "--json", "--no-stats").stdout)["files"][0][
        "metadata"
    ]
    assert meta["embedcli"] == "tokens" and meta["encoding"] == "gpt2"
    assert meta["vocab_size"] == "50257" and meta["eot_id"] == "50256"
    assert meta["documents"] == "6" and json.loads(meta["sources"])[0].endswith("articles.jsonl")
    windows = tmp_path / "w.safetensors"
    assert invoke("batch", str(out), "-o", str(windows), "-T", "4", "-q").exit_code == 0
    meta2 = json.loads(invoke("inspect", str(windows), "--json", "--no-stats").stdout)["files"][0][
        "metadata"
    ]
    assert meta2["embedcli"] == "windows" and meta2["max_length"] == "4" and meta2["stride"] == "4"
    assert meta2["documents"] == "6"  # carried forward


@pytest.mark.parametrize(("t", "s", "b"), [(4, 4, 8), (4, 1, 2), (3, 5, 4)])
def test_batch_cli_matches_reference(tmp_path, enc, story_text, t, s, b):
    out = tmp_path / "w.safetensors"
    result = invoke(
        "batch",
        str(SAMPLE / "the-lighthouse.txt"),
        "-o",
        str(out),
        "-T",
        str(t),
        "--stride",
        str(s),
        "-B",
        str(b),
    )
    assert result.exit_code == 0, result.stderr
    ids = enc.encode(story_text, allowed_special={"<|endoftext|>"})
    want_x, want_y = reference_windows(ids, batch_size=b, max_length=t, stride=s)
    data = load_file(str(out))
    assert data["inputs"].dtype == np.int64
    assert np.array_equal(data["inputs"], want_x.numpy()) and np.array_equal(
        data["targets"], want_y.numpy()
    )
    assert "first window" in result.stderr


def test_embed_whole_pipeline_matches_reference(tmp_path, enc, story_text):
    out = tmp_path / "e.safetensors"
    result = invoke(
        "embed",
        str(SAMPLE / "the-lighthouse.txt"),
        "-o",
        str(out),
        "--dim",
        "256",
        "-T",
        "4",
        "--stride",
        "4",
        "-B",
        "8",
        "--seed",
        "123",
    )
    assert result.exit_code == 0, result.stderr
    ids = enc.encode(story_text, allowed_special={"<|endoftext|>"})
    want, tok, pos = reference_embeddings(
        ids, vocab_size=50257, dim=256, batch_size=8, max_length=4, stride=4, seed=123
    )
    assert_same_as_reference(out, want, tok, pos)
    assert "0.3374" in result.stderr  # first row of the table, printed as the seed prints it


def test_embed_seed_numbers_on_a_foreign_inputs_file(tmp_path):
    src = tmp_path / "ids.safetensors"
    save_file({"inputs": np.array([[2, 3, 5, 1]], dtype=np.int64)}, str(src))
    out = tmp_path / "e.safetensors"
    result = invoke(
        "embed",
        str(src),
        "-o",
        str(out),
        "--vocab-size",
        "6",
        "--dim",
        "3",
        "--seed",
        "123",
        "--pos",
        "none",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    data = load_file(str(out))
    torch.manual_seed(123)
    layer = torch.nn.Embedding(6, 3)
    assert np.allclose(data["token_embedding.weight"][0], [0.3374, -0.1778, -0.1690], atol=5e-5)
    assert np.array_equal(data["embeddings"][0], layer(torch.tensor([2, 3, 5, 1])).detach().numpy())
    # no embedcli metadata and no --vocab-size: say so
    again = invoke("embed", str(src), "-o", str(out), "--dim", "3")
    assert again.exit_code == 2 and "--vocab-size" in again.stderr


def test_embed_from_token_file_and_windows_file_agree(tmp_path):
    tokens, windows = tmp_path / "t.safetensors", tmp_path / "w.safetensors"
    e1, e2 = tmp_path / "e1.safetensors", tmp_path / "e2.safetensors"
    assert invoke("tokenize", str(SAMPLE), "-o", str(tokens), "-q").exit_code == 0
    assert (
        invoke("batch", str(tokens), "-o", str(windows), "-T", "8", "-B", "4", "-q").exit_code == 0
    )
    assert (
        invoke(
            "embed", str(tokens), "-o", str(e1), "-T", "8", "-B", "4", "-d", "16", "-q"
        ).exit_code
        == 0
    )
    assert invoke("embed", str(windows), "-o", str(e2), "-d", "16", "-q").exit_code == 0
    assert np.array_equal(load_file(str(e1))["embeddings"], load_file(str(e2))["embeddings"])
    clash = invoke("embed", str(windows), "-o", str(e2), "-T", "4")
    assert clash.exit_code == 2 and "already windowed" in clash.stderr


def test_embed_with_gpt2_weights_and_reduced_dtype(tmp_path):
    from safetensors.torch import save_file as save_torch

    wte, wpe = torch.randn(50257, 8), torch.randn(16, 8)
    weights = tmp_path / "model.safetensors"
    save_torch({"transformer.wte.weight": wte, "transformer.wpe.weight": wpe}, str(weights))
    out = tmp_path / "e.safetensors"
    result = invoke(
        "embed",
        str(SAMPLE / "the-lighthouse.txt"),
        "-o",
        str(out),
        "--weights",
        str(weights),
        "-T",
        "16",
        "--dtype",
        "bfloat16",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    from safetensors.torch import load_file as load_torch

    data = load_torch(str(out))
    assert data["embeddings"].dtype == torch.bfloat16 and data["embeddings"].shape[2] == 8
    assert torch.equal(data["token_embedding.weight"], wte.to(torch.bfloat16))
    too_long = invoke(
        "embed",
        str(SAMPLE / "the-lighthouse.txt"),
        "-o",
        str(out),
        "--weights",
        str(weights),
        "-T",
        "32",
    )
    assert too_long.exit_code == 2 and "positional table has 16 rows" in too_long.stderr
    wrong_dim = invoke(
        "embed",
        str(SAMPLE / "the-lighthouse.txt"),
        "-o",
        str(out),
        "--weights",
        str(weights),
        "-T",
        "4",
        "--dim",
        "9",
    )
    assert wrong_dim.exit_code == 2 and "--dim 9 differs" in wrong_dim.stderr


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "none"])
def test_embed_pos_kinds(tmp_path, pos):
    out = tmp_path / "e.safetensors"
    result = invoke(
        "embed",
        str(SAMPLE / "articles.jsonl"),
        "-o",
        str(out),
        "-d",
        "6",
        "-T",
        "4",
        "--pos",
        pos,
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    data = load_file(str(out))
    assert ("pos_embedding.weight" in data) == (pos != "none")
    assert data["embeddings"].shape[1:] == (4, 6)
    assert data["token_embedding.weight"].shape == (50257, 6)


def test_no_weights_and_cross_docs_and_shuffle(tmp_path):
    out = tmp_path / "e.safetensors"
    result = invoke(
        "embed",
        str(SAMPLE),
        "-o",
        str(out),
        "-d",
        "4",
        "-T",
        "4",
        "--no-weights",
        "--no-cross-docs",
        "--shuffle",
        "-B",
        "2",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    assert set(load_file(str(out))) == {"embeddings"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["tokenize", "missing.txt", "-o", "x.safetensors"], 1, "missing.txt: no such file"),
        (["batch", "SAMPLE", "-o", "x.safetensors", "-T", "0"], 2, "-T"),
        (["batch", "SAMPLE", "-o", "x.safetensors", "-T", "100000"], 1, "too few for one window"),
        (
            ["embed", "SAMPLE", "-o", "x.safetensors", "--device", "cuda:7"],
            1,
            "CUDA is not available",
        ),
        (["embed", "SAMPLE", "-o", "x.safetensors", "--device", "tpu"], 2, "unknown device"),
        (["inspect", "missing.safetensors"], 1, "no such file"),
        (["batch", "SAMPLE", "--encoding", "nope", "-o", "x.safetensors"], 2, "unknown encoding"),
        (["tokenize", "SAMPLE", "--special", "maybe", "-o", "x.safetensors"], 2, "maybe"),
    ],
)
def test_errors_are_one_line_with_exit_codes(tmp_path, monkeypatch, args, code, message):
    if not torch.cuda.is_available() or "cuda" not in args[-1]:
        monkeypatch.chdir(tmp_path)
        args = [str(SAMPLE / "the-lighthouse.txt") if a == "SAMPLE" else a for a in args]
        result = invoke(*args)
        assert result.exit_code == code, result.stderr
        assert message in result.stderr
        if code == 1:
            assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert not (tmp_path / "x.safetensors").exists()


def test_inspect_renders_lineage_and_decoded_windows(tmp_path):
    windows = tmp_path / "w.safetensors"
    assert (
        invoke(
            "batch", str(SAMPLE / "the-lighthouse.txt"), "-o", str(windows), "-T", "4", "-q"
        ).exit_code
        == 0
    )
    result = invoke("inspect", str(windows), "--preview", "1")
    assert result.exit_code == 0
    out = result.stdout
    assert "embedcli lineage (windows)" in out and "max length" in out
    assert "inputs[0]" in out and "'The lighthouse stood at'" in out
    assert re.search(r"tensor\(\[\[\s+464, 46371,", out)  # torch-style preview of the ids


@pytest.mark.parametrize(
    ("tensors", "args", "message"),
    [
        ({"ids": np.arange(10, dtype=np.float32)}, [], "'ids' must be integer ids, got F32"),
        ({"ids": np.arange(12, dtype=np.int64).reshape(3, 4)}, [], "ids must be 1-D"),
        ({"tokens": np.arange(12, dtype=np.int64)}, [], "no tensor named 'ids'"),
        ({"tokens": np.arange(12, dtype=np.int64)}, ["--key", "tokens", "-T", "20"], "too few"),
    ],
)
def test_batch_refuses_unusable_id_tensors(tmp_path, tensors, args, message):
    src, out = tmp_path / "ids.safetensors", tmp_path / "w.safetensors"
    save_file(tensors, str(src))
    result = invoke("batch", str(src), "-o", str(out), *args)
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_batch_reads_any_1d_integer_tensor_with_key(tmp_path):
    src, out = tmp_path / "ids.safetensors", tmp_path / "w.safetensors"
    save_file({"tokens": np.arange(20, dtype=np.uint16)}, str(src))
    result = invoke("batch", str(src), "-o", str(out), "--key", "tokens", "-T", "4", "-q")
    assert result.exit_code == 0, result.stderr
    data = load_file(str(out))
    assert data["inputs"][:, 0].tolist() == [0, 4, 8, 12]
    assert (data["targets"] == data["inputs"] + 1).all()


def test_embed_refuses_ids_outside_the_table(tmp_path):
    out = tmp_path / "e.safetensors"
    result = invoke(
        "embed",
        str(SAMPLE / "the-lighthouse.txt"),
        "-o",
        str(out),
        "-T",
        "4",
        "--vocab-size",
        "1000",
        "-d",
        "4",
    )
    assert result.exit_code == 1
    assert "outside the embedding table (vocab size 1,000;" in result.stderr
    assert not out.exists()


def test_batch_never_imports_torch(tmp_path):
    out = str(tmp_path / "w.safetensors")
    assert "torch" not in imported_modules("batch", str(SAMPLE), "-o", out, "-T", "4", "-q")
