"""Issue 20 item 5: text from the kernel or a traced program never drives the terminal.

A process name, an argv, a path and a USDT probe name are chosen by whoever runs the process
or writes the file. ``pybpf.text.visible`` shows their controls as escapes everywhere such text
reaches a terminal (tools' rows, CLI tables, error lines); ``--json`` keeps the text itself
(JSON escapes controls); text without controls is printed unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pybpf.cli import app
from pybpf.text import visible
from tests.procs import Proc, pybpf_cmd

ROOT = Path(__file__).resolve().parent.parent
ESC = "\x1b"
TITLE = ESC + "]0;pwned" + ESC + "\\"   # sets the window title
CLEAR = ESC + "[2J"                     # clears the screen
FORGED = "a\nFORGED 1 2 3"              # a newline makes a row that begins with the attacker's text


def test_visible_escapes_controls_and_keeps_text():
    for text in ["", "bash", "/usr/lib/x86_64-linux-gnu/libc.so.6", "python3.11", "日本語 ファイル", "émoji 🙂",
                 "back\\slash", "tab\there", "a" * 300, "\udcc3\udca9"]:  # raw bytes kept by surrogateescape
        assert visible(text) is text  # unchanged: the same object, not a copy
    assert visible(TITLE) == "\\x1b]0;pwned\\x1b\\"
    assert visible(CLEAR) == "\\x1b[2J"
    assert visible(FORGED) == "a\\x0aFORGED 1 2 3"
    assert visible("\r\x00\x07\x08\x7f") == "\\x0d\\x00\\x07\\x08\\x7f"
    assert visible("a\tb") == "a\tb"  # a tab moves right, overwrites nothing: printed as the C tools do
    assert visible("\u009b2J\u0085") == "\\x9b2J\\x85"  # C1: CSI, NEL
    assert visible("\udc9b2J") == "\\x9b2J"  # the raw byte 0x9b (CSI in 8-bit terminals)
    assert visible("abc\u202edcba\u2066x\u2069\u2028") == "abc\\u202edcba\\u2066x\\u2069\\u2028"
    assert ESC not in visible(ESC * 1000) and "\n" not in visible("\n" * 10)
    # whole blocks of output (tools' out()): their own newlines kept, every other control escaped
    assert visible("row one\nrow\x1b[2J two\n", newlines=True) == "row one\nrow\\x1b[2J two\n"
    block = "   usecs : count\n     0 -> 1 : 3 |***|\n"
    assert visible(block, newlines=True) is block


def _hostile_binary(tmp_path: Path, uniq: str) -> Path:
    """A copy of cat whose name (so its comm) holds an ESC sequence."""
    prog = tmp_path / f"p{CLEAR}{uniq}"
    shutil.copy("/bin/cat", prog)
    prog.chmod(0o755)
    return prog


def test_tools_print_controls_visibly_and_json_keeps_them(kernel, tmp_path: Path):
    uniq = uuid.uuid4().hex[:6]
    prog = _hostile_binary(tmp_path, uniq)
    comm = prog.name[:15]
    paths = [str(tmp_path / f"{TITLE}{uniq}"), str(tmp_path / f"{CLEAR}{uniq}"), str(tmp_path / f"{FORGED}{uniq}")]
    execs = Proc(pybpf_cmd("tool", "execsnoop", "-n", uniq))
    execs_json = Proc(pybpf_cmd("tool", "execsnoop", "-n", uniq, "--json"))
    opens = Proc(pybpf_cmd("tool", "opensnoop", "-n", uniq))
    tools = (execs, execs_json, opens)
    try:
        for tool in tools:
            tool.wait_for(lambda t=tool: any("Tracing" in line for line in t.err), what="the ready line")
        subprocess.run([str(prog), *paths], capture_output=True)  # each open fails: ENOENT
        execs.wait_for(lambda: any(uniq in line for line in execs.out), timeout=20, what="the exec")
        execs_json.wait_for(lambda: any(uniq in line for line in execs_json.out), timeout=20, what="the exec")
        opens.wait_for(lambda: sum(uniq in line for line in opens.out) >= 3, timeout=20, what="the opens")
    finally:
        for tool in tools:
            tool.stop()
    for tool in (execs, opens):
        text = "\n".join(tool.out)
        assert ESC not in text, text
        assert not any(line.startswith("FORGED") for line in tool.out), text
        assert visible(comm) in text
    row = next(line for line in execs.out if uniq in line)
    assert row.endswith(" ".join(visible(p) for p in paths) + " "), row  # C's print_args: a space after each
    for path in paths:
        assert any(line.endswith(visible(path)) for line in opens.out), (path, opens.out)
    event = json.loads(next(line for line in execs_json.out if uniq in line))
    assert event["pcomm"] == comm and event["args"] == [str(prog), *paths]  # --json: the text itself


def test_usdt_list_and_errors_show_controls_visibly(tmp_path: Path):
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.fail("gcc missing: make setup installs it")
    binary = tmp_path / "probes"
    subprocess.run([compiler, "-O2", "-o", str(binary), str(ROOT / "tests" / "data" / "usdt_probes.c")], check=True)
    data = binary.read_bytes()
    hostile = b"g" + CLEAR.encode() + b"\nd"
    assert len(hostile) == len(b"guarded") and data.count(b"\0guarded\0") == 1
    binary.write_bytes(data.replace(b"\0guarded\0", b"\0" + hostile + b"\0"))
    runner = CliRunner()
    result = runner.invoke(app, ["usdt", "list", str(binary)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert ESC not in result.output and visible(hostile.decode()) in result.output, result.output
    as_json = runner.invoke(app, ["usdt", "list", str(binary), "--json"])
    assert hostile.decode() in [p["name"] for p in json.loads(as_json.output)["probes"]]
    # an error line naming a file: the name is shown, its controls are not sent
    missing = tmp_path / f"x{CLEAR}y"
    proc = subprocess.run(pybpf_cmd("btf", "dump", str(missing)), capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert proc.returncode == 1 and ESC not in proc.stderr and "x\\x1b[2Jy" in proc.stderr, proc.stderr
