"""Terminal pictures of the data, for ``summary.py``: sparklines, a bar chart of document
lengths, the corpus, windows and nearest-token tables.

Drawn with block characters in rich ``Text``: a console that is not a terminal gets them
without colour, and rich honours ``NO_COLOR``. Token texts are shown with ``repr`` so that
spaces, newlines and control characters are visible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from embedcli.inspection.report import Part
    from embedcli.inspection.stats import (
        CorpusStats,
        Histogram,
        Neighbors,
        TopToken,
        WindowStats,
    )

BLOCKS = " ▁▂▃▄▅▆▇█"
RIGHT: Literal["right"] = "right"
LEFT: Literal["left"] = "left"


def printable(value: object) -> str:
    """``str(value)`` with control and other non-printing characters escaped (``\\x1b``)."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def sparkline(counts: list[int]) -> str:
    """One character a bin, its height the count (``' '`` for an empty bin).

    Example:
        >>> sparkline([0, 1, 4, 8])
        ' ▁▄█'
    """
    top = max(counts) if counts else 0
    if top <= 0:
        return " " * len(counts)
    return "".join(BLOCKS[0 if c == 0 else max(1, round(c / top * 8))] for c in counts)


def _num(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def histogram_line(label: str, histogram: Histogram, unit: str = "") -> Text:
    """``label  ▁▃█▅▂  min .. max``: one compact line (``label  all 618 tokens`` when every
    value is the same)."""
    if histogram.single is not None:
        return Text.assemble((f"{label}  ", "bold"), f"all {_num(histogram.single)}{unit}")
    edges = histogram.edges
    return Text.assemble(
        (f"{label}  ", "bold"),
        (sparkline(histogram.counts), "cyan"),
        f"  {_num(edges[0])} .. {_num(edges[-1])}{unit}",
        " (log bins)" if histogram.log else "",
    )


def histogram_table(rows: list[tuple[str, Histogram, str]]) -> Table:
    """Aligned histogram lines: ``label  sparkline  min .. max extra``."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(style="cyan")
    table.add_column()
    for label, histogram, extra in rows:
        if histogram.single is not None:
            table.add_row(Text(label), "", f"all {_num(histogram.single)}{extra}")
            continue
        edges = histogram.edges
        scale = " (log bins)" if histogram.log else ""
        span = f"{_num(edges[0])} .. {_num(edges[-1])}{extra}{scale}"
        table.add_row(Text(label), sparkline(histogram.counts), span)
    return table


def bar_chart(histogram: Histogram, width: int = 40) -> Table:
    """A bar a bin: ``[low, high)  count  ████``."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="dim")
    table.add_column(justify="right")
    table.add_column()
    counts, edges = histogram.counts, histogram.edges
    top = max(counts) or 1
    for i, count in enumerate(counts):
        bar = "█" * round(count / top * width) or ("▏" if count else "")
        table.add_row(f"{_num(edges[i])} – {_num(edges[i + 1])}", f"{count:,}", Text(bar, "cyan"))
    return table


def corpus_view(corpus: CorpusStats) -> Group:
    """Documents, tokens, vocabulary use, document lengths and the top tokens."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    if corpus.documents is not None:
        facts.add_row("documents", f"{corpus.documents:,}")
    facts.add_row("tokens", f"{corpus.tokens:,}")
    share = corpus.vocab_share
    facts.add_row(
        "distinct ids",
        f"{corpus.distinct_ids:,}" + (f" ({share:.1%} of the vocabulary)" if share else ""),
    )
    if corpus.eot_count is not None:
        facts.add_row(corpus.eot_label, f"{corpus.eot_count:,}")
    if corpus.out_of_vocab:
        facts.add_row(
            Text("out of vocabulary", "bold red"),
            Text(f"{corpus.out_of_vocab:,} ids (shown as <invalid id N>)", "red"),
        )
    parts: list[RenderableType] = [facts]
    lengths = corpus.doc_length
    if lengths is not None:
        figures: list[tuple[str, float]] = [("min", lengths.min), ("p50", lengths.p50)]
        figures += [("p90", lengths.p90), ("max", lengths.max), ("mean", lengths.mean)]
        summary = ", ".join(f"{k} {_num(v)}" for k, v in figures)
        parts += [
            Text(f"\ndocument lengths (tokens): {summary}", "bold"),
            bar_chart(lengths.histogram),
        ]
    if corpus.top_tokens:
        parts += [Text("\ntop tokens", "bold"), top_tokens_table(corpus.top_tokens)]
    return Group(*parts)


def top_tokens_table(tokens: list[TopToken]) -> Table:
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name, justify in (
        ("id", RIGHT),
        ("count", RIGHT),
        ("share", RIGHT),
        ("text", LEFT),
    ):
        table.add_column(name, justify=justify)
    for t in tokens:
        text = "" if t.text is None else repr(t.text)
        table.add_row(str(t.id), f"{t.count:,}", f"{t.share:.2%}", Text(text))
    return table


def windows_view(windows: WindowStats) -> Table:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("windows", f"{windows.windows:,}")
    if windows.tokens_covered is not None:
        facts.add_row("tokens covered", f"{windows.tokens_covered:,}")
    if windows.crossing is not None:
        facts.add_row("crossing a document boundary", f"{windows.crossing:,}")
    facts.add_row("duplicate windows", f"{windows.duplicates:,}")
    return facts


def neighbors_view(neighbors: Neighbors) -> Group:
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for name, justify in (("id", RIGHT), ("cosine", RIGHT), ("text", LEFT)):
        table.add_column(name, justify=justify)
    for n in neighbors.nearest:
        table.add_row(str(n.id), f"{n.cosine:.4f}", Text(repr(n.text)))
    title = f"nearest to {neighbors.text!r} (id {neighbors.id}) in {neighbors.table}"
    return Group(Text(title, "bold"), table)


def parts_table(files: list[Part]) -> Table:
    """The token files of a sharded run, with their documents and tokens."""
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("part")
    table.add_column("documents", justify="right")
    table.add_column("tokens", justify="right")
    for p in files:
        documents = "?" if p.documents is None else f"{p.documents:,}"
        tokens = "?" if p.tokens is None else f"{p.tokens:,}"
        table.add_row(Text(printable(p.path)), documents, tokens)
    return table
