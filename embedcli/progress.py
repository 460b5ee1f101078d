"""How long work reports its progress, without knowing who draws it.

A stage calls ``progress(description, total, unit)`` and gets a context manager yielding
``advance(n)``. The CLI passes a factory that draws rich bars on stderr (``summary.py``);
library callers pass nothing and get :func:`no_progress`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, "int | None", str], ContextManager[Advance]]


def no_progress(
    description: str, total: int | None, unit: str = "bytes"
) -> ContextManager[Advance]:
    """The silent factory: ``advance`` does nothing."""
    return contextlib.nullcontext(lambda n: None)
