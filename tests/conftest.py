from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


def pytest_configure(config: pytest.Config) -> None:
    """Caches in a directory of this run's own, removed at its end, so no run sees what an
    earlier one cached (CI starts from nothing; so does every run here). Made once, by the
    controller: xdist's workers inherit its environment. Tests that need an empty or disabled
    cache set their own with monkeypatch."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    run_dir = tempfile.mkdtemp(prefix="embedcli-test-")
    config.stash[_RUN_DIR] = run_dir
    # Every test runs offline-safe: tiktoken's cache and embedcli's go to private directories.
    os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(run_dir, "tiktoken")
    os.environ["EMBEDCLI_CACHE_DIR"] = os.path.join(run_dir, "embedcli")


def pytest_unconfigure(config: pytest.Config) -> None:
    run_dir = config.stash.get(_RUN_DIR, None)
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)


_RUN_DIR = pytest.StashKey[str]()

# Under CI=true, hypothesis draws the same examples on every run (and keeps no database): a
# failure there is a failure of the code, never of the draw. Locally it explores as usual.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


# Threads that live for the whole process by design: s3fs/fsspec run one event loop thread
# per process for every filesystem (fsspec.asyn's "fsspecIO"), started by the first S3 test,
# and aiobotocore's asyncio.to_thread calls on that loop start its default executor's threads
# ("asyncio_N"), which live as long as the loop. Nothing in embedcli uses asyncio.
def _process_thread(name: str) -> bool:
    return name == "fsspecIO" or name.startswith("asyncio_")


@pytest.fixture(autouse=True)
def _no_thread_outlives_its_test():
    """A thread a test (or the code under it) started must be finished when the test ends."""
    before = set(threading.enumerate())
    yield
    leaked = []
    for thread in set(threading.enumerate()) - before:
        if _process_thread(thread.name):
            continue
        thread.join(timeout=30)  # one finishing its last step; the bound only ends a real leak
        if thread.is_alive():
            leaked.append(thread.name)
    if leaked:
        pytest.fail(f"threads outlived the test: {', '.join(sorted(leaked))}", pytrace=False)


REFERENCE_TEXT = (
    "I HAD always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it "
    "was no great surprise to me to hear that, in the height of his glory, he had dropped his "
    "painting, married a rich widow, and established himself in a villa on the Riviera. "
)


@pytest.fixture
def memfs():
    """An empty ``memory://`` store (one per process; emptied around each test)."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


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


def story_documents(path: Path, count: int, words: int) -> Path:
    """A jsonl file at ``path`` of ``count`` documents: windows of ``words`` words of the
    sample story, one a line (the shard-set tests' corpus)."""
    import json

    story = (SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8").split()
    lines = (json.dumps({"text": " ".join(story[i : i + words])}) + "\n" for i in range(count))
    path.write_text("".join(lines), encoding="utf-8")
    return path


def token_shards(text: Path, out: Path, count: int) -> Path:
    """``tokenize TEXT -o OUT --shard I/COUNT`` for every I; the manifest's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        invoke("tokenize", str(text), "-o", str(out), "--shard", f"{i}/{count}", "-q", check=True)
    return out.parent / (out.name[: -len(".safetensors")] + ".manifest.json")
