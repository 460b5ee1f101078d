"""What every input reader returns, and the interface a reader implements.

A reader returns ids (:class:`~embedcli.formats.base.TokenSource`, defined with the token
formats that produce it) or windows (:class:`WindowSource`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from embedcli.formats.base import TokenSource
from embedcli.options import DEFAULT_TOKEN_KEY, TokenizeOptions
from embedcli.progress import ProgressFactory

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Reader", "Request", "Resolved", "TokenSource", "WindowSource"]


@dataclass
class WindowSource:
    """Already-windowed input: a 2-D integer ``inputs`` tensor."""

    inputs: np.ndarray
    metadata: dict[str, str]


@dataclass
class Request:
    """What the stage wants: ids (``key``), windows too where ``allow_windows``, and how to
    tokenize text."""

    key: str = DEFAULT_TOKEN_KEY
    tokenize: TokenizeOptions = field(default_factory=TokenizeOptions)
    allow_windows: bool = False


class Resolved(Protocol):
    """An input resolved once: the files it will read, and a way to read them."""

    reader: str  # the registered reader's name
    paths: list[str]  # every file read: an output must never replace one of them
    size: int  # bytes of text to tokenize (the progress bar's length); 0 when none or unknown

    def load(self, progress: ProgressFactory) -> TokenSource | WindowSource: ...


class Reader(Protocol):
    """One kind of input. ``claims`` looks at the paths (cheaply: names, a few bytes);
    ``resolve`` checks them and returns a :class:`Resolved`. ``shown`` names the inputs in
    messages (``<stdin>`` for a spooled pipe)."""

    name: str

    def claims(self, inputs: list[str]) -> bool: ...

    def resolve(self, inputs: list[str], request: Request, shown: list[str]) -> Resolved: ...
