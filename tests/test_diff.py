"""inspect --diff: split outputs through their index, --tensor honoured, other options refused."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from embedcli import run_embed
from embedcli.cli.app import app
from embedcli.inspection.diff import diff_files
from embedcli.options import EmbedOptions, WindowOptions

from conftest import SAMPLE

STORY = str(SAMPLE / "the-lighthouse.txt")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    one, split, other = tmp / "one.safetensors", tmp / "split.safetensors", tmp / "o.safetensors"
    windows = WindowOptions(max_length=4)
    run_embed([STORY], str(one), EmbedOptions(dim=8), windows)
    run_embed([STORY], str(split), EmbedOptions(dim=8, max_shard_size=3000), windows)
    run_embed([STORY], str(other), EmbedOptions(dim=8, seed=7), windows)
    return one, tmp / "split.safetensors.index.json", other


def test_a_split_output_equals_the_single_file(outputs):
    one, index, other = outputs
    report = diff_files(str(one), str(index))
    assert all(d.equal for d in report.compared) and not report.changed
    assert {d.name for d in report.compared} == {
        "embeddings",
        "token_embedding.weight",
        "pos_embedding.weight",
    }
    assert not diff_files(str(index), str(other)).identical


def test_tensor_limits_the_diff(outputs):
    one, _, other = outputs
    only = diff_files(str(one), str(other), tensor="pos_embedding.weight")
    assert [d.name for d in only.compared] == ["pos_embedding.weight"]
    result = CliRunner().invoke(
        app, ["inspect", str(one), str(other), "--diff", "--tensor", "embeddings", "--json"]
    )
    assert result.exit_code == 1  # the seeds differ: so do the embeddings, and diff says so
    assert [d["name"] for d in json.loads(result.stdout)["diff"]["compared"]] == ["embeddings"]
    same = CliRunner().invoke(app, ["inspect", str(one), str(outputs[1]), "--diff"])
    assert same.exit_code == 0 and "identical" in same.stdout


@pytest.mark.parametrize("option", [["--no-stats"], ["--preview", "2"]])
def test_options_a_diff_cannot_honour_are_refused(outputs, option):
    one, _, other = outputs
    result = CliRunner().invoke(app, ["inspect", str(one), str(other), "--diff", *option])
    assert result.exit_code == 2 and "--diff" in result.stderr and option[0] in result.stderr


def test_bundled_ranks_load_without_a_usable_cache_and_leave_the_environment(tmp_path, monkeypatch):
    from embedcli.bpe import encodings as encoding

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(blocker / "cache"))  # makedirs fails
    before = dict(os.environ)
    ranks = encoding.bundled_ranks()
    assert dict(os.environ) == before
    assert len(ranks) == 50256 and ranks[b"!"] == 0 and ranks[b" the"] == 262


def test_a_manifest_and_trainer_files_diff_as_inspect_reads_them(tmp_path):
    """Issue 36: --diff takes what inspect takes. A manifest's parts equal the one run they
    were sharded from, token stream by token stream; a npy file's uint16 ids equal the int32
    ids of a token file by value; a nanoGPT file (eot after) differs from both."""
    from embedcli import TokenizeOptions, run_tokenize

    corpus = [str(SAMPLE)]
    whole = tmp_path / "whole.tokens.safetensors"
    run_tokenize(corpus, str(whole))
    for i in range(3):
        run_tokenize(corpus, str(tmp_path / "sh.tokens.safetensors"), shard=(i, 3))
    manifest = tmp_path / "sh.tokens.manifest.json"
    parts = diff_files(str(manifest), str(whole))
    assert {d.name for d in parts.compared} == {"ids", "doc_offsets"}
    assert parts.tensors_identical and parts.metadata_changed == ["shards"]
    assert diff_files(str(manifest), str(whole), ignore_metadata=True).identical

    npy = tmp_path / "c.npy"
    run_tokenize(corpus, str(npy), TokenizeOptions())
    by_value = diff_files(str(npy), str(whole), ignore_metadata=True)
    (ids,) = by_value.compared
    assert ids.name == "ids" and ids.equal and (ids.a.dtype, ids.b.dtype) == ("U16", "I32")
    assert "compared by value" in (ids.note or "") and by_value.only_in_b == ["doc_offsets"]

    nanogpt = tmp_path / "c.bin"
    run_tokenize(corpus, str(nanogpt), to="nanogpt")
    result = CliRunner().invoke(app, ["inspect", "--diff", str(nanogpt), str(manifest)])
    assert (
        result.exit_code == 1 and "changed" in result.stdout and "looks like" not in result.stdout
    )


def test_a_diff_never_tokenizes_text(tmp_path):
    result = CliRunner().invoke(app, ["inspect", "--diff", STORY, STORY])
    assert result.exit_code == 1 and "not a safetensors file: it looks like text" in result.output
