"""gigatoken as the engine for other models' tokenizers: used only where it passes the
self-check against the file's own library, its ids then equal to that library's for any text
and every ``--special`` policy; where it cannot load a file (an NFKC normalizer, a panic on
Llama 3's rank file) the reference library runs, with one note and no backtrace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedcli.bpe.engines import SMALL_INPUT_BYTES, Choice, choose_backend, engine_for
from embedcli.bpe.foreign import resolve_spec
from embedcli.bpe.tokenizer import encode
from embedcli.errors import UsageError

from conftest import ROOT, SAMPLE, invoke

tokenizers = pytest.importorskip("tokenizers")
sentencepiece = pytest.importorskip("sentencepiece")
pytest.importorskip("gigatoken")
MODELS = Path(os.environ.get("EMBEDCLI_MODELS", ROOT / ".cache" / "models"))
TEXTS = [json.loads(line)["text"] for line in (SAMPLE / "articles.jsonl").open()] + [
    (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
]
POLICIES = ("special", "text", "error")


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    """Tokenizers gigatoken can take: a byte-level BPE ``tokenizer.json`` with special tokens
    (no normalizer) and a SentencePiece BPE model with byte fallback, trained here."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tmp = tmp_path_factory.mktemp("fast")
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|begin|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS, trainer)
    tok.save(str(tmp / "tokenizer.json"))
    (tmp / "corpus.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(tmp / "corpus.txt"), model_prefix=str(tmp / "bpe"), vocab_size=400,
        model_type="bpe", byte_fallback=True, character_coverage=0.995, minloglevel=2,
    )  # fmt: skip
    return {"hf": tmp / "tokenizer.json", "sp": tmp / "bpe.model"}


def _library(kind, path, special):
    if kind == "hf":
        tok = tokenizers.Tokenizer.from_file(str(path))
        tok.encode_special_tokens = special != "special"
        return lambda text: tok.encode(text, add_special_tokens=False).ids
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    return lambda text: sp.encode(text)


@pytest.fixture(scope="module")
def passing(fast):
    """The tokenizers auto runs on gigatoken here: (kind, path)."""
    mistral = MODELS / "mistral-v3" / "tokenizer.model"
    found = [("hf", fast["hf"]), ("sp", fast["sp"])] + [("sp", mistral)] * mistral.is_file()
    return [(k, p) for k, p in found if choose_backend("auto", resolve_spec(str(p)), "text").name == "gigatoken"]  # fmt: skip


@pytest.mark.parametrize("special", POLICIES)
def test_auto_takes_gigatoken_only_where_it_passes_and_says_which_and_why(fast, special):
    """The byte-level BPE passes. The trained SentencePiece BPE does not with gigatoken 0.10
    (it drops a byte-fallback tab that sentencepiece keeps as <0x09>): the self-check catches
    it and sentencepiece runs."""
    chosen = choose_backend("auto", resolve_spec(str(fast["hf"])), special)
    assert chosen == Choice("gigatoken", "it passed its self-check against tokenizers")
    chosen = choose_backend("auto", resolve_spec(str(fast["sp"])), special)
    if chosen.name == "gigatoken":
        assert chosen.note == "it passed its self-check against sentencepiece"
    else:
        assert chosen.note.startswith("gigatoken not used: its ids differ from sentencepiece's")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=st.lists(
        st.lists(
            st.sampled_from(
                list("ab Z9 c\n\t\r\u00a0\u3000\ufb01\u00e9e\u0301\u4e2d😀\x00<|>\ue000")
                + ["<|endoftext|>", "<|begin|>", "<s>", "</s>", "  ", "'s"]
            ),
            max_size=30,
        ).map("".join),
        min_size=1,
        max_size=4,
    ),
    special=st.sampled_from(["special", "text"]),
)
def test_gigatoken_equals_the_library_for_any_text(passing, docs, special):
    """Whitespace classes, digits, CJK, emoji, NUL, combining marks, byte fallback and the
    literal special tokens, under both policies that encode them: where gigatoken passed its
    self-check, it agrees with the library on any text."""
    for kind, path in passing:
        spec = resolve_spec(str(path))
        one = _library(kind, path, special)
        got = encode(docs, encoding=spec, special=special, eot="none", backend="gigatoken")
        assert got.tolist() == [i for doc in docs for i in one(doc)]


@pytest.mark.parametrize("placement", ["between", "before", "after"])
def test_a_corpus_through_the_pool_equals_the_library(passing, placement):
    assert passing
    for _, path in passing:
        spec = resolve_spec(str(path))
        args = {"encoding": spec, "special": "text", "eot": placement, "workers": 2}
        fast_ids = encode(TEXTS, backend="gigatoken", **args)
        assert np.array_equal(fast_ids, encode(TEXTS, backend="tiktoken", **args))


def test_an_nfkc_tokenizer_json_runs_on_tokenizers_with_a_note(fast, tmp_path):
    """gigatoken 0.10 refuses an NFKC normalizer: auto runs tokenizers and says why; an
    explicit --backend gigatoken is one line."""
    doc = json.loads(fast["hf"].read_text(encoding="utf-8"))
    doc["normalizer"] = {"type": "NFKC"}
    nfkc = tmp_path / "tokenizer.json"
    nfkc.write_text(json.dumps(doc), encoding="utf-8")
    spec = resolve_spec(str(nfkc))
    chosen = choose_backend("auto", spec, "text")
    if chosen.name == "gigatoken":  # a gigatoken that learned NFKC passed the self-check
        return
    assert chosen.note.startswith("gigatoken not used: ")
    with pytest.raises(UsageError, match="--backend gigatoken: "):
        choose_backend("gigatoken", spec, "text")
    tok = tokenizers.Tokenizer.from_file(str(nfkc))
    text = "\ufb01ne \uff21\uff22 \u2460"
    assert encode(text, encoding=spec, special="text").tolist() == tok.encode(text).ids


def test_a_gigatoken_panic_is_a_note_not_a_backtrace(tmp_path):
    """Llama 3's rank file makes gigatoken 0.10 panic (a BaseException): the run goes on with
    tiktoken, the summary says why in one line, and no Rust backtrace reaches stderr."""
    path = MODELS / "llama3" / "tokenizer.model"
    if not path.is_file():
        pytest.skip(f"{path} is not there: `python benchmarks/models.py` fetches it (registry)")
    out, text = tmp_path / "t.tokens.safetensors", tmp_path / "big.txt"
    story = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
    text.write_text(story * (SMALL_INPUT_BYTES // len(story) + 1), encoding="utf-8")
    proc = invoke("tokenize", str(text), "--tokenizer", str(path), "-o", str(out))  # auto tries it
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert "stack backtrace" not in err and "panicked at" not in err
    chosen = choose_backend("auto", resolve_spec(str(path)), "text")
    if chosen.name == "tiktoken":
        assert chosen.note.startswith("gigatoken not used: ")
        assert "tiktoken (gigatoken not used" in " ".join(err.split())
    else:  # a later gigatoken loads it: then it passed the self-check against tiktoken
        assert chosen.note == "it passed its self-check against tiktoken"


def test_mistral_v3_on_gigatoken_equals_sentencepiece():
    path = MODELS / "mistral-v3" / "tokenizer.model"
    if not path.is_file():
        pytest.skip(f"{path} is not there: `python benchmarks/models.py` fetches it (registry)")
    spec = resolve_spec(str(path))
    assert choose_backend("auto", spec, "special").name == "gigatoken"
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    got = encode(TEXTS, encoding=spec, eot="before", workers=2, backend="gigatoken").tolist()
    assert got == [i for t in TEXTS for i in [sp.bos_id(), *sp.encode(t)]]
    assert engine_for("gigatoken", spec, "special") is engine_for("gigatoken", spec, "special")


def test_a_sentencepiece_conversion_is_kept_and_reused(fast, tmp_path, monkeypatch):
    """gigatoken's tokenizer.json of a SentencePiece model is built once per model and
    gigatoken version, in $EMBEDCLI_CACHE_DIR, and the cached copy gives the same engine."""
    from embedcli.bpe import fast_files
    from embedcli.bpe.encodings import get_encoding

    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path / "cache"))
    enc = get_encoding(resolve_spec(str(fast["sp"])))
    first = fast_files.load(enc, "text")
    (kept,) = (tmp_path / "cache").iterdir()
    assert kept.name.startswith(f"sp-{enc.sha256[:32]}-gigatoken-") and kept.suffix == ".json"
    calls = []
    monkeypatch.setattr(
        "gigatoken._load.sentencepiece.sentencepiece_to_tokenizer_json",
        lambda data: calls.append(data),
    )
    again = fast_files.load(enc, "text")
    assert calls == [] and list(again.encode("a lamp")) == list(first.encode("a lamp"))
    monkeypatch.undo()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(blocked / "cache"))  # cannot be made
    fresh = fast_files.load(enc, "text")  # converted again, nothing kept, no error
    assert list(fresh.encode("a lamp")) == list(first.encode("a lamp"))


def test_a_passed_self_check_is_kept_so_later_runs_never_load_the_library(fast, tmp_path, monkeypatch):  # fmt: skip
    """The first run on gigatoken loads tokenizers (the self-check's reference, the file's
    size and special tokens) and keeps what it learned in the cache directory; a later run
    gives the same ids without importing tokenizers; a damaged kept file is asked again."""
    from safetensors.numpy import load_file

    from conftest import imported_modules

    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path / "cache"))
    text = tmp_path / "in.txt"
    text.write_text("\n".join(TEXTS) + " <|begin|> é 😀", encoding="utf-8")

    def run(name):
        out = tmp_path / f"{name}.tokens.safetensors"
        args = ["tokenize", str(text), "--tokenizer", str(fast["hf"]), "--backend", "gigatoken"]
        modules = imported_modules(*args, "-o", str(out), "-q")
        return modules, load_file(str(out))["ids"].tolist()

    first_modules, first = run("first")
    assert "tokenizers" in first_modules
    assert first == _library("hf", fast["hf"], "special")(text.read_text(encoding="utf-8"))
    again_modules, again = run("again")
    assert "tokenizers" not in again_modules and again == first
    (facts,) = (tmp_path / "cache").glob("hf-*-facts.json")
    facts.write_text('{"sha256": ', encoding="utf-8")
    damaged_modules, damaged = run("damaged")
    assert "tokenizers" in damaged_modules and damaged == first
    size = tokenizers.Tokenizer.from_file(str(fast["hf"])).get_vocab_size(with_added_tokens=True)
    assert json.loads(facts.read_text(encoding="utf-8"))["vocab_size"] == size
