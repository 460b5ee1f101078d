from __future__ import annotations

import json
import math
import struct
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from embedcli.inspection.diff import diff_files
from embedcli.inspection.files import inspect_file
from embedcli.inspection.report import dumps
from embedcli.storage.store import DTYPES

from conftest import imported_modules, invoke


@pytest.fixture
def small(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "f32": torch.randn(5, 3),
        "bf16": torch.randn(7).to(torch.bfloat16),
        "f16": torch.randn(2, 2).half(),
        "i64": torch.tensor([3, 1, 3, 9, -2]),
        "u8": torch.tensor([1, 1, 2], dtype=torch.uint8),
        "flag": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "small.safetensors"
    save_file(tensors, str(path), metadata={"note": "hello"})
    return path, tensors


def test_stats_match_torch(small):
    path, tensors = small
    report = inspect_file(str(path))
    by_name = {t.name: t for t in report.tensors}
    for name, t in tensors.items():
        entry = by_name[name]
        assert (
            entry.dtype
            == {
                torch.float32: "F32",
                torch.bfloat16: "BF16",
                torch.float16: "F16",
                torch.int64: "I64",
                torch.uint8: "U8",
                torch.bool: "BOOL",
            }[t.dtype]
        )
        assert entry.shape == list(t.shape)
        if t.numel() == 0:
            assert entry.stats is None
            continue
        f = t.double()
        assert entry.stats.min == pytest.approx(f.min().item())
        assert entry.stats.max == pytest.approx(f.max().item())
        assert entry.stats.mean == pytest.approx(f.mean().item())
        if t.numel() > 1:
            assert entry.stats.std == pytest.approx(f.std().item())
    assert by_name["i64"].stats.distinct == 4
    assert by_name["u8"].stats.distinct == 2


def test_chunked_stats_equal_whole(tmp_path):
    from embedcli.inspection.report import tensor_stats
    from embedcli.storage.store import read_header

    t = torch.randn(1000, 7) * 3 + 100
    path = tmp_path / "c.safetensors"
    save_file({"t": t}, str(path))
    header = read_header(str(path))
    small_chunks = tensor_stats(header, header.tensors[0], chunk_bytes=64)
    whole = tensor_stats(header, header.tensors[0])
    assert small_chunks.mean == pytest.approx(whole.mean, rel=1e-12)
    assert small_chunks.std == pytest.approx(t.double().std().item(), rel=1e-9)


def test_nan_and_inf_are_counted(tmp_path):
    path = tmp_path / "n.safetensors"
    save_file({"x": torch.tensor([1.0, float("nan"), float("inf"), 3.0])}, str(path))
    stats = inspect_file(str(path)).tensors[0].stats
    assert (stats.nan, stats.inf, stats.min, stats.max) == (1, 1, 1.0, 3.0)


def test_preview_prints_like_torch(tmp_path):
    torch.manual_seed(123)
    layer = torch.nn.Embedding(6, 3)
    path = tmp_path / "e.safetensors"
    save_file({"w": layer.weight.detach()}, str(path))
    report = inspect_file(str(path), preview=2, stats=False)
    assert (
        report.previews["w"]
        == "tensor([[ 0.3374, -0.1778, -0.1690],\n        [ 0.9178,  1.5810,  1.3010]])"
    )


def test_every_safetensors_dtype_is_shown(tmp_path):
    header, offset = {}, 0
    for dtype, (bits, _, _) in DTYPES.items():
        n = 8  # 8 elements fill whole bytes for every width
        size = n * bits // 8
        header[f"t_{dtype}"] = {
            "dtype": dtype,
            "shape": [n],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    path = tmp_path / "all.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x01" * offset)
    report = inspect_file(str(path))
    assert {t.dtype for t in report.tensors} == set(DTYPES)
    notes = {t.dtype: t.note for t in report.tensors}
    assert notes["F4"] and "cannot hold F4" in notes["F4"]
    assert all(t.stats is not None or t.note for t in report.tensors)
    proc = invoke("inspect", str(path))
    assert proc.returncode == 0, proc.stderr
    for dtype in DTYPES:
        assert dtype in proc.stdout.decode()


def test_json_output_is_stable_and_strict(small):
    path, _ = small
    proc = invoke("inspect", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (file,) = doc["files"]
    assert set(file) == {
        "path",
        "file_size",
        "header_size",
        "kind",
        "metadata",
        "tensors",
        "previews",
        "decoded",
        "files",
        "parts",
        "corpus",
        "windows",
        "neighbors",
        "decode_note",
    }
    assert file["metadata"] == {"note": "hello"} and file["kind"] is None
    tensor = next(t for t in file["tensors"] if t["name"] == "f32")
    assert set(tensor) == {
        "name",
        "dtype",
        "shape",
        "numel",
        "nbytes",
        "data_offsets",
        "stats",
        "note",
        "histogram",
        "norms",
    }
    assert sum(tensor["histogram"]["counts"]) == tensor["numel"]
    assert set(tensor["stats"]) == {"min", "max", "mean", "std", "distinct", "nan", "inf"}
    assert dumps({"x": math.nan}) == '{\n  "x": null\n}'


def test_diff(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(
        {
            "same": torch.ones(3),
            "moved": torch.zeros(2),
            "shape": torch.zeros(2),
            "only_a": torch.ones(1),
        },
        str(a),
        metadata={"k": "1"},
    )
    save_file(
        {
            "same": torch.ones(3),
            "moved": torch.tensor([0.0, 0.5]),
            "shape": torch.zeros(3),
            "only_b": torch.ones(1),
        },
        str(b),
        metadata={"k": "2"},
    )
    d = diff_files(str(a), str(b))
    assert d.only_in_a == ["only_a"] and d.only_in_b == ["only_b"]
    assert [c.name for c in d.changed] == ["shape"]
    compared = {c.name: c for c in d.compared}
    assert compared["same"].equal and compared["same"].max_abs_diff == 0
    assert not compared["moved"].equal and compared["moved"].max_abs_diff == 0.5
    assert d.metadata_changed == ["k"] and not d.identical
    assert diff_files(str(a), str(a)).identical
    proc = invoke("inspect", str(a), str(b), "--diff", "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["diff"]["identical"] is False
    proc = invoke("inspect", str(a), "--diff")
    assert proc.returncode == 2 and b"exactly two files" in proc.stderr


def test_control_characters_are_escaped(tmp_path):
    path = tmp_path / "evil.safetensors"
    save_file({"name\x1b[31m": torch.zeros(1)}, str(path), metadata={"k\x07": "v\x1b]0;title\x07"})
    proc = invoke("inspect", str(path))
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b" in out


def test_no_stats_path_does_not_import_torch_or_numpy(small):
    path, _ = small
    assert not {"torch", "numpy"} & imported_modules("inspect", str(path), "--no-stats")


@pytest.mark.slow
def test_large_file_stats_with_bounded_memory(tmp_path):
    """A 320 MB file: stats and diff in chunks; peak RSS stays far below the file size."""
    path = tmp_path / "big.safetensors"
    n = 80_000_000  # float32 -> 320 MB
    header = json.dumps({"x": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        chunk = np.arange(4_000_000, dtype=np.float32)
        for _ in range(n // chunk.size):
            f.write(chunk.tobytes())
    code = (
        "import sys, json\n"
        "from embedcli.inspection.files import inspect_file\n"
        "r = inspect_file(sys.argv[1])\n"
        "s = r.tensors[0].stats\n"
        # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report pytest's own peak
        "peak = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024\n"
        "print(json.dumps({'peak': peak, 'min': s.min, 'max': s.max, 'mean': s.mean}))\n"
    )
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["min"] == 0 and result["max"] == 3_999_999
    assert result["mean"] == pytest.approx(1_999_999.5)
    assert result["peak"] < 120 * 2**20, (
        f"peak RSS {result['peak'] / 2**20:.0f} MiB for a 320 MB file"
    )
    path.unlink()
