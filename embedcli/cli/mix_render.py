"""The summary of ``embedcli mix`` (the stream written, what each source gave it), and one
document of a token file with the source it came from (``inspect --doc``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from embedcli.cli.pictures import printable
from embedcli.units import human_bytes

if TYPE_CHECKING:
    from embedcli.inspection.documents import DocumentReport
    from embedcli.stages.mix_weights import MixWeights
    from embedcli.stages.results import MixResult


def mix_facts(result: MixResult, written: str) -> dict[str, str]:
    order = f"shuffled with seed {result.seed}" if result.shuffle else "in source order"
    dropped = sum(s.duplicates for s in result.sources)
    taken = sum(s.tokens for s in result.sources)
    if result.phase is not None:  # one job of a two-phase run: its own part of the whole
        job = {
            "job": f"{result.phase} of a two-phase run ({order})",
            "this job's documents": f"{result.documents:,}",
            "this job's ids": f"{result.tokens:,}",
            "the whole mix": f"{taken:,} tokens of documents (budget {result.budget:,})",
        }
        if result.val_output is not None:  # gather job 1 writes the split
            job["validation"] = _validation(result)
        return job | {"time": f"{result.seconds:.2f} s", "output": written}
    facts = {
        "documents": f"{result.documents:,}, {order}",
        "tokens": f"{taken:,} of documents (budget {result.budget:,}), "
        f"{result.tokens - taken:,} separators",
        "sources": f"{len(result.sources)}",
    }
    if result.dedup:
        facts["exact duplicates"] = f"{dropped:,} documents dropped"
    if result.val_output is not None:
        facts["validation"] = _validation(result)
    facts["time"] = f"{result.seconds:.2f} s"
    facts["output"] = written
    return facts


def mix_table(result: MixResult) -> Table:
    """A row a source: weight, tokens asked and taken, the share realised, passes, documents."""
    table = Table(box=None, padding=(0, 1), header_style="bold")
    for name, justify in (
        ("source", "left"),
        ("weight", "right"),
        ("target", "right"),
        ("taken", "right"),
        ("share", "right"),
        ("passes", "right"),
        ("documents", "right"),
        ("of", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    total = sum(s.tokens for s in result.sources) or 1
    for s in result.sources:
        table.add_row(
            s.name,
            f"{s.weight:.3f}",
            f"{s.target:,}",
            f"{s.tokens:,}",
            f"{s.tokens / total:.3f}",
            f"{s.repeats:.2f}",
            f"{s.documents:,}",
            f"{s.available_documents:,}" + (f" (-{s.duplicates:,} dup)" if s.duplicates else ""),
        )
    return table


def mix_line(result: MixResult) -> str:
    what = f"{result.documents:,} documents, {result.tokens:,} tokens from "
    return what + f"{len(result.sources)} sources ({human_bytes(result.written.total_bytes)})"


def render_document(console: Console, report: DocumentReport) -> None:
    """``inspect --doc``: the document's place, its source (a mixed file), ids and text."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("document", f"{report.document:,} of {report.documents:,} in {report.path}")
    facts.add_row("ids", f"{report.start:,} to {report.end:,} ({report.end - report.start:,})")
    o = report.origin or {}
    if "source" in o:
        again = f", pass {o['pass'] + 1}" if o["pass"] else ""
        inputs = ", ".join(o["inputs"])
        facts.add_row(
            "from", f"source {o['source']}: document {o['document']:,} of {inputs}{again}"
        )
    if "file" in o:
        where = next(f"{kind} {o[kind]:,}" for kind in ("line", "row", "byte") if kind in o)
        facts.add_row("read from", f"{o['file']}, {where}")
        if "id" in o:
            facts.add_row("id", printable(o["id"]))
    shown = report.ids if report.end - report.start <= len(report.ids) else [*report.ids, "..."]
    facts.add_row("first ids", Text(str(shown), style="dim"))
    if report.text is not None:
        facts.add_row("text", Text(printable(report.text)))
    console.print(
        Panel(facts, title="embedcli inspect --doc", title_align="left", border_style="blue")
    )
    for note in report.notes:
        console.print(Text.assemble(("Note: ", "bold yellow"), printable(note)), soft_wrap=True)


def render_weights(console: Console, result: MixWeights) -> None:
    """What ``mix --emit-weights`` wrote: each source's weight, files, ids and documents."""
    table = Table(box=None, pad_edge=False, show_edge=False)
    for name in ("source", "weight", "files", "ids", "documents"):
        table.add_column(name, justify="left" if name == "source" else "right")
    for s in result.sources:
        row = (s.name, f"{s.weight:.4g}", str(len(s.files)), f"{s.tokens:,}", f"{s.documents:,}")
        table.add_row(*row)
    where = "stdout" if result.output == "-" else result.output
    title = f"mix --emit-weights {result.kind}: the blend of {len(result.sources)} sources"
    console.print(Panel(table, title=title, title_align="left", expand=False))
    console.print(f"wrote {where}: nothing copied, weights by tokens", highlight=False)


def _validation(result: MixResult) -> str:
    return f"{result.val_documents:,} documents, {result.val_tokens:,} ids -> {result.val_output}"
