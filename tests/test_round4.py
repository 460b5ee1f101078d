"""What a new user tripped over in the fourth trial (issue 36), replayed: what each says now."""

from __future__ import annotations

import collections
import re
import shutil

import pytest

from conftest import SAMPLE, invoke

STORY = SAMPLE / "the-lighthouse.txt"


@pytest.mark.parametrize(
    ("command", "names", "never"),
    [
        ("batch", ["--num-batches", "--stride", "--dtype int32"], "--dim"),
        ("embed", ["--num-batches", "--dim", "--dtype float16"], "--stride"),
    ],
)
def test_a_full_disk_names_the_stages_own_options(tmp_path, monkeypatch, command, names, never):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - 100, 100))
    out = tmp_path / "out.safetensors"
    proc = invoke(command, str(STORY), "-T", "4", "-o", str(out))
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "has 100 B free" in err and not out.exists(), err
    assert all(name in err for name in names) and never not in err, err


def _windows(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_a_nanogpt_stream_reads_back_from_stdin(tmp_path):
    """`tokenize -o - --to nanogpt | batch - --format nanogpt`: the windows of the .bin file.
    Unnamed, the raw ids are refused as text with the option to give."""
    import subprocess
    import sys

    import numpy as np

    stream = invoke("tokenize", str(STORY), "--to", "nanogpt", "-o", "-", "-q", check=True).stdout
    (tmp_path / "n.bin").write_bytes(stream)
    invoke("batch", str(tmp_path / "n.bin"), "-T", "16", "-o", str(tmp_path / "f.st"), check=True)
    tokenize = subprocess.Popen(
        [sys.executable, "-m", "embedcli", "tokenize", str(STORY), "--to", "nanogpt", "-o", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    piped = tmp_path / "p.st"
    batch = subprocess.run(
        [sys.executable, "-m", "embedcli", "batch", "-", "--format", "nanogpt", "-T", "16"]
        + ["-o", str(piped), "-q"],
        stdin=tokenize.stdout,
        capture_output=True,
    )
    tokenize.stdout.close()
    assert tokenize.wait() == 0 and batch.returncode == 0, batch.stderr.decode()
    want, got = _windows(tmp_path / "f.st"), _windows(piped)
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)

    unnamed = invoke("batch", "-", "-T", "16", "-o", str(tmp_path / "u.st"), input=stream)
    err = unnamed.stderr.decode()
    assert unnamed.returncode == 1 and "<stdin>: invalid UTF-8" in err, err
    assert "--format nanogpt" in err and not (tmp_path / "u.st").exists()
    odd = invoke("batch", "-", "--format", "nanogpt", "-o", str(tmp_path / "o.st"), input=b"abc")
    assert "<stdin>: 3 bytes is not a whole number of uint16 ids" in odd.stderr.decode()


@pytest.mark.parametrize(("to", "name"), [("llmc", "t_000000.bin"), ("npy", "t.npy")])
def test_llmc_and_npy_on_stdin_are_known_by_their_magic(tmp_path, to, name):
    import numpy as np

    suffix = ".npy" if to == "npy" else ".bin"
    invoke("tokenize", str(STORY), "--to", to, "-o", str(tmp_path / f"t{suffix}"), check=True)
    data = (tmp_path / name).read_bytes()
    for how, extra in (("sniffed", []), ("named", ["--format", to])):
        out = tmp_path / f"{how}.st"
        args = ("embed", "-", *extra, "-T", "8", "-d", "4", "-o", str(out), "-q")
        invoke(*args, input=data, check=True)
        invoke("embed", str(tmp_path / name), "-T", "8", "-d", "4", "-o", str(tmp_path / "f.st"))
        want, got = _windows(tmp_path / "f.st"), _windows(out)
        assert all(np.array_equal(want[k], got[k]) for k in want), how


def test_tokenize_reads_documents_only():
    proc = invoke("tokenize", "-", "--format", "nanogpt", input=b"hi")
    assert proc.returncode == 2 and "'nanogpt' is not one of auto, text" in proc.stderr.decode()


def test_a_pipeline_prints_one_line_per_piped_stage_and_the_last_in_full(tmp_path):
    """`tokenize -o - | batch - -o - | embed -`: a stage writing to a pipe says one line; the
    stage at the end, writing a file, prints its whole summary."""
    import subprocess
    import sys

    def stage(*args, stdin=None):
        return subprocess.Popen(
            [sys.executable, "-m", "embedcli", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    tokenize = stage("tokenize", str(SAMPLE), "-o", "-")
    batch = stage("batch", "-", "-T", "16", "-o", "-", stdin=tokenize.stdout)
    out = tmp_path / "e.safetensors"
    embed = stage("embed", "-", "-d", "8", "-o", str(out), stdin=batch.stdout)
    tokenize.stdout.close()
    batch.stdout.close()
    errs = [p.communicate()[1].decode() for p in (embed, batch, tokenize)]
    assert [p.returncode for p in (embed, batch, tokenize)] == [0, 0, 0], errs
    embed_err, batch_err, tokenize_err = errs
    assert re.fullmatch(
        r"embedcli tokenize: \d+ documents, [\d,]+ tokens -> <stdout> \([\d.]+ s\)\n", tokenize_err
    ), tokenize_err
    assert re.fullmatch(
        r"embedcli batch: [\d,]+ ids, \d+ windows \(\d+, 16\) int64 -> <stdout> \([\d.]+ s\)\n",
        batch_err,
    ), batch_err
    assert "╭─ embedcli embed" in embed_err and out.exists()


def test_stdout_to_a_file_keeps_the_whole_summary(tmp_path):
    import subprocess
    import sys

    with open(tmp_path / "t.safetensors", "wb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "embedcli", "tokenize", str(STORY), "-o", "-"],
            stdout=f,
            stderr=subprocess.PIPE,
        )
    assert proc.returncode == 0 and "╭─ embedcli tokenize" in proc.stderr.decode()


@pytest.mark.parametrize("limit", [100_000, 100])
def test_stdin_and_a_file_take_the_same_engine_and_give_the_same_ids(tmp_path, monkeypatch, limit):
    """A small input read from a pipe is measured by reading it ahead (issue 36): the engine,
    the ids and the metadata but the source's name are those of the same bytes in a file.
    With the read-ahead limit below the input's size, the bytes read ahead and the rest of
    the pipe join up exactly."""
    from safetensors import safe_open

    from embedcli.bpe import engines, tokenizer

    monkeypatch.setattr(tokenizer, "SMALL_INPUT_BYTES", limit)
    monkeypatch.setattr(engines, "SMALL_INPUT_BYTES", limit)
    text = STORY.read_bytes()
    assert 100 < len(text) < 100_000
    from_file, from_pipe = tmp_path / "f.safetensors", tmp_path / "p.safetensors"
    invoke("tokenize", str(STORY), "-o", str(from_file), "-q", check=True)
    invoke("tokenize", "-", "-o", str(from_pipe), "-q", input=text, check=True)
    with safe_open(str(from_file), "np") as a, safe_open(str(from_pipe), "np") as b:
        ma, mb = a.metadata(), b.metadata()
        assert (a.get_tensor("ids") == b.get_tensor("ids")).all()
    assert {k for k in ma if ma[k] != mb.get(k)} == {"sources"}, (ma, mb)


def test_the_engine_alone_is_reported_but_not_a_difference(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    ids = {"ids": np.arange(10, dtype=np.int32)}
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(ids, str(a), {"embedcli": "tokens", "tokenizer_backend": "tiktoken"})
    save_file(ids, str(b), {"embedcli": "tokens", "tokenizer_backend": "gigatoken"})
    same = invoke("inspect", "--diff", str(a), str(b))
    out = same.stdout.decode()
    assert same.returncode == 0 and "tokenizer_backend tiktoken -> gigatoken" in out, out
    assert "--strict counts it" in out and out.rstrip().endswith("identical")
    strict = invoke("inspect", "--diff", str(a), str(b), "--strict")
    assert (
        strict.returncode == 1 and "metadata differs: tokenizer_backend" in strict.stdout.decode()
    )
