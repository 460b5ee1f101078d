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
