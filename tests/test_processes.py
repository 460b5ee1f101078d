"""Every worker process embedcli starts comes from embedcli.processes (issue 48): a worker's
signals, ended by a sentinel after the last result and on error alike, never left behind.

The fork path runs only where a process runs no other thread, which a pytest-xdist worker never
is (execnet's thread), so these tests run the code under test in a fresh interpreter."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import SAMPLE

STORY = str(SAMPLE / "the-lighthouse.txt")

GIGATOKEN = importlib.util.find_spec("gigatoken") is not None

# A pool as a tokenize run starts and ends one, with the CLI's SIGTERM handler installed (the
# one forked workers used to inherit), many times over, on tasks that cost nothing: what is
# under test is starting and ending the pool.
_MANY_POOLS = """
import signal, sys
from embedcli.cli.errors import on_sigterm
from embedcli.processes import process_pool

signal.signal(signal.SIGTERM, on_sigterm)
for run in range(int(sys.argv[1])):
    with process_pool(2) as pool:
        assert list(pool.map(abs, range(-3, 3))) == [3, 2, 1, 0, 1, 2]
print("done", flush=True)
"""


def test_a_pool_ends_its_workers_every_time(tmp_path):
    """Before issue 48's fix the 14th to 24th of the gap scan's pools hung at their end (a
    worker that survived Pool.terminate's SIGTERM waiting for a lock its parent held). The
    deadline only turns a hang into a failure: the 200 pools take a few seconds."""
    proc = subprocess.run(
        [sys.executable, "-c", _MANY_POOLS, "200"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"


_SIGNALS_OF_WORKERS = """
import json, os, signal
from embedcli.cli.errors import on_sigterm
from embedcli.processes import process_pool

def signals(_):
    return os.getpid(), int(signal.getsignal(signal.SIGINT)), int(signal.getsignal(signal.SIGTERM))

signal.signal(signal.SIGTERM, on_sigterm)
with process_pool(2) as pool:
    print(json.dumps([os.getpid(), list(pool.map(signals, range(8)))]))
"""


def test_workers_ignore_ctrl_c_and_die_of_sigterm():
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNALS_OF_WORKERS], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    parent, results = json.loads(proc.stdout)
    assert parent not in {pid for pid, _, _ in results}, "nothing ran in a worker"
    assert {(i, t) for _, i, t in results} == {(int(signal.SIG_IGN), int(signal.SIG_DFL))}


# The real CLI in its first run (an empty cache): measuring the first use's sample says so on
# stdout, then waits for a byte on stdin (inherited from the parent), which the test writes once
# it has signalled the process. The signal lands while the measuring is under way, proven by
# that line.
_MID_SCAN = """
import os, sys
import embedcli.bpe.unicode_gaps as gaps
from embedcli.cli.app import main

real = gaps.find_gaps

def blocking(fast, reference, points, advance=lambda n: None):
    print("measuring", flush=True)
    os.read(0, 1)
    return real(fast, reference, points, advance)

gaps.find_gaps = blocking
sys.argv = ["embedcli", *sys.argv[1:]]
main()
"""


@pytest.mark.skipif(not GIGATOKEN, reason="gigatoken (the fast extra) is not installed")
@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "Interrupted."), (signal.SIGTERM, 143, "Terminated.")],
)
def test_a_signal_while_a_first_use_measures_ends_the_run(tmp_path, sig, code, word):
    out = tmp_path / "t.safetensors"
    env = {**os.environ, "EMBEDCLI_CACHE_DIR": str(tmp_path / "cache")}
    args = ["tokenize", STORY, "--backend", "gigatoken", "-o", str(out), "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _MID_SCAN, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, as a terminal job has
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    assert line == b"measuring\n", proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole group
    else:
        proc.send_signal(sig)  # kill PID, timeout(1), a scheduler
    _, err = proc.communicate(b"go", timeout=120)
    assert proc.returncode == code, err
    assert err.decode().strip().splitlines()[-1] == word
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert not any((tmp_path / "cache").glob("unicode-*"))  # nothing half-measured kept


@pytest.mark.skipif(not GIGATOKEN, reason="gigatoken (the fast extra) is not installed")
def test_a_first_run_shows_the_unicode_check_before_the_run_starts(tmp_path, monkeypatch):
    """issue 32: a first run sat silent (its bar at 0% or 100%) while the once-per-machine
    check of the fast engine's Unicode tables ran; now the check has its own progress line,
    block by block, before the run's own."""
    from embedcli import run_tokenize
    from embedcli.bpe import engines, unicode_gaps
    from embedcli.options import TokenizeOptions

    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(unicode_gaps, "PLANES", ((0, 2048),))  # 2 blocks: the same path, fast
    shown: list[tuple[str, int | None, str, int]] = []

    @contextlib.contextmanager
    def recording(description, total, unit="bytes"):
        done = [0]
        yield lambda n: done.__setitem__(0, done[0] + n)
        shown.append((description, total, unit, done[0]))

    for cached in (engines.engine_for, engines._built):
        cached.cache_clear()
    try:
        opts = TokenizeOptions(backend="gigatoken")
        run_tokenize([STORY], str(tmp_path / "t.safetensors"), opts, progress=recording)
    finally:
        for cached in (engines.engine_for, engines._built):  # no partial table outlives this
            cached.cache_clear()
    assert shown[0] == (unicode_gaps.SCANNING, 2, "blocks", 2)  # 256 + 14 characters
    assert shown[1][0] == "tokenize"
