"""inspect shows the data: corpus statistics, histograms, windows, nearest tokens, pictures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from embedcli import run_batch, run_embed, run_tokenize
from embedcli.cli.app import app
from embedcli.cli.pictures import corpus_view, sparkline
from embedcli.inspection.files import inspect_file
from embedcli.inspection.stats import histogram_of, nearest, window_stats
from embedcli.options import EmbedOptions, WindowOptions

from conftest import SAMPLE

SNAPSHOTS = Path(__file__).parent / "snapshots"
EOT = 50256


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    out = tmp_path_factory.mktemp("pictures") / "c.tokens.safetensors"
    run_tokenize([str(SAMPLE)], str(out))
    return out


def test_corpus_statistics_equal_a_plain_count(tokens, enc):
    docs = [json.loads(line)["text"] for line in (SAMPLE / "articles.jsonl").open()]
    docs.append((SAMPLE / "the-lighthouse.txt").read_text(encoding="utf-8"))
    pieces = [enc.encode(d, allowed_special={"<|endoftext|>"}) for d in docs]
    ids = [i for k, p in enumerate(pieces) for i in ([EOT] if k else []) + p]
    counts = Counter(ids)
    corpus = inspect_file(str(tokens), top=5).corpus
    assert corpus.tokens == len(ids) and corpus.documents == len(docs)
    assert corpus.distinct_ids == len(counts) and corpus.eot_count == counts[EOT]
    assert corpus.vocab_share == pytest.approx(len(counts) / 50257)
    want_top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(t.id, t.count) for t in corpus.top_tokens] == want_top
    assert [t.text for t in corpus.top_tokens] == [enc.decode([i]) for i, _ in want_top]
    lengths = [len(p) + (1 if k < len(pieces) - 1 else 0) for k, p in enumerate(pieces)]
    got = corpus.doc_length
    assert (got.min, got.max) == (min(lengths), max(lengths))
    assert got.p50 == np.percentile(lengths, 50) and got.mean == pytest.approx(np.mean(lengths))
    assert sum(got.histogram.counts) == len(docs)


def test_histograms_equal_numpy(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(size=10_007).astype(np.float32)
    h = histogram_of(np.array_split(values, 7), float(values.min()), float(values.max()), bins=9)
    want, edges = np.histogram(values, bins=9, range=(values.min(), values.max()))
    assert h.counts == want.tolist() and np.allclose(h.edges, edges)
    out = tmp_path / "e.safetensors"
    run_embed([str(SAMPLE / "the-lighthouse.txt")], str(out), EmbedOptions(dim=8))
    report = inspect_file(str(out))
    for t in report.tensors:
        assert sum(t.histogram.counts) == t.numel and len(t.histogram.edges) == 25
    table = next(t for t in report.tensors if t.name == "token_embedding.weight")
    assert sum(table.norms.histogram.counts) == table.shape[0]


def test_window_checks_equal_a_plain_loop():
    rng = np.random.default_rng(2)
    inputs = rng.integers(0, 6, size=(500, 3))
    inputs[rng.random(500) < 0.05] = EOT
    stats = window_stats(inputs, eot_id=EOT, covered=None)
    rows = [tuple(r) for r in inputs.tolist()]
    assert stats.duplicates == len(rows) - len(set(rows))
    assert stats.crossing == sum(EOT in r for r in rows)


def test_windows_file_report(tokens, tmp_path):
    out = tmp_path / "w.safetensors"
    run_batch([str(tokens)], str(out), WindowOptions(max_length=4, stride=2))
    windows = inspect_file(str(out)).windows
    assert windows.windows > 0 and windows.crossing > 0 and windows.tokens_covered > 0


def test_nearest_by_cosine():
    table = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [-1.0, 0.0]])
    assert [i for i, _ in nearest(table, 0, 3)] == [2, 1, 3]


def test_neighbors_on_a_token_table(tmp_path):
    out = tmp_path / "e.safetensors"
    run_embed([str(SAMPLE / "the-lighthouse.txt")], str(out), EmbedOptions(dim=8))
    found = inspect_file(str(out), neighbors=" the").neighbors
    assert found.id == 262 and len(found.nearest) == 10
    assert all(-1 <= n.cosine <= 1 for n in found.nearest)
    result = CliRunner().invoke(app, ["inspect", str(out), "--neighbors", " lighthouse keeper"])
    assert result.exit_code == 2 and "takes one token" in result.stderr


def test_corpus_view_snapshot(tokens):
    console = Console(width=80, record=True, color_system=None, force_terminal=False)
    console.print(corpus_view(inspect_file(str(tokens), top=5).corpus))
    text = console.export_text()
    snapshot = SNAPSHOTS / "corpus_view.txt"
    assert text == snapshot.read_text(encoding="utf-8")


def test_sparkline():
    assert sparkline([0, 1, 4, 8]) == " ▁▄█" and sparkline([0, 0]) == "  "


def test_stage_summaries_draw_one_line_each(tmp_path):
    runner = CliRunner()
    tok = runner.invoke(app, ["tokenize", str(SAMPLE), "-o", str(tmp_path / "t.safetensors")])
    assert "document lengths" in tok.stderr
    batch = runner.invoke(
        app,
        [
            "batch",
            str(tmp_path / "t.safetensors"),
            "-T",
            "4",
            "-o",
            str(tmp_path / "w.safetensors"),
        ],
    )
    assert "window starts" in batch.stderr
    embed = runner.invoke(
        app,
        [
            "embed",
            str(tmp_path / "w.safetensors"),
            "-d",
            "4",
            "-o",
            str(tmp_path / "e.safetensors"),
        ],
    )
    assert "embedding values" in embed.stderr


def test_json_carries_corpus_and_histograms(tokens):
    result = CliRunner().invoke(app, ["inspect", str(tokens), "--json", "--top", "3"])
    doc = json.loads(result.stdout)["files"][0]
    assert set(doc["corpus"]) >= {
        "documents",
        "tokens",
        "distinct_ids",
        "eot_count",
        "doc_length",
        "top_tokens",
    }
    assert (
        len(doc["corpus"]["top_tokens"]) == 3 and doc["corpus"]["top_tokens"][0]["text"] == " the"
    )


def test_plot_writes_an_image_or_names_the_extra(tokens, tmp_path):
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(app, ["inspect", str(tokens), "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code = (
        "import sys; sys.modules['matplotlib'] = None\nfrom embedcli.cli.app import main\n"
        f"sys.argv = ['embedcli', 'inspect', {str(tokens)!r}, '--plot', 'x.png']\nmain()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2 and "pip install 'embedcli[plot]'" in proc.stderr
    assert not (tmp_path / "x.png").exists()
