"""Start-up of a small command (issue 23): the parsed-ranks cache, the reference engine for
small inputs, and no rich for a quiet run. Times live in ``make bench`` (section ``startup``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from embedcli.bpe import cache
from embedcli.bpe.encodings import R50K_SHA256, _load_bundled_ranks, _named_encoding, get_encoding
from embedcli.bpe.engines import SMALL_INPUT_BYTES, choose_backend

from conftest import SAMPLE


def _fail_to_load():
    raise AssertionError("loaded from source although the cache holds the table")


def test_rank_cache_round_trips_and_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path))
    reference = _load_bundled_ranks()
    first = cache.cached_ranks(R50K_SHA256, _load_bundled_ranks)
    assert list(first.items()) == list(reference.items())  # same tokens, ranks and order
    again = cache.cached_ranks(R50K_SHA256, _fail_to_load)
    assert list(again.items()) == list(reference.items())


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic"])
def test_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path))
    table = {b"a": 0, b"bc": 1, b"\xff\x00": 2}
    cache.cached_ranks("d" * 64, lambda: table)
    entry = next(tmp_path.glob("ranks-*"))
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[:-2]
    elif damage == "flip":
        data[-1] ^= 1
    else:
        data[:5] = b"XXXXX"
    entry.write_bytes(bytes(data))
    calls = []
    rebuilt = cache.cached_ranks("d" * 64, lambda: calls.append(1) or table)
    assert rebuilt == table and calls == [1]
    assert cache.cached_ranks("d" * 64, _fail_to_load) == table  # written back whole


def test_unwritable_cache_only_costs_speed(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(blocker / "cache"))
    _named_encoding.cache_clear()
    try:
        assert get_encoding("gpt2").encode("Hello, world") == [15496, 11, 995]
    finally:
        _named_encoding.cache_clear()


def test_small_input_keeps_the_reference_engine():
    chosen = choose_backend("auto", "gpt2", "special", SMALL_INPUT_BYTES - 1)
    assert chosen.name == "tiktoken" and "under 1 MiB" in chosen.note
    assert choose_backend("tiktoken", "gpt2", "special", 10).note is None
    pytest.importorskip("gigatoken")
    assert choose_backend("auto", "gpt2", "special", SMALL_INPUT_BYTES).name == "gigatoken"
    assert choose_backend("auto", "gpt2", "special", None).name == "gigatoken"  # a pipe
    assert choose_backend("gigatoken", "gpt2", "special", 10).name == "gigatoken"  # as asked


def test_small_file_records_the_engine_that_encoded(tmp_path):
    from safetensors import safe_open

    from conftest import invoke

    out = tmp_path / "t.safetensors"
    proc = invoke("tokenize", str(SAMPLE / "the-lighthouse.txt"), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    with safe_open(str(out), "np") as f:
        assert f.metadata()["tokenizer_backend"] == "tiktoken"


def test_quiet_run_imports_no_rich(tmp_path):
    """Success with -q prints nothing, so rich (46 ms of imports) stays unloaded."""
    code = (
        "import sys, json\n"
        "from embedcli.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "rich = sorted(m for m in sys.modules if m.split('.')[0] == 'rich')\n"
        "print(json.dumps([status, rich]))\n"
    )
    story, out = str(SAMPLE / "the-lighthouse.txt"), str(tmp_path / "q.safetensors")
    argv = [sys.executable, "-c", code, "tokenize", story, "-o", out, "-q"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    status, rich = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status in (0, None) and rich == [], proc.stderr


def test_a_run_builds_only_the_command_it_names():
    from embedcli.cli.app import app, for_argv

    names = lambda a: [c.callback.__name__ for c in a.registered_commands]  # noqa: E731
    assert names(for_argv(["tokenize", "x.txt", "-q"])) == ["tokenize"]
    assert names(for_argv(["-v", "inspect", "x.safetensors"])) == ["inspect"]
    assert names(for_argv(["batch", "--help"])) == ["batch"]
    assert names(app) == ["tokenize", "batch", "embed", "inspect", "mix"]
    for argv in ([], ["--help"], ["--version"], ["tokenze"], ["-v"], ["--help", "tokenize"]):
        assert for_argv(argv) is app, argv  # the group's own help, version and suggestions


def test_the_group_still_lists_and_suggests_every_command():
    from conftest import invoke

    listed = invoke("--help")
    assert listed.returncode == 0
    for name in ("tokenize", "batch", "embed", "inspect", "mix"):
        assert name.encode() in listed.stdout
    typo = invoke("tokenze", "x.txt")
    assert typo.returncode == 2 and b"tokenize" in typo.stderr
