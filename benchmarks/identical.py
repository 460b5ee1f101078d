"""Outputs before and after a change: sha256 of every file each command writes.

    python benchmarks/identical.py save hashes.json   # before the change
    python benchmarks/identical.py check hashes.json  # after: exit 1 and list what differs

Runs every stage with a spread of options on the sample data and on a generated 8 MB corpus
(seeded, so the same bytes every time), in a scratch directory with relative paths (file
metadata records input paths, so the paths must not change between the two runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import corpus  # noqa: E402

T = ["-T", "4", "--stride", "4", "-B", "8"]
RUNS: list[tuple[str, list[str], str | None]] = [
    # (name, arguments after `embedcli`, file piped to stdin or None)
    ("tok", ["tokenize", "data/", "-o", "out/tok.tokens.safetensors"], None),
    (
        "tok-txt",
        ["tokenize", "data/the-lighthouse.txt", "-o", "out/story.tokens.safetensors"],
        None,
    ),
    ("tok-stdin", ["tokenize", "-o", "out/stdin.tokens.safetensors"], "data/the-lighthouse.txt"),
    (
        "tok-text",
        ["tokenize", "data/", "--special", "text", "-o", "out/text.tokens.safetensors"],
        None,
    ),
    ("tok-big", ["tokenize", "big/", "-o", "out/big.tokens.safetensors"], None),
    *[
        (
            f"shard{i}",
            ["tokenize", "big/", "-o", "out/sh.tokens.safetensors", "--shard", f"{i}/3"],
            None,
        )
        for i in range(3)
    ],
    ("batch", ["batch", "out/tok.tokens.safetensors", "-o", "out/w.safetensors", *T], None),
    (
        "batch-text",
        [
            "batch",
            "data/the-lighthouse.txt",
            "-o",
            "out/wt.safetensors",
            "-T",
            "7",
            "--stride",
            "2",
            "-B",
            "3",
            "--dtype",
            "int32",
        ],
        None,
    ),
    (
        "batch-shuf",
        [
            "batch",
            "out/big.tokens.safetensors",
            "-o",
            "out/ws.safetensors",
            "-T",
            "32",
            "--shuffle",
            "--seed",
            "7",
            "--keep-last",
            "-B",
            "5",
        ],
        None,
    ),
    (
        "batch-docs",
        [
            "batch",
            "out/tok.tokens.safetensors",
            "-o",
            "out/wd.safetensors",
            "-T",
            "8",
            "--no-cross-docs",
        ],
        None,
    ),
    (
        "batch-manifest",
        ["batch", "out/sh.tokens.manifest.json", "-o", "out/wm.safetensors", "-T", "64"],
        None,
    ),
    (
        "batch-split",
        [
            "batch",
            "out/big.tokens.safetensors",
            "-o",
            "out/wsplit.safetensors",
            "-T",
            "16",
            "--max-shard-size",
            "3MB",
        ],
        None,
    ),
    ("batch-stdin", ["batch", "-o", "out/wstdin.safetensors", *T], "out/tok.tokens.safetensors"),
    (
        "embed",
        ["embed", "out/w.safetensors", "-o", "out/e.safetensors", "--dim", "256", "--seed", "123"],
        None,
    ),
    (
        "embed-text",
        ["embed", "data/the-lighthouse.txt", "-o", "out/et.safetensors", *T, "--dim", "16"],
        None,
    ),
    (
        "embed-big",
        [
            "embed",
            "big/",
            "-o",
            "out/eb.safetensors",
            "-T",
            "64",
            "--dim",
            "32",
            "--num-batches",
            "300",
        ],
        None,
    ),
    (
        "embed-sin",
        [
            "embed",
            "out/tok.tokens.safetensors",
            "-o",
            "out/es.safetensors",
            "-T",
            "4",
            "--dim",
            "8",
            "--pos",
            "sinusoidal",
            "--dtype",
            "bfloat16",
            "--keep-last",
            "-B",
            "7",
        ],
        None,
    ),
    (
        "embed-nopos",
        [
            "embed",
            "out/tok.tokens.safetensors",
            "-o",
            "out/en.safetensors",
            "-T",
            "4",
            "--dim",
            "8",
            "--pos",
            "none",
            "--no-weights",
            "--dtype",
            "float16",
        ],
        None,
    ),
    (
        "embed-weights",
        [
            "embed",
            "out/w.safetensors",
            "-o",
            "out/ew.safetensors",
            "--weights",
            "out/e.safetensors",
        ],
        None,
    ),
    (
        "embed-split",
        [
            "embed",
            "out/tok.tokens.safetensors",
            "-o",
            "out/esplit.safetensors",
            *T,
            "--dim",
            "64",
            "--max-shard-size",
            "5MB",
        ],
        None,
    ),
]


def run_all(work: Path) -> dict[str, str]:
    shutil.copytree(ROOT / "sample_data", work / "data")
    (work / "big").mkdir()
    corpus(work / "big" / "corpus.txt", 8, seed=1)
    (work / "out").mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(work / "cache")}
    for name, args, stdin in RUNS:
        with open(work / stdin, "rb") if stdin else open(os.devnull, "rb") as f:
            proc = subprocess.run(
                [sys.executable, "-m", "embedcli", *args, "-q"],
                stdin=f,
                cwd=work,
                env=env,
                capture_output=True,
            )
        if proc.returncode:
            raise SystemExit(f"{name} failed: {proc.stderr.decode()}")
    return {
        str(p.relative_to(work / "out")): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((work / "out").iterdir())
    }


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "check"):
        raise SystemExit(__doc__)
    with tempfile.TemporaryDirectory(prefix="embedcli-identical-") as tmp:
        hashes = run_all(Path(tmp))
    if sys.argv[1] == "save":
        Path(sys.argv[2]).write_text(json.dumps(hashes, indent=1) + "\n")
        print(f"{len(hashes)} outputs hashed into {sys.argv[2]}")
        return
    want = json.loads(Path(sys.argv[2]).read_text())
    differ = sorted(k for k in want.keys() | hashes.keys() if want.get(k) != hashes.get(k))
    for name in differ:
        print(f"differs: {name}")
    print(f"{len(want) - len(differ)} of {len(want)} outputs byte-identical")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
