"""``embedcli.Tokens``: ids of documents as a value, from text, from ids in memory or from any
token file, saved in any format and windowed, each equal to what the commands make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import embedcli as ec
from embedcli.errors import OutputError, UsageError

from conftest import SAMPLE, invoke

STORY = SAMPLE / "the-lighthouse.txt"


def test_ids_in_memory_are_documents_with_their_lineage():
    tokens = ec.Tokens.from_ids(np.array([15496, 50256, 3886, 68]), doc_offsets=[0, 2, 4])
    assert (len(tokens), tokens.n_documents, tokens.encoding) == (4, 2, "gpt2")
    assert tokens.document(1).tolist() == [3886, 68]
    assert tokens.metadata["eot_id"] == "50256" and tokens.metadata["vocab_size"] == "50257"
    assert repr(tokens) == "Tokens(4 ids, 2 documents, encoding='gpt2')"
    with pytest.raises(UsageError, match="1-D integer"):
        ec.Tokens.from_ids(np.zeros((2, 2), np.int32))
    with pytest.raises(UsageError, match="rise from 0 to len"):
        ec.Tokens.from_ids([1, 2, 3], doc_offsets=[0, 2])
    with pytest.raises(UsageError, match="mark no documents"):
        ec.Tokens.from_ids([1, 2, 3]).document(0)


def test_text_is_tokenized_as_the_command_tokenizes_it(tmp_path):
    out = tmp_path / "cli.tokens.safetensors"
    assert invoke("tokenize", str(SAMPLE), "-o", str(out), "-q").returncode == 0
    tokens = ec.Tokens.from_text(SAMPLE)
    want = load_file(str(out))
    assert tokens.ids.tolist() == want["ids"].tolist()
    assert tokens.doc_offsets.tolist() == want["doc_offsets"].tolist()
    with pytest.raises(UsageError, match="is text: tokenize it"):
        ec.Tokens.open(STORY)


@pytest.mark.parametrize(("to", "name"), [("nanogpt", "t.bin"), ("llmc", "t.bin"), (None, "t.npy")])
def test_saved_in_a_trainer_s_format_as_tokenize_writes_it(tmp_path, to, name):
    cli = tmp_path / "cli" / name
    cli.parent.mkdir()
    args = ["tokenize", str(STORY), "-o", str(cli), *(["--to", to] if to else []), "-q"]
    assert invoke(*args).returncode == 0
    eot = {"nanogpt": "after", "llmc": "before"}.get(to or "", "between")
    tokens = ec.Tokens.from_text(STORY, eot=eot)
    if to:
        tokens.metadata["special"] = "text"  # the trainers' default policy, as tokenize's
    written = tokens.save(tmp_path / name, format=to)
    data = [p for p in map(Path, written) if p.suffix != ".json"]  # sidecars name the inputs
    assert data and all(p.read_bytes() == (cli.parent / p.name).read_bytes() for p in data)
    with pytest.raises(OutputError):
        tokens.save(tmp_path / name, format=to, no_clobber=True)


def test_a_shard_set_opens_as_its_files_and_saves_whole(tmp_path):
    one, many = tmp_path / "one.bin", tmp_path / "many.bin"
    for out, extra in ((one, []), (many, ["--shard-tokens", "100"])):
        assert (
            invoke("tokenize", str(STORY), "--to", "llmc", "-o", str(out), *extra).returncode == 0
        )
    whole, parts = ec.Tokens.open(one), ec.Tokens.open(many)
    assert len(parts.segments) > 3 and len(parts) == len(whole)
    assert parts.ids.tolist() == whole.ids.tolist()
    parts.save(tmp_path / "joined.tokens.safetensors")
    again = ec.Tokens.open(tmp_path / "joined.tokens.safetensors")
    assert again.ids.tolist() == whole.ids.tolist()


BATCH_CASES = [
    ["-T", "4", "--stride", "3", "-B", "1"],
    ["-T", "8", "-B", "4", "--shuffle", "--seed", "5"],
    ["-T", "6", "--stride", "2", "-B", "3", "--keep-last", "--dtype", "int32"],
    ["-T", "4", "-B", "2", "--no-cross-docs", "--num-batches", "5"],
]


def _window_options(args):
    flags = {a: b for a, b in zip(args, [*args[1:], ""], strict=True) if a.startswith("-")}
    return dict(
        max_length=int(flags["-T"]),
        stride=int(flags["--stride"]) if "--stride" in flags else None,
        batch_size=int(flags["-B"]),
        shuffle="--shuffle" in args,
        seed=int(flags.get("--seed", 123)),
        drop_last="--keep-last" not in args,
        num_batches=int(flags["--num-batches"]) if "--num-batches" in flags else None,
        cross_docs="--no-cross-docs" not in args,
        dtype="int32" if "int32" in args else "int64",
    )


@pytest.mark.parametrize("args", BATCH_CASES, ids=lambda a: " ".join(a))
def test_windows_are_the_batch_command_s_bytes_and_rows(tmp_path, args):
    """``Tokens.windows(...)`` with batch's options: ``save`` writes the file ``embedcli
    batch`` writes, byte for byte, and its rows, batches and arrays are that file's."""
    out, batched = tmp_path / "t.tokens.safetensors", tmp_path / "w.safetensors"
    assert invoke("tokenize", str(STORY), "-o", str(out), "-q").returncode == 0
    assert invoke("batch", str(out), *args, "-o", str(batched), "-q").returncode == 0
    windows = ec.Tokens.open(out).windows(**_window_options(args))
    assert windows.save(tmp_path / "v.safetensors") == [str(tmp_path / "v.safetensors")]
    assert (tmp_path / "v.safetensors").read_bytes() == batched.read_bytes()
    want = load_file(str(batched))
    assert windows.shape == want["inputs"].shape and len(windows) == want["inputs"].shape[0]
    assert np.array_equal(windows.inputs, want["inputs"])
    assert np.array_equal(windows.targets, want["targets"])
    last = len(windows) - 1
    assert [windows[last][k].tolist() for k in (0, 1)] == [
        want["inputs"][last].tolist(),
        want["targets"][last].tolist(),
    ]
    joined = [np.concatenate(part) for part in zip(*windows.batches(), strict=True)]
    assert all(
        np.array_equal(a, want[k]) for a, k in zip(joined, ("inputs", "targets"), strict=True)
    )
    assert all(len(i) <= windows.batch_size for i, _ in windows.batches())


def test_windows_of_ids_in_memory_and_their_refusals(tmp_path):
    tokens = ec.Tokens.from_ids(np.arange(10))
    windows = tokens.windows(4, stride=2, batch_size=3)  # the book's starts: 0, 2, 4
    assert len(windows) == 3 and windows[0][1].tolist() == [1, 2, 3, 4]
    assert windows[-1][0].tolist() == windows[2][0].tolist() == [4, 5, 6, 7]
    assert repr(windows) == "Windows(3 of 4 ids, batches of 3, in order)"
    assert len(tokens.windows(4, stride=2, batch_size=2)) == 2  # the last partial batch dropped
    with pytest.raises(IndexError):
        windows[3]
    with pytest.raises(UsageError, match="document boundaries"):
        tokens.windows(4, cross_docs=False)
    split = windows.save(tmp_path / "split.safetensors", max_shard_size=200)
    assert split[-1].endswith(".index.json") and len(split) > 2
    windows.save(tmp_path / "w.safetensors")
    with pytest.raises(OutputError):
        windows.save(tmp_path / "w.safetensors", no_clobber=True)


def test_a_training_dataset_of_the_ids(tmp_path):
    out = tmp_path / "t.tokens.safetensors"
    assert invoke("tokenize", str(STORY), "-o", str(out), "-q").returncode == 0
    ids = load_file(str(out))["ids"]
    for tokens in (ec.Tokens.open(out), ec.Tokens.from_ids(ids)):
        ds = tokens.dataset(4, 3)
        assert repr(ds).startswith(f"TokenWindows({len(ds):,} windows of 4 ids, stride 3, from ")
        inputs, targets = ds[len(ds) - 1]
        assert inputs.tolist() == ids[(len(ds) - 1) * 3 :][:4].tolist()
        assert targets.tolist() == ids[(len(ds) - 1) * 3 + 1 :][:4].tolist()
    in_memory = ec.Tokens.from_ids(np.arange(100), doc_offsets=[0, 50, 100])
    inside = in_memory.dataset(8, cross_docs=False)  # its documents kept: 6 windows in each
    assert len(inside) == 12 and inside[6][0].tolist() == list(range(50, 58))
    assert repr(inside) == (
        "TokenWindows(12 windows of 8 ids, stride 8, inside documents, from ids in memory)"
    )
