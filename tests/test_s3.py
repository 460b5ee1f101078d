"""Against a real S3 server (SeaweedFS, started here): prefixes of Parquet and jsonl.gz objects
in, every token format out, shards and their manifest in the bucket, reads equal to local reads,
an interrupted upload that leaves nothing, and one line for each way access fails. Skipped, with
the reason, where the server cannot start; ``test_remote.py`` covers the same code on
``memory://`` everywhere."""

from __future__ import annotations

import gzip
import json
import os

import pytest
from safetensors.numpy import load_file

from conftest import SAMPLE, invoke, run_embedcli, story_documents, token_shards

pytest.importorskip("s3fs")
pa = pytest.importorskip("pyarrow")

from s3server import Unavailable, client, seaweedfs  # noqa: E402

# One server for this module's tests: with xdist they share a worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("s3")
BUCKET = "corpus"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
    except Unavailable as exc:
        pytest.skip(f"no S3 server on this machine: {exc}")


@pytest.fixture(scope="module")
def s3env(server):
    """The server's credentials in this process's environment (s3fs reads the AWS chain)."""
    import s3fs

    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    s3fs.S3FileSystem.clear_instance_cache()
    yield server.env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, s3env):
    """Parquet (several row groups) and jsonl.gz objects under s3://corpus/data/, and the same
    files on local disk."""
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("s3corpus")
    story = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8").split("\n\n")
    docs = [f"{i}: {story[i % len(story)]}" for i in range(120)]
    pq.write_table(pa.table({"text": docs[:50]}), root / "part-0.parquet", row_group_size=8)
    pq.write_table(pa.table({"text": docs[50:90]}), root / "part-1.parquet", row_group_size=8)
    lines = "".join(json.dumps({"text": d}) + "\n" for d in docs[90:])
    (root / "part-2.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    s3 = client(s3env)
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted(root.iterdir()):
        s3.put_object(Bucket=BUCKET, Key=f"data/{path.name}", Body=path.read_bytes())
    return root


def keys(env, prefix):
    found = client(env).list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in found)


def get(env, key):
    return client(env).get_object(Bucket=BUCKET, Key=key)["Body"].read()


FORMATS = [
    ("safetensors", "c.tokens.safetensors"),
    ("nanogpt", "train.bin"),
    ("llmc", "train.bin"),
    ("megatron", "corpus_text_document"),
    ("npy", "train.npy"),
]


@pytest.mark.parametrize("to,name", FORMATS, ids=[f for f, _ in FORMATS])
def test_a_prefix_to_every_format_in_the_bucket(tmp_path, s3env, corpus, to, name):
    local = tmp_path / "local"
    local.mkdir()
    invoke("tokenize", str(corpus), "--to", to, "-o", str(local / name), "-q", check=True)
    out = f"s3://{BUCKET}/out-{to}/{name}"
    invoke("tokenize", f"s3://{BUCKET}/data/", "--to", to, "-o", out, "-q", check=True)
    written = [k.rsplit("/", 1)[-1] for k in keys(s3env, f"out-{to}/")]
    assert written == sorted(p.name for p in local.iterdir())
    for name_ in written:
        remote_bytes, local_bytes = get(s3env, f"out-{to}/{name_}"), (local / name_).read_bytes()
        if name_.endswith((".json", ".safetensors")):  # the lineage names other sources
            assert str(corpus) not in remote_bytes.decode("utf-8", "replace")
            assert f"s3://{BUCKET}/data/part-0.parquet".encode() in remote_bytes or to == "llmc"
        else:
            assert remote_bytes == local_bytes, name_
    # what a trainer would read, through embedcli: the same ids as the local file
    first = next(n for n in written if not n.endswith(".json"))
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    invoke("batch", f"s3://{BUCKET}/out-{to}/{first}", "-o", str(a), "-T", "16", "-q", check=True)
    invoke("batch", str(local / first), "-o", str(b), "-T", "16", "-q", check=True)
    assert invoke("inspect", "--diff", str(a), str(b), "--ignore-metadata").returncode == 0


def test_three_shard_jobs_merge_like_one_local_run(tmp_path, s3env, corpus):
    out = f"s3://{BUCKET}/shards/c.tokens.safetensors"
    for i in (1, 2, 0):
        proc = run_embedcli(
            "tokenize", f"s3://{BUCKET}/data/", "-o", out, "--shard", f"{i}/3", "-q", env=s3env
        )
        assert proc.returncode == 0, proc.stderr.decode()
    assert keys(s3env, "shards/") == [
        *(f"shards/c-0000{i}-of-00003.tokens.safetensors" for i in (1, 2, 3)),
        "shards/c.tokens.manifest.json",
    ]
    single = tmp_path / "single.tokens.safetensors"
    invoke("tokenize", str(corpus), "-o", str(single), "-q", check=True)
    from embedcli.inputs import load_input

    with load_input([f"s3://{BUCKET}/shards/c.tokens.manifest.json"]) as merged:
        whole = load_file(single)
        assert merged.ids.tobytes() == whole["ids"].tobytes()
        assert merged.doc_offsets.tobytes() == whole["doc_offsets"].tobytes()
        assert json.loads(merged.metadata["shards"])[0] == out.replace(
            "c.tokens", "c-00001-of-00003.tokens"
        )


def test_batch_embed_inspect_from_the_bucket_equal_local(tmp_path, s3env):
    tokens = tmp_path / "t.tokens.safetensors"
    invoke("tokenize", str(SAMPLE), "-o", str(tokens), "-q", check=True)
    client(s3env).put_object(Bucket=BUCKET, Key="t/t.tokens.safetensors", Body=tokens.read_bytes())
    url = f"s3://{BUCKET}/t/t.tokens.safetensors"
    for stage, extra in [("batch", ["-T", "4"]), ("embed", ["-T", "4", "--dim", "16"])]:
        a, b = tmp_path / f"{stage}-a.safetensors", tmp_path / f"{stage}-b.safetensors"
        invoke(stage, url, "-o", str(a), "-q", *extra, check=True)
        invoke(stage, str(tokens), "-o", str(b), "-q", *extra, check=True)
        assert a.read_bytes() == b.read_bytes()
    embedded = f"s3://{BUCKET}/t/e.safetensors"
    invoke("embed", url, "-o", embedded, "-q", "-T", "4", "--dim", "16", check=True)
    assert get(s3env, "t/e.safetensors") == (tmp_path / "embed-a.safetensors").read_bytes()
    remote = json.loads(invoke("inspect", embedded, "--json").stdout)["files"][0]
    local = json.loads(invoke("inspect", str(tmp_path / "embed-a.safetensors"), "--json").stdout)
    assert remote.pop("path") == embedded
    local["files"][0].pop("path")
    assert remote == local["files"][0]


def test_an_interrupted_upload_leaves_no_object_and_no_open_upload(tmp_path, s3env, monkeypatch):
    """Ctrl-C (SIGINT and SIGTERM become KeyboardInterrupt) after a part went up: the multipart
    upload is aborted, so neither the object nor its parts remain."""
    from embedcli.storage import remote

    monkeypatch.setattr(remote, "UPLOAD_BLOCK", 5 << 20)  # S3's smallest part
    data = tmp_path / "big.bin"
    data.write_bytes(os.urandom(12 << 20))
    s3 = client(s3env)
    seen = []

    def interrupt(n):
        seen.append(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        remote.upload(str(data), f"s3://{BUCKET}/partial/big.bin", interrupt)
    assert [u["Key"] for u in seen[0]] == ["partial/big.bin"]  # a part was on the server
    assert keys(s3env, "partial/") == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    remote.upload(str(data), f"s3://{BUCKET}/partial/big.bin")  # uninterrupted: whole
    assert get(s3env, "partial/big.bin") == data.read_bytes()


@pytest.mark.parametrize(
    "case",
    ["no bucket", "no key", "no bucket to write", "wrong secret", "server down"],
)
def test_access_failures_are_one_line(tmp_path, s3env, case):
    env = dict(s3env)
    args = ["tokenize", f"s3://{BUCKET}/data/", "-o", str(tmp_path / "o.tokens.safetensors")]
    expected = "access denied"
    if case == "no bucket":
        args[1], expected = "s3://no-such-bucket/data/", "no such object or bucket"
    elif case == "no key":
        args[1], expected = f"s3://{BUCKET}/data/missing.jsonl", "no such object or bucket"
    elif case == "no bucket to write":
        args[3], expected = "s3://no-such-bucket/o.tokens.safetensors", "no such bucket"
    elif case == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    else:
        import socket

        with socket.socket() as s:  # a port nothing listens on: a stopped server
            s.bind(("127.0.0.1", 0))
            env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{s.getsockname()[1]}"
        env["AWS_MAX_ATTEMPTS"] = "1"
        expected = "cannot reach the storage endpoint"
    proc = run_embedcli(*args, env=env)
    message = proc.stderr.decode()
    assert proc.returncode != 0 and expected in message, message
    assert message.count("\n") == 1 and message.startswith("Error: s3://")
    assert env["AWS_SECRET_ACCESS_KEY"] not in message
    assert not (tmp_path / "o.tokens.safetensors").exists()
    assert not any(k.startswith("o.tokens") for k in keys(s3env, ""))


def test_peak_memory_is_flat_in_the_object_size(tmp_path, s3env):
    """jsonl objects of 10 and 40 MB streamed through tokenize: peak memory grows with the
    object no more than it does for the same file on local disk (the ids' own pages). (The
    reference engine: gigatoken's first self-check on a machine has a peak of its own.)"""
    import subprocess
    import sys

    doc = json.dumps({"text": "word " * 2000}) + "\n"
    peaks: dict[str, list[float]] = {"local": [], "s3": []}
    for mb in (10, 40):
        body = doc * (mb * 1_000_000 // len(doc))
        client(s3env).put_object(Bucket=BUCKET, Key=f"big/{mb}.jsonl", Body=body.encode())
        (tmp_path / f"{mb}.jsonl").write_text(body)
        for where, path in [
            ("local", str(tmp_path / f"{mb}.jsonl")),
            ("s3", f"s3://{BUCKET}/big/{mb}.jsonl"),
        ]:
            out = tmp_path / f"{where}-{mb}.bin"
            code = (
                "import sys\nfrom embedcli.cli.app import main\n"
                f"sys.argv = ['embedcli', 'tokenize', {path!r}, '-q', '-o', {str(out)!r},"
                " '--to', 'nanogpt', '--backend', 'tiktoken', '--workers', '1']\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
                # VmHWM, not ru_maxrss: that one carries the forking parent's RSS across exec
                "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
            assert proc.returncode == 0, proc.stderr.decode()
            peaks[where].append(int(proc.stdout.split()[-1]) / 1024)
            # nanoGPT's layout: <|endoftext|> before each document, "word", 1999 " word", " "
            assert out.stat().st_size == 2 * body.count("\n") * 2002
    grown = {where: p[1] - p[0] for where, p in peaks.items()}
    assert grown["s3"] < grown["local"] + 16, peaks  # 30 MB more object, no more buffers


def test_a_two_phase_mix_keeps_its_buckets_in_the_bucket(tmp_path, s3env, corpus):
    """``mix --phase scatter|gather --bucket-dir s3://...``: the buckets and markers are
    objects; the parts read through the manifest are the one-process mix."""
    web, story = tmp_path / "web.tokens.safetensors", tmp_path / "story.tokens.safetensors"
    invoke("tokenize", str(SAMPLE / "articles.jsonl"), "-o", str(web), "-q", check=True)
    invoke("tokenize", str(corpus), "-o", str(story), "-q", check=True)
    base = ["mix", str(web), str(story), "--dedup", "exact", "--seed", "3", "-q"]
    prefix = f"s3://{BUCKET}/buckets/run1"
    for i in (1, 0):
        invoke(*base, "-o", str(tmp_path / "two.tokens.safetensors"), "--phase", "scatter",
               "--shard", f"{i}/2", "--buckets", "2", "--bucket-dir", prefix, check=True)  # fmt: skip
    listed = keys(s3env, "buckets/run1/")
    assert [k for k in listed if k.endswith(".done.json")] == [
        "buckets/run1/scatter-00001-of-00002.done.json",
        "buckets/run1/scatter-00002-of-00002.done.json",
    ]
    assert sum(k.startswith("buckets/run1/bucket-") for k in listed) == 4
    for j in (1, 0):
        invoke(*base, "-o", str(tmp_path / "two.tokens.safetensors"), "--phase", "gather",
               "--shard", f"{j}/2", "--bucket-dir", prefix, check=True)  # fmt: skip
    invoke(*base, "-o", str(tmp_path / "one.tokens.safetensors"), check=True)
    from embedcli.inputs import load_input

    with load_input([str(tmp_path / "two.tokens.manifest.json")]) as two:
        one = load_file(tmp_path / "one.tokens.safetensors")
        assert two.ids.tobytes() == one["ids"].tobytes()
        assert two.doc_offsets.tobytes() == one["doc_offsets"].tobytes()


def _loader_set(tmp_path, count=3):
    """Three shards of 150 documents on local disk (a manifest and its parts)."""
    text = story_documents(tmp_path / "d.jsonl", 150, 30)
    return token_shards(text, tmp_path / "set" / "c.tokens.safetensors", count).parent


def test_the_loader_reads_the_bucket_through_a_cache_smaller_than_the_corpus(tmp_path, s3env):
    """Batches from s3:// equal the same files read locally, shuffled, for two ranks, with a
    cache that holds one shard of three (so it evicts) and a resumed epoch."""
    from embedcli.data import create_dataloader

    local = _loader_set(tmp_path)
    s3 = client(s3env)
    for path in local.iterdir():
        s3.put_object(Bucket=BUCKET, Key=f"loader/{path.name}", Body=path.read_bytes())
    url = f"s3://{BUCKET}/loader/c.tokens.manifest.json"
    shard = max(p.stat().st_size for p in local.glob("c-*.tokens.safetensors"))
    cache = dict(cache_dir=str(tmp_path / "cache"), cache_limit=shard + 1)
    for rank in range(2):
        kwargs = dict(shuffle=True, seed=5, rank=rank, world_size=2)
        mine = create_dataloader(str(local / "c.tokens.manifest.json"), 4, 16, **kwargs)
        remote = create_dataloader(url, 4, 16, **kwargs, **cache)
        pairs = list(zip(remote, mine, strict=True))
        assert pairs and all((a == c).all() and (b == d).all() for (a, b), (c, d) in pairs)
    first = create_dataloader(url, 4, 16, shuffle=True, seed=5, **cache)
    it = iter(first)
    next(it), next(it)
    state = first.state_dict()
    again = create_dataloader(url, 4, 16, shuffle=True, seed=5, **cache)
    again.load_state_dict(state)
    rest = [a.tolist() for a, _ in again]
    whole = [a.tolist() for a, _ in create_dataloader(str(local / "c.tokens.manifest.json"), 4,
                                                      16, shuffle=True, seed=5)]  # fmt: skip
    assert rest == whole[2:]
    cached = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(cached) == 1


def test_a_server_stopped_mid_epoch_is_one_error_after_the_retries(tmp_path):
    """The loader's own server (its endpoint and keys given as storage_options), stopped after
    the first shard was read: the next shard's read fails in one line naming its URL."""
    import contextlib

    from embedcli.data import Cache, TokenWindows
    from embedcli.errors import InputError

    local = _loader_set(tmp_path)
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(seaweedfs(tmp_path / "weed"))
        except Unavailable as exc:
            pytest.skip(f"no S3 server on this machine: {exc}")
        s3 = client(server.env)
        s3.create_bucket(Bucket="stopped")
        for path in local.iterdir():
            s3.put_object(Bucket="stopped", Key=path.name, Body=path.read_bytes())
        options = {
            "endpoint_url": server.env["AWS_ENDPOINT_URL"],
            "key": server.env["AWS_ACCESS_KEY_ID"],
            "secret": server.env["AWS_SECRET_ACCESS_KEY"],
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
        }
        cache = Cache(str(tmp_path / "cache"), retries=2, storage_options=options)
        ds = TokenWindows("s3://stopped/c.tokens.manifest.json", 16, cache=cache)
        ds.rows([0])  # the first shard, fetched
    # the server is gone: the last window lies in the last shard, not fetched yet
    with pytest.raises(InputError) as caught:
        ds.rows([len(ds) - 1])
    message = str(caught.value)
    assert message.startswith("s3://stopped/c-00003-of-00003.tokens.safetensors: ")
    assert "(after 2 tries)" in message and "\n" not in message
