"""``pybpf check`` and ``pybpf btf min`` without typer, when the command line is plain.

Both are offline commands a fleet runs often (a CI step per build, a matrix over BTFHub
kernels): typer converts each option through pydantic, which it imports for the purpose,
and the ``pybpf`` group brings rich; together that is more than the check of a whole corpus
of objects costs. This module reads the few options of these two commands itself (click's
rules: ``--opt value``, ``--opt=value``, ``-o value``/``-oVALUE``, flag clusters, options
between arguments, ``--`` ends the options, the last of a repeated single option wins) and
calls the same functions as the typer commands (:mod:`pybpf.cli.precheck`), with the same
``Path`` values, so the output and the exit status are the same.

It never guesses: ``--help``, an option the command does not have, a missing required
option or argument, a flag given a value, or ``check`` without a target hands the whole
command line to typer, which answers (or refuses) exactly as it always has. Errors are
reported as every pybpf command reports them (:func:`pybpf.cli.direct.report`, which loads
typer and rich only then).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_kwargs", "min_kwargs", "parse", "run"]

# option word -> (parameter, kind): "flag", "value" (the last given wins) or "list" (repeatable)
_CHECK = {"--btf": ("btf", "list"), "--btf-dir": ("btf_dir", "value"), "--kernel": ("kernel", "flag"),
          "--strict": ("strict", "flag"), "--json": ("as_json", "flag"), "--all": ("verbose", "flag"),
          "-a": ("verbose", "flag")}
_MIN = {"--btf": ("full", "value"), "--output": ("output", "value"), "-o": ("output", "value"),
        "--checks": ("checks", "flag")}


def parse(argv: Sequence[str], options: dict[str, tuple[str, str]]) -> tuple[dict[str, Any], list[str]] | None:
    """(option values, arguments) of ``argv`` as click reads it, or None when typer should answer."""
    values: dict[str, Any] = {}
    loose: list[str] = []

    def take(name: str, kind: str, text: str) -> None:
        if kind == "list":
            values.setdefault(name, []).append(text)
        else:
            values[name] = text

    i, args = 0, list(argv)
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            loose.extend(args[i:])
            break
        if not word.startswith("-") or word == "-":
            loose.append(word)
            continue
        if word.startswith("--"):
            key, eq, attached = word.partition("=")
            found = options.get(key)
            if found is None:
                return None  # --help, or an option this command lacks
            name, kind = found
            if kind == "flag":
                if eq:
                    return None
                values[name] = True
                continue
            if not eq:
                if i >= len(args):
                    return None
                attached, i = args[i], i + 1
            take(name, kind, attached)
            continue
        j = 1
        while j < len(word):  # a cluster of short options: -a, -oFILE, -o FILE
            found = options.get("-" + word[j])
            if found is None:
                return None  # -h, or a short option this command lacks
            name, kind = found
            if kind == "flag":
                values[name] = True
                j += 1
                continue
            attached = word[j + 1:]
            if not attached:
                if i >= len(args):
                    return None
                attached, i = args[i], i + 1
            take(name, kind, attached)
            break
    return values, loose


def check_kwargs(argv: Sequence[str]) -> dict[str, Any] | None:
    """The parameters typer gives ``check_command`` for ``argv``, or None when typer should answer."""
    parsed = parse(argv, _CHECK)
    if parsed is None or not parsed[1]:
        return None
    opts, objects = parsed
    if not opts.get("btf") and "btf_dir" not in opts and not opts.get("kernel"):
        return None  # typer's usage error
    return {"objects": [Path(o) for o in objects], "btf": [Path(b) for b in opts.get("btf", [])],
            "btf_dir": Path(opts["btf_dir"]) if "btf_dir" in opts else None, "kernel": opts.get("kernel", False),
            "strict": opts.get("strict", False), "as_json": opts.get("as_json", False),
            "verbose": opts.get("verbose", False)}


def min_kwargs(argv: Sequence[str]) -> dict[str, Any] | None:
    """The parameters typer gives ``btf min`` for ``argv``, or None when typer should answer."""
    parsed = parse(argv, _MIN)
    if parsed is None or not parsed[1] or "full" not in parsed[0] or "output" not in parsed[0]:
        return None
    opts, objects = parsed
    return {"objects": [Path(o) for o in objects], "full": Path(opts["full"]), "output": Path(opts["output"]),
            "checks": opts.get("checks", False)}


def _check(argv: Sequence[str]) -> int | None:
    from pybpf.cli.precheck import NoTargets, run_check

    kwargs = check_kwargs(argv)
    if kwargs is None:
        return None
    try:
        return run_check(kwargs.pop("objects"), kwargs.pop("btf"), kwargs.pop("btf_dir"), **kwargs)
    except NoTargets:
        return None  # an empty --btf-dir: typer says it as a usage error


def _btf_min(argv: Sequence[str]) -> int | None:
    from pybpf.cli.precheck import minimal_btf

    kwargs = min_kwargs(argv)
    if kwargs is None:
        return None
    minimal_btf(kwargs.pop("objects"), kwargs.pop("full"), kwargs.pop("output"), **kwargs)
    return 0


_COMMANDS: dict[tuple[str, ...], Callable[[Sequence[str]], int | None]] = {
    ("check",): _check, ("btf", "min"): _btf_min}


def run(argv: Sequence[str]) -> bool:
    """Run ``pybpf ARGV`` here if it is one of these commands with a plain command line (exiting
    with the command's status); False leaves it to typer."""
    for words, command in _COMMANDS.items():
        if tuple(argv[:len(words)]) == words:
            break
    else:
        return False
    try:
        status = command(argv[len(words):])
    except BaseException as exc:  # noqa: BLE001 - reported as any pybpf command reports it
        if isinstance(exc, SystemExit):
            raise
        from pybpf.cli.direct import report

        report(exc)
    if status is None:
        return False
    if status:
        sys.exit(status)
    return True
