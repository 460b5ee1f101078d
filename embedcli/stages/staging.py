"""What every stage that writes shares: an output that may be a URL (staged locally, uploaded
when the stage returns), and the spill file ids wait in before a token format's writer takes them
(``tokenize``, ``mix``). Apart from ``common.py`` so that these stages never load the window
modules (a one-line ``tokenize`` pays for every module it imports; issue 47, item 6)."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

import numpy as np

from embedcli.errors import OutputError, UsageError
from embedcli.paths import one_path, path_list
from embedcli.progress import no_progress
from embedcli.storage.atomic import COMMITTED, UNFINISHED
from embedcli.storage.remote import is_url, public_url, staged, using_storage_options
from embedcli.storage.store import write_array

R = TypeVar("R")


def remote_output(stage: Callable[..., R]) -> Callable[..., R]:
    """A stage's ``output`` may be a URL (``s3://bucket/out/train.bin``): the stage writes into
    a local staging directory, every file it commits there is uploaded when it returns
    (manifests and indexes last; see :func:`embedcli.storage.remote.staged`), and the result
    names the URLs. Under torchrun the ranks write one shared file: a URL is refused there.

    The wrapped stage also takes paths as a library caller hands them over (one or a list,
    ``str`` or ``os.PathLike``), and ``storage_options=`` (a dict): the keyword arguments
    of every filesystem the call opens, as ``--storage-options`` (fsspec's, e.g.
    ``{"anon": True}`` or ``{"client_kwargs": {"endpoint_url": ...}}``)."""

    @functools.wraps(stage)
    def wrapper(inputs: Any, output: Any, *args: Any, **kwargs: Any) -> R:
        with using_storage_options(kwargs.pop("storage_options", None)):
            return _staged(stage, inputs, output, *args, **kwargs)

    return wrapper


def _staged(stage: Callable[..., R], inputs: Any, output: Any, *args: Any, **kwargs: Any) -> R:
    """``stage`` run on local paths, its output staged when it is a URL."""
    # What a library caller hands over: one path or many, str or os.PathLike.
    inputs, output = path_list(inputs), one_path(output, "output")
    if not is_url(output):
        return stage(inputs, output, *args, **kwargs)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(
            f"{public_url(output)}: under torchrun the ranks write one local file; "
            "write it locally and upload it once"
        )
    no_clobber, progress = kwargs.get("no_clobber", False), kwargs.get("progress")
    with staged(
        output,
        COMMITTED,
        no_clobber=no_clobber,
        progress=progress or no_progress,
        unfinished=UNFINISHED,
    ) as where:
        result = stage(inputs, where.local, *args, **kwargs)
    return where.shown(result)


class SpillSink:
    """int32 ids appended to an anonymous temporary file, so memory stays flat."""

    def __init__(self, f: BinaryIO, output: str) -> None:
        self.f, self.output = f, output
        self.count = 0

    def write(self, ids: np.ndarray) -> None:
        try:
            write_array(self.f, ids)
        except OSError as exc:  # a full disk: say where, the spill file has no name
            where = os.path.dirname(os.path.abspath(self.output))
            raise OutputError(
                f"{self.output}: cannot write the ids in {where}: {exc.strerror or exc}"
            ) from None
        self.count += int(ids.size)


@contextlib.contextmanager
def spill_file(output: str) -> Iterator[BinaryIO]:
    """An anonymous temporary file beside the output (same filesystem: a kernel copy)."""
    spill_dir = None if output == "-" else os.path.dirname(os.path.abspath(output))
    try:
        spill = tempfile.TemporaryFile(dir=spill_dir, prefix=".embedcli-ids-")  # noqa: SIM115
    except OSError as exc:
        raise OutputError(f"{output}: cannot write in {spill_dir}: {exc.strerror}") from None
    with spill:
        yield spill
