"""The input layer: one resolver per kind of input, resolved once, in a registry."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedcli import inputs, run_batch, run_embed, run_tokenize
from embedcli.inputs import Request, TokenSource, load_input, open_input, register
from embedcli.options import EmbedOptions, WindowOptions

from conftest import SAMPLE

STORY = str(SAMPLE / "the-lighthouse.txt")


def test_each_kind_of_input_has_its_reader(tmp_path):
    tokens = tmp_path / "t.tokens.safetensors"
    run_tokenize([str(SAMPLE)], str(tokens))
    windows = tmp_path / "w.safetensors"
    run_batch([str(tokens)], str(windows), WindowOptions(max_length=4))
    split = tmp_path / "s.safetensors"
    run_batch([str(tokens)], str(split), WindowOptions(max_length=4), max_shard_size=2000)
    cases = {
        "text": [str(SAMPLE)],
        "safetensors": [str(tokens)],
        "token-files": [str(tokens), str(tokens)],
        "split": [str(tmp_path / "s.safetensors.index.json")],
    }
    for reader, paths in cases.items():
        with open_input(paths, Request(allow_windows=True)) as found:
            assert found.reader == reader
    with open_input([str(SAMPLE)]) as found:  # resolved once: the files and bytes to read
        assert found.paths == sorted(str(p) for p in SAMPLE.iterdir())
        assert found.size == sum(p.stat().st_size for p in SAMPLE.iterdir())


def test_a_split_windows_file_is_an_input_like_the_whole(tmp_path):
    tokens = tmp_path / "t.tokens.safetensors"
    run_tokenize([STORY], str(tokens))
    one, split = tmp_path / "one.safetensors", tmp_path / "split.safetensors"
    run_batch([str(tokens)], str(one), WindowOptions(max_length=4, batch_size=8))
    run_batch(
        [str(tokens)], str(split), WindowOptions(max_length=4, batch_size=8), max_shard_size=1500
    )
    index = str(split) + ".index.json"
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    run_embed([str(one)], str(a), EmbedOptions(dim=8))
    run_embed([index], str(b), EmbedOptions(dim=8))
    assert np.array_equal(load_file(str(a))["embeddings"], load_file(str(b))["embeddings"])


def test_text_tokenized_inside_batch_reports_progress(tmp_path):
    calls = []

    @contextlib.contextmanager
    def progress(description, total, unit="bytes"):
        done = []
        yield done.append
        calls.append((description, total, unit, sum(done)))

    run_batch([STORY], str(tmp_path / "w.safetensors"), progress=progress)
    size = (SAMPLE / "the-lighthouse.txt").stat().st_size
    assert calls == [("tokenize", size, "bytes", size)]
    calls.clear()
    run_embed([STORY], str(tmp_path / "e.safetensors"), EmbedOptions(dim=4), progress=progress)
    windows = load_file(str(tmp_path / "e.safetensors"))["embeddings"].shape[0]
    assert calls == [("tokenize", size, "bytes", size), ("embed", windows, "windows", windows)]


@dataclass
class _Resolved:
    reader: str
    paths: list[str]
    size: int

    def load(self, progress):
        with open(self.paths[0]) as f:
            ids = np.array(f.read().split(), dtype=np.int64)
        return TokenSource(ids, None, {"vocab_size": "100"})


class _SpaceSeparatedIds:
    """A whole new input format in a dozen lines: whitespace-separated ids in a .ids file."""

    name = "ids-text"

    def claims(self, paths):
        return len(paths) == 1 and paths[0].endswith(".ids")

    def resolve(self, paths, request, shown):
        return _Resolved(self.name, paths, 0)


def test_a_new_format_is_one_reader_and_one_registration(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "READERS", list(inputs.READERS))
    register(_SpaceSeparatedIds())
    path = tmp_path / "x.ids"
    path.write_text(" ".join(str(i % 100) for i in range(50)))
    with load_input([str(path)]) as source:
        assert source.ids.tolist() == [i % 100 for i in range(50)]
    out = tmp_path / "e.safetensors"
    result = run_embed([str(path)], str(out), EmbedOptions(dim=4), WindowOptions(max_length=4))
    assert (
        result.shape == (len(range(0, 50 - 4, 4)), 4, 4) == load_file(str(out))["embeddings"].shape
    )


def test_mixing_token_files_and_text_is_refused(tmp_path):
    from embedcli.errors import UsageError

    tokens = tmp_path / "t.tokens.safetensors"
    run_tokenize([STORY], str(tokens))
    with (
        pytest.raises(UsageError, match="either token files or text"),
        open_input([str(tokens), STORY]),
    ):
        pass


@pytest.mark.parametrize("to", ["nanogpt", "megatron", "npy", "llmc"])
def test_several_trainer_files_read_as_one_token_set(tmp_path, to):
    """``batch a.bin b.bin`` read the first file as text ("invalid UTF-8 at byte 0"): several
    trainer files are now read as each is alone, joined as several safetensors files are."""
    story, news = SAMPLE / "the-lighthouse.txt", sorted(SAMPLE.glob("*.jsonl"))
    name = {"nanogpt": "{}.bin", "megatron": "{}", "npy": "{}.npy", "llmc": "{}.bin"}[to]
    one, two, both = (str(tmp_path / name.format(n)) for n in ("one", "two", "both"))
    run_tokenize([str(story)], one, to=to)
    run_tokenize([str(p) for p in news], two, to=to)
    run_tokenize([str(story), *map(str, news)], both, to=to)  # the same documents in one file
    given = [one + ".bin", two] if to == "megatron" else [one, two]  # a pair by .bin or prefix
    with load_input(given) as joined, load_input([both]) as whole:
        assert np.array_equal(np.asarray(joined.ids), np.asarray(whole.ids))
    opts = WindowOptions(max_length=4, stride=4, batch_size=8)
    run_batch(given, str(tmp_path / "joined.safetensors"), opts)
    run_batch([both], str(tmp_path / "whole.safetensors"), opts)
    a, b = (load_file(str(tmp_path / f"{n}.safetensors")) for n in ("joined", "whole"))
    assert np.array_equal(a["inputs"], b["inputs"]) and np.array_equal(a["targets"], b["targets"])
