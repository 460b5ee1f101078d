"""``embedcli mix --emit-weights json|megatron`` (issue 33, item 2): the blend of the inputs as
they are, nothing copied; read back by embedcli's loader and by Megatron-LM's blend parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from embedcli import run_tokenize
from embedcli.data import create_dataloader
from embedcli.errors import UsageError
from embedcli.stages.mix import MixOptions
from embedcli.stages.mix_weights import run_mix_weights

from conftest import SAMPLE, invoke

STORY, NEWS = SAMPLE / "the-lighthouse.txt", sorted(SAMPLE.glob("*.jsonl"))


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blend")
    out = {"story": tmp / "story.tokens.safetensors", "news": tmp / "news.tokens.safetensors"}
    run_tokenize(STORY, out["story"])
    run_tokenize(NEWS, out["news"])
    for name, text in (("st", STORY), ("nw", NEWS)):
        run_tokenize(text, tmp / name, to="megatron")
        out[name] = tmp / f"{name}.bin"
    return out


def test_the_json_blend_is_what_the_loader_reads(tokens, tmp_path):
    where = tmp_path / "configs"
    where.mkdir()
    blend = where / "blend.json"
    proc = invoke(
        "mix", str(tokens["story"]), str(tokens["news"]), "--weights", "0.3,0.7",
        "--emit-weights", "json", "-o", str(blend),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert b"nothing copied" in proc.stderr and proc.stdout == b""
    doc = json.loads(blend.read_text())
    assert doc["format"] == "embedcli-mixture" and doc["encoding"] == "gpt2"
    assert [(s["name"], s["weight"]) for s in doc["sources"]] == [("story", 0.3), ("news", 0.7)]
    relative = os.path.relpath(tokens["story"], where)  # beside the JSON: they move together
    assert doc["sources"][0]["files"] == [relative]
    spec = [(str(tokens["story"]), 0.3), (str(tokens["news"]), 0.7)]
    from_json = [x for x, _ in create_dataloader(str(blend), 4, 8, shuffle=True, seed=2)]
    from_list = [x for x, _ in create_dataloader(spec, 4, 8, shuffle=True, seed=2)]
    assert from_json and all(torch.equal(a, b) for a, b in zip(from_json, from_list, strict=True))
    assert set(create_dataloader(blend, 4, 8).dataset.proportions()) == {"story", "news"}


def test_default_weights_are_each_source_s_share_of_the_tokens(tokens, tmp_path):
    result = run_mix_weights([tokens["story"], tokens["news"]], tmp_path / "b.json")
    shares = [s.tokens for s in result.sources]
    assert [s.weight for s in result.sources] == pytest.approx([n / sum(shares) for n in shares])


def test_the_megatron_blend_parses_in_megatron_core(tokens, tmp_path):
    proc = invoke("mix", str(tokens["st"]), str(tokens["nw"]), "--weights", "st=0.25,nw=0.75",
                  "--emit-weights", "megatron", "-o", "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()  # only the blend on stdout; the summary on stderr
    prefix = str(tokens["st"])[: -len(".bin")], str(tokens["nw"])[: -len(".bin")]
    assert text == f"0.25 {prefix[0]} 0.75 {prefix[1]}\n"
    pytest.importorskip("megatron.core")
    code = (
        "import sys, json, warnings; warnings.simplefilter('ignore')\n"
        "from megatron.core.datasets.utils import get_blend_from_list\n"
        "print(json.dumps(get_blend_from_list(sys.argv[1].split())))"
    )
    run = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [list(prefix), [0.25, 0.75]]


def test_megatron_needs_one_megatron_dataset_a_source(tokens, tmp_path):
    with pytest.raises(UsageError, match="not a Megatron dataset"):
        run_mix_weights([tokens["story"]], "-", kind="megatron")
    from embedcli.stages.mix_weights import BlendSource, _megatron

    both = BlendSource("both", [str(tokens["st"]), str(tokens["nw"])], 1.0, 855, 6)
    with pytest.raises(UsageError, match="source both has 2 files"):
        _megatron([both])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tokens", "1000"], b"--tokens needs the documents written"),
        (["--dedup", "exact"], b"--dedup exact needs"),
        (["--val-fraction", "0.1"], b"--val-fraction/--val-tokens needs"),
        (["--to", "nanogpt"], b"leave out --to"),
        (["--emit-weights", "yaml"], b"yaml"),
    ],
)
def test_options_that_copy_documents_are_refused_and_nothing_is_written(
    tokens, tmp_path, args, message
):
    out = tmp_path / "b.json"
    proc = invoke("mix", str(tokens["story"]), str(tokens["news"]), "--emit-weights", "json",
                  *args, "-o", str(out))  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr and not out.exists(), proc.stderr
    with pytest.raises(UsageError):
        run_mix_weights([tokens["story"]], out, MixOptions(tokens=5))


def test_a_blend_is_written_locally(tokens):
    with pytest.raises(UsageError, match="write the blend to a local file or stdout"):
        run_mix_weights([tokens["story"]], "s3://bucket/blend.json")
