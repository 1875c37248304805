"""Command-line options generated from an options dataclass: help and default written once.

A field declared with :func:`option` becomes ``--field-name`` (or a positional argument) whose
type, default and choices come from the field; ``--help`` shows each default and the choices.
:func:`from_args` builds the dataclass back from the parsed namespace, so a command never
copies fields by hand.
"""

from __future__ import annotations

import argparse
import dataclasses

_MISSING = dataclasses.MISSING


def option(default=_MISSING, help="", *, type=None, choices=None, metavar=None,
           positional=False, nargs=None, required=False, tasks=None, flag=None):
    """A dataclass field that is also a command-line option.

    ``type``: the parser of one value (int, float, str; ``bool`` makes a switch);
    ``tasks``: the commands that offer it (None: all); ``flag``: the option string when it
    is not ``--field-name``.
    """
    md = {"help": help, "type": type, "choices": choices, "metavar": metavar,
          "positional": positional, "nargs": nargs, "required": required, "tasks": tasks,
          "flag": flag}
    if isinstance(default, (list, dict)):
        value = list(default) if isinstance(default, list) else dict(default)
        return dataclasses.field(default_factory=lambda: type_copy(value), metadata=md)
    if default is _MISSING:
        return dataclasses.field(metadata=md)
    return dataclasses.field(default=default, metadata=md)


def type_copy(value):
    return list(value) if isinstance(value, list) else dict(value)


def _default(f):
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None


def add_options(parser: argparse.ArgumentParser, cls, *, task=None, defaults=None) -> None:
    """Add one argument per :func:`option` field of ``cls`` (those offered to ``task``);
    ``defaults`` overrides some defaults for this command."""
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        md = f.metadata
        if "help" not in md or (md["tasks"] is not None and task not in md["tasks"]):
            continue
        default = defaults.get(f.name, _default(f))
        kw = {"help": md["help"]}
        if md["positional"]:
            kw.update(nargs=md["nargs"], metavar=md["metavar"] or f.name.upper())
            if md["nargs"] in ("*", "?"):
                kw["default"] = default
            parser.add_argument(f.name, **kw)
            continue
        flag = md["flag"] or "--" + f.name.replace("_", "-")
        if md["type"] is bool:
            parser.add_argument(flag, dest=f.name, action="store_true", **kw)
            continue
        kw.update(type=md["type"] or str, dest=f.name)
        if isinstance(default, list):  # a repeatable option: each use adds one value
            kw.update(action="append", default=None)
            if md["metavar"]:
                kw["metavar"] = md["metavar"]
            parser.add_argument(flag, **kw)
            continue
        if md["metavar"]:
            kw["metavar"] = md["metavar"]
        elif md["choices"]:
            # Shown, not enforced by argparse: validate() names the option in one line.
            kw["metavar"] = "|".join(map(str, md["choices"]))
        if md["required"]:
            kw["required"] = True
        else:
            kw["default"] = default
            kw["help"] += f" (default: {'none' if default is None else default})"
        parser.add_argument(flag, **kw)


def from_args(cls, args, **extra):
    """``cls`` built from the parsed ``args`` (fields the command did not offer keep their
    dataclass defaults) and ``extra``."""
    values = {}
    for f in dataclasses.fields(cls):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if value is None and f.default_factory is not dataclasses.MISSING:
            continue  # a repeatable option never given: the field's own empty list
        values[f.name] = value
    values.update(extra)
    return cls(**values)
