"""gigatoken built from another model's tokenizer file: the fast engine ``--backend auto`` tries
for ``--tokenizer``, used only where it passes the self-check against the file's own library.

gigatoken reads all three kinds: a ``tokenizer.json`` (``load_hf_json``), a SentencePiece model
(converted by gigatoken into a ``tokenizer.json`` with the model's normalizer, dummy prefix and
byte fallback), and a tiktoken rank file (``BPETokenizer.from_tiktoken``, given the family's
pre-tokenizer by name). The engine is built with exactly the special tokens the policy parses,
as for GPT-2: all of them for ``--special special`` on a ``tokenizer.json`` or rank file, none
otherwise; SentencePiece never reads a control token out of text, so none ever.

What gigatoken cannot load it says in its own words, and sometimes by panicking: a Rust panic
is ``pyo3_runtime.PanicException``, a ``BaseException``, and prints a backtrace on the process's
stderr. :func:`load` silences the backtrace and turns the panic into :class:`NotLoadable`, so the
reference library takes over with one note.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from embedcli.bpe.cache import cache_dir, keep
from embedcli.bpe.foreign import ForeignEncoding
from embedcli.bpe.rank_files import LLAMA3_SHA256

# gigatoken's name for a known rank file's pre-tokenizer (its split regex): Llama 3's pattern
# is cl100k's ("gpt4").
RANK_PRETOKENIZERS = {LLAMA3_SHA256: "gpt4"}


class NotLoadable(Exception):
    """gigatoken cannot build this tokenizer; the message says why."""


def load(enc: ForeignEncoding, special: str) -> Any:  # a gigatoken_rs tokenizer (untyped)
    """gigatoken's tokenizer for ``enc`` under the ``special`` policy.

    Raises :class:`NotLoadable` with gigatoken's reason (an error or a panic)."""
    parse_specials = special == "special"
    if enc.kind == "tiktoken":
        pretokenizer = RANK_PRETOKENIZERS.get(enc.sha256)
        if pretokenizer is None:
            raise NotLoadable("it has no pre-tokenizer known to match this rank file's pattern")
        from gigatoken.gigatoken_rs import BPETokenizer

        specials = dict(enc.special_tokens) if parse_specials else {}
        return guarded(lambda: BPETokenizer.from_tiktoken(enc.path, pretokenizer, specials))
    from gigatoken.gigatoken_rs import load_hf_json

    if enc.kind == "sentencepiece":
        text = _converted(enc)  # its control tokens left out: sentencepiece never parses them
    elif parse_specials:  # the file as it is (a 128k-token file parsed and dumped again by
        with open(enc.path, encoding="utf-8") as f:  # Python took 0.4 s of a 3 s run)
            text = f.read()
    else:
        text = _without_specials(enc)
    return guarded(lambda: load_hf_json(text))


def _without_specials(enc: ForeignEncoding) -> str:
    """The ``tokenizer.json`` without its special added tokens (a literal special token is
    text: gigatoken must not know it), kept in the cache directory by the file's sha256."""
    cached = os.path.join(cache_dir(), f"hf-{enc.sha256[:32]}-specials-as-text.json")
    try:
        with open(cached, encoding="utf-8") as kept:
            return kept.read()
    except OSError:
        pass
    with open(enc.path, encoding="utf-8") as f:
        text = _specials_dropped(f.read())
    keep(cached, text.encode("utf-8"))
    return text


def _specials_dropped(text: str) -> str:
    doc = json.loads(text)
    doc["added_tokens"] = [t for t in doc.get("added_tokens") or [] if not t.get("special")]
    return json.dumps(doc)


def _converted(enc: ForeignEncoding) -> str:
    """A SentencePiece model as gigatoken's ``tokenizer.json`` without its control tokens
    (sentencepiece never reads one out of text), converted once per model and
    gigatoken version (the conversion parses the protobuf in Python: about a second for a
    32k vocabulary) and kept in embedcli's cache directory when it is writable."""
    from importlib.metadata import version

    # gigatoken's own converter; its public Tokenizer.from_sentencepiece keeps the control
    # tokens as specials it would match in text, which sentencepiece never does.
    try:
        from gigatoken._load.sentencepiece import sentencepiece_to_tokenizer_json
    except ImportError:
        raise NotLoadable("this gigatoken version has no SentencePiece converter") from None
    cached = os.path.join(
        cache_dir(), f"sp-{enc.sha256[:32]}-gigatoken-{version('gigatoken')}-no-controls.json"
    )
    try:
        with open(cached, encoding="utf-8") as kept:
            return kept.read()
    except OSError:
        pass
    with open(enc.path, "rb") as model:
        data = model.read()
    text = guarded(lambda: sentencepiece_to_tokenizer_json(data))
    text = _specials_dropped(text if isinstance(text, str) else text.decode("utf-8"))
    keep(cached, text.encode("utf-8"))
    return text


def guarded(build: Callable[[], Any]) -> Any:
    """``build()``, with gigatoken's errors and panics as :class:`NotLoadable`."""
    with _stderr_to_nowhere():
        try:
            return build()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            first = (str(exc).strip().splitlines() or [""])[0]
            kind = "panicked" if type(exc).__name__ == "PanicException" else type(exc).__name__
            raise NotLoadable(f"it could not load the file ({kind}: {first})") from None


@contextlib.contextmanager
def _stderr_to_nowhere() -> Iterator[None]:
    """File descriptor 2 to a scratch file for the duration: Rust's panic hook writes its
    backtrace there directly, past ``sys.stderr``. Only while this is the process's one
    thread: fd 2 is every thread's, and another's messages must not vanish (a backtrace on
    stderr is the lesser harm; the panic is still caught)."""
    import threading

    if threading.active_count() > 1:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def probes_for(enc: Any) -> tuple[str, ...]:
    """The self-check's extra probes for a tokenizer: its own special tokens as literal text
    (alone, glued to words, twice over), a few of them when it has hundreds."""
    specials = sorted(getattr(enc, "special_tokens", {}) or {})[:24]
    if not specials:
        return ()
    glued = "x".join(specials)
    return (
        specials[0],
        " ".join(specials),
        f"text{glued}text {specials[-1]}{specials[-1]} {specials[0][:-1]}",
    )
