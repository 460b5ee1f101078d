"""The summary of ``embedcli mix``: the stream written and what each source gave it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from embedcli.units import human_bytes

if TYPE_CHECKING:
    from embedcli.stages.results import MixResult


def mix_facts(result: MixResult, written: str) -> dict[str, str]:
    order = f"shuffled with seed {result.seed}" if result.shuffle else "in source order"
    dropped = sum(s.duplicates for s in result.sources)
    taken = sum(s.tokens for s in result.sources)
    if result.phase is not None:  # one job of a two-phase run: its own part of the whole
        return {
            "job": f"{result.phase} of a two-phase run ({order})",
            "this job's documents": f"{result.documents:,}",
            "this job's ids": f"{result.tokens:,}",
            "the whole mix": f"{taken:,} tokens of documents (budget {result.budget:,})",
            "time": f"{result.seconds:.2f} s",
            "output": written,
        }
    facts = {
        "documents": f"{result.documents:,}, {order}",
        "tokens": f"{taken:,} of documents (budget {result.budget:,}), "
        f"{result.tokens - taken:,} separators",
        "sources": f"{len(result.sources)}",
    }
    if result.dedup:
        facts["exact duplicates"] = f"{dropped:,} documents dropped"
    if result.val_output is not None:
        facts["validation"] = (
            f"{result.val_documents:,} documents, {result.val_tokens:,} ids -> {result.val_output}"
        )
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
