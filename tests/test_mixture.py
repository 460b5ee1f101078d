"""Training windows of several token inputs blended by weight (issue 34, item 3): the order, the
windows themselves, proportions, shuffling, resume, ranks and workers."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import embedcli.mixture
from embedcli import run_tokenize
from embedcli.data import TokenWindows, create_dataloader
from embedcli.errors import UsageError
from embedcli.mixture import MixtureWindows, is_mixture, mixture_order

from conftest import SAMPLE


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The story as a token file, the articles as a nanoGPT file, a 2-shard manifest of both."""
    tmp = tmp_path_factory.mktemp("mixture")
    story = tmp / "story.tokens.safetensors"
    run_tokenize([str(SAMPLE / "the-lighthouse.txt")], str(story))
    news = tmp / "news.bin"
    run_tokenize([str(p) for p in sorted(SAMPLE.glob("*.jsonl"))], str(news), to="nanogpt")
    for i in range(2):
        run_tokenize([str(SAMPLE)], str(tmp / "all.tokens.safetensors"), shard=(i, 2))
    return {"story": story, "news": news, "all": tmp / "all.tokens.manifest.json"}


def test_the_examples_in_the_module_hold():
    assert doctest.testmod(embedcli.mixture).failed == 0


@given(
    st.lists(st.floats(0.01, 100), min_size=1, max_size=6),
    st.integers(1, 2000),
)
def test_every_prefix_of_the_order_holds_each_source_to_its_weight(weights, total):
    source, draw = mixture_order(weights, total)
    w = np.asarray(weights) / sum(weights)
    assert source.size == total and draw.size == total
    seen = np.zeros((total, len(weights)))
    seen[np.arange(total), source] = 1
    counts = seen.cumsum(axis=0)
    # within the number of sources at most (ties among many equal small weights); about one
    # window in practice (1.17 the worst of 3,000 random cases of up to 6 sources)
    assert np.abs(counts - np.outer(np.arange(1, total + 1), w)).max() < len(weights)
    for d in range(len(weights)):  # a source's draws are numbered 0, 1, 2... in order
        assert np.array_equal(draw[source == d], np.arange(int((source == d).sum())))


def test_each_window_is_its_source_s_window_and_none_repeats(sources):
    mix = MixtureWindows([(sources["story"], 0.25), (sources["news"], 0.75)], 8, 4)
    story, news = TokenWindows(sources["story"], 8, 4), TokenWindows(sources["news"], 8, 4)
    assert len(mix) == int(min(len(story) / 0.25, len(news) / 0.75))
    shares = mix.proportions()
    assert abs(shares[str(sources["story"])] - 0.25) < 0.01
    assert abs(shares[str(sources["news"])] - 0.75) < 0.01
    for d, windows in enumerate((story, news)):
        drawn = mix.index[mix.source == d]
        assert np.unique(drawn).size == drawn.size  # no window twice: no source repeats
        for i in np.flatnonzero(mix.source == d)[:40]:
            got, want = mix[int(i)], windows[int(mix.index[i])]
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    batch = mix.__getitems__([5, 0, 17, 3])
    for row, i in enumerate([5, 0, 17, 3]):
        assert torch.equal(batch.inputs[row], mix[i][0]) and torch.equal(
            batch.targets[row], mix[i][1]
        )


def test_more_windows_than_a_source_has_start_it_again(sources):
    story = TokenWindows(sources["story"], 8, 8)
    mix = MixtureWindows({sources["story"]: 1, sources["all"]: 1}, 8, num_windows=4 * len(story))
    drawn = mix.index[mix.source == 0]
    assert drawn.size == 2 * len(story)
    assert np.array_equal(drawn, np.arange(drawn.size) % len(story))  # twice round, in order


def test_the_loader_shuffles_resumes_and_shards_a_mixture(sources):
    spec = [(str(sources["story"]), 0.4), (str(sources["all"]), 0.6)]
    full = [x for x, _ in create_dataloader(spec, 4, 8, shuffle=True, seed=7)]
    again = [x for x, _ in create_dataloader(spec, 4, 8, shuffle=True, seed=7)]
    assert all(torch.equal(a, b) for a, b in zip(full, again, strict=True))
    first = create_dataloader(spec, 4, 8, shuffle=True, seed=7)
    it = iter(first)
    head = [next(it)[0] for _ in range(3)]
    second = create_dataloader(spec, 4, 8, shuffle=True, seed=7)
    second.load_state_dict(first.state_dict())
    rest = [x for x, _ in second]
    assert all(torch.equal(a, b) for a, b in zip(head + rest, full, strict=True))
    ranks = [
        [x for x, _ in create_dataloader(spec, 4, 8, shuffle=True, seed=7, rank=r, world_size=2)]
        for r in (0, 1)
    ]
    together = sorted(map(tuple, torch.cat([b for r in ranks for b in r]).tolist()))
    assert together == sorted(map(tuple, torch.cat(full).tolist()))  # disjoint, complete
    workers = [x for x, _ in create_dataloader(spec, 4, 8, shuffle=True, seed=7, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(workers, full, strict=True))


def test_what_is_and_is_not_a_mixture():
    assert is_mixture([("a.bin", 0.5), ("b.bin", 1)]) and is_mixture({"a.bin": 1.0})
    assert not is_mixture("a.bin") and not is_mixture(["a.bin", "b.bin"])
    assert not is_mixture(np.arange(4)) and not is_mixture([("a.bin", True)])


@pytest.mark.parametrize(
    ("weights", "message"),
    [([0.0, 0.0], "not all 0"), ([1.0, -1.0], "at least 0"), ([1.0, float("nan")], "at least 0")],
)
def test_weights_that_are_not_weights_are_refused(sources, weights, message):
    spec = list(zip([sources["story"], sources["news"]], weights, strict=True))
    with pytest.raises(UsageError, match=message):
        MixtureWindows(spec, 8)


def test_sources_of_different_tokenizers_are_refused(sources, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(sources["story"]), "np") as f:  # the story, as if another encoding made it
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metadata = {**f.metadata(), "encoding": "cl100k_base"}
    other = tmp_path / "other.tokens.safetensors"
    save_file(tensors, str(other), metadata=metadata)
    MixtureWindows([(sources["story"], 1), (sources["all"], 1)], 8)  # gpt2 both: accepted
    with pytest.raises(UsageError, match="different tokenizers: .*story.* and .*other"):
        MixtureWindows([(sources["story"], 1), (other, 1)], 8)


def test_num_windows_belongs_to_a_mixture(sources):
    with pytest.raises(UsageError, match="mixture"):
        create_dataloader(str(sources["story"]), 4, 8, num_windows=10)


def test_a_source_of_weight_zero_is_switched_off(sources):
    mix = MixtureWindows([(sources["story"], 1.0), (sources["news"], 0.0)], 8)
    assert len(mix) == len(TokenWindows(sources["story"], 8)) and not (mix.source == 1).any()
    assert mix.proportions()[str(sources["news"])] == 0.0
