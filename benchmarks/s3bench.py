"""The ``s3`` section of ``make bench``: tokenize a ~70 MB Parquet corpus (four objects) from a
local S3 server (SeaweedFS, started here on free ports, as the tests do) against the same files
on local disk, in the same run (issue 24: at most 1.3x), and peak memory with the objects whole
and quartered (flat in the object size). Same ids on both sides, checked.
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
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait()
