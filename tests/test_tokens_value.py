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


def test_windows_are_the_batch_command_s(tmp_path):
    out, windows = tmp_path / "t.tokens.safetensors", tmp_path / "w.safetensors"
    assert invoke("tokenize", str(STORY), "-o", str(out), "-q").returncode == 0
    args = ["batch", str(out), "-T", "4", "--stride", "3", "-B", "1", "-o", str(windows), "-q"]
    assert invoke(*args).returncode == 0
    want = load_file(str(windows))
    for tokens in (ec.Tokens.open(out), ec.Tokens.from_ids(load_file(str(out))["ids"])):
        ds = tokens.windows(4, 3)
        assert len(ds) == want["inputs"].shape[0]
        got = np.stack([ds[i][0].numpy() for i in range(len(ds))])
        assert got.tolist() == want["inputs"].tolist()
