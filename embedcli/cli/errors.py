"""How the command line fails: one line on stderr and a documented exit status.

Errors a user can fix are one line on stderr (``Error: ...``) and a non-zero exit: 1 for data
and runtime errors, 2 for usage errors, 130 when interrupted (143 on SIGTERM, 141 on a closed
pipe). ``--verbose`` or ``EMBEDCLI_DEBUG=1`` shows the traceback instead, for bug reports.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from typing import TYPE_CHECKING

import typer

from embedcli.errors import EmbedcliError

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def err_console() -> Console:
    """rich's console on stderr, made at first use: a quiet run that succeeds never imports
    rich (46 ms of a small command's start-up)."""
    from rich.console import Console

    return Console(stderr=True)


def debug_requested() -> bool:
    """EMBEDCLI_DEBUG=1 (or any value but 0): tracebacks, as --verbose."""
    return os.environ.get("EMBEDCLI_DEBUG", "") not in ("", "0")


state = {"verbose": debug_requested()}  # reset by each main(): a run never inherits another's

# click's ClickException and Abort, wherever this Typer keeps click (vendored, or click).
CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
CLICK_ABORT: type[BaseException] = getattr(
    sys.modules[CLICK_ERROR.__module__], "Abort", KeyboardInterrupt
)

# Typer's parameter messages carry pydantic's wording (typer 0.29+) or click's (earlier);
# these say the same in embedcli's.
_REWORDED = [
    (re.compile(r"Value error, "), ""),
    (re.compile(r"'([^']*)' is not a valid (?:int range|integer)"), r"'\1' expects a whole number"),
    (re.compile(r"'([^']*)' is not a valid float(?: range)?"), r"'\1' expects a number"),
    (re.compile(r"(\S+) is not in the range x>=(\S+)"), r"\1 must be at least \2"),
    (re.compile(r"(\S+) is not in the range x<=(\S+)"), r"\1 must be at most \2"),
    (re.compile(r"(\S+) is not in the range (\S+)<=x<=(\S+)"), r"\1 must be from \2 to \3"),
    (re.compile(r"Input should be a valid integer[^.]*"), "expects a whole number"),
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"must be at least \1"),
    (re.compile(r"Input should be less than or equal to (\S+)"), r"must be at most \1"),
]


def usage_error(exc) -> int:
    """Print a click usage error as one line (with the help to read) and return its status."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `embedcli` alone: the help, status 2
        typer.echo(exc.format_message())
        return 2
    message = exc.format_message()
    for pattern, replacement in _REWORDED:
        message = pattern.sub(replacement, message)
    message = " ".join(message.split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(exc, "exit_code", 1) == 2:
        message += f" (see '{ctx.command_path} --help')"
    err_console().print(f"[bold red]Error:[/] {_escape(message)}", highlight=False, soft_wrap=True)
    return getattr(exc, "exit_code", 2)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def on_sigterm(signum, frame):
    raise Terminated()


def _fail(message: str, code: int) -> typer.Exit:
    err_console().print(f"[bold red]Error:[/] {_escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    from embedcli.cli.pictures import printable

    return escape(printable(text))


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so exit-time flushes stay silent."""
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())


# what each command can make smaller when it runs out of memory (its own options only)
_MEMORY_SHRINK = {
    "batch": "a smaller --num-batches or input",
    "embed": "a smaller --dim, --num-batches or input",
}


def handle_errors(fn):
    """Turn exceptions into one line on stderr and the documented exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # --verbose after the command, as before it: in the command's option group
        if any(getattr(v, "verbose", None) is True for v in kwargs.values()):
            state["verbose"] = True
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, CLICK_ERROR):  # click reports usage errors itself (exit 2)
            raise
        except EmbedcliError as exc:
            if state["verbose"]:
                raise
            raise _fail(str(exc), exc.exit_code) from None
        except Terminated:
            err_console().print("Terminated.", highlight=False)
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            from embedcli.storage.atomic import COMMITTED, UNFINISHED

            done = f" after writing {', '.join(COMMITTED)} (complete)" if COMMITTED else ""
            left = "".join(f"; {note}" for note in UNFINISHED)
            err_console().print(f"Interrupted{done}{left}.", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(141) from None  # 128 + SIGPIPE, what a shell reports for `cmd | head`
        except OSError as exc:
            if state["verbose"]:
                raise
            if exc.errno == errno.EPIPE:
                _quiet_stdout()
                raise typer.Exit(141) from None
            where = f"{exc.filename}: " if exc.filename else ""
            raise _fail(f"{where}{exc.strerror or exc}", 1) from None
        except MemoryError:
            shrink = _MEMORY_SHRINK.get(fn.__name__, "a smaller input")
            raise _fail(f"out of memory; try {shrink}", 1) from None
        except Exception as exc:
            if state["verbose"]:
                raise
            raise _fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(rerun with EMBEDCLI_DEBUG=1 for the traceback and report it)",
                1,
            ) from None

    return wrapper


def warn_unused(ctx: typer.Context, quiet: bool, rules: list[tuple[str, bool, str]]) -> None:
    """Say so when an option given on the command line cannot have an effect."""
    for name, no_effect, message in rules:
        source = ctx.get_parameter_source(name)
        given = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
        if given and no_effect and not quiet:
            err_console().print(f"[yellow]Warning:[/] {message}", highlight=False)
