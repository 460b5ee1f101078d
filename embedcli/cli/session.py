"""What a command does around its stage, for the person at the terminal: progress bars, the
word that stdin is being read, the announcement of a large output, and the summary at the end
(which a Ctrl-C no longer interrupts: by then the output is complete)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from embedcli.cli.errors import err_console
from embedcli.progress import ProgressFactory
from embedcli.stages.results import PlanResult, StageResult

if TYPE_CHECKING:
    from rich.console import Console


def progress_enabled(quiet: bool) -> bool:
    # Under torchrun every process shares the terminal: only rank 0 draws.
    return not quiet and err_console().is_terminal and os.environ.get("RANK", "0") == "0"


def progress_factory(quiet: bool) -> ProgressFactory:
    """The stages' progress factory: rich bars on stderr, only for work long enough to watch."""
    enabled = progress_enabled(quiet)

    def factory(
        description: str, total: int | None, unit: str = "bytes"
    ) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        # blocks: the Unicode-gap sample of a first use, about 11 blocks of a fraction of a second
        worth = unit == "blocks" or (total or 0) > (1 << 20 if unit == "bytes" else 20000)
        return progress_bar(err_console, description, total, enabled=enabled and worth, unit=unit)

    return factory


def inputs_or_stdin(given: list[str] | None) -> list[str]:
    """The inputs, stdin when none are given; at a terminal, say that stdin is being read
    rather than wait in silence."""
    inputs = given or ["-"]
    if "-" in inputs and sys.stdin.isatty():
        err_console().print(
            "embedcli: reading text from the terminal; end it with Ctrl-D "
            "(or give files, or pipe text in)",
            highlight=False,
            soft_wrap=True,
        )
    return inputs


def announcer(quiet: bool) -> Callable[[str], None] | None:
    """Where a stage announces a large output before writing it."""
    if quiet or os.environ.get("RANK", "0") != "0":
        return None
    return lambda message: err_console().print(f"[bold]embedcli:[/] {message}", highlight=False)


STARTED = time.perf_counter()  # this module is imported first: the command's own clock


def show_result(result: StageResult | PlanResult, quiet: bool) -> None:
    if isinstance(result, PlanResult):  # --dry-run, asked for: shown even with --quiet
        from embedcli.cli.render import render_plan

        render_plan(err_console(), result)
        return
    if quiet or os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return
    from embedcli.cli.render import render_notes, render_stage, summary_line

    # The output is complete: a Ctrl-C or SIGTERM now would only cut the summary short, so it
    # is ignored and the command ends as it succeeded (exit 0).
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        seconds = time.perf_counter() - STARTED
        if result.output == "-" and stdout_is_pipe():  # the next stage sums up: one line here
            err_console().print(summary_line(result, seconds), highlight=False, soft_wrap=True)
            render_notes(err_console(), result.notes)
        else:
            render_stage(err_console(), result, whole_seconds=seconds)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def stdout_is_pipe() -> bool:
    """Whether stdout is a pipe or FIFO (to another process), not a terminal or a file."""
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def progress_bar(
    console: Callable[[], Console],
    description: str,
    total: int | None,
    *,
    enabled: bool,
    unit: str = "bytes",
) -> Iterator[Callable[[int], None]]:
    """A progress bar on ``console()`` (stderr) when ``enabled``; yields ``advance(n)``.
    Without a bar nothing of rich is imported (start-up of a quiet command)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn()]
    columns.append(TimeRemainingColumn())
    # No refresh thread (auto_refresh=False): a process running no extra thread can fork its
    # tokenizer workers safely. The bar is redrawn from advance(), at most 10 times a second.
    with Progress(*columns, console=console(), transient=True, auto_refresh=False) as progress:
        task = progress.add_task(description, total=total or None)
        last = [0.0]

        def advance(n: int) -> None:
            progress.advance(task, n)
            now = time.monotonic()
            if now - last[0] > 0.1:
                last[0] = now
                progress.refresh()

        yield advance
