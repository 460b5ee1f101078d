"""The few exceptions embedcli raises for problems a user can fix.

Every message is one sentence that names the thing at fault and, where there is one, the remedy.
The CLI prints ``Error: <message>`` on stderr and exits with the class's ``exit_code``.
"""

from __future__ import annotations


class EmbedcliError(Exception):
    """Base class: a data or runtime problem (exit status 1)."""

    exit_code = 1


class UsageError(EmbedcliError):
    """Options that contradict each other or cannot apply to the input (exit status 2)."""

    exit_code = 2


class InputError(EmbedcliError):
    """An input that is missing, unreadable, empty or malformed."""


class NotTextError(InputError):
    """Bytes where text was expected that are not UTF-8 (a token stream read as text, say)."""


class FormatError(InputError):
    """A file that is not a valid safetensors file, or lacks what a stage needs."""


class EncodingLoadError(EmbedcliError):
    """A tokenizer encoding that cannot be loaded (unknown name, no network and no cache)."""


class DeviceError(EmbedcliError):
    """A ``--device`` that this machine or this torch build cannot provide."""


class OutputError(EmbedcliError):
    """An output that cannot or must not be written (exists, is an input, no space)."""
