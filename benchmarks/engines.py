"""The ``engines`` section of ``make bench``: which exact engine is fastest for a large
``tokenizer.json``, loading and encoding in a fresh process as a run does (issue 47, item 5).

    python benchmarks/run.py engines      # needs `make models` (DeepSeek V3's tokenizer.json)

Engines measured where installed: gigatoken (embedcli's fast engine, ``load_hf_json``) and
fastokens (``Tokenizer.from_file``, not an embedcli extra: ``pip install fastokens``), each
encoding the ``backend`` section's .txt corpus whole (one call) and as its documents (split at
blank lines; fastokens' ``encode_batch`` on all cores). Best of 3 fresh processes. Every
engine's ids are compared with the others', and the first 2,000 documents with ``tokenizers``
(the reference: ``Tokenizer.from_file(p).encode(doc, add_special_tokens=False).ids``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from run import PY, ROOT, child

CHILD = """
import hashlib, json, sys, time
import numpy as np
engine, path, textfile = sys.argv[1:4]
with open(textfile, encoding="utf-8") as f:
    text = f.read()
docs = text.split("\\n\\n")
started = time.perf_counter()
if engine == "gigatoken":
    from gigatoken.gigatoken_rs import load_hf_json
    with open(path, encoding="utf-8") as f:
        tok = load_hf_json(f.read())
    whole = lambda: tok.encode(text)
    each = lambda: [tok.encode(d) for d in docs]
else:
    import fastokens
    tok = fastokens.Tokenizer.from_file(path)
    whole = lambda: tok.encode(text, add_special_tokens=False).ids
    each = lambda: [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
loaded = time.perf_counter()
ids = np.asarray(whole(), np.int64)
encoded = time.perf_counter()
per_doc = each()
documents = time.perf_counter()
head = [list(map(int, d)) for d in per_doc[:2000]]
print(json.dumps({
    "load": loaded - started, "whole": encoded - loaded, "documents": documents - encoded,
    "ids": int(ids.size), "digest": hashlib.sha256(ids.tobytes()).hexdigest(), "head": head,
}))
"""

REFERENCE = """
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
with open(sys.argv[2], encoding="utf-8") as f:
    docs = f.read().split("\\n\\n")[:2000]
print(json.dumps([tok.encode(d, add_special_tokens=False).ids for d in docs]))
"""


def bench_engines(tmp: Path, repeats: int = 3) -> None:
    from importlib.util import find_spec

    from backend import MAKE_CORPUS

    tokenizer = ROOT / ".cache" / "models" / "deepseek-v3" / "tokenizer.json"
    if not tokenizer.is_file():
        print(f"\n### Engines: skipped, {tokenizer} is missing (make models)")
        return
    text = tmp / "corpus.txt"
    subprocess.run(
        [PY, "-c", MAKE_CORPUS, str(text), str(tmp / "c.jsonl"), str(ROOT / "benchmarks")],
        check=True,
        capture_output=True,
    )
    engines = [e for e in ("gigatoken", "fastokens") if find_spec(e) is not None]
    reference = json.loads(_output(REFERENCE, str(tokenizer), str(text)))
    size = text.stat().st_size / 1e6
    print(f"\n### Engines for DeepSeek V3's tokenizer.json, {size:.0f} MB .txt, best of {repeats}")
    print("| engine | load | encode whole | encode documents | load + fastest | exact |")
    print("| --- | --- | --- | --- | --- | --- |")
    digests = set()
    for engine in engines:
        runs = [
            json.loads(_output(CHILD, engine, str(tokenizer), str(text))) for _ in range(repeats)
        ]
        best = {k: min(r[k] for r in runs) for k in ("load", "whole", "documents")}
        digests |= {r["digest"] for r in runs}
        exact = all(r["head"] == reference for r in runs)
        total = best["load"] + min(best["whole"], best["documents"])
        cells = [f"{best[k]:.2f} s" for k in ("load", "whole", "documents")]
        print(f"| {engine} | {' | '.join(cells)} | {total:.2f} s | {'yes' if exact else 'NO'} |")
    agree = "the same ids" if len(digests) == 1 else f"{len(digests)} different id streams"
    print(f"\nWhole-text ids of every engine and run: {agree}.")


def _output(code: str, *args: str) -> str:
    return subprocess.run(child(code, *args), check=True, capture_output=True, text=True).stdout
