"""``tokenize --provenance``: each document's text file and place there (issue 33, item 6).

The places are checked against an oracle built apart from the reader (jsonl lines counted
here, a text file's documents split at their separators here), and every document's ids
against its text re-read from that place and encoded by tiktoken itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiktoken_ext.openai_public  # noqa: F401 (the gpt2 constructor tiktoken's registry loads)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from embedcli.bpe.encodings import get_encoding
from embedcli.bpe.pieces import MemorySink
from embedcli.bpe.tokenizer import tokenize
from embedcli.documents import place_kind, resolve_sources
from embedcli.formats.provenance import provenance_path, read_provenance
from embedcli.options import TokenizeOptions
from embedcli.stages.tokenize import run_tokenize

from conftest import invoke

EOT_TEXT, EOT_ID = "<|endoftext|>", 50256
TEXT = st.text(alphabet="ab \n\u00e9\u4e2d", max_size=30)


def _spans(ids: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    """Each document's ids, its separator left out."""
    cuts = zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    return [[t for t in ids[a:b].tolist() if t != EOT_ID] for a, b in cuts]


def _files(tmp_path, texts_jsonl, blanks, text_docs, rows):
    """A jsonl file (blank lines where ``blanks`` says), a text file of ``text_docs`` joined by
    the literal separator, a Parquet file of ``rows``; and, per file, the oracle's documents
    in order as (place, text) for each reading (split at the separator or not)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines, places = [], []
    for text, blank in zip(texts_jsonl, blanks, strict=True):
        lines += [""] * blank
        lines.append(json.dumps({"text": text}))
        places.append(len(lines))  # 1-based: the line just written
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = EOT_TEXT.join(text_docs)
    (tmp_path / "b.txt").write_bytes(whole.encode("utf-8"))
    split, start = [], 0
    for doc in text_docs:
        split.append((1 + whole[:start].count("\n"), doc))
        start += len(doc) + len(EOT_TEXT)
    pq.write_table(pa.table({"text": rows}), tmp_path / "c.parquet", row_group_size=3)
    jsonl = list(zip(places, texts_jsonl, strict=True))
    parquet = list(enumerate(rows))
    return {False: [jsonl, [(1, whole)], parquet], True: [jsonl, split, parquet]}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(TEXT, st.integers(0, 2)), min_size=1, max_size=12),
    st.lists(TEXT, min_size=1, max_size=5),
    st.lists(TEXT, min_size=1, max_size=8),
    st.booleans(),
    st.sampled_from([(1, 1 << 20), (2, 1 << 20), (2, 40)]),
)
def test_every_document_is_placed_where_its_text_is(
    tmp_path_factory, jsonl, text_docs, rows, split_on_eot, run
):
    tmp_path = tmp_path_factory.mktemp("prov")
    texts, blanks = [t for t, _ in jsonl], [b for _, b in jsonl]
    expected = _files(tmp_path, texts, blanks, text_docs, rows)[split_on_eot]
    sources = resolve_sources([str(tmp_path / n) for n in ("a.jsonl", "b.txt", "c.parquet")])
    workers, chunk_bytes = run  # 40 bytes: the jsonl is read in ranges by the workers
    sink = MemorySink()
    stats = tokenize(sources, sink, workers=workers, chunk_bytes=chunk_bytes,
                     split_on_eot=split_on_eot, provenance=True, allow_empty=True)  # fmt: skip
    assert stats.origins is not None and stats.doc_offsets is not None
    oracle = [(f, at, text) for f, docs in enumerate(expected) for at, text in docs]
    assert stats.origins.file.tolist() == [f for f, _, _ in oracle]
    assert stats.origins.at.tolist() == [at for _, at, _ in oracle]
    enc = get_encoding("gpt2")
    read = [enc.encode(t, allowed_special="all") for *_, t in oracle]  # --special special
    assert _spans(sink.array(), stats.doc_offsets) == [[t for t in r if t != EOT_ID] for r in read]


def test_a_validation_split_places_both_sides(tmp_path):
    docs = [f"document number {i} " * (i % 5 + 1) for i in range(60)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    out = tmp_path / "train.bin"
    result = run_tokenize([str(path)], str(out), TokenizeOptions(), to="nanogpt",
                          val_fraction=0.3, provenance=True)  # fmt: skip
    seen = []
    for part in (result.stats, result.stats.val):
        assert part is not None and part.origins is not None
        assert part.origins.file.tolist() == [0] * part.documents
        seen += part.origins.at.tolist()
        assert np.all(np.diff(part.origins.at) > 0)  # in the file's order
    assert sorted(seen) == list(range(1, 61))
    val = tmp_path / "val.bin"
    assert {p.name for p in tmp_path.iterdir()} >= {
        "train.bin.provenance.safetensors", "val.bin.provenance.safetensors"
    }  # fmt: skip
    for name in (out, val):
        done = invoke("inspect", str(name), "--doc", "0", "--json", check=True)
        origin = json.loads(done.stdout)["document"]["origin"]
        assert origin["file"] == str(path) and origin["line"] in seen
        shown = invoke("inspect", name.name, "--doc", "0", cwd=tmp_path, check=True)
        assert b"read from" in shown.stdout and f"line {origin['line']}".encode() in shown.stdout


def test_a_shard_read_from_mid_file_places_its_documents_by_byte(tmp_path):
    docs = [f"text {i} " * 40 for i in range(40)]
    data = "".join(json.dumps({"text": d}) + "\n" for d in docs).encode()
    path = tmp_path / "d.jsonl"
    path.write_bytes(data)
    out = tmp_path / "o.tokens.safetensors"
    result = run_tokenize([str(path)], str(out), shard=(1, 2), provenance=True)
    part = result.output
    stats = result.stats
    assert stats.origins is not None and stats.doc_offsets is not None
    found, why = read_provenance(part, stats.doc_offsets)
    assert why is None and found is not None
    assert found.files == [{"path": str(path), "at": "byte"}]
    enc = get_encoding("gpt2")
    ids = load_file(part)["ids"]
    for d, span in enumerate(_spans(ids, stats.doc_offsets)):
        at = found.of(d)["byte"]
        line = data[at:].split(b"\n", 1)[0]
        assert span == enc.encode_ordinary(json.loads(line)["text"])
    (source,) = resolve_sources([str(path)])
    assert place_kind(source) == "line"


def test_a_run_without_provenance_takes_an_older_one_away(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("some text\n", encoding="utf-8")
    out = tmp_path / "a.tokens.safetensors"
    invoke("tokenize", str(path), "-o", str(out), "--provenance", "-q", check=True)
    assert (tmp_path / provenance_path("a.tokens.safetensors")).is_file()
    invoke("tokenize", str(path), "-o", str(out), "-q", check=True)
    assert not (tmp_path / provenance_path("a.tokens.safetensors")).exists()


def test_provenance_to_stdout_is_refused_in_one_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x", encoding="utf-8")
    done = invoke("tokenize", str(path), "-o", "-", "--provenance")
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().strip().splitlines() == [
        "Error: --provenance writes a file beside the output: name it with -o PATH"
    ]


@pytest.mark.parametrize("fmt", ["safetensors", "megatron"])
def test_the_loader_says_where_a_window_was_read(tmp_path, fmt):
    from embedcli.data import TokenWindows

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i} " * 20}) + "\n" for i in range(5)))
    out = tmp_path / ("o.tokens.safetensors" if fmt == "safetensors" else "o")
    run_tokenize([str(path)], str(out), to=fmt, provenance=True)
    name = str(out) if fmt == "safetensors" else str(out) + ".bin"  # a Megatron pair's .bin
    ds = TokenWindows(name, max_length=8, stride=8)
    last = ds.source(len(ds) - 1)
    assert last["origin"] == {"file": str(path), "line": 5}


# ------------------------------------------------------------------- through embedcli mix


@pytest.fixture()
def recorded(tmp_path):
    """Three token files: web (jsonl, recorded, one document twice), books (Parquet,
    recorded), notes (jsonl, not recorded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    web = [f"web page {i} " * (i % 4 + 1) for i in range(12)]
    web.append(web[3])
    (tmp_path / "web.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in web) + "\n")
    books = [f"chapter {i} of a book. " * (i % 3 + 2) for i in range(9)]
    pq.write_table(pa.table({"text": books}), tmp_path / "books.parquet", row_group_size=4)
    notes = "".join(json.dumps({"text": f"a note {i}"}) + "\n" for i in range(5))
    (tmp_path / "notes.jsonl").write_text(notes)
    for name, src, extra in [("web", "web.jsonl", ["--provenance"]),
                             ("books", "books.parquet", ["--provenance"]),
                             ("notes", "notes.jsonl", [])]:  # fmt: skip
        invoke("tokenize", src, "-o", f"{name}.tokens.safetensors", "-q", *extra,
               cwd=tmp_path, check=True)  # fmt: skip
    return [str(tmp_path / f"{n}.tokens.safetensors") for n in ("web", "books", "notes")]


def _read_back(tmp_path, origin):
    """The text at a recorded place, read again from its file."""
    import pyarrow.parquet as pq

    path = tmp_path / origin["file"]
    if "row" in origin:
        return pq.read_table(path).column("text")[origin["row"]].as_py()
    if "byte" in origin:  # a --shard part that starts inside the file
        return json.loads(path.read_bytes()[origin["byte"] :].split(b"\n", 1)[0])["text"]
    return json.loads(path.read_text().split("\n")[origin["line"] - 1])["text"]


def _mixed_documents(path, tmp_path):
    """Each document of a mixed file (a manifest's parts each with its own provenance):
    its ids without separators and its origin."""
    from embedcli.inputs import Request, open_input
    from embedcli.progress import no_progress

    parts = [path]
    if path.endswith(".manifest.json"):
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        parts = [str(tmp_path / s) for s in doc["shards"]]
    found = []
    for part in parts:
        with open_input([part], Request()) as got:
            source = got.load(no_progress)
            offsets = source.doc_offsets
            prov, why = read_provenance(part, offsets)
            assert why is None and prov is not None
            spans = _spans(np.asarray(source.ids), offsets)
            found += [(span, prov.of(d)) for d, span in enumerate(spans)]
    return found


@pytest.mark.parametrize("val", [False, True])
def test_a_mixed_document_is_traced_to_its_text_line_or_row(recorded, tmp_path, val):
    out = tmp_path / "mix.tokens.safetensors"
    split = ["--val-fraction", "0.3"] if val else []
    invoke("mix", *recorded, "-o", str(out), "--dedup", "exact", "--seed", "5", "-q", *split,
           cwd=tmp_path, check=True)  # fmt: skip
    enc = get_encoding("gpt2")
    docs = _mixed_documents(str(out), tmp_path)
    if val:
        held = _mixed_documents(str(tmp_path / "mix.val.tokens.safetensors"), tmp_path)
        assert held and docs
        docs += held
    assert len(docs) == 13 + 9 + 5 - 1  # the second "web page 3" dropped
    by_source = {"web": 0, "books": 0, "notes": 0}
    for span, origin in docs:
        by_source[origin["source"]] += 1
        if origin["source"] == "notes":
            assert "file" not in origin  # tokenized without --provenance
            continue
        assert span == enc.encode_ordinary(_read_back(tmp_path, origin))
    assert by_source == {"web": 12, "books": 9, "notes": 5}


def test_two_phases_trace_each_document_as_one_process_does(recorded, tmp_path):
    from embedcli.stages.mix import MixOptions, run_mix
    from embedcli.stages.mix_phases import Phase, run_mix_phase

    opts = MixOptions(weights="0.5,0.3,0.2", dedup=True, seed=3)
    one = tmp_path / "one.tokens.safetensors"
    run_mix(recorded, str(one), opts)
    out, buckets = tmp_path / "two.tokens.safetensors", str(tmp_path / "buckets")
    for i in range(2):
        run_mix_phase(recorded, str(out), Phase("scatter", i, 2, buckets, 3), opts)
    for j in range(3):
        run_mix_phase(recorded, str(out), Phase("gather", j, 3, buckets), opts)
    two = _mixed_documents(str(tmp_path / "two.tokens.manifest.json"), tmp_path)
    assert two == _mixed_documents(str(one), tmp_path)
    assert any("row" in origin for _, origin in two) and any("line" in o for _, o in two)
    # read through the manifest, the loader and inspect --doc give the one file's origins
    from embedcli.data import TokenWindows
    from embedcli.inspection.documents import document_report

    manifest = str(tmp_path / "two.tokens.manifest.json")
    split, whole = TokenWindows(manifest, 4), TokenWindows(str(one), 4)
    sources = [split.source(i) for i in range(len(split))]
    assert sources == [whole.source(i) for i in range(len(whole))]
    assert all(s["origin"] for s in sources)
    for d, (span, origin) in enumerate(two):
        report = document_report(manifest, doc=d)
        assert report.origin == origin and [t for t in report.ids if t != EOT_ID] == span[:64]


@pytest.mark.parametrize("to", ["safetensors", "nanogpt"])
def test_a_shard_set_read_through_its_manifest_traces_every_document(tmp_path, to):
    """``tokenize --shard --provenance`` shards each record their own text files: read through
    the manifest, each document is traced to its file and line (the shards' lists joined)."""
    from embedcli.data import TokenWindows

    names = []
    for f in range(3):
        docs = [f"file {f} document {i} " * (i % 3 + 2) for i in range(7)]
        names.append(tmp_path / f"d{f}.jsonl")
        names[-1].write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = tmp_path / ("o.tokens.safetensors" if to == "safetensors" else "o.bin")
    for i in range(3):
        run_tokenize([str(n) for n in names], str(out), to=to, shard=(i, 3), provenance=True)
    manifest = next(tmp_path.glob("o*.manifest.json"))
    ds = TokenWindows(str(manifest), max_length=2, stride=1)
    offsets, _ = ds._documents()
    enc = get_encoding("gpt2")
    seen = set()
    for d in range(offsets.size - 1):
        window = int(np.searchsorted(np.arange(len(ds)), offsets[d]))
        origin = ds.source(window)["origin"]
        assert origin is not None, d
        seen.add((origin["file"], origin.get("line", origin.get("byte"))))
        ids = [t for t in ds.stream().read(offsets[d], offsets[d + 1] - offsets[d]) if t != EOT_ID]
        text = Path(origin["file"]).read_bytes()
        at = origin.get("byte")
        line = (text[at:].split(b"\n", 1)[0] if at is not None
                else text.split(b"\n")[origin["line"] - 1])  # fmt: skip
        assert ids == enc.encode_ordinary(json.loads(line)["text"])
    assert len(seen) == 21
    # a part whose provenance is gone: no origin for any document, never a wrong one
    next(tmp_path.glob("o-00002-of-00003*.provenance.safetensors")).unlink()
    again = TokenWindows(str(manifest), max_length=2, stride=1)
    assert {again.source(i)["origin"] for i in range(0, len(again), 5)} == {None}


# ------------------------------------------------------------------------------ --id-key


def test_each_document_keeps_its_id_whichever_reader_read_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = []
    for i in range(40):
        lines += [""] * (i % 3 == 0)
        lines.append(json.dumps({"id": f"doc-{i}" if i % 2 else i, "text": f"text {i} " * 9}))
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": [f"row {r}" for r in range(7)], "uid": list(range(100, 107))}),
                   tmp_path / "b.parquet", row_group_size=3)  # fmt: skip
    want = [str(i) if i % 2 == 0 else f"doc-{i}" for i in range(40)]
    for workers in (1, 2):
        out = tmp_path / f"o{workers}.tokens.safetensors"
        opts = TokenizeOptions(workers=workers)
        for src, key, expect in [("a.jsonl", "id", want),
                                 ("b.parquet", "uid", [str(r) for r in range(100, 107)])]:  # fmt: skip
            result = run_tokenize([str(tmp_path / src)], str(out), opts, id_key=key)
            found, _ = read_provenance(str(out), result.stats.doc_offsets)
            assert found is not None and found.ids == expect
    result = run_tokenize([str(tmp_path / "a.jsonl")], str(tmp_path / "train.bin"), to="nanogpt",
                          val_fraction=0.4, id_key="id")  # fmt: skip
    both = []
    for name, part in (("train.bin", result.stats), ("val.bin", result.stats.val)):
        found, _ = read_provenance(str(tmp_path / name), part.doc_offsets)
        assert found is not None and found.ids is not None
        both += found.ids
        for d in range(part.documents):  # each id beside its own line
            origin = found.of(d)
            record = json.loads(lines[origin["line"] - 1])
            assert origin["id"] == str(record["id"])  # a number as JSON writes it
    assert sorted(both) == sorted(want)


def test_a_shard_s_ids_are_read_at_its_byte_offsets(tmp_path):
    data = "".join(json.dumps({"text": f"t{i} " * 30, "id": f"k{i}"}) + "\n" for i in range(30))
    (tmp_path / "d.jsonl").write_text(data)
    out = tmp_path / "o.tokens.safetensors"
    result = run_tokenize([str(tmp_path / "d.jsonl")], str(out), shard=(1, 3), id_key="id")
    found, _ = read_provenance(result.output, result.stats.doc_offsets)
    assert found is not None and found.files[0]["at"] == "byte" and found.ids
    for d, key in enumerate(found.ids):
        at = found.of(d)["byte"]
        assert json.loads(data.encode()[at:].split(b"\n", 1)[0])["id"] == key


@pytest.mark.parametrize(
    ("content", "name", "args", "message"),
    [
        ("some text", "a.txt", [], "--id-key id: {dir}/a.txt is text; ids are read from jsonl "
         "lines and Parquet or Arrow rows"),
        ('{"text": "x"}\n{"text": "y", "id": 2}\n', "a.jsonl", [],
         "{dir}/a.jsonl:1: no 'id' key for --id-key"),
        ('{"text": "x"}\n', "-", [], "--id-key id reads the input again: give files, not stdin"),
    ],
)  # fmt: skip
def test_id_key_refusals_are_one_line_and_write_nothing(tmp_path, content, name, args, message):
    out = tmp_path / "o.tokens.safetensors"
    if name == "-":
        done = invoke("tokenize", "-o", str(out), "--id-key", "id", input=content.encode())
    else:
        (tmp_path / name).write_text(content)
        done = invoke("tokenize", str(tmp_path / name), "-o", str(out), "--id-key", "id", *args)
    assert done.returncode != 0
    assert done.stderr.decode().strip().splitlines() == [f"Error: {message.format(dir=tmp_path)}"]
    assert (
        not out.exists() and not (tmp_path / "o.tokens.safetensors.provenance.safetensors").exists()
    )


def test_mix_carries_the_ids_through(tmp_path):
    for name in ("web", "code"):
        rows = "".join(json.dumps({"text": f"{name} {i} " * 5, "id": f"{name}/{i}"}) + "\n"
                       for i in range(6))  # fmt: skip
        (tmp_path / f"{name}.jsonl").write_text(rows)
        invoke("tokenize", f"{name}.jsonl", "-o", f"{name}.tokens.safetensors", "--id-key", "id",
               "-q", cwd=tmp_path, check=True)  # fmt: skip
    invoke("mix", "web.tokens.safetensors", "code.tokens.safetensors", "-o", "m.tokens.safetensors",
           "-q", cwd=tmp_path, check=True)  # fmt: skip
    docs = _mixed_documents(str(tmp_path / "m.tokens.safetensors"), tmp_path)
    enc = get_encoding("gpt2")
    for span, origin in docs:
        assert origin["id"] == f"{origin['source']}/{origin['document']}"
        assert origin["line"] == origin["document"] + 1
        assert span == enc.encode_ordinary(_read_back(tmp_path, origin))
    assert sorted(o["id"] for _, o in docs) == sorted(
        f"{n}/{i}" for n in ("web", "code") for i in range(6)
    )


def test_a_mix_of_a_sharded_source_traces_its_documents_to_their_text(tmp_path):
    """A source given as a ``tokenize --shard --provenance`` manifest: each mixed document is
    traced through its part's provenance to its text file and line."""
    docs = [f"sharded document {i} " * (i % 4 + 2) for i in range(30)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    for i in range(3):
        invoke("tokenize", "d.jsonl", "-o", "s.tokens.safetensors", "--shard", f"{i}/3",
               "--provenance", "-q", cwd=tmp_path, check=True)  # fmt: skip
    out = tmp_path / "m.tokens.safetensors"
    invoke("mix", "s.tokens.manifest.json", "-o", str(out), "--seed", "2", "-q", cwd=tmp_path,
           check=True)  # fmt: skip
    enc = get_encoding("gpt2")
    mixed = _mixed_documents(str(out), tmp_path)
    assert len(mixed) == 30
    for span, origin in mixed:
        assert "file" in origin, origin
        assert span == enc.encode_ordinary(_read_back(tmp_path, origin))
