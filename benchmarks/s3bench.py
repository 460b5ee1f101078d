"""The ``s3`` section of ``make bench``: tokenize a ~70 MB Parquet corpus (four objects) from a
local S3 server (SeaweedFS, started here on free ports, as the tests do) against the same files
on local disk, in the same run (issue 24: at most 1.3x), and peak memory with the objects whole
and quartered (flat in the object size). Same ids on both sides, checked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SPLIT = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
text, out, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = [d for d in open(text, encoding="utf-8").read().split("\\n\\n") if d]
step = -(-len(docs) // parts)
for k in range(parts):
    pq.write_table(pa.table({"text": docs[k * step : (k + 1) * step]}),
                   f"{out}/part-{k}.parquet", row_group_size=2048)
print(len(docs))
"""

UPLOAD = """
import os, sys, s3fs
fs = s3fs.S3FileSystem()
if not fs.exists(sys.argv[2].split("/")[0]):
    fs.mkdir(sys.argv[2].split("/")[0])
fs.put(sys.argv[1] + "/", sys.argv[2] + "/", recursive=True)
"""


def bench_s3(tmp: Path, repeats: int = 3) -> None:
    from run import PY, ROOT, child, corpus, measure, row

    sys.path.insert(0, str(ROOT / "tests"))
    from s3server import Unavailable, seaweedfs

    text = corpus(tmp / "s3.txt", 70, seed=7)
    for parts in (4, 16):
        (tmp / f"p{parts}").mkdir()
        docs = int(measure(child(SPLIT, str(text), str(tmp / f"p{parts}"), str(parts)))["stdout"])
    local = tmp / "p4"
    size = sum(p.stat().st_size for p in local.iterdir()) / 1e6
    try:
        server_cm = seaweedfs(tmp / "seaweedfs")
        server = server_cm.__enter__()
    except Unavailable as exc:
        print(f"\ns3: skipped, no S3 server here ({exc})")
        return
    try:
        os.environ.update(server.env)
        for parts in (4, 16):
            measure(child(UPLOAD, str(tmp / f"p{parts}"), f"bench/p{parts}"))
        print(
            f"\ns3: {text.stat().st_size / 1e6:.0f} MB of text, {docs:,} documents in 4 Parquet "
            f"objects ({size:.0f} MB), SeaweedFS on this machine; best of {repeats}, alternated"
        )
        runs: dict[str, list[dict]] = {"local": [], "s3": [], "s3 16 objects": []}
        inputs = {"local": str(local), "s3": "s3://bench/p4/", "s3 16 objects": "s3://bench/p16/"}
        for _ in range(repeats):
            for name, source in inputs.items():
                out = tmp / f"{name.replace(' ', '-')}.tokens.safetensors"
                argv = [PY, "-m", "embedcli", "tokenize", source, "-o", str(out), "-q"]
                runs[name].append(measure(argv))
        best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
        peak = {name: max(r["peak_mib"] for r in rs) for name, rs in runs.items()}
        for name in runs:
            row(
                f"embedcli tokenize {inputs[name]}",
                f"{best[name]:6.2f} s  {size / best[name]:6.1f} MB/s  peak {peak[name]:5.0f} MiB",
            )
        same = all(
            (tmp / f"{n.replace(' ', '-')}.tokens.safetensors").read_bytes()[-4096:]
            == (tmp / "local.tokens.safetensors").read_bytes()[-4096:]
            for n in runs
        )
        row(
            "s3 / local time",
            f"{best['s3'] / best['local']:6.2f}  (target <= 1.3; same ids: {same})",
        )
        row(
            "peak, objects of 17 MB against 4 MB",
            f"{peak['s3']:5.0f} / {peak['s3 16 objects']:5.0f} MiB  (flat: the same)",
        )
    finally:
        server_cm.__exit__(None, None, None)
