"""The package's shape: layers that import one way, no cycles, small modules, short functions,
one home per fact, honest help pages."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedcli import contract
from embedcli.cli.app import app

PACKAGE = Path(__file__).resolve().parent.parent / "embedcli"
MODULES = sorted(PACKAGE.rglob("*.py"))

# The layers, top to bottom: a module may import its own layer's modules and any layer below,
# never one above. Every import counts, those inside functions and under TYPE_CHECKING too.
LAYERS = [
    {"cli"},
    {"stages", "data"},
    {"mixture"},
    {"token_windows"},
    {"inspection"},
    {"inputs"},
    {"formats"},
    {"embedding", "windows", "window_rows", "mixing"},
    {"bpe"},
    {"documents", "storage"},
    {
        "contract",
        "errors",
        "options",
        "paths",
        "processes",
        "progress",
        "units",
        "version",
        "vocab",
    },
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The embedcli modules ``path`` imports, anywhere in it."""
    modules = {_module_name(p) for p in MODULES}
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n in modules and n != own}
    return found


GRAPH = {_module_name(p): _imports(p) for p in MODULES}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself: the public API, above everything
    return next(i for i, names in enumerate(LAYERS) if parts[1] in names)


def test_every_module_belongs_to_a_layer():
    for module in GRAPH:
        if module.count(".") and module.split(".")[1] != "__main__":
            assert _layer(module) is not None, module


def test_imports_go_down_the_layers():
    for module, imported in GRAPH.items():
        if module.split(".")[-1] == "__main__" or _layer(module) is None:
            continue
        for target in imported:
            low = _layer(target)
            assert low is not None, f"{module} imports the package's public API ({target})"
            assert low >= _layer(module), f"{module} imports {target}, a layer above it"


def test_no_import_cycles():
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if seen.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in seen:
                visit(target, [*path, target])
        seen[module] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module, [module])


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("typer", ("embedcli.cli",)),
        ("rich", ("embedcli.cli",)),
        ("click", ("embedcli.cli",)),
        (
            "torch",
            (
                "embedcli.embedding",
                "embedcli.data",
                "embedcli.mixture",
                "embedcli.token_windows",
                "embedcli.stages",
                "embedcli.inspection",
            ),
        ),
    ],
)
def test_heavy_libraries_stay_in_their_layer(library, allowed):
    for path in MODULES:
        module = _module_name(path)
        if module.startswith(allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            assert not any(n.split(".")[0] == library for n in names), f"{module} imports {library}"


@pytest.mark.parametrize(
    "first",
    [
        "embedcli.documents.columnar",
        "embedcli.formats.npy",
        "embedcli.bpe.ranges",
        "embedcli.inspection.analysis",
    ],
)
def test_any_module_imports_first(first):
    """Each module works whatever was imported before it: no registration by side effect."""
    code = (
        f"import {first}\n"
        "from embedcli.documents import FORMATS, resolve_sources\n"
        "from embedcli.formats import TOKEN_FORMATS\n"
        "from embedcli.inputs import READERS\n"
        "assert 'parquet' in FORMATS and 'arrow' in FORMATS, FORMATS\n"
        "assert set(TOKEN_FORMATS) == {'safetensors', 'nanogpt', 'llmc', 'megatron', 'npy'}\n"
        "assert [r.name for r in READERS][:4] == ['megatron', 'llmc', 'nanogpt', 'npy']\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_columnar_first_resolves_parquet(tmp_path):
    from embedcli.documents import columnar  # noqa: F401 (imported first in a fresh process below)

    path = tmp_path / "a.parquet"
    path.write_bytes(b"")
    code = (
        "import embedcli.documents.columnar\n"
        "from embedcli.documents import resolve_sources\n"
        f"print(resolve_sources([{str(path)!r}], 'parquet')[0].format)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "parquet", proc.stderr


def test_the_public_api_resolves():
    import embedcli

    for name in embedcli.__all__:
        assert getattr(embedcli, name) is not None, name
    assert "MemorySink" not in embedcli.__all__ and "gather" not in embedcli.__all__


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


@pytest.mark.parametrize("command", app.registered_commands, ids=lambda c: c.callback.__name__)
def test_a_command_names_its_option_groups_and_is_short(command):
    """A command takes its options as groups (``cli/option_groups.py``): a dozen parameters
    at most and about twenty lines of code, packed by no ``# fmt: skip``."""
    import inspect
    import textwrap

    function = inspect.unwrap(command.callback)
    assert len(inspect.signature(function).parameters) <= 12, function.__name__
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    body = node.body[1:]  # after the help page
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= 20, f"{function.__name__} has {lines} lines of code"
    for path in (PACKAGE / "cli").glob("*.py"):
        assert "fmt: skip" not in path.read_text(encoding="utf-8"), path.name


def test_only_the_contract_spells_metadata_keys():
    """Stages build metadata through contract's constants, never with bare key strings."""
    keys = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)}
    alternatives = "|".join(map(re.escape, keys))
    pattern = re.compile(rf"""["']({alternatives})["']\s*:""")
    writers = [
        "stages/batch.py",
        "stages/embed.py",
        "stages/embed_plan.py",
        "stages/tokenize.py",
        "stages/mix.py",
        "stages/mix_sources.py",
        "stages/mix_phases.py",
        "bpe/pieces.py",
        "windows.py",
        "inputs/token_files.py",
    ]
    for name in writers:
        found = pattern.findall((PACKAGE / name).read_text(encoding="utf-8"))
        assert not found, f"{name} spells metadata keys {found}; use embedcli.contract"


@pytest.mark.parametrize("command", ["tokenize", "batch", "embed", "inspect", "mix"])
def test_help_shows_no_python_types(command):
    page = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
    for label in ("<bool>", "<list[str]>", "<str>", "<int>"):
        assert label not in page, f"{command} --help shows {label}"
    assert "--help" in page


@pytest.mark.parametrize(
    "module",
    [
        "embedcli.windows",
        "embedcli.vocab",
        "embedcli.options",
        "embedcli.contract",
        "embedcli.inspection.stats",
        "embedcli.cli.pictures",
        "embedcli.bpe.tokenizer",
        "embedcli.bpe.pieces",
        "embedcli.bpe.encodings",
        "embedcli.mixing",
        "embedcli.bpe.value",
    ],
)
def test_docstring_examples_run(module):
    """The ``Example:`` blocks are documentation users copy: they must give what they show."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, module


def _type_hints(obj):
    """``typing.get_type_hints`` of ``obj``, its module's ``TYPE_CHECKING`` imports included."""
    import inspect
    import sys
    import typing

    module = sys.modules[obj.__module__]
    names = dict(vars(module))
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            exec(compile(ast.Module(node.body, []), module.__file__, "exec"), names)
    return typing.get_type_hints(obj, globalns=names)


def test_results_and_reports_hold_only_public_types():
    """Every embedcli class a public result, report or value holds in a field (or a public
    function returns), at any depth, is itself exported by ``embedcli``."""
    import dataclasses
    import typing

    import embedcli

    seen, private = set(), {}

    def walk(hint, where):
        if typing.get_origin(hint) is not None:
            for arg in typing.get_args(hint):
                walk(arg, where)
            return
        if not isinstance(hint, type) or not hint.__module__.startswith("embedcli"):
            return
        if hint.__name__ not in embedcli.__all__:
            private.setdefault(f"{hint.__module__}.{hint.__name__}", where)
        if hint in seen or not dataclasses.is_dataclass(hint):
            return
        seen.add(hint)
        hints = _type_hints(hint)
        for f in dataclasses.fields(hint):
            if not f.name.startswith("_"):
                walk(hints[f.name], f"{hint.__name__}.{f.name}")

    for name in embedcli.__all__:
        obj = getattr(embedcli, name)
        if isinstance(obj, type):
            walk(obj, name)
        elif callable(obj):
            walk(_type_hints(obj).get("return"), f"{name}()")
    assert len(seen) > 20 and private == {}
