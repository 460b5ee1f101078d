"""End to end: the real ``embedcli`` executable as a subprocess, as shells and Makefiles run it.

Atomic outputs, inputs never destroyed, pipes, signals, special files, disk and memory limits,
byte-identical reruns and pathological text.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load, load_file

from conftest import SAMPLE, imported_modules, invoke, run_embedcli

STORY = str(SAMPLE / "the-lighthouse.txt")


def leftovers(directory: Path) -> list[str]:
    return sorted(
        p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def tokens(tmp_path) -> Path:
    out = tmp_path / "tokens.safetensors"
    invoke("tokenize", str(SAMPLE), "-o", str(out), "-q", check=True)
    return out


# --------------------------------------------------------------------------- atomic outputs


def test_failed_run_leaves_previous_output_untouched(tmp_path, tokens):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"previous contents")
    proc = invoke("batch", str(tokens), "-o", str(out), "-T", "100000")
    assert proc.returncode == 1
    one_error_line(proc)
    assert out.read_bytes() == b"previous contents"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "Interrupted."), (signal.SIGTERM, 143, "Terminated.")],
)
def test_signal_mid_embed_leaves_nothing_behind(tmp_path, sig, code, word):
    """The signal lands while embed is writing its output: the real embedcli runs in a
    subprocess whose embedding loop, once its temporary output is open, says so on stdout and
    waits for the signal. No clock is raced: the test signals only after reading that line."""
    out = tmp_path / "e.safetensors"
    out.write_bytes(b"previous")
    program = _MID_WRITE.format(args=["embed", STORY, "-o", str(out), "-T", "4", "-d", "256", "-q"])
    proc = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:  # a failed check never leaves the paused child behind
        line = proc.stdout.readline()
        assert line == b"writing\n", line
        others = sorted(p.name for p in tmp_path.iterdir() if p.name != out.name)
        assert [name.rsplit(".", 1)[-1] for name in others] == ["tmp"], others
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert err.decode().strip() == word
    assert out.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


# The embedding loop says it has begun writing (its output file open) and waits for a signal.
_MID_WRITE = """
import signal, sys
import embedcli.stages.embed_plan as plan
from embedcli.cli.app import main

def stream_embeddings(*args, **kwargs):
    print("writing", flush=True)
    while True:
        signal.pause()

plan.stream_embeddings = stream_embeddings
sys.argv = ["embedcli", *{args!r}]
main()
"""


def test_sigint_mid_tokenize_stops_workers_quietly(tmp_path):
    """Ctrl-C while documents are being encoded by the workers. The input is a FIFO: once a
    write of several MB into it returns, embedcli has read (and is encoding) most of it and is
    still running, waiting for the rest; no clock is raced."""
    fifo = tmp_path / "in.txt"
    os.mkfifo(fifo)
    out = tmp_path / "t.safetensors"
    args = ["tokenize", str(fifo), "-o", str(out), "-q", "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    with open(fifo, "wb") as writer:
        chunk = b"All the words of a long story, told again and again. " * 20_000  # 1 MB
        for _ in range(8):
            writer.write(chunk)  # blocks until embedcli has read all but a pipe's buffer
        writer.flush()
        proc.send_signal(signal.SIGINT)
    # Ctrl-C reaches the whole pipeline, the producer too: the input ends. (A signal that
    # lands on a worker thread does not interrupt the main thread's read of a pipe.)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().strip() == "Interrupted."  # no worker tracebacks
    assert not out.exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- inputs and outputs


@pytest.mark.parametrize("stage", ["tokenize", "batch", "embed"])
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_output_that_is_an_input_is_refused(tmp_path, tokens, stage, how):
    source = tmp_path / "in.txt" if stage == "tokenize" else tokens
    if stage == "tokenize":
        source.write_text("some text to keep", encoding="utf-8")
    before = source.read_bytes()
    target = tmp_path / "alias"
    if how == "same":
        target = source
    elif how == "symlink":
        target.symlink_to(source)
    else:
        os.link(source, target)
    extra = {"tokenize": [], "batch": ["-T", "4"], "embed": ["-T", "4", "-d", "8"]}[stage]
    proc = invoke(stage, str(source), "-o", str(target), *extra)
    assert proc.returncode == 1
    assert "is also an input" in one_error_line(proc)
    assert source.read_bytes() == before


@pytest.mark.parametrize("stage", ["tokenize", "batch", "embed"])
def test_directory_input_protects_its_files(tmp_path, stage):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha beta gamma delta epsilon zeta", encoding="utf-8")
    proc = invoke(
        stage, str(docs), "-o", str(docs / "a.txt"), *(["-T", "2"] if stage != "tokenize" else [])
    )
    assert proc.returncode == 1 and "is also an input" in one_error_line(proc)
    assert (docs / "a.txt").read_text() == "alpha beta gamma delta epsilon zeta"


def test_existing_output_replaced_unless_no_clobber(tmp_path, tokens):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"old")
    assert invoke("batch", str(tokens), "-o", str(out), "-T", "4", "-q").returncode == 0
    assert load_file(str(out))["inputs"].shape[1] == 4
    kept = out.read_bytes()
    proc = invoke("batch", str(tokens), "-o", str(out), "-T", "8", "--no-clobber")
    assert proc.returncode == 1 and "already exists (--no-clobber)" in one_error_line(proc)
    assert out.read_bytes() == kept


def test_new_output_gets_umask_permissions(tmp_path, tokens):
    out = tmp_path / "w.safetensors"
    invoke("batch", str(tokens), "-o", str(out), "-T", "4", "-q", check=True)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------- pipes and special files


def test_pipeline_through_stdin_and_stdout(tmp_path, enc, story_text):
    out = tmp_path / "w.safetensors"
    shell = (
        f"cat {STORY} | {sys.executable} -m embedcli tokenize -o - -q "
        f"| {sys.executable} -m embedcli batch - -o - -T 4 -q "
        f"| {sys.executable} -m embedcli embed - -o {out} -d 8 -q"
    )
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    data = load_file(str(out))
    ids = enc.encode(story_text, allowed_special={"<|endoftext|>"})
    assert data["embeddings"].shape == (len(range(0, len(ids) - 4, 4)), 4, 8)


@pytest.mark.parametrize("stage", ["tokenize", "embed"])
def test_closed_pipe_ends_quietly(stage):
    args = [STORY, "-o", "-", "-q"] + (["-T", "4"] if stage == "embed" else [])
    producer = subprocess.Popen(
        [sys.executable, "-m", "embedcli", stage, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    head = subprocess.run(["head", "-c", "100"], stdin=producer.stdout, capture_output=True)
    producer.stdout.close()
    err = producer.stderr.read().decode()
    producer.wait(timeout=60)
    assert len(head.stdout) == 100
    assert err == ""  # no "Broken pipe" traceback, no "Exception ignored"
    assert producer.returncode in (0, 141)  # 0 if everything fit in the pipe before it closed


def test_closed_pipe_on_large_output_exits_141():
    producer = subprocess.Popen(
        [sys.executable, "-m", "embedcli", "embed", STORY, "-o", "-", "-T", "4", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    producer.stdout.read(100)
    producer.stdout.close()
    err = producer.stderr.read().decode()
    assert producer.wait(timeout=60) == 141
    assert err == ""


def test_binary_to_a_terminal_is_refused(tmp_path):
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "embedcli", "tokenize", STORY, "-o", "-"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert proc.returncode == 2
    assert b"refusing to write binary data to a terminal" in proc.stderr


def test_reading_a_fifo(tmp_path, tokens):
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    payload = tokens.read_bytes()

    def feed():
        with open(fifo, "wb") as f:
            f.write(payload)

    writer = threading.Thread(target=feed)
    writer.start()
    out = tmp_path / "w.safetensors"
    proc = run_embedcli("batch", str(fifo), "-o", str(out), "-T", "4", "-q")
    writer.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert load_file(str(out))["inputs"].shape[1] == 4


def test_special_outputs(tmp_path, tokens):
    assert invoke("batch", str(tokens), "-o", "/dev/null", "-T", "4", "-q").returncode == 0
    assert Path("/dev/null").is_char_device()  # written in place, never renamed over
    full = invoke("batch", str(tokens), "-o", "/dev/full", "-T", "4", "-q")
    assert full.returncode == 1 and "No space left on device" in one_error_line(full)
    missing = invoke("batch", str(tokens), "-o", str(tmp_path / "no" / "w.safetensors"), "-T", "4")
    assert missing.returncode == 1 and "does not exist" in one_error_line(missing)
    unwritable = invoke("tokenize", STORY, "-o", "/proc/self/x.safetensors")
    assert unwritable.returncode == 1 and "cannot write in /proc/self" in one_error_line(unwritable)
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory(tmp_path, tokens):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    proc = invoke("batch", str(tokens), "-o", str(ro / "w.safetensors"), "-T", "4")
    assert proc.returncode == 1 and "cannot write" in one_error_line(proc)
    assert list(ro.iterdir()) == []


# --------------------------------------------------------------------------- limits


def test_output_larger_than_free_disk_is_refused_before_starting(tmp_path):
    out = tmp_path / "e.safetensors"
    proc = invoke("embed", STORY, "-o", str(out), "-T", "4", "--dim", "2000000000")
    assert proc.returncode == 1
    assert "free" in one_error_line(proc)  # refused from the plan: no table was allocated
    assert not out.exists() and leftovers(tmp_path) == []


def test_unallocatable_table_is_a_clear_error():
    proc = run_embedcli("embed", STORY, "-o", "/dev/null", "-T", "4", "--dim", "1000000000")
    assert proc.returncode == 1
    assert "cannot allocate the embedding tables" in one_error_line(proc)


# --------------------------------------------------------------------------- reproducibility


def test_every_stage_is_byte_identical_run_after_run(tmp_path):
    runs = []
    for k in range(2):
        d = tmp_path / f"run{k}"
        d.mkdir()
        run_embedcli(
            "tokenize", str(SAMPLE), "-o", str(d / "t.safetensors"), "-q", check=True, cwd=d
        )
        run_embedcli(
            "batch",
            str(d / "t.safetensors"),
            "-o",
            str(d / "w.safetensors"),
            "-T",
            "4",
            "--shuffle",
            "--seed",
            "7",
            "-B",
            "3",
            "-q",
            check=True,
            cwd=d,
        )
        run_embedcli(
            "embed",
            str(d / "w.safetensors"),
            "-o",
            str(d / "e.safetensors"),
            "-d",
            "16",
            "-q",
            check=True,
            cwd=d,
        )
        run_embedcli(
            "embed",
            str(SAMPLE),
            "-o",
            str(d / "e2.safetensors"),
            "-d",
            "8",
            "-T",
            "8",
            "--shuffle",
            "--dtype",
            "bfloat16",
            "-q",
            check=True,
            cwd=d,
        )
        runs.append(
            {
                name: (d / name).read_bytes()
                for name in ("t.safetensors", "w.safetensors", "e.safetensors", "e2.safetensors")
            }
        )
    for name in runs[0]:
        assert runs[0][name] == runs[1][name], name


# --------------------------------------------------------------------------- errors and debugging


def test_exit_codes_and_debug_traceback(tmp_path):
    assert run_embedcli("--version").returncode == 0
    usage = run_embedcli("batch", STORY, "--max-length", "zero")
    assert usage.returncode == 2
    data = run_embedcli("inspect", str(tmp_path / "missing.safetensors"))
    assert data.returncode == 1 and one_error_line(data)
    debug = run_embedcli(
        "inspect", str(tmp_path / "missing.safetensors"), env={"EMBEDCLI_DEBUG": "1"}
    )
    assert debug.returncode == 1 and b"Traceback" in debug.stderr
    verbose = run_embedcli("--verbose", "inspect", str(tmp_path / "missing.safetensors"))
    assert b"Traceback" in verbose.stderr


def test_help_and_tokenize_do_not_import_torch(tmp_path):
    assert "torch" not in imported_modules("tokenize", "--help")
    out = str(tmp_path / "t.safetensors")
    assert "torch" not in imported_modules("tokenize", STORY, "-o", out, "-q")


# --------------------------------------------------------------------------- pathological text

PATHOLOGICAL = {
    "10MB_no_whitespace": lambda: "ab1!" * 2_500_000,
    "10MB_single_letter_run": lambda: "a" * 10_000_000,
    "10MB_single_line": lambda: "word and more words, " * 500_000,
    "only_endoftext": lambda: "<|endoftext|>" * 20_000,
    "nul_bytes": lambda: "a\x00b\x00\x00 c " * 20_000,
    "mixed_line_endings": lambda: "one\r\ntwo\rthree\nfour\r\n\r\r\n" * 20_000,
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(PATHOLOGICAL))
def test_pathological_text(tmp_path, enc, case):
    text = PATHOLOGICAL[case]()
    path = tmp_path / "p.txt"
    path.write_bytes(text.encode("utf-8"))
    out = tmp_path / "t.safetensors"
    proc = invoke("tokenize", str(path), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    expected = enc.encode_to_numpy(
        path.read_text(encoding="utf-8"), allowed_special={"<|endoftext|>"}
    )
    assert np.array_equal(load_file(str(out))["ids"], expected.astype(np.int32))


@pytest.mark.slow
def test_hundred_thousand_tiny_documents(tmp_path, enc):
    import json

    path = tmp_path / "tiny.jsonl"
    docs = [f"doc {i}" for i in range(100_000)]
    path.write_text("\n".join(json.dumps({"text": d}) for d in docs) + "\n", encoding="utf-8")
    proc = invoke("tokenize", str(path), "-o", "-", "-q")
    assert proc.returncode == 0, proc.stderr
    data = load(proc.stdout)
    assert data["doc_offsets"].shape == (100_001,)
    assert data["ids"].tolist() == enc.encode(
        "<|endoftext|>".join(docs), allowed_special={"<|endoftext|>"}
    )
