"""Other models' tokenizers, exact against their own libraries: a byte-level BPE
``tokenizer.json`` with an NFKC normalizer and a SentencePiece model (trained here, offline),
and the real Llama 3 rank file and Mistral v3 model (``make`` fetches them from the registry)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from embedcli import TokenizeOptions, run_tokenize
from embedcli.bpe.foreign import resolve_spec
from embedcli.bpe.tokenizer import encode
from embedcli.errors import EncodingLoadError, UsageError

from conftest import ROOT, SAMPLE, invoke

tokenizers = pytest.importorskip("tokenizers")
sentencepiece = pytest.importorskip("sentencepiece")
MODELS = Path(os.environ.get("EMBEDCLI_MODELS", ROOT / ".cache" / "models"))
TEXTS = [json.loads(line)["text"] for line in (SAMPLE / "articles.jsonl").open()] + [
    (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(tokenizer.json, sp.model) trained on the sample texts."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tmp = tmp_path_factory.mktemp("tokenizers")
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS, trainer)
    tok.save(str(tmp / "tokenizer.json"))
    (tmp / "corpus.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(tmp / "corpus.txt"), model_prefix=str(tmp / "sp"), vocab_size=400,
        model_type="unigram", byte_fallback=True, character_coverage=0.995, minloglevel=2,
    )  # fmt: skip
    return tmp / "tokenizer.json", tmp / "sp.model"


def _reference(kind, path):
    """The library's own encode of one document."""
    if kind == "hf":
        tok = tokenizers.Tokenizer.from_file(str(path))
        return lambda text: tok.encode(text, add_special_tokens=False).ids
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    return lambda text: sp.encode(text)


def _expected(docs, encode_one, mark, placement):
    out = []
    for k, doc in enumerate(docs):
        if placement == "before" or (placement == "between" and k):
            out.append(mark)
        out += encode_one(doc)
        if placement == "after":
            out.append(mark)
    return out


@pytest.mark.parametrize("kind", ["hf", "sp"])
@pytest.mark.parametrize("placement", ["between", "after", "before", "none"])
def test_a_corpus_equals_the_library_document_by_document(trained, tmp_path, kind, placement):
    path = trained[0] if kind == "hf" else trained[1]
    corpus = tmp_path / "d.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "t.tokens.safetensors"
    spec = resolve_spec(str(path))
    opts = TokenizeOptions(encoding=spec, eot=placement, workers=2, special="text")
    result = run_tokenize([str(corpus)], str(out), opts)
    stats = result.stats
    mark = stats.eot_id
    if kind == "sp":  # SentencePiece: <s> before, </s> after and between
        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        assert mark == (sp.bos_id() if placement == "before" else sp.eos_id())
    want = _expected(TEXTS, _reference(kind, path), mark, placement)
    assert load_file(str(out))["ids"].tolist() == want
    meta = result.header.metadata
    assert meta["tokenizer"] == ("tokenizer.json" if kind == "hf" else "sentencepiece")
    assert meta["tokenizer_file"] == str(path) and len(meta["tokenizer_sha256"]) == 64
    assert meta["tokenizer_backend"] == ("tokenizers" if kind == "hf" else "sentencepiece")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=st.lists(
        st.text(
            alphabet=st.sampled_from(list("ab c\n\t\u00a0\ufb01\u00e9e\u0301\u4e2d😀\x00<|>")),
            max_size=40,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_properties_hold_for_any_text(trained, docs):
    """NFKC cases (the fi ligature, a non-breaking space, a combining accent), CJK, emoji, NUL
    and byte fallback: our ids are the library's, document by document."""
    for kind, path in (("hf", trained[0]), ("sp", trained[1])):
        spec = resolve_spec(str(path))
        got = encode(docs, encoding=spec, special="text", eot="after").tolist()
        mark = encode([""], encoding=spec, eot="after").tolist()[-1]
        assert got == _expected(docs, _reference(kind, path), mark, "after")


def test_the_literal_special_token_follows_the_policy(trained):
    spec = resolve_spec(str(trained[0]))
    text = "one<|endoftext|>two"
    tok = tokenizers.Tokenizer.from_file(str(trained[0]))
    assert encode(text, encoding=spec, special="special").tolist() == tok.encode(text).ids
    as_text = encode(text, encoding=spec, special="text").tolist()
    assert tok.token_to_id("<|endoftext|>") not in as_text
    with pytest.raises(Exception, match="refused by --special error"):
        encode(text, encoding=spec, special="error")


def test_inspect_and_batch_decode_with_the_recorded_tokenizer(trained, tmp_path):
    out = tmp_path / "t.tokens.safetensors"
    proc = invoke("tokenize", str(SAMPLE), "--tokenizer", str(trained[1]), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    shown = invoke("inspect", str(out), "--preview", "1", "--json")
    decoded = json.loads(shown.stdout)["files"][0]["decoded"]
    assert decoded and "tokenizer" in decoded[0]["text"].lower()


def test_tokenizer_mistakes_are_one_line(tmp_path, trained):
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(EncodingLoadError, match="not a readable tokenizer.json"):
        encode("x", encoding=resolve_spec(str(broken)))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(EncodingLoadError, match="not a SentencePiece model"):
        encode("x", encoding=resolve_spec(str(junk)))
    ranks = tmp_path / "ranks.model"
    ranks.write_text("IQ== 0\nIg== 1\n", encoding="utf-8")
    with pytest.raises(EncodingLoadError, match="a rank file embedcli does not know"):
        encode("x", encoding=resolve_spec(str(ranks)))
    with pytest.raises(UsageError, match="not in the Hugging Face cache"):
        resolve_spec("nobody/nothing")
    both = invoke(
        "tokenize", str(SAMPLE), "--tokenizer", str(trained[0]), "--encoding", "r50k_base"
    )
    assert both.returncode == 2 and b"not both" in both.stderr


def test_a_model_directory_and_the_hub_cache(trained, tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer.json").write_bytes(trained[0].read_bytes())
    (snapshot / "tokenizer_config.json").write_text('{"eos_token": "<|endoftext|>"}')
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = resolve_spec("org/tiny")
    assert spec == "file:" + str(snapshot / "tokenizer.json")
    assert resolve_spec(str(snapshot)) == spec
    assert (
        encode("hello", encoding=spec).tolist()
        == encode("hello", encoding=resolve_spec(str(trained[0]))).tolist()
    )


def _real(name):
    path = MODELS / name / "tokenizer.model"
    if not path.is_file():
        pytest.skip(f"{path} is not there: `python benchmarks/models.py` fetches it (registry)")
    return path


def test_llama3_rank_file_equals_meta_reference(tmp_path):
    path = _real("llama3")
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from embedcli.bpe.rank_files import LLAMA3_PATTERN, LLAMA3_SPECIALS

    ranks = load_tiktoken_bpe(str(path))
    specials = {t: len(ranks) + i for i, t in enumerate(LLAMA3_SPECIALS)}
    ref = tiktoken.Encoding(
        "llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )
    spec = resolve_spec(str(path))
    got = encode(TEXTS, encoding=spec, special="text", eot="before", workers=2).tolist()
    bos = specials["<|begin_of_text|>"]
    assert got == [i for t in TEXTS for i in [bos, *ref.encode_ordinary(t)]]
    assert ref.n_vocab == 128256
    out = tmp_path / "train.bin"
    proc = invoke(
        "tokenize", str(SAMPLE), "--tokenizer", str(path), "--to", "nanogpt", "-o", str(out)
    )
    assert proc.returncode == 2 and b"uint16" in proc.stderr  # 128,256 ids do not fit
    llmc = invoke(
        "tokenize",
        str(SAMPLE),
        "--tokenizer",
        str(path),
        "--to",
        "llmc",
        "-o",
        str(tmp_path / "c.bin"),
        "-q",
    )
    assert llmc.returncode == 0
    header = np.fromfile(tmp_path / "c_000000.bin", dtype="<i4", count=3)
    assert header[0] == 20240801  # llm.c's llama-3 header, uint32 ids


def test_mistral_v3_sentencepiece_equals_the_library(tmp_path):
    path = _real("mistral-v3")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    got = encode(TEXTS, encoding=resolve_spec(str(path)), eot="before", workers=2).tolist()
    assert got == [i for t in TEXTS for i in [sp.bos_id(), *sp.encode(t)]]


def test_deepseek_v3_tokenizer_json_equals_the_library(tmp_path, monkeypatch):
    """A current model's 128k-token tokenizer.json (three Split pre-tokenizers in sequence),
    on the fast engine from an empty cache: its first use measures a sample, the characters
    the text brings are measured as they arrive (CJK Extension J among them, which the engines
    class differently: routed to the reference), and every id is the library's."""
    path = MODELS / "deepseek-v3" / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"{path} is not there: `python benchmarks/models.py` fetches it (registry)")
    from embedcli.bpe import engines

    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path / "cache"))
    for cached in (engines.engine_for, engines._built):
        cached.cache_clear()
    docs = [*TEXTS, "日本語のテキスト 中文 한국어 Ελληνικά \U000323b0's 1\U000323b12 😀 e\u0301"]
    files = [tmp_path / f"d{k}.txt" for k in range(len(docs))]  # a document each
    for f, doc in zip(files, docs, strict=True):
        f.write_text(doc, encoding="utf-8")
    out = tmp_path / "d.tokens.safetensors"
    opts = TokenizeOptions(encoding=resolve_spec(str(path)), backend="gigatoken")
    try:
        run_tokenize([str(f) for f in files], str(out), opts)
    finally:
        for cached in (engines.engine_for, engines._built):
            cached.cache_clear()
    tok = tokenizers.Tokenizer.from_file(str(path))
    eos = tok.token_to_id("<｜end▁of▁sentence｜>")
    assert eos == 1  # named by the tokenizer_config.json beside the file
    want = _expected(docs, lambda t: tok.encode(t, add_special_tokens=False).ids, eos, "between")
    tokens = load_file(str(out))
    assert tokens["ids"].tolist() == want
    from embedcli.storage.store import read_header

    assert read_header(str(out)).metadata["tokenizer_backend"] == "gigatoken"
    (kept,) = (tmp_path / "cache").glob("unicode-verdicts-*.json")
    gaps = json.loads(kept.read_text())["gaps"]
    assert any(a <= 0x323B0 <= b for a, b in gaps)  # measured when the text brought it


def test_every_special_token_in_the_text_is_counted_by_name(tmp_path):
    """issue 32: the summary counted only the document marker among a tokenizer's special
    tokens. Every one found literally is counted by name: in one process, in the workers that
    read ranges of a jsonl file (their counts added up), in the metadata and the summary."""
    from tokenizers import models, pre_tokenizers, trainers

    from embedcli.bpe.pieces import MemorySink
    from embedcli.bpe.tokenizer import tokenize
    from embedcli.bpe.value import Tokenizer
    from embedcli.documents import resolve_sources
    from embedcli.storage.store import read_header

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|endoftext|>", "<|a|>", "<|b|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(TEXTS, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    spec = resolve_spec(str(tmp_path / "tokenizer.json"))
    docs = ["x <|a|> y <|a|>", "<|b|> and <|endoftext|>", "none here", "<|a|><|b|>"] * 40
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    want = {"<|a|>": 120, "<|b|>": 80, "<|endoftext|>": 40}
    for workers, chunk in ((1, 1 << 22), (2, 600)):  # 600 bytes: ranges read by the workers
        stats = tokenize(
            resolve_sources([str(corpus)]), MemorySink(), Tokenizer.of(spec, "text", "auto"),
            workers=workers, chunk_bytes=chunk,
        )  # fmt: skip
        assert stats.specials_found == want and stats.special_found == 240
    out = tmp_path / "t.tokens.safetensors"
    proc = invoke("tokenize", str(corpus), "--tokenizer", str(tmp_path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "240 (special): <|a|> 120, <|b|> 80," in proc.stderr.decode()  # most frequent first
    meta = read_header(str(out)).metadata
    assert json.loads(meta["specials_found"]) == want and meta["special_found"] == "240"


def test_an_unknown_rank_file_takes_its_pattern_and_special_tokens(tmp_path):
    """GPT-2's own ranks as a file embedcli does not recognise: with r50k's pattern and its one
    special token given, the ids are GPT-2's."""
    from tiktoken_ext.openai_public import r50k_pat_str

    from embedcli.bpe.encodings import bundled_bytes

    ranks = tmp_path / "ranks.tiktoken"
    ranks.write_bytes(bundled_bytes())
    specials = tmp_path / "specials.json"
    specials.write_text('{"<|endoftext|>": 50256}', encoding="utf-8")
    with pytest.raises(
        EncodingLoadError,
        match="--tokenizer-option pattern=REGEX and --tokenizer-option special_tokens=FILE",
    ):
        encode("x", encoding=resolve_spec(str(ranks)))
    spec = resolve_spec(str(ranks), pattern=r50k_pat_str, special_tokens=str(specials))
    assert encode(TEXTS, encoding=spec).tolist() == encode(TEXTS, encoding="gpt2").tolist()
    out = tmp_path / "t.tokens.safetensors"
    args = ["tokenize", str(SAMPLE), "--tokenizer", str(ranks), "-o", str(out), "-q",
            "--tokenizer-option", f"pattern={r50k_pat_str}",
            "--tokenizer-option", f"special_tokens={specials}"]  # fmt: skip
    assert invoke(*args).returncode == 0
    gpt2 = tmp_path / "g.tokens.safetensors"
    assert invoke("tokenize", str(SAMPLE), "-o", str(gpt2), "-q").returncode == 0
    assert np.array_equal(load_file(str(out))["ids"], load_file(str(gpt2))["ids"])


def test_document_markers_can_be_named(trained, tmp_path):
    spec = resolve_spec(str(trained[1]), eos="<s>")  # any special token, by its text
    sp = sentencepiece.SentencePieceProcessor(model_file=str(trained[1]))
    assert encode(["a", "b"], encoding=spec, eot="after").tolist() == [
        *sp.encode("a"),
        sp.bos_id(),
        *sp.encode("b"),
        sp.bos_id(),
    ]
    with pytest.raises(UsageError, match="not a special token"):
        encode("a", encoding=resolve_spec(str(trained[1]), eos="nope"))
    bad = invoke("tokenize", str(SAMPLE), "--tokenizer", str(trained[1]), "--tokenizer-option",
                 "colour=red", "-o", str(tmp_path / "x"))  # fmt: skip
    assert bad.returncode == 2 and b"KEY one of bos, eos" in bad.stderr


def test_inspect_decodes_with_tokenizer_or_says_why_it_cannot(trained, tmp_path):
    """The recorded tokenizer while it is unchanged; one note when it changed or is gone;
    ``inspect --tokenizer`` decodes regardless."""
    model = tmp_path / "tokenizer.json"
    model.write_bytes(trained[0].read_bytes())
    out = tmp_path / "t.tokens.safetensors"
    assert invoke("tokenize", str(SAMPLE), "--tokenizer", str(model), "-o", str(out), "-q").returncode == 0  # fmt: skip

    def shown(*extra):
        proc = invoke("inspect", str(out), "--preview", "1", "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["files"][0]

    first = shown()
    assert first["decoded"] and first["decode_note"] is None
    assert first["corpus"]["top_tokens"][0]["text"] is not None
    doc = json.loads(model.read_text(encoding="utf-8"))
    doc["normalizer"] = {"type": "Lowercase"}  # another tokenizer under the recorded name
    model.write_text(json.dumps(doc), encoding="utf-8")
    changed = shown()
    assert (
        changed["decoded"] == []
        and "has changed since the ids were written" in changed["decode_note"]
    )
    assert changed["corpus"]["top_tokens"][0]["text"] is None
    model.unlink()
    gone = shown()
    assert (
        "no such tokenizer file" in gone["decode_note"]
        and "give --tokenizer" in gone["decode_note"]
    )
    again = shown("--tokenizer", str(trained[0]))
    assert again["decoded"] == first["decoded"] and again["decode_note"] is None
    text = invoke("inspect", str(out), "--preview", "1")
    assert b"note: ids shown without text" in text.stdout
    wrong = invoke("inspect", str(out), "--tokenizer", str(tmp_path / "nope.json"))
    assert wrong.returncode != 0 and len(wrong.stderr.strip().splitlines()) == 1


def test_special_error_and_split_on_eot_use_the_tokenizers_own_tokens(trained, tmp_path):
    """``--special error`` refuses any of the tokenizer's special tokens, not only GPT-2's;
    ``--split-on-eot`` cuts documents at the tokenizer's own marker (SentencePiece's </s>)."""
    spec = resolve_spec(str(trained[1]))
    with pytest.raises(Exception, match=r"text contains <s> \(refused by --special error"):
        encode("a <s> b", encoding=spec, special="error")
    with pytest.raises(Exception, match="refused by --special error"):
        encode(["fine", "x </s>"], encoding=spec, special="error")
    assert encode("<|endoftext|> is text here", encoding=spec, special="error").size
    sp = sentencepiece.SentencePieceProcessor(model_file=str(trained[1]))
    corpus = tmp_path / "c.txt"
    corpus.write_text("one lamp</s>two lamps</s>three", encoding="utf-8")
    out = tmp_path / "t.tokens.safetensors"
    opts = TokenizeOptions(encoding=spec, split_on_eot=True, special="special")
    result = run_tokenize([str(corpus)], str(out), opts)
    eos = sp.eos_id()
    want = [*sp.encode("one lamp"), eos, *sp.encode("two lamps"), eos, *sp.encode("three")]
    assert result.stats.documents == 3
    assert load_file(str(out))["ids"].tolist() == want


@pytest.mark.parametrize(
    ("pattern", "specials", "message"),
    [
        ("(?P<x", {"<|endoftext|>": 50256}, "not a valid pattern"),
        ("@pat.txt", {"<|endoftext|>": 50256}, "does not give text back"),
        (r"\w+", {"<|endoftext|>": 50256}, "does not give text back"),  # drops spaces
        (None, {"<|endoftext|>": 5}, "which is the rank of b'&'"),
        (None, {"<|endoftext|>": 248_076}, "outside the vocabulary"),
        (None, {"<|endoftext|>": 50256, "<|pad|>": 50256}, "have the same id 50256"),
    ],
)
def test_a_rank_file_that_would_give_wrong_ids_is_refused(tmp_path, pattern, specials, message):
    """issue 32: a wrong pattern= dropped text and exited 0; an invalid one was an internal
    error; a special token's id could be a rank's or far past the table. Each is one line,
    exit 2, nothing written."""
    from tiktoken_ext.openai_public import r50k_pat_str

    from embedcli.bpe.encodings import bundled_bytes

    ranks = tmp_path / "ranks.tiktoken"
    ranks.write_bytes(bundled_bytes())
    table = tmp_path / "specials.json"
    table.write_text(json.dumps(specials), encoding="utf-8")
    out = tmp_path / "t.tokens.safetensors"
    proc = invoke(
        "tokenize", str(SAMPLE), "--tokenizer", str(ranks), "-o", str(out),
        "--tokenizer-option", f"pattern={pattern or r50k_pat_str}",
        "--tokenizer-option", f"special_tokens={table}",
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.startswith("Error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("stage", ["tokenize", "batch", "embed"])
def test_encoding_and_tokenizer_together_are_a_usage_error(trained, tmp_path, stage):
    """issue 32: --encoding gpt2 (the default, spelled out) with --tokenizer X said nothing
    of which one was used; naming both is refused, whichever encoding is named."""
    out = str(tmp_path / "o.safetensors")
    for encoding in ("gpt2", "r50k_base"):
        proc = invoke(stage, str(SAMPLE), "--encoding", encoding, "--tokenizer", str(trained[0]),
                      "-o", out, "-q")  # fmt: skip
        assert proc.returncode == 2
        assert b"give --tokenizer or --encoding, not both" in proc.stderr
    assert (
        invoke(stage, str(SAMPLE), "--tokenizer", str(trained[0]), "-o", out, "-q").returncode == 0
    )


# ------------------------------------------------------------ rank files that normalize text

# Text that normalization changes: combining sequences (and their order), compatibility
# characters, Hangul jamo, ligatures, full-width forms, the Angstrom sign.
NORMALIZED = (
    "cafe\u0301 nai\u0308ve A\u030a \u212b \u1100\u1161\u11a8 \ufb01ne \uff21\uff22 x\u0323\u0307 "
    "\u2460 \u00bd \u1e9b\u0323 \u0958 \u30ac \u304b\u3099 "
)
ALL_FORMS = ("NFC", "NFKC", "NFD", "NFKD")


@pytest.fixture(scope="module")
def gpt2_ranks(tmp_path_factory):
    """GPT-2's ranks as a rank file: not a family embedcli knows by its sha256."""
    from embedcli.bpe.encodings import bundled_bytes

    path = tmp_path_factory.mktemp("ranks") / "ranks.tiktoken"
    path.write_bytes(bundled_bytes())
    return path


def gpt2():
    from embedcli.bpe.encodings import get_encoding

    return get_encoding("gpt2")  # the bundled ranks: nothing downloaded


def _gpt2_pattern():
    return gpt2()._pat_str


@pytest.mark.parametrize("form", ALL_FORMS)
def test_a_rank_file_normalizes_as_its_option_says_across_piece_cuts(tmp_path, gpt2_ranks, form):
    """--tokenizer-option normalizer=FORM: every piece normalized as the whole text would be,
    with documents cut into pieces of 300 characters (cuts fall before spaces and newlines,
    which no form composes with), through two workers."""
    import unicodedata

    spec = resolve_spec(str(gpt2_ranks), pattern=_gpt2_pattern(), normalizer=form)
    text = (NORMALIZED * 40 + "\n") * 3
    path = tmp_path / "doc.txt"
    path.write_text(text, encoding="utf-8")
    from embedcli.bpe.pieces import MemorySink
    from embedcli.bpe.tokenizer import tokenize
    from embedcli.documents import resolve_sources

    sink = MemorySink()
    sources = resolve_sources([str(path)])
    tokenize(sources, sink, spec, workers=2, piece_chars=300, eot="none")
    expected = gpt2().encode_ordinary(unicodedata.normalize(form, text))
    assert sink.array().tolist() == expected
    assert expected != gpt2().encode_ordinary(text)  # it did change


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(
        alphabet=st.sampled_from(list(NORMALIZED) + list("ab \n\u0300\u0301\u0327\u3099\u1161")),
        max_size=80,
    ),
    st.sampled_from(ALL_FORMS),
)
def test_every_normalizer_is_unicodedata_s(gpt2_ranks, text, form):
    import unicodedata

    spec = resolve_spec(str(gpt2_ranks), pattern=_gpt2_pattern(), normalizer=form)
    expected = gpt2().encode_ordinary(unicodedata.normalize(form, text))
    assert encode(text, encoding=spec, eot="none").tolist() == expected


def test_a_normalizer_is_refused_where_the_file_has_its_own(tmp_path, trained, gpt2_ranks):
    with pytest.raises(UsageError, match="normalizes text as its own normalizer says"):
        encode("x", encoding=resolve_spec(str(trained[0]), normalizer="NFC"))
    with pytest.raises(UsageError, match="normalizer=NFX: use one of NFC, NFKC, NFD, NFKD, none"):
        encode("x", encoding=resolve_spec(str(gpt2_ranks), pattern=".+", normalizer="NFX"))
    proc = invoke(
        "tokenize", str(SAMPLE), "--tokenizer", str(gpt2_ranks), "--tokenizer-option",
        f"pattern={_gpt2_pattern()}", "--tokenizer-option", "normalizer=NFKC", "--eot", "none",
        "-o", str(tmp_path / "t.tokens.safetensors"),
    )  # fmt: skip
    assert proc.returncode == 0  # the option is accepted on the command line


def test_qwen_rank_file_equals_its_reference_code_with_nfc(tmp_path):
    """Qwen's qwen.tiktoken, known by its sha256: the pattern, the fixed special ids and the
    NFC normalization of dashscope's qwen_tokenizer.py, rebuilt here on tiktoken."""
    path = _real("qwen")
    import unicodedata

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from embedcli.bpe.rank_files import QWEN_PATTERN, QWEN_SPECIALS

    ref = tiktoken.Encoding(
        "qwen",
        pat_str=QWEN_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens=QWEN_SPECIALS,
    )
    texts = [*TEXTS[:3], NORMALIZED * 3]
    got = encode(texts, encoding=resolve_spec(str(path)), special="text", workers=2).tolist()
    eos = QWEN_SPECIALS["<|endoftext|>"]  # no BOS: <|endoftext|> between documents
    want = [eos]
    for t in texts:
        want += [*ref.encode_ordinary(unicodedata.normalize("NFC", t)), eos]
    assert got == want[1:-1]
    assert ref.encode_ordinary(NORMALIZED) != ref.encode_ordinary(
        unicodedata.normalize("NFC", NORMALIZED)
    )  # without the normalizer the ids would differ
    out = tmp_path / "q.tokens.safetensors"
    assert invoke("tokenize", str(SAMPLE), "--tokenizer", str(path), "-o", str(out)).returncode == 0
    from embedcli.storage.store import read_header

    assert read_header(str(out)).metadata["tokenizer_normalizer"] == "NFC"


def test_llama4_rank_file_equals_meta_reference():
    path = _real("llama4")
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from embedcli.bpe.rank_files import LLAMA4_PATTERN, LLAMA4_SPECIALS

    ranks = load_tiktoken_bpe(str(path))
    specials = {t: len(ranks) + i for i, t in enumerate(LLAMA4_SPECIALS)}
    ref = tiktoken.Encoding(
        "llama4", pat_str=LLAMA4_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )
    got = encode(TEXTS, encoding=resolve_spec(str(path)), special="text", eot="before").tolist()
    bos = specials["<|begin_of_text|>"]
    assert bos == 200000 and specials["<|eot|>"] == 200008  # Meta's ids
    assert got == [i for t in TEXTS for i in [bos, *ref.encode_ordinary(t)]]


# ------------------------------------------------------------ no guessing without a sidecar


def test_a_token_file_without_its_sidecar_is_never_decoded_by_a_guess(tmp_path):
    """An llm.c version-7 file (uint32 ids) without its .json is not GPT-2's: inspect shows
    ids and one note, with no GPT-2 vocabulary; --tokenizer decodes it. A nanoGPT file
    without its sidecar is shown as ids too; llm.c's version-1 header names GPT-2 itself."""
    path = _real("llama3")
    out = tmp_path / "l.bin"
    args = ["tokenize", str(SAMPLE), "--tokenizer", str(path), "--to", "llmc", "-o", str(out)]
    assert invoke(*args, "-q").returncode == 0
    (tmp_path / "l.bin.json").unlink()
    shard = str(tmp_path / "l_000000.bin")
    report = json.loads(invoke("inspect", shard, "--json", "--preview", "1").stdout)
    text = json.dumps(report)
    assert "version-7 header" in text and "give --tokenizer to decode them" in text
    assert "gpt2" not in text and "50257" not in text and "invalid id" not in text
    decoded = invoke("inspect", shard, "--tokenizer", str(path), "--preview", "1")
    assert b"<|begin_of_text|>A tokenizer turns text" in decoded.stdout + decoded.stderr
    proc = invoke("embed", shard, "-d", "4", "-T", "4", "-o", str(tmp_path / "e.safetensors"))
    assert proc.returncode != 0 and b"--vocab-size" in proc.stderr  # no GPT-2 table either

    for to, name, decodes in (("nanogpt", "train.bin", False), ("llmc", "g.bin", True)):
        out = tmp_path / name
        assert invoke("tokenize", str(SAMPLE), "--to", to, "-o", str(out), "-q").returncode == 0
        (tmp_path / f"{name}.json").unlink()
        read = str(out if to == "nanogpt" else tmp_path / "g_000000.bin")
        proc = invoke("inspect", read, "--preview", "1")
        shown = (proc.stdout + proc.stderr).decode()
        assert ("A tokenizer turns text" in shown) is decodes, shown
        assert ("ids shown without text" in shown) is not decodes


def test_inspect_names_another_tokenizers_marker_by_its_role(tmp_path, trained):
    out = tmp_path / "sp.tokens.safetensors"
    args = ["tokenize", str(SAMPLE), "--tokenizer", str(trained[1]), "--eot", "before"]
    assert invoke(*args, "-o", str(out), "-q").returncode == 0
    shown = invoke("inspect", str(out)).stdout.decode()
    assert "<|endoftext|>" not in shown
    assert "marker id (BOS)" in shown and "BOS placed" in shown and "BOS (id " in shown
    gpt2 = tmp_path / "g.tokens.safetensors"
    assert invoke("tokenize", str(SAMPLE), "-o", str(gpt2), "-q").returncode == 0
    assert "<|endoftext|> id" in invoke("inspect", str(gpt2)).stdout.decode()


def test_summaries_name_a_tokenizer_file_readably(tmp_path, gpt2_ranks):
    """Not the URL-encoded name (which stays in the metadata, to decode the file later)."""
    out = tmp_path / "r.tokens.safetensors"
    options = [f"pattern={_gpt2_pattern()}", "normalizer=NFC"]
    args = ["tokenize", str(SAMPLE), "--tokenizer", str(gpt2_ranks), "--eot", "none"]
    for option in options:
        args += ["--tokenizer-option", option]
    proc = invoke(*args, "-o", str(out))
    readable = "ranks.tiktoken (pattern given, normalizer NFC)"
    assert proc.returncode == 0 and readable in proc.stderr.decode()
    assert readable in invoke("inspect", str(out)).stdout.decode()
    from embedcli.storage.store import read_header

    recorded = read_header(str(out)).metadata["encoding"]
    assert recorded.startswith("file:") and "pattern=" in recorded


def test_a_rank_file_that_drops_the_corpus_s_own_text_is_refused(tmp_path, gpt2_ranks):
    """A pattern that gives every probe back but drops math symbols (no probe holds one):
    the corpus's first text is checked too, before anything is written."""
    corpus = tmp_path / "maths.txt"
    corpus.write_text("Sums: 2 + 2 = 4, and 3 < 5.\n" * 50, encoding="utf-8")
    out = tmp_path / "m.tokens.safetensors"
    pattern = r"\p{L}+|\p{N}+|\s+|[^\s\p{L}\p{N}\p{Sm}]+"
    args = ["tokenize", str(corpus), "--tokenizer", str(gpt2_ranks), "--eot", "none"]
    proc = invoke(*args, "--tokenizer-option", f"pattern={pattern}", "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.decode().strip().splitlines()
    line = lines[-1]
    assert (
        len(lines) == 1
        and "does not give this corpus's text back" in line
        and "'Sums: 2 + 2 = 4" in line
    )
    assert not out.exists()
    fine = invoke(*args, "--tokenizer-option", f"pattern={_gpt2_pattern()}", "-o", str(out))
    assert fine.returncode == 0 and out.exists()


# ------------------------------------------------------------ the Tokenizer value (issue 45)


def test_a_tokenizer_value_encodes_each_document_as_its_library(trained, tmp_path):
    """embedcli.Tokenizer, built once: encode_batch is the library's encode document by
    document (GPT-2 by tiktoken, a tokenizer.json, a SentencePiece model), long documents
    encoded in pieces and in parallel as tokenize does; decode gives the text back."""
    import embedcli as ec
    from embedcli.bpe.encodings import get_encoding

    long = TEXTS[-1] * 40  # past a piece: cut at safe points, ids unchanged
    docs = [*TEXTS, long, "", "caf\u00e9 \U0001f600 <|endoftext|> x"]
    gpt2 = get_encoding("gpt2")
    tok = ec.Tokenizer("gpt2")
    got = tok.encode_batch(docs, workers=2)
    assert [g.tolist() for g in got] == [
        gpt2.encode(d, allowed_special={"<|endoftext|>"}) for d in docs
    ]
    assert tok.encode(docs[0]).tolist() == got[0].tolist()
    assert tok.decode(got[1]) == docs[1] and tok.eos_id == 50256 and tok.bos_id is None
    plain = ec.Tokenizer("gpt2", special="text").encode("a <|endoftext|>").tolist()
    assert 50256 not in plain and plain == gpt2.encode_ordinary("a <|endoftext|>")
    for path, kind in ((trained[0], "hf"), (trained[1], "sp")):
        ref = _reference(kind, path)
        value = ec.Tokenizer.from_file(path)  # a pathlib.Path
        assert [g.tolist() for g in value.encode_batch(docs[:-1])] == [ref(d) for d in docs[:-1]]
        assert value.spec.endswith(path.name) and value.n_vocab > 0
    with pytest.raises(TypeError, match="encode_batch takes a list"):
        tok.encode_batch("one string")
    with pytest.raises(UsageError):
        ec.Tokenizer("gpt2", special="sometimes")


def test_a_tokenizer_value_says_which_engine_encodes_a_corpus_and_why(trained):
    import importlib.util

    import embedcli as ec

    fast = importlib.util.find_spec("gigatoken") is not None
    gpt2 = ec.Tokenizer("gpt2")
    assert (gpt2.engine, gpt2.engine_note) == (
        "gigatoken" if fast else "tiktoken",
        gpt2.engine_note,
    )
    asked = ec.Tokenizer("gpt2", backend="tiktoken")
    assert (asked.engine, asked.engine_note) == ("tiktoken", None)
    nfkc = ec.Tokenizer.from_file(trained[0])  # gigatoken 0.10 refuses an NFKC normalizer
    assert nfkc.engine == "tokenizers" and nfkc.engine_note


@pytest.mark.parametrize("stage", ["tokenize", "batch", "embed"])
def test_a_command_resolves_and_loads_its_tokenizer_once(trained, tmp_path, monkeypatch, stage):
    """One tokenizer a command: --tokenizer resolved once, the file read by its library once,
    and one Tokenizer value built and handed down to the engine choice, the counts and the
    encode (a tokenizer file no earlier test loaded, so no process cache answers)."""
    import shutil

    import tokenizers as library

    from embedcli.bpe import foreign, value

    path = tmp_path / "model" / "tokenizer.json"
    path.parent.mkdir()
    shutil.copy(trained[0], path)
    calls = {"resolve": 0, "read": 0, "built": 0}

    real = library.Tokenizer

    class Counted:  # what `from tokenizers import Tokenizer` finds: embedcli uses from_file
        @staticmethod
        def from_file(p):
            calls["read"] += 1
            return real.from_file(p)

    def counting(name, original):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(library, "Tokenizer", Counted)
    monkeypatch.setattr(foreign, "resolve_spec", counting("resolve", foreign.resolve_spec))
    built = classmethod(counting("built", value.Tokenizer._of.__func__))
    monkeypatch.setattr(value.Tokenizer, "_of", built)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(TEXTS), encoding="utf-8")
    extra = {"tokenize": [], "batch": ["-T", "8"], "embed": ["-T", "8", "--dim", "4"]}[stage]
    out = tmp_path / "out.safetensors"
    invoke(stage, str(corpus), "--tokenizer", str(path), "--workers", "1", *extra, "-o", str(out),
           "-q", check=True)  # fmt: skip
    assert calls == {"resolve": 1, "read": 1, "built": 1}


def test_a_tokenizer_value_is_shared_and_a_name_is_never_a_path(tmp_path, monkeypatch):
    """Tokenizer.using gives the same loaded encoding under another policy (the stage's one
    value, with the output format's policy); a directory called gpt2 in the working directory
    does not turn the encoding's name into a tokenizer file."""
    import embedcli as ec

    (tmp_path / "gpt2").mkdir()
    monkeypatch.chdir(tmp_path)
    tok = ec.Tokenizer("gpt2")
    assert tok.encoding == "gpt2" and tok.using(special="special") is tok
    text = tok.using(special="text")
    assert text.built is tok.built and (text.special, text.backend) == ("text", "auto")
    assert 50256 not in text.encode("a <|endoftext|>").tolist()
    with pytest.raises(UsageError, match="unknown --backend"):
        tok.using(backend="fastest")
