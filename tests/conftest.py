from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"

# Every test runs offline-safe: tiktoken's cache and embedcli's go to private directories.
os.environ.setdefault(
    "TIKTOKEN_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "embedcli-test-tiktoken")
)
os.environ.setdefault(
    "EMBEDCLI_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "embedcli-test-cache")
)

REFERENCE_TEXT = (
    "I HAD always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it "
    "was no great surprise to me to hear that, in the height of his glory, he had dropped his "
    "painting, married a rich widow, and established himself in a villa on the Riviera. "
)


@pytest.fixture
def story_text() -> str:
    return (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8")


@pytest.fixture
def story_path() -> Path:
    return SAMPLE / "the-lighthouse.txt"


@pytest.fixture(scope="session")
def enc():
    from embedcli.bpe.encodings import get_encoding

    return get_encoding("gpt2")


def assert_same_as_reference(path, embeddings, token_table, pos_table) -> None:
    """An embedcli embeddings file equals the reference pipeline's tensors, bitwise."""
    import numpy as np
    from safetensors.numpy import load_file

    data = load_file(str(path))
    assert np.array_equal(data["embeddings"], embeddings.numpy())
    assert np.array_equal(data["token_embedding.weight"], token_table.numpy())
    assert np.array_equal(data["pos_embedding.weight"], pos_table.numpy())


def imported_modules(*args: str) -> set[str]:
    """Top-level modules imported by one in-process run of ``embedcli ARGS`` (which must succeed)."""
    code = (
        "import sys\nfrom embedcli.cli.app import main\n"
        f"sys.argv = ['embedcli', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return set(proc.stdout.decode().split())


def run_embedcli(
    *args: str, input: bytes | None = None, cwd=None, env=None, timeout=120, check=False
) -> subprocess.CompletedProcess:
    """The real executable, as a user's shell would run it."""
    full_env = dict(os.environ)
    full_env.pop("EMBEDCLI_DEBUG", None)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "embedcli", *args],
        input=input,
        capture_output=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"embedcli {args} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc


def invoke(
    *args: str, input: bytes | None = None, cwd=None, env=None, check=False
) -> subprocess.CompletedProcess:
    """``embedcli ARGS`` in this process, through the console script's own ``main()`` (so
    usage errors are embedcli's one line), with stdin, stdout and stderr captured as bytes.

    The same answer as :func:`run_embedcli` without starting Python and importing torch again;
    tests of process behaviour (signals, pipes between processes, ``python -m``) keep the real
    executable.
    """
    import signal

    from typer.testing import CliRunner

    from embedcli.cli.app import main

    full_env = {"EMBEDCLI_DEBUG": None, **(env or {})}
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    with CliRunner().isolation(input=input, env=full_env) as (out, err, _):
        sys.argv = ["embedcli", *map(str, args)]
        try:
            if cwd is not None:
                os.chdir(cwd)
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = saved_argv
            os.chdir(saved_cwd)
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        stdout, stderr = out.getvalue(), err.getvalue()
    proc = subprocess.CompletedProcess(["embedcli", *args], code, stdout, stderr)
    if check and code != 0:
        raise AssertionError(f"embedcli {args} failed ({code}): {stderr.decode()}")
    return proc
