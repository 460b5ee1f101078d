"""Sharded tokenizing: N shards of a multi-file corpus reassemble to exactly the single run."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedcli import TokenizeOptions, WindowOptions, run_batch, run_tokenize
from embedcli.documents import parse_shard, resolve_sources, shard_sources
from embedcli.errors import FormatError

from conftest import SAMPLE, invoke


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Text files, jsonl with long and empty documents, gzip: every kind of unit."""
    root = tmp_path_factory.mktemp("corpus")
    story = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
    (root / "a.txt").write_text(story[:900], encoding="utf-8")
    lines = [
        json.dumps({"text": f"Document {i}: " + "words " * (i % 17) + ("" if i % 5 else "x" * 300)})
        for i in range(60)
    ]
    lines.insert(10, json.dumps({"text": ""}))
    (root / "b.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "c.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines[:7]) + "\n").encode()))
    (root / "d.txt").write_text("", encoding="utf-8")
    (root / "e.txt").write_text(story[900:], encoding="utf-8")
    sub = root / "sub"
    sub.mkdir()
    (sub / "f.jsonl").write_text(json.dumps({"text": "last one"}) + "\n", encoding="utf-8")
    return root


def test_shard_assignment_covers_every_document_once(corpus):
    sources = resolve_sources([str(corpus)])
    for count in (1, 2, 3, 7, 40):
        seen = []
        for index in range(count):
            for s in shard_sources(sources, index, count):
                seen.append((s.path, s.byte_range))
        whole = {s.path for s in sources if s.format == "text" or s.compression}
        assert whole <= {p for p, r in seen}
        # jsonl ranges of one file tile it without overlap
        for path in {s.path for s in sources if s.format == "jsonl" and not s.compression}:
            ranges = sorted(r for p, r in seen if p == path)
            assert ranges[0][0] == 0 and all(
                a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False)
            )


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 64])
def test_shards_reassemble_to_the_single_run(tmp_path, corpus, count):
    single = tmp_path / "single.tokens.safetensors"
    run_tokenize([str(corpus)], str(single))
    whole = tmp_path / "corpus.tokens.safetensors"
    for index in reversed(range(count)):  # any order: shards are independent
        run_tokenize([str(corpus)], str(whole), TokenizeOptions(workers=2), shard=(index, count))
    manifest = tmp_path / "corpus.tokens.manifest.json"
    doc = json.loads(manifest.read_text())
    assert doc["shard_count"] == count and len(doc["shards"]) == count
    assert doc["shards"][0] == f"corpus-00001-of-{count:05d}.tokens.safetensors"

    from embedcli.inputs import load_input

    with load_input([str(manifest)]) as merged:
        expected = load_file(str(single))
        assert np.array_equal(merged.ids, expected["ids"])
        assert np.array_equal(merged.doc_offsets, expected["doc_offsets"])
        assert merged.metadata["documents"] == str(expected["doc_offsets"].size - 1)
        assert len(json.loads(merged.metadata["shards"])) == count


def test_batch_and_embed_take_shards_in_any_order(tmp_path, corpus):
    whole = tmp_path / "c.tokens.safetensors"
    for index in range(3):
        run_tokenize([str(corpus)], str(whole), shard=(index, 3))
    shards = sorted(tmp_path.glob("c-*.tokens.safetensors"), reverse=True)
    single_tokens = tmp_path / "single.tokens.safetensors"
    run_tokenize([str(corpus)], str(single_tokens))
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    run_batch([str(p) for p in shards], str(a), WindowOptions(max_length=8))
    run_batch([str(single_tokens)], str(b), WindowOptions(max_length=8))
    assert np.array_equal(load_file(str(a))["inputs"], load_file(str(b))["inputs"])
    proc = invoke(
        "embed",
        str(tmp_path / "c.tokens.manifest.json"),
        "-o",
        str(tmp_path / "e.safetensors"),
        "-T",
        "8",
        "-d",
        "4",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr


def test_incomplete_or_mixed_shards_are_refused(tmp_path, corpus):
    whole = tmp_path / "c.tokens.safetensors"
    for index in (0, 2):
        run_tokenize([str(corpus)], str(whole), shard=(index, 3))
    shards = [str(p) for p in sorted(tmp_path.glob("c-*.tokens.safetensors"))]
    from embedcli.inputs import load_input

    with pytest.raises(FormatError, match=r"missing shard\(s\) 1"), load_input(shards):
        pass
    missing = r"missing shard\(s\) 1 \(c-00002-of-00003\.tokens\.safetensors\)"
    with pytest.raises(FormatError, match=missing), load_input(shards):
        pass
    proc = invoke(
        "batch", str(tmp_path / "c.tokens.manifest.json"), "-o", str(tmp_path / "w.safetensors")
    )
    assert (
        proc.returncode == 1 and b"c-00002-of-00003.tokens.safetensors: no such file" in proc.stderr
    )
    other = tmp_path / "o.tokens.safetensors"
    run_tokenize([str(SAMPLE)], str(other), shard=(1, 3))
    with (
        pytest.raises(FormatError, match="different sharded runs"),
        load_input([*shards, str(tmp_path / "o-00002-of-00003.tokens.safetensors")]),
    ):
        pass


def test_shard_cli(tmp_path, corpus):
    for index in range(2):
        proc = invoke(
            "tokenize",
            str(corpus),
            "-o",
            str(tmp_path / "x.tokens.safetensors"),
            "--shard",
            f"{index}/2",
            "-q",
        )
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x-00002-of-00002.tokens.safetensors").exists()
    bad = invoke("tokenize", str(corpus), "-o", str(tmp_path / "x.safetensors"), "--shard", "2/2")
    assert bad.returncode == 2 and b"need 0 <= I < N" in bad.stderr
    assert parse_shard("3/4") == (3, 4)
