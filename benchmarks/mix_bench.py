"""The ``mix`` section of ``make bench``: ``embedcli mix`` of three sources against copying
their files (the floor: the same bytes read and written), and its peak memory as the corpus
grows (issue 33), within the default ``--memory`` and past it.

    python benchmarks/run.py mix

The corpus is ``backend.py``'s (about 70 MB of prose and Python source as jsonl), its
documents dealt into three sources (every third line), each tokenized once (not timed). The
mix is ``--dedup exact`` with the default global shuffle; the floor is ``cat`` of the three
token files into one file beside the output, in the same run. Peak memory is measured at 1x and
at 4x the corpus (each source's file given four times, no dedup). The two-phase run is three
scatter jobs, then two gather jobs, each phase's jobs at once on the same cores, against the
one-process run (goal: within 1.5x), its stream checked equal to the one process's. Where
datatrove installs, its ``DocumentTokenizerMerger`` (a global shuffle across files, as one
task) merges the same documents, written in its format by its own ``TokenizedFile``, against
``mix`` shuffling them without dedup.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from run import PY, ROOT, child, measure, row

DEAL = """
import sys
with open(sys.argv[1], encoding="utf-8") as f:
    lines = f.read().splitlines(keepends=True)
for k, path in enumerate(sys.argv[2:]):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(lines[k :: len(sys.argv) - 2]))
print(len(lines))
"""


def bench_mix(tmp: Path) -> None:
    from backend import MAKE_CORPUS

    text, data = tmp / "c.txt", tmp / "c.jsonl"
    measure(child(MAKE_CORPUS, str(text), str(data), str(ROOT / "benchmarks")))
    names = ("web", "code", "books")
    # dealt in a child: a child's peak memory (wait4's ru_maxrss) starts from this process's
    # size when it forks, so this process must never hold the corpus
    deal = measure(child(DEAL, str(data), *(str(tmp / f"{n}.jsonl") for n in names)))
    documents = int(deal["stdout"])
    tokens = []
    for name in names:
        part = tmp / f"{name}.jsonl"
        out = tmp / f"{name}.tokens.safetensors"
        measure([PY, "-m", "embedcli", "tokenize", str(part), "-o", str(out), "-q"])
        tokens.append(out)
    size = sum(p.stat().st_size for p in tokens)
    print(f"\nmix: three sources, {size / 1e6:.0f} MB of token files, {documents:,} documents")
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
    mapped = measure([PY, "-m", "embedcli", "mix", *four, "-o", str(out), "-q", "--memory", "1GB"])
    row(
        "peak memory, 1x and 4x the corpus",
        f"{one['peak_mib']:.0f} MiB, {many['peak_mib']:.0f} MiB "
        f"({one['seconds']:.2f} s, {many['seconds']:.2f} s: 4x is past the default --memory "
        f"256MiB, read from the files); 4x with --memory 1GB (mapped): "
        f"{mapped['peak_mib']:.0f} MiB, {mapped['seconds']:.2f} s",
    )
    _two_phases(tmp, tokens, out)
    _datatrove(tmp, tokens, argv)
    sys.stdout.flush()


def _two_phases(tmp: Path, tokens: list[Path], one: Path) -> None:
    import subprocess
    import time

    out = tmp / "phased.tokens.safetensors"
    base = [PY, "-m", "embedcli", "mix", *map(str, tokens), "-o", str(out), "-q"]
    started = time.perf_counter()
    for phase, jobs, extra in (("scatter", 3, ["--buckets", "2"]), ("gather", 2, [])):
        running = [
            subprocess.Popen([*base, "--phase", phase, "--shard", f"{i}/{jobs}", *extra])
            for i in range(jobs)
        ]
        if any(p.wait() for p in running):
            raise SystemExit(f"a {phase} job failed")
    phased = time.perf_counter() - started
    single = measure([PY, "-m", "embedcli", "mix", *map(str, tokens), "-o", str(one), "-q"])
    same = _stream(tmp / "phased.tokens.manifest.json") == _stream(one)
    row(
        "two phases (3 scatter, 2 gather jobs)",
        f"{phased:6.2f} s against {single['seconds']:.2f} s in one process "
        f"({phased / single['seconds']:.2f}x; goal 1.5x), stream {'identical' if same else 'DIFFERS'}",
    )


# The three sources in datatrove's tokenized format, written by datatrove's own TokenizedFile
# from embedcli's ids (not timed): each document with its separator, as datatrove's tokenizer
# writes them with its EOS.
TO_DATATROVE = """
import sys
import numpy as np
from safetensors.numpy import load_file
from datatrove.pipeline.tokens.tokenizer import TokenizedFile
folder = sys.argv[1]
for path in sys.argv[2:]:
    data = load_file(path)
    ids, offsets = data["ids"].astype("<u2"), data["doc_offsets"]
    name = path.rsplit("/", 1)[-1].split(".")[0] + ".ds"
    out = TokenizedFile(folder, name, token_size=2)
    for a, b in zip(offsets[:-1], offsets[1:]):
        out.write_bytes(ids[a : b + 1].tobytes())  # the document and the separator after it
    out.close()
"""

MERGE = """
import sys
from datatrove.pipeline.tokens.merger import DocumentTokenizerMerger
DocumentTokenizerMerger(sys.argv[1], sys.argv[2], "merged", shuffle=True, seed=1,
                        progress=False, save_final_metadata=False).run()
"""


def _datatrove(tmp: Path, tokens: list[Path], argv: list[str]) -> None:
    """datatrove's DocumentTokenizerMerger (a global document shuffle across files, one task)
    against ``embedcli mix`` shuffling the same documents without dedup, where it installs."""
    from importlib.util import find_spec

    if find_spec("datatrove") is None:
        row("datatrove's DocumentTokenizerMerger", "skipped: datatrove is not installed")
        return
    source = tmp / "datatrove-in"
    measure(child(TO_DATATROVE, str(source), *map(str, tokens)))
    theirs = measure(child(MERGE, str(source), str(tmp / "datatrove-out")))
    ours = measure(argv)
    row(
        "datatrove merger, shuffled, against mix (no dedup)",
        f"{theirs['seconds']:6.2f} s, {theirs['peak_mib']:.0f} MiB against "
        f"{ours['seconds']:.2f} s, {ours['peak_mib']:.0f} MiB ({theirs['seconds'] / ours['seconds']:.1f}x)",
    )


def _stream(path: Path) -> str:
    """A digest of the token stream as the readers read it (through a manifest too)."""
    code = (
        "import hashlib, sys, numpy as np\n"
        "from embedcli.inputs import load_input\n"
        "with load_input([sys.argv[1]]) as s:\n"
        "    ids = np.asarray(s.ids, np.int32).tobytes() + np.asarray(s.doc_offsets).tobytes()\n"
        "    print(hashlib.sha256(ids).hexdigest())\n"
    )
    return measure([PY, "-c", code, str(path)])["stdout"]
