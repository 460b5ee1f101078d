"""Parquet/Arrow in; nanoGPT, llm.c, Megatron and NumPy token files out, and read back."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from embedcli import run_batch, run_tokenize
from embedcli.errors import FormatError, InputError, UsageError
from embedcli.inputs import load_input
from embedcli.options import TokenizeOptions, WindowOptions

from conftest import invoke

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

EOT = 50256
DOCS = [
    "The lighthouse keeper counted ships.",
    "A second document,\nwith two lines and <|endoftext|> inside it.",
    "",
    "Third: naïve café, don't stop — 123 456.",
    "Short.",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The same documents as jsonl, Parquet (3 row groups) and Arrow (stream and file)."""
    tmp = tmp_path_factory.mktemp("corpus")
    (tmp / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    table = pa.table({"id": list(range(len(DOCS))), "text": DOCS})
    pq.write_table(table, tmp / "d.parquet", row_group_size=2)
    with pa.ipc.new_stream(tmp / "d.arrow", table.schema) as w:  # datasets.save_to_disk's
        w.write_table(table, max_chunksize=2)
    with pa.ipc.new_file(tmp / "f.arrow", table.schema) as w:
        w.write_table(table)
    return tmp


def _tokens(paths, tmp, **opts):
    out = tmp / f"t{len(list(tmp.iterdir()))}.safetensors"
    run_tokenize([str(p) for p in paths], str(out), TokenizeOptions(**opts))
    return load_file(str(out))


@pytest.mark.parametrize("name", ["d.parquet", "d.arrow", "f.arrow"])
def test_columnar_inputs_equal_jsonl(corpus, tmp_path, name):
    want = _tokens([corpus / "d.jsonl"], tmp_path)
    got = _tokens([corpus / name], tmp_path)
    assert np.array_equal(got["ids"], want["ids"])
    assert np.array_equal(got["doc_offsets"], want["doc_offsets"])


def test_a_parquet_file_shards_by_row_group(corpus, tmp_path):
    whole = tmp_path / "p.tokens.safetensors"
    for i in range(3):
        run_tokenize([str(corpus / "d.parquet")], str(whole), shard=(i, 3))
    shards = sorted(tmp_path.glob("p-*-of-00003.tokens.safetensors"))
    assert len(shards) == 3 and all(load_file(str(s))["ids"].size for s in shards)
    with load_input([str(tmp_path / "p.tokens.manifest.json")]) as merged:
        want = _tokens([corpus / "d.jsonl"], tmp_path)
        assert np.array_equal(merged.ids, want["ids"])
        assert np.array_equal(merged.doc_offsets, want["doc_offsets"])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"body": ["x"]}, r"no 'text' column \(columns: 'body'\); choose one with --text-key"),
        ({"text": ["ok", None]}, r"d\.parquet:row 1: 'text' is null, not a string"),
        ({"text": [1, 2]}, r"column 'text' is int64, not a string"),
    ],
)
def test_bad_parquet_says_file_and_row(tmp_path, table, message):
    pq.write_table(pa.table(table), tmp_path / "d.parquet")
    with pytest.raises(InputError, match=message):
        run_tokenize([str(tmp_path / "d.parquet")], str(tmp_path / "t.safetensors"))
    (tmp_path / "d.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match=r"d\.parquet: not a readable Parquet file"):
        run_tokenize([str(tmp_path / "d.parquet")], str(tmp_path / "t.safetensors"))


def test_without_pyarrow_parquet_names_the_extra(corpus, tmp_path):
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from embedcli.cli.app import main\n"
        f"sys.argv = ['embedcli', 'tokenize', {str(corpus / 'd.parquet')!r}, '-o', "
        f"{str(tmp_path / 't.safetensors')!r}]\nmain()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("needs pyarrow (pip install 'embedcli[parquet]')")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("eot", ["between", "after", "before", "none"])
def test_eot_placement_and_doc_offsets(corpus, tmp_path, enc, eot):
    data = _tokens([corpus / "d.jsonl"], tmp_path, eot=eot)
    ids, offsets = data["ids"].tolist(), data["doc_offsets"].tolist()
    pieces = [enc.encode(d, allowed_special={"<|endoftext|>"}) for d in DOCS]
    spans = {
        "between": [p + [EOT] for p in pieces[:-1]] + [pieces[-1]],
        "after": [p + [EOT] for p in pieces],
        "before": [[EOT] + p for p in pieces],
        "none": pieces,
    }[eot]
    assert ids == [i for span in spans for i in span]
    assert offsets == np.cumsum([0] + [len(s) for s in spans]).tolist()


def _write(corpus, tmp_path, to, *extra):
    out = tmp_path / {"nanogpt": "train.bin", "llmc": "c.bin", "megatron": "c", "npy": "c.npy"}[to]
    args = ["tokenize", str(corpus / "d.jsonl"), "--to", to, "--special", "text", "-o", str(out)]
    proc = invoke(*args, *extra, "-q")
    assert proc.returncode == 0, proc.stderr
    return out


def test_nanogpt_is_what_prepare_py_writes(corpus, tmp_path, enc):
    out = _write(corpus, tmp_path, "nanogpt")
    want = [i for d in DOCS for i in enc.encode_ordinary(d) + [EOT]]
    assert np.memmap(out, dtype=np.uint16, mode="r").tolist() == want
    assert json.loads((tmp_path / "train.bin.json").read_text())["metadata"]["eot"] == "after"
    # Without --special, nanoGPT's own: encode_ordinary, a literal <|endoftext|> is text.
    piped = invoke("tokenize", str(corpus / "d.jsonl"), "--to", "nanogpt", "-o", "-", "-q")
    assert np.frombuffer(piped.stdout, dtype="<u2").tolist() == want
    special = invoke("tokenize", str(corpus / "d.jsonl"), "--to", "nanogpt", "-o", "-", "-q",
                     "--special", "special")  # fmt: skip
    assert np.frombuffer(special.stdout, dtype="<u2").tolist() == [
        i for d in DOCS for i in enc.encode(d, allowed_special={"<|endoftext|>"}) + [EOT]
    ]


def test_llmc_header_ids_and_shards(corpus, tmp_path, enc):
    _write(corpus, tmp_path, "llmc", "--shard-tokens", "20")
    want = [i for d in DOCS for i in [EOT] + enc.encode_ordinary(d)]
    files = sorted(tmp_path.glob("c_*.bin"))
    assert [f.name for f in files][:2] == ["c_000000.bin", "c_000001.bin"]
    got = []
    for f in files:
        header = np.fromfile(f, dtype="<i4", count=256)
        assert header[0] == 20240520 and header[1] == 1 and header[3:].sum() == 0
        ids = np.fromfile(f, dtype="<u2", offset=1024)
        assert header[2] == ids.size <= 20
        got += ids.tolist()
    assert got == want


def test_megatron_reads_back_in_megatron_core(corpus, tmp_path, enc):
    pytest.importorskip("megatron.core")
    _write(corpus, tmp_path, "megatron")
    code = (
        "import sys, json, warnings; warnings.simplefilter('ignore')\n"
        "from megatron.core.datasets.indexed_dataset import IndexedDataset\n"
        "ds = IndexedDataset(sys.argv[1])\n"
        "print(json.dumps([ds[i].tolist() for i in range(len(ds))]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sequences = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sequences == [enc.encode_ordinary(d) + [EOT] for d in DOCS]


@pytest.mark.parametrize("to", ["nanogpt", "llmc", "megatron", "npy"])
def test_batch_on_each_format_equals_batch_on_safetensors(corpus, tmp_path, to):
    out = _write(corpus, tmp_path, to, "--eot", "between")
    reference = tmp_path / "ref.safetensors"
    run_tokenize([str(corpus / "d.jsonl")], str(reference), TokenizeOptions(special="text"))
    given = {"llmc": [str(p) for p in sorted(tmp_path.glob("c_*.bin"))]}.get(to, [str(out)])
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    run_batch(given, str(a), WindowOptions(max_length=4))
    run_batch([str(reference)], str(b), WindowOptions(max_length=4))
    assert np.array_equal(load_file(str(a))["inputs"], load_file(str(b))["inputs"])
    # inspect sees each file's ids; together they are the reference's ids, one for one.
    report = invoke("inspect", *given, "--json")
    assert report.returncode == 0, report.stderr
    files = json.loads(report.stdout)["files"]
    assert all(f["tensors"][0]["name"] == "ids" for f in files)
    assert sum(f["tensors"][0]["numel"] for f in files) == load_file(str(reference))["ids"].size


def test_sharded_runs_in_a_trainer_format_read_back_whole(corpus, tmp_path):
    for i in range(2):
        args = ["tokenize", str(corpus / "d.parquet"), "--to", "megatron", "-o"]
        proc = invoke(*args, str(tmp_path / "m"), "--shard", f"{i}/2", "-q")
        assert proc.returncode == 0, proc.stderr
    with load_input([str(tmp_path / "m.manifest.json")]) as merged:
        single = tmp_path / "s.safetensors"
        opts = TokenizeOptions(eot="after", special="text")  # Megatron's defaults
        run_tokenize([str(corpus / "d.jsonl")], str(single), opts)
        assert np.array_equal(merged.ids, load_file(str(single))["ids"])
        assert np.array_equal(merged.doc_offsets, load_file(str(single))["doc_offsets"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.bin", b"\x01\x02\x03", r"not a whole number of uint16 ids"),
        ("c_000000.bin", np.array([20240520, 1, 99] + [0] * 253, "<i4").tobytes(), "header says"),
        ("x.npy", b"\x93NUMPY garbage", r"not a readable \.npy file"),
        ("m.idx", b"MMIDIDX\x00\x00" + b"\x01" + b"\x00" * 7, r"m\.idx: .*Megatron index"),
    ],
)
def test_malformed_token_files_are_refused_in_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    if name == "m.idx":
        (tmp_path / "m.bin").write_bytes(b"")
    with pytest.raises(FormatError, match=message), load_input([str(tmp_path / name)]):
        pass
    proc = invoke("batch", str(tmp_path / name), "-o", str(tmp_path / "w.safetensors"))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_uint16_formats_refuse_large_vocabularies(tmp_path):
    from embedcli.formats.base import require_uint16

    with pytest.raises(UsageError, match="use --to llmc, megatron or npy"):
        require_uint16("nanogpt", {"vocab_size": "100277", "encoding": "cl100k_base"})


def test_llmc_uses_the_llama3_header_for_large_vocabularies(tmp_path):
    import tempfile

    from embedcli.formats import llmc

    ids = np.array([5, 70000, 100276, 0], dtype=np.int32)
    with tempfile.TemporaryFile() as spill:
        spill.write(ids.tobytes())
        spill.flush()
        meta = {"vocab_size": "100277", "encoding": "cl100k_base"}
        out = str(tmp_path / "big.bin")
        llmc.write(out, spill, 4, np.array([0, 4]), meta, inputs=[], no_clobber=False)
    header = np.fromfile(tmp_path / "big_000000.bin", dtype="<i4", count=256)
    assert header[:3].tolist() == [20240801, 7, 4]
    assert np.fromfile(tmp_path / "big_000000.bin", dtype="<u4", offset=1024).tolist() == [
        5,
        70000,
        100276,
        0,
    ]


ROW_TEXT = st.lists(
    st.sampled_from(["a", "b", " ", "\n", "é", "中", "😀", "<|endoftext|>", "word "]), max_size=12
).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    docs=st.lists(ROW_TEXT, min_size=1, max_size=20),
    group=st.integers(1, 7),
    policy=st.sampled_from(["special", "text", "error"]),
    chooser=st.sampled_from([None, (0.5, 3)]),
    piece_chars=st.sampled_from([4, 1 << 18]),
)
def test_rows_read_by_batch_equal_rows_read_as_blocks(
    tmp_path_factory, monkeypatch, docs, group, policy, chooser, piece_chars
):
    """A columnar file's batches of rows give the pieces and counts its blocks give, with
    every option that needs a row apart (--val-fraction, --special error, a cut)."""
    import embedcli.bpe.pieces as pieces_module
    from embedcli.bpe.pieces import TokenizeStats, pieces
    from embedcli.documents import resolve_sources

    path = tmp_path_factory.mktemp("rows") / "d.parquet"
    pq.write_table(pa.table({"text": docs}), path, row_group_size=group)
    (source,) = resolve_sources([str(path)])

    def run():
        stats = TokenizeStats("", 0, 0, policy)
        stats.val = TokenizeStats("", 0, 0, policy)
        try:
            items = list(pieces([source], "text", piece_chars, 16, policy, stats, None,
                                chooser=chooser))  # fmt: skip
        except InputError as exc:
            return str(exc)
        fields = ("documents", "chars", "text_bytes", "special_found", "input_bytes")
        return items, [[getattr(s, f) for f in fields] for s in (stats, stats.val)]

    by_rows = run()
    with monkeypatch.context() as m:
        m.setattr(pieces_module, "row_batches", lambda source, text_key: None)  # blocks
        by_blocks = run()
    assert by_rows == by_blocks


@pytest.mark.parametrize("kind", ["string", "large_string", "string_view"])
def test_a_string_columns_utf8_size_is_its_values(kind):
    from embedcli.documents.columnar import _utf8_size

    values = ["ab", "", "é中", "😀 x", "plain"]
    column = pa.array(values, type=getattr(pa, kind)()).slice(1, 3)  # an offset into buffers
    texts = column.to_pylist()
    assert _utf8_size(column, texts) == sum(len(t.encode("utf-8")) for t in texts) == 11
