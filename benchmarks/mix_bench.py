"""The ``mix`` section of ``make bench``: ``embedcli mix`` of three sources against copying
their files (the floor: the same bytes read and written), and its peak memory as the corpus
grows (issue 33).

    python benchmarks/run.py mix

The corpus is ``backend.py``'s (about 70 MB of prose and Python source as jsonl), its
documents dealt into three sources (every third line), each tokenized once (not timed). The
mix is ``--dedup exact`` with the default global shuffle; the floor is ``cat`` of the three
token files into one file beside the output, in the same run. Peak memory is measured at 1x and
at 4x the corpus (each source's file given four times, no dedup).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from run import PY, ROOT, child, measure, row


def bench_mix(tmp: Path) -> None:
    from backend import MAKE_CORPUS

    text, data = tmp / "c.txt", tmp / "c.jsonl"
    measure(child(MAKE_CORPUS, str(text), str(data), str(ROOT / "benchmarks")))
    lines = data.read_text(encoding="utf-8").splitlines(keepends=True)
    names = ("web", "code", "books")
    tokens = []
    for k, name in enumerate(names):
        part = tmp / f"{name}.jsonl"
        part.write_text("".join(lines[k::3]), encoding="utf-8")
        out = tmp / f"{name}.tokens.safetensors"
        measure([PY, "-m", "embedcli", "tokenize", str(part), "-o", str(out), "-q"])
        tokens.append(out)
    size = sum(p.stat().st_size for p in tokens)
    print(f"\nmix: three sources, {size / 1e6:.0f} MB of token files, {len(lines):,} documents")
    floor = measure(["sh", "-c", f"cat {' '.join(map(str, tokens))} > {tmp / 'cat.bin'}"])
    out = tmp / "mix.tokens.safetensors"
    argv = [PY, "-m", "embedcli", "mix", *map(str, tokens), "-o", str(out), "-q"]
    ours = measure([*argv, "--dedup", "exact"])
    row("cat of the token files (floor)", f"{floor['seconds']:6.2f} s")
    row(
        "embedcli mix --dedup exact (shuffled)",
        f"{ours['seconds']:6.2f} s ({ours['seconds'] / floor['seconds']:.1f}x the floor), "
        f"{ours['peak_mib']:.0f} MiB peak",
    )
    four = []
    for name, path in zip(names, tokens, strict=True):
        for copy in range(4):
            target = tmp / "x4" / name / f"{copy}.tokens.safetensors"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        four += ["--source", f"{name}={tmp / 'x4' / name / '*.tokens.safetensors'}"]
    one = measure(argv)
    many = measure([PY, "-m", "embedcli", "mix", *four, "-o", str(out), "-q"])
    row(
        "peak memory, 1x and 4x the corpus",
        f"{one['peak_mib']:.0f} MiB, {many['peak_mib']:.0f} MiB "
        f"({one['seconds']:.2f} s, {many['seconds']:.2f} s; the sources are memory-mapped and "
        "read whole: not yet flat)",
    )
    sys.stdout.flush()
