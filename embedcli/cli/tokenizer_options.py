"""The options that choose another model's tokenizer (``--tokenizer``), and the tokenizing
options of ``tokenize``, ``batch`` and ``embed`` as one group (:class:`Tokenizing`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from embedcli import options as o
from embedcli.cli.options import (
    MORE,
    TOK,
    BackendOpt,
    EncodingOpt,
    FormatOpt,
    Include,
    InputFormatOpt,
    SpecialOpt,
    SplitOnEot,
    TextKey,
    Workers,
    member,
)

TokenizerOpt = Annotated[
    str | None,
    typer.Option(
        "--tokenizer",
        metavar="SPEC",
        rich_help_panel=TOK,
        help="Another model's tokenizer, exact as its library: a tokenizer.json, a SentencePiece "
        ".model, Llama 3's tokenizer.model, a model directory, or org/name in the local "
        "Hugging Face cache (instead of --encoding).",
        show_default=False,
    ),
]
TokenizerChoices = Annotated[
    list[str] | None,
    typer.Option(
        "--tokenizer-option",
        metavar="KEY=VALUE",
        rich_help_panel=MORE,
        help="For --tokenizer: bos=TEXT or eos=TEXT (the document markers, by name), and for a "
        "rank file embedcli does not know, pattern=REGEX, special_tokens=FILE (JSON text -> "
        "id) and normalizer=NFC|NFKC|NFD|NFKD|none (what its model does to text first). "
        "Repeatable.",
        show_default=False,
    ),
]


def _choices(given: list[str]) -> dict[str, str | None]:
    """``--tokenizer-option KEY=VALUE`` as keyword arguments, checked."""
    keys = ("bos", "eos", "pattern", "special_tokens", "normalizer")
    out: dict[str, str | None] = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise typer.BadParameter(
                f"--tokenizer-option {item!r}: use KEY=VALUE, KEY one of {', '.join(keys)}"
            )
        out[key] = value
    return out


def _given(name: str) -> bool:
    """Whether the command line named option ``name`` (not only its default), asked of
    click's context wherever this Typer keeps click (vendored, or click)."""
    import importlib

    core = importlib.import_module(typer.Context.__mro__[1].__module__)  # click.core
    package = core.__name__.rpartition(".")[0]  # click, or typer._click
    ctx = importlib.import_module(f"{package}.globals").get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) is core.ParameterSource.COMMANDLINE


@dataclass
class Tokenizing:
    """The tokenizing options of ``tokenize``, ``batch`` and ``embed`` (the last two tokenize
    when given text): :meth:`options` builds the library's :class:`TokenizeOptions`."""

    encoding: EncodingOpt = o.DEFAULT_ENCODING
    tokenizer: TokenizerOpt = None
    tokenizer_options: TokenizerChoices = None
    special: SpecialOpt = None
    backend: BackendOpt = o.BACKENDS[0]
    text_key: TextKey = o.DEFAULT_TEXT_KEY
    fmt: FormatOpt = "auto"
    workers: Workers = None
    include: Include = None
    split_on_eot: SplitOnEot = False

    def options(self, eot: str | None = None) -> o.TokenizeOptions:
        """The options, checked; ``--tokenizer`` names the encoding by its file (``--eot`` is
        tokenize's alone)."""
        encoding = self.encoding
        if self.tokenizer is not None:
            from embedcli.bpe.foreign import resolve_spec

            if encoding != o.DEFAULT_ENCODING or _given("encoding"):  # --encoding gpt2 too
                raise typer.BadParameter("give --tokenizer or --encoding, not both")
            encoding = resolve_spec(self.tokenizer, **_choices(self.tokenizer_options or []))
        elif self.tokenizer_options:
            raise typer.BadParameter("--tokenizer-option needs --tokenizer")
        return o.TokenizeOptions(
            encoding=encoding,
            special=None if self.special is None else member(self.special, o.SPECIAL_POLICIES),
            backend=member(self.backend, o.BACKENDS),
            text_key=self.text_key,
            format=self.fmt,
            workers=self.workers,
            eot=None if eot is None else member(eot, o.EOT_MODES),
            include=tuple(self.include or ()),
            split_on_eot=self.split_on_eot,
        )


@dataclass
class StreamTokenizing(Tokenizing):
    """``batch``'s and ``embed``'s: ``--format`` also names a trainer's token file format."""

    fmt: InputFormatOpt = "auto"
