"""benchmarks/gpu_check.py, the check prepared for a CUDA machine, runs here on the CPU: its
CPU parts pass and every CUDA part says that it skipped, and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_and_reports(tmp_path):
    report = tmp_path / "report.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = report.read_text(encoding="utf-8")
    assert text.strip() == done.stdout.strip()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 9
    assert "| bfloat16 CPU within rounding of float32 | ok |" in text
    assert "| float16 CPU within rounding of float32 | ok |" in text
    assert "| throughput on cpu | ok |" in text
    if not torch.cuda.is_available():
        cuda_rows = [r for r in rows if "CUDA" in r.split("|")[1] or "nccl" in r]
        assert len(cuda_rows) == 6
        assert all("| skipped | no CUDA device" in r for r in cuda_rows)
    else:  # pragma: no cover - on a GPU machine every row must pass
        assert "FAILED" not in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_float32_is_bitwise_the_cpus(tmp_path):  # pragma: no cover - GPU only
    from embedcli.embedding.tables import Embedder, random_tables

    token, pos = random_tables(1000, 64, 16, seed=1, pos="learned")
    ids = torch.randint(0, 1000, (32, 16)).numpy()
    out = torch.empty((32, 16, 64), pin_memory=True)
    cpu = Embedder(token, pos, device=torch.device("cpu"), dtype=torch.float32).embed(ids)
    gpu = Embedder(token, pos, device=torch.device("cuda"), dtype=torch.float32).embed(ids, out)
    torch.cuda.synchronize()
    assert torch.equal(cpu, gpu)
