"""--max-shard-size: a sharded output and its index read back equal to the unsharded one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from embedcli.inspection.files import inspect_file
from embedcli.storage.split import load_index
from embedcli.storage.store import read_header
from embedcli.units import parse_size

from conftest import SAMPLE, invoke


@pytest.mark.parametrize(("stage", "extra"), [("embed", ["-d", "16"]), ("batch", [])])
@pytest.mark.parametrize("size", ["20KB", "1MB", "1GB"])
def test_sharded_output_reads_back_equal(tmp_path, stage, extra, size):
    one = tmp_path / "one.safetensors"
    many = tmp_path / "many.safetensors"
    args = [str(SAMPLE), "-T", "4", "-q", *extra]
    assert invoke(stage, *args, "-o", str(one)).returncode == 0
    proc = invoke(stage, *args, "-o", str(many), "--max-shard-size", size)
    assert proc.returncode == 0, proc.stderr
    index = tmp_path / "many.safetensors.index.json"
    if one.stat().st_size <= parse_size(size):  # it fits: one plain file, as Hugging Face does
        assert many.read_bytes() == one.read_bytes() and not index.exists()
        return
    doc = json.loads(index.read_text())
    files = sorted(p.name for p in tmp_path.glob("many-*-of-*.safetensors"))
    assert files and all(f.endswith(f"-of-{len(files):05d}.safetensors") for f in files)
    limit = parse_size(size)
    for name in files:
        path = tmp_path / name
        biggest = max(t.nbytes for t in read_header(str(path)).tensors)  # a tensor is never split
        assert path.stat().st_size <= max(limit, biggest + 4096)
    assert doc["metadata"]["total_size"] == sum(
        t.nbytes for f in files for t in read_header(str(tmp_path / f)).tensors
    )
    whole, pieces = load_file(str(one)), load_index(str(index))
    assert sorted(whole) == sorted(pieces)
    for name in whole:
        assert np.array_equal(whole[name], pieces[name]), name
    report = inspect_file(str(index))
    single = inspect_file(str(one))
    assert [(t.name, t.shape) for t in report.tensors] == [
        (t.name, t.shape) for t in single.tensors
    ] or sorted((t.name, t.shape) for t in report.tensors) == sorted(
        (t.name, t.shape) for t in single.tensors
    )
    for a in report.tensors:
        b = next(t for t in single.tensors if t.name == a.name)
        assert a.stats.mean == pytest.approx(b.stats.mean) and a.stats.max == b.stats.max


def test_inspect_cli_understands_the_index(tmp_path):
    out = tmp_path / "e.safetensors"
    invoke(
        "embed",
        str(SAMPLE),
        "-o",
        str(out),
        "-T",
        "4",
        "-d",
        "8",
        "--max-shard-size",
        "10KB",
        "-q",
        check=True,
    )
    proc = invoke("inspect", str(tmp_path / "e.safetensors.index.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    (file,) = json.loads(proc.stdout)["files"]
    assert file["kind"] == "embeddings" and len(file["files"]) > 2
    emb = next(t for t in file["tensors"] if t["name"] == "embeddings")
    assert emb["shape"][1:] == [4, 8]


def test_size_parsing_and_bad_values(tmp_path):
    assert (
        parse_size("2GB") == 2_000_000_000
        and parse_size("1.5MiB") == 1572864
        and parse_size("4096") == 4096
    )
    with pytest.raises(ValueError):
        parse_size("lots")
    proc = invoke(
        "batch", str(SAMPLE), "-o", str(tmp_path / "x.safetensors"), "--max-shard-size", "lots"
    )
    assert proc.returncode == 2 and b"not a size" in proc.stderr
