"""One transaction for every multi-file output (issue 44): a rerun leaves no part of the old
set, a failure at any step leaves the old set as it was, a set whose commit was killed is
refused by every reader, --no-clobber holds for racing jobs, and a set reads back by the name
given to -o."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from embedcli.storage import output_set
from embedcli.storage.output_set import INCOMPLETE, OutputSet

from conftest import SAMPLE, invoke

STORY = str(SAMPLE / "the-lighthouse.txt")


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _snapshot(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_a_set_commits_its_data_then_its_pointer(tmp_path):
    with OutputSet() as out:
        out.add(str(tmp_path / "a_000000.bin")).write(b"one")
        out.add(str(tmp_path / "a_000001.bin")).write(b"two")
        out.pointer(str(tmp_path / "a.bin.json"), {"files": ["a_000000.bin", "a_000001.bin"]})
        assert _names(tmp_path) == sorted(_names(tmp_path))  # only temporary files so far
        assert all(name.endswith(".tmp") for name in _names(tmp_path))
    assert _names(tmp_path) == ["a.bin.json", "a_000000.bin", "a_000001.bin"]
    assert out.paths[-1] == str(tmp_path / "a.bin.json")


def test_a_rewrite_removes_what_the_new_set_does_not_have(tmp_path):
    old = [tmp_path / f"a_{i:06d}.bin" for i in range(4)]
    for p in old:
        p.write_bytes(b"old")
    with OutputSet() as out:
        out.replaces([str(p) for p in old])
        out.add(str(old[0])).write(b"new")
    assert _names(tmp_path) == ["a_000000.bin"]
    assert old[0].read_bytes() == b"new"


def test_an_error_inside_the_block_leaves_nothing(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), OutputSet() as out:
        out.add(str(tmp_path / "a.bin")).write(b"new")
        raise RuntimeError("stage failed")
    assert _snapshot(tmp_path) == {"a.bin": b"old"}


@pytest.mark.parametrize("failing", [1, 2, 3])
def test_a_failed_rename_is_undone(tmp_path, monkeypatch, failing):
    """The commit's ``failing``-th rename fails (a full disk, an I/O error): every file the
    commit had replaced or removed is back, no new name is left, no temporary file."""
    for i in range(3):
        (tmp_path / f"a_{i:06d}.bin").write_bytes(f"old {i}".encode())
    (tmp_path / "a.bin.json").write_text('{"files": 3}')
    before = _snapshot(tmp_path)
    real, calls = output_set.commit, []

    def commit(temp, path, **kwargs):
        calls.append(path)
        if len(calls) == failing:
            raise OSError(5, "Input/output error")
        real(temp, path, **kwargs)

    monkeypatch.setattr(output_set, "commit", commit)
    with pytest.raises(OSError), OutputSet() as out:
        out.replaces([str(tmp_path / f"a_{i:06d}.bin") for i in range(3)])
        out.add(str(tmp_path / "a_000000.bin")).write(b"new 0")
        out.add(str(tmp_path / "a_000001.bin")).write(b"new 1")
        out.pointer(str(tmp_path / "a.bin.json"), {"files": 2})
    assert _snapshot(tmp_path) == before


def test_an_interrupt_during_the_renames_waits_for_the_commit(tmp_path, monkeypatch):
    """SIGINT arriving between two renames is handled after the last one: the set is whole,
    then the interrupt is raised."""
    import signal

    real, calls = output_set.commit, []

    def commit(temp, path, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)
        real(temp, path, **kwargs)

    monkeypatch.setattr(output_set, "commit", commit)
    with pytest.raises(KeyboardInterrupt), OutputSet() as out:
        out.add(str(tmp_path / "a_000000.bin")).write(b"0")
        out.add(str(tmp_path / "a_000001.bin")).write(b"1")
        out.pointer(str(tmp_path / "a.bin.json"), {"files": 2})
    assert _names(tmp_path) == ["a.bin.json", "a_000000.bin", "a_000001.bin"]
    assert json.loads((tmp_path / "a.bin.json").read_text()) == {"files": 2}


def test_no_clobber_refuses_at_commit_and_leaves_the_winner(tmp_path):
    (tmp_path / "a_000001.bin").write_bytes(b"other job")
    from embedcli.errors import OutputError

    with pytest.raises(OutputError, match="already exists"), OutputSet(no_clobber=True) as out:
        out.add(str(tmp_path / "a_000000.bin")).write(b"mine")
        out.add(str(tmp_path / "a_000001.bin")).write(b"mine")
    assert _snapshot(tmp_path) == {"a_000001.bin": b"other job"}


# ----------------------------------------------------------------- llm.c through the CLI


def _llmc(tmp_path, text_path, out, *extra):
    return invoke("tokenize", str(text_path), "--to", "llmc", "-o", str(out), "-q", *extra)


def test_a_smaller_llmc_rerun_leaves_no_old_shard(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(SAMPLE.joinpath("the-lighthouse.txt").read_text(encoding="utf-8") * 3)
    out = tmp_path / "out" / "fw.bin"
    out.parent.mkdir()
    assert _llmc(tmp_path, big, out, "--shard-tokens", "200").returncode == 0
    assert len(list(out.parent.glob("fw_*.bin"))) > 3
    small = tmp_path / "small.txt"
    small.write_text("A small corpus.\n")
    assert _llmc(tmp_path, small, out, "--shard-tokens", "200").returncode == 0
    assert _names(out.parent) == ["fw.bin.json", "fw_000000.bin"]
    assert json.loads((out.parent / "fw.bin.json").read_text())["files"] == ["fw_000000.bin"]


def test_an_llmc_set_reads_back_by_its_name_and_its_sidecar(tmp_path):
    from embedcli.data import open_tokens

    out = tmp_path / "fw.bin"
    assert _llmc(tmp_path, STORY, out, "--shard-tokens", "500").returncode == 0
    shards = sorted(str(p) for p in tmp_path.glob("fw_*.bin"))
    whole = np.concatenate(open_tokens(shards).segments)
    for name in (str(out), str(out) + ".json"):
        stream = open_tokens(name)
        assert np.array_equal(np.concatenate(stream.segments), whole)
        proc = invoke("inspect", name)
        assert proc.returncode == 0, proc.stderr
        proc = invoke("batch", name, "-T", "4", "-o", str(tmp_path / "w.safetensors"), "-q")
        assert proc.returncode == 0, proc.stderr


def test_a_set_whose_commit_was_killed_is_refused_by_every_reader(tmp_path):
    out = tmp_path / "fw.bin"
    assert _llmc(tmp_path, STORY, out, "--shard-tokens", "500").returncode == 0
    sidecar = tmp_path / "fw.bin.json"
    sidecar.write_text(json.dumps({INCOMPLETE: ["fw_000000.bin", "fw.bin.json"]}))
    for args in (["inspect", str(out)], ["batch", str(out), "-T", "4", "-o", "-"]):
        proc = invoke(*args)
        assert proc.returncode == 1
        line = one_error_line(proc)
        assert "fw.bin.json" in line and "killed while committing" in line


def test_a_missing_shard_is_refused(tmp_path):
    out = tmp_path / "fw.bin"
    assert _llmc(tmp_path, STORY, out, "--shard-tokens", "500").returncode == 0
    (tmp_path / "fw_000001.bin").unlink()
    proc = invoke("inspect", str(out))
    assert proc.returncode == 1
    assert "fw_000001.bin: listed in" in one_error_line(proc)


@pytest.mark.parametrize("to", ["llmc", "megatron", "nanogpt", "npy"])
def test_a_failure_before_the_last_rename_keeps_the_old_set(tmp_path, to):
    """Through a real process: the first write commits; the second, of another corpus, fails
    at its last rename (the sidecar's); every file is as the first run left it."""
    out = tmp_path / ("c.npy" if to == "npy" else "c.bin")
    args = ["tokenize", STORY, "--to", to, "-o", str(out), "-q", "--shard-tokens", "500"]
    if to != "llmc":
        args = args[:-2]
    assert invoke(*args).returncode == 0
    before = _snapshot(tmp_path)
    program = _FAIL_LAST_RENAME.format(args=[*args[:1], str(SAMPLE), *args[2:]])
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert b"injected" in proc.stderr
    assert _snapshot(tmp_path) == before


_FAIL_LAST_RENAME = """
import sys
import embedcli.storage.output_set as output_set
from embedcli.cli.app import main

real = output_set.commit

def commit(temp, path, **kwargs):
    if path.endswith(".json"):
        raise OSError(28, "No space left on device (injected)")
    real(temp, path, **kwargs)

output_set.commit = commit
sys.argv = ["embedcli", *{args!r}]
main()
"""


# ----------------------------------------------------------------- split outputs


def _batch_split(tokens, out, size):
    args = ["batch", str(tokens), "-T", "4", "--stride", "1", "-o", str(out), "-q"]
    return invoke(*args, *(["--max-shard-size", size] if size else []))


@pytest.fixture
def story_tokens(tmp_path):
    path = tmp_path / "story.tokens.safetensors"
    assert invoke("tokenize", STORY, "-o", str(path), "-q").returncode == 0
    return path


def test_a_smaller_split_rerun_leaves_no_old_part(tmp_path, story_tokens):
    out_dir = tmp_path / "w"
    out_dir.mkdir()
    out = out_dir / "w.safetensors"
    assert _batch_split(story_tokens, out, "8KB").returncode == 0
    assert len(list(out_dir.glob("w-*-of-*.safetensors"))) > 4
    assert _batch_split(story_tokens, out, "24KB").returncode == 0
    index = json.loads((out_dir / "w.safetensors.index.json").read_text())
    listed = sorted(f["file"] for f in index["embedcli"]["files"])
    assert _names(out_dir) == sorted([*listed, "w.safetensors.index.json"])
    assert invoke("inspect", str(out_dir / "w.safetensors.index.json")).returncode == 0
    # one file this time: the split's parts and index go
    assert _batch_split(story_tokens, out, None).returncode == 0
    assert _names(out_dir) == ["w.safetensors"]


def test_a_split_whose_commit_was_killed_is_refused(tmp_path, story_tokens):
    out = tmp_path / "w.safetensors"
    assert _batch_split(story_tokens, out, "20KB").returncode == 0
    index = tmp_path / "w.safetensors.index.json"
    index.write_text(json.dumps({INCOMPLETE: ["w-00001-of-00009.safetensors"]}, indent=2))
    for args in (["inspect", str(index)], ["embed", str(index), "-d", "4", "-o", "-"]):
        proc = invoke(*args)
        assert proc.returncode == 1
        assert "killed while committing" in one_error_line(proc)


# ----------------------------------------------------------------- the validation split's key


def test_the_validation_split_does_not_depend_on_how_the_path_is_spelled(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = [json.dumps({"text": f"document number {i} of the corpus"}) for i in range(400)]
    (data / "x.jsonl").write_text("\n".join(lines) + "\n")
    from safetensors.numpy import load_file

    chosen = []
    for k, spelled in enumerate(["data/x.jsonl", "./data/x.jsonl", str(data / "x.jsonl")]):
        out = tmp_path / f"o{k}.tokens.safetensors"
        proc = invoke(
            "tokenize", spelled, "--val-fraction", "0.2", "-o", str(out), "-q", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        val = load_file(str(tmp_path / f"o{k}.val.tokens.safetensors"))
        chosen.append((val["ids"].tolist(), val["doc_offsets"].tolist()))
    assert chosen[0] == chosen[1] == chosen[2]
    assert 40 < len(chosen[0][1]) - 1 < 120  # about a fifth of 400 documents
    # a directory input keys its files by their path inside it, however it is spelled
    dirs = []
    for k, spelled in enumerate(["data", "./data/", str(data)]):
        out = tmp_path / f"d{k}.tokens.safetensors"
        proc = invoke(
            "tokenize", spelled, "--val-fraction", "0.2", "-o", str(out), "-q", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        dirs.append(load_file(str(tmp_path / f"d{k}.val.tokens.safetensors"))["ids"].tolist())
    assert dirs[0] == dirs[1] == dirs[2]


# ----------------------------------------------------------------- --no-clobber, two jobs

# embedcli whose commit, once everything is written, says "ready" and waits for a byte on
# stdin: the test lets two such jobs commit the same output at the same moment.
_AT_COMMIT = """
import sys
import embedcli.storage.output_set as output_set
from embedcli.cli.app import main

real = output_set.OutputSet.commit

def commit(self):
    print("ready", flush=True)
    sys.stdin.buffer.read(1)
    return real(self)

output_set.OutputSet.commit = commit
sys.argv = ["embedcli", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("rounds", range(3))
def test_no_clobber_holds_for_two_racing_jobs(tmp_path, rounds):
    small = tmp_path / "small.txt"
    small.write_text("Another corpus, much shorter than the story.\n")
    out = tmp_path / "fw.bin"
    jobs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _AT_COMMIT,
                "tokenize",
                str(text),
                "--to",
                "llmc",
                "--shard-tokens",
                "300",
                "-o",
                str(out),
                "--no-clobber",
                "-q",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for text in (STORY, small)
    ]
    for job in jobs:  # both have passed the early check and written everything
        assert job.stdout is not None and job.stdout.readline() == b"ready\n"
    for job in jobs:
        assert job.stdin is not None
        job.stdin.write(b"go")
        job.stdin.flush()
    results = [(job.wait(timeout=120), job.stderr.read().decode()) for job in jobs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "already exists (--no-clobber)" in loser
    winner = (STORY, str(small))[[code for code, _ in results].index(0)]
    (tmp_path / "ref").mkdir()
    reference_run = invoke(
        "tokenize", winner, "--to", "llmc", "--shard-tokens", "300",
        "-o", str(tmp_path / "ref" / "fw.bin"), "-q",
    )  # fmt: skip
    assert reference_run.returncode == 0
    written = {p.name: p.read_bytes() for p in tmp_path.glob("fw*")}
    reference = {p.name: p.read_bytes() for p in (tmp_path / "ref").glob("fw*")}
    assert written.keys() == reference.keys()
    shards = {k: v for k, v in written.items() if k.endswith(".bin")}
    assert shards == {k: v for k, v in reference.items() if k.endswith(".bin")}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


# ----------------------------------------------------------------- a train/validation pair


@pytest.mark.parametrize(
    ("to", "name", "val_files"),
    [
        (None, "c.tokens.safetensors", ["c.val.tokens.safetensors"]),
        ("nanogpt", "train.bin", ["val.bin", "val.bin.json"]),
        ("llmc", "c.bin", ["c.val.bin.json", "c.val_000000.bin"]),
        ("megatron", "c", ["c_val.bin", "c_val.idx", "c_val.json"]),
    ],
)
def test_a_rerun_without_val_fraction_removes_the_old_validation_split(
    tmp_path, to, name, val_files
):
    out = tmp_path / name
    fmt = ["--to", to] if to else []
    proc = invoke("tokenize", str(SAMPLE), *fmt, "-o", str(out), "--val-fraction", "0.5", "-q")
    assert proc.returncode == 0, proc.stderr
    assert set(val_files) <= set(_names(tmp_path))
    assert invoke("tokenize", str(SAMPLE), *fmt, "-o", str(out), "-q").returncode == 0
    assert not set(val_files) & set(_names(tmp_path))


def test_a_validation_file_of_another_run_is_left_alone(tmp_path):
    """nanoGPT's layout: train.bin and val.bin tokenized separately. Rewriting train.bin does
    not touch a val.bin that is not the validation split of a --val-fraction run."""
    val = tmp_path / "val.bin"
    assert invoke("tokenize", STORY, "--to", "nanogpt", "-o", str(val), "-q").returncode == 0
    before = _snapshot(tmp_path)
    train = tmp_path / "train.bin"
    assert (
        invoke("tokenize", str(SAMPLE), "--to", "nanogpt", "-o", str(train), "-q").returncode == 0
    )
    assert {k: v for k, v in _snapshot(tmp_path).items() if k.startswith("val")} == before


def test_a_failed_pair_keeps_the_old_pair(tmp_path):
    out = tmp_path / "c.tokens.safetensors"
    args = ["tokenize", STORY, "-o", str(out), "--val-fraction", "0.5", "-q"]
    assert invoke(*args).returncode == 0
    before = _snapshot(tmp_path)
    program = _FAIL_SECOND_RENAME.format(args=[args[0], str(SAMPLE), *args[2:]])
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=300)
    assert proc.returncode == 1 and b"injected" in proc.stderr, proc.stderr
    assert _snapshot(tmp_path) == before


_FAIL_SECOND_RENAME = """
import sys
import embedcli.storage.output_set as output_set
from embedcli.cli.app import main

real, calls = output_set.commit, []

def commit(temp, path, **kwargs):
    calls.append(path)
    if len(calls) == 2:
        raise OSError(5, "Input/output error (injected)")
    real(temp, path, **kwargs)

output_set.commit = commit
sys.argv = ["embedcli", *{args!r}]
main()
"""


_DIE_AT_SECOND_RENAME = _FAIL_SECOND_RENAME.replace(
    'raise OSError(5, "Input/output error (injected)")', "os._exit(137)  # as a kill -9 would"
).replace("import sys", "import os, sys")


def test_a_pair_cut_in_two_by_a_kill_is_refused_by_every_reader(tmp_path):
    """A kill -9 between the pair's two renames: a new training file beside the old
    validation file. Every reader of either side refuses it in one line; a rerun mends it."""
    out = tmp_path / "c.tokens.safetensors"
    val = tmp_path / "c.val.tokens.safetensors"
    args = ["tokenize", STORY, "-o", str(out), "--val-fraction", "0.5", "-q"]
    assert invoke(*args).returncode == 0
    program = _DIE_AT_SECOND_RENAME.format(args=[args[0], str(SAMPLE), *args[2:]])
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    for side in (out, val):
        for command in (
            ["inspect", str(side)],
            ["batch", str(side), "-T", "4", "-o", "-"],
            ["embed", str(side), "-d", "4", "-T", "4", "-o", "-"],
        ):
            proc = invoke(*command)
            assert proc.returncode == 1, command
            line = one_error_line(proc)
            assert "written by another run" in line and "run the tokenize command again" in line
    from embedcli.data import open_tokens
    from embedcli.errors import FormatError

    with pytest.raises(FormatError, match="written by another run"):
        open_tokens(str(val))
    assert invoke(*[args[0], str(SAMPLE), *args[2:]]).returncode == 0  # run again: whole
    assert invoke("inspect", str(val)).returncode == 0


def test_a_pair_whose_other_side_was_moved_away_is_read(tmp_path):
    out = tmp_path / "c.tokens.safetensors"
    args = ["tokenize", str(SAMPLE), "-o", str(out), "--val-fraction", "0.5", "-q"]
    assert invoke(*args).returncode == 0
    (tmp_path / "c.val.tokens.safetensors").rename(tmp_path / "held-out.tokens.safetensors")
    assert (
        invoke("batch", str(out), "-T", "4", "-o", str(tmp_path / "w.safetensors")).returncode == 0
    )
    assert invoke("inspect", str(tmp_path / "held-out.tokens.safetensors")).returncode == 0


def test_a_split_output_reads_back_by_the_name_given_to_o(tmp_path, story_tokens):
    out = tmp_path / "w.safetensors"
    assert _batch_split(story_tokens, out, "20KB").returncode == 0
    assert not out.exists()  # the parts and the index, never that file
    proc = invoke("inspect", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = invoke("embed", str(out), "-d", "4", "-o", str(tmp_path / "e.safetensors"), "-q")
    assert proc.returncode == 0, proc.stderr
    proc = invoke(
        "embed", str(out) + ".index.json", "-d", "4", "-o", str(tmp_path / "f.safetensors"), "-q"
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "e.safetensors").read_bytes() != b""
    from safetensors.numpy import load_file

    a, b = load_file(str(tmp_path / "e.safetensors")), load_file(str(tmp_path / "f.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_an_input_is_never_removed_as_an_older_part_of_the_output(tmp_path, story_tokens):
    """embed w.safetensors -o w.safetensors, where w.safetensors is a split: the new file
    would replace the split it reads. Refused before any work, the split untouched."""
    out = tmp_path / "w.safetensors"
    assert _batch_split(story_tokens, out, "20KB").returncode == 0
    before = _snapshot(tmp_path)
    for size in ([], ["--max-shard-size", "40KB"]):
        proc = invoke("embed", str(out), "-d", "4", "-o", str(out), "-q", *size)
        assert proc.returncode == 1
        assert "is also an input" in one_error_line(proc)
        assert _snapshot(tmp_path) == before


# ----------------------------------------------------------------- shard manifests


def _sharded(tmp_path, count, *, inputs=(str(SAMPLE),)):
    out = tmp_path / "s" / "c.tokens.safetensors"
    out.parent.mkdir(exist_ok=True)
    for i in range(count):
        proc = invoke("tokenize", *inputs, "-o", str(out), "--shard", f"{i}/{count}", "-q")
        assert proc.returncode == 0, proc.stderr
    return out.parent / "c.tokens.manifest.json"


def test_a_sharded_rerun_with_fewer_shards_leaves_no_old_shard(tmp_path):
    manifest = _sharded(tmp_path, 3)
    assert len(list(manifest.parent.glob("c-*-of-00003.tokens.safetensors"))) == 3
    _sharded(tmp_path, 2)
    listed = json.loads(manifest.read_text())["shards"]
    assert _names(manifest.parent) == sorted([*listed, manifest.name])
    assert invoke("batch", str(manifest), "-T", "4", "-o", "-").returncode == 0


@pytest.mark.parametrize(("to", "name"), [("megatron", "c"), ("nanogpt", "c.bin")])
def test_a_trainer_format_rerun_with_fewer_shards_leaves_no_old_file(tmp_path, to, name):
    """A manifest lists a Megatron shard by its prefix and a nanoGPT shard by its .bin; the
    files those stand for (a prefix's .bin and .idx, every sidecar) go with the old shard."""
    out = tmp_path / "s" / name
    out.parent.mkdir()
    for count in (3, 2):
        for i in range(count):
            args = ("tokenize", str(SAMPLE), "--to", to, "-o", str(out), "--shard", f"{i}/{count}")
            proc = invoke(*args, "-q")
            assert proc.returncode == 0, proc.stderr
    left = _names(out.parent)
    assert not [n for n in left if "-of-00003" in n], left
    assert len([n for n in left if "-of-00002" in n]) == (6 if to == "megatron" else 4), left
    manifest = next(out.parent.glob("*.manifest.json"))
    assert invoke("batch", str(manifest), "-T", "4", "-o", "-").returncode == 0


def test_a_manifest_listing_a_shard_of_another_run_is_refused(tmp_path):
    """An older run's shard under a name the new manifest lists (the new run's shard job
    never ran, or was killed): refused, not read as part of this run."""
    manifest = _sharded(tmp_path, 2)
    old = {p.name: p.read_bytes() for p in manifest.parent.glob("c-*.safetensors")}
    _sharded(tmp_path, 2, inputs=(STORY,))  # another input: another shard_set
    first = manifest.parent / "c-00001-of-00002.tokens.safetensors"
    first.write_bytes(old[first.name])
    for command in (["batch", str(manifest), "-T", "4", "-o", "-"], ["inspect", str(manifest)]):
        proc = invoke(*command)
        assert proc.returncode == 1, command
        assert "lists shards of another run" in one_error_line(proc)


def test_a_manifest_whose_commit_was_killed_is_refused(tmp_path):
    manifest = _sharded(tmp_path, 2)
    manifest.write_text(json.dumps({INCOMPLETE: ["c-00001-of-00002.tokens.safetensors"]}, indent=2))
    for command in (["batch", str(manifest), "-T", "4", "-o", "-"], ["inspect", str(manifest)]):
        proc = invoke(*command)
        assert proc.returncode == 1, command
        assert "killed while committing" in one_error_line(proc)


@pytest.mark.parametrize("command", [["batch"], ["embed", "--dim", "8"]])
@pytest.mark.parametrize(("soft", "hard", "ok"), [(40, 4096, True), (40, 60, False)])
def test_split_outputs_raise_the_open_file_limit_or_are_refused(tmp_path, command, soft, hard, ok):
    """The output set holds every part open until it commits: parts beyond ``ulimit -n`` raise
    the soft limit to what they need, or, past the hard limit, are refused in one line with
    nothing written (they failed part way with "Too many open files" before)."""
    import shlex

    out = tmp_path / "o" / "w.safetensors"
    out.parent.mkdir()
    argv = [sys.executable, "-m", "embedcli", *command, STORY, "-T", "4", "-o", str(out), "-q",
            "--max-shard-size", "200B"]  # fmt: skip
    script = f"ulimit -Sn {soft} && ulimit -Hn {hard} && exec {shlex.join(argv)}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr.decode()
        assert (out.parent / "w.safetensors.index.json").is_file()
        assert len(list(out.parent.glob("w-*-of-*.safetensors"))) > 40
    else:
        assert "open files and this process may open 60" in one_error_line(proc)
        assert list(out.parent.iterdir()) == []
