"""The ``firstruns`` section of ``make bench``: many first runs on a new machine (issue 48).

Each run is ``embedcli tokenize`` with an empty cache directory of its own, so it measures the
first use's Unicode-gap sample (gigatoken against the reference) as a fresh machine and CI
do, once on GPT-2 and once on a byte-level BPE ``tokenizer.json`` trained here. A run that hangs is killed at a generous deadline and counted; the report is the count that completed and
the slowest.

    python benchmarks/first_runs.py [RUNS]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DEADLINE_S = 300  # a hang, not a slow run: a first run takes seconds


def first_runs(tmp: Path, runs: int, tokenizer: list[str], label: str) -> tuple[int, int, float]:
    """(completed, hung, slowest seconds) of ``runs`` first runs."""
    story = ROOT / "sample_data" / "the-lighthouse.txt"
    completed = hung = 0
    slowest = 0.0
    for k in range(runs):
        cache = tmp / f"cache-{label}-{k}"  # a new machine's: nothing cached
        env = {**os.environ, "EMBEDCLI_CACHE_DIR": str(cache)}
        command = [
            PY,
            "-m",
            "embedcli",
            "tokenize",
            str(story),
            *tokenizer,
            "--backend",
            "gigatoken",
        ]
        command += ["--eot", "none", "-o", str(tmp / "out.safetensors"), "-q"]
        started = time.perf_counter()
        try:
            subprocess.run(command, env=env, check=True, timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            hung += 1
            continue
        slowest = max(slowest, time.perf_counter() - started)
        if not any(cache.glob("unicode-verdicts-*.json")):
            raise SystemExit(f"run {k} did not measure the Unicode gaps (no cache entry)")
        completed += 1
    return completed, hung, slowest


def bench_first_runs(tmp: Path, runs: int = 50) -> None:
    from run import row
    from tokenizers_bench import _train

    docs = (ROOT / "sample_data" / "the-lighthouse.txt").read_text(encoding="utf-8").split("\n\n")
    trained = _train(tmp / "bpe", docs * 20, nfkc=False)
    for name, tokenizer in (("GPT-2", []), ("tokenizer.json", ["--tokenizer", str(trained)])):
        done, hung, slowest = first_runs(tmp, runs, tokenizer, name.replace(".", "-"))
        row(f"first runs, {name}", f"{done}/{runs} completed, {hung} hung, slowest {slowest:.2f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    with tempfile.TemporaryDirectory(prefix="embedcli-firstruns-") as scratch:
        bench_first_runs(Path(scratch), int(sys.argv[1]) if len(sys.argv) > 1 else 50)
