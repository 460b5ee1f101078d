"""torchrun embed: two processes (gloo, CPU) write the same bytes as one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import SAMPLE, run_embedcli, story_documents, token_shards


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "embedcli",
            *args,
        ],
        capture_output=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["-T", "4", "-d", "16"],
        [
            "-T",
            "5",
            "--stride",
            "2",
            "-B",
            "3",
            "-d",
            "8",
            "--pos",
            "sinusoidal",
            "--dtype",
            "bfloat16",
        ],
    ],
)
def test_two_process_embed_is_byte_identical(tmp_path, extra):
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    proc = run_embedcli("embed", str(SAMPLE), "-o", str(one), "-q", *extra)
    assert proc.returncode == 0, proc.stderr
    proc = torchrun("embed", str(SAMPLE), "-o", str(two), *extra)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert one.read_bytes() == two.read_bytes()
    assert (
        b"processes" in proc.stderr and proc.stderr.count(b"embedcli embed") == 1
    )  # rank 0 reports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.safetensors", "two.safetensors"]


def test_more_processes_than_windows_per_rank(tmp_path):
    src = tmp_path / "w.safetensors"
    run_embedcli(
        "batch", str(SAMPLE / "articles.jsonl"), "-o", str(src), "-T", "64", "-q", check=True
    )
    one, three = tmp_path / "one.safetensors", tmp_path / "three.safetensors"
    run_embedcli("embed", str(src), "-o", str(one), "-d", "4", "-q", check=True)
    proc = torchrun("embed", str(src), "-o", str(three), "-d", "4", "-q", nproc=3)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert one.read_bytes() == three.read_bytes()


def test_rows_partition():
    import torch

    from embedcli.embedding.distributed import Group

    for n in (0, 1, 5, 100):
        for world in (1, 2, 3, 8):
            parts = [Group(r, world, r, torch.device("cpu")).rows(n) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))


def test_stdout_is_refused_under_torchrun(tmp_path):
    proc = torchrun("embed", str(SAMPLE), "-o", "-", "-T", "4", "-d", "4")
    assert proc.returncode != 0
    assert b"torchrun embed writes a regular file" in proc.stderr


def test_a_torchrun_embed_replaces_an_older_split_output_whole(tmp_path):
    """The ranks' file is one member of rank 0's OutputSet: the parts and index of an older
    split output of the same name go at the commit, as a one-process run's would."""
    out = tmp_path / "e.safetensors"
    args = ["embed", str(SAMPLE), "-o", str(out), "-T", "4", "-d", "8", "-q"]
    assert run_embedcli(*args, "--max-shard-size", "200KB").returncode == 0
    assert len(list(tmp_path.iterdir())) > 2  # parts and their index
    proc = torchrun(*args)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["e.safetensors"]
    proc = torchrun(*args, "--no-clobber")
    assert proc.returncode != 0 and b"already exists (--no-clobber)" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["e.safetensors"]


# Two ranks write one file; rank 1's rows fail as CUDA's out-of-memory error does (a
# RuntimeError). Both must end at once, rank 1 with its own error, rank 0 saying another rank
# failed, and nothing written: before the fix rank 0 waited for rank 1 until the 30-minute
# timeout of the process group.
_FAILING_RANK = """
import os, sys, torch
from embedcli.embedding.distributed import Group, write_shared

group = Group.join(torch.device("cpu"))

def rows(fd):
    if group.rank == 1:
        raise RuntimeError("CUDA out of memory (simulated)")
    os.pwrite(fd, b"x" * 8, 100)

try:
    write_shared(group, sys.argv[1], b"", 200, rows, lambda fd, at: None, 150)
except Exception as exc:
    print(f"rank {group.rank}: {type(exc).__name__}: {exc}", flush=True)
    raise SystemExit(1)
finally:
    group.close()
"""


def test_a_rank_failing_with_any_error_ends_every_rank_at_once(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(_FAILING_RANK, encoding="utf-8")
    out = tmp_path / "e.safetensors"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script), str(out)],
        capture_output=True, env=env, timeout=240,
    )  # fmt: skip
    said = proc.stdout.decode()
    assert proc.returncode != 0
    assert "rank 1: RuntimeError: CUDA out of memory (simulated)" in said, proc.stderr[-2000:]
    assert "rank 0: OutputError:" in said and "another rank failed" in said
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["fail.py"]


_CALLERS_GROUP = """
import torch, torch.distributed as dist
from embedcli.embedding.distributed import Group

dist.init_process_group("gloo")  # the caller's own process group
group = Group.join(torch.device("cpu"))
group.close()
assert dist.is_initialized(), "embedcli destroyed the caller's process group"
total = torch.tensor([1])
dist.all_reduce(total)  # still usable
print(f"ranks {int(total.item())}", flush=True)
dist.destroy_process_group()
"""


def test_a_process_group_the_caller_started_stays_theirs(tmp_path):
    script = tmp_path / "own.py"
    script.write_text(_CALLERS_GROUP, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script)],
        capture_output=True, env=env, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().count("ranks 2") == 2


_REMOTE_RANK = """
import json, sys, hashlib
import torch.distributed as dist
from embedcli.data import create_dataloader

dist.init_process_group("gloo")
url, cache, out = sys.argv[1:4]
loader = create_dataloader(url, 4, 8, shuffle=True, seed=6, equal_shares=True, cache_dir=cache,
                           num_workers=1)
seen = [hashlib.sha256(a.numpy().tobytes()).hexdigest() for a, _ in loader]
with open(f"{out}.{dist.get_rank()}", "w") as f:
    json.dump(seen, f)
dist.destroy_process_group()
"""


def test_two_gloo_ranks_read_their_shares_from_a_store_through_one_cache(tmp_path):
    """torchrun, two ranks (gloo), a file:// store (the remote path, shared by processes) and
    one cache for both: each rank's batches are its share of the local loader's, disjoint."""
    import hashlib
    import json

    from embedcli.data import create_dataloader

    text = story_documents(tmp_path / "d.jsonl", 120, 25)
    manifest = token_shards(text, tmp_path / "set" / "c.tokens.safetensors", 3)
    script = tmp_path / "rank.py"
    script.write_text(_REMOTE_RANK, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script), f"file://{manifest}", str(tmp_path / "cache"), str(tmp_path / "seen")],
        capture_output=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    shares = []
    for rank in range(2):
        mine = create_dataloader(str(manifest), 4, 8, shuffle=True, seed=6, equal_shares=True,
                                 rank=rank, world_size=2)  # fmt: skip
        want = [hashlib.sha256(a.numpy().tobytes()).hexdigest() for a, _ in mine]
        got = json.loads((tmp_path / f"seen.{rank}").read_text())
        assert got == want and got
        shares.append(set(got))
    assert not shares[0] & shares[1]
