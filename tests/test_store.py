"""The strict header reader and the writer, on files built byte by byte."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedcli.errors import FormatError, InputError
from embedcli.storage.store import TensorSpec, build_header, read_header, write_arrays


def raw_file(header: dict | bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode()
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


GOOD = {"a": entry(offsets=(0, 8)), "b": entry("I64", (1,), (8, 16))}

BAD_FILES = {
    "short": (b"abc", "shorter than the 8-byte header length"),
    "text": (b"hello, this is just a text file\n", "it looks like text"),
    "lfs": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12345\n",
        "Git LFS pointer",
    ),
    "truncated": (raw_file(GOOD, b"\0" * 10), "runs 6 bytes past the end of the file"),
    "header_past_end": (raw_file(GOOD, length=5000), "runs past the end of the file"),
    "not_utf8": (raw_file(b'{"a\xff": 1}'), "header is not UTF-8"),
    "not_json": (raw_file("{not json}"), "header is not valid JSON"),
    "not_object": (raw_file("[1, 2]"), "not an object"),
    "duplicate": (
        raw_file(f'{{"a": {json.dumps(entry())}, "a": {json.dumps(entry())}}}', b"\0" * 8),
        "names 'a' twice",
    ),
    "overlap": (
        raw_file({"a": entry(offsets=(0, 8)), "b": entry(offsets=(4, 12))}, b"\0" * 12),
        "overlap",
    ),
    "gap": (
        raw_file({"a": entry(offsets=(0, 8)), "b": entry(offsets=(12, 20))}, b"\0" * 20),
        "gap of 4 bytes after 'a'",
    ),
    "gap_at_start": (raw_file({"a": entry(offsets=(4, 12))}, b"\0" * 12), "at the start"),
    "shape_mismatch": (
        raw_file({"a": entry(shape=(3,), offsets=(0, 8))}, b"\0" * 8),
        "needs 12 bytes but data_offsets span 8",
    ),
    "bad_dtype": (raw_file({"a": entry(dtype="F128")}, b"\0" * 8), "unknown dtype 'F128'"),
    "negative_shape": (raw_file({"a": entry(shape=(-2,))}, b"\0" * 8), "non-negative integers"),
    "bad_offsets": (
        raw_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8),
        "data_offsets must be",
    ),
    "metadata_not_str": (
        raw_file({"__metadata__": {"k": 1}, **GOOD}, b"\0" * 16),
        "metadata value for 'k' is int, not a string",
    ),
    "metadata_not_obj": (
        raw_file({"__metadata__": "x", **GOOD}, b"\0" * 16),
        "__metadata__ is not",
    ),
    "trailing": (raw_file(GOOD, b"\0" * 20), "4 trailing bytes"),
    "too_big_header": (
        struct.pack("<Q", 200_000_000) + b"{" + b" " * 100,
        "exceeds safetensors' 100 MB",
    ),
    "subbyte": (
        raw_file({"a": entry(dtype="F4", shape=(3,), offsets=(0, 2))}, b"\0" * 2),
        "do not fill whole bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_one_clear_error(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(content)
    with pytest.raises(FormatError) as info:
        read_header(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_header(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="is a directory"):
        read_header(str(tmp_path))


def test_valid_odd_files(tmp_path):
    path = tmp_path / "odd.safetensors"
    header = {
        "zero": entry(shape=(0, 5), offsets=(0, 0)),
        "scalar": entry(shape=(), offsets=(0, 4)),
        "f4": entry(dtype="F4", shape=(4,), offsets=(4, 6)),
        "e8": entry("F8_E8M0", (2,), (6, 8)),
    }
    path.write_bytes(raw_file(header, b"\0" * 8))
    h = read_header(str(path))
    assert {t.name: t.shape for t in h.tensors} == {
        "zero": (0, 5),
        "scalar": (),
        "f4": (4,),
        "e8": (2,),
    }
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(raw_file({}))
    assert read_header(str(empty)).tensors == []


def test_writer_matches_safetensors_reader(tmp_path):
    from safetensors.numpy import load_file

    arrays = {
        "x": np.arange(6, dtype=np.float32).reshape(2, 3),
        "y": np.array([1, 2, 3], dtype=np.int64),
        "z": np.zeros((0, 4), dtype=np.int32),
        "s": np.array(7.0, dtype=np.float64),
    }
    path = tmp_path / "w.safetensors"
    with open(path, "wb") as f:
        write_arrays(f, arrays, {"b": "2", "a": "1"})
    loaded = load_file(str(path))
    for k, v in arrays.items():
        assert np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype
    h = read_header(str(path))
    assert h.metadata == {"a": "1", "b": "2"}
    assert (8 + h.header_size) % 8 == 0  # data section aligned


def test_header_is_deterministic():
    specs = [TensorSpec("b", "F32", (2,)), TensorSpec("a", "I64", (3,))]
    one = build_header(specs, {"z": "1", "a": "2"})
    two = build_header(specs, {"a": "2", "z": "1"})
    assert one == two


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fuzz_mutated_headers_never_crash(tmp_path_factory, data):
    """Any mutation of a valid file is either read correctly or refused with FormatError."""
    base = raw_file({"__metadata__": {"k": "v"}, **GOOD}, b"\1" * 16)
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(mutated)))
        if op == "flip" and pos < len(mutated):
            mutated[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del mutated[pos : pos + data.draw(st.integers(1, 8))]
        else:
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    path.write_bytes(bytes(mutated))
    try:
        header = read_header(str(path))
    except FormatError:
        return
    from safetensors import safe_open  # what we accept, safetensors' own reader accepts too

    with safe_open(str(path), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(t.name for t in header.tensors)
