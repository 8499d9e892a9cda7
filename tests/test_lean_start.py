"""A tool's start pays for its BPF object, not for the libraries around it: ``pybpf tool
execsnoop``/``opensnoop`` (text and ``--json``) print their events without ever importing numpy
for real, nor typer, click, rich or pydantic; the typer app is still built from the same
declarations for help and errors; the stand-in that defers numpy behaves as numpy; a reader that
goes away ends the tool as it ends the C tool (SIGPIPE, no message)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pybpf import tools
from tests.procs import Proc, c_tool, env, pybpf_cmd, unique_binary

from .conftest import ROOT

NEVER = ("typer", "click", "rich", "pydantic")


def _tool(*argv: str) -> Proc:
    """``pybpf ARGV`` through the console entry point; at exit it reports on stderr whether
    numpy was imported for real and which of NEVER were imported."""
    code = ("import atexit, json, sys\n"
            "def report():\n"
            "    np = sys.modules.get('numpy')\n"
            "    sys.stderr.write('LEAN ' + json.dumps({'numpy': np is not None and 'ndarray' in vars(np), "
            f"'loaded': sorted({{m.split('.')[0] for m in sys.modules}} & set({NEVER!r}))}}) + '\\n')\n"
            "atexit.register(report)\n"
            f"sys.argv = ['pybpf', *{list(argv)!r}]\n"
            "from pybpf.cli import main\nmain()\n")
    return Proc([sys.executable, "-c", code], cwd=ROOT)


def _lean(proc: Proc) -> dict[str, object]:
    line = next(x for x in proc.err if x.startswith("LEAN "))
    return json.loads(line[len("LEAN "):])  # type: ignore[no-any-return]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_execsnoop_prints_events_without_numpy_or_typer(kernel: None, tmp_path: Path, as_json: bool) -> None:
    prog = unique_binary(tmp_path, "/bin/true", "pbl")
    proc = _tool("tool", "execsnoop", *(["--json"] if as_json else []))
    try:
        proc.wait_for(lambda: any("Tracing exec" in x for x in proc.err + proc.out), what="Tracing")
        for i in range(3):
            subprocess.run([str(prog), f"a{i}"], check=True)
        ours = lambda: [x for x in proc.out if prog.name in x]  # noqa: E731
        proc.wait_for(lambda: len(ours()) >= 3, timeout=30, what=f"3 execs of {prog.name}")
    finally:
        assert proc.stop() == 0, proc.err
    if as_json:
        args = sorted(json.loads(x)["args"][1] for x in ours())
        assert args == ["a0", "a1", "a2"]
    else:
        assert all(x.split()[0] == prog.name and x.split()[-1].startswith("a") for x in ours())
    assert _lean(proc) == {"numpy": False, "loaded": []}


def test_opensnoop_prints_events_without_numpy_or_typer(kernel: None, tmp_path: Path) -> None:
    marker = tmp_path / f"pybpf-lean-{uuid.uuid4().hex[:8]}"
    proc = _tool("tool", "opensnoop", "-T")
    try:
        proc.wait_for(lambda: any("Tracing open" in x for x in proc.err + proc.out), what="Tracing")
        for _ in range(2):
            marker.write_text("x")
        proc.wait_for(lambda: any(str(marker) in x for x in proc.out), timeout=30, what=str(marker))
    finally:
        assert proc.stop() == 0, proc.err
    assert _lean(proc) == {"numpy": False, "loaded": []}


def test_help_and_errors_still_come_from_typer() -> None:
    for argv, code, words in ((["tool", "execsnoop", "--help"], 0, "--max-args"),
                              (["tool", "opensnoop", "--nope"], 2, "No such option"),
                              (["tool", "execsnoop", "-V"], 0, "execsnoop 0.1.0 (pybpf)")):
        proc = _tool(*argv)
        assert proc.p.wait(120) == code, proc.err
        proc.stop()
        assert words in "\n".join(proc.out + proc.err)
        assert "typer" in _lean(proc)["loaded"]  # type: ignore[operator]


def test_tool_modules_declare_without_typer() -> None:
    """Importing a tool declared with pybpf.tools._options imports no typer; its typer app has
    the declared options."""
    code = ("import sys\nimport pybpf.tools.execsnoop, pybpf.tools.opensnoop, pybpf.tools.runqlat\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    import typer.main

    command = typer.main.get_command(tools.load_tool("execsnoop"))
    words = {w for p in command.params for w in p.opts}
    assert {"-T", "--time", "-u", "--uid", "--max-args", "-c", "--cgroup", "-V", "--version"} <= words
    assert tools.tool_function("execsnoop") is tools.load_tool("execsnoop").registered_commands[0].callback.__wrapped__


def test_deferred_numpy_is_numpy_when_used() -> None:
    code = """
import sys
from pybpf.cli.deferred import defer_import
assert defer_import("numpy") and not defer_import("numpy")
import numpy as np
import numpy
assert "ndarray" not in vars(np) and np is numpy
a = np.arange(6, dtype=np.uint16).reshape(2, 3)   # the first use imports numpy
real = sys.modules["numpy"]
assert real is not np and "ndarray" in vars(real) and a.sum() == 15
assert np.ndarray is real.ndarray and isinstance(a, np.ndarray) and np.linalg is real.linalg
import numpy.lib.stride_tricks
assert sys.modules["numpy"] is real
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    missing = subprocess.run([sys.executable, "-c", "from pybpf.cli.deferred import defer_import\n"
                              "print(defer_import('no_such_module_xyz'))"], capture_output=True, text=True, cwd=ROOT)
    assert missing.stdout.strip() == "False"


def _ended_by_closed_pipe(argv: list[str], prog: Path) -> tuple[int, str]:
    """(exit status, stderr) of ``argv`` once the reader of its stdout has read one line and gone,
    the tool then writing the execs of ``prog`` into the closed pipe."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            assert proc.stdout.readline()  # the header: the tool is running
            proc.stdout.close()
            for i in range(600):  # until the tool has written an exec into the closed pipe and ended
                subprocess.run([str(prog), f"p{i}"], check=True)
                try:
                    status = proc.wait(0.1)
                except subprocess.TimeoutExpired:
                    continue
                return status, proc.stderr.read().decode("utf-8", "replace")
            raise AssertionError(f"{argv} still runs with its reader gone")
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_closed_pipe_ends_the_tool_as_it_ends_the_c_tool(kernel: None, tmp_path: Path) -> None:
    """`pybpf tool execsnoop | head -1`: killed by SIGPIPE as the C tool is, no error message."""
    prog = unique_binary(tmp_path, "/bin/true", "pbp")
    c_status, c_err = _ended_by_closed_pipe(c_tool("execsnoop"), prog)
    status, err = _ended_by_closed_pipe(pybpf_cmd("tool", "execsnoop"), prog)
    assert c_status == -signal.SIGPIPE, c_err
    assert status == c_status, err
    assert "error" not in err.lower() and "pipe" not in err.lower(), err
