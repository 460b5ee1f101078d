"""The encoding engines: gigatoken must give tiktoken's ids for every policy, or not be used.

Differential tests (hypothesis) compare the two engines on adversarial text and on whole
corpora cut at block and piece boundaries; the fallback tests hide gigatoken or break its ids.
"""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedcli.bpe import engines as backends
from embedcli.bpe.encodings import EOT, cached_rank_file
from embedcli.bpe.engines import (
    GIGATOKEN_ENCODINGS,
    PROBES,
    choose_backend,
    engine_for,
    self_check,
)
from embedcli.bpe.pieces import MemorySink
from embedcli.bpe.tokenizer import tokenize
from embedcli.bpe.value import Tokenizer
from embedcli.documents import resolve_sources
from embedcli.errors import UsageError

pytest.importorskip("gigatoken", reason="the differential tests need embedcli[fast]")

POLICIES = ("special", "text", "error")
WHITESPACE = [chr(c) for c in range(0x110000) if chr(c).isspace()]  # every Unicode class
ATOMS = st.sampled_from(
    [
        *WHITESPACE,
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "n't", "don't", "'", "''",
        "a", "Z", "word", "WORD", "é", "naïve", "ß", "東京", "한국어", "\u0301", "\u200d",
        "0", "7", "12", "123", "1234", "3.14", "1,000",
        "🚀", "👩‍👩‍👧", "🇫🇷", "\ufffd", "\x00", "\x01", "\x7f",
        EOT, "<|", "|>", "<|endoftext", "<|fim_prefix|>", backends.JOIN_MARKER,
        "!", "?!", "...", "--", "_", "#", "(", ")", "\\", '"',
    ]
)  # fmt: skip
RUNS = st.builds(lambda a, n: a * n, ATOMS, st.integers(1, 300))
TEXT = st.lists(st.one_of(ATOMS, RUNS, st.text(max_size=10)), max_size=40).map("".join)
RELAXED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _engines(policy: str, encoding: str = "gpt2"):
    return engine_for("gigatoken", encoding, policy), engine_for("tiktoken", encoding, policy)


@RELAXED
@given(texts=st.lists(TEXT, min_size=1, max_size=6), data=st.data())
@pytest.mark.parametrize("policy", POLICIES)
def test_gigatoken_gives_tiktoken_ids_for_every_policy(policy, texts, data):
    eots = np.array(data.draw(st.lists(st.booleans(), min_size=len(texts), max_size=len(texts))))
    fast, reference = _engines(policy)
    (ids, lengths), (want, want_lengths) = fast(texts, eots), reference(texts, eots)
    assert ids.tolist() == want.tolist() and lengths.tolist() == want_lengths.tolist()
    kwargs = {"allowed_special": {EOT} if policy == "special" else set(), "disallowed_special": ()}
    enc = backends.get_encoding("gpt2")
    assert [len(enc.encode(t, **kwargs)) for t in texts] == want_lengths.tolist()


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_other_encodings_where_available_offline(encoding):
    if cached_rank_file(GIGATOKEN_ENCODINGS[encoding][1]) is None:
        pytest.skip(f"{encoding} is not in tiktoken's cache (it needs one download)")
    for policy in POLICIES:
        fast, reference = _engines(policy, encoding)
        assert self_check(fast, reference) is None


def _corpus(tmp_path, texts: list[str]):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _tokenize(path, backend="auto", special="special", **kwargs):
    sink = MemorySink()
    tok = Tokenizer.of("gpt2", special, backend)
    stats = tokenize(resolve_sources([str(path)]), sink, tok, allow_empty=True, **kwargs)
    return sink.array(), stats


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    texts=st.lists(TEXT, min_size=1, max_size=8),
    piece=st.integers(1, 50),
    block=st.integers(1, 64),
    eot=st.sampled_from(["between", "after", "before", "none"]),
    policy=st.sampled_from(["special", "text"]),
)
def test_whole_corpora_cut_at_blocks_and_pieces(tmp_path, texts, piece, block, eot, policy):
    path = _corpus(tmp_path, texts)
    runs = [
        _tokenize(path, backend=b, piece_chars=piece, block_bytes=block, eot=eot, special=policy)
        for b in ("gigatoken", "tiktoken")
    ]
    (fast, fast_stats), (ref, ref_stats) = runs
    assert fast.tolist() == ref.tolist()
    assert fast_stats.doc_offsets.tolist() == ref_stats.doc_offsets.tolist()
    assert (fast_stats.backend, ref_stats.backend) == ("gigatoken", "tiktoken")


@pytest.mark.parametrize("backend", ["gigatoken", "tiktoken"])
@pytest.mark.parametrize("eot", ["between", "after", "before", "none"])
def test_workers_reading_ranges_of_a_jsonl_file_change_nothing(tmp_path, backend, eot):
    texts = [f"doc {i} " + "word " * (i % 7) for i in range(300)] + ["", "last"]
    path = _corpus(tmp_path, texts)
    whole = _tokenize(path, backend=backend, eot=eot, workers=1)
    ranged = _tokenize(path, backend=backend, eot=eot, workers=2, chunk_bytes=512)
    assert ranged[0].tolist() == whole[0].tolist()
    assert ranged[1].doc_offsets.tolist() == whole[1].doc_offsets.tolist()
    assert (ranged[1].documents, ranged[1].chars) == (whole[1].documents, whole[1].chars)
    val = _tokenize(path, workers=2, chunk_bytes=512, val=(MemorySink(), 0.3, 5))[1]
    val_whole = _tokenize(path, workers=1, val=(MemorySink(), 0.3, 5))[1]
    assert val.val.documents == val_whole.val.documents > 0


def test_ranges_keep_line_numbers_in_messages(tmp_path):
    lines = [json.dumps({"text": "fine " * 20}) for _ in range(200)] + ["{broken"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"bad\.jsonl:201: not valid JSON"):
        _tokenize(path, workers=2, chunk_bytes=256)


@pytest.mark.parametrize("backend", ["gigatoken", "tiktoken"])
def test_lone_surrogates_encode_as_tiktoken_does(tmp_path, enc, backend):
    path = tmp_path / "web.jsonl"
    path.write_text('{"text": "a\\ud83db"}\n{"text": "ok \\ud83d\\ude00 \\udc00"}\n')
    ids, stats = _tokenize(path, backend=backend)
    want = enc.encode("a\ud83db") + [50256] + enc.encode("ok \U0001f600 \udc00")
    assert enc.encode("a\ud83db") == [64, 4210, 65]
    assert ids.tolist() == want
    assert stats.replaced == 2


def test_auto_falls_back_when_gigatoken_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "gigatoken", None)  # import gigatoken raises ImportError
    chosen = choose_backend("auto", "gpt2", "special")
    assert chosen.name == "tiktoken" and "not installed" in chosen.note
    with pytest.raises(UsageError, match=r"embedcli\[fast\]"):
        choose_backend("gigatoken", "gpt2", "special")


def test_auto_falls_back_when_the_self_check_fails(monkeypatch):
    built = backends._built
    real = built("gigatoken", "gpt2", "special", "between")

    def wrong(texts, eots):
        ids, lengths = real(texts, eots)
        return np.where(ids == 50256, ids, ids + 1).astype(np.int32), lengths  # one id off

    monkeypatch.setattr(
        backends, "_built", lambda b, *a: wrong if b == "gigatoken" else built(b, *a)
    )
    chosen = choose_backend("auto", "gpt2", "special")
    assert chosen.name == "tiktoken" and "self-check probe 0" in chosen.note
    with pytest.raises(UsageError, match="differ from tiktoken"):
        choose_backend("gigatoken", "gpt2", "special")


def test_unknown_encodings_and_backends():
    assert choose_backend("auto", "p50k_base", "special").note.endswith("'p50k_base'")
    assert choose_backend("tiktoken", "gpt2", "text").note is None
    with pytest.raises(UsageError, match="unknown --backend"):
        choose_backend("rust", "gpt2", "special")


def test_the_self_check_covers_the_policies():
    # its cost (about 5 ms) is measured in make bench, not raced here
    for policy in POLICIES:
        fast, reference = _engines(policy)
        assert self_check(fast, reference) is None
    assert any(EOT in p for p in PROBES) and any("\x00" in p for p in PROBES)


def test_text_holding_the_join_marker_is_still_exact(enc):
    fast, _ = _engines("special")
    texts = [f"a{backends.JOIN_MARKER}b", "c", backends.JOIN_MARKER]
    ids, lengths = fast(texts, np.array([False, True, False]))
    want = [enc.encode(t, allowed_special={EOT}) for t in texts]
    assert lengths.tolist() == [len(w) for w in want]
    assert ids.tolist() == want[0] + [50256] + want[1] + want[2]


def test_cli_backend_flag_metadata_and_summary(tmp_path):
    from safetensors import safe_open
    from typer.testing import CliRunner

    from embedcli.cli.app import app

    corpus = tmp_path / "c.txt"
    corpus.write_text("Hello world. " * 50, encoding="utf-8")
    runner = CliRunner()
    files = {}
    for backend in ("gigatoken", "tiktoken"):
        out = tmp_path / f"{backend}.safetensors"
        result = runner.invoke(app, ["tokenize", str(corpus), "-o", str(out), "--backend", backend])
        assert result.exit_code == 0, result.output
        assert re.search(rf"backend\s+{backend}", result.output)
        with safe_open(str(out), "np") as f:
            assert f.metadata()["tokenizer_backend"] == backend
            files[backend] = f.get_tensor("ids")
    assert files["gigatoken"].tolist() == files["tiktoken"].tolist()
    out = tmp_path / "e.safetensors"
    args = ["embed", str(corpus), "-o", str(out), "-T", "4", "--dim", "8", "--backend", "gigatoken"]
    assert runner.invoke(app, args).exit_code == 0
    assert "embedcli[fast]" in runner.invoke(app, ["tokenize", "--help-all"]).output  # not markup
    bad = runner.invoke(app, ["tokenize", str(corpus), "--backend", "rust"])
    assert bad.exit_code == 2 and "rust" in bad.output


def test_jsonl_reads_the_same_without_orjson(tmp_path, monkeypatch):
    from embedcli.documents import iter_blocks, jsonl

    lines = [
        '{"text": "plain", "n": 123456789012345678901234567890}',
        '{"text": "nan elsewhere", "x": NaN}',
        '{"text": "lone \\ud83d surrogate"}',
        '{"text": "pair \\ud83d\\ude00", "text": "duplicate key wins"}',
        "   ",
        '{"text": "escapes \\u0000 \\n \\" \\\\ \\/"}',
    ]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def read():
        return [(b.text, b.doc) for b in iter_blocks(resolve_sources([str(path)])[0])]

    fast = read()
    monkeypatch.setattr(jsonl, "json_loads", lambda: json.loads)
    assert fast == read()
    assert [t for t, _ in fast][2] == "lone \ud83d surrogate" and len(fast) == 5


def test_bytes_read_add_up_to_the_file_in_ranges_and_shards(tmp_path):
    from embedcli.documents import shard_sources

    lines = [json.dumps({"text": f"line {i} " * (i % 5)}) for i in range(400)]
    path = tmp_path / "blanks.jsonl"
    path.write_text("\n".join(lines[:200]) + "\n\n\n" + "\n".join(lines[200:]), encoding="utf-8")
    size = path.stat().st_size  # no newline at the very end, blank lines in the middle
    assert _tokenize(path, workers=1)[1].input_bytes == size
    assert _tokenize(path, workers=2, chunk_bytes=700)[1].input_bytes == size
    read = 0
    for k in range(3):  # --shard k/3: a line belongs to the shard where it starts
        sink = MemorySink()
        part = shard_sources(resolve_sources([str(path)]), k, 3)
        read += tokenize(part, sink, allow_empty=True).input_bytes
    assert read == size


LINES = st.one_of(
    st.builds(lambda t: json.dumps({"text": t, "n": 1}), TEXT),
    st.builds(lambda t: json.dumps({"text": t}, ensure_ascii=False), TEXT),
    st.sampled_from(
        [
            "",
            "   ",
            '{"text": "lone \\ud83d"}',
            '{"text": "x", "v": NaN}',
            '{"text": "' + "long " * 30 + '"}',
            '{"body": "no text key"}',
            '{"text": 3}',
            "[1, 2]",
            '"just a string"',
            "{broken",
        ]
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(LINES, min_size=1, max_size=12), trailing=st.sampled_from(["", "\n", "\n\n"]))
def test_the_plain_case_reader_equals_the_general_one(tmp_path, lines, trailing):
    from embedcli.bpe.pieces import TokenizeStats, pieces
    from embedcli.bpe.ranges import ChunkSetup, plain_texts
    from embedcli.documents import Source

    path = tmp_path / "r.jsonl"
    path.write_bytes(("\n".join(lines) + trailing).encode("utf-8", "surrogatepass"))
    part = Source(str(path), "jsonl", size=path.stat().st_size, byte_range=(0, path.stat().st_size))
    setup = ChunkSetup("text", 100, 16, "special", False, None, "between")
    plain, general = TokenizeStats("", 0, 0, "special"), TokenizeStats("", 0, 0, "special")
    found = plain_texts(part, setup, plain)
    try:
        items = list(pieces([part], "text", 100, 16, "special", general, None))
    except Exception:
        assert found is None  # the general reader's error is the one the user sees
        return
    if found is None:
        return  # a case only the general reader takes (a long document, a lone surrogate...)
    texts, lines = found
    assert [(t, True, 0, n) for t, n in zip(texts, lines.tolist(), strict=True)] == items
    fields = ("documents", "chars", "text_bytes", "special_found", "replaced", "input_bytes")
    assert [getattr(plain, f) for f in fields] == [getattr(general, f) for f in fields]


def test_plain_ranges_take_the_plain_reader(tmp_path):
    from embedcli.bpe.pieces import TokenizeStats
    from embedcli.bpe.ranges import ChunkSetup, plain_texts
    from embedcli.documents import Source

    path = _corpus(tmp_path, ["a", "", "b <|endoftext|> c", "é"])
    size = path.stat().st_size
    part = Source(str(path), "jsonl", size=size, byte_range=(0, size))
    stats = TokenizeStats("", 0, 0, "special")
    found = plain_texts(part, ChunkSetup("text", 100, 16, "special", False, None, "between"), stats)
    assert found is not None
    assert found[0] == ["a", "", "b <|endoftext|> c", "é"]
    assert found[1].tolist() == [1, 2, 3, 4]
    assert (stats.documents, stats.special_found, stats.text_bytes, stats.input_bytes) == (
        4, 1, 20, size,
    )  # fmt: skip
    for refused in (("error", None), ("special", (0.5, 1))):  # these need the general reader
        setup = ChunkSetup("text", 100, 16, refused[0], False, refused[1], "between")
        assert plain_texts(part, setup, TokenizeStats("", 0, 0, "special")) is None


@pytest.mark.parametrize("eot", ["between", "after", "before"])
def test_ranges_between_other_inputs_keep_the_order(tmp_path, eot):
    first, last = tmp_path / "a.txt", tmp_path / "z.txt"
    first.write_text("first file", encoding="utf-8")
    last.write_text("last file", encoding="utf-8")
    middle = _corpus(tmp_path, [f"doc {i} " * (i % 4) for i in range(200)])
    paths = [str(first), str(middle), str(last)]

    def run(**kwargs):
        sink = MemorySink()
        stats = tokenize(resolve_sources(paths), sink, eot=eot, **kwargs)
        return sink.array().tolist(), stats.doc_offsets.tolist()

    assert run(workers=2, chunk_bytes=600) == run(workers=1)


def test_characters_the_unicode_tables_disagree_on_go_to_the_reference():
    """gigatoken 0.10 knows Unicode 17, tiktoken's regex an older version: CJK Extension J
    (U+323B0...) is a letter to one and unassigned to the other, and "\\U000323b0's" splits
    differently. The measured gaps route such text to tiktoken: ids exact either way."""
    from embedcli.bpe.unicode_gaps import GapCheck, find_gaps, pattern

    text = ["\U000323b0's", "plain text", "\u3042\U000323b1 1\U000323b2", "caf\u00e9"]
    fast, reference = _engines("special")
    eots = np.array([False, True, True, False])
    (ids, lengths), (want, want_lengths) = fast(text, eots), reference(text, eots)
    assert ids.tolist() == want.tolist() and lengths.tolist() == want_lengths.tolist()

    def differs(t):  # an engine that disagrees on U+00E9 and U+0100..U+0102 only
        return np.array([ord(c) if c in "\u00e9\u0100\u0101\u0102" else 0 for c in t])

    found = find_gaps(differs, lambda t: np.zeros(len(t), int), range(0x300))
    assert found == [0xE9, 0x100, 0x101, 0x102]
    ranges = GapCheck([(c, c) for c in found]).ranges()
    assert ranges == [(0xE9, 0xE9), (0x100, 0x102)]
    assert pattern(ranges).search("caf\u00e9") and not pattern(ranges).search("cafe")
    assert pattern([]) is None


def test_a_long_text_checked_while_it_encodes_still_goes_to_the_reference(monkeypatch):
    """A task of one long text is checked for gaps (a slice at a time) while gigatoken
    encodes it on another thread; a gap anywhere in it, past the first slice too, sends it
    to the reference, whose ids replace gigatoken's."""
    from embedcli.bpe import engines, unicode_gaps

    monkeypatch.setattr(engines, "OVERLAP_CHARS", 8)
    monkeypatch.setattr(unicode_gaps, "HOLDS_SLICE", 5)
    fast, reference = _engines("special")
    gigatoken_alone = engines._built("gigatoken", "gpt2", "special", "between")
    eots = np.array([True])
    for text in ("plain text, long enough", "plain text, then \U000323b0's"):
        (ids, lengths), (want, want_lengths) = fast([text], eots), reference([text], eots)
        assert ids.tolist() == want.tolist() and lengths.tolist() == want_lengths.tolist()
    assert gigatoken_alone([text], eots)[0].tolist() != want.tolist()  # the route mattered


def test_a_character_is_measured_when_text_first_brings_it_and_kept(tmp_path):
    """issue 32: measuring every code point up front took 25-45 s on a first run with a large
    tokenizer.json. Now a first use measures ASCII, Latin-1 and a sample of the planes; a
    character text brings is measured the first time, once, and kept for the next run."""
    from embedcli.bpe import unicode_gaps as ug

    measured: list[str] = []

    def fast(text: str) -> np.ndarray:  # disagrees on U+00E9 and on CJK Extension J
        measured.append(text)
        return np.array(
            [ord(c) if c == "\u00e9" or "\U000323b0" <= c < "\U00033480" else 0 for c in text]
        )

    def reference(text: str) -> np.ndarray:
        return np.zeros(len(text), int)

    check = ug.gap_check("k", fast, reference, str(tmp_path))
    assert not check.latin1_clean and check.ascii_clean  # U+00E9 is a gap of the sample
    sampled = len(measured)
    assert check.risky(["plain", "caf\u00e9", "\u4e00\u4e01"]) == [False, True, False]
    assert len(measured) > sampled  # U+4E00, U+4E01: measured now
    again = len(measured)
    assert check.risky(["\u4e01\u4e00 x"]) == [False] and len(measured) == again  # known
    assert check.holds("text \U000323b1's") and not check.holds("\U000323af")
    known = check.ranges()  # so far: U+00E9, the sample's and the text's Extension J
    assert known[0] == (0xE9, 0xE9) and (0x323B1, 0x323B1) in known
    assert all(0x323B0 <= a <= b < 0x33480 for a, b in known[1:]) and len(known) < 40

    measured.clear()
    kept = ug.gap_check("k", fast, reference, str(tmp_path))  # the next run: nothing measured
    assert kept.risky(["\u4e00", "\U000323b1"]) == [False, True] and measured == []
    assert (kept.table == check.table).all()


def test_engines_that_differ_on_much_of_the_sample_are_too_different(tmp_path):
    from embedcli.bpe import unicode_gaps as ug

    def fast(text: str) -> np.ndarray:  # disagrees on every CJK character and beyond
        return np.array([ord(c) if ord(c) > 0x3000 else 0 for c in text])

    with pytest.raises(ug.TooDifferent, match="of a sample of characters"):
        ug.gap_check("k", fast, lambda t: np.zeros(len(t), int), str(tmp_path))


_RANGES = st.lists(
    # a range at ASCII too: a check that cannot skip the ASCII characters
    st.tuples(
        st.one_of(st.integers(0, 0x7F), st.integers(0x80, 0x10FFFF)), st.integers(0, 300)
    ).map(lambda t: (t[0], min(t[0] + t[1], 0x10FFFF))),
    min_size=1,
    max_size=8,
).map(
    lambda rs: _disjoint(
        sorted(r for r in rs if r[1] < 0xD800 or r[0] >= 0xE000) or [(0x323B0, 0x3347F)]
    )
)


def _disjoint(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@settings(max_examples=300, deadline=None)
@given(
    ranges=_RANGES,
    text=st.text(st.characters(codec=None, exclude_categories=()), max_size=60),
    near=st.integers(0, 7),
)
def test_the_vectorised_gap_check_equals_the_regex(ranges, text, near):
    """issue 47: GapCheck (ASCII and Latin-1 shortcuts, a table of verdicts over the non-ASCII
    code points, read from UTF-16 or UTF-32) says what the obvious character class says, on
    any text: astral characters, lone surrogates, runs of ASCII,
    characters at and beside the ranges' ends (ranges hold no surrogate: the scan never probes
    one); and so does a check that measures each character the first time text brings it
    (issue 32), measuring none twice."""
    from embedcli.bpe.unicode_gaps import CODE_POINTS, UNKNOWN, GapCheck, pattern

    inside = np.zeros(CODE_POINTS, bool)
    for lo, hi in ranges:
        inside[lo : hi + 1] = True
    measured: list[int] = []

    def measure(points: np.ndarray) -> list[int]:
        measured.extend(points.tolist())
        return points[inside[points]].tolist()

    lazy = GapCheck(table=np.full(CODE_POINTS, UNKNOWN, np.uint8), measure=measure)
    a, b = ranges[near % len(ranges)]
    edges = "".join(chr(c) for c in (a - 1, a, b, b + 1) if 0 <= c <= 0x10FFFF)
    for sample in (text, text + edges[:1], edges, text + edges[-1:], "plain " * 9 + edges):
        want = pattern(ranges).search(sample) is not None
        assert GapCheck(ranges).holds(sample) == want, (ranges, sample)
        assert lazy.holds(sample) == want, (ranges, sample)
    assert len(measured) == len(set(measured))


class PanicException(BaseException):  # as pyo3 names a Rust panic: not an Exception
    pass


@pytest.fixture()
def fresh_engines():
    for cached in (backends.engine_for, backends._built):
        cached.cache_clear()
    yield
    for cached in (backends.engine_for, backends._built):
        cached.cache_clear()


def test_a_gigatoken_panic_on_gpt2_falls_back_in_one_line(monkeypatch, fresh_engines):
    """issue 45: a panic loading GPT-2's ranks escaped as a raw traceback; now auto takes the
    reference with a note and an explicit --backend gigatoken is one line."""
    from gigatoken import gigatoken_rs

    def panics(*args):
        raise PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(gigatoken_rs.BPETokenizer, "from_tiktoken", panics)
    choice = choose_backend("auto", "gpt2", "special", 1 << 30)
    assert choice.name == "tiktoken" and "panicked: called `Option::unwrap()`" in choice.note
    with pytest.raises(UsageError, match="--backend gigatoken: it could not load the file"):
        choose_backend("gigatoken", "gpt2", "special", 1 << 30)


def test_a_bug_in_embedcli_s_own_glue_is_not_taken_for_gigatoken_s(monkeypatch, fresh_engines):
    """A TypeError of embedcli's own used to read as "gigatoken could not load" and quietly
    take the slow path; it now surfaces (the CLI reports it as an internal error)."""

    def broken(*args):
        raise TypeError("embedcli's own mistake")

    monkeypatch.setattr(backends, "_gigatoken_tokenizer", broken)
    with pytest.raises(TypeError, match="embedcli's own mistake"):
        choose_backend("auto", "gpt2", "special", 1 << 30)


def test_reading_a_tokenizer_json_leaves_the_caller_s_environment_alone(tmp_path, monkeypatch):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    from embedcli.bpe.encodings import get_encoding
    from embedcli.bpe.foreign import resolve_spec

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.save(str(tmp_path / "tokenizer.json"))
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    get_encoding(resolve_spec(str(tmp_path / "tokenizer.json")))
    import os

    assert "TOKENIZERS_PARALLELISM" not in os.environ


def test_stderr_is_redirected_only_while_no_other_thread_runs():
    """fd 2 is every thread's: hiding a Rust backtrace must not swallow another thread's
    messages."""
    import os
    import threading

    from embedcli.bpe.fast_files import _stderr_to_nowhere

    before = os.fstat(2).st_ino
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        with _stderr_to_nowhere():
            assert os.fstat(2).st_ino == before  # another thread runs: left alone
    finally:
        release.set()
        other.join()


def test_embedcli_s_own_errors_in_a_storage_block_are_not_the_store_s():
    from embedcli.errors import InputError
    from embedcli.storage.remote import storage_errors

    with pytest.raises(TypeError), storage_errors("s3://bucket/x"):
        raise TypeError("a bug of embedcli's own")
    said = "s3://bucket/x: ValueError: the store said no"
    with pytest.raises(InputError, match=said), storage_errors("s3://bucket/x"):
        raise ValueError("the store said no")
