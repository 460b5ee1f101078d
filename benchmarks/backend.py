"""The ``backend`` section of ``make bench``: whole ``embedcli tokenize`` processes against one
in-process tiktoken call on the same text, measured in one run.

The corpus is about 70 MB: prose-like text (``run.corpus``) followed by the Python sources of the
installed torch package (real code: indentation, long whitespace runs, punctuation), once as one
``.txt`` file and once as the same documents (split at blank lines) in a ``.jsonl`` file.
"""

from __future__ import annotations

import json
from pathlib import Path

BASELINE = """
import json, sys, time
from embedcli.bpe.encodings import get_encoding
enc = get_encoding("gpt2")
best = None
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    with open(sys.argv[1], encoding="utf-8") as f:
        n = len(enc.encode(f.read(), allowed_special={"<|endoftext|>"}))
    best = min(best or 1e9, time.perf_counter() - t)
print(json.dumps({"seconds": best, "tokens": n}))
"""

MAKE_CORPUS = """
import json, os, sys, torch
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from run import corpus
prose = corpus(Path(sys.argv[1]), 50, seed=7).read_text(encoding="utf-8")
code, size = [], 0
root = os.path.dirname(torch.__file__)
for folder, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(files):
        if name.endswith(".py") and size < 20e6:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                code.append(f.read())
            size += len(code[-1])
text = prose + "".join(code)
Path(sys.argv[1]).write_text(text, encoding="utf-8")
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for i, doc in enumerate(text.split("\\n\\n")):
        f.write(json.dumps({"text": doc, "id": i}) + "\\n")
docs = text.split("\\n\\n")
if len(sys.argv) > 4:  # the same documents as Parquet, where asked (the backend section)
    import pyarrow as pa, pyarrow.parquet as pq
    pq.write_table(pa.table({"text": docs, "id": list(range(len(docs)))}), sys.argv[4])
print(len(docs))
"""

# gigatoken reading and encoding the files itself (its Rust file sources, all cores), in a
# fresh process as embedcli runs: the floor of "the Rust engine reads the files".
GIGATOKEN_FILES = """
import sys
import gigatoken.gigatoken_rs as g
from embedcli.bpe.encodings import get_encoding
from embedcli.bpe.engines import _gigatoken_tokenizer
tok = _gigatoken_tokenizer(get_encoding("gpt2"), "gpt2", "special", None)
path = sys.argv[1]
source = (g.JsonlFileSource([path]) if path.endswith(".jsonl") else g.ParquetFileSource([path])
          if path.endswith(".parquet") else g.TextFileSource([path]))
tok.encode_files(source)
"""

IN_PROCESS = """
import json, sys, time
from embedcli import TokenizeOptions, run_tokenize
t = time.perf_counter()
run_tokenize([sys.argv[1]], sys.argv[2], TokenizeOptions(backend="gigatoken"))
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

SAME_IDS = """
import sys
from safetensors.numpy import load_file
a, b = (load_file(p) for p in sys.argv[1:3])
print(all((a[k] == b[k]).all() and a[k].shape == b[k].shape for k in ("ids", "doc_offsets")))
"""


def bench_backend(tmp: Path, repeats: int = 3) -> None:
    from run import PY, ROOT, child, measure, row

    text, jsonl, parquet = tmp / "backend.txt", tmp / "backend.jsonl", tmp / "backend.parquet"
    made = child(MAKE_CORPUS, str(text), str(jsonl), str(ROOT / "benchmarks"), str(parquet))
    docs = int(measure(made)["stdout"])
    size = text.stat().st_size
    print(f"\nbackend: {size / 1e6:.0f} MB of prose and Python source, {docs:,} jsonl documents")
    base = json.loads(measure(child(BASELINE, str(text), "2"))["stdout"])
    row("tiktoken, one in-process call (read + encode)", f"{base['seconds']:6.2f} s")
    outputs = {}
    for backend in ("gigatoken", "tiktoken"):
        for path in (text, jsonl, parquet):
            out = tmp / f"backend-{backend}{path.suffix}.safetensors"
            argv = [PY, "-m", "embedcli", "tokenize", str(path), "-o", str(out), "-q"]
            runs = [measure([*argv, "--backend", backend]) for _ in range(repeats)]
            best = min(r["seconds"] for r in runs)
            peak = max(r["peak_mib"] for r in runs)
            outputs[backend, path.suffix] = out
            row(
                f"embedcli tokenize {path.suffix[1:]} --backend {backend}",
                f"{best:6.2f} s  {size / best / 1e6:6.1f} MB/s  {base['seconds'] / best:5.2f}x  "
                f"{peak:4.0f} MiB",
            )
            if backend == "gigatoken":
                floor = min(
                    measure(child(GIGATOKEN_FILES, str(path)))["seconds"] for _ in range(repeats)
                )
                row(
                    f"  gigatoken.encode_files({path.suffix[1:]}) alone, whole process",
                    f"{floor:6.2f} s  {base['seconds'] / floor:5.2f}x  (embedcli: "
                    f"{best / floor:4.2f}x this)",
                )
    for suffix in (".txt", ".jsonl", ".parquet"):
        pair = [str(outputs[b, suffix]) for b in ("gigatoken", "tiktoken")]
        same = measure(child(SAME_IDS, *pair))["stdout"].strip()
        row(f"same ids and offsets, both backends ({suffix[1:]})", same)
    inside = min(
        json.loads(measure(child(IN_PROCESS, str(text), str(tmp / "in.safetensors")))["stdout"])[
            "seconds"
        ]
        for _ in range(repeats)
    )
    row(
        "the txt run's work alone (run_tokenize in-process)",
        f"{inside:6.2f} s  {base['seconds'] / inside:5.2f}x  (the rest is start-up and exit)",
    )
    row("target (issue 23)", "whole process >= 8x the one tiktoken call, txt, jsonl and parquet")
