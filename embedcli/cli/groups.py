"""Commands declared as option groups: a dataclass per group of options that commands share,
its fields carrying their flags, help and panel in ``Annotated`` metadata (Typer's own way of
declaring an option), and :func:`grouped`, which shows Typer each group's fields as options and
hands the command each group built.

A command then names its groups, not their options::

    @grouped
    def batch(ctx, inputs: Inputs = None, *, windows: BatchWindowing, run: Planning): ...

``batch --stride 2`` calls it with ``windows=BatchWindowing(stride=2, ...)``. An option added
to a group is an option of every command that takes the group, with one help text.

Typer reads a command's parameters from its signature (``inspect.signature``, which honours
``__signature__``) and their types from its ``__annotations__``; it has no notion of a group of
options, so :func:`grouped` gives both for the flat list of options and rebuilds the groups
from the flat keyword arguments when the command runs. It goes outside any decorator that
copies a function's attributes (``functools.wraps`` would read the flat list at import).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def grouped(command: F) -> F:
    """``command`` with each parameter whose type is a dataclass shown to Typer as that
    class's fields (keyword options, in field order, at the parameter's place), and called
    with the dataclass built from them. Two options of one name are refused when Typer first
    reads the options."""
    return typing.cast(F, _Grouped(lambda: command, command.__name__))


def grouped_later(name: str, load: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """:func:`grouped` of the command ``load()`` gives, named ``name``: its module is imported
    only when Typer builds that command (its help, or a run of it), so a run of another
    command never pays for its options' dataclasses (1-2 ms each to create)."""
    return _Grouped(load, name)


class _Grouped:
    # What grouped returns: the command (loaded when first needed), whose flat signature is
    # worked out when Typer first asks for it. A run builds only the command it runs
    # (app.for_argv), so the other commands' expansion (1 ms each, most of it
    # get_type_hints) is never paid.

    def __init__(self, load: Callable[[], Callable[..., Any]], name: str) -> None:
        self._load, self.__name__ = load, name
        self.__qualname__ = name

    @functools.cached_property
    def __wrapped__(self) -> Callable[..., Any]:  # noqa: PLW3201
        return self._load()

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.__wrapped__.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for name, (kind, fields) in self._expanded[1].items():
            # a field Typer passes no value for (an eager --help-all) keeps its default
            kwargs[name] = kind(**{f: kwargs.pop(f) for f in fields if f in kwargs})
        return self.__wrapped__(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return self._expanded[0]

    @property
    def __annotations__(self) -> dict[str, Any]:  # type: ignore[override]
        return {name: p.annotation for name, p in self._expanded[0].parameters.items()}

    @functools.cached_property
    def _expanded(self) -> tuple[inspect.Signature, dict[str, tuple[type, tuple[str, ...]]]]:
        command = self.__wrapped__
        hints = typing.get_type_hints(command, include_extras=True)
        params: list[inspect.Parameter] = []
        groups: dict[str, tuple[type, tuple[str, ...]]] = {}
        for name, param in inspect.signature(command).parameters.items():
            kind = hints.get(name, param.annotation)
            if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
                params.append(param.replace(annotation=kind))
                continue
            fields = _fields(kind)
            groups[name] = (kind, tuple(p.name for p in fields))
            params.extend(fields)
        names = [p.name for p in params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise TypeError(f"{command.__name__}: options given by two groups: {', '.join(twice)}")
        return inspect.Signature(params), groups


def _fields(group: type) -> list[inspect.Parameter]:
    """A group's fields as keyword-only parameters with their ``Annotated`` types."""
    hints = typing.get_type_hints(group, include_extras=True)
    params = []
    for field in dataclasses.fields(group):
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{group.__name__}.{field.name}: a group's option needs a default")
        keyword = inspect.Parameter.KEYWORD_ONLY
        annotation = hints[field.name]
        params.append(
            inspect.Parameter(field.name, keyword, default=field.default, annotation=annotation)
        )
    return params
