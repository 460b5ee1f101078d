"""The ``s3`` section of ``make bench``: tokenize a ~70 MB Parquet corpus (four objects) from a
local S3 server (SeaweedFS, started here on free ports, as the tests do) against the same files
on local disk, in the same run (issue 24: at most 1.3x), and peak memory with the objects whole
and quartered (flat in the object size). Same ids on both sides, checked.

Then the loader (issue 34): one pass of ``create_dataloader`` (batch 32, T=1024) over a
four-shard manifest of those tokens, from the bucket with a cold cache and a warm one, against
the same files on local disk (goals: warm within 1.2x of local, cold within 3x); the batches
are checked equal.
"""

from __future__ import annotations

import os
from pathlib import Path

SPLIT = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
text, out, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = [d for d in open(text, encoding="utf-8").read().split("\\n\\n") if d]
step = -(-len(docs) // parts)
for k in range(parts):
    pq.write_table(pa.table({"text": docs[k * step : (k + 1) * step]}),
                   f"{out}/part-{k:02d}.parquet", row_group_size=2048)
print(len(docs))
"""

UPLOAD = """
import os, sys, s3fs
fs = s3fs.S3FileSystem()
if not fs.exists(sys.argv[2].split("/")[0]):
    fs.mkdir(sys.argv[2].split("/")[0])
fs.put(sys.argv[1] + "/", sys.argv[2] + "/", recursive=True)
"""


LOADER = """
import hashlib, sys, time
t0 = time.perf_counter()
from embedcli.data import create_dataloader
path, cache, shuffle = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
kw = dict(cache_dir=cache) if path.startswith("s3://") else {}
loader = create_dataloader(path, 32, 1024, shuffle=shuffle, seed=1, **kw)
digest, n = hashlib.sha256(), 0
for inputs, targets in loader:
    digest.update(inputs.numpy().tobytes())
    n += inputs.shape[0]
print(n, time.perf_counter() - t0, digest.hexdigest()[:16])
"""

CLIENT = """
import s3fs
s3fs.S3FileSystem().find("bench/p4")
"""

SAME_IDS = """
import sys
from safetensors.numpy import load_file
base = load_file(sys.argv[1])["ids"]
print(all((load_file(p)["ids"] == base).all() for p in sys.argv[2:]))
"""


def bench_s3(tmp: Path, repeats: int = 3) -> None:
    import json
    import subprocess

    from run import PY, ROOT, child, measure, row

    # The corpus, the server and every check run in children: a child's peak memory (wait4)
    # starts from this parent's, which must stay small.
    make_text = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); from run import corpus; corpus(__import__('pathlib').Path(sys.argv[1]), 70, seed=7)"
    text = tmp / "s3.txt"
    measure(child(make_text, str(text)))
    for parts in (4, 16):
        (tmp / f"p{parts}").mkdir()
        docs = int(measure(child(SPLIT, str(text), str(tmp / f"p{parts}"), str(parts)))["stdout"])
    local = tmp / "p4"
    size = sum(p.stat().st_size for p in local.iterdir()) / 1e6
    server = subprocess.Popen(
        [PY, str(ROOT / "tests" / "s3server.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        env = json.loads(server.stdout.readline() or "{}")  # type: ignore[union-attr]
        if "AWS_ENDPOINT_URL" not in env:
            print(f"\ns3: skipped, no S3 server here ({env.get('unavailable', 'no answer')})")
            return
        os.environ.update(env)
        for parts in (4, 16):
            measure(child(UPLOAD, str(tmp / f"p{parts}"), f"bench/p{parts}"))
        print(
            f"\ns3: {text.stat().st_size / 1e6:.0f} MB of text, {docs:,} documents in 4 Parquet "
            f"objects ({size:.0f} MB), SeaweedFS on this machine; best of {repeats}, alternated"
        )
        runs: dict[str, list[dict]] = {"local": [], "s3": [], "s3 16 objects": [], "client": []}
        inputs = {"local": str(local), "s3": "s3://bench/p4/", "s3 16 objects": "s3://bench/p16/"}
        outs = {name: tmp / f"{name.replace(' ', '-')}.tokens.safetensors" for name in inputs}
        for _ in range(repeats):
            for name, source in inputs.items():
                argv = [PY, "-m", "embedcli", "tokenize", source, "-o", str(outs[name]), "-q"]
                runs[name].append(measure(argv))
            runs["client"].append(measure(child(CLIENT)))
        best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
        peak = {name: max(r["peak_mib"] for r in rs) for name, rs in runs.items()}
        for name in inputs:
            row(
                f"embedcli tokenize {inputs[name] if name != 'local' else 'p4/ (local disk)'}",
                f"{best[name]:6.2f} s  {size / best[name]:6.1f} MB/s  peak {peak[name]:5.0f} MiB",
            )
        same = measure(child(SAME_IDS, *map(str, outs.values())))["stdout"].strip()
        row(
            "s3 / local time",
            f"{best['s3'] / best['local']:6.2f}  (target <= 1.3; same ids: {same})",
        )
        gap = best["s3"] - best["local"]
        row("S3 client start (import s3fs, one listing)", f"{best['client']:6.2f} s")
        row("s3 - local - client start", f"{gap - best['client']:6.2f} s  (what streaming costs)")
        row(
            "peak, 4 objects of 8 MB against 16 of 2 MB",
            f"{peak['s3']:5.0f} / {peak['s3 16 objects']:5.0f} MiB  (local {peak['local']:.0f})",
        )
        _bench_loader(tmp, text, repeats)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait()


def _bench_loader(tmp: Path, text: Path, repeats: int) -> None:
    import shutil

    from run import PY, child, measure, row

    shards = tmp / "loader"
    shards.mkdir()
    out = shards / "c.tokens.safetensors"
    for i in range(4):
        measure([PY, "-m", "embedcli", "tokenize", str(text), "-o", str(out), "--shard",
                 f"{i}/4", "-q"])  # fmt: skip
    measure(child(UPLOAD, str(shards), "bench/loader"))
    size = sum(p.stat().st_size for p in shards.glob("c-*")) / 1e6
    manifest = "c.tokens.manifest.json"
    print(f"\nloader from s3: a manifest of 4 shards, {size:.0f} MB of ids; batch 32, T=1024; "
          f"whole process, best of {repeats}")  # fmt: skip
    for shuffle in ("0", "1"):
        runs: dict[str, list[float]] = {"local": [], "s3 cold": [], "s3 warm": []}
        digests = set()
        for _ in range(repeats):
            cache = tmp / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            for name, path in (("local", str(shards / manifest)),
                               ("s3 cold", f"s3://bench/loader/{manifest}"),
                               ("s3 warm", f"s3://bench/loader/{manifest}")):  # fmt: skip
                got = measure(child(LOADER, path, str(cache), shuffle))
                windows, _, digest = got["stdout"].split()
                runs[name].append(got["seconds"])
                digests.add(digest)
        best = {name: min(times) for name, times in runs.items()}
        order = "shuffled" if shuffle == "1" else "in order"
        for name, seconds in best.items():
            ratio = "" if name == "local" else f"  {seconds / best['local']:.2f}x local"
            row(f"loader, {order}, {name}", f"{seconds:6.2f} s  {int(windows):,} windows{ratio}")
        row(f"loader, {order}: the same batches", str(len(digests) == 1))
