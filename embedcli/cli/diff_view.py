"""``inspect --diff`` on the terminal: a table of the tensors that differ, the metadata keys
that differ, how the runs were made where only that differs, and a verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from embedcli.cli.pictures import printable
from embedcli.cli.render import number_text, shape_text

if TYPE_CHECKING:
    from rich.console import Console

    from embedcli.inspection.diff import DiffReport


def render_diff(console: Console, diff: DiffReport) -> None:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("tensor")
    table.add_column("status")
    table.add_column("detail")
    for name in diff.only_in_a:
        table.add_row(Text(printable(name)), Text("only in A", style="red"), "")
    for name in diff.only_in_b:
        table.add_row(Text(printable(name)), Text("only in B", style="green"), "")
    for d in diff.changed:
        detail = f"{d.a.dtype} {shape_text(d.a.shape)} -> {d.b.dtype} {shape_text(d.b.shape)}"
        table.add_row(Text(printable(d.name)), Text("changed", style="yellow"), detail)
    for d in diff.compared:
        status = Text("equal", style="green") if d.equal else Text("differs", style="yellow")
        detail = d.note or f"max |a-b| = {number_text(d.max_abs_diff)}"
        table.add_row(Text(printable(d.name)), status, detail)
    console.print(
        Text.assemble(("A ", "bold"), printable(diff.a), "\n", ("B ", "bold"), printable(diff.b))
    )
    console.print(table)
    if diff.metadata_changed:
        console.print(
            Text(
                "metadata differs: " + ", ".join(map(printable, diff.metadata_changed)),
                style="yellow",
            )
        )
    if diff.run_changed:
        console.print(
            Text(
                "made differently (not a difference; --strict counts it): "
                + ", ".join(
                    f"{printable(k)} {printable(str(a))} -> {printable(str(b))}"
                    for k, (a, b) in diff.run_changed.items()
                ),
                style="dim",
            ),
            soft_wrap=True,
        )
    if diff.identical:
        verdict = "identical"
    elif diff.tensors_identical:
        verdict = "tensors identical; metadata differs (--ignore-metadata compares tensors only)"
    else:
        verdict = "tensors differ" + ("; metadata differs too" if diff.metadata_changed else "")
    style = "bold green" if diff.identical else "bold yellow"
    console.print(Text(verdict, style=style))
