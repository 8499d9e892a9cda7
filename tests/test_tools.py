"""The shipped tools against their C twins: Debian's libbpf-tools binaries, run at the same
time on the same workload. Event tools must see the same events; histogram and counting
tools must agree on totals (tolerances stated per test)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import enter_netns
from tests.procs import Proc, c_tool, pybpf_cmd, unique_binary
from pybpf import tools
from pybpf.toolkit import log2_hist_lines

pytestmark = pytest.mark.usefixtures("kernel")


def test_tools_are_discovered() -> None:
    names = tools.tool_names()
    for name in ("execsnoop", "opensnoop", "syscount", "runqlat", "tcpstates"):
        assert name in names
        assert hasattr(tools.load_tool(name), "registered_commands")
    assert not [n for n in names if n.startswith("_")]
    with pytest.raises(LookupError, match="no pybpf tool 'nope'"):
        tools.load_tool("nope")
    out = subprocess.run(pybpf_cmd("tool"), capture_output=True, text=True, check=True).stdout
    assert "execsnoop" in out and "runqlat" in out
    bad = subprocess.run(pybpf_cmd("tool", "nope"), capture_output=True, text=True)
    assert bad.returncode == 2 and "no pybpf tool 'nope'" in bad.stderr


def test_log2_hist_print_matches_libbpf_tools_format() -> None:
    lines = log2_hist_lines([0, 3, 0, 12], "usecs")
    assert lines == [
        "     usecs               : count    distribution",
        "         0 -> 1          : 0        |                                        |",
        "         2 -> 3          : 3        |**********                              |",
        "         4 -> 7          : 0        |                                        |",
        "         8 -> 15         : 12       |****************************************|",
    ]


def _started(ours: Proc, theirs: Proc, ours_ready: str, theirs_ready: str) -> None:
    ours.wait_for(lambda: any(ours_ready in line for line in ours.err + ours.out), what=ours_ready)
    theirs.wait_for(lambda: any(theirs_ready in line for line in theirs.out + theirs.err), what=theirs_ready)


def test_execsnoop_sees_the_same_execs_as_libbpf_tools(tmp_path: Path) -> None:
    prog = unique_binary(tmp_path, "/bin/true", "pbx")
    comm = prog.name
    theirs = Proc(c_tool("execsnoop"))
    ours = Proc(pybpf_cmd("tool", "execsnoop", "--json"))
    try:
        _started(ours, theirs, "Tracing exec", "PCOMM")
        n = 12
        for i in range(n):
            subprocess.run([str(prog), f"arg{i}", "two words" if i % 2 else "x"], check=True)
        mine = lambda: [json.loads(l) for l in ours.out if l.startswith("{") and f'"{comm}"' in l]  # noqa: E731
        ours.wait_for(lambda: len(mine()) >= n, timeout=20, what=f"{n} execs of {comm}")
        theirs.wait_for(lambda: sum(l.startswith(comm + " ") for l in theirs.out) >= n, timeout=20,
                        what=f"{n} execs of {comm} in the C tool")
    finally:
        ours.stop()
        theirs.stop()
    our_events = {(e["pid"], e["ppid"], e["ret"], " ".join(e["args"])) for e in mine()}
    their_events = set()
    for line in theirs.out:
        if line.startswith(comm + " "):
            _c, pid, ppid, ret, args = line.split(None, 4)
            their_events.add((int(pid), int(ppid), int(ret), args.strip()))
    assert len(our_events) == n
    assert our_events == their_events


def test_opensnoop_sees_the_same_opens_as_libbpf_tools(tmp_path: Path) -> None:
    prog = unique_binary(tmp_path, "/bin/cat", "pbo")
    comm = prog.name
    files = []
    for i in range(5):
        f = tmp_path / f"file{i}"
        f.write_text("x")
        files.append(str(f))
    files.append(str(tmp_path / "missing"))        # ENOENT
    theirs = Proc(c_tool("opensnoop") + ["-n", comm])
    ours = Proc(pybpf_cmd("tool", "opensnoop", "-n", comm))
    try:
        _started(ours, theirs, "Tracing open", "PID")
        subprocess.run([str(prog), *files], capture_output=True)
        want = str(tmp_path / "missing")
        ours.wait_for(lambda: any(l.endswith(want) for l in ours.out), timeout=20, what="the last open")
        theirs.wait_for(lambda: any(l.endswith(want) for l in theirs.out), timeout=20, what="the last open (C)")
    finally:
        ours.stop()
        theirs.stop()

    def events(lines: list[str]) -> list[tuple[int, int, int, str]]:
        out = []
        for line in lines:
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[1] == comm:
                out.append((int(parts[0]), int(parts[2]), int(parts[3]), parts[4]))
        return out

    mine, c = events(ours.out), events(theirs.out)
    assert ours.out[0].split() == theirs.out[0].split() == ["PID", "COMM", "FD", "ERR", "PATH"]
    assert {p for *_x, p in mine} >= set(files)
    assert any(err == 2 and path == want for _pid, _fd, err, path in mine)
    assert mine == c                                # same events, same order


class _Work(subprocess.Popen):  # type: ignore[type-arg]
    def kill(self) -> None:
        if self.poll() is None:
            super().kill()
            self.wait()
        for stream in (self.stdin, self.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def _workload(code: str) -> _Work:
    """A Python process that starts up, says ready, waits for a line on stdin, runs ``code``, exits.

    Started before the tools and waited for, so both tools see exactly what follows its start-up.
    """
    work = _Work([sys.executable, "-c", f"import sys, os, time\nprint('ready', flush=True)\n"
                  f"sys.stdin.readline()\n{code}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert work.stdout is not None and work.stdout.readline() == "ready\n"
    return work


def _parse_syscount(lines: list[str]) -> dict[str, int]:
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and re.fullmatch(r"[a-z_0-9\[\]]+", parts[0]) and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_syscount_counts_as_libbpf_tools() -> None:
    n = 2000
    work = _workload(f"for _ in range({n}): os.getppid()\n")
    try:
        theirs = Proc(c_tool("syscount") + ["-p", str(work.pid), "-T", "40"])
        ours = Proc(pybpf_cmd("tool", "syscount", "-p", str(work.pid), "-T", "40"))
        try:
            _started(ours, theirs, "Tracing syscalls", "Tracing syscalls")
            assert work.stdin is not None
            work.stdin.write("go\n")
            work.stdin.close()
            work.wait(30)
            time.sleep(0.3)
        finally:
            ours.stop()
            theirs.stop()
    finally:
        work.kill()
    mine, c = _parse_syscount(ours.out), _parse_syscount(theirs.out)
    assert mine["getppid"] == c["getppid"] == n
    # every syscall of the workload, counted by both at sys_exit: the same numbers
    assert mine == c


def test_syscount_latency_and_json() -> None:
    n = 500
    work = _workload(f"for _ in range({n}): os.getppid()\n")
    try:
        ours = Proc(pybpf_cmd("tool", "syscount", "-L", "-p", str(work.pid), "--json"))
        ours.wait_for(lambda: any("Tracing syscalls" in l for l in ours.err))
        assert work.stdin is not None
        work.stdin.write("go\n")
        work.stdin.close()
        work.wait(30)
        time.sleep(0.2)
        ours.stop()
    finally:
        work.kill()
    doc = json.loads(ours.out[-1])
    rows = {r["syscall"]: r for r in doc["rows"]}
    assert rows["getppid"]["count"] == n and rows["getppid"]["total_ns"] > 0


def _parse_hist(lines: list[str]) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for line in lines:
        m = re.match(r"\s*(\d+) -> (\d+)\s*: (\d+)\s*\|", line)
        if m:
            key = (int(m.group(1)), int(m.group(2)))
            out[key] = out.get(key, 0) + int(m.group(3))
    return out


def test_runqlat_histogram_total_agrees_with_libbpf_tools() -> None:
    n = 300
    work = _workload(f"for _ in range({n}): time.sleep(0.002)\n")
    try:
        theirs = Proc(c_tool("runqlat") + ["-p", str(work.pid)])
        ours = Proc(pybpf_cmd("tool", "runqlat", "-p", str(work.pid)))
        try:
            _started(ours, theirs, "Tracing run queue", "Tracing run queue")
            assert work.stdin is not None
            work.stdin.write("go\n")
            work.stdin.close()
            work.wait(60)
            time.sleep(0.3)
        finally:
            ours.stop()
            theirs.stop()
    finally:
        work.kill()
    mine, c = _parse_hist(ours.out), _parse_hist(theirs.out)
    total_mine, total_c = sum(mine.values()), sum(c.values())
    # most of the n sleeps end in a wake-up and a switch-in (not all: a timer that fires before the
    # task has left the CPU makes none), preemptions add a few: the workload made hundreds of events
    assert total_c >= n // 2 and total_mine >= n // 2
    # the same events by both: totals agree within 2% (a wake-up racing an attach, at most a few)
    assert abs(total_mine - total_c) <= max(3, 0.02 * total_c), (mine, c)
    # slots with a tenth of the events or more are slots in the C histogram too (same bounds)
    assert all(k in c for k, v in mine.items() if v > 0.1 * total_mine)


def test_tcpstates_sees_the_same_transitions_as_libbpf_tools(netns: str) -> None:
    port = random.randint(20000, 60000)
    theirs = Proc(c_tool("tcpstates") + ["-4"])
    ours = Proc(pybpf_cmd("tool", "tcpstates", "-4", "--json"))
    code = ("import socket\n"
            f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port}))\n"
            "s.listen()\n"
            f"for _ in range(3):\n"
            f"    c = socket.create_connection(('127.0.0.1', {port})); a, _ = s.accept(); c.close(); a.close()\n"
            "s.close()\n")
    try:
        _started(ours, theirs, "Tracing TCP", "SKADDR")
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], check=True)
        ours.wait_for(lambda: sum(f'"lport": {port}' in l and '"LISTEN", "newstate": "CLOSE"' in l
                                  for l in ours.out) >= 1, timeout=20, what="the listener's close")
        theirs.wait_for(lambda: any(f" {port} " in l and l.split()[-2] == "CLOSE" and "LISTEN" in l
                                    for l in theirs.out), timeout=20, what="the listener's close (C)")
        time.sleep(0.5)
    finally:
        ours.stop()
        theirs.stop()
    mine = set()
    for line in ours.out:
        e = json.loads(line)
        if port in (e["lport"], e["rport"]):
            mine.add((e["skaddr"], e["lport"], e["rport"], e["oldstate"], e["newstate"]))
    c = set()
    for line in theirs.out[1:]:
        parts = line.split()
        if len(parts) >= 11 and str(port) in (parts[4], parts[6]):
            c.add((parts[0].lstrip("0") or "0", int(parts[4]), int(parts[6]), parts[7], parts[9]))
    mine = {(sk.lstrip("0"), lp, rp, o, n) for sk, lp, rp, o, n in mine}
    assert len(mine) >= 3 * 9   # 3 connections: at least 9 transitions each, plus the listener
    assert mine == c


def test_every_tool_has_version_and_json_and_a_config() -> None:
    names = tools.tool_names()
    for name in ("exitsnoop", "sigsnoop", "tcpconnect", "bindsnoop", "cpudist", "biolatency"):
        assert name in names
    import pybpf
    for name in ("execsnoop", "opensnoop", "syscount", "runqlat", "tcpstates", "exitsnoop", "sigsnoop",
                 "tcpconnect", "bindsnoop", "cpudist", "biolatency"):
        out = subprocess.run(pybpf_cmd("tool", name, "-V"), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout == f"{name} {pybpf.__version__} (pybpf)\n", (name, out.stderr)
        helps = subprocess.run(pybpf_cmd("tool", name, "--help"), capture_output=True, text=True, timeout=120).stdout
        assert "--json" in helps
        assert name in tools.config_names()


def test_cgroup_option_errors_name_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-cgroup")
    for name in ("execsnoop", "runqlat", "syscount", "exitsnoop", "cpudist", "biolatency", "bindsnoop"):
        run = subprocess.run(pybpf_cmd("tool", name, "-c", missing), capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and f"Failed opening Cgroup path: {missing}" in run.stderr, (name, run.stderr)


@pytest.mark.parametrize("name", ["runqlat", "cpudist", "biolatency"])
def test_histogram_tools_print_count_reports_then_exit(name: str) -> None:
    """`TOOL INTERVAL COUNT` (the C tools' positional pair): COUNT reports, each an empty line then
    the histogram, then the tool exits by itself; with no interval the one report comes at the stop."""
    def reports(lines: list[str]) -> int:
        # biolatency, as its C twin, also puts an empty line before each histogram
        return lines.count("") - (sum(l.endswith("distribution") for l in lines) if name == "biolatency" else 0)

    run = subprocess.run(pybpf_cmd("tool", name, "0.2", "3"), capture_output=True, text=True, timeout=120,
                         errors="surrogateescape")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Tracing") and reports(lines) == 3, lines
    assert all(l.endswith("distribution") or " -> " in l for l in lines[1:] if l), lines
    proc = Proc(pybpf_cmd("tool", name))
    try:
        proc.wait_for(lambda: any(l.startswith("Tracing") for l in proc.out))
    finally:
        assert proc.stop() == 0
    assert reports(proc.out) == 1, proc.out
