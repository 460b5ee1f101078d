"""The output layer and typed results: atomic commits, split planning, the contract's keys."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedcli import contract, run_batch, run_embed, run_tokenize
from embedcli.errors import OutputError, UsageError
from embedcli.options import EmbedOptions, WindowOptions
from embedcli.storage.atomic import atomic_file
from embedcli.storage.outputs import write_tensors
from embedcli.storage.split import MAX_FILES, plan_output_shards, split_names
from embedcli.storage.store import TensorSpec, build_header, read_header, write_array

from conftest import SAMPLE

STORY = str(SAMPLE / "the-lighthouse.txt")


def test_atomic_file_leaves_nothing_behind_on_failure(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(str(path)) as f:
        f.write(b"new, half written")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]
    with atomic_file(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["out.bin"]
    with (
        pytest.raises(OutputError, match="cannot write in"),
        atomic_file(str(tmp_path / "missing" / "x")),
    ):
        pass


def test_split_names_one_rule_for_every_split_file():
    assert split_names("d/out.safetensors", 2) == [
        "d/out-00001-of-00002.safetensors",
        "d/out-00002-of-00002.safetensors",
    ]
    tokens = (".tokens.safetensors", ".safetensors")
    assert (
        split_names("c.tokens.safetensors", 3, tokens)[2] == "c-00003-of-00003.tokens.safetensors"
    )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3000),
    width=st.integers(1, 64),
    limit=st.integers(200, 40_000),
    whole=st.booleans(),
)
def test_split_parts_respect_the_limit(tmp_path_factory, n, width, limit, whole):
    """Hugging Face's rule: output that fits is one plain file; otherwise every file holding
    rows fits the limit (header included) unless one row alone cannot; too many files is a
    usage error naming a size that works."""
    rows = [TensorSpec("x", "I32", (n, width))]
    tables = [TensorSpec("t", "F32", (5, 3))] if whole else []
    meta = {"embedcli": "windows", "sources": '["a very long name indeed.txt"]'}
    out = str(tmp_path_factory.mktemp("split") / "o.safetensors")
    shards = plan_output_shards(out, rows, tables, limit, meta)
    assert [s.start for s in shards if s.has_rows][0] == 0
    assert sum(s.stop - s.start for s in shards if s.has_rows) == n
    data = np.arange(n * width, dtype=np.int32).reshape(n, width)
    total = len(build_header([*rows, *tables], meta)) + sum(t.nbytes for t in [*rows, *tables])

    def write():
        return write_tensors(
            out,
            rows,
            tables,
            meta,
            lambda f, a, b: write_array(f, data[a:b]),
            lambda f, spec: write_array(f, np.zeros((5, 3), dtype=np.float32)),
            read=[],
            no_clobber=False,
            max_shard_size=limit,
        )

    if total > limit and len(shards) > MAX_FILES:
        with pytest.raises(UsageError, match="would write"):
            write()
        return
    paths = write()
    if total <= limit:
        assert paths == [out] and os.path.getsize(out) == total
        return
    for shard in shards:
        size = os.path.getsize(shard.path)
        if shard.has_rows and shard.stop - shard.start > 1:
            assert size <= limit, (shard.path, size, limit)


def test_results_are_numbers_not_text(tmp_path, enc, story_text):
    tokens = run_tokenize([STORY], str(tmp_path / "t.safetensors"))
    assert tokens.stats.tokens == 618 and tokens.stats.documents == 1
    assert tokens.written.paths == [str(tmp_path / "t.safetensors")]
    assert tokens.written.sizes[0] == os.path.getsize(tmp_path / "t.safetensors")
    windows = run_batch(
        [str(tmp_path / "t.safetensors")],
        str(tmp_path / "w.safetensors"),
        WindowOptions(max_length=4, stride=4, batch_size=8),
    )
    assert windows.plan.windows == 152 and windows.plan.batches == 19
    assert windows.plan.tokens_covered + windows.plan.tail_dropped == windows.input_ids
    assert windows.first_window.ids == enc.encode(story_text)[:4]
    assert windows.first_window.text == enc.decode(enc.encode(story_text)[:4])
    embedded = run_embed([str(tmp_path / "w.safetensors")], str(tmp_path / "e.safetensors"))
    assert embedded.shape == (152, 4, 256) and embedded.vocab_size == 50257
    assert embedded.bytes_planned == os.path.getsize(tmp_path / "e.safetensors")
    assert embedded.table_head[0, :3].tolist() == pytest.approx(
        [0.3374, -0.1778, -0.3035], abs=1e-4
    )


def test_every_metadata_key_is_in_the_contract(tmp_path):
    run_tokenize([str(SAMPLE)], str(tmp_path / "whole.tokens.safetensors"), shard=(0, 2))
    shard = tmp_path / "whole-00001-of-00002.tokens.safetensors"
    manifest = tmp_path / "whole.tokens.manifest.json"
    run_tokenize([str(SAMPLE)], str(tmp_path / "whole.tokens.safetensors"), shard=(1, 2))
    run_batch([str(manifest)], str(tmp_path / "w.safetensors"), WindowOptions(max_length=4))
    run_embed(
        [str(tmp_path / "w.safetensors")],
        str(tmp_path / "e.safetensors"),
        EmbedOptions(dim=4, max_shard_size=100_000),
    )
    known = set(contract.LABELS) | {
        contract.SHARDS,
        *contract.SHARD_KEYS,
        contract.PART_INDEX,
        contract.PART_COUNT,
        contract.PART_ROWS,
    }
    files = [shard, tmp_path / "w.safetensors", *tmp_path.glob("e-*-of-*.safetensors")]
    for path in files:
        meta = read_header(str(path)).metadata
        assert set(meta) <= known, (path.name, set(meta) - known)
        assert meta[contract.VERSION] and meta[contract.KIND] in contract.KINDS


def _spawned(monkeypatch) -> list[int]:
    """The pids of the detached ``rm`` processes the commit spawns, to wait for: the test waits
    for them to exit, never for a time."""
    pids: list[int] = []
    real = os.posix_spawnp

    def spawn(*args, **kwargs):
        pids.append(real(*args, **kwargs))
        return pids[-1]

    monkeypatch.setattr(os, "posix_spawnp", spawn)
    return pids


def test_replacing_a_large_file_frees_it_after_the_rename(tmp_path, monkeypatch):
    from embedcli.storage import atomic

    monkeypatch.setattr(atomic, "ASIDE_BYTES", 1)  # every file counts as large here
    spawned = _spawned(monkeypatch)
    path = tmp_path / "out.bin"
    path.write_bytes(b"old" * 1000)
    with open(path, "rb") as reader:  # a reader of the old file keeps reading the old file
        with atomic_file(str(path)) as f:
            f.write(b"new")
        assert reader.read() == b"old" * 1000
    assert path.read_bytes() == b"new"
    assert len(spawned) == 1
    assert os.waitpid(spawned[0], 0)[1] == 0  # the detached rm ran to its end...
    assert sorted(tmp_path.glob(".out.bin.*")) == []  # ...and removed the second name


def test_replacing_without_hard_links_still_commits(tmp_path, monkeypatch):
    from embedcli.storage import atomic

    monkeypatch.setattr(atomic, "ASIDE_BYTES", 1)

    def no_links(*args):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with atomic_file(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [path]


def test_preallocated_files_keep_the_size_written(tmp_path):
    from embedcli.storage.atomic import can_preallocate, preallocate

    path = tmp_path / "f.bin"
    with open(path, "wb") as f:
        preallocate(f, 1 << 20)
        f.write(b"x" * 1000)  # fewer bytes than reserved: the file says so
    assert path.stat().st_size == 1000
    if can_preallocate():
        assert path.stat().st_blocks * 512 >= 1 << 20  # the blocks were reserved


def test_a_large_output_is_written_into_reserved_blocks(tmp_path, monkeypatch):
    from embedcli.storage import atomic

    sizes = []
    real = atomic.preallocate
    monkeypatch.setattr(
        "embedcli.storage.outputs.preallocate", lambda f, n: sizes.append(n) or real(f, n)
    )
    out = tmp_path / "w.safetensors"
    run_batch([str(SAMPLE / "the-lighthouse.txt")], str(out), WindowOptions(max_length=4))
    assert sizes == [out.stat().st_size]
