"""URLs in and out through fsspec, on its in-process ``memory://`` filesystem: every code path of
object storage without a server (``test_s3.py`` runs the same against a real S3 server)."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import SAMPLE, invoke

fsspec = pytest.importorskip("fsspec")

from embedcli import TokenizeOptions, run_tokenize  # noqa: E402
from embedcli.errors import InputError, OutputError, UsageError  # noqa: E402
from embedcli.inputs import load_input  # noqa: E402
from embedcli.storage import remote  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Every document format, compressed and not, in a directory with a subdirectory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("corpus")
    story = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
    (root / "a.txt").write_text(story[:900], encoding="utf-8")
    docs = [f"Document {i}: " + "words " * (i % 13) for i in range(40)]
    lines = "".join(json.dumps({"text": d}) + "\n" for d in docs)
    (root / "b.jsonl").write_text(lines, encoding="utf-8")
    (root / "c.jsonl.gz").write_bytes(gzip.compress(lines[:400].rsplit("\n", 1)[0].encode()))
    pq.write_table(
        pa.table({"text": docs, "id": list(range(40))}), root / "d.parquet", row_group_size=7
    )
    sub = root / "sub"
    sub.mkdir()
    (sub / "e.txt").write_text(story[900:], encoding="utf-8")
    (root / "notes.csv").write_text("not a corpus file", encoding="utf-8")
    return root


def upload_tree(fs, local, url):
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{url}/{path.relative_to(local).as_posix()}", path.read_bytes())


def ids_of(path):
    with load_input([str(path)]) as source:
        return np.asarray(source.ids).copy(), np.asarray(source.doc_offsets).copy(), source.metadata


def test_a_prefix_reads_as_its_directory(tmp_path, memfs, corpus):
    upload_tree(memfs, corpus, "memory://bkt/corpus")
    local = tmp_path / "local.tokens.safetensors"
    run_tokenize([str(corpus)], str(local))
    remote_out = tmp_path / "remote.tokens.safetensors"
    run_tokenize(["memory://bkt/corpus/"], str(remote_out))
    a, b = load_file(local), load_file(remote_out)
    assert np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["doc_offsets"], b["doc_offsets"])
    sources = json.loads(ids_of(remote_out)[2]["sources"])
    assert sources == [
        f"memory:///bkt/corpus/{n}"
        for n in ("a.txt", "b.jsonl", "c.jsonl.gz", "d.parquet", "sub/e.txt")
    ]  # sorted, notes.csv left out as a directory walk leaves it


def test_globs_include_and_single_objects(tmp_path, memfs, corpus):
    upload_tree(memfs, corpus, "memory://bkt/corpus")
    out = tmp_path / "o.tokens.safetensors"
    run_tokenize(["memory://bkt/corpus/*.jsonl"], str(out))
    assert json.loads(ids_of(out)[2]["sources"]) == ["memory:///bkt/corpus/b.jsonl"]
    run_tokenize(["memory://bkt/corpus/"], str(out), TokenizeOptions(include=("*.parquet",)))
    ids, offsets, _ = ids_of(out)
    expected = tmp_path / "d.tokens.safetensors"
    run_tokenize([str(corpus / "d.parquet")], str(expected))
    assert np.array_equal(ids, load_file(expected)["ids"]) and offsets.size == 41
    run_tokenize(["memory://bkt/corpus/c.jsonl.gz"], str(out))
    assert ids_of(out)[2]["documents"] == str(
        len(gzip.decompress((corpus / "c.jsonl.gz").read_bytes()).splitlines())
    )


def test_missing_objects_and_prefixes_are_one_line(memfs, corpus):
    upload_tree(memfs, corpus, "memory://bkt/corpus")
    for url, words in [
        ("memory://bkt/nothing.txt", "no such object or bucket"),
        ("memory://bkt/corpus/*.zip", "no objects to read here"),
    ]:
        proc = invoke("tokenize", url, "-o", "x.tokens.safetensors")
        message = proc.stderr.decode()
        assert proc.returncode != 0 and words in message and url.split("*")[0] in message
        assert message.count("\n") == 1 and "Traceback" not in message


@pytest.mark.parametrize(
    "to,name",
    [
        ("safetensors", "c.tokens.safetensors"),
        ("nanogpt", "train.bin"),
        ("llmc", "train.bin"),
        ("megatron", "corpus_text_document"),
        ("npy", "train.npy"),
    ],
)
def test_every_token_format_uploads_what_a_local_run_writes(tmp_path, memfs, corpus, to, name):
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    invoke("tokenize", str(corpus), "--to", to, "-o", str(local_dir / name), "-q", check=True)
    proc = invoke("tokenize", str(corpus), "--to", to, "-o", f"memory://bkt/out/{name}", check=True)
    assert "memory://bkt/out/" in proc.stderr.decode()  # the summary names the URL
    assert "embedcli-upload-" not in proc.stderr.decode()
    local_files = sorted(p.name for p in local_dir.iterdir())
    assert sorted(p.rsplit("/", 1)[-1] for p in memfs.find("/bkt/out")) == local_files
    for f in local_files:  # the lineage names the same local inputs: the bytes are the same
        assert memfs.cat_file(f"/bkt/out/{f}") == (local_dir / f).read_bytes(), f
    # and the upload reads back through the URL: batch from the bucket, as from the disk
    first = next(f for f in local_files if not f.endswith(".json"))  # llmc: train_000000.bin
    read = f"memory://bkt/out/{first}"
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    invoke("batch", read, "-o", str(a), "-T", "8", "-q", check=True)
    invoke(
        "batch", str(local_dir / read.rsplit("/", 1)[-1]), "-o", str(b), "-T", "8", "-q", check=True
    )
    assert invoke("inspect", "--diff", str(a), str(b), "--ignore-metadata").returncode == 0


def test_shards_to_a_bucket_merge_like_one_local_run(tmp_path, memfs, corpus):
    upload_tree(memfs, corpus, "memory://bkt/corpus")
    for i in (2, 0, 1):  # any order: the jobs are independent
        invoke("tokenize", "memory://bkt/corpus/", "-o", "memory://bkt/tok/c.tokens.safetensors",
               "--shard", f"{i}/3", "-q", check=True)  # fmt: skip
    names = sorted(p.rsplit("/", 1)[-1] for p in memfs.find("/bkt/tok"))
    assert names == [f"c-0000{i}-of-00003.tokens.safetensors" for i in (1, 2, 3)] + [
        "c.tokens.manifest.json"
    ]
    single = tmp_path / "single.tokens.safetensors"
    run_tokenize([str(corpus)], str(single))
    merged_w, single_w = tmp_path / "m.safetensors", tmp_path / "s.safetensors"
    invoke(
        "batch",
        "memory://bkt/tok/c.tokens.manifest.json",
        "-o",
        str(merged_w),
        "-T",
        "4",
        "-q",
        check=True,
    )
    invoke("batch", str(single), "-o", str(single_w), "-T", "4", "-q", check=True)
    a, b = load_file(merged_w), load_file(single_w)
    assert all(np.array_equal(a[k], b[k]) for k in ("inputs", "targets"))
    from safetensors import safe_open

    with safe_open(merged_w, "np") as f:
        shards = json.loads(f.metadata()["shards"])  # lineage: the URLs, not the local copies
    assert shards == [f"memory://bkt/tok/c-0000{i}-of-00003.tokens.safetensors" for i in (1, 2, 3)]
    report = json.loads(
        invoke("inspect", "memory://bkt/tok/c.tokens.manifest.json", "--json", "--no-stats").stdout
    )
    assert report["files"][0]["path"] == "memory://bkt/tok/c.tokens.manifest.json"
    assert "embedcli-fetch-" not in json.dumps(report)


def test_batch_embed_inspect_read_a_url_as_the_local_file(tmp_path, memfs):
    tokens = tmp_path / "t.tokens.safetensors"
    invoke("tokenize", str(SAMPLE), "-o", str(tokens), "-q", check=True)
    memfs.pipe_file("/bkt/t.tokens.safetensors", tokens.read_bytes())
    for url, local in [("memory://bkt/t.tokens.safetensors", str(tokens))]:
        a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
        invoke("embed", url, "-o", str(a), "--dim", "8", "-T", "4", "-q", check=True)
        invoke("embed", local, "-o", str(b), "--dim", "8", "-T", "4", "-q", check=True)
        assert a.read_bytes() == b.read_bytes()
        memfs.pipe_file("/bkt/e.safetensors", a.read_bytes())
        remote_report = json.loads(invoke("inspect", "memory://bkt/e.safetensors", "--json").stdout)
        local_report = json.loads(invoke("inspect", str(a), "--json").stdout)
        remote_report["files"][0]["path"] = local_report["files"][0]["path"]
        assert remote_report == local_report
        assert invoke("inspect", "--diff", "memory://bkt/e.safetensors", str(a)).returncode == 0


def test_an_interrupted_upload_leaves_no_object(tmp_path, memfs, monkeypatch):
    """Ctrl-C while the second file of an output goes up: neither file, nor the manifest."""
    calls = []

    def interrupted(local, url, advance=lambda n: None):
        calls.append(url)
        if len(calls) == 2:
            fs, path = remote.filesystem(url)
            with fs.transaction:
                f = fs.open(path, "wb")
                f.write(b"partial")
                raise KeyboardInterrupt
        real_upload(local, url, advance)

    real_upload = remote.upload
    monkeypatch.setattr(remote, "upload", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_tokenize([str(SAMPLE)], "memory://bkt/out/c.bin", to="megatron")
    assert not calls[1].endswith(".json")  # data files first, the sidecar last
    assert memfs.find("/bkt/out") == [calls[0].replace("memory://", "/")]  # the .bin before
    monkeypatch.setattr(remote, "upload", real_upload)
    out = tmp_path / "data.bin"
    out.write_bytes(b"x" * 1000)
    remote.upload(str(out), "memory://bkt/whole.bin")
    assert memfs.cat_file("/bkt/whole.bin") == b"x" * 1000


def test_no_clobber_and_torchrun_refuse_before_any_work(memfs, monkeypatch):
    memfs.pipe_file("/bkt/o.tokens.safetensors", b"old")
    proc = invoke(
        "tokenize", str(SAMPLE), "-o", "memory://bkt/o.tokens.safetensors", "--no-clobber"
    )
    assert proc.returncode != 0 and "exists (--no-clobber)" in proc.stderr.decode()
    assert memfs.cat_file("/bkt/o.tokens.safetensors") == b"old"
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="under torchrun"):
        run_tokenize([str(SAMPLE)], "memory://bkt/x.tokens.safetensors")


def test_urls_are_recorded_without_credentials():
    assert (
        remote.public_url("s3://key:secret@bucket/a.txt?X-Amz-Signature=abc") == "s3://bucket/a.txt"
    )
    assert (
        remote.public_url("https://user@example.com:8443/x.jsonl?sig=1#frag")
        == "https://example.com:8443/x.jsonl"
    )
    assert remote.public_url("s3://bucket/dir/") == "s3://bucket/dir/"
    assert remote.public_url("/local/path?.txt") == "/local/path?.txt"
    with pytest.raises(InputError) as caught, remote.storage_errors("s3://k:s@b/x?sig=zzz"):
        raise FileNotFoundError("b/x")
    assert "s:" not in str(caught.value) and "zzz" not in str(caught.value)
    with (
        pytest.raises(OutputError, match="access denied"),
        remote.storage_errors("s3://b/x", writing=True),
    ):
        raise PermissionError("denied")


@pytest.mark.parametrize("value,words", [("{oops", "not JSON"), ("[1]", "a JSON object")])
def test_storage_options_are_a_json_object(memfs, value, words):
    out = "memory://bkt/x.tokens.safetensors"
    proc = invoke("tokenize", str(SAMPLE), "-o", out, "--storage-options", value)
    assert proc.returncode == 2 and words in proc.stderr.decode()
    assert not memfs.exists("/bkt/x.tokens.safetensors")


def test_options_a_filesystem_does_not_take_are_one_line(memfs):
    proc = invoke(
        "tokenize", "memory://bkt/none/", "-q", "--storage-options", '{"no_such_option": 1}'
    )
    assert proc.returncode != 0 and proc.stderr.decode().count("\n") == 1


def test_without_fsspec_a_url_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fsspec", None)
    proc = invoke("tokenize", "s3://bucket/data/", "-q")
    assert proc.returncode != 0
    assert (
        "pip install 'embedcli[s3]'" in proc.stderr.decode()
        and "Traceback" not in proc.stderr.decode()
    )


def test_the_loader_points_to_a_local_copy_for_a_trainer_format(memfs):
    from embedcli.data import TokenWindows

    memfs.pipe_file("/out/train.bin", np.arange(100, dtype=np.uint16).tobytes())  # nanoGPT's
    with pytest.raises(UsageError, match="reads embedcli's safetensors token files.*copy it"):
        TokenWindows("memory://out/train.bin", max_length=4)
    pytest.importorskip("s3fs")
    if any(k in os.environ for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL")):
        pytest.skip("credentials in the environment: the refusal below needs none")
    with pytest.raises(InputError, match=r"s3://bucket/out/train\.(bin|idx): no credentials found"):
        TokenWindows("s3://bucket/out/train.bin", max_length=4)  # said at once, not retried


def test_a_fetched_copy_brings_its_sidecars_and_shards(tmp_path, memfs):
    out = tmp_path / "o"
    out.mkdir()
    run_tokenize([str(SAMPLE)], str(out / "train.bin"), to="llmc", shard=(0, 2))
    run_tokenize([str(SAMPLE)], str(out / "train.bin"), to="llmc", shard=(1, 2))
    upload_tree(memfs, out, "memory://bkt/llmc")
    memfs.pipe_file("/bkt/llmc/unrelated.bin", b"nothing to do with it")
    manifest = next(p.name for p in out.iterdir() if p.name.endswith("manifest.json"))
    with remote.fetched(f"memory://bkt/llmc/{manifest}") as local:
        fetched = sorted(p.name for p in type(tmp_path)(local).parent.iterdir())
    assert fetched == sorted(p.name for p in out.iterdir())
    shutil.rmtree(out)


def test_an_interrupted_upload_names_the_url_never_a_staging_file(tmp_path, memfs, monkeypatch):
    """Ctrl-C once the staging file is written (issue 36): the summary names the URL and says
    that nothing reached it; with the first of two files up, that one is named complete."""

    def interrupted(local, url, advance=lambda n: None):
        raise KeyboardInterrupt

    monkeypatch.setattr(remote, "upload", interrupted)
    url = "memory://bkt/emb/k.safetensors"
    proc = invoke("embed", str(SAMPLE / "the-lighthouse.txt"), "-T", "4", "-d", "4", "-o", url)
    err = proc.stderr.decode()
    assert proc.returncode == 130 and "embedcli-upload" not in err, err
    assert f"Interrupted; nothing was uploaded to {url}." in err, err
    assert memfs.find("/bkt") == []

    monkeypatch.undo()
    real_upload, calls = remote.upload, []

    def second_interrupted(local, url, advance=lambda n: None):
        calls.append(url)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_upload(local, url, advance)

    monkeypatch.setattr(remote, "upload", second_interrupted)
    out = "memory://bkt/out/c.bin"
    proc = invoke("tokenize", str(SAMPLE), "--to", "megatron", "-o", out)
    err = proc.stderr.decode()
    assert proc.returncode == 130 and "embedcli-upload" not in err, err
    assert f"Interrupted after writing {calls[0]} (complete); {out} was not uploaded whole." in err
    # the data went up, the index did not (Megatron opens the index first: it goes after)
    assert calls == [out, "memory://bkt/out/c.idx"]


def test_a_smaller_rerun_to_a_url_leaves_no_old_part(memfs, corpus):
    """llm.c shards and a split output's parts: the old set's extra objects go, the data
    before the pointer; what is left reads back whole."""
    url = "memory://bkt/out/c.bin"
    invoke("tokenize", str(corpus), "--to", "llmc", "--shard-tokens", "300", "-o", url, check=True)
    assert len(memfs.find("/bkt/out")) > 4
    invoke("tokenize", str(SAMPLE / "the-lighthouse.txt"), "--to", "llmc", "-o", url, check=True)
    assert sorted(p.rsplit("/", 1)[-1] for p in memfs.find("/bkt/out")) == [
        "c.bin.json",
        "c_000000.bin",
    ]
    assert invoke("inspect", url, "--no-stats").returncode == 0
    tokens = "memory://bkt/t.tokens.safetensors"
    invoke("tokenize", str(corpus), "-o", tokens, check=True)
    split = "memory://bkt/w/w.safetensors"
    batch = ["batch", tokens, "-T", "4", "--stride", "1", "-o", split, "-q"]
    invoke(*batch, "--max-shard-size", "8KB", check=True)
    many = memfs.find("/bkt/w")
    invoke(*batch, "--max-shard-size", "64KB", check=True)
    index = json.loads(memfs.cat_file("/bkt/w/w.safetensors.index.json"))
    listed = sorted(f["file"] for f in index["embedcli"]["files"])
    names = sorted(p.rsplit("/", 1)[-1] for p in memfs.find("/bkt/w"))
    assert len(many) > len(names) and names == sorted([*listed, "w.safetensors.index.json"])


def test_an_upload_cut_short_leaves_a_set_readers_refuse(memfs, monkeypatch):
    """An error after the first new shard went up: the old sidecar was already replaced by an
    incomplete one, so a reader refuses the mix in one line instead of reading it."""
    url = "memory://bkt/out/c.bin"
    story = str(SAMPLE / "the-lighthouse.txt")
    invoke("tokenize", story, "--to", "llmc", "--shard-tokens", "500", "-o", url, check=True)
    calls = []
    real_upload = remote.upload

    def failing(local, target, advance=lambda n: None):
        calls.append(target)
        if len(calls) == 2:
            raise OutputError(f"{target}: connection reset (injected)")
        real_upload(local, target, advance)

    monkeypatch.setattr(remote, "upload", failing)
    with pytest.raises(OutputError, match="injected"):
        run_tokenize([str(SAMPLE)], url, to="llmc", shard_tokens=300)
    monkeypatch.setattr(remote, "upload", real_upload)
    proc = invoke("inspect", url)
    assert proc.returncode == 1
    assert "killed while committing" in proc.stderr.decode()
    invoke("tokenize", story, "--to", "llmc", "--shard-tokens", "500", "-o", url, check=True)
    assert invoke("inspect", url, "--no-stats").returncode == 0


def test_storage_options_are_an_argument_of_the_call(tmp_path, memfs, monkeypatch):
    """``storage_options=`` reaches every filesystem the call opens, and only that call's:
    the options set before are back after it, also when it fails."""
    seen = []
    real = fsspec.core.url_to_fs

    def recording(url, **options):
        seen.append((url, dict(options)))
        return real(url)

    monkeypatch.setattr(fsspec.core, "url_to_fs", recording)
    remote.set_storage_options({"process": "wide"})
    try:
        story = SAMPLE / "the-lighthouse.txt"
        out = "memory://bkt/out/story.tokens.safetensors"
        run_tokenize(story, out, storage_options={"anon": True})
        assert seen and all(options == {"anon": True} for _, options in seen)
        assert memfs.exists(out)
        assert remote._OPTIONS == {"process": "wide"}  # back after the call
        seen.clear()
        with pytest.raises(InputError):
            run_tokenize("memory://bkt/missing.txt", str(tmp_path / "x"), storage_options={"k": 1})
        assert seen and seen[0][1] == {"k": 1} and remote._OPTIONS == {"process": "wide"}
        with pytest.raises(UsageError, match="storage_options must be a dict"):
            run_tokenize(story, str(tmp_path / "y"), storage_options='{"anon": true}')
    finally:
        remote.set_storage_options({})
