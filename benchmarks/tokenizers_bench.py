"""Other models' tokenizers: the whole ``embedcli tokenize`` process against the reference
library's own fastest in-process call on all cores, ids compared one for one.

    python benchmarks/run.py tokenizers     # needs `make models` (Llama 3, Mistral v3)

The corpus is ``backend.py``'s: about 70 MB of prose and Python source as jsonl. Each row: the
library's batch call on every document (sentencepiece ``encode(docs, num_threads=N)``,
tiktoken's ``encode_ordinary_batch(docs, num_threads=N)``, tokenizers' ``encode_batch``, all
cores), embedcli's whole process (start-up, reading jsonl, the engine ``--backend auto`` chose,
writing), the ratio (above 1: embedcli is faster) and which engine ran: a warm run of a
tokenizer, and its first run with an empty cache directory (what a new machine pays: the
Unicode-gap sample, the characters of the corpus measured, a SentencePiece conversion; goal at
most 1.5x the warm run). The ``tokenizer.json`` cases are DeepSeek V3's (128k tokens, from
``make models``), a byte-level BPE trained here (gigatoken loads it) and the same with an NFKC
normalizer (gigatoken 0.10 refuses it: tokenizers runs in the worker pool).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from run import PY, ROOT, child, measure, row

MODELS = Path(os.environ.get("EMBEDCLI_MODELS", ROOT / ".cache" / "models"))
CORES = len(os.sched_getaffinity(0))


def _reference(kind: str, path: Path):
    """The library's fastest call on a list of documents: a list of id lists."""
    if kind == "sentencepiece":
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        return lambda docs: sp.encode(docs, num_threads=CORES)
    if kind == "tokenizer.json":
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        import tokenizers

        tok = tokenizers.Tokenizer.from_file(str(path))
        tok.encode_special_tokens = True  # --special text
        return lambda docs: [
            e.ids for e in tok.encode_batch_fast(docs, add_special_tokens=False)
        ]  # fmt: skip
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from embedcli.bpe.rank_files import LLAMA3_PATTERN, LLAMA3_SPECIALS  # Meta's reference code

    ranks = load_tiktoken_bpe(str(path))
    specials = {t: len(ranks) + i for i, t in enumerate(LLAMA3_SPECIALS)}
    enc = tiktoken.Encoding(
        "llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )
    return lambda docs: enc.encode_ordinary_batch(docs, num_threads=CORES)


def _train(folder: Path, docs: list[str], nfkc: bool) -> Path:
    """A byte-level BPE (8,000 tokens) trained on the corpus' first 4 MB."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if nfkc:
        tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    sample, size = [], 0
    for doc in docs:
        sample.append(doc)
        size += len(doc)
        if size > 4e6:
            break
    tok.train_from_iterator(sample, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def bench_tokenizers(tmp: Path) -> None:
    import numpy as np
    from backend import MAKE_CORPUS
    from safetensors.numpy import load_file

    text, data = tmp / "c.txt", tmp / "c.jsonl"
    measure(child(MAKE_CORPUS, str(text), str(data), str(ROOT / "benchmarks")))
    docs = [json.loads(line)["text"] for line in data.open(encoding="utf-8")]
    size = data.stat().st_size
    print(
        f"\ntokenizers: {size / 1e6:.0f} MB of prose and Python source as jsonl, "
        f"{len(docs):,} documents, {CORES} cores; ids identical to the library's"
    )
    cases = [
        ("llama3", "tiktoken", MODELS / "llama3" / "tokenizer.model"),
        ("mistral-v3", "sentencepiece", MODELS / "mistral-v3" / "tokenizer.model"),
        ("deepseek-v3", "tokenizer.json", MODELS / "deepseek-v3" / "tokenizer.json"),
        ("trained BPE", "tokenizer.json", None),
        ("trained BPE, NFKC", "tokenizer.json", None),
    ]
    for name, kind, path in cases:
        if path is None:
            path = _train(tmp / name.replace(" ", "-").replace(",", ""), docs, "NFKC" in name)
        if not path.is_file():
            row(name, f"skipped: {path} is missing (make models)")
            continue
        encode = _reference(kind, path)
        started = time.perf_counter()
        want = encode(docs)
        base = time.perf_counter() - started
        out = tmp / f"{name.replace(' ', '-')}.tokens.safetensors"
        argv = [PY, "-m", "embedcli", "tokenize", str(data), "--tokenizer", str(path),
                "--special", "text", "--eot", "none", "-o", str(out), "-q"]  # fmt: skip
        cache = {**os.environ, "EMBEDCLI_CACHE_DIR": str(tmp / f"cache-{name}")}  # empty
        first = measure(argv, cache)
        ours = measure(argv, cache)
        got = load_file(str(out))
        same = np.array_equal(got["ids"], np.concatenate([np.asarray(w, np.int64) for w in want]))
        meta = _metadata(out)
        row(
            f"{name} ({kind})",
            f"library {base:.2f} s, embedcli {ours['seconds']:.2f} s "
            f"({base / ours['seconds']:.2f}x) on {meta.get('tokenizer_backend')}, "
            f"ids {'identical' if same else 'DIFFER'}; first run {first['seconds']:.2f} s "
            f"({first['seconds'] / ours['seconds']:.2f}x warm)",
        )
        del want, got
    row("goal", "mistral-v3 >= 2x sentencepiece on all cores; first run <= 1.5x warm")
    sys.stdout.flush()


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return f.metadata() or {}
