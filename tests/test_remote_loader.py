"""The loader on token files in an object store (issue 34, item 2), on fsspec's in-process
``memory://`` store: batches equal to the same files read locally (in order and shuffled,
with DataLoader workers, for two DDP ranks, resumed mid-epoch) through a cache smaller than
the corpus; headers read once; shards fetched once and evicted least recently used first;
prefetching in the order the batches need them; one line for a shard that cannot be read.
``test_s3.py`` runs the loader against a real S3 server."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import SAMPLE, invoke, story_documents, token_shards

fsspec = pytest.importorskip("fsspec")

from embedcli.data import Cache, TokenWindows, create_dataloader  # noqa: E402
from embedcli.errors import FormatError, InputError, UsageError  # noqa: E402
from embedcli.storage import shard_cache  # noqa: E402
from embedcli.storage.shard_cache import CacheConfig, Prefetcher, RemoteIds  # noqa: E402

SHARDS = 5


@pytest.fixture(autouse=True)
def _no_maps_between_tests():
    """This process's maps of cached shards: none carried from one test to the next."""
    shard_cache._MAPS.clear()
    yield
    shard_cache._MAPS.clear()


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """200 documents of 20 words, as jsonl."""
    return story_documents(tmp_path_factory.mktemp("text") / "d.jsonl", 200, 20)


@pytest.fixture(scope="module")
def local_set(tmp_path_factory, text):
    """A manifest of five shards of the 200 documents, on local disk."""
    return token_shards(
        text, tmp_path_factory.mktemp("set") / "c.tokens.safetensors", SHARDS
    ).parent


def _upload(fs, directory, prefix="/b/set"):
    for path in sorted(directory.iterdir()):
        fs.pipe_file(f"{prefix}/{path.name}", path.read_bytes())
    return f"memory:/{prefix}/c.tokens.manifest.json"


def _batches(loader):
    return [(a.numpy().tolist(), b.numpy().tolist()) for a, b in loader]


@pytest.fixture
def downloads(monkeypatch):
    """The shards each download fetched, in order."""
    seen = []
    real = shard_cache.ShardCache._download

    def counted(self, shard, *rest):
        seen.append(shard.url.rsplit("/", 1)[-1])
        return real(self, shard, *rest)

    monkeypatch.setattr(shard_cache.ShardCache, "_download", counted)
    return seen


def _shard_bytes(local_set):
    return max(p.stat().st_size for p in local_set.glob("c-*.tokens.safetensors"))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_from_the_store_equal_local_through_a_small_cache(
    memfs, local_set, tmp_path, downloads, shuffle, workers
):
    url = _upload(memfs, local_set)
    limit = 2 * _shard_bytes(local_set)  # two of the five shards at a time
    kwargs = dict(shuffle=shuffle, seed=7, drop_last=False)
    local = create_dataloader(str(local_set / "c.tokens.manifest.json"), 4, 8, **kwargs)
    remote = create_dataloader(url, 4, 8, num_workers=workers, cache_dir=str(tmp_path / "cache"),
                               cache_limit=limit, **kwargs)  # fmt: skip
    assert _batches(remote) == _batches(local)
    cached = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert sum(p.stat().st_size for p in cached) <= limit
    if workers == 0:  # (the workers' downloads happen in their own processes)
        # in order: each shard once; shuffled: evicted, and fetched again when needed again
        assert len(downloads) > SHARDS if shuffle else len(downloads) == SHARDS


def test_two_ranks_and_a_resumed_epoch_equal_local(memfs, local_set, tmp_path):
    url = _upload(memfs, local_set)
    cache = str(tmp_path / "cache")
    for rank in range(2):
        kwargs = dict(shuffle=True, seed=3, rank=rank, world_size=2)
        local = create_dataloader(str(local_set / "c.tokens.manifest.json"), 2, 8, **kwargs)
        remote = create_dataloader(url, 2, 8, cache_dir=cache, **kwargs)
        assert _batches(remote) == _batches(local)
    first = create_dataloader(url, 2, 8, shuffle=True, seed=3, cache_dir=cache)
    seen = []
    for batch in first:
        seen.append(batch)
        if len(seen) == 5:
            break
    state = first.state_dict()
    again = create_dataloader(url, 2, 8, shuffle=True, seed=3, cache_dir=cache)
    again.load_state_dict(state)
    everything = create_dataloader(str(local_set / "c.tokens.manifest.json"), 2, 8,
                                   shuffle=True, seed=3)  # fmt: skip
    assert _batches(again) == _batches(everything)[5:]


def test_headers_are_read_once_and_shards_fetched_once(
    memfs, local_set, tmp_path, downloads, monkeypatch
):
    url = _upload(memfs, local_set)
    ds = TokenWindows(url, 8, cache=Cache(str(tmp_path / "cache")))
    assert downloads == []  # opening reads headers and offsets only
    local = TokenWindows(str(local_set / "c.tokens.manifest.json"), 8)
    assert len(ds) == len(local) and ds.stream().doc_offsets.tolist() == (
        local.stream().doc_offsets.tolist()
    )
    rows = ds.rows(list(range(len(ds))))
    assert rows.tolist() == local.rows(list(range(len(local)))).tolist()
    assert sorted(downloads) == sorted(f"c-{i:05d}-of-{SHARDS:05d}.tokens.safetensors"
                                       for i in range(1, SHARDS + 1))  # fmt: skip
    shard_cache._MAPS.clear()  # a new process: the files are in the cache already
    from embedcli.inputs import remote_tokens

    reads = []
    real = remote_tokens.read_range
    monkeypatch.setattr(remote_tokens, "read_range", lambda *a: reads.append(a[0]) or real(*a))
    again = TokenWindows(url, 8, cache=Cache(str(tmp_path / "cache")))
    assert reads == [url]  # the manifest; one listing; the headers from the cached shards
    assert again.rows(list(range(len(again)))).tolist() == rows.tolist()
    assert len(downloads) == SHARDS


def test_one_file_and_a_list_of_files(memfs, local_set, tmp_path):
    _upload(memfs, local_set)
    names = sorted(p.name for p in local_set.glob("c-*.tokens.safetensors"))
    one = TokenWindows(f"memory://b/set/{names[0]}", 4, cache=Cache(str(tmp_path / "c")))
    assert (
        one.rows([0, 1]).tolist()
        == TokenWindows(str(local_set / names[0]), 4).rows([0, 1]).tolist()
    )
    urls = [f"memory://b/set/{n}" for n in reversed(names)]  # put back in shard order
    many = TokenWindows(urls, 4, cache=Cache(str(tmp_path / "c")))
    local = TokenWindows([str(local_set / n) for n in names], 4)
    assert (
        many.rows(list(range(len(many)))).tolist() == local.rows(list(range(len(local)))).tolist()
    )


def test_prefetch_fetches_shards_in_the_order_batches_need_them(memfs, local_set, tmp_path,
                                                                downloads):  # fmt: skip
    url = _upload(memfs, local_set)
    ds = TokenWindows(url, 8, cache=Cache(str(tmp_path / "cache")))
    shards = [s for s in ds.stream().segments if isinstance(s, RemoteIds)]
    at = [0]
    needs = [(0, 3), (2, 0), (2, 4), (9, 1)]
    prefetch = Prefetcher(shards, needs, lambda: at[0], ahead=1).start()
    # it fetches what batch 0 needs and one shard ahead, then waits for the consumer
    while len(downloads) < 2 and prefetch.thread.is_alive():
        prefetch.thread.join(0.01)
    assert downloads == ["c-00004-of-00005.tokens.safetensors",
                         "c-00001-of-00005.tokens.safetensors"]  # fmt: skip
    at[0] = 100
    prefetch.thread.join(30)
    assert not prefetch.thread.is_alive() and prefetch.fetched == 4
    order = [int(n.split("-")[1]) - 1 for n in downloads]
    assert order == [3, 0, 4, 1]


def test_a_shard_that_cannot_be_read_is_one_error_naming_it(memfs, local_set, tmp_path,
                                                            monkeypatch):  # fmt: skip
    url = _upload(memfs, local_set)
    ds = TokenWindows(url, 8, cache=Cache(str(tmp_path / "cache"), retries=3))
    memfs.rm("/b/set/c-00002-of-00005.tokens.safetensors")  # gone mid-epoch
    with pytest.raises(InputError, match=r"memory://b/set/c-00002-of-00005\.tokens\.safetensors"
                       r": no such object"):  # fmt: skip
        ds.rows(list(range(len(ds))))
    # a store that fails every read: tried three times, then one line
    calls = []
    monkeypatch.setattr(shard_cache.time, "sleep", lambda s: calls.append(s))

    def broken(self, *a, **k):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(type(memfs), "open", broken)
    with pytest.raises(InputError, match=r"c-00002-of-00005.*cannot reach.*\(after 3 tries\)"):
        ds.rows(list(range(len(ds))))
    assert len(calls) == 2


def test_a_flaky_read_is_tried_again(memfs, local_set, tmp_path, monkeypatch):
    url = _upload(memfs, local_set)
    ds = TokenWindows(url, 8, cache=Cache(str(tmp_path / "cache")))
    monkeypatch.setattr(shard_cache.time, "sleep", lambda s: None)
    real, failed = type(memfs).open, []

    def flaky(self, path, *a, **k):
        if not failed:
            failed.append(path)
            raise ConnectionError("connection reset")
        return real(self, path, *a, **k)

    monkeypatch.setattr(type(memfs), "open", flaky)
    local = TokenWindows(str(local_set / "c.tokens.manifest.json"), 8)
    assert ds.rows(list(range(len(ds)))).tolist() == local.rows(list(range(len(ds)))).tolist()
    assert failed


def test_refusals_are_one_line(memfs, local_set, tmp_path):
    out = tmp_path / "n" / "t.bin"
    out.parent.mkdir()
    invoke("tokenize", str(SAMPLE), "--to", "nanogpt", "-o", str(out), "--shard", "0/1", "-q",
           check=True)  # fmt: skip
    for path in out.parent.iterdir():
        memfs.pipe_file(f"/n/{path.name}", path.read_bytes())
    manifest = next(p.name for p in out.parent.iterdir() if p.name.endswith("manifest.json"))
    with pytest.raises(UsageError, match="lists nanogpt shards; the loader reads a manifest of"):
        TokenWindows(f"memory://n/{manifest}", 4)
    with pytest.raises(UsageError, match="reads embedcli's safetensors token files"):
        TokenWindows("memory://n/t-00001-of-00001.bin", 4)
    with pytest.raises(UsageError, match="all local or all in object storage"):
        TokenWindows(["memory://n/a.tokens.safetensors", str(out)], 4)
    with pytest.raises(UsageError, match="cache limit must be above 0"):
        TokenWindows("memory://n/a.tokens.safetensors", 4, cache=Cache(limit=0))


def test_ids_outside_the_vocabulary_are_refused_when_read(memfs, tmp_path):
    from safetensors.numpy import save

    ids = np.array([1, 2, 3, 60000, 4, 5, 6, 7, 8], np.int32)
    memfs.pipe_file("/v/x.tokens.safetensors", save({"ids": ids}, metadata={"vocab_size": "50257"}))
    ds = TokenWindows("memory://v/x.tokens.safetensors", 2, cache=Cache(str(tmp_path / "c")))
    with pytest.raises(FormatError, match="memory://v/x.tokens.safetensors"):
        ds.rows([0])


def test_workers_receive_the_stream_not_a_reopened_one(memfs, local_set, tmp_path):
    """A DataLoader worker gets the remote stream as it was opened (headers read once)."""
    import pickle

    url = _upload(memfs, local_set)
    ds = TokenWindows(url, 8, cache=Cache(str(tmp_path / "cache")))
    ds.rows([0])
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.stream().remote and len(pickle.dumps(ds)) < 20_000
    memfs.rm("/b/set/c.tokens.manifest.json")  # no header is read again
    assert copy.rows([0, 1]).tolist() == ds.rows([0, 1]).tolist()
    assert isinstance(copy.stream().segments[0], RemoteIds)
    assert os.path.isdir(tmp_path / "cache" / ".locks")
    assert CacheConfig(str(tmp_path)).limit is None


@pytest.fixture(scope="module")
def llmc_set(tmp_path_factory, text):
    """The same documents as llm.c shards of 700 ids (embedcli's set: NAME_00000K.bin and the
    sidecar NAME.bin.json that lists them)."""
    out = tmp_path_factory.mktemp("llmc") / "c.bin"
    invoke("tokenize", str(text), "--to", "llmc", "-o", str(out), "--shard-tokens", "700", "-q",
           check=True)  # fmt: skip
    assert len(list(out.parent.glob("c_*.bin"))) > 3
    return out


@pytest.mark.parametrize("name", ["c.bin", "c.bin.json"])
def test_an_llmc_set_from_the_store_equals_local(memfs, llmc_set, tmp_path, name, downloads):
    url = _upload(memfs, llmc_set.parent, "/b/llmc").replace("c.tokens.manifest.json", name)
    ds = TokenWindows(url, 16, cache=Cache(str(tmp_path / "c")))
    assert ds.stream().metadata == TokenWindows(str(llmc_set), 16).stream().metadata
    assert downloads == [] and ds.stream().doc_offsets is None  # llm.c marks no documents
    local = create_dataloader(str(llmc_set), 4, 16, shuffle=True, seed=2)
    remote = create_dataloader(url, 4, 16, shuffle=True, seed=2, cache_dir=str(tmp_path / "c"),
                               num_workers=2)  # fmt: skip
    assert _batches(remote) == _batches(local)


def test_llmcs_own_shards_by_a_glob_equal_local(memfs, llmc_set, tmp_path):
    """Shards as llm.c's scripts leave them (no sidecar): a glob of them, in name order; the
    metadata is the header's word (GPT-2's ids), as for the same files on disk."""
    shards = sorted(llmc_set.parent.glob("c_*.bin"))
    for path in shards:
        memfs.pipe_file(f"/o/{path.name}", path.read_bytes())
    remote = TokenWindows("memory://o/c_*.bin", 16, cache=Cache(str(tmp_path / "c")))
    local = TokenWindows([str(p) for p in shards], 16)
    every = list(range(len(local)))
    assert len(remote) == len(local) and remote.rows(every).tolist() == local.rows(every).tolist()
    meta = remote.stream().metadata
    assert (
        meta["encoding"] == "gpt2" and meta["format"] == "llmc" and "encoding_assumed" not in meta
    )
    memfs.pipe_file("/o/bad.bin", b"\x00" * 2048)  # no llm.c magic: not read as one
    with pytest.raises(UsageError, match="safetensors token files .*, llm.c shards and Megatron"):
        TokenWindows("memory://o/bad.bin", 4)
    memfs.pipe_file("/o/short_000000.bin", shards[0].read_bytes()[:-2])
    with pytest.raises(FormatError, match=r"short_000000.bin: header says .* bytes"):
        TokenWindows("memory://o/short_*.bin", 4)


def test_a_mixture_of_sources_in_the_store_uses_the_given_cache(memfs, local_set, llmc_set,
                                                                 tmp_path):  # fmt: skip
    url = _upload(memfs, local_set)
    lurl = _upload(memfs, llmc_set.parent, "/b/llmc").replace("c.tokens.manifest.json", "c.bin")
    cache = tmp_path / "mine"
    remote = create_dataloader([(url, 0.6), (lurl, 0.4)], 4, 8, shuffle=True, seed=1,
                               cache_dir=str(cache))  # fmt: skip
    local = create_dataloader([(str(local_set / "c.tokens.manifest.json"), 0.6),
                               (str(llmc_set), 0.4)], 4, 8, shuffle=True, seed=1)  # fmt: skip
    assert _batches(remote) == _batches(local)
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) > SHARDS


def test_megatron_pairs_and_their_manifest_from_the_store_equal_local(memfs, text, tmp_path):
    """One pair (by its .bin or .idx) and a manifest of three pairs: the index fetched at
    open (the documents' offsets), the ids when read; windows inside documents too."""
    one, sharded = tmp_path / "one" / "m", tmp_path / "set" / "m"
    one.parent.mkdir(), sharded.parent.mkdir()
    invoke("tokenize", str(text), "--to", "megatron", "-o", str(one), "-q", check=True)
    for i in range(3):
        invoke("tokenize", str(text), "--to", "megatron", "-o", str(sharded), "--shard", f"{i}/3",
               "-q", check=True)  # fmt: skip
    cache = Cache(str(tmp_path / "cache"))
    for folder, name, local in ((one.parent, "m.bin", str(one) + ".bin"),
                                (one.parent, "m.idx", str(one) + ".bin"),
                                (sharded.parent, "m.manifest.json",
                                 str(sharded.parent / "m.manifest.json"))):  # fmt: skip
        url = _upload(memfs, folder, f"/mg/{folder.name}").replace("c.tokens.manifest.json", name)
        for cross in (True, False):
            remote = TokenWindows(url, 8, cross_docs=cross, cache=cache)
            mine = TokenWindows(local, 8, cross_docs=cross)
            every = list(range(len(mine)))
            assert remote.rows(every).tolist() == mine.rows(every).tolist(), (name, cross)
            assert remote.stream().doc_offsets.tolist() == mine.stream().doc_offsets.tolist()
            theirs, ours = dict(remote.stream().metadata), dict(mine.stream().metadata)
            shards = json.loads(theirs.pop("shards", "[]"))  # the set's: named by URL
            ours.pop("shards", None)
            assert theirs == ours and all(s.startswith("memory://mg/") for s in shards)


@pytest.mark.parametrize("shuffle", [False, True])
def test_first_needs_are_each_shards_first_batch_in_batch_order(memfs, local_set, tmp_path,
                                                                shuffle):  # fmt: skip
    """What the prefetch thread works out a block of batches at a time: the batch in which
    each shard is first read (a window's last id included), checked against every window."""
    from embedcli.data import WindowBatchSampler, _first_needs

    ds = TokenWindows(_upload(memfs, local_set), 8, cache=Cache(str(tmp_path / "c")))
    sampler = WindowBatchSampler(len(ds), 3, shuffle=shuffle, seed=4)
    sampler.consumed = 2  # resumed: batches are counted from here
    stream = ds.stream()
    remote = [j for j, s in enumerate(stream.segments) if isinstance(s, RemoteIds)]
    want, seen = [], set()
    for b, batch in enumerate(sampler.batches()[2:]):
        for start in ds.starts(batch).tolist():
            for at in (start, start + ds.max_length):
                k = min(int(np.searchsorted(stream.bounds, at, side="right")) - 1,
                        len(stream.segments) - 1)  # fmt: skip
                if k in remote and k not in seen:
                    seen.add(k)
                    want.append((b, remote.index(k)))
    got = list(_first_needs(ds, sampler, sampler.consumed, remote, block=4))
    assert got == sorted(want) and len(got) == SHARDS


def test_a_window_from_the_store_says_where_it_came_from(memfs, local_set, tmp_path):
    """``source(i)`` of a mix written as parts, read from the store: each part's provenance
    object fetched and joined, the same origins as the local files give; none when a part's
    provenance is missing."""
    out = tmp_path / "mix" / "m.tokens.safetensors"
    out.parent.mkdir()
    invoke("mix", str(local_set / "c.tokens.manifest.json"), "-o", str(out), "--seed", "3",
           "--max-shard-size", "3KB", "-q", check=True)  # fmt: skip
    url = _upload(memfs, out.parent, "/p").replace(
        "c.tokens.manifest.json", "m.tokens.manifest.json"
    )
    remote = TokenWindows(url, 8, cache=Cache(str(tmp_path / "c")))
    local = TokenWindows(str(out.parent / "m.tokens.manifest.json"), 8)
    every = range(0, len(local), 7)
    mine = [local.source(i) for i in every]
    assert all(s["origin"] and s["origin"]["source"] == "c" for s in mine)
    assert [remote.source(i) for i in every] == mine
    listed = memfs.ls("/p", detail=False)
    gone = next(n for n in listed if "-00002-of-" in n and n.endswith("provenance.safetensors"))
    memfs.rm(gone)
    again = TokenWindows(url, 8, cache=Cache(str(tmp_path / "c2")))
    assert {again.source(i)["origin"] for i in every} == {None}


_WARM = """
import sys
from embedcli.data import create_dataloader
loader = create_dataloader(sys.argv[1], 4, 8, shuffle=True, seed=6, cache_dir=sys.argv[2],
                           num_workers=1)
print(sum(1 for _ in loader))
"""


def test_workers_fork_before_the_prefetch_thread_starts(local_set, tmp_path):
    """DataLoader workers are forked before the prefetch thread starts: a fork while that
    thread held the import lock left the worker waiting on it forever (it did, every time,
    with a warm cache). Twice, cold then warm, each in its own process."""
    import subprocess
    import sys

    url = f"file://{local_set / 'c.tokens.manifest.json'}"
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _WARM, url, str(tmp_path / "cache")],
                              capture_output=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert int(proc.stdout) == len(create_dataloader(str(local_set / "c.tokens.manifest.json"),
                                                         4, 8))  # fmt: skip


def test_the_caches_storage_options_reach_every_request_and_leave_the_process_alone(
    memfs, local_set, tmp_path, monkeypatch
):
    """The cache's storage_options go to each filesystem the loader and its prefetch thread
    open, as an argument: the process's options (``--storage-options``) are never swapped,
    which two threads doing it at once left set after the loader was done (seen after
    test_s3: the next URL opened went to a stopped server's endpoint)."""
    from embedcli.storage import remote

    url = _upload(memfs, local_set)
    swapped, opened = [], []
    monkeypatch.setattr(remote, "set_storage_options", lambda o: swapped.append(o))
    real = fsspec.core.url_to_fs

    def recorded(path, **kwargs):
        opened.append(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(fsspec.core, "url_to_fs", recorded)
    mine = {"skip_instance_cache": False}
    limit = 2 * _shard_bytes(local_set)
    loader = create_dataloader(url, 4, 8, shuffle=True, seed=1, cache_dir=str(tmp_path / "c"),
                               cache_limit=limit, storage_options=mine)  # fmt: skip
    local = create_dataloader(str(local_set / "c.tokens.manifest.json"), 4, 8, shuffle=True,
                              seed=1)  # fmt: skip
    assert _batches(loader) == _batches(local)
    assert swapped == [] and remote._OPTIONS == {}
    assert opened and all(kwargs == mine for kwargs in opened)
