from __future__ import annotations

import hashlib
import threading

import pytest

from embedcli.bpe import encodings as encoding
from embedcli.bpe.encodings import EOT, R50K_SHA256, R50K_URL, _named_encoding, get_encoding
from embedcli.errors import EncodingLoadError, UsageError
from embedcli.storage import atomic

PARITY_TEXT = "Hello, do you like tea? <|endoftext|> In the sunlit terraces"
PARITY_IDS = [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114]


def test_gpt2_parity_with_reference_ids(enc):
    assert enc.encode(PARITY_TEXT, allowed_special={EOT}) == PARITY_IDS
    assert enc.decode(PARITY_IDS) == PARITY_TEXT
    assert enc.n_vocab == 50257
    assert encoding.eot_id(enc) == 50256


def test_bundled_file_is_r50k_base():
    assert hashlib.sha256(encoding.bundled_bytes()).hexdigest() == R50K_SHA256


@pytest.mark.parametrize("cache", ["fresh", "disabled"])
def test_loads_offline_whatever_the_cache(tmp_path, monkeypatch, cache):
    import tiktoken.load

    def no_network(url):
        raise AssertionError(f"network used for {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", lambda path: _local_only(path, no_network))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache") if cache == "fresh" else "")
    _named_encoding.cache_clear()
    try:
        enc = get_encoding("gpt2")
        assert enc.encode(PARITY_TEXT, allowed_special={EOT}) == PARITY_IDS
        assert get_encoding("r50k_base").encode("Hello") == [15496]
    finally:
        _named_encoding.cache_clear()


def _local_only(path, fail):
    if "://" in path:
        fail(path)
    with open(path, "rb") as f:
        return f.read()


def test_corrupt_cache_entry_is_replaced_from_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("EMBEDCLI_CACHE_DIR", str(tmp_path / "embedcli"))  # no parsed copy yet
    cached = tmp_path / hashlib.sha1(R50K_URL.encode()).hexdigest()
    cached.write_bytes(b"garbage")
    _named_encoding.cache_clear()
    try:
        assert get_encoding("gpt2").encode("Hello") == [15496]
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == R50K_SHA256
    finally:
        _named_encoding.cache_clear()


def test_unknown_encoding_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown encoding 'nope'"):
        get_encoding("nope")


def test_download_encoding_without_network_fails_fast_with_one_line(tmp_path, monkeypatch):
    import tiktoken.load

    tried = []

    def offline(path):
        tried.append(path)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    _named_encoding.cache_clear()
    with pytest.raises(EncodingLoadError) as info:
        get_encoding("cl100k_base")
    assert len(tried) == 1  # fast: one try, no retry loop
    message = str(info.value)
    assert "cl100k_base" in message and "TIKTOKEN_CACHE_DIR" in message and "\n" not in message


def test_hanging_download_times_out(tmp_path, monkeypatch):
    """The download never answers until the test lets it go; the loader's thread is then
    joined, so nothing outlives the test."""
    import tiktoken.load

    released = threading.Event()

    def hang(path):
        released.wait()
        raise ConnectionError("released by the test")

    monkeypatch.setattr(tiktoken.load, "read_file", hang)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(encoding, "LOAD_TIMEOUT_S", 0.5)
    _named_encoding.cache_clear()
    try:
        with pytest.raises(EncodingLoadError, match="timed out"):
            get_encoding("p50k_base")
    finally:
        released.set()
        for thread in threading.enumerate():
            if thread.name == "load-p50k_base":
                thread.join()
        _named_encoding.cache_clear()


def test_seeding_the_cache_is_not_an_output(tmp_path, monkeypatch):
    """A command interrupted after the bundled ranks were cached must not report the cache
    file as what it wrote ("Interrupted after writing .../0ea1e91... (complete)")."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(atomic, "COMMITTED", [])
    assert encoding.seed_tiktoken_cache()
    assert hashlib.sha256((tmp_path / _R50K_CACHE_NAME).read_bytes()).hexdigest() == R50K_SHA256
    assert atomic.COMMITTED == []


_R50K_CACHE_NAME = hashlib.sha1(R50K_URL.encode()).hexdigest()  # tiktoken's cache key


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("special", [40, 50256, 40]),
        ("text", [40, 27, 91, 437, 1659, 5239, 91, 29, 40]),
    ],
)
def test_special_policies(enc, policy, expected):
    assert enc.encode("I<|endoftext|>I", **encoding.encode_kwargs(policy)) == expected
