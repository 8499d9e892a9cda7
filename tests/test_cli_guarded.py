"""Every command of the CLI reports a user's error in one line: its function runs inside ``render.guarded``.

A command outside it shows a Python traceback for a missing file (``pybpf deployment show`` did).
"""

from __future__ import annotations

from typing import Any

from pybpf.cli import COMMANDS
from pybpf.cli.group import load_command


def _guarded(callback: Any) -> bool:
    fn = callback
    while fn is not None:  # typer and functools.wraps keep the chain in __wrapped__
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_name == "wrapper" and code.co_filename.endswith("render.py"):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def _leaves(command: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    if hasattr(command, "commands"):  # a group: its subcommands
        return [leaf for name, sub in command.commands.items() for leaf in _leaves(sub, path + (name,))]
    return [(path, command)]


def test_every_command_runs_guarded() -> None:
    leaves = [leaf for name in sorted(COMMANDS) for leaf in _leaves(load_command(name), (name,))]
    assert len(leaves) >= len(COMMANDS) and ("deployment", "show") in [p for p, _ in leaves]
    unguarded = [" ".join(path) for path, command in leaves if not _guarded(command.callback)]
    assert unguarded == []
