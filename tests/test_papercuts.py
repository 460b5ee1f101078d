"""What a new user tripped over (issue 16): honest options, one-line errors, visible handling."""

from __future__ import annotations

import pytest
from safetensors.numpy import load_file

from conftest import SAMPLE, run_embedcli

STORY = str(SAMPLE / "the-lighthouse.txt")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["embed", STORY, "--pos", "rotary"], "'rotary' is not one of learned, sinusoidal, none"),
        (["batch", STORY, "--dtype", "int8"], "'int8' is not one of int64, int32"),
        (["batch", STORY, "-T", "0"], "must be at least 1"),
        (["batch", STORY, "-T", "abc"], "expects a whole number"),
        (["tokenize", STORY, "--to", "parquet"], "is not one of safetensors, nanogpt"),
    ],
)
def test_bad_values_are_one_line_in_embedcli_words(tmp_path, args, says):
    proc = run_embedcli(*args, "-o", str(tmp_path / "x.safetensors"))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Value error" not in err
    assert "Input should" not in err and "--help" in err


def test_float_dtype_aliases(tmp_path):
    out = tmp_path / "e.safetensors"
    proc = run_embedcli(
        "embed", STORY, "-T", "4", "-d", "4", "--dtype", "fp16", "-o", str(out), "-q"
    )
    assert proc.returncode == 0, proc.stderr
    assert load_file(str(out))["embeddings"].dtype.name == "float16"


def test_verbose_after_the_command(tmp_path):
    proc = run_embedcli("batch", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "w"), "-v")
    assert proc.returncode == 1 and b"Traceback" in proc.stderr


def test_options_without_effect_are_named(tmp_path):
    out = str(tmp_path / "w.safetensors")
    proc = run_embedcli("batch", STORY, "-T", "4", "--seed", "5", "-o", out)
    assert proc.returncode == 0 and b"--seed has no effect without --shuffle" in proc.stderr
    quiet = run_embedcli("batch", STORY, "-T", "4", "--seed", "5", "--shuffle", "-o", out)
    assert b"no effect" not in quiet.stderr


@pytest.mark.parametrize("command", ["tokenize", "batch", "embed", "inspect"])
def test_help_reads_whole_at_80_columns(command):
    proc = run_embedcli(command, "--help", env={"COLUMNS": "80"})
    page = proc.stdout.decode()
    assert proc.returncode == 0 and "…" not in page and "<bool>" not in page
