"""``mix --max-shard-size``: a one-process mix written as parts and a manifest, read as the one
file's stream; a rerun of the other shape replaces what the older one left."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedcli.formats import format_for
from embedcli.stages.mix import MixOptions, run_mix
from embedcli.storage.manifest import read_manifest

from conftest import SAMPLE, invoke


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The sample articles (5 documents) and the story's paragraphs (one a document)."""
    tmp = tmp_path_factory.mktemp("sources")
    web, story = tmp / "web.tokens.safetensors", tmp / "story.tokens.safetensors"
    invoke("tokenize", str(SAMPLE / "articles.jsonl"), "-o", str(web), "-q", check=True)
    text = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
    parts = tmp / "story.jsonl"
    paras = [p for p in text.split("\n\n") if p.strip()]
    parts.write_text("".join(json.dumps({"text": p}) + "\n" for p in paras))
    invoke("tokenize", str(parts), "-o", str(story), "-q", check=True)
    return [str(web), str(story)]


def _load(path, placement="after"):
    from embedcli.inputs import Request, open_input
    from embedcli.progress import no_progress

    with open_input([str(path)], Request()) as found:
        source = found.load(no_progress)
        ids = np.asarray(source.ids).tolist()
        if source.doc_offsets is None:  # nanoGPT: a document ends at each separator
            ends = [i + 1 for i, x in enumerate(ids) if x == 50256]
            if placement == "between" and ids:
                ends.append(len(ids))
            return ids, [0, *ends]
        return ids, source.doc_offsets.tolist()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    to=st.sampled_from([None, "nanogpt", "megatron"]),
    eot=st.sampled_from([None, "between", "after", "before"]),
    size=st.integers(4, 6000),
    seed=st.integers(0, 3),
)
def test_parts_read_through_their_manifest_are_the_one_file(
    sources, tmp_path_factory, to, eot, size, seed
):
    """Whatever the size, format and placement: the parts, read through the manifest, are the
    one-file mix's ids and documents; each part's ids fit the size unless it holds one
    document; every part holds whole documents."""
    tmp = tmp_path_factory.mktemp("parts")
    name = "m.tokens.safetensors" if to is None else ("m.bin" if to == "nanogpt" else "m")
    fmt = format_for(to, name)
    opts = MixOptions(seed=seed, eot=eot)
    (tmp / "one").mkdir(), (tmp / "split").mkdir()
    whole = run_mix(sources, str(tmp / "one" / name), opts, to=to)
    result = run_mix(sources, str(tmp / "split" / name), MixOptions(seed=seed, eot=eot,
                     max_shard_size=size), to=to)  # fmt: skip
    manifest = tmp / "split" / (name.replace(".safetensors", "") + ".manifest.json")
    assert result.written.paths[result.written.main] == str(manifest)
    placement = eot or fmt.default_eot
    assert _load(manifest, placement) == _load(tmp / "one" / name, placement)
    # the summary counts the stream as read: the separators between parts too
    assert result.tokens == whole.tokens == len(_load(manifest, placement)[0])
    listed = read_manifest(str(manifest)).files
    _, whole_docs = _load(tmp / "one" / name, placement)
    assert sum(len(_load(p, placement)[1]) - 1 for p in listed) == len(whole_docs) - 1
    for part in listed:
        ids, docs = _load(part, placement)
        assert len(ids) * fmt.id_bytes(50257) <= size or len(docs) == 2, (part, len(ids))
    assert not (tmp / "split" / name).exists()


def test_a_rerun_of_the_other_shape_replaces_the_older_files(sources, tmp_path):
    """Parts after one file remove the file and its provenance; one file after parts removes
    the parts, their provenance and the manifest; an input is never removed."""
    out = tmp_path / "m.tokens.safetensors"
    manifest = tmp_path / "m.tokens.manifest.json"
    invoke("mix", *sources, "-o", str(out), "-q", check=True)
    assert out.exists() and (tmp_path / "m.tokens.safetensors.provenance.safetensors").exists()
    invoke("mix", *sources, "-o", str(out), "--max-shard-size", "1KB", "-q", check=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "m.tokens.safetensors" not in names and "m.tokens.manifest.json" in names
    assert len([n for n in names if "-of-" in n and n.endswith(".tokens.safetensors")]) > 2
    assert not any(n.startswith("m.tokens.safetensors") for n in names)
    invoke("mix", *sources, "-o", str(out), "-q", check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.tokens.safetensors",
        "m.tokens.safetensors.provenance.safetensors",
    ]
    # the parts given as the input of a mix at their own name stay (they are read)
    invoke("mix", *sources, "-o", str(out), "--max-shard-size", "1KB", "-q", check=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    again = tmp_path / "again.tokens.safetensors"
    invoke("mix", str(manifest), "-o", str(again), "--no-shuffle", "-q", check=True)
    invoke("mix", str(manifest), "-o", str(out), "--no-shuffle", "-q", check=True)
    after = {p.name for p in tmp_path.iterdir()}
    assert set(before) <= after and _load(out) == _load(again)


def test_a_validation_split_stays_one_file_paired_with_the_parts(sources, tmp_path):
    from embedcli.storage.store import read_header

    out = tmp_path / "train.tokens.safetensors"
    args = ["mix", *sources, "-o", str(out), "--val-fraction", "0.3", "--max-shard-size", "8KB"]
    proc = invoke(*args)
    assert proc.returncode == 0, proc.stderr
    assert b"read them through" in proc.stderr and b"train.tokens.manifest.json" in proc.stderr
    val = tmp_path / "val.tokens.safetensors"
    one = tmp_path / "one" / "train.tokens.safetensors"
    one.parent.mkdir()
    invoke("mix", *sources, "-o", str(one), "--val-fraction", "0.3", "-q", check=True)
    assert _load(tmp_path / "train.tokens.manifest.json") == _load(one)
    assert _load(val) == _load(tmp_path / "one" / "val.tokens.safetensors")
    pair = read_header(str(val)).metadata["split_pair"]
    for part in read_manifest(str(tmp_path / "train.tokens.manifest.json")).files:
        meta = read_header(part).metadata
        assert meta["split_pair"] == pair and meta["split_partner"] == val.name
    windows = tmp_path / "w.safetensors"
    for path in (tmp_path / "train.tokens.manifest.json", val):  # both read by the next stage
        invoke("batch", str(path), "-T", "4", "-o", str(windows), "-q", check=True)


def test_a_rerun_without_a_validation_split_removes_the_older_one(sources, tmp_path):
    out = tmp_path / "train.tokens.safetensors"
    invoke("mix", *sources, "-o", str(out), "--val-fraction", "0.3", "-q", check=True)
    assert (tmp_path / "val.tokens.safetensors").exists()
    invoke("mix", *sources, "-o", str(out), "-q", check=True)
    assert not (tmp_path / "val.tokens.safetensors").exists()
    assert not (tmp_path / "val.tokens.safetensors.provenance.safetensors").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-shard-size", "1MB", "--to", "llmc"], "--to llmc splits its output with"),
        (["--max-shard-size", "3"], "is smaller than one id (4 bytes in safetensors files)"),
        (["--max-shard-size", "1MB", "--phase", "gather", "--shard", "0/1"], "splits a one-"),
    ],
)
def test_split_refusals_are_one_line_and_write_nothing(sources, tmp_path, extra, message):
    out = tmp_path / ("m.bin" if "llmc" in extra else "m.tokens.safetensors")
    proc = invoke("mix", *sources, "-o", str(out), *extra)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in tmp_path.iterdir()] == []
    stdout = invoke("mix", *sources, "-o", "-", "--max-shard-size", "1MB")
    assert stdout.returncode != 0 and b"--max-shard-size writes files" in stdout.stderr


def test_a_size_that_would_make_too_many_files_is_refused():
    from embedcli.errors import UsageError
    from embedcli.stages.mix_parts import part_cuts

    fmt = format_for(None, "m.tokens.safetensors")
    lengths = np.ones(1001, np.int64)  # two ids each, the separator after
    assert part_cuts(lengths, "after", 16, fmt, 50257) == [*range(0, 1001, 2), 1001]
    with pytest.raises(UsageError, match=r"into 1,001 files \(at most 1,000\)"):
        part_cuts(lengths, "after", 8, fmt, 50257)
    assert part_cuts(np.zeros(0, np.int64), "between", 16, fmt, 50257) == [0, 0]


@pytest.mark.parametrize(("soft", "hard", "ok"), [(40, 4096, True), (40, 60, False)])
def test_many_parts_raise_the_open_file_limit_or_are_refused(sources, tmp_path, soft, hard, ok):
    """A split whose files exceed ``ulimit -n`` raises the soft limit to what it needs, or,
    past the hard limit, is refused in one line before anything is written."""
    import shlex
    import subprocess
    import sys

    out = tmp_path / "m.tokens.safetensors"
    argv = [sys.executable, "-m", "embedcli", "mix", *sources, "-o", str(out), "-q",
            "--max-shard-size", "8"]  # fmt: skip
    script = f"ulimit -Sn {soft} && ulimit -Hn {hard} && exec {shlex.join(argv)}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, timeout=120)
    err = proc.stderr.decode()
    if ok:
        assert proc.returncode == 0, err
        assert len(read_manifest(str(tmp_path / "m.tokens.manifest.json")).files) == 12
    else:
        assert proc.returncode != 0 and "needs 100 open files" in err, err
        assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []
