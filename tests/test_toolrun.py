"""``pybpf tool NAME ARGS``: the direct path (``pybpf.cli.toolrun``) reads a tool's options
exactly as typer does, or leaves the command line to typer; a tool started this way imports
neither pydantic (typer's converter) nor rich, and the errors it raises read as before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer

from pybpf import tools
from pybpf.cli.toolrun import direct_kwargs

from .conftest import ROOT

# (tool, argv): plain command lines, each read by both parsers
PLAIN = [
    ("execsnoop", []),
    ("execsnoop", ["-T", "-x"]),
    ("execsnoop", ["-Tx", "-u", "1000"]),
    ("execsnoop", ["-u1000", "--name=bash", "--max-args", "5", "--max-args=7"]),
    ("execsnoop", ["-l", "foo", "-U", "--json", "--duration", "1.5", "-n", "-"]),
    ("opensnoop", ["-p", "1", "-t", "2", "-d", ".5", "-e"]),
    ("tcpstates", ["-46w", "-D", "22,80", "--duration=2e1"]),
    ("runqlat", ["1", "5"]),
    ("runqlat", ["-m", "2", "--", "3"]),
    ("pyaudit", ["-e", "open", "-e", "exec", "-c", "-p", "12"]),
    ("syscount", ["-i", "2", "-T", "5", "-L", "-e", "ENOENT"]),
]

# command lines typer must answer: help, unknown options, bad or out-of-range values, extras
TYPERS = [
    ("execsnoop", ["--help"]),
    ("execsnoop", ["-h"]),
    ("execsnoop", ["--nope"]),
    ("execsnoop", ["-Tz"]),
    ("execsnoop", ["--max-args", "50"]),
    ("execsnoop", ["--max-args", "x"]),
    ("execsnoop", ["-u", "0x10"]),
    ("execsnoop", ["-V"]),
    ("execsnoop", ["-TV"]),
    ("execsnoop", ["--version"]),
    ("execsnoop", ["--uid"]),
    ("execsnoop", ["--json=1"]),
    ("execsnoop", ["stray"]),
    ("runqlat", ["1", "2", "3"]),
    ("opensnoop", ["-d", "soon"]),
]


def _command(name: str) -> tuple[object, object]:
    app = tools.load_tool(name)
    return app.registered_commands[0].callback, typer.main.get_command(app)


@pytest.mark.parametrize(("name", "argv"), PLAIN, ids=[" ".join([n, *a]) for n, a in PLAIN])
def test_plain_command_lines_read_as_typer_reads_them(name: str, argv: list[str]) -> None:
    callback, command = _command(name)
    mine = direct_kwargs(callback, argv)  # type: ignore[arg-type]
    assert mine is not None
    assert mine == command.make_context(name, list(argv)).params  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "argv"), TYPERS, ids=[" ".join([n, *a]) for n, a in TYPERS])
def test_anything_else_is_left_to_typer(name: str, argv: list[str]) -> None:
    callback, _ = _command(name)
    assert direct_kwargs(callback, argv) is None  # type: ignore[arg-type]


def _pybpf(*argv: str) -> subprocess.CompletedProcess[str]:
    """``pybpf ARGV`` in a fresh interpreter that reports, at exit, the modules it never needed."""
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('pydantic', 'rich', 'asyncio', 'elftools'))) + '\\n'))\n"
            f"sys.argv = ['pybpf', *{list(argv)!r}]\n"
            "from pybpf.cli import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False)


def _modules(proc: subprocess.CompletedProcess[str]) -> list[str]:
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return json.loads(line[len("MODULES "):])


def test_a_tool_starts_without_pydantic_or_rich() -> None:
    proc = _pybpf("tool", "syscount", "--list")
    assert proc.returncode == 0, proc.stderr
    assert "execve" in proc.stdout
    assert _modules(proc) == []


def test_a_typer_answer_still_comes_from_typer() -> None:
    proc = _pybpf("tool", "execsnoop", "--max-args", "50")
    assert proc.returncode == 2
    assert "Invalid value for '--max-args'" in proc.stderr
    helped = _pybpf("tool", "execsnoop", "--help")
    assert helped.returncode == 0 and "--max-args" in helped.stdout


def test_an_error_the_tool_raises_reads_as_before(kernel) -> None:
    """A tool that fails (here: a uid its BPF global cannot hold) exits 1 with pybpf's one-line
    error, as through the command group."""
    proc = _pybpf("tool", "execsnoop", "-u", "99999999999", "--duration", "0.1")
    direct = (proc.returncode, proc.stderr.split("MODULES")[0].strip())
    code = ("import sys\nsys.argv = ['pybpf', 'tool', 'execsnoop', '-u', '99999999999', '--duration', '0.1']\n"
            "import pybpf.cli.toolrun as t\nt.run = lambda *a: False\nfrom pybpf.cli import main\nmain()\n")
    grouped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=ROOT, check=False)
    assert direct == (grouped.returncode, grouped.stderr.strip())
    assert direct[0] == 1 and "out of range for uint32" in direct[1]
