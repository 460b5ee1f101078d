"""Commands declared as option groups (``embedcli/cli/groups.py``): a dataclass's fields are
the command's options, with their flags, help and defaults, and the command gets the
dataclass built from what the command line gave."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from embedcli.cli.groups import grouped
from embedcli.cli.options import HelpAll

from conftest import SAMPLE, invoke


@dataclass
class Sizes:
    width: Annotated[int, typer.Option("--width", "-w", help="How wide.")] = 3
    tall: Annotated[bool, typer.Option("--tall/--short", help="How tall.")] = False


@dataclass
class Naming:
    label: Annotated[str | None, typer.Option("--label", help="What it is called.")] = None
    help_all: HelpAll = False


@dataclass
class Again:
    width: Annotated[int, typer.Option("--breadth")] = 1


@dataclass
class Bare:
    width: int


def _app() -> tuple[typer.Typer, list]:
    seen: list = []
    app = typer.Typer()

    @app.command()
    @grouped
    def shape(name: str, *, sizes: Sizes, naming: Naming) -> None:
        seen.append((name, sizes, naming))

    @app.command()
    def other() -> None:  # two commands: Typer keeps the command's name in usage
        pass

    return app, seen


def test_a_groups_fields_are_options_and_arrive_as_the_group():
    app, seen = _app()
    result = CliRunner().invoke(app, ["shape", "box", "-w", "5", "--tall", "--label", "crate"])
    assert result.exit_code == 0, result.output
    assert seen == [("box", Sizes(width=5, tall=True), Naming(label="crate"))]
    result = CliRunner().invoke(app, ["shape", "box"])
    assert result.exit_code == 0 and seen[-1] == ("box", Sizes(), Naming())
    page = CliRunner().invoke(app, ["shape", "--help"]).output
    assert all(flag in page for flag in ("--width", "How wide.", "--tall", "--short", "--label"))
    assert "sizes" not in page and "naming" not in page  # a group is not an option itself
    assert page.index("--width") < page.index("--tall") < page.index("--label")


def test_an_option_two_groups_give_is_refused_when_typer_reads_the_options():
    import inspect

    def shape(*, sizes: Sizes, again: Again) -> None: ...

    with pytest.raises(TypeError, match="options given by two groups: width"):
        inspect.signature(grouped(shape))

    def bare(*, bare: Bare) -> None: ...

    with pytest.raises(TypeError, match="Bare.width: a group's option needs a default"):
        inspect.signature(grouped(bare))


def test_batch_and_embed_take_the_tokenizing_group_whole(tmp_path):
    """The group gives batch and embed every tokenizing option tokenize has: the
    --tokenizer-option they lacked is read and checked as tokenize checks it."""
    for stage in ("tokenize", "batch", "embed"):
        proc = invoke(
            stage,
            str(SAMPLE / "the-lighthouse.txt"),
            "--tokenizer-option",
            "bos=x",
            "-o",
            str(tmp_path / f"{stage}.safetensors"),
        )
        assert proc.returncode == 2, (stage, proc.stderr)
        assert b"--tokenizer-option needs --tokenizer" in proc.stderr, stage
