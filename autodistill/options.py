"""Options defined once: each field of an options dataclass carries its help, its flag and how
its text is read, so the command line is generated from the dataclass and the Python API passes
its keywords on to it unchanged (one name, one default, one help per option)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

OPTION = "option"  # the key of a field's metadata that holds its Option


@dataclass(frozen=True)
class Option:
    """How one field of an options dataclass appears on the command line."""

    help: str
    flag: str | None = None  # by default --<prefix-><name>, underscores as dashes
    metavar: str | None = None
    # The values allowed, or a function that lists them (a registry's names, read when asked).
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    parse: Callable[[str], Any] | None = None  # the text -> the value; by default the type's
    # A mapping {objective: most}: one --max-<objective> flag per limitable objective.
    per_objective: bool = False
    # A nested options dataclass: its fields' flags start with this (``latency`` ->
    # --latency-runtime), and they are shown under ``help`` as a group.
    prefix: str | None = None
    cli: bool = True  # False: an API-only keyword (a Python object no text can give)

    def allowed(self) -> Sequence[str] | None:
        return self.choices() if callable(self.choices) else self.choices


def option(
    default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, **how: Any
) -> Any:
    """A dataclass field with its command-line ``Option`` (``factory``: a default factory)."""
    meta = {OPTION: Option(help, **how)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Declared:
    """One field of an options dataclass, with its resolved type."""

    name: str
    option: Option
    kind: type  # bool, int, float, str, a nested options dataclass, or dict / tuple
    optional: bool  # None is allowed (and means "not given")
    default: Any

    @property
    def nested(self) -> bool:
        return dataclasses.is_dataclass(self.kind)


def declared(cls: type) -> Iterator[Declared]:
    """The fields of ``cls`` that are options, in order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        opt = f.metadata.get(OPTION)
        if opt is None:
            continue
        kind, optional = _unwrap(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[misc]
        yield Declared(f.name, opt, kind, optional, default)


def coerce(cls: type, value: Any) -> Any:
    """A nested options value given as a mapping (the API's and a saved config's way) as
    ``cls``; an instance as it is."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    from autodistill.errors import UserError

    raise UserError(f"expected a {cls.__name__} or a mapping of its fields, got {value!r}")


def build(cls: type, options: dict[str, Any]) -> Any:
    """``cls(**options)``, with an unknown keyword refused in one line that names the nearest
    option (and the mapping a ``max_<objective>`` limit now goes in)."""
    import difflib

    from autodistill.errors import UserError

    known = [f.name for f in dataclasses.fields(cls) if OPTION in f.metadata]
    for name in options:
        if name not in known:
            if name.startswith("max_") and "limits" in known:
                hint = f"; give limits={{{name.removeprefix('max_')!r}: ...}}"
            else:
                near = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UserError(f"unknown option {name!r}{hint} (options: {', '.join(known)})")
    return cls(**options)


def _unwrap(hint: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``tuple[float, ...]`` -> (tuple, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _unwrap(rest[0])[0], len(rest) < len(args)
    origin = typing.get_origin(hint)
    return (origin or hint), False
