"""What a new user tripped over (issue 16), replayed: each command that misled, and what it says now."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import SAMPLE, invoke, run_embedcli

STORY = str(SAMPLE / "the-lighthouse.txt")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["embed", STORY, "--pos", "rotary"], "'rotary' is not one of learned, sinusoidal, none"),
        (["batch", STORY, "--dtype", "int8"], "'int8' is not one of int64, int32"),
        (["batch", STORY, "-T", "0"], "must be at least 1"),
        (["batch", STORY, "-T", "abc"], "expects a whole number"),
        (["tokenize", STORY, "--val-fraction", "2"], "must be from 0.0 to 1.0"),
        (["tokenize", STORY, "--val-fraction", "half"], "'half' expects a number"),
        (["tokenize", STORY, "--to", "parquet"], "is not one of safetensors, nanogpt"),
    ],
)
def test_bad_values_are_one_line_in_embedcli_words(tmp_path, args, says):
    proc = invoke(*args, "-o", str(tmp_path / "x.safetensors"))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Value error" not in err
    assert "Input should" not in err and "--help" in err


def test_float_dtype_aliases(tmp_path):
    out = tmp_path / "e.safetensors"
    proc = invoke("embed", STORY, "-T", "4", "-d", "4", "--dtype", "fp16", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert load_file(str(out))["embeddings"].dtype.name == "float16"


def test_verbose_after_the_command(tmp_path):
    proc = run_embedcli("batch", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "w"), "-v")
    assert proc.returncode == 1 and b"Traceback" in proc.stderr


def test_options_without_effect_are_named(tmp_path):
    out = str(tmp_path / "w.safetensors")
    proc = invoke("batch", STORY, "-T", "4", "--seed", "5", "-o", out)
    assert proc.returncode == 0 and b"--seed has no effect without --shuffle" in proc.stderr
    quiet = invoke("batch", STORY, "-T", "4", "--seed", "5", "--shuffle", "-o", out)
    assert b"no effect" not in quiet.stderr


@pytest.mark.parametrize("command", ["tokenize", "batch", "embed", "inspect", "mix"])
def test_help_reads_whole_at_80_columns(command):
    proc = invoke(command, "--help", env={"COLUMNS": "80"})
    page = proc.stdout.decode()
    assert proc.returncode == 0 and "…" not in page and "<bool>" not in page


def test_batched_layout_is_the_same_bytes_reshaped(tmp_path):
    flat, batched = tmp_path / "f.safetensors", tmp_path / "b.safetensors"
    args = ["embed", STORY, "-T", "4", "-B", "8", "-d", "4", "-q"]
    assert invoke(*args, "-o", str(flat)).returncode == 0
    assert invoke(*args, "--batched", "-o", str(batched)).returncode == 0
    a, b = load_file(str(flat))["embeddings"], load_file(str(batched))["embeddings"]
    assert b.shape == (a.shape[0] // 8, 8, 4, 4) and (b.reshape(a.shape) == a).all()
    refused = invoke(*args, "--batched", "--keep-last", "-o", str(tmp_path / "x"))
    assert refused.returncode == 2 and b"--batched needs whole batches" in refused.stderr


def test_stale_temporary_files_are_reported_not_deleted(tmp_path):
    out = tmp_path / "w.safetensors"
    stale = tmp_path / ".w.safetensors.k3j2h1.tmp"
    stale.write_bytes(b"x" * 700)
    proc = invoke("batch", STORY, "-T", "4", "-o", str(out))
    err = proc.stderr.decode()
    assert proc.returncode == 0 and stale.exists()
    assert ".w.safetensors.k3j2h1.tmp" in err and "rm " in err


def test_compressed_input_counts_the_text(tmp_path):
    import gzip

    from embedcli import run_tokenize
    from embedcli.cli.render import stage_facts

    text = (SAMPLE / "the-lighthouse.txt").read_bytes()
    (tmp_path / "s.txt.gz").write_bytes(gzip.compress(text))
    result = run_tokenize([str(tmp_path / "s.txt.gz")], str(tmp_path / "t.safetensors"))
    assert result.stats.text_bytes == len(text) and result.stats.input_bytes < len(text)
    facts = stage_facts(result)
    assert facts["tokens/byte"] == f"{result.stats.tokens / len(text):.3f}"
    assert "of text" in facts["input"] and "read)" in facts["input"]


def test_every_token_is_accounted_for(tmp_path):
    from embedcli import run_batch
    from embedcli.cli.render import stage_facts
    from embedcli.options import WindowOptions

    result = run_batch(
        [str(SAMPLE)],
        str(tmp_path / "w.safetensors"),
        WindowOptions(max_length=8, cross_docs=False),
    )
    plan = result.plan
    other = plan.tokens - plan.tokens_covered - plan.tail_dropped
    assert (
        other > 0
        and f"{other:,} elsewhere (document tails)" in stage_facts(result)["tokens covered"]
    )


def test_inspect_reads_a_pipe(tmp_path):
    import subprocess
    import sys

    tokens = tmp_path / "t.safetensors"
    assert invoke("tokenize", STORY, "-o", str(tokens), "-q").returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "embedcli", "inspect", "-", "--no-stats"],
        input=tokens.read_bytes(),
        capture_output=True,
    )
    assert proc.returncode == 0 and proc.stdout.decode().startswith("<stdin>")


def test_directories_say_what_they_skip_and_include_chooses(tmp_path):
    from embedcli import run_tokenize
    from embedcli.cli.render import stage_facts

    d = tmp_path / "d"
    d.mkdir()
    for name, text in {
        "notes.txt": "hi there",
        "copyright": "MIT",
        "data.csv": "a,b",
        "x.py": "1",
    }.items():
        (d / name).write_text(text)
    result = run_tokenize([str(d)], str(tmp_path / "t.safetensors"))
    assert result.stats.documents == 1
    assert result.stats.skipped == [str(d / n) for n in ("copyright", "data.csv", "x.py")]
    assert stage_facts(result)["skipped"].startswith("3 files in input directories")
    from embedcli.options import TokenizeOptions

    chosen = run_tokenize(
        [str(d)], str(tmp_path / "u.safetensors"), TokenizeOptions(include=("*.py", "*.csv"))
    )
    assert chosen.stats.documents == 2 and str(d / "notes.txt") in chosen.stats.skipped


def test_split_on_eot_makes_documents_and_keeps_the_ids(tmp_path):
    from embedcli import run_tokenize
    from embedcli.options import TokenizeOptions

    (tmp_path / "ts.txt").write_text("Once upon a time.<|endoftext|>The end.<|endoftext|>Two.")
    plain = run_tokenize([str(tmp_path / "ts.txt")], str(tmp_path / "a.safetensors"))
    split = run_tokenize(
        [str(tmp_path / "ts.txt")],
        str(tmp_path / "b.safetensors"),
        TokenizeOptions(split_on_eot=True),
    )
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert (a["ids"] == b["ids"]).all() and plain.stats.documents == 1
    assert split.stats.documents == 3 and b["doc_offsets"].tolist() == [0, 6, 10, 12]


def test_max_shard_size_follows_hugging_faces_rule(tmp_path):
    out = tmp_path / "e.safetensors"
    args = ["embed", STORY, "-T", "4", "-d", "16", "-o", str(out)]
    big = invoke(*args, "--max-shard-size", "100KB")
    err = big.stderr.decode()
    assert big.returncode == 0 and "token_embedding.weight (3.2 MB) is larger than" in err
    assert "a file of its own" in err and (tmp_path / "e.safetensors.index.json").exists()
    (tmp_path / "long.txt").write_text("word " * 3000)
    many = invoke(
        "batch",
        str(tmp_path / "long.txt"),
        "-T",
        "2",
        "--stride",
        "1",
        "-o",
        str(out),
        "--max-shard-size",
        "10B",
    )
    assert many.returncode == 2 and b"would write" in many.stderr and b"use at least" in many.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "e.safetensors"
    proc = invoke("embed", STORY, "-T", "4", "-d", "8", "--dry-run", "-o", str(out))
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "nothing written" in err and "(154, 4, 8)" in err
    assert "would write" in err and not out.exists() and not list(tmp_path.iterdir())
    tok = invoke("tokenize", STORY, "--dry-run", "-o", str(tmp_path / "t.safetensors"))
    assert tok.returncode == 0 and b"about" in tok.stderr and not list(tmp_path.iterdir())


def test_window_parts_and_flag_words(tmp_path):
    from embedcli import run_batch
    from embedcli.options import WindowOptions

    run_batch(
        [STORY], str(tmp_path / "w.safetensors"), WindowOptions(max_length=4), max_shard_size=2000
    )
    parts = sorted(str(p) for p in tmp_path.glob("w-*-of-*.safetensors"))
    assert len(parts) > 1
    one, two = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert invoke("embed", *reversed(parts), "-d", "4", "-o", str(one), "-q").returncode == 0
    index = str(tmp_path / "w.safetensors.index.json")
    assert invoke("embed", index, "-d", "4", "-o", str(two), "-q").returncode == 0
    assert (load_file(str(one))["embeddings"] == load_file(str(two))["embeddings"]).all()
    flag = invoke("batch", STORY, "--shuffle", "true", "-o", str(tmp_path / "x"))
    assert flag.returncode == 2 and b"flags such as --shuffle take no value" in flag.stderr


def test_a_large_output_is_announced_before_it_is_written(tmp_path):
    from embedcli.stages.common import LARGE_OUTPUT, announce

    heard = []
    out = str(tmp_path / "e.safetensors")
    announce(heard.append, out, [(out, LARGE_OUTPUT + 1)])
    announce(heard.append, out, [(out, LARGE_OUTPUT - 1)])  # small: not worth a word
    announce(heard.append, "/dev/null", [("/dev/null", 10 * LARGE_OUTPUT)])  # not a file
    assert heard == [f"writing 1.0 GB to {out}"]


def test_val_fraction_splits_documents_deterministically(tmp_path, enc):
    import json

    from embedcli import run_tokenize
    from embedcli.bpe.pieces import goes_to_val
    from embedcli.options import TokenizeOptions
    from embedcli.stages.tokenize import val_name

    docs = [f"Document number {i} says something." for i in range(40)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = tmp_path / "train.bin"
    opts = TokenizeOptions(special="text")
    result = run_tokenize(
        [str(path)], str(out), opts, to="nanogpt", val_fraction=0.25, split_seed=7
    )
    # the key: the file's name (it was named itself), not the path as spelled (issue 44)
    val_docs = [d for i, d in enumerate(docs) if goes_to_val(f"{path.name}:{i + 1}", 0.25, 7)]
    train_docs = [d for d in docs if d not in val_docs]
    assert 0 < len(val_docs) < len(docs) and result.val_output == str(tmp_path / "val.bin")
    for name, chosen in (("train.bin", train_docs), ("val.bin", val_docs)):
        want = [i for d in chosen for i in enc.encode_ordinary(d) + [50256]]
        assert np.fromfile(tmp_path / name, dtype="<u2").tolist() == want
    assert result.stats.documents == len(train_docs) and result.stats.val.documents == len(val_docs)
    again = run_tokenize(
        [str(path)], str(tmp_path / "b.tokens.safetensors"), val_fraction=0.25, split_seed=7
    )
    assert again.stats.val.documents == len(val_docs)
    assert (
        val_name("x/corpus.tokens.safetensors", (".tokens.safetensors",))
        == "x/corpus.val.tokens.safetensors"
    )
    refused = invoke(
        "tokenize", str(path), "--val-fraction", "0.1", "--shard", "0/2", "-o", str(tmp_path / "s")
    )
    assert refused.returncode == 2 and b"--val-fraction" in refused.stderr


def test_the_build_is_silent_and_ships_the_ranks(tmp_path):
    import subprocess
    import sys
    import zipfile

    from conftest import ROOT

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "BuildBackendWarning" not in proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("embedcli-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "embedcli/assets/gpt2.tiktoken.gz" in names and "embedcli/py.typed" in names


def test_make_offers_the_cpu_torch_index():
    import shutil
    import subprocess

    from conftest import ROOT

    if shutil.which("make") is None:
        pytest.skip("no make here")
    dry = subprocess.run(
        ["make", "-n", "install", "VENV=/nonexistent-venv", "TORCH_INDEX=https://x/whl/cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "--index-url https://x/whl/cpu" in dry.stdout
    helped = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True)
    assert "test-all" not in helped.stdout


# --------------------------------------------------------------------------- issue 21


def _train(path, epochs, state=None, stop_after=None, num_workers=0):
    """The README's training loop, reduced to the batches it sees: resumes from ``state``,
    stops ("is killed") after ``stop_after`` batches, returns (batches seen, saved state)."""
    from embedcli import create_dataloader

    loader = create_dataloader(
        path, batch_size=4, max_length=8, shuffle=True, seed=123, num_workers=num_workers
    )
    if state is not None:
        loader.load_state_dict(state)
    start = state["epoch"] if state else 0
    seen = []
    for epoch in range(start, epochs):
        loader.set_epoch(epoch)  # as the README's loop does, resumed or not
        for inputs, _ in loader:
            seen.append((epoch, inputs[:, 0].tolist()))
            if stop_after is not None and len(seen) == stop_after:
                return seen, loader.state_dict()
    return seen, loader.state_dict()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_readme_resume_loop_neither_repeats_nor_skips(tmp_path, num_workers):
    from embedcli import run_tokenize

    tokens = str(tmp_path / "c.tokens.safetensors")
    run_tokenize([str(SAMPLE)], tokens)
    whole, _ = _train(tokens, 2)
    per_epoch = len(whole) // 2
    for k in (3, per_epoch + 2):  # killed mid-epoch 0, and mid-epoch 1
        head, saved = _train(tokens, 2, stop_after=k, num_workers=num_workers)
        rest, _ = _train(tokens, 2, state=saved, num_workers=num_workers)
        assert head + rest == whole


def test_loader_arguments_each_get_their_own_message():
    from embedcli.data import WindowBatchSampler
    from embedcli.errors import UsageError

    for kwargs, says in [
        ({"batch_size": 0}, "batch_size must be at least 1 (got 0)"),
        ({"batch_size": 2, "world_size": 0}, "world_size must be at least 1"),
        ({"batch_size": 2, "rank": 3, "world_size": 2}, "rank must be in 0..1"),
    ]:
        with pytest.raises(UsageError, match=re.escape(says)):
            WindowBatchSampler(10, **kwargs)


def test_outputs_are_named_by_their_format(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Hello <|endoftext|> world.\n", encoding="utf-8")
    for to, names in [
        ("nanogpt", ["notes.bin", "notes.bin.json"]),
        ("llmc", ["notes_000000.bin", "notes.bin.json"]),
        ("megatron", ["notes_text_document.bin", "notes_text_document.idx"]),
        ("npy", ["notes.tokens.npy"]),
        ("safetensors", ["notes.tokens.safetensors"]),
    ]:
        proc = invoke("tokenize", str(notes), "--to", to, "-q", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert all((tmp_path / n).exists() for n in names), (to, sorted(os.listdir(tmp_path)))
    assert np.load(tmp_path / "notes.tokens.npy").size > 0
    # An -o suffix chooses the format, or is refused where it would lie.
    assert invoke("tokenize", str(notes), "-o", str(tmp_path / "ids.npy"), "-q").returncode == 0
    assert np.load(tmp_path / "ids.npy").dtype == np.uint16
    bare = invoke("tokenize", str(notes), "-o", str(tmp_path / "train.bin"))
    assert bare.returncode == 2 and b"say --to nanogpt or --to llmc" in bare.stderr
    lie = invoke("tokenize", str(notes), "-o", str(tmp_path / "x.npy"), "--to", "nanogpt")
    assert lie.returncode == 2 and b"name it" in lie.stderr and b"x.bin" in lie.stderr
    assert not (tmp_path / "train.bin").exists() and not (tmp_path / "x.npy").exists()


def test_trainer_formats_take_their_prepare_scripts_defaults(tmp_path, enc):
    notes = tmp_path / "notes.txt"
    text = "Hello <|endoftext|> world.\n"
    notes.write_text(text, encoding="utf-8")
    out = tmp_path / "train.bin"
    assert invoke("tokenize", str(notes), "--to", "nanogpt", "-o", str(out), "-q").returncode == 0
    # nanoGPT's prepare.py: encode_ordinary, then <|endoftext|> after the document.
    want = enc.encode_ordinary(text) + [enc.eot_token]
    assert np.fromfile(out, dtype=np.uint16).tolist() == want
    meta = json.loads((tmp_path / "train.bin.json").read_text())["metadata"]
    assert (meta["special"], meta["eot"]) == ("text", "after")
    book = tmp_path / "b.tokens.safetensors"
    assert invoke("tokenize", str(notes), "-o", str(book), "-q").returncode == 0
    assert load_file(str(book))["ids"].tolist() == enc.encode(text, allowed_special="all")


def test_ids_outside_the_vocabulary(tmp_path):
    bad = tmp_path / "bad.bin"
    np.array([15496, 53983, 11, 50256, 464, 60000, 13] * 10, dtype=np.uint16).tofile(bad)
    guessed = json.loads(invoke("inspect", str(bad), "--preview", "1", "--json").stdout)
    assert "nothing says which tokenizer" in json.dumps(guessed)  # no sidecar: not decoded
    shown = invoke("inspect", str(bad), "--preview", "1", "--json", "--tokenizer", "gpt2")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)["files"][0]
    assert doc["corpus"]["out_of_vocab"] == 20 and "<invalid id 53983>" in doc["decoded"][0]["text"]
    windows = invoke("batch", str(bad), "-T", "4", "-o", str(tmp_path / "w.safetensors"))
    assert windows.returncode == 0 and b"20 token ids outside the vocabulary" in windows.stderr
    refused = invoke("embed", str(bad), "-T", "4", "-d", "4", "-o", str(tmp_path / "e"))
    assert refused.returncode == 1 and b"the first: 53983 at position 1" in refused.stderr
    from embedcli import TokenWindows
    from embedcli.errors import FormatError

    with pytest.raises(FormatError, match="first: 53983 at position 1"):
        TokenWindows(str(bad), max_length=4)


def test_inspect_reads_a_shard_manifest(tmp_path):
    for i in range(2):
        args = ["tokenize", str(SAMPLE), "-o", str(tmp_path / "s.tokens.safetensors")]
        assert invoke(*args, "--shard", f"{i}/2", "-q").returncode == 0
    whole = tmp_path / "w.tokens.safetensors"
    assert invoke("tokenize", str(SAMPLE), "-o", str(whole), "-q").returncode == 0
    proc = invoke("inspect", str(tmp_path / "s.tokens.manifest.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["files"][0]
    assert (
        len(doc["parts"]) == 2 and sum(p["tokens"] for p in doc["parts"]) == doc["corpus"]["tokens"]
    )
    assert doc["corpus"]["tokens"] == load_file(str(whole))["ids"].size
    shown = invoke("inspect", str(tmp_path / "s.tokens.manifest.json"), "--no-stats")
    assert shown.returncode == 0 and b"part" in shown.stdout and b"documents" in shown.stdout


def test_diff_can_ignore_lineage_and_says_what_differs(tmp_path):
    for i in range(2):
        args = ["tokenize", str(SAMPLE), "-o", str(tmp_path / "s.tokens.safetensors")]
        assert invoke(*args, "--shard", f"{i}/2", "-q").returncode == 0
    merged, whole = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    manifest = str(tmp_path / "s.tokens.manifest.json")
    assert invoke("batch", manifest, "-T", "4", "-o", str(merged), "-q").returncode == 0
    assert invoke("batch", str(SAMPLE), "-T", "4", "-o", str(whole), "-q").returncode == 0
    strict = invoke("inspect", str(merged), str(whole), "--diff")
    assert strict.returncode == 1 and b"tensors identical; metadata differs" in strict.stdout
    loose = invoke("inspect", str(merged), str(whole), "--diff", "--ignore-metadata")
    assert loose.returncode == 0 and b"identical" in loose.stdout


@pytest.mark.parametrize("command", ["tokenize", "batch", "embed", "inspect", "mix", None])
def test_help_is_short_and_whole_at_80_columns(command):
    args = [command, "--help"] if command else ["--help"]
    page = invoke(*args, env={"COLUMNS": "80"}).stdout.decode()
    lines = page.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert len(lines) <= 100, f"{command} --help has {len(lines)} lines"
    assert "<bool>" not in page and "{paths}" not in page
    assert not re.search(r"\[[a-z0-9]+\|", page), "choices belong in the help text"
    if command in ("batch", "embed"):
        assert "--encoding" not in page and "--help-all" in page
        full = invoke(command, "--help-all", env={"COLUMNS": "80"}).stdout.decode()
        assert "--encoding" in full and "--workers" in full
    if command == "tokenize":
        assert ".parquet" in page and "Parquet/Arrow column" in page


def test_messages_say_one_thing_once(tmp_path, monkeypatch):
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"text": "unterminated\n', encoding="utf-8")
    proc = invoke("tokenize", str(broken), "-o", str(tmp_path / "t.safetensors"))
    assert proc.returncode == 1 and b"at at" not in proc.stderr
    assert b"Unterminated string starting at column" in proc.stderr
    from embedcli.stages import staging as stage  # the spill file tokenize writes the ids to

    def full(f, ids):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stage, "write_array", full)
    out = tmp_path / "full.tokens.safetensors"
    disk = invoke("tokenize", STORY, "-o", str(out))
    assert disk.returncode == 1 and str(out).encode() in disk.stderr
    assert b"No space left on device" in disk.stderr


def test_summaries_count_in_words(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("a b c d e f g h i j k l m n o p", encoding="utf-8")
    proc = invoke("batch", str(one), "-T", "4", "-B", "2", "-o", str(tmp_path / "w"))
    err = proc.stderr.decode()
    assert "1 batch of 2" in err and "1 batches" not in err
    assert "document lengths  all 16 tokens" in err  # one document: no ".. 16.5"
    assert "whole command" in err
    limited = invoke("batch", STORY, "-T", "4", "--num-batches", "1", "-o", str(tmp_path / "n"))
    assert "not kept: --num-batches" in limited.stderr.decode()
    split = invoke("batch", STORY, "-T", "4", "--max-shard-size", "1KB", "-o", str(tmp_path / "s"))
    assert b"split the output into" in split.stderr


def test_an_interrupt_after_the_output_is_written(tmp_path, monkeypatch):
    import os
    import signal

    from embedcli.cli import render
    from embedcli.stages import batch as stage

    out = tmp_path / "w.safetensors"

    def interrupted(*args, **kwargs):  # the output is committed: Ctrl-C now
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "first_window", interrupted)
    proc = invoke("batch", STORY, "-T", "4", "-o", str(out))
    assert proc.returncode == 130 and out.exists()
    assert f"Interrupted after writing {out} (complete).".encode() in proc.stderr
    monkeypatch.undo()
    real = render.render_stage

    def summary_interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # ignored: the output is complete
        real(*args, **kwargs)

    monkeypatch.setattr(render, "render_stage", summary_interrupted)
    again = invoke("batch", STORY, "-T", "4", "-o", str(out))
    assert again.returncode == 0 and b"Interrupted" not in again.stderr


def test_a_terminal_on_stdin_is_told_what_is_read(tmp_path):
    import pty
    import subprocess
    import sys

    primary, secondary = pty.openpty()
    out = tmp_path / "t.safetensors"
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedcli", "tokenize", "-o", str(out), "-q"],
        stdin=secondary,
        stderr=subprocess.PIPE,
    )
    os.close(secondary)
    first = proc.stderr.readline()  # the program speaks before it reads
    os.write(primary, b"hello there\n\x04")  # a line, then Ctrl-D
    _, rest = proc.communicate(timeout=60)
    os.close(primary)
    assert b"reading text from the terminal; end it with Ctrl-D" in first
    assert proc.returncode == 0, rest and out.exists()
