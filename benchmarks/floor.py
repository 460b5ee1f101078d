"""The ``floor`` section of ``make bench``: ``embed`` and ``batch`` against the least any tool
could take for the same output on this machine, measured in the same run.

The floor of ``embed`` is a bare ``python -c "import torch"`` process plus ``dd`` writing the
same number of bytes (buffered, 8 MB blocks): starting torch and writing the bytes, nothing
computed. The floor of ``batch`` is the start-up of ``embedcli --help`` plus the same ``dd``.
The disk of a shared VM swings between runs, so each figure is the best of several runs taken
in alternation with its floor, and the ratio is what is reported against the targets (embed at
most 1.1x its floor, batch at most 1.5x and under 300 MB, ``--shuffle`` at most 3x the in-order
time and under 300 MB).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

EMBED_ARGS = ["--dim", "256", "--max-length", "4", "--stride", "4", "--batch-size", "8", "-q"]


def _dd(path: Path, nbytes: int) -> list[str]:
    blocks = -(-nbytes // (8 << 20))
    return ["dd", "if=/dev/zero", f"of={path}", "bs=8M", f"count={blocks}", "status=none"]


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def _floor(first: list[str], path: Path, nbytes: int) -> float:
    """Wall seconds of ``first`` (a start-up) plus dd writing ``nbytes`` to a fresh ``path``."""
    from run import measure

    path.unlink(missing_ok=True)
    started = time.perf_counter()
    measure(first)
    measure(_dd(path, nbytes))
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def bench_embed_floor(tmp: Path, repeats: int = 3) -> None:
    from run import EMBED_REFERENCE, PY, ROOT, child, corpus, measure, row

    print("\nfloor: embed TEXT --dim 256 -T 4 --stride 4 -B 8, whole processes, best of", repeats)
    for mb in (2.56, 10.24):
        text = corpus(tmp / f"floor-{mb}.txt", mb, seed=11)
        out, dd = tmp / "floor-out.safetensors", tmp / "floor-dd.bin"
        argv = [PY, "-m", "embedcli", "embed", str(text), "-o", str(out), *EMBED_ARGS]
        ours, floors = [], []
        for _ in range(repeats):
            out.unlink(missing_ok=True)
            ours.append(measure(argv))
            floors.append(_floor([PY, "-c", "import torch"], dd, out.stat().st_size))
        size = out.stat().st_size
        ref = measure(
            child(EMBED_REFERENCE, str(text), str(tmp / "ref.safetensors"), str(ROOT / "tests"))
        )
        (tmp / "ref.safetensors").unlink()
        best, floor = _best(ours), min(floors)
        print(f"  {mb} MB of text -> {size / 1e9:.2f} GB")
        row("    floor: import torch + dd of the same bytes", f"{floor:6.2f} s")
        row(
            "    embedcli embed",
            f"{best['seconds']:6.2f} s  {best['seconds'] / floor:4.2f}x the floor (target <= 1.1x)",
        )
        row(
            "    peak memory: embedcli / reference",
            f"{best['peak_mib']:5.0f} / {ref['peak_mib']:5.0f} MiB  "
            f"({best['peak_mib'] / ref['peak_mib']:.2f}; target < 0.25)",
        )
        mid, mid_floor = _median([r["seconds"] for r in ours]), _median(floors)
        row(
            f"    median of {repeats}: embedcli / floor",
            f"{mid:6.2f} / {mid_floor:.2f} s  {mid / mid_floor:4.2f}x (issue 23's measure)",
        )
        row("    all runs (s): embedcli / floor", _runs(ours, floors))
        out.unlink()


# The permutation --shuffle writes in, timed alone in-process: the part of a shuffled batch
# that no gather or write can take away.
PERMUTATION = """
import json, sys, time
from embedcli.options import DEFAULT_SEED
from embedcli.windows import shuffle_order
t = time.perf_counter()
shuffle_order(DEFAULT_SEED, int(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def bench_batch_floor(tmp: Path, repeats: int = 3, n_tokens: int = 28_400_000) -> None:
    from run import BIG_TOKENS, PY, child, measure, row

    tokens, out, dd = tmp / "floor.tokens.safetensors", tmp / "floor-w.safetensors", tmp / "dd.bin"
    measure(child(BIG_TOKENS, str(tokens), str(n_tokens)))
    argv = [PY, "-m", "embedcli", "batch", str(tokens), "-o", str(out), "-T", "4", "--stride", "1"]
    ours, floors = [], []
    for _ in range(repeats):
        out.unlink(missing_ok=True)
        ours.append(measure([*argv, "-q"]))
        floors.append(_floor([PY, "-m", "embedcli", "--help"], dd, out.stat().st_size))
    size = out.stat().st_size
    best, floor = _best(ours), min(floors)
    print(
        f"\nfloor: batch {n_tokens:,} tokens -T 4 --stride 1 -> {size / 1e9:.2f} GB, best of {repeats}"
    )
    row("  floor: embedcli --help + dd of the same bytes", f"{floor:6.2f} s")
    row(
        "  embedcli batch",
        f"{best['seconds']:6.2f} s  {best['seconds'] / floor:4.2f}x the floor (target <= 1.5x)",
    )
    row("  peak memory", f"{max(r['peak_mib'] for r in ours):5.0f} MiB (target < 300)")
    row("  all runs (s): embedcli / floor", _runs(ours, floors))
    shuffled = []
    for _ in range(repeats):
        out.unlink(missing_ok=True)
        shuffled.append(measure([*argv, "--shuffle", "-q"]))
    fast = _best(shuffled)
    row(
        "  embedcli batch --shuffle",
        f"{fast['seconds']:6.2f} s  {fast['seconds'] / best['seconds']:4.2f}x in-order "
        f"(target <= 3x), {max(r['peak_mib'] for r in shuffled):5.0f} MiB (target < 300)",
    )
    row("  all runs (s): --shuffle", " ".join(f"{r['seconds']:.2f}" for r in shuffled))
    order = min(
        json.loads(measure(child(PERMUTATION, str(n_tokens - 4)))["stdout"])["seconds"]
        for _ in range(repeats)
    )
    row(
        "    of which the permutation alone",
        f"{order:6.2f} s  {order / best['seconds']:4.2f}x in-order (numpy's Fisher-Yates, "
        "one cache miss a swap: the order --shuffle keeps)",
    )
    for path in (tokens, out):
        path.unlink()


def _runs(ours: list[dict], floors: list[float]) -> str:
    return (
        " ".join(f"{r['seconds']:.2f}" for r in ours) + " / " + " ".join(f"{f:.2f}" for f in floors)
    )


def bench_floor(tmp: Path) -> None:
    os.sync()  # start from a quiet disk: earlier sections' writes are not this one's to pay
    bench_batch_floor(tmp)
    bench_embed_floor(tmp)
