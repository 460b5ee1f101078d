"""``embedcli mix --emit-weights json|megatron``: the blend of the sources as they are, for the
trainer to draw from at training time; nothing copied (issue 33, item 2).

``json`` is the mixture embedcli's loader reads (``create_dataloader("blend.json", ...)``, see
``mixture.py``): each source's name, files, weight, ids and documents, local paths relative to
the JSON file so the two move together. ``megatron`` is Megatron-LM's ``--data-path`` blend,
``W1 PREFIX1 W2 PREFIX2 ...``: one Megatron dataset (a ``.bin``/``.idx`` pair) a source, since
Megatron takes one weight a prefix. Weights are by tokens in both, as ``mix --weights`` (by
default each source's share of all the tokens); Megatron's ``BlendedDataset`` draws sequences
of one length, so its weights by samples are the same shares.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embedcli import contract as c
from embedcli.errors import UsageError
from embedcli.mixing import parse_weights
from embedcli.paths import PathArg, one_path, path_list
from embedcli.stages.mix import MixOptions, same_tokenizer
from embedcli.stages.mix_sources import read_source, sources_of
from embedcli.storage.atomic import atomic_file
from embedcli.storage.outputs import check_output
from embedcli.storage.remote import is_url, public_url

KINDS = ("json", "megatron")


@dataclass
class BlendSource:
    name: str
    files: list[str]
    weight: float
    tokens: int  # ids in its files, separators included: what windows cover
    documents: int


@dataclass
class MixWeights:
    """What ``--emit-weights`` wrote: the blend, as a file and as its text."""

    output: str
    kind: str
    sources: list[BlendSource]
    text: str


def run_mix_weights(
    inputs: PathArg | Sequence[PathArg],
    output: PathArg,
    opts: MixOptions | None = None,
    *,
    sources: list[str] | None = None,
    kind: str = "json",
    no_clobber: bool = False,
) -> MixWeights:
    """Write the blend of the token files ``inputs`` (and ``NAME=GLOB`` ``sources``) at
    ``opts.weights`` to ``output`` (``-``: stdout) as ``kind``; see the module's text."""
    paths, output = path_list(inputs), one_path(output, "output")
    opts = opts or MixOptions()
    if kind not in KINDS:
        raise UsageError(f"unknown --emit-weights {kind!r}; use {' or '.join(KINDS)}")
    _refuse_copying_options(opts)
    if is_url(output):  # its local files are named relative to it
        raise UsageError(f"{public_url(output)}: write the blend to a local file or stdout (-o -)")
    listed = sources_of(paths, list(sources or []))
    with contextlib.ExitStack() as stack:
        read = [read_source(name, files, stack) for name, files in listed]
        same_tokenizer(read)
        totals = [s.ids.size for s in read]
        weights = parse_weights(opts.weights, [s.name for s in read], totals)
        blend = [
            BlendSource(s.name, files, w, total, int(s.starts.size))
            for s, (_, files), w, total in zip(read, listed, weights, totals, strict=True)
        ]
        encoding = read[0].metadata.get(c.ENCODING)
    text = _megatron(blend) if kind == "megatron" else _json(blend, output, encoding)
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        check_output(output, inputs=[f for s in blend for f in s.files], no_clobber=no_clobber)
        with atomic_file(output) as f:
            f.write(text.encode())
    return MixWeights(output, kind, blend, text)


def _refuse_copying_options(opts: MixOptions) -> None:
    copying = [
        ("--tokens", " (give the trainer the budget: num_windows=, Megatron's --train-samples)",
         opts.tokens is not None),
        ("--max-repeat", "", opts.max_repeat != 1.0),
        ("--dedup exact", "", opts.dedup),
        ("--val-fraction/--val-tokens", "", opts.holds_out),
        ("--eot", "", opts.eot is not None),
    ]  # fmt: skip
    given = [(flag, hint) for flag, hint, on in copying if on]
    if given:
        flag, hint = given[0]
        raise UsageError(
            f"--emit-weights blends the sources as they are, nothing copied: {flag} needs "
            f"the documents written; leave it out{hint}, or mix without --emit-weights"
        )


def _json(blend: list[BlendSource], output: str, encoding: str | None) -> str:
    base = os.path.dirname(os.path.abspath(output)) if output != "-" else os.getcwd()

    def where(path: str) -> str:
        return path if is_url(path) else os.path.relpath(os.path.abspath(path), base)

    doc: dict[str, Any] = {
        "format": c.MIXTURE_FORMAT,
        "version": 1,
        "weights_by": "tokens",
        c.ENCODING: encoding,
        "sources": [
            {
                "name": s.name,
                "weight": s.weight,
                "files": [where(f) for f in s.files],
                "tokens": s.tokens,
                "documents": s.documents,
            }
            for s in blend
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def _megatron(blend: list[BlendSource]) -> str:
    parts = []
    for s in blend:
        if len(s.files) != 1:
            raise UsageError(
                f"--emit-weights megatron: source {s.name} has {len(s.files)} files, and "
                "Megatron takes one dataset prefix a weight; give each file a source of its own"
            )
        parts += [f"{s.weight:.6g}", _megatron_prefix(s.name, s.files[0])]
    return " ".join(parts) + "\n"


def _megatron_prefix(name: str, path: str) -> str:
    """The prefix Megatron's ``--data-path`` names for the pair ``path`` is part of."""
    stem, ext = os.path.splitext(path)
    for prefix in ((stem,) if ext in (".bin", ".idx") else ()) + (path,):
        if os.path.isfile(prefix + ".bin") and os.path.isfile(prefix + ".idx"):
            return prefix
    raise UsageError(
        f"--emit-weights megatron: source {name} ({path}) is not a Megatron dataset "
        "(a .bin/.idx pair); write one with embedcli tokenize --to megatron"
    )
