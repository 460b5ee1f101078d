"""Rich rendering: one file view (tensors, lineage, previews) shared by ``inspect`` and every
stage's end-of-run summary, the diff view, and progress bars. The only module that knows rich.

Names and metadata come from files anyone can craft: they are shown as plain ``Text`` (never
parsed as rich markup) with control characters escaped, so a file cannot restyle or scribble on
the user's terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from embedcli.bpe.foreign import describe as describe_encoding
from embedcli.cli.mix_render import mix_facts, mix_line, mix_table
from embedcli.cli.pictures import printable
from embedcli.contract import ENCODING, EOT_ID, separator_label
from embedcli.contract import LABELS as LINEAGE
from embedcli.contract import label as lineage_label
from embedcli.stages.results import (
    BatchResult,
    EmbedResult,
    FirstWindow,
    MixResult,
    PlanResult,
    StageResult,
    TokenizeResult,
    Written,
)
from embedcli.units import bytes_rate, human_bytes, plural, rate

if TYPE_CHECKING:
    from embedcli.bpe.pieces import TokenizeStats
    from embedcli.inspection.report import FileReport, Stats
    from embedcli.windows import PlanFacts


def number_text(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def shape_text(shape: list[int] | tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def tensor_table(report: FileReport) -> Table:
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("tensor", overflow="fold")
    table.add_column("dtype")
    table.add_column("shape", no_wrap=True)
    table.add_column("elements", justify="right", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    for t in report.tensors:
        table.add_row(
            Text(printable(t.name), style="cyan"),
            t.dtype,
            shape_text(t.shape),
            f"{t.numel:,}",
            human_bytes(t.nbytes),
        )
    if not report.tensors:
        table.add_row(Text("(no tensors)", style="dim"), "", "", "", "")
    return table


def stats_table(report: FileReport) -> Table | None:
    """min/max/mean/std/distinct per tensor, or None when no statistics were computed."""
    if not any(t.stats or t.note for t in report.tensors):
        return None
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("tensor", overflow="fold")
    for col in ("min", "max", "mean", "std", "distinct"):
        table.add_column(col, justify="right", no_wrap=True)
    for t in report.tensors:
        table.add_row(Text(printable(t.name), style="cyan"), *_stats_cells(t.stats, t.note))
    return table


def _stats_cells(stats: Stats | None, note: str | None) -> list[str | Text]:
    if stats is None:
        return [Text(note or "(empty)", style="dim"), "", "", "", ""]
    cells: list[str | Text] = [
        number_text(stats.min),
        number_text(stats.max),
        number_text(stats.mean),
        number_text(stats.std),
        number_text(stats.distinct),
    ]
    if stats.nan or stats.inf:
        cells[2] = Text(f"{cells[2]} ({stats.nan} nan, {stats.inf} inf)", style="yellow")
    return cells


def metadata_table(metadata: dict[str, str] | None, embedcli: bool) -> Table | None:
    if not metadata:
        return None
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    keys = list(metadata)
    if embedcli:
        keys = [k for k in LINEAGE if k in metadata] + sorted(k for k in keys if k not in LINEAGE)
    else:
        keys = sorted(keys)
    for key in keys:
        label = lineage_label(key, metadata) if embedcli else key
        value = metadata[key]
        if embedcli and key == ENCODING:  # a tokenizer file's name, readable
            value = describe_encoding(value)
        if len(value) > 300:
            value = value[:300] + f"... ({len(value):,} characters)"
        table.add_row(Text(printable(label)), Text(printable(value)))
    return table


def file_view(report: FileReport, *, title: str | None = None) -> Group:
    """The one view of a safetensors file, used by ``inspect`` and by stage summaries."""
    parts: list = []
    heading = Text.assemble(
        (printable(title or report.path), "bold"),
        f"  {human_bytes(report.file_size)}, header {human_bytes(report.header_size)}, "
        f"{len(report.tensors)} tensor{'s' if len(report.tensors) != 1 else ''}",
        f" in {plural(len(report.files), 'file')}" if report.files else "",
    )
    parts.append(heading)
    if report.parts:
        from embedcli.cli.pictures import parts_table

        parts.append(parts_table(report.parts))
    meta = metadata_table(report.metadata, embedcli=report.kind is not None)
    if meta is not None:
        label = f"embedcli lineage ({report.kind})" if report.kind else "metadata"
        parts.append(Panel(meta, title=label, title_align="left", border_style="dim"))
    parts.append(tensor_table(report))
    stats = stats_table(report)
    if stats is not None:
        parts.append(Text(""))
        parts.append(stats)
    parts += data_pictures(report)
    for name, text in report.previews.items():
        parts.append(Text(f"\n{printable(name)}", style="bold cyan"))
        parts.append(Text(text))
    if report.decode_note:
        parts.append(Text(f"note: {printable(report.decode_note)}", style="yellow"))
    for item in report.decoded:
        ids = item.ids
        shown: list[object] = [*ids] if len(ids) <= 32 else [*ids[:32], "..."]
        parts.append(
            Text.assemble(
                (f"{item.tensor}[{item.row}] ", "bold"),
                (str(shown), "dim"),
                "\n  ",
                repr(item.text),
            )
        )
    return Group(*parts)


def data_pictures(report: FileReport) -> list:
    """The data itself: corpus, windows, value histograms and row norms, nearest tokens."""
    from embedcli.cli.pictures import corpus_view, histogram_table, neighbors_view, windows_view

    parts: list = []
    if report.corpus is not None:
        parts.append(Panel(corpus_view(report.corpus), title="corpus", title_align="left"))
    if report.windows is not None:
        parts.append(Panel(windows_view(report.windows), title="windows", title_align="left"))
    rows = []
    for t in report.tensors:
        if t.histogram is not None:
            rows.append((f"{printable(t.name)} values", t.histogram, ""))
        if t.norms is not None:
            mean = f", mean {t.norms.mean:.4g}"
            rows.append((f"{printable(t.name)} row norms", t.norms.histogram, mean))
    if rows:
        parts += [Text(""), histogram_table(rows)]
    if report.neighbors is not None:
        parts += [Text(""), neighbors_view(report.neighbors)]
    return parts


def render_report(console: Console, report: FileReport) -> None:
    console.print(file_view(report))


# --------------------------------------------------------------------------- stage summaries


def written_text(written: Written) -> str:
    """``corpus.tokens.safetensors (3.9 KB)``, ``<stdout>``, or ``INDEX + K files (SIZE)``."""
    if len(written.paths) > 1:
        return (
            f"{written.paths[written.main]} + {plural(len(written.paths) - 1, 'file')} "
            f"({human_bytes(written.total_bytes)})"
        )
    path, size = written.paths[0], written.sizes[0]
    if path == "-":
        return "<stdout>"
    return path if size is None else f"{path} ({human_bytes(size)})"


def _input_text(stats: TokenizeStats) -> str:
    """The text's size, and what was read when that differs (compressed files, JSON)."""
    text, read = stats.text_bytes, stats.input_bytes
    if not text or abs(text - read) <= read / 100:
        return human_bytes(read)
    return f"{human_bytes(text)} of text ({human_bytes(read)} read)"


def _skipped(files: list[str]) -> dict[str, str]:
    """Files input directories did not give: their count and the first few names."""
    if not files:
        return {}
    names = ", ".join(files[:5]) + (", ..." if len(files) > 5 else "")
    plural = "s" if len(files) != 1 else ""
    return {"skipped": f"{len(files)} file{plural} in input directories ({names}; see --include)"}


def _replaced(count: int) -> dict[str, str]:
    if not count:
        return {}
    plural = "s" if count != 1 else ""
    return {"replaced": f"{count:,} lone surrogate{plural} (JSON \\ud800-\\udfff) as U+FFFD"}


def tokenize_facts(stats: TokenizeStats) -> dict[str, str]:
    mark = _marker(stats)
    return {
        "documents": f"{stats.documents:,}",
        "tokens": f"{stats.tokens:,}",
        "input": _input_text(stats),
        "tokens/byte": f"{stats.tokens / max(stats.text_bytes or stats.input_bytes, 1):.3f}",
        "encoding": f"{describe_encoding(stats.encoding)} (vocab {stats.vocab_size:,}, {mark} {stats.eot_id})",
        **_literal(stats, mark),
        f"{mark} placed": stats.eot,
        "backend": stats.backend + (f" ({stats.backend_note})" if stats.backend_note else ""),
        **_replaced(stats.replaced),
        **_skipped(stats.skipped),
        "tokenize time": f"{stats.seconds:.2f} s",
        "throughput": f"{bytes_rate(stats.input_bytes, stats.seconds)}, "
        f"{rate(stats.tokens, stats.seconds, 'tok')}",
    }


def _marker(stats: TokenizeStats) -> str:
    """The document marker: ``<|endoftext|>``, or another tokenizer's by role and text
    (``EOS <｜end▁of▁sentence｜>``)."""
    if not stats.tokenizer:
        return stats.separator_text or "separator"
    if not stats.separator_text:
        return "document marker"
    role = separator_label({**stats.tokenizer, EOT_ID: str(stats.eot_id)}).split(" (")[0]
    return f"{role} {stats.separator_text}"


def _literal(stats: TokenizeStats, mark: str) -> dict[str, str]:
    """How many special tokens the text held literally: GPT-2's ``<|endoftext|>``, or every
    special token of another model's tokenizer, the most frequent by name."""
    if not stats.tokenizer:
        return {f"literal {mark}": f"{stats.special_found:,} ({stats.special})"}
    ordered = sorted(stats.specials_found.items(), key=lambda kv: (-kv[1], kv[0]))
    names = ", ".join(f"{name} {n:,}" for name, n in ordered[:4])
    more = f", {len(ordered) - 4:,} more" if len(ordered) > 4 else ""
    value = f"{stats.special_found:,} ({stats.special})" + (f": {names}{more}" if names else "")
    return {"literal specials": value}


def plan_facts(plan: PlanFacts, dtype: str) -> dict[str, str]:
    order = "text order" if plan.shuffle_seed is None else f"shuffled (seed {plan.shuffle_seed})"
    return {
        "windows": f"{plan.windows:,} of {plan.available:,} ({plural(plan.batches, 'batch')} of "
        f"{plan.batch_size}{', last kept' if not plan.drop_last else ''})",
        "max length / stride": f"{plan.max_length} / {plan.stride}",
        "inputs, targets": f"({plan.windows}, {plan.max_length}) {dtype}, {order}",
        "tokens covered": _coverage(plan),
    }


def _coverage(plan: PlanFacts) -> str:
    """Covered tokens, and where every other token went."""
    other = plan.tokens - plan.tokens_covered - plan.tail_dropped
    left = plan.available - plan.windows
    if left:  # --num-batches, or a partial last batch: the tail is what was not asked for
        kept = "--num-batches or a partial last batch"
        where = f"{plan.tail_dropped:,} past the last kept window, {plural(left, 'window')} "
        where += f"not kept: {kept}"
    else:
        where = f"{plan.tail_dropped:,} dropped at the tail"
    if other > 0:
        why = "document tails" if not plan.cross_docs else "stride gaps, dropped batches"
        where += f", {other:,} elsewhere ({why})"
    return f"{plan.tokens_covered:,} of {plan.tokens:,} ({where})"


def stage_facts(result: StageResult) -> dict[str, str]:
    """The facts a stage's summary lists, in order, as text."""
    if isinstance(result, TokenizeResult):
        return _tokenize_result_facts(result)
    if isinstance(result, MixResult):
        return mix_facts(result, written_text(result.written))
    facts = tokenize_facts(result.tokenized) if result.tokenized else {}
    if isinstance(result, BatchResult):
        if not result.tokenized:
            facts["input"] = f"{result.input_ids:,} ids"
        facts.update(plan_facts(result.plan, result.dtype))
        facts["time"] = f"{result.seconds:.2f} s"
        facts["output"] = written_text(result.written)
        return facts
    return {**facts, **_embed_facts(result)}


def _tokenize_result_facts(result: TokenizeResult) -> dict[str, str]:
    facts = tokenize_facts(result.stats)
    if result.format != "safetensors":
        facts["format"] = result.format
    facts["output"] = written_text(result.written)
    if result.val_output is not None and result.stats.val is not None:
        val = result.stats.val
        facts["validation"] = (
            f"{val.documents:,} documents, {val.tokens:,} tokens -> {result.val_output}"
        )
    if result.shard is not None and result.shard_files is not None:
        (index, count), (files, total) = result.shard, result.shard_files
        facts["shard"] = f"{index} of {count} ({files} of {total} files)"
        facts["manifest"] = result.manifest or ""
    return facts


def _embed_facts(result: EmbedResult) -> dict[str, str]:
    n, t, dim = result.shape
    facts = {}
    if result.plan is None:
        facts["input"] = f"windows ({n:,}, {t})"
    else:
        facts.update(plan_facts(result.plan, "int64"))
    if result.processes is not None:
        world, device, rank = result.processes
        facts["processes"] = f"{world} (torchrun, {device}); this is rank {rank}"
    seconds, nbytes = result.embed_seconds, result.bytes_planned
    positional = f" ({result.context_length}, {dim})" if result.has_pos else ""
    facts.update(
        {
            "embeddings": f"({n:,}, {t}, {dim}) {result.dtype} on {result.device}",
            "token table": f"({result.vocab_size:,}, {dim}) {result.tables}",
            "positional": result.pos + positional,
            "written": human_bytes(nbytes) + ("" if result.tables_saved else " (tables not saved)"),
            "embed time": f"{seconds:.2f} s ({rate(n, seconds, 'windows')}, "
            f"{bytes_rate(nbytes, seconds)})",
            "stage time": f"{result.total_seconds:.2f} s (reading, planning, embedding, writing)",
            "output": written_text(result.written),
        }
    )
    return facts


def _first_window(first: FirstWindow) -> Text:
    shown = first.ids if len(first.ids) <= 32 else [*first.ids[:32], "..."]
    return Text.assemble(("first window ", "bold"), (str(shown), "dim"), "\n  ", repr(first.text))


def stage_pictures(result: StageResult) -> list:
    """One compact histogram line a stage: document lengths, window starts, embedding values."""
    from embedcli.cli.pictures import histogram_line
    from embedcli.inspection.stats import doc_length_stats

    if isinstance(result, MixResult):
        return [mix_table(result)]
    stats = result.stats if isinstance(result, TokenizeResult) else result.tokenized
    lines = []
    if stats is not None and stats.doc_offsets is not None and stats.doc_offsets.size > 1:
        lengths = doc_length_stats(stats.doc_offsets)
        if lengths is not None:
            lines.append(histogram_line("document lengths", lengths.histogram, " tokens"))
    if isinstance(result, BatchResult) and result.coverage is not None:
        lines.append(histogram_line("window starts", result.coverage, " (token position)"))
    if isinstance(result, EmbedResult) and result.values is not None:
        lines.append(histogram_line("embedding values", result.values, " (first chunk)"))
    return lines


def plan_facts_text(plan: PlanResult) -> dict[str, str]:
    """A dry run's facts as text: what tokenize would write, or the windows batch and embed
    would make."""
    facts: dict[str, str] = {}
    if plan.token_format is not None:
        facts["token format"] = f"{plan.token_format}, <|endoftext|> {plan.eot}"
    if plan.files_read is not None:
        facts["files read"] = f"{plan.files_read:,}"
    if plan.estimated_tokens is not None:
        facts["tokens"] = f"about {plan.estimated_tokens:,} (0.25 a byte, typical of English prose)"
    if plan.windows is not None:
        facts["windows"] = f"{plan.windows:,}"
    return facts


def render_plan(console: Console, plan: PlanResult) -> None:
    """``--dry-run``: what would be read and written; nothing was."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("inputs", f"{plural(len(plan.inputs), 'file')}, {human_bytes(plan.input_bytes)}")
    for key, value in plan_facts_text(plan).items():
        facts.add_row(Text(printable(key)), Text(printable(value)))
    for name, dtype, shape in plan.tensors:
        facts.add_row(Text(printable(name)), f"{dtype} {shape_text(shape)}")
    for path, size in plan.outputs:
        facts.add_row(
            "would write",
            Text(printable(path) + ("" if size is None else f" ({human_bytes(size)})")),
        )
    if plan.total_bytes:
        facts.add_row("total", human_bytes(plan.total_bytes))
    title = f"embedcli {plan.stage} --dry-run: nothing written"
    console.print(Panel(facts, title=title, title_align="left", border_style="yellow"))
    for note in plan.notes:
        console.print(Text.assemble(("Note: ", "bold yellow"), printable(note)), soft_wrap=True)


def summary_line(result: StageResult, whole_seconds: float) -> str:
    """A stage's summary in one line, for a stage whose output goes down a pipe to the next
    (``tokenize -o - | batch - -o - | embed -``): the last stage shows the whole summary.

    Example: ``embedcli tokenize: 3 documents, 854 tokens -> <stdout> (0.41 s)``
    """
    if isinstance(result, TokenizeResult):
        what = f"{plural(result.stats.documents, 'document')}, {result.stats.tokens:,} tokens"
        if result.format != "safetensors":
            what += f" ({result.format})"
    elif isinstance(result, BatchResult):
        ids = result.tokenized.tokens if result.tokenized else result.input_ids
        plan = result.plan
        what = (
            f"{ids:,} ids, {plural(plan.windows, 'window')} ({plan.windows}, {plan.max_length}) "
            f"{result.dtype}"
        )
    elif isinstance(result, MixResult):
        what = mix_line(result)
    else:
        n, t, dim = result.shape
        what = f"embeddings ({n}, {t}, {dim}) {result.dtype} on {result.device}"
    return (
        f"embedcli {result.stage}: {what} -> {written_text(result.written)} ({whole_seconds:.2f} s)"
    )


def render_stage(
    console: Console, result: StageResult, *, whole_seconds: float | None = None
) -> None:
    """End-of-stage summary on stderr: the stage's facts, then the output file's tensors."""
    from embedcli.inspection.report import header_report, torch_repr

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    shown = stage_facts(result)
    if whole_seconds is not None:  # start-up and imports (torch) included: the wall clock
        shown["whole command"] = f"{whole_seconds:.2f} s"
    for key, value in shown.items():
        facts.add_row(Text(printable(key)), Text(printable(value)))
    parts: list = [facts, *stage_pictures(result)]
    if isinstance(result, BatchResult) and result.first_window is not None:
        parts.append(_first_window(result.first_window))
    if isinstance(result, EmbedResult) and result.table_head is not None:
        parts.append(Text("token_embedding.weight[:3]\n" + torch_repr(result.table_head)))
    if result.header is not None:
        parts.append(tensor_table(header_report(result.header)))
    console.print(
        Panel(
            Group(*parts), title=f"embedcli {result.stage}", title_align="left", border_style="blue"
        )
    )
    render_notes(console, result.notes)


def render_notes(console: Console, notes: list[str]) -> None:
    for note in notes:  # outside the panel, unwrapped: commands in them can be copied
        console.print(Text.assemble(("Note: ", "bold yellow"), printable(note)), soft_wrap=True)
