"""Other models' tokenizers: the whole ``embedcli tokenize`` process against the reference
library's own fastest in-process call on all cores, ids compared one for one.

    python benchmarks/run.py tokenizers     # needs `make models` (Llama 3, Mistral v3)

Each row: the library's batch call (sentencepiece ``encode(docs, num_threads=N)``, tiktoken's
``encode_ordinary_batch(docs, num_threads=N)``, tokenizers' ``encode_batch``), embedcli's whole
process (start-up, reading jsonl, the worker pool, writing), and the ratio (above 1: embedcli
is faster).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from run import PY, ROOT, corpus, measure, row

MODELS = Path(os.environ.get("EMBEDCLI_MODELS", ROOT / ".cache" / "models"))


def _reference(kind: str, path: Path):
    cores = len(os.sched_getaffinity(0))
    if kind == "sentencepiece":
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        return lambda docs: sp.encode(docs, num_threads=cores)
    from embedcli.bpe.encodings import get_encoding
    from embedcli.bpe.foreign import resolve_spec

    enc = get_encoding(resolve_spec(str(path)))
    return lambda docs: [enc.encode(d) for d in docs]


def bench_tokenizers(tmp: Path, megabytes: float = 20.0) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    print(f"tokenizers: {megabytes:.0f} MB of prose as jsonl, ids identical to the library's")
    text = corpus(tmp / "c.txt", megabytes).read_text(encoding="utf-8")
    docs = [d for d in text.split("\n\n") if d]
    data = tmp / "c.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    cases = [("llama3", "tiktoken"), ("mistral-v3", "sentencepiece")]
    for name, kind in cases:
        path = MODELS / name / "tokenizer.model"
        if not path.is_file():
            row(name, f"skipped: {path} is missing (make models)")
            continue
        encode = _reference(kind, path)
        started = time.perf_counter()
        want = encode(docs)
        base = time.perf_counter() - started
        out = tmp / f"{name}.tokens.safetensors"
        argv = [PY, "-m", "embedcli", "tokenize", str(data), "--tokenizer", str(path),
                "--special", "text", "--eot", "none", "-o", str(out), "-q"]  # fmt: skip
        ours = measure(argv)
        same = np.array_equal(
            load_file(str(out))["ids"], np.concatenate([np.asarray(w, np.int64) for w in want])
        )
        row(
            f"{name} ({kind})",
            f"library {base:.2f} s, embedcli {ours['seconds']:.2f} s "
            f"({base / ours['seconds']:.2f}x), ids {'identical' if same else 'DIFFER'}",
        )
    sys.stdout.flush()
