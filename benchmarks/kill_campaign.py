"""The ``kill9`` section of ``make bench``: rewrites of multi-file outputs killed with SIGKILL
at random moments, then read back (issue 44). Goal: 0 sets that a reader accepts as a mix of
the old and the new output.

For every multi-file format (llm.c shards and sidecar, Megatron's pair and sidecar, nanoGPT's
and npy's file and sidecar, a split windows file and its index, a train/validation pair) the output is written from
corpus A, then rewritten from corpus B (or A again, alternating) by a real embedcli process
that is killed after a random delay, drawn around the run's own length so that many kills land
during the commit; to widen that window as a slow (network) filesystem would, the killed runs
rename at 20 ms a file (``output_set.commit`` wrapped, nothing else changed). After each kill the library reads the output by the name ``-o`` gave it:
the ids (or windows) it accepts must be all of A or all of B; a refusal naming an interrupted
commit is counted as refused. Random moments are a property of a benchmark, never of a test.

    python benchmarks/kill_campaign.py [KILLS_PER_FORMAT]
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# (name, -o, the command's arguments after the input and before -o)
FORMATS = [
    ("llmc", "c.bin", ["tokenize", "--to", "llmc", "--shard-tokens", "3000"]),
    ("megatron", "c", ["tokenize", "--to", "megatron"]),
    ("nanogpt", "c.bin", ["tokenize", "--to", "nanogpt"]),
    ("npy", "c.npy", ["tokenize", "--to", "npy"]),
    ("split", "w.safetensors", ["batch", "-T", "8", "--stride", "1", "--max-shard-size", "40KB"]),
    # train/validation pairs, read as both sides: embedcli's own files, llm.c's sets
    ("pair", "c.tokens.safetensors", ["tokenize", "--val-fraction", "0.3"]),
    ("llmc pair", "train.bin", ["tokenize", "--to", "llmc", "--val-fraction", "0.3"]),
]
# What a reader says when it refuses a set cut in two by a kill -9.
REFUSALS = ("killed while committing", "written by another run")


# embedcli with each rename of a commit taking 20 ms longer.
SLOW_RENAMES = """
import sys, time
import embedcli.storage.output_set as output_set
from embedcli.cli.app import main

real = output_set.commit

def commit(temp, path, **kwargs):
    time.sleep(0.02)
    real(temp, path, **kwargs)

output_set.commit = commit
sys.argv = ["embedcli", *sys.argv[1:]]
main()
"""


def _corpora(tmp: Path) -> list[Path]:
    story = (ROOT / "sample_data" / "the-lighthouse.txt").read_text(encoding="utf-8")
    a, b = tmp / "a.txt", tmp / "b.txt"
    a.write_text(story * 12, encoding="utf-8")  # B is shorter: a rewrite leaves fewer files
    b.write_text("A different corpus, and shorter.\n" * 900 + story * 3, encoding="utf-8")
    return [a, b]


def _inputs(tmp: Path, fmt: str, corpora: list[Path]) -> list[Path]:
    if fmt != "split":
        return corpora
    tokens = []
    for k, text in enumerate(corpora):
        path = tmp / f"t{k}.tokens.safetensors"
        subprocess.run(
            [PY, "-m", "embedcli", "tokenize", str(text), "-o", str(path), "-q"], check=True
        )
        tokens.append(path)
    return tokens


def _read(fmt: str, out: Path) -> np.ndarray:
    """What a reader accepts as the output (raises when it refuses)."""
    if fmt == "split":
        from embedcli.storage.split import index_path, load_index

        return load_index(index_path(str(out)))["inputs"].reshape(-1)
    from embedcli.data import open_tokens
    from embedcli.formats import TOKEN_FORMATS
    from embedcli.stages.tokenize import val_name

    sides = [out]
    if "pair" in fmt:  # both sides, as a training script reads them
        suffixes = TOKEN_FORMATS["llmc" if fmt == "llmc pair" else "safetensors"].suffixes
        sides.append(Path(val_name(str(out), suffixes)))
    ids = [np.asarray(s, dtype=np.int64) for side in sides for s in open_tokens(str(side)).segments]
    return np.concatenate(ids)


def _command(args: list[str], source: Path, out: Path) -> list[str]:
    """The stage ``args`` on ``source`` to ``out``, its renames slowed."""
    return [PY, "-c", SLOW_RENAMES, args[0], str(source), *args[1:], "-o", str(out), "-q"]


def campaign(tmp: Path, kills: int, seed: int = 1) -> dict[str, dict[str, int]]:
    from embedcli.errors import EmbedcliError

    rng = random.Random(seed)
    corpora = _corpora(tmp)
    results: dict[str, dict[str, int]] = {}
    for fmt, name, args in FORMATS:
        work = tmp / fmt
        work.mkdir()
        out = work / name
        inputs = _inputs(tmp, fmt, corpora)
        expected = []

        for source in inputs:  # each corpus written whole once, and read back
            started = time.perf_counter()
            subprocess.run(_command(args, source, out), check=True)
            length = time.perf_counter() - started
            expected.append(_read(fmt, out))
        counts = {"killed": 0, "whole A": 0, "whole B": 0, "refused": 0, "mixed accepted": 0}
        for k in range(kills):
            proc = subprocess.Popen(
                _command(args, inputs[k % 2], out),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.5, 1.05) * length)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                counts["killed"] += 1
            proc.wait()
            try:
                got = _read(fmt, out)
            except EmbedcliError as exc:
                counts["refused"] += 1
                assert any(words in str(exc) for words in REFUSALS), exc
                continue
            if np.array_equal(got, expected[0]):
                counts["whole A"] += 1
            elif np.array_equal(got, expected[1]):
                counts["whole B"] += 1
            else:
                counts["mixed accepted"] += 1
        results[fmt] = counts
        for stray in work.glob(".*.tmp"):  # what the killed runs left: reported, then cleared
            stray.unlink()
    return results


def bench_kill9(tmp: Path, kills: int = 20) -> None:
    from run import row

    results = campaign(tmp, kills)
    for fmt, counts in results.items():
        row(f"kill -9 x{kills}: {fmt}", ", ".join(f"{k} {v}" for k, v in counts.items()))
    mixed = sum(c["mixed accepted"] for c in results.values())
    row("kill -9: sets accepted as a mix of old and new", f"{mixed} (goal 0)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    with tempfile.TemporaryDirectory(prefix="embedcli-kill9-") as scratch:
        bench_kill9(Path(scratch), int(sys.argv[1]) if len(sys.argv) > 1 else 20)
