from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedcli.bpe.encodings import EOT
from embedcli.bpe.pieces import MemorySink, split_text
from embedcli.bpe.tokenizer import tokenize
from embedcli.bpe.value import Tokenizer
from embedcli.documents import resolve_sources
from embedcli.errors import InputError

# Text built to stress the pre-tokenizer at cut points: runs of spaces and newlines, CRLF, tabs,
# contractions, digits, punctuation, non-ASCII letters, combining marks, emoji, long words.
ATOMS = st.sampled_from(
    [
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\r\n",
        "\r",
        "\t",
        " \n ",
        "'s",
        "'ll",
        "n't",
        "a",
        "word",
        "Word",
        "x" * 40,
        "1234567",
        "3.14",
        "...",
        "!?",
        "--",
        "é",
        "naïve",
        "東京",
        "🚀",
        "\u0301",
        "\u00a0",
        "\u2028",
        "\x0c",
        "\x1c",
        "<|endoftext|>",
        "<|",
        "|>",
        "don't",
        "HELLO",
        "_",
        "\x00",
    ]
)
ADVERSARIAL = st.lists(st.one_of(ATOMS, st.text(max_size=8)), max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ADVERSARIAL, piece=st.integers(min_value=1, max_value=40))
def test_pieces_encode_exactly_like_the_whole(enc, text, piece):
    pieces = split_text(text, piece)
    assert "".join(pieces) == text
    kwargs = {"allowed_special": {EOT}, "disallowed_special": ()}
    joined = [t for p in pieces for t in enc.encode(p, **kwargs)]
    assert joined == enc.encode(text, **kwargs)
    ordinary = [t for p in pieces for t in enc.encode_ordinary(p)]
    assert ordinary == enc.encode_ordinary(text)


# The pre-tokenizer patterns of tiktoken's other encodings (copied from tiktoken_ext), run with
# the bundled GPT-2 ranks: the cut points must be safe for every pattern, not only GPT-2's.
OTHER_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}


@pytest.fixture(scope="module", params=sorted(OTHER_PATTERNS))
def other_enc(request, enc):
    import tiktoken

    return tiktoken.Encoding(
        name=f"gpt2-ranks-{request.param}-pattern",
        pat_str=OTHER_PATTERNS[request.param],
        mergeable_ranks=enc._mergeable_ranks,
        special_tokens={EOT: 50256},
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ADVERSARIAL, piece=st.integers(min_value=1, max_value=40))
def test_cut_points_are_safe_for_other_encodings_patterns(other_enc, text, piece):
    pieces = split_text(text, piece)
    joined = [t for p in pieces for t in other_enc.encode_ordinary(p)]
    assert joined == other_enc.encode_ordinary(text)


def test_split_text_cuts_after_letters_before_whitespace():
    assert split_text("one two three", 2) == ["one", " two", " three"]
    assert split_text("x" * 100, 10) == ["x" * 100]  # no safe point: one piece
    assert split_text("", 10) == [""]


def _run(paths, special="special", **kwargs):
    sink = MemorySink()
    tok = Tokenizer.of("gpt2", special, "auto")
    stats = tokenize(resolve_sources([str(p) for p in paths]), sink, tok, **kwargs)
    return sink.array(), stats


def test_documents_are_joined_with_eot_between(tmp_path, enc):
    texts = ["First document.", "Second one\nwith two lines.", "Third <|endoftext|> inline."]
    paths = []
    for i, text in enumerate(texts):
        p = tmp_path / f"{i}.txt"
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    ids, stats = _run(paths, workers=2)
    expected = enc.encode(EOT.join(texts), allowed_special={EOT})
    assert ids.tolist() == expected
    assert ids.dtype == np.int32
    assert stats.documents == 3 and stats.tokens == len(expected)
    assert stats.special_found == 1
    # doc_offsets: start of each document, then the end; the EOT closes the previous document
    starts = stats.doc_offsets.tolist()
    assert starts[0] == 0 and starts[-1] == len(expected)
    for k in (1, 2):
        assert expected[starts[k] - 1] == 50256


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=ADVERSARIAL.filter(bool), workers=st.integers(1, 3), piece=st.integers(1, 30))
def test_chunked_parallel_tokenize_equals_whole_encode(tmp_path, enc, text, workers, piece):
    path = tmp_path / "doc.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        expected_text = path.read_text(encoding="utf-8")  # universal newlines, as the reference
    except UnicodeDecodeError:
        return
    ids, _ = _run([path], workers=workers, piece_chars=piece)
    assert ids.tolist() == enc.encode(expected_text, allowed_special={EOT})


def test_large_document_streams_in_blocks(tmp_path, enc):
    blocks = {"block_bytes": 1000}  # many blocks, cuts across block edges
    body = "".join(f"Line {i}: naïve café, don't stop\r\n" for i in range(3000))
    path = tmp_path / "big.txt"
    path.write_bytes(body.encode("utf-8"))
    ids, stats = _run([path], workers=2, piece_chars=300, **blocks)
    assert ids.tolist() == enc.encode(body.replace("\r\n", "\n"), allowed_special={EOT})
    assert stats.input_bytes == len(body.encode("utf-8"))


def test_jsonl_gzip_and_zstd(tmp_path, enc):
    docs = ["alpha beta", "gamma\ndelta", ""]
    lines = "\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(docs)) + "\n\n"
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    zstandard = pytest.importorskip("zstandard")
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    ids, stats = _run([tmp_path], workers=2)
    assert ids.tolist() == enc.encode(EOT.join(docs + docs), allowed_special={EOT})
    assert stats.documents == 6


def test_text_key(tmp_path, enc):
    p = tmp_path / "x.jsonl"
    p.write_text('{"body": "hello there"}\n', encoding="utf-8")
    ids, _ = _run([p], text_key="body")
    assert ids.tolist() == enc.encode("hello there")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "ok"}\n{"text": oops}\n', r"x\.jsonl:2: not valid JSON"),
        (b'{"text": "ok"}\n{"body": "no"}\n', r"x\.jsonl:2: no 'text' key"),
        (b'{"text": 5}\n', r"x\.jsonl:1: 'text' is int, not a string"),
        (b'["text"]\n', r"x\.jsonl:1: expected a JSON object"),
        (b'{"text": "\xff"}\n', r"x\.jsonl:1: invalid UTF-8"),
        (b"\n\n", r"no text to tokenize"),
    ],
)
def test_bad_jsonl(tmp_path, content, message):
    p = tmp_path / "x.jsonl"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        _run([p])


def test_invalid_utf8_says_where(tmp_path):
    blocks = {"block_bytes": 7}
    p = tmp_path / "bad.txt"
    p.write_bytes(b"line one\nline two\nab\xc3(cd\n")
    with pytest.raises(InputError, match=r"bad\.txt: invalid UTF-8 at byte 20 \(line 3\)"):
        _run([p], **blocks)


def test_special_error_policy_names_file_and_line(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("fine\nstill fine\nhere <|endoftext|> it is\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"s\.txt:3: text contains <\|endoftext\|>"):
        _run([p], special="error")
    ids, stats = _run([p], special="text")
    assert 50256 not in ids.tolist() and stats.special_found == 1


@pytest.mark.parametrize("setup", ["missing", "empty_dir", "empty_file"])
def test_bad_inputs(tmp_path, setup):
    if setup == "missing":
        target, message = tmp_path / "nope.txt", "no such file"
    elif setup == "empty_dir":
        target, message = tmp_path / "d", "no text files"
        target.mkdir()
        (target / "image.png").write_bytes(b"\x89PNG")
    else:
        target, message = tmp_path / "e.txt", "no text to tokenize"
        target.write_text("")
    with pytest.raises(InputError, match=message):
        _run([target])


@settings(max_examples=300, deadline=None)
@given(
    specials=st.lists(
        st.text("<|ab>", min_size=1, max_size=5), min_size=2, max_size=8, unique=True
    ),
    text=st.text("<|ab>x", max_size=40),
)
def test_special_tokens_are_found_as_the_longest_first_alternation_finds_them(specials, text):
    """embedcli's literal finder equals ``re.findall`` / ``re.search`` of the alternation of
    the special tokens, longest first (what it replaced), for any overlap of tokens."""
    import re

    from embedcli.bpe.specials import _special_finder, first_special

    texts = tuple(specials)
    pattern = re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))
    assert _special_finder(texts)(text) == pattern.findall(text)
    first = pattern.search(text)
    assert first_special(texts, text) == (first.group() if first else None)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    docs=st.lists(
        st.lists(
            ATOMS | st.sampled_from(["\ufeff", "\u00e9", "\u20ac", "\U0001f600"]), max_size=30
        ).map("".join),
        min_size=1,
        max_size=4,
    ),  # fmt: skip
    block=st.integers(1, 40),
    piece=st.integers(1, 30),
    split=st.sampled_from(["none", "val", "eot"]),
)
def test_a_text_files_utf8_size_is_its_decoded_texts(tmp_path_factory, docs, block, piece, split):
    """A .txt file's text_bytes come from the bytes read (less a byte for each \\r\\n made \\n),
    not from encoding the text again: the same as the UTF-8 size of the text Python's own
    universal-newline reading gives, for \\r\\n and \\r cut by the reads at any place, a BOM
    and wide characters, whole or split between a validation split or at literal separators."""
    path = tmp_path_factory.mktemp("sized") / "doc.txt"
    path.write_bytes(EOT.join(docs).encode("utf-8"))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    kwargs = {"split_on_eot": True} if split == "eot" else {}
    if split == "val":
        kwargs["val"] = (MemorySink(), 0.5, 3)
    _, stats = _run([path], piece_chars=piece, block_bytes=block, workers=1, allow_empty=True,
                    **kwargs)  # fmt: skip
    parts = [stats] + ([stats.val] if stats.val is not None else [])
    separators = text.count(EOT) if split == "eot" else 0  # a document boundary, not text
    assert sum(p.chars for p in parts) == len(text) - separators * len(EOT)
    assert sum(p.text_bytes for p in parts) == len(text.encode("utf-8")) - separators * len(EOT)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    lines=st.lists(
        st.one_of(
            ADVERSARIAL.map(lambda t: json.dumps({"text": t})),
            st.sampled_from(
                [
                    "",
                    "   ",
                    "{broken",
                    '{"text": "a \\ud83d lone half"}',
                    '{"text": "x <|endoftext|> y <|endoftext|>"}',
                    json.dumps({"text": "long word " * 12}),
                    json.dumps({"text": "caf\u00e9 \U0001f600", "id": 3}),
                ]
            ),
        ),
        max_size=12,
    ),
    piece=st.integers(1, 40),
    block=st.integers(1, 64),
    ranged=st.booleans(),
)
def test_jsonl_tasks_equal_the_general_reader(tmp_path_factory, lines, piece, block, ranged):
    """A jsonl source read as tasks (no --val-fraction, no --special error) gives the general
    reader's pieces, document starts, places (lines, or byte offsets in a range that does not
    know its first line) and counts, with blank lines, lone surrogates, separators in the text
    and documents long enough to cut."""
    from dataclasses import replace

    from embedcli.bpe.pieces import TokenizeStats, pieces, source_row_tasks

    path = tmp_path_factory.mktemp("jl") / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = resolve_sources([str(path)])[0]
    if ranged:  # a shard's range, from its second line: places are byte offsets
        first = path.read_bytes().find(b"\n") + 1
        source = replace(source, byte_range=(first, source.size))
    fields = ("documents", "chars", "text_bytes", "special_found", "replaced", "input_bytes")

    def run(read):
        stats, seen = TokenizeStats("", 0, 0, "special"), []
        try:
            items = read(stats, seen.append)
        except InputError as exc:
            return str(exc)
        return items, [getattr(stats, f) for f in fields], stats.specials_found, sum(seen)

    def by_tasks(stats, progress):
        tasks = source_row_tasks(source, "text", piece, "special", stats, progress, None, block)
        return [
            (text, bool(first), int(k), int(at))
            for texts, starts, which, places in tasks
            for text, first, k, at in zip(texts, starts, which, places, strict=True)
        ]

    def general(stats, progress):
        return list(pieces([source], "text", piece, block, "special", stats, progress))

    assert run(by_tasks) == run(general)
