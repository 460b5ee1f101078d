"""The ``overhead`` section of ``make bench``: what embedcli's own Python around the engine costs,
against the engine's time on the same text (issue 47's goal: the Unicode-gap check and the piece
splitting together under 10% of the engine's time).

In one process, on ``backend.py``'s 70 MB corpus (``.txt`` and ``.jsonl``), for GPT-2 and, where
``make models`` put it there, DeepSeek V3's 128k-token ``tokenizer.json``: reading the input into
the pieces the engines encode as ``tokenize`` does (a ``.txt`` cut by ``pieces.pieces``, a
``.jsonl`` read as tasks by ``pieces.source_row_tasks``: decoding or parsing, cutting, counting;
the decoding or parsing measured alone too, and taken off), the gap check of
those pieces task by task as ``engine_for`` does it, and gigatoken encoding the same tasks. All on
one thread, so the shares are of work, not of a wall clock where the check of a long document now
runs beside its encoding.
"""

from __future__ import annotations

import json
from pathlib import Path

from run import ROOT, child, measure, row

OVERHEAD = """
import json, sys, time
import numpy as np
from embedcli import Tokenizer
from embedcli.bpe.engines import _built, _risky
from embedcli.bpe.pieces import PIECE_CHARS, pieces, source_row_tasks
from embedcli.bpe.value import empty_counts
from embedcli.documents import BLOCK_BYTES, iter_blocks, resolve_sources
from embedcli.documents.jsonl import jsonl_records

path, name = sys.argv[1], sys.argv[2]
tok = Tokenizer.from_file(name) if name.endswith(".json") else Tokenizer(name)
encoding = tok.encoding
choice = tok.choice(10**9)  # the self-check (cached)
stats = empty_counts(tok, "between")
source = resolve_sources([path])[0]
started = time.perf_counter()
if source.format == "jsonl":  # the text parsed alone, as the tasks' reader parses it
    for record in jsonl_records(source, "text", BLOCK_BYTES):
        pass
else:
    for block in iter_blocks(source):  # the text decoded, alone
        pass
read = time.perf_counter() - started
started = time.perf_counter()
# as tokenize reads it: jsonl (and Parquet) as tasks, text cut into pieces
rows = source_row_tasks(source, "text", PIECE_CHARS, "special", stats, None, None)
if rows is not None:
    tasks = [texts for texts, *_ in rows]
    cut = time.perf_counter() - started
else:
    items = list(pieces([source], "text", PIECE_CHARS, BLOCK_BYTES, "special", stats, None))
    cut = time.perf_counter() - started
    tasks, task, chars = [], [], 0  # grouped as tokenizer.submit_pieces groups them
    for text, *_ in items:
        task.append(text)
        chars += len(text)
        if chars >= PIECE_CHARS:
            tasks.append(task)
            task, chars = [], 0
    tasks += [task] if task else []
gaps, built = _risky(encoding, "special"), _built(choice.name, encoding, "special", "between")
started = time.perf_counter()
for task in tasks:
    gaps.holds(task[0]) if len(task) == 1 else gaps.holds("".join(task))
checked = time.perf_counter() - started
started = time.perf_counter()
for task in tasks:
    built(task, np.ones(len(task), bool))
encoded = time.perf_counter() - started
print(json.dumps({"read": read, "pieces": cut - read, "gaps": checked, "engine": encoded, "tasks": len(tasks),
                  "backend": choice.name}))
"""


# The floor of a whole run with a tokenizer.json: gigatoken loading it and encoding the text read
# whole, in a fresh process, nothing else (no checks, no counts, nothing written).
ENGINE_ALONE = """
import sys
from gigatoken.gigatoken_rs import load_hf_json
tok = load_hf_json(open(sys.argv[1], encoding="utf-8").read())
tok.encode(open(sys.argv[2], encoding="utf-8").read())
"""


def bench_overhead(tmp: Path) -> None:
    from backend import MAKE_CORPUS

    text, jsonl = tmp / "backend.txt", tmp / "backend.jsonl"
    measure(child(MAKE_CORPUS, str(text), str(jsonl), str(ROOT / "benchmarks")))
    print(f"\noverhead: embedcli's own work around the engine, {text.stat().st_size / 1e6:.0f} MB")
    deepseek = ROOT / ".cache" / "models" / "deepseek-v3" / "tokenizer.json"
    tokenizers = [("gpt2", "gpt2")] + (
        [("DeepSeek V3", str(deepseek))] if deepseek.exists() else []
    )
    for label, name in tokenizers:
        for path in (text, jsonl):
            r = json.loads(measure(child(OVERHEAD, str(path), name))["stdout"])
            engine = r["engine"]
            row(
                f"{label}, {path.suffix[1:]}: engine ({r['backend']}, {r['tasks']:,} tasks)",
                f"{engine:5.2f} s; gap check {r['gaps']:5.2f} s ({r['gaps'] / engine:4.0%}), "
                f"cut + count {r['pieces']:5.2f} s ({r['pieces'] / engine:4.0%}); "
                f"reading {r['read']:5.2f} s",
            )
    print(
        "  (goal: gap check and piece splitting together under 10% of the engine's time;"
        " reading, decoding the file or parsing its JSON, is apart: any tool pays it)"
    )
    if deepseek.exists():
        from run import PY

        floor = min(measure(child(ENGINE_ALONE, str(deepseek), str(text)))["seconds"]
                    for _ in range(3))  # fmt: skip
        argv = [PY, "-m", "embedcli", "tokenize", str(text), "--tokenizer", str(deepseek),
                "--eot", "none", "-o", str(tmp / "d.tokens.safetensors"), "-q"]  # fmt: skip
        whole = min(measure(argv)["seconds"] for _ in range(3))
        row(
            "DeepSeek V3 .txt, whole process (best of 3)",
            f"gigatoken load + encode alone {floor:5.2f} s; embedcli tokenize {whole:5.2f} s "
            f"({whole / floor:4.2f}x; goal at most 1.5x)",
        )
