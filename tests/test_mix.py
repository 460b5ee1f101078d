"""embedcli mix: sources mixed by a token budget at chosen weights, shuffled across all of them,
exact duplicates dropped (issue 33, its first step: one machine)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embedcli.errors import InputError, UsageError
from embedcli.mixing import first_occurrences, order, parse_count, parse_weights, select
from embedcli.storage.manifest import read_manifest

from conftest import SAMPLE, invoke

_SOURCES = st.lists(
    st.lists(st.integers(0, 40), min_size=0, max_size=25).map(lambda x: np.array(x, np.int64)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
# the default budget of two one-token sources at 3.5 passes was 7, whose rounded shares (4)
# passed their cap (3): selecting it was refused, naming 7 as the largest budget
@example(
    lengths=[np.array([1]), np.array([1])],
    raw=[1.0] * 4,
    max_repeat=3.5,
    share=1.0,
    seed=0,
    shuffle=False,
)
@given(
    lengths=_SOURCES,
    raw=st.lists(st.floats(0.05, 1.0), min_size=4, max_size=4),
    max_repeat=st.sampled_from([1.0, 2.0, 3.5]),
    share=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**63),
    shuffle=st.booleans(),
)
def test_a_selection_meets_its_weights_within_a_document(
    lengths, raw, max_repeat, share, seed, shuffle
):
    weights = [w / sum(raw[: len(lengths)]) for w in raw[: len(lengths)]]
    totals = [int(x.sum()) for x in lengths]
    from embedcli.mixing import default_budget

    fits = default_budget(totals, weights, max_repeat)
    budget = int(fits * share)
    sel = select(lengths, weights, budget, max_repeat, seed)
    for sizes, taken in zip(lengths, sel.sources, strict=True):
        if taken.target and sizes.sum():
            assert taken.target <= taken.tokens < taken.target + max(1, int(sizes.max())) + 1
            assert taken.tokens - taken.target <= (sizes[taken.docs[-1]] if taken.docs.size else 0)
        counts = Counter(zip(taken.docs.tolist(), taken.passes.tolist(), strict=True))
        assert max(counts.values(), default=1) == 1  # a document once a pass
        per_doc = Counter(taken.docs.tolist())
        assert max(per_doc.values(), default=0) <= int(np.ceil(max_repeat))
        assert taken.tokens <= max_repeat * sizes.sum() + (sizes.max() if sizes.size else 0)
    source, position = order(sel, seed, shuffle)
    pairs = sorted(zip(source.tolist(), position.tolist(), strict=True))
    want = sorted((k, i) for k, t in enumerate(sel.sources) for i in range(t.documents))
    assert pairs == want  # every document taken, once: a permutation
    if not shuffle:
        for k, taken in enumerate(sel.sources):
            mine = position[source == k]
            seq = list(zip(taken.passes[mine].tolist(), taken.docs[mine].tolist(), strict=True))
            assert seq == sorted(seq)  # source order: pass, then the document's index
    again = order(select(lengths, weights, budget, max_repeat, seed), seed, shuffle)
    assert all(np.array_equal(a, b) for a, b in zip(again, (source, position), strict=True))


def test_the_default_budget_takes_the_scarce_source_whole_and_no_more():
    lengths = [np.full(10, 10), np.full(100, 10)]  # 100 and 1,000 tokens
    sel = select(lengths, [0.5, 0.5])
    assert [t.tokens for t in sel.sources] == [100, 100] and sel.budget == 200
    assert sel.sources[0].documents == 10 and sel.sources[0].repeats == 1.0
    sel = select(lengths, [0.5, 0.5], max_repeat=2)  # the scarce one twice over
    assert [t.tokens for t in sel.sources] == [200, 200]
    assert Counter(sel.sources[0].docs.tolist()) == dict.fromkeys(range(10), 2)
    with pytest.raises(UsageError, match=r"source s0: .* the largest budget .* is 200 "):
        select(lengths, [0.5, 0.5], budget=202, names=["s0", "s1"])


@given(st.lists(st.integers(0, 5), max_size=40))
def test_dedup_keeps_first_occurrences(values):
    keep = first_occurrences([bytes([v]) for v in values])
    assert [v for v, k in zip(values, keep, strict=True) if k] == list(dict.fromkeys(values))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.lists(st.integers(0, 1), max_size=7), max_size=12), min_size=1, max_size=3
    ),
    st.integers(1, 4),
)
def test_dedup_drops_exactly_the_repeated_documents(docs, files):
    """Sources of documents over two ids (many of one length, first, middle and last ids:
    the cheap key shared, the documents not equal) split across files: dedup keeps the first
    of each distinct document in source order, as comparing them all would."""
    from embedcli.stages.mix_sources import MixInput, Segmented, dedup

    sources = []
    for k, mine in enumerate(docs):
        flat = np.array([i for d in mine for i in d], np.int32)
        cuts = np.linspace(0, flat.size, files + 1).astype(int)
        ids = Segmented([flat[a:b] for a, b in zip(cuts, cuts[1:], strict=False)])
        ends = np.cumsum([len(d) for d in mine]).astype(np.int64)
        starts = ends - np.array([len(d) for d in mine], np.int64)
        sources.append(MixInput(f"s{k}", [], ids, starts, ends, {}))
    dedup(sources)
    seen, want = set(), []
    for mine in docs:
        keep = []
        for j, d in enumerate(mine):
            if tuple(d) not in seen:
                seen.add(tuple(d))
                keep.append(j)
        want.append(keep)
    assert [s.kept.tolist() for s in sources] == want
    assert [s.duplicates for s in sources] == [
        len(m) - len(w) for m, w in zip(docs, want, strict=True)
    ]


def test_weights_and_counts_are_read_or_refused_in_one_line():
    assert parse_weights("0.25,0.75", ["a", "b"], [1, 1]) == [0.25, 0.75]
    assert parse_weights(None, ["a", "b"], [1, 3]) == [0.25, 0.75]
    assert parse_count("10B") == 10**10 and parse_count("1.5k") == 1500
    for bad, message in [
        ("0.5,0.4", "sum to 0.9, not 1"),
        ("0.5", "1 weights for 2 sources"),
        ("a=0.5,c=0.5", "no source is called c"),
        ("a=0.5,0.5", "by name or none"),
        ("x,y", "not numbers"),
        ("-0.5,1.5", "negative"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_weights(bad, ["a", "b"], [1, 1])
    with pytest.raises(UsageError, match="not a count"):
        parse_count("lots")


@example(ids=[0, 0, 0], cuts=[1], spans=[(1, 0)])  # an empty span past a file border
@given(
    ids=st.lists(st.integers(0, 9), max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    spans=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=10),
)
def test_a_source_s_files_read_as_one_stream_without_being_joined(ids, cuts, spans):
    """A source of several files (a glob, a manifest, an llm.c shard set) is read as its
    files: every span, gather and search equals the joined stream's, across file borders."""
    from embedcli.stages.mix_sources import Segmented

    joined = np.array(ids, np.int32)
    edges = sorted({min(c, joined.size) for c in cuts})
    stream = Segmented(np.split(joined, edges))
    assert stream.size == joined.size
    for a, b in spans:
        a, b = sorted((min(a, joined.size), min(b, joined.size)))
        assert stream.span(a, b).tolist() == joined[a:b].tolist()
    at = (
        np.array([p % joined.size for p, _ in spans], np.int64)
        if joined.size
        else np.zeros(0, np.int64)
    )
    assert stream.take(at).tolist() == joined[at].tolist()
    assert stream.where(3).tolist() == np.flatnonzero(joined == 3).tolist()
    import hashlib

    bounds = np.array(sorted((min(a, joined.size), min(b, joined.size)) for a, b in spans))
    starts, ends = (bounds[:, 0], bounds[:, 1]) if bounds.size else (bounds, bounds)
    want = [
        hashlib.blake2b(joined[a:b].astype("<u4").tobytes(), digest_size=8, key=b"k").digest()
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    assert (
        Segmented(np.split(joined.astype(np.uint16), edges)).digests(starts, ends, 8, b"k") == want
    )
    assert stream.digests(starts, ends, 8, b"k") == want


# ------------------------------------------------------------------------- the stage


@pytest.fixture()
def sources(tmp_path):
    """Two token files of GPT-2 ids: the sample articles (5 documents) and the story (1)."""
    web, story = tmp_path / "web.tokens.safetensors", tmp_path / "story.tokens.safetensors"
    assert invoke("tokenize", str(SAMPLE / "articles.jsonl"), "-o", str(web), "-q").returncode == 0
    text = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")
    parts = tmp_path / "story.jsonl"  # the story's paragraphs as documents, one repeated
    paras = [p for p in text.split("\n\n") if p.strip()]
    parts.write_text("".join(json.dumps({"text": p}) + "\n" for p in [*paras, paras[0]]))
    assert invoke("tokenize", str(parts), "-o", str(story), "-q").returncode == 0
    return web, story


def _documents(path, fmt=None):
    """The documents of a token file (any format), separators removed, as tuples of ids."""
    from embedcli.inputs import Request, open_input
    from embedcli.progress import no_progress
    from embedcli.stages.mix_sources import Segmented, bodies, offsets_from_marks

    with open_input([str(path)], Request()) as found:
        source = found.load(no_progress)
        ids = Segmented(source.segments)
        if source.doc_offsets is None:  # nanoGPT, llm.c: at the separators (no literal one here)
            source.metadata["special"] = "text"
            source.doc_offsets = offsets_from_marks(source, ids, str(path))
        starts, ends = bodies(source, ids, str(path))
        return [tuple(source.ids[a:b].tolist()) for a, b in zip(starts, ends, strict=True)]


@pytest.mark.parametrize(
    ("to", "name"), [(None, "m.tokens.safetensors"), ("nanogpt", "m.bin"), ("llmc", "m.bin")]
)
def test_a_mix_is_a_permutation_of_the_sources_documents(sources, tmp_path, to, name):
    web, story = sources
    out = tmp_path / name
    args = ["mix", str(web), str(story), "-o", str(out), *(["--to", to] if to else [])]
    proc = invoke(*args)
    assert proc.returncode == 0, proc.stderr
    got = _documents(out)
    assert Counter(got) == Counter(_documents(web) + _documents(story))
    assert got != _documents(web) + _documents(story)  # shuffled
    written = lambda: {p.name: p.read_bytes() for p in tmp_path.glob("m*")}  # noqa: E731
    first = written()
    assert invoke(*args, "-q").returncode == 0 and written() == first  # reproducible
    assert b"web" in proc.stderr and b"story" in proc.stderr  # the table of sources


def test_weights_a_budget_and_repeats_are_what_the_metadata_records(sources, tmp_path):
    from embedcli.storage.store import read_header

    web, story = sources
    out = tmp_path / "m.tokens.safetensors"
    args = ["mix", str(web), str(story), "-o", str(out), "--weights", "web=0.5,story=0.5"]
    proc = invoke(*args, "--tokens", "1000", "--max-repeat", "3", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    meta = read_header(str(out)).metadata
    per = {s["name"]: s for s in json.loads(meta["mix_sources"])}
    assert per["web"]["target_tokens"] == per["story"]["target_tokens"] == 500
    assert all(500 <= s["tokens"] < 500 + 400 for s in per.values())
    assert meta["mix_seed"] == "7" and meta["mix_shuffle"] == "global"
    assert meta["encoding"] == "gpt2" and meta["eot_id"] == "50256"
    docs = _documents(out)
    assert int(meta["documents"]) == len(docs) == sum(s["documents"] for s in per.values())
    assert Counter(docs).most_common(1)[0][1] >= 2  # web's documents more than once
    # the output is a token file like any other: the next stage reads it
    assert invoke("batch", str(out), "-o", str(tmp_path / "w.safetensors"), "-q").returncode == 0


def test_exact_duplicates_keep_their_first_occurrence(sources, tmp_path):
    web, story = sources
    out = tmp_path / "m.tokens.safetensors"
    args = ["mix", str(story), "--source", f"again={web}", "--source", f"web={web}"]
    proc = invoke(*args, "--dedup", "exact", "--no-shuffle", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    want = list(dict.fromkeys(_documents(story) + _documents(web)))  # first occurrences
    assert _documents(out) == want
    assert b"dup" in proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "0.5,0.4"], "sum to 0.9, not 1"),
        (["--tokens", "10B"], "the largest budget these weights allow is"),
        (["--max-repeat", "0"], "--max-repeat must be above 0"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(sources, tmp_path, extra, message):
    web, story = sources
    out = tmp_path / "m.tokens.safetensors"
    proc = invoke("mix", str(web), str(story), "-o", str(out), *extra)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_sources_of_two_tokenizers_or_text_are_refused(sources, tmp_path):
    web, _ = sources
    other = tmp_path / "o.tokens.safetensors"
    args = ["tokenize", str(SAMPLE / "articles.jsonl"), "--eot", "after", "-o", str(other), "-q"]
    assert invoke(*args).returncode == 0
    fine = invoke("mix", str(web), str(other), "-o", str(tmp_path / "a.tokens.safetensors"))
    assert fine.returncode == 0, fine.stderr  # one tokenizer, two placements: both read
    text = invoke("mix", str(web), str(SAMPLE / "the-lighthouse.txt"), "-o", str(tmp_path / "b"))
    assert b"is text; tokenize it first" in text.stderr and text.returncode != 0
    missing = invoke("mix", str(web), str(web))
    assert b"name the mixed file with -o PATH" in missing.stderr


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10**6), placement=st.sampled_from(["between", "after", "before", "none"])
)
def test_every_placement_separates_the_mixed_documents(sources, tmp_path, seed, placement):
    from embedcli.stages.mix import MixOptions, run_mix

    web, story = sources
    out = tmp_path / f"m-{placement}.tokens.safetensors"
    run_mix([str(web), str(story)], str(out), MixOptions(seed=seed, eot=placement))
    if placement != "none":  # the documents come back whole from their separators
        assert Counter(_documents(out)) == Counter(_documents(web) + _documents(story))


def test_a_trainer_s_file_gives_its_documents_at_its_separators(sources, tmp_path):
    """nanoGPT's and llm.c's files record no offsets; with --special text (their default) a
    separator id is never text, so the documents are found at them. With --special special
    a document may hold one: refused."""
    web, story = sources
    for to in ("nanogpt", "llmc"):
        trainer = tmp_path / f"{to}-web.bin"
        args = ["tokenize", str(SAMPLE / "articles.jsonl"), "--to", to, "-o", str(trainer)]
        assert invoke(*args, "-q").returncode == 0
        out = tmp_path / f"from-{to}.tokens.safetensors"
        proc = invoke("mix", str(trainer), str(story), "-o", str(out), "-q")
        assert proc.returncode == 0, proc.stderr
        assert Counter(_documents(out)) == Counter(_documents(web) + _documents(story))
    risky = tmp_path / "special.bin"
    args = ["tokenize", str(SAMPLE / "articles.jsonl"), "--to", "nanogpt", "--special", "special"]
    assert invoke(*args, "-o", str(risky), "-q").returncode == 0
    proc = invoke("mix", str(risky), str(story), "-o", str(tmp_path / "x.tokens.safetensors"))
    assert b"does not mark its documents" in proc.stderr and proc.returncode != 0


def test_a_shard_set_whose_documents_cross_its_files_mixes_as_one_file(tmp_path):
    """llm.c's shards are cut at a token count, so a document can begin in one file and end in
    the next: the set, read file by file, mixes exactly as the same ids in one file."""
    from safetensors.numpy import load_file

    one, many = tmp_path / "one.bin", tmp_path / "many.bin"
    text = str(SAMPLE / "articles.jsonl")
    for out, extra in ((one, []), (many, ["--shard-tokens", "37"])):
        proc = invoke("tokenize", text, "--to", "llmc", "-o", str(out), *extra, "-q")
        assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("many_*.bin"))) > 3
    mixed = []
    for name in ("one", "many"):
        out = tmp_path / f"{name}.tokens.safetensors"
        proc = invoke(
            "mix", str(tmp_path / f"{name}.bin"), "-o", str(out), "--dedup", "exact", "-q"
        )
        assert proc.returncode == 0, proc.stderr
        mixed.append(load_file(str(out)))
    for key in ("ids", "doc_offsets"):
        assert mixed[0][key].tolist() == mixed[1][key].tolist()


def test_token_files_of_another_tokenizer_are_refused(sources, tmp_path):
    web, _ = sources
    other = tmp_path / "r50k.tokens.safetensors"
    args = ["tokenize", str(SAMPLE / "articles.jsonl"), "--encoding", "r50k_base"]
    assert invoke(*args, "-o", str(other), "-q").returncode == 0
    out = tmp_path / "m.tokens.safetensors"
    proc = invoke("mix", str(web), str(other), "-o", str(out))
    assert b"hold different tokenizers' ids (encoding gpt2 against r50k_base)" in proc.stderr
    assert proc.returncode != 0 and not out.exists()


def _stream(path):
    source = _load(path)
    return np.asarray(source.ids).tolist(), source.doc_offsets.tolist()


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize(("scatter", "gather"), [(1, 1), (2, 3), (3, 1), (7, 3)])
def test_two_phases_write_the_one_process_stream(sources, tmp_path, shuffle, scatter, gather):
    """The parts read through their manifest are the one-process run's token stream, id for
    id and document for document, whatever the numbers of scatter and gather jobs."""
    from embedcli.stages.mix import MixOptions, run_mix
    from embedcli.stages.mix_phases import Phase, run_mix_phase

    web, story = sources
    inputs = [str(web), str(story)]
    opts = MixOptions(weights="0.4,0.6", max_repeat=2.5, dedup=True, shuffle=shuffle, seed=9)
    one = tmp_path / "one.tokens.safetensors"
    run_mix(inputs, str(one), opts)
    out, buckets = tmp_path / "two.tokens.safetensors", str(tmp_path / "buckets")
    for i in range(scatter):
        run_mix_phase(inputs, str(out), Phase("scatter", i, scatter, buckets, gather), opts)
    for j in reversed(range(gather)):  # any order
        run_mix_phase(inputs, str(out), Phase("gather", j, gather, buckets), opts)
    assert _stream(tmp_path / "two.tokens.manifest.json") == _stream(one)


@pytest.mark.parametrize("held", [{"val_fraction": 0.3}, {"val_tokens": 120}])
@pytest.mark.parametrize(("scatter", "gather"), [(1, 1), (3, 2)])
def test_two_phases_hold_out_the_one_process_validation_split(
    sources, tmp_path, monkeypatch, held, scatter, gather
):
    """--val-fraction/--val-tokens in a two-phase run: the parts are the one process's
    training stream, and gather job 1 writes its validation file, id for id and document
    for document, paired with the manifest; the gather jobs read the split the scatter
    phase found rather than hash every document; a rerun without a split removes it."""
    import embedcli.stages.mix as mix_stage
    from embedcli.stages.mix import MixOptions, run_mix
    from embedcli.stages.mix_phases import Phase, run_mix_phase

    inputs = [str(p) for p in sources]
    opts = MixOptions(weights="0.4,0.6", dedup=True, seed=4, **held)
    one = tmp_path / "one.tokens.safetensors"
    run_mix(inputs, str(one), opts)
    out, buckets = tmp_path / "two.tokens.safetensors", str(tmp_path / "buckets")
    for i in range(scatter):
        run_mix_phase(inputs, str(out), Phase("scatter", i, scatter, buckets, gather), opts)
    hashed = []
    for name in ("dedup", "hold_out"):
        real = getattr(mix_stage, name)
        monkeypatch.setattr(mix_stage, name, lambda *a, r=real: hashed.append(1) or r(*a))
    results = [
        run_mix_phase(inputs, str(out), Phase("gather", j, gather, buckets), opts)
        for j in range(gather)
    ]
    assert hashed == []
    manifest, val = tmp_path / "two.tokens.manifest.json", tmp_path / "two.val.tokens.safetensors"
    assert _stream(manifest) == _stream(one)
    assert _stream(val) == _stream(tmp_path / "one.val.tokens.safetensors")
    assert results[0].val_output == str(val) and all(r.val_output is None for r in results[1:])
    assert results[0].val_documents == len(_stream(val)[1]) - 1 > 0
    meta = _load(val).metadata
    assert meta["split"] == "val" and meta["split_partner"] == manifest.name
    part = _load(read_manifest(str(manifest)).files[-1]).metadata
    assert part["split_partner"] == val.name and part["split_pair"] == meta["split_pair"]
    assert invoke("batch", str(val), "-T", "4", "-o", "-").returncode == 0
    plain = MixOptions(weights="0.4,0.6", dedup=True, seed=4)
    buckets2 = str(tmp_path / "b2")
    run_mix_phase(inputs, str(out), Phase("scatter", 0, 1, buckets2, 1), plain)
    run_mix_phase(inputs, str(out), Phase("gather", 0, 1, buckets2), plain)
    assert not val.exists() and not list(tmp_path.glob("two.val*"))


def test_gather_jobs_take_the_duplicates_the_scatter_phase_found(sources, tmp_path, monkeypatch):
    """--dedup exact: scatter job 1 writes what it keeps, a bit a document, and the gather jobs
    read it rather than hash every document again; a file of another run is not believed."""
    import embedcli.stages.mix as mix_stage
    from embedcli.stages.mix import MixOptions, run_mix
    from embedcli.stages.mix_phases import Phase, run_mix_phase

    inputs = [str(p) for p in sources]
    opts = MixOptions(dedup=True, seed=3)
    one = tmp_path / "one.tokens.safetensors"
    run_mix(inputs, str(one), opts)
    out, buckets = tmp_path / "two.tokens.safetensors", str(tmp_path / "buckets")
    for i in range(2):
        run_mix_phase(inputs, str(out), Phase("scatter", i, 2, buckets, 2), opts)
    assert (tmp_path / "buckets" / "kept.safetensors").is_file()
    hashed = []
    real = mix_stage.dedup
    monkeypatch.setattr(mix_stage, "dedup", lambda read: hashed.append(1) or real(read))
    for j in range(2):
        result = run_mix_phase(inputs, str(out), Phase("gather", j, 2, buckets), opts)
        assert result.sources[1].duplicates == 1  # the story's repeated paragraph
    assert hashed == [] and _stream(tmp_path / "two.tokens.manifest.json") == _stream(one)
    other = MixOptions(dedup=True, seed=4)  # another run's file under the same name
    run_mix_phase(inputs, str(out), Phase("scatter", 0, 1, str(tmp_path / "b4"), 1), other)
    hashed.clear()  # the scatter job hashes, as every scatter job does
    shutil.copyfile(tmp_path / "b4" / "kept.safetensors", tmp_path / "buckets" / "kept.safetensors")
    run_mix_phase(inputs, str(out), Phase("gather", 0, 2, buckets), opts)
    assert hashed == [1]


def test_a_gather_job_refuses_an_unfinished_or_other_scatter(sources, tmp_path):
    web, story = sources
    buckets = tmp_path / "b"
    base = ["mix", str(web), str(story), "-o", str(tmp_path / "m.tokens.safetensors")]
    scatter = [*base, "--phase", "scatter", "--buckets", "2", "--bucket-dir", str(buckets)]
    assert invoke(*scatter, "--shard", "0/2", "-q").returncode == 0
    gather = [*base, "--phase", "gather", "--bucket-dir", str(buckets), "--shard", "0/2"]
    early = invoke(*gather)
    assert early.returncode != 0 and b"scatter job 2 of 2 has not finished" in early.stderr
    assert invoke(*scatter, "--shard", "1/2", "-q").returncode == 0
    other = invoke(*gather, "--seed", "5")  # another run's options: not its buckets
    assert other.returncode != 0 and b"no scatter job of this run has finished" in other.stderr
    wrong = invoke(*[a if a != "0/2" else "0/3" for a in gather])
    assert b"run 2 gather jobs (--shard J/2), not 3" in wrong.stderr
    assert invoke(*gather, "-q").returncode == 0
    assert invoke(*[a if a != "0/2" else "1/2" for a in gather], "-q").returncode == 0
    assert len(_stream(tmp_path / "m.tokens.manifest.json")[1]) > 1
    lone = invoke(*base, "--shard", "0/2")
    assert b"go with --phase scatter|gather" in lone.stderr


def test_a_validation_split_is_held_out_before_the_mix(sources, tmp_path):
    """--val-fraction: documents chosen by a digest of the seed and their ids go to the
    validation file beside the output, never into the mix; an identical document is always
    on one side (the story's repeated paragraph); --val-tokens takes the lowest digests."""
    from embedcli.storage.store import read_header

    web, story = sources
    out = tmp_path / "train.tokens.safetensors"
    proc = invoke("mix", str(web), str(story), "-o", str(out), "--val-fraction", "0.4")
    assert proc.returncode == 0, proc.stderr
    val = tmp_path / "val.tokens.safetensors"
    train_docs, val_docs = _documents(out), _documents(val)
    everything = _documents(web) + _documents(story)
    assert Counter(train_docs) + Counter(val_docs) == Counter(everything)
    assert not set(train_docs) & set(val_docs)  # the repeated paragraph: one side only
    assert 0 < len(val_docs) < len(everything)
    meta, other = read_header(str(out)).metadata, read_header(str(val)).metadata
    assert meta["split"] == "train" and other["split"] == "val"
    assert meta["split_pair"] == other["split_pair"] and other["split_partner"] == out.name
    assert b"validation" in proc.stderr
    for path in (out, val):  # both read by the next stage
        args = ["batch", str(path), "-T", "4", "-o", str(tmp_path / "w.safetensors"), "-q"]
        assert invoke(*args).returncode == 0
    sized = invoke("mix", str(web), str(story), "-o", str(out), "--val-tokens", "100")
    assert sized.returncode == 0, sized.stderr
    held = sum(len(d) for d in _documents(val))
    assert 100 <= held < 100 + max(len(d) for d in everything)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val-fraction", "0.1", "--val-tokens", "5"], "not both"),
        (["--val-fraction", "0.1", "--val-tokens", "5", "--phase", "scatter", "--shard", "0/1",
          "--buckets", "1"], "not both"),
        (["--val-fraction", "1.5", "--phase", "scatter", "--shard", "0/1", "--buckets", "1"],
         "must be from 0.0 to 1.0"),
    ],
)  # fmt: skip
def test_validation_refusals(sources, tmp_path, extra, message):
    web, story = sources
    proc = invoke("mix", str(web), str(story), "-o", str(tmp_path / "m.tokens.safetensors"), *extra)
    assert proc.returncode != 0 and message.encode() in proc.stderr
    assert not list(tmp_path.glob("*val*")) and not (tmp_path / "m.tokens.safetensors").exists()


@pytest.mark.parametrize("to", [None, "llmc", "megatron"])
def test_every_document_names_its_source_and_index(sources, tmp_path, to):
    """The provenance beside a mix: each output document's recorded source and index give
    back its ids (repeats and the validation split included); inspect --doc and --token show
    it, in any format."""
    from embedcli.formats.provenance import read_provenance

    web, story = sources
    name = {None: "m.tokens.safetensors", "llmc": "m.bin", "megatron": "m"}[to]
    out = tmp_path / name
    args = ["mix", str(web), str(story), "-o", str(out), "--weights", "0.5,0.5", "--tokens", "900"]
    args += ["--max-repeat", "3", "--val-fraction", "0.2", *(["--to", to] if to else [])]
    assert invoke(*args, "-q").returncode == 0
    by_source = {"web": _documents(web), "story": _documents(story)}
    for path in (out, tmp_path / name.replace("m", "m.val", 1) if to is None else None):
        if path is None:
            continue
        got = _documents(path)
        from embedcli.inputs import Request, open_input
        from embedcli.progress import no_progress

        with open_input([str(path)], Request()) as found:
            offsets = found.load(no_progress).doc_offsets
        if offsets is None:  # llm.c: the documents at the separators, confirmed by the digest
            from embedcli.formats.provenance import offsets_at_separators

            src = _load(path)
            offsets = offsets_at_separators(src.ids, 50256, "before")
        origin, why = read_provenance(str(path), offsets)
        assert origin is not None and why is None
        for k, doc in enumerate(got):
            o = origin.of(k)
            assert by_source[o["source"]][o["document"]] == doc
        assert max(origin.passes) >= 1 or path != out  # web repeated in the training file
    shown = invoke("inspect", str(out), "--doc", "0")
    assert shown.returncode == 0 and b"source " in shown.stdout, shown.stderr
    report = json.loads(invoke("inspect", str(out), "--token", "5", "--json").stdout)["document"]
    assert report["document"] == 0 and report["origin"]["source"] in by_source
    far = invoke("inspect", str(out), "--doc", "100000")
    assert far.returncode != 0 and b"the file has documents 0 to" in far.stderr


def _load(path):
    from embedcli.inputs import Request, open_input
    from embedcli.progress import no_progress

    with open_input([str(path)], Request()) as found:
        return found.load(no_progress)


def test_a_provenance_file_of_other_documents_is_not_believed(sources, tmp_path):
    web, story = sources
    out = tmp_path / "m.tokens.safetensors"
    assert invoke("mix", str(web), str(story), "-o", str(out), "-q").returncode == 0
    other = tmp_path / "other.tokens.safetensors"
    invoke("tokenize", str(SAMPLE / "articles.jsonl"), "-o", str(other), "-q", check=True)
    shutil.copyfile(other, out)  # rewritten by another program: the old provenance stays
    shown = invoke("inspect", str(out), "--doc", "0")
    assert shown.returncode == 0 and b"describes other documents" in shown.stdout
    assert b"source " not in shown.stdout
    args = ["tokenize", str(SAMPLE / "articles.jsonl"), "-o", str(out), "-q"]
    assert invoke(*args).returncode == 0  # embedcli's own rewrite takes it away
    assert not os.path.exists(str(out) + ".provenance.safetensors")


@pytest.mark.parametrize("to", [None, "llmc"])
def test_the_loader_says_where_a_window_came_from(sources, tmp_path, to):
    """``TokenWindows.source(i)``: the document a window starts in, where inside it, and the
    source that document came from, as ``inspect --doc`` shows it (an llm.c output's
    documents found at its separators, confirmed by the provenance's digest)."""
    from embedcli import TokenWindows

    web, story = sources
    out = tmp_path / ("m.bin" if to else "m.tokens.safetensors")
    args = ["mix", str(web), str(story), "-o", str(out), *(["--to", to] if to else []), "-q"]
    assert invoke(*args).returncode == 0, args
    ds = TokenWindows(str(out), 8, 5)
    for i in (0, len(ds) // 2, len(ds) - 1):
        place = ds.source(i)
        shown = invoke("inspect", str(out), "--doc", str(place["document"]), "--json")
        doc = json.loads(shown.stdout)["document"]
        assert place["origin"] == doc["origin"] and place["origin"]["source"] in ("web", "story")
        assert doc["start"] + place["offset"] == place["start"] == i * 5
    plain = TokenWindows(str(web), 8).source(3)
    assert plain["document"] is not None and plain["origin"] is None
    in_memory = TokenWindows(np.arange(40), 8).source(1)
    assert in_memory == {"window": 1, "start": 8, "document": None, "offset": None, "origin": None}


@pytest.mark.parametrize(("to", "eot"), [(None, "between"), (None, "before"), (None, "after"),
                                         (None, "none"), ("nanogpt", None), ("llmc", None)])  # fmt: skip
def test_sources_read_from_their_files_mix_as_mapped_ones(sources, tmp_path, to, eot):
    """``--memory`` below the sources' size reads them with pread (nothing mapped): the same
    bytes, for 4-byte ids, a trainer's 2-byte ids, and documents that cross a shard set's
    files; so do a two-phase run's scatter jobs."""
    from embedcli.stages.mix import MixOptions, run_mix
    from embedcli.stages.mix_phases import Phase, run_mix_phase

    web, story = sources
    text = str(SAMPLE / "articles.jsonl")
    invoke("tokenize", text, "--to", "nanogpt", "-o", str(tmp_path / "n.bin"), "-q", check=True)
    invoke("tokenize", text, "--to", "llmc", "-o", str(tmp_path / "s.bin"), "--shard-tokens",
           "37", "-q", check=True)  # fmt: skip
    inputs = [str(web), str(story), str(tmp_path / "n.bin"), str(tmp_path / "s.bin")]
    name = "m.bin" if to else "m.tokens.safetensors"
    written = {}
    for memory in (1 << 40, 1):
        out = tmp_path / str(memory) / name
        out.parent.mkdir()
        run_mix(inputs, str(out), MixOptions(seed=4, eot=eot, memory=memory), to=to)
        written[memory] = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert written[1] == written[1 << 40] and len(written[1]) >= 2
    for memory in (1, 1 << 40) if to is None and eot == "between" else ():
        opts = MixOptions(seed=4, memory=memory)
        two, buckets = tmp_path / f"two{memory}.tokens.safetensors", str(tmp_path / f"b{memory}")
        for i in range(2):
            run_mix_phase(inputs, str(two), Phase("scatter", i, 2, buckets, 2), opts)
        for j in range(2):
            run_mix_phase(inputs, str(two), Phase("gather", j, 2, buckets), opts)
        manifest = tmp_path / f"two{memory}.tokens.manifest.json"
        assert _stream(manifest) == _stream(tmp_path / "1" / name)


def test_file_spans_read_a_map_s_view_where_it_lies(tmp_path):
    from embedcli.stages.segmented import FileSpans, Segmented

    path = tmp_path / "ids.bin"
    np.arange(100, dtype=np.int32).tofile(path)
    whole = np.memmap(path, np.int32, "r")
    ids = Segmented([whole, np.array([7], np.int32), whole[10:50]])
    assert ids.files[0] == (str(path), 0) and ids.files[1] is None
    assert ids.files[2] is None  # a view: its .offset is its map's, so it is read as mapped
    spans = FileSpans(ids)
    for a, b in [(0, 5), (98, 102), (100, 101), (101, 105), (0, 0)]:
        assert spans.span(a, b).tolist() == ids.span(a, b).tolist()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 9), min_size=1, max_size=30),
    st.sampled_from(["between", "before", "after", "none"]),
    st.integers(1, 12),
    st.randoms(use_true_random=False),
)
def test_a_bucket_in_memory_is_written_as_the_loop_writes_it(lengths, placement, window, rnd):
    """A gather job's bucket (one array in memory) is placed by index arrays, a window at a
    time; the same ids and offsets as the document-by-document loop, whatever the window."""
    import tempfile

    from embedcli.progress import no_progress
    from embedcli.stages import mix_writer
    from embedcli.stages.segmented import Segmented
    from embedcli.stages.staging import SpillSink

    ids = np.arange(1, sum(lengths) + 1, dtype=np.int32)
    ends = np.cumsum(lengths)
    starts = ends - np.array(lengths)
    order = list(range(len(lengths)))
    rnd.shuffle(order)
    by = np.array(order)
    source = np.zeros(len(order), np.int64)
    written = []
    for segments in ([ids], [ids[:3], ids[3:]]):  # one array: gathered; two: the loop
        with tempfile.TemporaryFile() as f:
            sink = SpillSink(f, "x")
            old = mix_writer.GATHER_IDS
            mix_writer.GATHER_IDS = window
            try:
                offsets = mix_writer.write_documents(
                    [Segmented(segments)], source, starts[by], ends[by], placement, 0, sink,
                    no_progress,
                )  # fmt: skip
            finally:
                mix_writer.GATHER_IDS = old
            f.flush()
            f.seek(0)
            written.append((np.frombuffer(f.read(), np.int32).tolist(), offsets.tolist()))
    assert written[0] == written[1]


def test_shard_tokens_splits_an_llmc_mix_into_files_that_read_as_one(sources, tmp_path):
    web, story = sources
    whole, split = tmp_path / "whole.bin", tmp_path / "split.bin"
    invoke("mix", str(web), str(story), "--to", "llmc", "-o", str(whole), "-q", check=True)
    invoke("mix", str(web), str(story), "--to", "llmc", "--shard-tokens", "300", "-o",
           str(split), "-q", check=True)  # fmt: skip
    assert len(list(tmp_path.glob("split_*.bin"))) > 2
    assert _documents(tmp_path / "split.bin.json") == _documents(whole)
    warned = invoke("mix", str(web), "-o", str(tmp_path / "m.tokens.safetensors"),
                    "--shard-tokens", "300")  # fmt: skip
    assert warned.returncode == 0 and b"--shard-tokens applies to --to llmc only" in warned.stderr
    phased = invoke("mix", str(web), "--to", "llmc", "--shard-tokens", "300", "-o", str(split),
                    "--phase", "scatter", "--shard", "0/1", "--buckets", "1")  # fmt: skip
    assert phased.returncode == 2 and b"--shard-tokens splits a one-process mix" in phased.stderr


def test_buckets_under_an_object_store_prefix_give_the_same_stream(sources, tmp_path, monkeypatch):
    """``--bucket-dir`` may be a URL: a scatter job uploads its buckets and then its marker,
    a gather job fetches the markers, the duplicates found and its own bucket (fsspec's
    memory:// here; the S3 tests run the same against a real server)."""
    import embedcli.stages.mix as mix_stage
    from embedcli.stages.mix import MixOptions, run_mix
    from embedcli.stages.mix_phases import Phase, run_mix_phase

    web, story = sources
    inputs, opts = [str(web), str(story)], MixOptions(seed=2, dedup=True)
    one = tmp_path / "one.tokens.safetensors"
    run_mix(inputs, str(one), opts)
    out, prefix = tmp_path / "two.tokens.safetensors", f"memory://mix-buckets/{tmp_path.name}"
    with pytest.raises(InputError, match="no scatter job of this run has finished"):
        run_mix_phase(inputs, str(out), Phase("gather", 0, 2, prefix), opts)
    for i in range(3):
        done = run_mix_phase(inputs, str(out), Phase("scatter", i, 3, prefix, 2), opts)
        assert all(p.startswith(prefix + "/") for p in done.written.paths)
    monkeypatch.setattr(mix_stage, "dedup", lambda read: pytest.fail("a gather job hashed"))
    for j in range(2):
        run_mix_phase(inputs, str(out), Phase("gather", j, 2, prefix), opts)
    assert _stream(tmp_path / "two.tokens.manifest.json") == _stream(one)
