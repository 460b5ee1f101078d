"""``inspect --plot FILE.png|.svg``: the report's histograms as one figure, for reports and
slides. matplotlib is the optional extra ``embedcli[plot]``; nothing else imports it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from embedcli.errors import UsageError
from embedcli.inspection.report import FileReport

if TYPE_CHECKING:
    from embedcli.inspection.stats import Histogram


def histograms(reports: list[FileReport]) -> list[tuple[str, Histogram]]:
    """(title, histogram) for every histogram the reports hold, in reading order."""
    out: list[tuple[str, Histogram]] = []
    for r in reports:
        name = os.path.basename(r.path)
        if r.corpus is not None and r.corpus.doc_length is not None:
            out.append((f"{name}: document lengths (tokens)", r.corpus.doc_length.histogram))
        for t in r.tensors:
            if t.histogram is not None:
                out.append((f"{name}: {t.name} values", t.histogram))
            if t.norms is not None:
                out.append((f"{name}: {t.name} row L2 norms", t.norms.histogram))
    return out


def write_plot(reports: list[FileReport], path: str) -> int:
    """Draw every histogram into ``path`` (PNG or SVG, by suffix); returns how many."""
    if not path.endswith((".png", ".svg")):
        raise UsageError(f"--plot {path}: name a .png or .svg file")
    charts = histograms(reports)
    if not charts:
        raise UsageError("--plot: nothing to draw (no token file or float tensor with statistics)")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib (pip install 'embedcli[plot]')") from None
    fig, axes = plt.subplots(len(charts), 1, figsize=(8, 2.6 * len(charts)), squeeze=False)
    for ax, (title, h) in zip(axes[:, 0], charts, strict=True):
        edges, counts = h.edges, h.counts
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color="#3b7dd8")
        if h.log:
            ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("count")
    fig.tight_layout()
    from embedcli.storage.atomic import atomic_file

    with atomic_file(path) as f:
        fig.savefig(f, format=path.rsplit(".", 1)[1])
    plt.close(fig)
    return len(charts)
