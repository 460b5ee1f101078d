"""Paths as a library caller hands them over (issue 45): one or many, ``str`` or
``os.PathLike``; a lone path is one input, never its characters; ids in memory for the loader."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import embedcli.paths
from embedcli import (
    TokenWindows,
    UsageError,
    diff_files,
    inspect_file,
    run_batch,
    run_tokenize,
)
from embedcli.options import WindowOptions

from conftest import SAMPLE

STORY = SAMPLE / "the-lighthouse.txt"


def test_the_examples_in_the_module_hold():
    assert doctest.testmod(embedcli.paths).failed == 0


@pytest.mark.parametrize(
    "given",
    [str(STORY), STORY, [STORY], (str(STORY),)],
    ids=["str", "Path", "list of Path", "tuple of str"],
)
def test_one_path_is_one_input_in_any_form(tmp_path, given):
    listed = tmp_path / "listed.tokens.safetensors"
    run_tokenize([str(STORY)], str(listed))
    out = tmp_path / "given.tokens.safetensors"
    result = run_tokenize(given, out)  # the output a Path too
    assert result.output == str(out)
    assert np.array_equal(load_file(str(out))["ids"], load_file(str(listed))["ids"])


def test_every_entry_point_takes_a_pathlib_path(tmp_path):
    tokens = tmp_path / "story.tokens.safetensors"
    run_tokenize(STORY, tokens)
    windows = tmp_path / "w.safetensors"
    run_batch(tokens, windows, WindowOptions(max_length=4, stride=4, batch_size=8))
    assert inspect_file(windows).tensors and inspect_file(str(windows)).tensors
    assert diff_files(tokens, Path(str(tokens))).identical
    assert len(TokenWindows(tokens, 4)) == len(TokenWindows([tokens], 4)) > 0


@pytest.mark.parametrize("bad", [b"corpus.txt", 3, [b"corpus.txt"], None])
def test_what_is_not_a_path_is_one_usage_error(tmp_path, bad):
    with pytest.raises(UsageError, match="must be"):
        run_tokenize(bad, tmp_path / "x.tokens.safetensors")


def test_windows_of_ids_in_memory_equal_the_same_ids_read_from_a_file(tmp_path):
    tokens = tmp_path / "story.tokens.safetensors"
    run_tokenize(STORY, tokens)
    ids = load_file(str(tokens))["ids"]
    from_file, from_ids = TokenWindows(tokens, 8, 3), TokenWindows(ids, 8, 3)
    assert len(from_file) == len(from_ids) > 100
    for i in (0, 1, len(from_ids) // 2, len(from_ids) - 1):
        for a, b in zip(from_file[i], from_ids[i], strict=True):
            assert np.array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.zeros((2, 3), np.int32), "1-D integer array"),
        (np.zeros(10, np.float32), "1-D integer array"),
        (np.array([1, -2, 3], np.int64), "must not be negative"),
    ],
)
def test_ids_that_are_not_token_ids_are_refused(ids, message):
    with pytest.raises(UsageError, match=message):
        TokenWindows(ids, 2)


def test_an_array_has_no_documents_and_says_so():
    with pytest.raises(UsageError, match="^ids: cross_docs=False needs document boundaries"):
        TokenWindows(np.arange(100, dtype=np.int32), 4, cross_docs=False)
