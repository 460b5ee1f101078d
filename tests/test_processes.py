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

# The scan as a first run does it, with the CLI's SIGTERM handler installed (the one forked
# workers used to inherit), many times over, on a few small blocks with an encoder that costs
# nothing: what is under test is starting and ending the pool, not the encoders.
_MANY_SCANS = """
import signal, sys
import numpy as np
from embedcli.bpe import unicode_gaps
from embedcli.cli.errors import on_sigterm

signal.signal(signal.SIGTERM, on_sigterm)
unicode_gaps.PLANES = ((0, 2048),)
unicode_gaps.BLOCK = 256

def encode(text):
    return np.frombuffer(text.encode("utf-32-le"), np.uint32)

for run in range(int(sys.argv[1])):
    assert unicode_gaps.find_gaps(encode, encode, processes=2) == []
print("done", flush=True)
"""


def test_the_gap_scan_ends_its_workers_every_time(tmp_path):
    """Before the fix the 14th to 24th of these runs hung at the pool's end (a worker that
    survived Pool.terminate's SIGTERM waiting for a lock its parent held). The deadline only
    turns a hang into a failure: the 200 runs take about 2 s."""
    proc = subprocess.run(
        [sys.executable, "-c", _MANY_SCANS, "200"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"


_SIGNALS_OF_WORKERS = """
import json, os, signal
from embedcli.cli.errors import on_sigterm
from embedcli.processes import ordered_map

def signals(_):
    return os.getpid(), int(signal.getsignal(signal.SIGINT)), int(signal.getsignal(signal.SIGTERM))

signal.signal(signal.SIGTERM, on_sigterm)
print(json.dumps([os.getpid(), list(ordered_map(signals, range(8), 2))]))
"""


def test_workers_ignore_ctrl_c_and_die_of_sigterm():
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNALS_OF_WORKERS], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    parent, results = json.loads(proc.stdout)
    assert parent not in {pid for pid, _, _ in results}, "nothing ran in a worker"
    assert {(i, t) for _, i, t in results} == {(int(signal.SIG_IGN), int(signal.SIG_DFL))}


_FAILING_ITEM = """
import json, os
from embedcli.processes import ordered_map

def work(i):
    if i == 3:
        raise ValueError("item 3")
    return os.getpid()

pids = set()
try:
    for pid in ordered_map(work, range(40), 2):
        pids.add(pid)
except ValueError as exc:
    print(json.dumps([str(exc), sorted(pids)]), flush=True)
"""


def test_an_error_in_a_worker_ends_the_pool_and_its_workers():
    proc = subprocess.run(
        [sys.executable, "-c", _FAILING_ITEM], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    message, pids = json.loads(proc.stdout)
    assert message == "item 3" and pids
    for pid in pids:  # joined before the error reached the caller
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_single_worker_or_item_runs_in_this_process():
    from embedcli.processes import ordered_map

    assert list(ordered_map(_pid, [0], 4)) == [os.getpid()]
    assert list(ordered_map(_pid, range(3), 1)) == [os.getpid()] * 3


def _pid(_: int) -> int:
    return os.getpid()


# The real CLI in its first run (an empty cache): the reference's first block, in a worker,
# says so and its pid on stdout, then waits for a byte on stdin (inherited from the parent),
# which the test writes once it has signalled the parent. The signal lands while the scan is
# under way, proven by that line.
_MID_SCAN = """
import os, sys
import embedcli.bpe.unicode_gaps as gaps
from embedcli.cli.app import main

real = gaps._reference_ids

def blocking(block):
    if block[0] == 0:
        print("scanning", os.getpid(), flush=True)
        os.read(0, 1)
    return real(block)

gaps._reference_ids = blocking
sys.argv = ["embedcli", *sys.argv[1:]]
main()
"""


@pytest.mark.skipif(not GIGATOKEN, reason="gigatoken (the fast extra) is not installed")
@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "Interrupted."), (signal.SIGTERM, 143, "Terminated.")],
)
def test_a_signal_during_the_gap_scan_ends_the_run_and_its_workers(tmp_path, sig, code, word):
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
    line = proc.stdout.readline().split()
    assert line[:1] == [b"scanning"], proc.communicate(timeout=120)
    worker = int(line[1])
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole group, workers included
    else:
        proc.send_signal(sig)  # kill PID, timeout(1), a scheduler: the parent alone
    _, err = proc.communicate(b"go", timeout=120)  # the blocked block may finish now
    assert proc.returncode == code, err
    assert err.decode().strip().splitlines()[-1] == word
    with pytest.raises(ProcessLookupError):  # no orphan worker
        os.kill(worker, 0)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert not any((tmp_path / "cache").glob("unicode-gaps-*"))  # measured again next time


@pytest.mark.skipif(not GIGATOKEN, reason="gigatoken (the fast extra) is not installed")
def test_a_first_run_shows_the_unicode_check_before_the_run_starts(tmp_path, monkeypatch):
    """issue 32: a first run sat silent (its bar at 0% or 100%) while the once-per-machine
    check of the fast engine's Unicode tables ran; now the check has its own progress line,
    block by block, before the run's own."""
    from embedcli import run_tokenize
    from embedcli.bpe import engines, unicode_gaps
    from embedcli.options import TokenizeOptions

    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(unicode_gaps, "PLANES", ((0, 2048),))  # 8 blocks: the same path, fast
    monkeypatch.setattr(unicode_gaps, "BLOCK", 256)
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
    assert shown[0] == (unicode_gaps.SCANNING, 8, "blocks", 8)
    assert shown[1][0] == "tokenize"
