"""The ``startup`` section of ``make bench``: what one small call costs, against a bare Python
that imports what tokenizing needs, in the same run (issue 23: at most 1.5x).

Shell loops and Makefiles call embedcli once per file, so this is paid per file. The package's
bytecode is compiled first, as ``pip install`` does (an editable install under
``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module on every start), and the
children run with the environment's caches warm (one untimed run of each first): the parsed
GPT-2 ranks and gigatoken's Unicode-gap table are built once per machine.
"""

from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

# A process that tokenizes at all: tiktoken's own r50k encoding built and used (its rank file
# from tiktoken's cache, which embedcli seeds from its bundled copy: no network).
TIKTOKEN_FLOOR = (
    "import numpy, tiktoken; "
    "numpy.asarray(tiktoken.get_encoding('r50k_base').encode('Hello, world.'), numpy.int32)"
)


def bench_startup(tmp: Path, repeats: int = 9) -> None:
    from run import PY, ROOT, measure, row

    compileall.compile_dir(str(ROOT / "embedcli"), quiet=1)
    one = tmp / "one.txt"
    one.write_text("Hello, world. One line to tokenize.\n", encoding="utf-8")
    out = tmp / "one.tokens.safetensors"
    cli = str(Path(sys.executable).with_name("embedcli"))
    if not os.path.exists(cli):
        cli = ""
    base = [PY, "-m", "embedcli"] if not cli else [cli]
    jobs = {
        "python -c 'import tiktoken, numpy'": [PY, "-c", "import tiktoken, numpy"],
        "tiktoken r50k_base built, one encode": [PY, "-c", TIKTOKEN_FLOOR],
        "embedcli --help": [*base, "--help"],
        "embedcli tokenize one.txt -q": [*base, "tokenize", str(one), "-o", str(out), "-q"],
        "embedcli tokenize one.txt (summary)": [*base, "tokenize", str(one), "-o", str(out)],
        "embedcli inspect one.tokens.safetensors": [*base, "inspect", str(out)],
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    os.environ.clear()
    os.environ.update(env)
    for argv in jobs.values():  # warm: caches filled, files in the page cache
        measure(argv)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):  # alternate, so every job sees the same machine
        for name, argv in jobs.items():
            times[name].append(measure(argv)["seconds"])
    base_s = min(times["python -c 'import tiktoken, numpy'"])
    print(f"\nstartup: whole processes, best of {repeats}, alternated (target <= 1.5x the first)")
    for name, runs in times.items():
        best = min(runs)
        row(
            f"  {name}",
            f"{best:6.3f} s  {best / base_s:4.2f}x  (median {sorted(runs)[repeats // 2]:.3f} s)",
        )
    instructions(jobs)


def instructions(jobs: dict[str, list[str]]) -> None:
    """The same jobs counted in instructions (valgrind's callgrind, where it is installed):
    deterministic where wall times on a shared 2-core machine swing 1.5x between runs, so a
    change to start-up shows here even when it is inside the noise of the times above."""
    import shutil
    import subprocess

    if shutil.which("valgrind") is None:
        print("  (valgrind not installed: no instruction counts)")
        return
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    counts = {}
    names = (
        "python -c 'import tiktoken, numpy'",
        "tiktoken r50k_base built, one encode",
        "embedcli tokenize one.txt -q",
    )
    for name in names:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *jobs[name]]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        line = next(x for x in proc.stderr.splitlines() if "Collected" in x)
        counts[name] = int(line.split()[-1])
    base = counts["python -c 'import tiktoken, numpy'"]
    print("startup in instructions (callgrind, one run each)")
    for name, count in counts.items():
        print(f"    {name:<42} {count / 1e6:7.0f} M  {count / base:4.2f}x")
