"""``pybpf tool NAME ARGS...`` straight to the tool's function: the start-up path of every tool.

A tool declares its command line with :mod:`pybpf.tools._options` (typer's parameters,
without importing typer) or as a typer app. typer would convert each option through
pydantic, which it imports for the purpose, and the ``pybpf`` command group and its error
renderer bring rich: together ~0.1 s of CPU and several MiB before the tool loads anything.
A tool's options are plain: flags, ints, floats and strings (optional or with a default,
some with ``min``/``max``), lists of strings, and a few positional arguments. This module
reads them from the tool's own signature and calls the tool's function, so the first thing a
tool pays for is its BPF object; numpy is deferred (:mod:`pybpf.cli.deferred`) until
something uses it, which a text-mode event tool never does.

It never guesses: ``--help``, an option the tool does not have, a value that does not
read as its type or is out of range, or a parameter of any other kind hands the whole
command line to typer, which answers (or refuses) exactly as it always has. Errors the
tool raises are reported as every pybpf command reports them (``render.guarded``), which
loads rich only then.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from pybpf.cli.deferred import defer_import
from pybpf.cli.direct import report
from pybpf.tools._options import Param

__all__ = ["direct_kwargs", "run"]

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_SCALARS = (bool, int, float, str)


@dataclass
class _Param:
    name: str
    kind: type             # bool, int, float or str
    default: Any
    many: bool = False     # list[str]: the option may be given several times
    low: Any = None
    high: Any = None
    eager: bool = False    # a flag with a callback: given, the command line goes to typer


class _Unsupported(Exception):
    """This command line (or this tool's signature) is left to typer."""


def _scalar(hint: Any) -> tuple[type, bool]:
    """(scalar type, many) of a parameter annotation, or _Unsupported."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return hint, False
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2 and rest[0] in _SCALARS and rest[0] is not bool:
            return rest[0], False
    if origin is list and args == (str,):
        return str, True
    raise _Unsupported(f"parameter type {hint!r}")


# What a declaration (pybpf.tools._options) may say and still be read here: the rest (clamp,
# count, envvar, prompt, a parser or click type, flag values...) leaves the command line to typer.
_PLAIN_SETTINGS = frozenset({"help", "metavar", "min", "max", "callback", "is_eager", "show_default", "hidden",
                             "rich_help_panel"})


def _declared(info: Any) -> str | None:
    """"option" or "argument" for a parameter declared with pybpf's or typer's Option/Argument."""
    if isinstance(info, Param):
        if set(info.settings) - _PLAIN_SETTINGS:
            raise _Unsupported(f"settings {sorted(set(info.settings) - _PLAIN_SETTINGS)}")
        return info.kind
    models = sys.modules.get("typer.models")  # typer's own objects exist only once typer is imported
    if models is not None and isinstance(info, models.OptionInfo):
        return "option"
    if models is not None and isinstance(info, models.ArgumentInfo):
        return "argument"
    return None


def _signature(callback: Callable[..., Any]) -> tuple[dict[str, _Param], list[_Param], list[_Param]]:
    """(option word -> param, the positional params in order, every param) of a tool's function."""
    hints = typing.get_type_hints(callback)
    options: dict[str, _Param] = {}
    positional: list[_Param] = []
    params: list[_Param] = []
    for name, parameter in inspect.signature(callback).parameters.items():
        info = parameter.default
        kind, many = _scalar(hints.get(name, str))
        declared = _declared(info)
        if declared == "option":
            if info.count or info.default is Ellipsis or getattr(info, "envvar", None) \
                    or getattr(info, "prompt", None):
                raise _Unsupported(f"option {name}'s settings")
            eager = info.callback is not None or info.is_eager
            default = info.default
            if eager:
                # an eager flag (-V/--version) acts when given: then typer runs it. Absent, the
                # function gets what its callback makes of False, as click passes it.
                if not (kind is bool and default is False and info.callback is not None
                        and len(inspect.signature(info.callback).parameters) == 1):
                    raise _Unsupported(f"option {name}'s callback")
                default = info.callback(False)
            param = _Param(name, kind, default, many, info.min, info.max, eager)
            words = list(info.param_decls or ()) or [f"--{name.replace('_', '-')}"]
            for word in words:
                if "/" in word or not word.startswith("-"):
                    raise _Unsupported(f"option {name}'s names")
                options[word] = param
        elif declared == "argument":
            if many or info.default is Ellipsis or kind is bool or info.callback is not None:
                raise _Unsupported(f"argument {name}")
            param = _Param(name, kind, info.default, False, info.min, info.max)
            positional.append(param)
        else:
            raise _Unsupported(f"parameter {name}")
        params.append(param)
    return options, positional, params


def _convert(param: _Param, text: str) -> Any:
    if param.kind is int:
        if not _INT.match(text):
            raise _Unsupported(f"{text!r} as an int")
        value: Any = int(text)
    elif param.kind is float:
        if not _FLOAT.match(text):
            raise _Unsupported(f"{text!r} as a float")
        value = float(text)
    else:
        value = text
    if (param.low is not None and value < param.low) or (param.high is not None and value > param.high):
        raise _Unsupported(f"{param.name} out of range")  # typer says so, in its words
    return value


def direct_kwargs(callback: Callable[..., Any], argv: Sequence[str]) -> dict[str, Any] | None:
    """The keyword arguments typer would call ``callback`` with for ``argv`` (click's rules:
    ``-abc`` flag clusters, ``-u1000``, ``--uid 1000``, ``--uid=1000``, ``--`` ends the options,
    the last of a repeated option wins), or None when typer should answer instead."""
    try:
        options, positional, params = _signature(callback)
        values: dict[str, Any] = {}
        lists: dict[str, list[str]] = {}
        loose: list[str] = []

        def take(param: _Param, text: str) -> None:
            if param.many:
                lists.setdefault(param.name, []).append(text)
            else:
                values[param.name] = _convert(param, text)

        i, args = 0, list(argv)
        while i < len(args):
            word = args[i]
            i += 1
            if word == "--":
                loose.extend(args[i:])
                break
            if word in ("-h", "--help"):
                return None
            if not word.startswith("-") or word == "-":  # click reads "-5" as an option too
                loose.append(word)
                continue
            if word.startswith("--"):
                key, eq, attached = word.partition("=")
                param = options.get(key)
                if param is None:
                    return None
                if param.kind is bool:
                    if eq or param.eager:
                        return None
                    values[param.name] = True
                    continue
                if not eq:
                    if i >= len(args):
                        return None
                    attached, i = args[i], i + 1
                take(param, attached)
                continue
            j = 1
            while j < len(word):  # a cluster of short options
                param = options.get("-" + word[j])
                if param is None:
                    return None
                if param.kind is bool:
                    if param.eager:
                        return None
                    values[param.name] = True
                    j += 1
                    continue
                attached = word[j + 1:]
                if not attached:
                    if i >= len(args):
                        return None
                    attached, i = args[i], i + 1
                take(param, attached)
                break
        if len(loose) > len(positional):
            return None
        for param, text in zip(positional, loose):
            values[param.name] = _convert(param, text)
        for param in params:
            if param.many:
                values[param.name] = lists.get(param.name, list(param.default or []))
            values.setdefault(param.name, param.default)
        return values
    except _Unsupported:
        return None


def run(name: str, argv: Sequence[str]) -> bool:
    """Run tool ``name`` with ``argv`` if its command line is plain; False leaves it to typer."""
    from pybpf import tools

    if name.startswith("-") or name not in tools.tool_names():
        return False
    defer_import("numpy")  # imported when first used: a text tool's events need none of it
    callback = tools.tool_function(name)
    if callback is None:
        return False
    kwargs = direct_kwargs(callback, argv)
    if kwargs is None:
        return False
    try:
        callback(**kwargs)
    except BrokenPipeError:
        _end_as_c_tool_on_broken_pipe()
    except BaseException as exc:  # noqa: BLE001 - reported as any pybpf command reports it
        if isinstance(exc, SystemExit):
            raise
        report(exc)
    return True


def _end_as_c_tool_on_broken_pipe() -> NoReturn:
    """The reader of the tool's output has gone (``pybpf tool execsnoop | head -1``): end as the
    C tool ends, killed by SIGPIPE, without a message. The tool's links, maps and rings are
    released by now (its ``with`` blocks have exited)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores SIGPIPE; the C tool does not
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + signal.SIGPIPE)  # not reached: the signal is delivered before kill() returns
