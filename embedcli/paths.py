"""Paths as the library's callers hand them over: ``str`` or ``os.PathLike`` (a
``pathlib.Path``), one or many, turned into the ``str`` the rest of embedcli works with.

A lone path is one input, never a list of its characters: ``run_tokenize("corpus.txt", ...)``
used to look for files ``c``, ``o``, ``r``... (issue 45). ``"-"`` (stdin or stdout) and URLs
(``s3://bucket/key``) are strings like any other and pass through unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from embedcli.errors import UsageError

PathArg = str | os.PathLike[str]


def one_path(path: PathArg, what: str = "path") -> str:
    """``path`` as a ``str``; a ``bytes`` path or any other object is a usage error.

    Example:
        >>> from pathlib import Path
        >>> one_path(Path("data") / "corpus.txt")
        'data/corpus.txt'
    """
    if isinstance(path, str):
        return path
    if isinstance(path, os.PathLike):
        text = os.fspath(path)
        if isinstance(text, str):
            return text
    raise UsageError(f"{what} must be a str or os.PathLike of str, not {type(path).__name__}")


def path_list(paths: PathArg | Iterable[PathArg], what: str = "inputs") -> list[str]:
    """One path or many (a list, a tuple, any iterable of them) as a list of ``str``.

    Example:
        >>> path_list("corpus.txt")
        ['corpus.txt']
        >>> path_list(["a.txt", "b.jsonl"])
        ['a.txt', 'b.jsonl']
    """
    if isinstance(paths, str | os.PathLike):
        return [one_path(paths, what)]
    if isinstance(paths, bytes) or not isinstance(paths, Iterable):
        raise UsageError(f"{what} must be a path or a list of paths, not {type(paths).__name__}")
    return [one_path(p, what) for p in paths]
