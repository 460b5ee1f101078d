"""embedcli.data: memory-mapped windows and batches equal to `embedcli batch`, for training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from embedcli import run_batch, run_tokenize
from embedcli.data import TokenWindows, WindowBatchSampler, create_dataloader, create_dataloader_v1
from embedcli.errors import UsageError
from embedcli.options import TokenizeOptions, WindowOptions
from embedcli.windows import DocumentWindows, plan_windows

from conftest import SAMPLE
from reference import create_dataloader_v1 as book_dataloader


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The sample corpus as a token file, a 3-shard manifest, and nanoGPT/Megatron/npy files."""
    tmp = tmp_path_factory.mktemp("data")
    tokens = tmp / "c.tokens.safetensors"
    run_tokenize([str(SAMPLE)], str(tokens))
    for i in range(3):
        run_tokenize([str(SAMPLE)], str(tmp / "s.tokens.safetensors"), shard=(i, 3))
    out = {"safetensors": tokens, "manifest": tmp / "s.tokens.manifest.json"}
    for to, name in (("nanogpt", "c.bin"), ("megatron", "m"), ("npy", "c.npy")):
        opts = TokenizeOptions(eot="between")
        run_tokenize([str(SAMPLE)], str(tmp / name), opts, to=to)
        out[to] = tmp / name
    opts = TokenizeOptions(eot="between")  # an llm.c set of 300-id shards: documents cut across
    run_tokenize([str(SAMPLE)], str(tmp / "l.bin"), opts, to="llmc", shard_tokens=300)
    out["llmc"] = tmp / "l.bin"
    return out


def _batch(tokens, tmp_path, **opts):
    out = tmp_path / "w.safetensors"
    run_batch([str(tokens)], str(out), WindowOptions(**opts))
    return load_file(str(out))


def _all(loader):
    pairs = list(loader)
    return torch.cat([x for x, _ in pairs]).numpy(), torch.cat([y for _, y in pairs]).numpy()


@pytest.mark.parametrize("kind", ["safetensors", "manifest", "nanogpt", "megatron", "npy", "llmc"])
def test_batches_equal_embedcli_batch_on_every_format(files, tmp_path, kind):
    want = _batch(files["safetensors"], tmp_path, max_length=4, stride=3, batch_size=8)
    x, y = _all(create_dataloader(str(files[kind]), 8, 4, 3))
    assert np.array_equal(x, want["inputs"]) and np.array_equal(y, want["targets"])


def test_shard_sets_stay_segments_and_windows_cross_them(files, tmp_path):
    """issue 34: an llm.c shard set and a manifest's parts are read as their memory maps, in
    order, never joined into one array; a window across a shard boundary is gathered from
    both, equal to the joined stream's."""
    from embedcli.data import open_tokens

    whole = open_tokens(str(files["safetensors"]))
    for kind in ("llmc", "manifest"):
        stream = open_tokens(str(files[kind]))
        assert len(stream.segments) > 2 or kind == "manifest", kind  # the set: its shards
        assert all(isinstance(s, np.memmap) or s.size <= 1 for s in stream.segments), kind
        n = int(stream.bounds[-1])
        assert n == int(whole.bounds[-1])
        starts = np.arange(0, n - 9, 7)
        assert np.array_equal(stream.read_rows(starts, 9), whole.read_rows(starts, 9)), kind


@pytest.mark.parametrize("kind", ["llmc"])  # 300-id shards: many windows straddle two
def test_the_windows_value_of_a_shard_set_reads_its_segments_unjoined(files, tmp_path, kind):
    """``Tokens.open(shard set).windows(...)``: rows gathered across the shards' memory maps
    (windows straddling a shard boundary included), equal to ``embedcli batch``'s file, and
    the shards are never joined into one array for it."""
    import embedcli as ec

    want = _batch(files[kind], tmp_path, max_length=16, stride=5, shuffle=True, seed=2)
    windows = ec.Tokens.open(files[kind]).windows(16, 5, shuffle=True, seed=2)
    assert len(windows.source.segments) > 1
    assert np.array_equal(windows.inputs, want["inputs"])
    assert np.array_equal(windows.targets, want["targets"])
    assert windows.source._ids is None  # planned and gathered without joining the segments


@pytest.mark.parametrize("kind", ["safetensors", "megatron"])
def test_shuffled_and_inside_documents(files, tmp_path, kind):
    opts = {"max_length": 6, "batch_size": 5, "shuffle": True, "seed": 9, "cross_docs": False}
    want = _batch(files["safetensors"], tmp_path, **opts)
    loader = create_dataloader(str(files[kind]), 5, 6, shuffle=True, seed=9, cross_docs=False)
    x, y = _all(loader)
    assert np.array_equal(x, want["inputs"]) and np.array_equal(y, want["targets"])
    later = create_dataloader(str(files[kind]), 5, 6, shuffle=True, seed=9, epoch=1)
    assert not np.array_equal(_all(later)[0][: len(x)], x)


def test_dataset_is_every_window_of_keep_last(files, tmp_path):
    want = _batch(files["safetensors"], tmp_path, max_length=7, stride=2, drop_last=False)
    ds = TokenWindows(str(files["safetensors"]), 7, 2)
    assert len(ds) == want["inputs"].shape[0]
    for i in (0, 1, len(ds) // 2, len(ds) - 1):
        x, y = ds[i]
        assert x.dtype == torch.int64 and x.shape == (7,)
        assert np.array_equal(x.numpy(), want["inputs"][i])
        assert np.array_equal(y.numpy(), want["targets"][i])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_ranks_split_the_batches_disjointly_and_completely():
    whole = [b.tolist() for b in WindowBatchSampler(103, 4, shuffle=True).batches()]
    parts = [WindowBatchSampler(103, 4, shuffle=True, rank=r, world_size=3) for r in range(3)]
    got = [b for p in parts for b in p]
    assert sorted(map(tuple, got)) == sorted(map(tuple, whole)) and len(got) == len(whole)
    seen = [set(i for b in p for i in b) for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    equal = [WindowBatchSampler(103, 4, rank=r, world_size=3, equal_shares=True) for r in range(3)]
    assert [len(p) for p in equal] == [8, 8, 8]  # 25 batches: the 25th is left out


@settings(max_examples=200, deadline=None)
@given(
    windows=st.integers(0, 500),
    batch=st.integers(1, 40),
    world=st.integers(1, 5),
    drop_last=st.booleans(),
    equal=st.booleans(),
    data=st.data(),
)
def test_a_sampler_s_length_is_arithmetic(windows, batch, world, drop_last, equal, data):
    """issue 34: len() counted the batches of a whole shuffled permutation on every call; now
    it is arithmetic, and equals the batches iterated."""
    rank = data.draw(st.integers(0, world - 1))
    sampler = WindowBatchSampler(
        windows, batch, shuffle=True, rank=rank, world_size=world, drop_last=drop_last,
        equal_shares=equal,
    )  # fmt: skip
    assert len(sampler) == len(sampler.batches()) == len(list(sampler))


def test_resume_after_k_batches_continues_identically(files):
    path = str(files["safetensors"])
    full = [x for x, _ in create_dataloader(path, 4, 8, shuffle=True, seed=3)]
    first = create_dataloader(path, 4, 8, shuffle=True, seed=3)
    it = iter(first)
    head = [next(it)[0] for _ in range(5)]
    saved = first.state_dict()
    assert saved["batches_consumed"] == 5
    second = create_dataloader(path, 4, 8, shuffle=True, seed=3)
    second.load_state_dict(saved)
    rest = [x for x, _ in second]
    assert all(torch.equal(a, b) for a, b in zip(head + rest, full, strict=True))
    assert second.state_dict()["batches_consumed"] == 0  # the epoch completed


def test_workers_give_the_same_batches(files):
    path = str(files["manifest"])
    one = _all(create_dataloader(path, 8, 4, shuffle=True))
    two = _all(create_dataloader(path, 8, 4, shuffle=True, num_workers=2))
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


def test_book_dataloader_drop_in(files, enc):
    text = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
    tokens = files["safetensors"].parent / "story.tokens.safetensors"
    run_tokenize([str(SAMPLE / "the-lighthouse.txt")], str(tokens))
    ids = enc.encode(text, allowed_special={"<|endoftext|>"})
    book = book_dataloader(ids, batch_size=8, max_length=4, stride=4, shuffle=False)
    ours = create_dataloader_v1(str(tokens), batch_size=8, max_length=4, stride=4, shuffle=False)
    assert len(book) == len(ours)
    for (bx, by), (ox, oy) in zip(book, ours, strict=True):
        assert torch.equal(bx, ox) and torch.equal(by, oy)


def test_text_is_not_a_token_file():
    with pytest.raises(UsageError, match="tokenize it first"):
        TokenWindows(str(SAMPLE / "the-lighthouse.txt"), 4)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=12),
    max_length=st.integers(1, 8),
    stride=st.integers(1, 5),
)
def test_window_starts_inside_documents_match_the_plan(lengths, max_length, stride):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ds = DocumentWindows(offsets, max_length, stride)
    if int(offsets[-1]) < max_length + 1 or len(ds) == 0:
        return
    plan = plan_windows(
        int(offsets[-1]),
        max_length=max_length,
        stride=stride,
        drop_last=False,
        doc_offsets=offsets,
    )
    assert [ds.start(i) for i in range(len(ds))] == plan.starts.tolist()
    assert ds.starts(np.arange(len(ds))).tolist() == plan.starts.tolist()


@pytest.mark.parametrize("kind", ["safetensors", "manifest"])
@pytest.mark.parametrize("cross_docs", [True, False])
def test_a_batch_in_one_gather_equals_the_windows_one_by_one(files, kind, cross_docs):
    """``__getitems__`` (torch's batched fetch) gives ``__getitem__``'s windows, also where a
    window crosses from one shard of a manifest into the next; a user's own ``DataLoader``
    with the default collate gets the same batches."""
    ds = TokenWindows(str(files[kind]), 5, 2, cross_docs=cross_docs)
    rng = np.random.default_rng(0)
    for indices in ([0], list(range(len(ds))), rng.integers(0, len(ds), 64).tolist()):
        batch = ds.__getitems__(indices)
        assert batch.inputs.shape == (len(indices), 5) and batch.inputs.is_contiguous()
        assert batch.targets.dtype == torch.int64 and batch.targets.is_contiguous()
        assert len(batch) == len(indices) and len(batch[:2]) == min(2, len(indices))
        for (x, y), i in zip(batch, indices, strict=True):
            want_x, want_y = ds[i]
            assert torch.equal(x, want_x) and torch.equal(y, want_y)
    for bad in ([0, len(ds)], [-1, 0], np.array([len(ds)])):
        with pytest.raises(IndexError):
            ds.__getitems__(bad)
    assert ds.__getitems__([]).inputs.shape == (0, 5)
    plain = torch.utils.data.DataLoader(ds, batch_size=8)
    ours = create_dataloader(str(files[kind]), 8, 5, 2, cross_docs=cross_docs, drop_last=False)
    for (a, b), (c, d) in zip(plain, ours, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


WORKER_MEMORY = """
import json, sys
from torch.utils.data import DataLoader
from embedcli.data import collate_windows, create_dataloader


def kib(key="RssAnon"):  # anonymous memory: copies; a memory map's pages are the page cache's
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(key)).split()[1])


def probe(batch):  # collated in the worker: what the worker holds after each batch
    return collate_windows(batch), kib()


results = []
for paths in " ".join(sys.argv[1:]).split(" -- "):  # one shard set, then the other
    mapped = kib("RssFile")
    made = create_dataloader(paths.split(), 32, 256, shuffle=True, seed=3)  # checks every id
    mapped = kib("RssFile") - mapped
    loader = DataLoader(made.dataset, batch_sampler=made.batch_sampler, num_workers=1,
                        collate_fn=probe)  # a worker of its own
    peaks = [held for _, (_, held) in zip(range(80), loader)]
    results.append({"worker_anon_kib": max(peaks), "batches": len(peaks), "mapped_kib": mapped})
print(json.dumps(results))
"""


def _llmc_shards(folder, shards: int, tokens: int) -> list[str]:
    from embedcli.formats.llmc import GPT2, header

    folder.mkdir()
    rng = np.random.default_rng(shards)
    paths = []
    for i in range(shards):
        path = folder / f"c_{i:06d}.bin"
        with open(path, "wb") as f:
            f.write(header(GPT2, tokens))
            rng.integers(0, 50256, tokens, dtype=np.uint16).tofile(f)
        paths.append(str(path))
    return paths


def test_a_loader_worker_holds_no_copy_of_a_shard_set(tmp_path):
    """A DataLoader worker over an llm.c shard set of 12 MB and of 120 MB: the anonymous
    memory it holds after shuffled batches is the same (the shards are memory maps, never
    joined); a copy of the larger set would add 108 MB. Opening the set reads every id (the
    vocabulary check) and hands the pages back behind it: they stay in the page cache, not
    in the process."""
    import json
    import subprocess
    import sys

    small, large = (_llmc_shards(tmp_path / f"set{n}", n, 3_000_000) for n in (2, 20))  # 6 MB each
    out = subprocess.run([sys.executable, "-c", WORKER_MEMORY, *small, "--", *large],
                         capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    results = json.loads(out.stdout)
    assert [r["batches"] for r in results] == [80, 80]
    for r in results:
        assert r["mapped_kib"] < 30 * 1024, f"opening a shard set left its pages mapped: {r}"
    held = [r["worker_anon_kib"] / 1024 for r in results]
    assert held[1] - held[0] < 30, f"worker anonymous memory (MiB), 12 and 120 MB sets: {held}"
