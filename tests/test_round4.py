"""What a new user tripped over in the fourth trial (issue 36), replayed: what each says now."""

from __future__ import annotations

import collections
import shutil

import pytest

from conftest import SAMPLE, invoke

STORY = SAMPLE / "the-lighthouse.txt"


@pytest.mark.parametrize(
    ("command", "names", "never"),
    [
        ("batch", ["--num-batches", "--stride", "--dtype int32"], "--dim"),
        ("embed", ["--num-batches", "--dim", "--dtype float16"], "--stride"),
    ],
)
def test_a_full_disk_names_the_stages_own_options(tmp_path, monkeypatch, command, names, never):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - 100, 100))
    out = tmp_path / "out.safetensors"
    proc = invoke(command, str(STORY), "-T", "4", "-o", str(out))
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "has 100 B free" in err and not out.exists(), err
    assert all(name in err for name in names) and never not in err, err
