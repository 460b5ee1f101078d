"""The package's shape: small modules, short functions, one home per fact, honest help pages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedcli import contract
from embedcli.cli import app

PACKAGE = Path(__file__).resolve().parent.parent / "embedcli"
MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_small_and_functions_short(path):
    source = path.read_text(encoding="utf-8")
    assert source.count("\n") <= 500, f"{path.name}: split it by idea"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:] or body  # the docstring (a command's help page) is not code
            lines = node.end_lineno - body[0].lineno + 1
            assert lines <= 60, f"{path.name}:{node.lineno} {node.name} has {lines} lines"


def test_only_the_contract_spells_metadata_keys():
    """Stages build metadata through contract's constants, never with bare key strings."""
    keys = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)}
    alternatives = "|".join(map(re.escape, keys))
    pattern = re.compile(rf"""["']({alternatives})["']\s*:""")
    writers = ["stages.py", "embed_plan.py", "tokenizer.py", "windows.py", "inputs/token_files.py"]
    for name in writers:
        found = pattern.findall((PACKAGE / name).read_text(encoding="utf-8"))
        assert not found, f"{name} spells metadata keys {found}; use embedcli.contract"


@pytest.mark.parametrize("command", ["tokenize", "batch", "embed", "inspect"])
def test_help_shows_no_python_types(command):
    page = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
    for label in ("<bool>", "<list[str]>", "<str>", "<int>"):
        assert label not in page, f"{command} --help shows {label}"
    assert "--help" in page
