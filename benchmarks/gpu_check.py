"""The prepared GPU check: run once on a CUDA machine (under 5 minutes), keep the report.

    python benchmarks/gpu_check.py                  # report to gpu_check.md and stdout
    python benchmarks/gpu_check.py --quick          # small sizes (what the CPU test runs)

1. bitwise: float32 embeddings computed on CUDA equal the CPU's, for several shapes and every
   positional kind (an add of two float32 is exact on both), through ``run_embed`` end to end;
2. bfloat16/float16 on CUDA: equal to the CPU's in that dtype, and within one rounding of the
   float32 result;
3. throughput: ``embed`` on the device against the CPU, in GB/s of output, to a file and with
   the disk left out (a writer that discards);
4. a 1-process ``torchrun`` with the nccl backend, its output equal to the single process's.

Without CUDA every CUDA part says it skipped and why; the CPU parts still run, so the script
itself is tested on the CPU (``tests/test_gpu_check.py``). Exit status: 0 when every check
that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from embedcli import run_batch, run_embed, run_tokenize
from embedcli.embedding.tables import Embedder, random_tables, stream_embeddings
from embedcli.options import EmbedOptions, WindowOptions

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
SHAPES = [(4, 8, "learned"), (64, 256, "learned"), (256, 768, "sinusoidal"), (32, 64, "none")]


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed = False

    def add(self, name: str, ok: bool | None, detail: str) -> None:
        mark = {True: "ok", False: "FAILED", None: "skipped"}[ok]
        self.failed |= ok is False
        self.lines.append(f"| {name} | {mark} | {detail} |")


def _cuda() -> str | None:
    """Why the CUDA parts cannot run, or None."""
    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False)"
    return None


def _load(path: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))["embeddings"]


def _embed(tokens: Path, out: Path, device: str, dtype: str, t: int, dim: int, pos: str):
    run_embed(
        [str(tokens)],
        str(out),
        EmbedOptions(dim=dim, device=device, dtype=dtype, pos=pos, save_weights=False),
        WindowOptions(max_length=t, stride=t),
    )
    return _load(out)


def check_bitwise(report: Report, tokens: Path, tmp: Path, shapes) -> None:
    why = _cuda()
    for t, dim, pos in shapes:
        name = f"float32 CUDA == CPU, T={t} dim={dim} pos={pos}"
        cpu = _embed(tokens, tmp / "cpu.safetensors", "cpu", "float32", t, dim, pos)
        if why:
            report.add(name, None, why)
            continue
        gpu = _embed(tokens, tmp / "gpu.safetensors", "cuda", "float32", t, dim, pos)
        same = gpu.shape == cpu.shape and torch.equal(gpu, cpu)
        report.add(name, same, f"{tuple(cpu.shape)}, bitwise {'equal' if same else 'DIFFERENT'}")


def check_low_precision(report: Report, tokens: Path, tmp: Path) -> None:
    why = _cuda()
    t, dim = 64, 256
    out = tmp / "f32.safetensors"
    run_embed(
        [str(tokens)],
        str(out),
        EmbedOptions(dim=dim),
        WindowOptions(max_length=t, stride=t),
    )
    from safetensors.torch import load_file

    saved = load_file(str(out))
    full, tok, pos = (
        saved[k] for k in ("embeddings", "token_embedding.weight", "pos_embedding.weight")
    )
    windows = tmp / "windows.safetensors"
    run_batch([str(tokens)], str(windows), WindowOptions(max_length=t, stride=t))
    ids = load_file(str(windows))["inputs"]
    addends = tok[ids].abs() + pos[:t].abs()  # what each value's rounding error scales with
    for dtype, torch_dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        cpu = _embed(tokens, tmp / "low-cpu.safetensors", "cpu", dtype, t, dim, "learned")
        close, detail = _within_rounding(cpu, full, addends, torch_dtype)
        report.add(f"{dtype} CPU within rounding of float32", close, detail)
        name = f"{dtype} CUDA within rounding of float32"
        if why:
            report.add(name, None, why)
            continue
        gpu = _embed(tokens, tmp / "low-gpu.safetensors", "cuda", dtype, t, dim, "learned")
        close, detail = _within_rounding(gpu, full, addends, torch_dtype)
        same = torch.equal(gpu, cpu)
        detail += f"; {'bitwise equal to' if same else 'differs from'} the CPU's {dtype}"
        report.add(name, close, detail)


def _within_rounding(low, full, addends, dtype) -> tuple[bool, str]:
    """tok + pos in a 16-bit dtype: each addend rounded (eps/2 of it) and the sum once more
    (eps/2 of it), so within eps * (|tok| + |pos|) of the float32 value."""
    eps = torch.finfo(dtype).eps
    worst = float(((low.float() - full).abs() / (addends * eps).clamp_min(1e-30)).max())
    return worst <= 1.0, f"max error {worst:.2f} of eps * (|tok| + |pos|) (allowed 1)"


class _Discard:
    def write(self, data) -> int:
        return len(data)


def check_throughput(report: Report, tmp: Path, windows: int) -> None:
    """GB/s of output for embed on each device: the loop alone (output discarded) and to disk."""
    why = _cuda()
    t, dim = 256, 768
    token, pos = random_tables(50257, dim, t, seed=123, pos="learned")
    ids = np.random.default_rng(0).integers(0, 50257, (windows, t), dtype=np.int64)
    chunk = max(1, (64 << 20) // (t * dim * 4))
    nbytes = windows * t * dim * 4
    for device in ("cpu", "cuda"):
        if device == "cuda" and why:
            report.add("throughput on CUDA", None, why)
            continue
        embedder = Embedder(token, pos, device=torch.device(device), dtype=torch.float32)
        figures = []
        for sink_name in ("discarded", "to a file"):
            path = tmp / "throughput.bin"
            started = time.perf_counter()
            with open(path, "wb") if sink_name == "to a file" else contextlib.nullcontext() as f:
                stream_embeddings(
                    f or _Discard(),
                    embedder,
                    (ids[i : i + chunk] for i in range(0, windows, chunk)),
                    (chunk, t, dim),
                )
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            figures.append(f"{sink_name}: {nbytes / seconds / 1e9:.2f} GB/s")
            path.unlink(missing_ok=True)
        report.add(f"throughput on {device}", True, f"{nbytes / 1e9:.2f} GB; " + "; ".join(figures))


def check_torchrun(report: Report, tokens: Path, tmp: Path) -> None:
    why = _cuda()
    name = "torchrun, 1 process, nccl"
    if why:
        report.add(name, None, why)
        return
    one = _embed(tokens, tmp / "one.safetensors", "cuda", "float32", 64, 256, "learned")
    out = tmp / "run.safetensors"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    argv += ["-m", "embedcli", "embed", str(tokens), "-o", str(out), "--device", "cuda", "-q"]
    argv += ["--dim", "256", "--max-length", "64", "--stride", "64", "--no-weights"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        report.add(name, False, f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
        return
    same = torch.equal(_load(out), one)
    report.add(name, same, f"output {'equal' if same else 'DIFFERENT'} to one process's")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the CPU test)")
    parser.add_argument("--report", default="gpu_check.md", help="where the report goes")
    args = parser.parse_args(argv)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="embedcli-gpu-") as name:
        tmp = Path(name)
        tokens = tmp / "corpus.tokens.safetensors"
        run_tokenize([str(SAMPLE)], str(tokens))
        check_bitwise(report, tokens, tmp, SHAPES[:2] if args.quick else SHAPES)
        check_low_precision(report, tokens, tmp)
        check_throughput(report, tmp, 64 if args.quick else 2_000)
        check_torchrun(report, tokens, tmp)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    text = "\n".join(
        [
            f"# embedcli GPU check: {device}",
            "",
            f"torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores",
            "",
            "| check | result | detail |",
            "| --- | --- | --- |",
            *report.lines,
            "",
        ]
    )
    Path(args.report).write_text(text, encoding="utf-8")
    print(text)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
