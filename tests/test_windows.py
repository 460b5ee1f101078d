from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from embedcli.errors import InputError, UsageError
from embedcli.windows import count_windows, gather, plan_windows

from conftest import SAMPLE, invoke
from reference import reference_windows


def windows_of(ids, plan):
    ids = np.asarray(ids)
    return gather(ids, plan.starts, plan.max_length), gather(
        ids, plan.starts, plan.max_length, shift=1
    )


def direct_loop(ids, t, s, b, drop_last, num_batches=None):
    """The reference loop without torch: list of (input, target) rows, batched."""
    rows = [(ids[i : i + t], ids[i + 1 : i + t + 1]) for i in range(0, len(ids) - t, s)]
    n = len(rows) // b * b if drop_last else len(rows)
    if num_batches is not None:
        n = min(n, num_batches * b)
    return rows[:n]


@pytest.mark.parametrize(
    ("t", "s", "b"),
    [(4, 4, 8), (4, 1, 8), (4, 2, 3), (4, 6, 2), (8, 8, 1), (1, 1, 5), (256, 128, 4), (64, 32, 4)],
)
def test_golden_against_reference_dataloader_on_text(enc, story_text, t, s, b):
    ids = enc.encode(story_text, allowed_special={"<|endoftext|>"})
    if len(ids) <= t:
        pytest.skip("text too short")
    want_x, want_y = reference_windows(ids, batch_size=b, max_length=t, stride=s)
    if want_x.shape[0] == 0:  # the reference yields no batch at all: embedcli says why instead
        with pytest.raises(InputError, match="no full batch"):
            plan_windows(len(ids), max_length=t, stride=s, batch_size=b)
        return
    plan = plan_windows(len(ids), max_length=t, stride=s, batch_size=b)
    x, y = windows_of(ids, plan)
    assert torch.equal(torch.from_numpy(x.astype(np.int64)), want_x)
    assert torch.equal(torch.from_numpy(y.astype(np.int64)), want_y)


def test_seed_first_batch_on_arange_ids():
    ids = np.arange(100)
    plan = plan_windows(100, max_length=4, stride=4, batch_size=8, num_batches=1)
    x, y = windows_of(ids, plan)
    assert x.shape == (8, 4)
    assert x[:, 0].tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    assert (y == x + 1).all()


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 200),
    t=st.integers(1, 20),
    s=st.integers(1, 25),
    b=st.integers(1, 9),
    drop_last=st.booleans(),
    num_batches=st.one_of(st.none(), st.integers(1, 5)),
)
def test_matches_direct_loop(n, t, s, b, drop_last, num_batches):
    ids = np.arange(n) * 7 % 101
    expected = direct_loop(list(ids), t, s, b, drop_last, num_batches)
    assert count_windows(n, t, s) == len(range(0, n - t, s))
    try:
        plan = plan_windows(
            n, max_length=t, stride=s, batch_size=b, drop_last=drop_last, num_batches=num_batches
        )
    except InputError:
        assert not expected
        return
    x, y = windows_of(ids, plan)
    assert [list(r) for r in x] == [list(e[0]) for e in expected]
    assert [list(r) for r in y] == [list(e[1]) for e in expected]
    assert plan.n_batches == -(-len(expected) // b)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=8),
    t=st.integers(1, 8),
    s=st.integers(1, 10),
)
def test_no_cross_docs_windows_stay_inside_one_document(lengths, t, s):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    expected = []
    for d in range(len(lengths)):
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        expected += [lo + i for i in range(0, (hi - lo) - t, s)]
    try:
        plan = plan_windows(n, max_length=t, stride=s, batch_size=1, doc_offsets=offsets)
    except InputError:
        assert not expected or n < t + 1
        return
    assert plan.starts.tolist() == expected
    doc_of = np.searchsorted(offsets, plan.starts, side="right")
    doc_of_end = np.searchsorted(offsets, plan.starts + t, side="right")  # last target position
    assert (doc_of == doc_of_end).all()


def test_shuffle_is_reproducible_and_a_permutation():
    a = plan_windows(1000, max_length=4, stride=3, batch_size=7, shuffle_seed=5)
    b = plan_windows(1000, max_length=4, stride=3, batch_size=7, shuffle_seed=5)
    c = plan_windows(1000, max_length=4, stride=3, batch_size=7, shuffle_seed=6)
    assert a.starts.tolist() == b.starts.tolist() != c.starts.tolist()
    every = plan_windows(1000, max_length=4, stride=3, batch_size=1, shuffle_seed=5)
    assert every.starts.dtype == np.int32  # half the memory of int64 where the starts fit
    assert sorted(every.starts.tolist()) == list(range(0, 996, 3))
    # the first draws of numpy's PCG64 for seed 5: pinned so the order never drifts silently
    assert (
        every.starts[:5].tolist()
        == np.arange(0, 996, 3)[np.random.default_rng(5).permutation(332)][:5].tolist()
    )


def test_coverage_facts():
    plan = plan_windows(10, max_length=4, stride=4, batch_size=1)
    assert plan.starts.tolist() == [0, 4]
    assert plan.tokens_covered == 9 and plan.tail_dropped == 1
    gaps = plan_windows(20, max_length=2, stride=5, batch_size=1)
    assert gaps.starts.tolist() == [0, 5, 10, 15]
    assert gaps.tokens_covered == 12


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n": 4, "max_length": 4}, InputError, "too few for one window"),
        ({"n": 50, "max_length": 0}, UsageError, "--max-length must be at least 1"),
        ({"n": 50, "max_length": 4, "stride": 0}, UsageError, "--stride must be at least 1"),
        (
            {"n": 50, "max_length": 4, "batch_size": 0},
            UsageError,
            "--batch-size must be at least 1",
        ),
        ({"n": 10, "max_length": 4, "batch_size": 8}, InputError, "no full batch"),
    ],
)
def test_errors(kwargs, error, message):
    n = kwargs.pop("n")
    with pytest.raises(error, match=message):
        plan_windows(n, **kwargs)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(5, 400),
    t=st.integers(1, 9),
    stride=st.integers(1, 12),
    shuffle=st.booleans(),
    cross=st.booleans(),
    batch=st.integers(1, 5),
)
def test_coverage_without_sorting_equals_the_sorted_count(n, t, stride, shuffle, cross, batch):
    """Coverage and the tail, computed by arithmetic or from ordered starts, equal a plain count."""
    docs = np.array(sorted({0, n, *range(0, n, 37)}), dtype=np.int64)
    try:
        plan = plan_windows(
            n,
            max_length=t,
            stride=stride,
            batch_size=batch,
            shuffle_seed=3 if shuffle else None,
            doc_offsets=None if cross else docs,
        )
    except InputError:
        return
    covered = set()
    for s in plan.starts.tolist():
        covered.update(range(s, s + t + 1))
    assert plan.tokens_covered == len(covered)
    assert plan.tail_dropped == n - max(plan.starts.tolist()) - t - 1


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(6, 300),
    t=st.integers(1, 5),
    stride=st.integers(1, 4),
    shuffle=st.booleans(),
    rows=st.integers(1, 40),
    dtype=st.sampled_from([np.int64, np.int32]),
    high=st.sampled_from([50257, 128256, 65536]),
)
def test_written_windows_equal_gathered_ones(
    tmp_path_factory, n, t, stride, shuffle, rows, dtype, high
):
    """Also for a shuffled plan, which gathers from ids narrowed to uint16 where they fit
    (``random_access_ids``), and from the ids as they are where one does not (Llama 3's)."""
    import io

    from embedcli.window_rows import random_access_ids, write_windows

    ids = np.random.default_rng(n).integers(0, high, n).astype(np.int32)
    plan = plan_windows(n, max_length=t, stride=stride, shuffle_seed=1 if shuffle else None)
    if shuffle:  # as one array, and as a shard set's segments (copied in, never joined first)
        cuts = sorted({0, n, *np.random.default_rng(t).integers(0, n, 3).tolist()})
        parts = [ids[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        assert np.array_equal(random_access_ids(parts, step=5), random_access_ids([ids], step=7))
    source = random_access_ids([ids], step=7) if shuffle else ids
    assert source.dtype == (np.uint16 if shuffle and ids.max() < 65536 else np.int32)
    for shift in (0, 1):
        out = io.BytesIO()
        write_windows(out, source, plan, 0, plan.n_windows, dtype, shift, rows)
        want = gather(ids, np.asarray(plan.starts), t, shift=shift).astype(dtype)
        assert out.getvalue() == want.tobytes()


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(6, 300),
    t=st.integers(1, 5),
    stride=st.integers(1, 4),
    rows=st.integers(1, 40),
    dtype=st.sampled_from([np.int64, np.int32]),
    cross=st.booleans(),
    cut=st.floats(0, 1),
)
def test_one_gather_for_both_tensors_writes_the_bytes_of_two_passes(
    tmp_path_factory, n, t, stride, rows, dtype, cross, cut
):
    """A shuffled (or document-bound) plan gathers each row once for inputs and targets and
    puts them at their two offsets of a regular file: the same bytes as the two passes, for
    any range of windows (a shard's), after whatever the file holds already (a header)."""
    import io

    from embedcli.window_rows import random_access_ids, write_window_pairs, write_windows

    ids = random_access_ids([np.random.default_rng(n).integers(0, 50257, n).astype(np.int32)])
    docs = np.unique(np.r_[0, np.random.default_rng(t).integers(0, n, 4), n])
    try:
        plan = plan_windows(
            n, max_length=t, stride=stride, shuffle_seed=None if not cross else 1,
            doc_offsets=None if cross else docs,
        )  # fmt: skip
    except InputError:  # no document holds a window
        return
    a = int(plan.n_windows * cut)
    want = io.BytesIO()
    want.write(b"header")
    for shift in (0, 1):
        write_windows(want, ids, plan, a, plan.n_windows, np.dtype(dtype), shift, rows)
    path = tmp_path_factory.mktemp("pairs") / "out.bin"
    with open(path, "wb") as f:
        f.write(b"header")
        assert write_window_pairs(f, ids, plan, a, plan.n_windows, np.dtype(dtype), rows)
        assert f.tell() == len(want.getvalue())
        f.write(b"!")  # what comes next goes after the targets
    assert path.read_bytes() == want.getvalue() + b"!"
    assert not write_window_pairs(io.BytesIO(), ids, plan, 0, plan.n_windows, np.dtype(dtype), 4)
    with open(path, "ab") as appending:  # `-o - >> file`: pwrite would append, so two passes
        assert not write_window_pairs(appending, ids, plan, 0, 1, np.dtype(dtype), 4)
    assert path.read_bytes() == want.getvalue() + b"!"


def test_released_pages_still_read_the_same(tmp_path):
    from embedcli.storage.store import memmap_array, read_header, release_pages, write_arrays

    ids = np.arange(3_000_000, dtype=np.int32)
    path = tmp_path / "t.safetensors"
    with open(path, "wb") as f:
        write_arrays(f, {"doc_offsets": np.array([0, ids.size]), "ids": ids}, {})
    header = read_header(str(path))
    mapped = memmap_array(header, header.tensor("ids"))
    assert int(mapped[2_000_000]) == 2_000_000
    release_pages(mapped, 2_500_000)  # dropped from this process; the file is untouched
    release_pages(ids, 10)  # not a memory map: nothing happens
    assert np.array_equal(mapped, ids)
    from embedcli.window_rows import random_access_ids

    narrow = random_access_ids([memmap_array(header, header.tensor("ids")) % 60000], step=1 << 20)
    assert narrow.dtype == np.uint16 and np.array_equal(narrow, ids % 60000)
    big = random_access_ids([mapped], step=1 << 20)  # ids past 65535: kept as they are
    assert big is mapped and np.array_equal(big, ids)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(6, 400),
    t=st.integers(1, 6),
    stride=st.integers(1, 5),
    batch=st.integers(1, 7),
    num_batches=st.one_of(st.none(), st.integers(1, 30)),
    cross=st.booleans(),
    chunk=st.integers(1, 50),
)
def test_shuffled_coverage_in_chunks_equals_a_plain_count(
    n, t, stride, batch, num_batches, cross, chunk
):
    from embedcli.windows import ArithmeticStarts, count_windows, covered_tokens

    docs = np.array(sorted({0, n, *range(0, n, 23)}), dtype=np.int64)
    try:
        plan = plan_windows(
            n, max_length=t, stride=stride, batch_size=batch, num_batches=num_batches,
            shuffle_seed=5, doc_offsets=None if cross else docs,
        )  # fmt: skip
    except InputError:
        return
    covered = set()
    for s in plan.starts.tolist():
        covered.update(range(s, s + t + 1))
    assert plan.tokens_covered == len(covered)
    if cross:  # the same count, walked in chunks of any size
        starts = ArithmeticStarts(count_windows(n, t, stride), stride)
        order = np.random.default_rng(5).permutation(len(starts))
        assert covered_tokens(starts, order, plan.n_windows, t + 1, chunk) == len(covered)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("llmc", ["--max-length", "8"]), ("llmc", ["--max-length", "5", "--stride", "3"]),
     ("llmc", ["--max-length", "4", "--shuffle"]), ("shards", ["--max-length", "7"]),
     ("shards", ["--max-length", "6", "--no-cross-docs"])],
)  # fmt: skip
def test_batch_of_a_shard_set_equals_one_file_and_reads_it_unjoined(
    tmp_path, monkeypatch, kind, extra
):
    """An llm.c shard set (documents across its files) or a manifest of tokenize --shard
    parts batches to the bytes of the same ids in one file; an in-order plan reads the files
    where they lie, never joined (issue 34)."""
    from embedcli.formats.base import TokenSource

    text = str(SAMPLE / "articles.jsonl")
    if kind == "llmc":
        one, many = tmp_path / "one.bin", tmp_path / "many.bin.json"
        invoke("tokenize", text, "--to", "llmc", "-o", str(one), "-q", check=True)
        invoke("tokenize", text, "--to", "llmc", "-o", str(tmp_path / "many.bin"),
               "--shard-tokens", "37", "-q", check=True)  # fmt: skip
    else:
        one, many = tmp_path / "one.tokens.safetensors", tmp_path / "m.tokens.manifest.json"
        invoke("tokenize", text, "-o", str(one), "-q", check=True)
        for i in range(3):
            invoke("tokenize", text, "-o", str(tmp_path / "m.tokens.safetensors"), "--shard",
                   f"{i}/3", "-q", check=True)  # fmt: skip
    outs = []
    for name, source in (("one", one), ("many", many)):
        out = tmp_path / f"{name}.windows.safetensors"
        if name == "many" and "--shuffle" not in extra:

            def guarded(s, joined=TokenSource.ids.fget):
                return joined(s) if len(s.segments) == 1 else pytest.fail("joined")

            monkeypatch.setattr(TokenSource, "ids", property(guarded))
        invoke("batch", str(source), "-o", str(out), "--batch-size", "2", "-q", *extra,
               check=True)  # fmt: skip
        monkeypatch.undo()
        outs.append(load_file(out))
    assert outs[0].keys() == outs[1].keys()
    for key in outs[0]:
        assert outs[0][key].tobytes() == outs[1][key].tobytes(), key


def test_embed_of_a_shard_set_equals_one_file_and_reads_it_unjoined(tmp_path, monkeypatch):
    """``embed`` of an llm.c set whose documents cross its files: the one-file bytes, the
    windows read where they lie (issue 34)."""
    from embedcli.formats.base import TokenSource

    text = str(SAMPLE / "articles.jsonl")
    one = tmp_path / "one.bin"
    invoke("tokenize", text, "--to", "llmc", "-o", str(one), "-q", check=True)
    invoke("tokenize", text, "--to", "llmc", "-o", str(tmp_path / "many.bin"), "--shard-tokens",
           "37", "-q", check=True)  # fmt: skip
    outs = []
    for name, source in (("one", one), ("many", tmp_path / "many.bin.json")):
        out = tmp_path / f"{name}.embeddings.safetensors"
        if name == "many":

            def guarded(s, joined=TokenSource.ids.fget):
                return joined(s) if len(s.segments) == 1 else pytest.fail("joined")

            monkeypatch.setattr(TokenSource, "ids", property(guarded))
        invoke("embed", str(source), "-o", str(out), "--dim", "8", "--max-length", "6",
               "--stride", "5", "-q", check=True)  # fmt: skip
        monkeypatch.undo()
        outs.append(load_file(out))
    assert outs[0].keys() == outs[1].keys()
    for key in outs[0]:
        assert outs[0][key].tobytes() == outs[1][key].tobytes(), key
