"""The Python USDT tools (pyaudit, pygc, pycalls) on Debian's real CPython (3.11 on 12, 3.13 on 13).

Each test runs ``pybpf tool NAME --pid PID --json`` as its own process against Debian's
``/usr/bin/python3`` (``pybpf.distro.usdt_python()``) running a script with known activity, started and stopped by
a line on its stdin so that the tool is attached before anything happens; the tool
ends by itself when the traced process exits.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.distro import usdt_python
from pybpf.spec.usdt import read_probes
from pybpf.tools import tool_names
from pybpf.tools._pyusdt import decode_object

ROOT = Path(__file__).resolve().parent.parent


def _debian_python() -> str:
    try:
        return usdt_python()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


def _readline(stream, timeout: float, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        pytest.fail(f"timed out after {timeout}s waiting for {what}")
    return stream.readline()


def run_tool(tool: str, script: str, *tool_args: str, script_args: tuple[str, ...] = ()) -> tuple[str, list, str]:
    """Run ``script`` under Debian's python3 traced by ``tool``; returns (the script's last
    output line, the tool's JSON lines, the tool's stderr)."""
    target = subprocess.Popen([_debian_python(), "-c", script, *script_args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    tool_proc = None
    try:
        assert _readline(target.stdout, 30, "the traced script") == "ready\n"
        tool_proc = subprocess.Popen([sys.executable, "-m", "pybpf.cli", "tool", tool, "--pid", str(target.pid),
                                      "--json", *tool_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        line = _readline(tool_proc.stderr, 60, f"{tool} to attach")
        assert line.startswith("Tracing "), line + tool_proc.stderr.read()
        target.stdin.write("go\n")
        target.stdin.flush()
        result = _readline(target.stdout, 60, "the traced script to finish").strip()
        target.stdin.close()
        target.wait(30)
        out, err = tool_proc.communicate(timeout=60)
        assert tool_proc.returncode == 0, err
        return result, [json.loads(x) for x in out.splitlines() if x.strip()], line + err
    finally:
        for proc in (target, tool_proc):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_tools_are_discovered():
    assert {"pyaudit", "pygc", "pycalls"} <= set(tool_names())


AUDIT = """
import sys
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for i in range(1000):
    sys.audit("app.event", i)
sys.audit("app.mixed", -5, 2**70, "h\\u00e9", b"by\\x00tes")
sys.audit("app.more", None, 1.5, True, "x" * 10)
open("/dev/null").close()
sys.stdout.write("done\\n"); sys.stdout.flush()
"""


def test_pyaudit_counts_every_event(kernel):
    result, reports, _ = run_tool("pyaudit", AUDIT, "--counts")
    assert result == "done"
    assert len(reports) == 1
    counts = reports[0]["counts"]
    assert counts["app.event"] == 1000
    assert counts["app.mixed"] == 1 and counts["app.more"] == 1
    assert counts["open"] == 1


def test_pyaudit_events_with_decoded_arguments_and_filter(kernel):
    result, events, _ = run_tool("pyaudit", AUDIT, "--event", "app.*")
    assert result == "done"
    app_events = [e for e in events if e["event"] == "app.event"]
    assert [e["args"] for e in app_events] == [[i] for i in range(1000)]
    assert {e["event"] for e in events} == {"app.event", "app.mixed", "app.more"}  # the filter
    mixed = next(e for e in events if e["event"] == "app.mixed")
    assert mixed["args"] == [-5, 2 ** 70, "h\u00e9", "by\x00tes"]  # bytes shown as UTF-8 text
    more = next(e for e in events if e["event"] == "app.more")
    assert more["args"] == [None, 1.5, True, "xxxxxxxxxx"]


def test_decode_object_layouts():
    # a 3.11 int with two 30-bit digits, then 3.12's lv_tag form of the same value, negated
    raw311 = bytes(16) + (2).to_bytes(8, "little", signed=True) + (5).to_bytes(4, "little") + (1).to_bytes(4, "little")
    assert decode_object("int", raw311) == 5 + (1 << 30)
    raw312 = bytes(16) + ((2 << 3) | 2).to_bytes(8, "little") + (5).to_bytes(4, "little") + (1).to_bytes(4, "little")
    assert decode_object("int", raw312, (3, 12)) == -(5 + (1 << 30))
    assert decode_object("NoneType", b"") is None
    assert decode_object("list", bytes(96)) is None


def test_decode_object_reads_this_cpythons_objects():
    """The objects of the running interpreter (Debian's python3: 3.11 on 12, 3.13 on 13), read
    from its memory as the BPF side copies them: every str kind, ints, bytes, floats, bools."""
    import ctypes

    version = sys.version_info[:2]
    values = ["ascii", "h\u00e9", "\u20ac uro", "\U0001f600!", "", -5, 0, 2 ** 70, -(2 ** 40), True, False,
              1.5, b"by\x00tes", b""]
    for value in values:
        raw = ctypes.string_at(id(value), 128)
        assert decode_object(type(value).__name__, raw, version) == value, (value, version)


GC = """
import gc, os, sys
gc.disable()
before = [s["collections"] for s in gc.get_stats()]
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
gc.enable()
for i in range(30): gc.collect(0)
for i in range(20): gc.collect(1)
for i in range(10): gc.collect()
junk = []
for i in range(100000):        # cycles: the interpreter collects on its own too
    a = []; a.append(a); junk.append(a)
    if len(junk) > 1000: junk = []
gc.disable()
after = [s["collections"] for s in gc.get_stats()]
sys.stdout.write(" ".join(str(a - b) for a, b in zip(after, before)) + "\\n"); sys.stdout.flush()
os._exit(0)                    # no collections at shutdown
"""


def test_pygc_sees_every_collection(kernel):
    result, reports, _ = run_tool("pygc", GC)
    expected = [int(x) for x in result.split()]
    assert expected[0] > 30 and expected[1] >= 20 and expected[2] >= 10  # forced ones plus automatic ones
    assert len(reports) == 1
    gens = reports[0]["generations"]
    assert [g["collections"] for g in gens] == expected
    assert reports[0]["collections"] == sum(expected)
    for g in gens:
        assert sum(b["count"] for b in g["histogram_us"]) == g["collections"]
        assert g["pause_max_us"] > 0
    assert gens[1]["collected"] > 0  # the cycles


CALLS = """
import sys
def f(x):
    return x + 1
def g():
    t = 0
    for i in range(1000):
        t = f(t)
    return t
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
if sys.argv[1:] == ["profile"]:
    sys.setprofile(lambda frame, event, arg: None)
g()
sys.setprofile(None)
sys.stdout.write("done\\n"); sys.stdout.flush()
"""


def _has_function_probes() -> bool:
    """Debian 12's python3.11 has python:function__entry/return; Debian 13's python3.13 has none."""
    return "function__entry" in {p.name for p in read_probes(_debian_python())}


def test_pycalls_refuses_an_interpreter_without_function_probes(kernel):
    # Debian 13's python3.13 itself; on Debian 12 (python3.11 has the probes) a program with none
    argv = ([_debian_python(), "-c", "import sys; sys.stdin.read()"] if not _has_function_probes()
            else ["cat"])
    target = subprocess.Popen(argv, stdin=subprocess.PIPE)
    try:
        proc = subprocess.run([sys.executable, "-m", "pybpf.cli", "tool", "pycalls", "--exact", "--pid",
                               str(target.pid), "--json", "--duration", "1"], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    finally:
        target.communicate(b"")
    assert proc.returncode != 0 and "Tracing" not in proc.stderr
    assert f"pid {target.pid} has no python:function__entry probe" in proc.stderr, proc.stderr
    assert "drop --exact to sample the stacks instead" in proc.stderr
    if argv[0] != "cat":
        assert "python:audit" in proc.stderr and "python:gc__start" in proc.stderr  # what it does have


def test_pycalls_counts_calls_with_a_profile_function(kernel):
    if not _has_function_probes():
        pytest.skip(f"{_debian_python()} has no function probes (Debian 13's python3.13): refused, see above")
    result, reports, err = run_tool("pycalls", CALLS, "--exact", script_args=("profile",))
    assert "--exact: every call and return of a traced thread hits a uprobe" in err
    assert result == "done"
    assert len(reports) == 1
    functions = {(r["file"], r["function"]): r for r in reports[0]["functions"]}
    f, g = functions[("<string>", "f")], functions[("<string>", "g")]
    assert f["calls"] == 1000 and g["calls"] == 1
    assert g["total_ns"] > f["total_ns"] > 0  # g's time includes its 1000 calls of f
    assert f["avg_ns"] == f["total_ns"] // 1000


def test_pycalls_says_when_function_probes_do_not_fire(kernel):
    if not _has_function_probes():
        pytest.skip(f"{_debian_python()} has no function probes (Debian 13's python3.13): refused, see above")
    result, reports, _ = run_tool("pycalls", CALLS, "--exact")
    assert result == "done"
    assert reports[0]["functions"] == []
    assert "fires its function probes only while a trace or profile function is set" in reports[0]["message"]
    assert "no python:function__entry probe fired in pid" in reports[0]["message"]
