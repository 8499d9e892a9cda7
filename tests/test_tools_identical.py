"""Every option of the shipped tools against its C twin (Debian's libbpf-tools), byte for byte.

Each case runs the C tool and ``pybpf tool`` with the same options over one workload
and compares their stdout: the header and every line of the workload identical,
after blanking only the columns that cannot be (wall clock, seconds since each tool's
start, latencies), whose format is checked instead. Event lines are compared as
multisets: the C tools read one perf buffer per CPU, so events of two CPUs come in
either order there, while the ring buffer keeps commit order.
Counts go to $PYBPF_COMPARE_LOG."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.procs import Proc, c_tool, pybpf_cmd, unique_binary
from tests.tooldiff import blank, close_clocks, same_lines, side_by_side

pytestmark = pytest.mark.usefixtures("kernel")

ARGV_SETS = [["a", "two words"], ['q"uote', "", "tab\tx", ""], ["x" * 200, "y"],
             [f"m{i}" for i in range(25)], ["last-empty", ""]]


def _run_execs(prog: Path, argvs: list[list[str]], cwd: Path) -> None:
    for argv in argvs:
        subprocess.run([str(prog), *argv], check=False, cwd=cwd)


EXEC_CASES = {
    "default": [], "-T": ["-T"], "-t": ["-t"], "-q": ["-q"], "-U": ["-U"], "-u 0": ["-u", "0"],
    "--max-args 3": ["--max-args", "3"], "-T -t -U -q": ["-T", "-t", "-U", "-q"],
}


@pytest.mark.parametrize("case", list(EXEC_CASES))
def test_execsnoop_option_output_is_the_c_tools(case: str, tmp_path: Path) -> None:
    prog = unique_binary(tmp_path, "/bin/true", "pbx")
    comm = prog.name
    args = EXEC_CASES[case]
    n = len(ARGV_SETS)
    mine = lambda lines: [l for l in lines if comm in l.split()]  # noqa: E731
    ours, theirs, *_ = side_by_side("execsnoop", args, lambda: _run_execs(prog, ARGV_SETS, tmp_path),
                                    lambda lines: len(mine(lines)) >= n)
    a, b = [ours[0]] + mine(ours), [theirs[0]] + mine(theirs)
    assert len(a) == len(b) == n + 1
    if "-T" in args:
        close_clocks(a[1:], b[1:])
        a, b = blank(a, r"\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"\d\d:\d\d:\d\d")
    if "-t" in args:
        since = r"(?<![\d:])\d+\.\d{3} *(?=\S)"   # %-8.3f, right after the -T column if any
        a, b = blank(a, since, r"\d+\.\d{3} *"), blank(b, since, r"\d+\.\d{3} *")
    same_lines(f"execsnoop {case}", a, b, ordered=False)
    if "--max-args" in args:
        assert any(l.endswith(" ...") for l in a)
    if "-q" in args:
        assert any('"q\\"uote" "" "tab\\tx" "" ' in l for l in a)


def test_execsnoop_name_line_fails_and_cgroup(tmp_path: Path, cgroup: str) -> None:
    """-n and -l (both match the command name in the C tool), -x (failed execs), -c CGROUP."""
    prog = unique_binary(tmp_path, "/bin/true", "pbn")
    env_copy = unique_binary(tmp_path, "/usr/bin/env", "pbe")

    def mine(comm: str):  # noqa: ANN202
        return lambda lines: [l for l in lines if comm in l.split()]

    for case, args in {"-n": ["-n", prog.name], "-l": ["-l", prog.name[:-1]]}.items():
        ours, theirs, *_ = side_by_side("execsnoop", args, lambda: _run_execs(prog, ARGV_SETS[:3], tmp_path),
                                        lambda lines: len(mine(prog.name)(lines)) >= 3)
        assert all(prog.name in l for l in ours[1:]) and len(ours) >= 4
        same_lines(f"execsnoop {case}", ours[:1] + mine(prog.name)(ours), theirs[:1] + mine(prog.name)(theirs),
                   ordered=False)

    def failing() -> None:
        for i in range(3):
            subprocess.run([str(env_copy), f"/nonexistent-{i}/x", "arg"], check=False, capture_output=True)
    ours, theirs, *_ = side_by_side("execsnoop", ["-x"], failing,
                                    lambda lines: sum(" -2 " in l for l in mine(env_copy.name)(lines)) >= 3)
    a, b = ours[:1] + mine(env_copy.name)(ours), theirs[:1] + mine(env_copy.name)(theirs)
    assert sum(" -2 /nonexistent-" in l for l in a) == 3
    same_lines("execsnoop -x", a, b, ordered=False)

    inside = unique_binary(tmp_path, "/bin/true", "pbc")

    def in_and_out() -> None:
        for i in range(2):
            subprocess.run(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$0" in{i}', str(inside)],
                           check=True)
            subprocess.run([str(inside), f"out{i}"], check=True)
        subprocess.run(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$0" done', str(inside)], check=True)
    ours, theirs, *_ = side_by_side("execsnoop", ["-c", cgroup], in_and_out,
                                    lambda lines: any(l.endswith(" done ") for l in lines))
    a, b = ours[:1] + mine(inside.name)(ours), theirs[:1] + mine(inside.name)(theirs)
    assert sorted(l.split()[-1] for l in a[1:]) == ["done", "in0", "in1"]   # nothing from outside the cgroup
    same_lines("execsnoop -c", a, b, ordered=False)


def test_execsnoop_json_keeps_empty_arguments_and_says_truncated(tmp_path: Path) -> None:
    prog = unique_binary(tmp_path, "/bin/true", "pbj")
    proc = Proc(pybpf_cmd("tool", "execsnoop", "--json", "--max-args", "4"))
    try:
        proc.wait_for(lambda: any("Tracing" in l for l in proc.err))
        _run_execs(prog, [["a", "", "b", ""], ["1", "2", "3", "4", "5"], ["z" * 300]], tmp_path)
        proc.wait_for(lambda: sum(f'"{prog.name}"' in l for l in proc.out) >= 3, timeout=20)
    finally:
        proc.stop()
    docs = [json.loads(l) for l in proc.out if f'"{prog.name}"' in l]
    assert docs[0]["args"] == [str(prog), "a", "", "b"] and docs[0]["truncated"] is True   # "" kept; 5 > 4
    assert docs[1]["args"] == [str(prog), "1", "2", "3"] and docs[1]["truncated"] is True
    assert docs[2]["args"] == [str(prog), "z" * 127] and docs[2]["truncated"] is True        # cut at 128 bytes
    assert all(set(d) >= {"pid", "ppid", "uid", "ret", "pcomm", "time"} for d in docs)


OPEN_CASES = {"default": [], "-T": ["-T"], "-U": ["-U"], "-x": ["-x"], "-e": ["-e"], "-u 0": ["-u", "0"],
              "-T -U -e": ["-T", "-U", "-e"]}


def _opens(prog: Path, files: list[str]) -> None:
    subprocess.run([str(prog), *files], capture_output=True)


@pytest.mark.parametrize("case", list(OPEN_CASES))
def test_opensnoop_option_output_is_the_c_tools(case: str, tmp_path: Path) -> None:
    prog = unique_binary(tmp_path, "/bin/cat", "pbo")
    files = []
    for i in range(5):
        (tmp_path / f"file{i}").write_text("x")
        files.append(str(tmp_path / f"file{i}"))
    files += [str(tmp_path / "missing"), str(tmp_path / "missing2")]
    args = OPEN_CASES[case] + ["-n", prog.name]
    want = str(tmp_path / "missing2")
    ours, theirs, *_ = side_by_side("opensnoop", args, lambda: _opens(prog, files),
                                    lambda lines: any(l.endswith(want) for l in lines))
    sel = lambda lines: [l for l in lines if str(tmp_path) in l]  # noqa: E731
    a, b = ours[:1] + sel(ours), theirs[:1] + sel(theirs)
    assert len(a) >= (3 if "-x" in args else 8)
    if "-T" in args:
        close_clocks(a[1:], b[1:])
        a, b = blank(a, r"\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"\d\d:\d\d:\d\d")
    same_lines(f"opensnoop {case}", a, b, ordered=False)


def test_opensnoop_pid_and_tid_filters(tmp_path: Path) -> None:
    target = tmp_path / "opened"
    target.write_text("x")
    code = f"import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\nfor _ in range(5): open({str(target)!r}).close()\n"
    for flag in ("-p", "-t"):
        work = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert work.stdout is not None and work.stdout.readline() == "ready\n"

            def go() -> None:
                assert work.stdin is not None
                work.stdin.write("go\n")
                work.stdin.close()
                work.wait(30)
            ours, theirs, *_ = side_by_side("opensnoop", [flag, str(work.pid)], go,
                                            lambda lines: sum(l.endswith(str(target)) for l in lines) >= 5)
        finally:
            if work.poll() is None:
                work.kill()
                work.wait()
            assert work.stdout is not None
            work.stdout.close()
        a = ours[:1] + [l for l in ours[1:] if l.endswith(str(target))]
        b = theirs[:1] + [l for l in theirs[1:] if l.endswith(str(target))]
        assert len(a) == 6 and all(l.split()[0] == str(work.pid) for l in a[1:])
        same_lines(f"opensnoop {flag}", a, b, ordered=False)


def _workload(code: str) -> subprocess.Popen[str]:
    work = subprocess.Popen([sys.executable, "-c", f"import sys, os, time\nprint('ready', flush=True)\n"
                             f"sys.stdin.readline()\n{code}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert work.stdout is not None and work.stdout.readline() == "ready\n"
    return work


def _finish(work: subprocess.Popen[str]) -> None:
    if work.poll() is None:
        work.kill()
        work.wait()
    for stream in (work.stdin, work.stdout):
        if stream is not None and not stream.closed:
            stream.close()


def _go(work: subprocess.Popen[str]) -> None:
    assert work.stdin is not None
    work.stdin.write("go\n")
    work.stdin.close()
    work.wait(60)
    time.sleep(0.3)


@contextmanager
def _one_busy_cpu(spinners: int) -> Iterator[str]:
    """``spinners`` processes spinning on one CPU while the block runs; yields the code that pins a
    workload to that CPU too, so the scheduler preempts it and delays its wake-ups, idle machine or not."""
    cpu = max(os.sched_getaffinity(0))
    pin = f"os.sched_setaffinity(0, {{{cpu}}})\n"
    procs = [subprocess.Popen([sys.executable, "-c", "import os\n" + pin + "while True: pass"]) for _ in range(spinners)]
    try:
        yield pin
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _syscount_tables(lines: list[str]) -> list[str]:
    """The report lines (header and rows) of a syscount output, its [HH:MM:SS] stamps checked."""
    body = [l for l in lines if not l.startswith("Tracing")]
    stamps = [l for l in body if re.fullmatch(r"\[\d\d:\d\d:\d\d\]", l)]
    assert len(stamps) == 1, body
    return [l for l in body if l not in stamps]


SYSCOUNT_CASES = {"default": [], "-P": ["-P"], "-x": ["-x"], "-e ENOENT": ["-e", "ENOENT"],
                  "-e 2": ["-e", "2"], "-L": ["-L"], "-L -m": ["-L", "-m"], "-T 3": ["-T", "3"]}


@pytest.mark.parametrize("case", list(SYSCOUNT_CASES))
def test_syscount_option_output_is_the_c_tools(case: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    work = _workload(f"for _ in range(300): os.getppid()\n"
                     f"for _ in range(120):\n    try: os.stat({missing!r})\n    except OSError: pass\n"
                     f"for _ in range(70): os.getpid()\n")
    try:
        args = SYSCOUNT_CASES[case] + ["-p", str(work.pid)]
        if "-T" not in args:
            args += ["-T", "40"]
        ours, theirs, *_ = side_by_side("syscount", args, lambda: _go(work), lambda lines: True, settle=0.5)
    finally:
        _finish(work)
    assert ours[0] == theirs[0] and ours[0].startswith("Tracing syscalls, printing top")
    a, b = _syscount_tables(ours), _syscount_tables(theirs)
    if "-L" in args:   # latencies differ run to run: the TIME column's format, then the rest
        col = r"\s+\d+\.\d{3}$"
        a, b = blank(a, col, r"\s{1,}\d+\.\d{3}"), blank(b, col)
        a, b = [re.sub(r"\s*#+$", " <time>", l) for l in a], [re.sub(r"\s*#+$", " <time>", l) for l in b]
    # equal counts may come in any order (qsort is not stable): same rows, each sorted by count
    ordered = "-L" not in args and len({l.split()[-1] for l in a[1:-1]}) == len(a) - 2
    same_lines(f"syscount {case}", a, b, ordered=ordered)
    if case == "default":
        assert any(l.startswith("getppid ") and l.split()[-1] == "300" for l in a)


def test_syscount_list_is_the_c_tools() -> None:
    ours = subprocess.run(pybpf_cmd("tool", "syscount", "-l"), capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}).stdout
    theirs = subprocess.run(c_tool("syscount") + ["-l"], capture_output=True, text=True, check=True).stdout
    same_lines("syscount -l", ours.splitlines(), theirs.splitlines())
    assert ours.splitlines()[0] == "  0: read"


def _hist_shape(lines: list[str]) -> list[str]:
    """A histogram output with the counts and stars blanked: labels, units, bounds, layout."""
    return [re.sub(r": \d+\s+\|[* +]*\|$", ": <n> |<stars>|", l) for l in lines]


RUNQLAT_CASES = {"default": [], "-m": ["-m"], "-P": ["-P"], "-L": ["-L"], "--pidnss": ["--pidnss"],
                 "-T": ["-T"]}


@pytest.mark.parametrize("case", list(RUNQLAT_CASES))
def test_runqlat_option_output_is_the_c_tools(case: str) -> None:
    """Latencies differ between any two runs: the text is compared with counts blanked (labels,
    bounds, columns, blank lines), and both saw events of the same keys."""
    # Its wake-ups must wait in a run queue for milliseconds (-m), on an idle machine too: it shares
    # one CPU with two spinning processes, so each 1 ms sleep ends behind a running spinner's slice.
    with _one_busy_cpu(2) as pin:
        work = _workload(pin + "for _ in range(200): time.sleep(0.001)\n")
        try:
            args = RUNQLAT_CASES[case] + ["-p", str(work.pid)]
            ours, theirs, *_ = side_by_side("runqlat", args, lambda: _go(work), lambda lines: True)
        finally:
            _finish(work)
    a, b = _hist_shape(ours), _hist_shape(theirs)
    if "-T" in args:
        close_clocks(a, b)
        a, b = blank(a, r"^\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"^\d\d:\d\d:\d\d")
    assert a[0] == "Tracing run queue latency... Hit Ctrl-C to end."
    labels = lambda ls: [l for l in ls if re.match(r"(pid|tid|pidns) = ", l)]  # noqa: E731
    if case in ("-P", "-L", "--pidnss"):
        assert labels(a) and set(labels(a)) == set(labels(b))
        key = {"-P": "pid", "-L": "tid", "--pidnss": "pidns"}[case]
        if key != "pidns":   # -p PID: its one process (thread) only, under its own pid
            assert [l.split()[:3] for l in labels(a)] == [[key, "=", str(work.pid)]], labels(a)
    # the bounds printed depend on the largest latency seen: compare up to the shorter histogram
    rows = lambda ls: [l for l in ls if " -> " in l]  # noqa: E731
    n = min(len(rows(a)), len(rows(b)))
    assert n >= 2
    non_rows = lambda ls: [l for l in ls if " -> " not in l]  # noqa: E731
    same_lines(f"runqlat {case}", non_rows(a) + rows(a)[:n], non_rows(b) + rows(b)[:n], ordered=case not in ("-P", "-L"))


TCP_CASES = {"default": ["-4"], "-T": ["-4", "-T"], "-w": ["-4", "-w"], "-L": ["-L", "{port}"],
             "-D": ["-D", "{port}"], "-T -w": ["-T", "-w", "-4"], "-6": ["-6"], "-6 -w": ["-6", "-w"]}


@pytest.mark.parametrize("case", list(TCP_CASES))
def test_tcpstates_option_output_is_the_c_tools(case: str, netns: str) -> None:
    port = random.randint(20000, 60000)
    args = [a.format(port=port) for a in TCP_CASES[case]]
    host, family = ("::1", "socket.AF_INET6") if "-6" in args else ("127.0.0.1", "socket.AF_INET")
    code = ("import socket\n"
            f"s = socket.socket({family}); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('{host}', {port}))\n"
            "s.listen()\n"
            "for _ in range(3):\n"
            f"    c = socket.create_connection(('{host}', {port})); a, _ = s.accept(); c.close(); a.close()\n"
            "s.close()\n")

    def work() -> None:
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], check=True)

    def closed(lines: list[str]) -> bool:
        if "-D" in args:   # the client sides only: 3 connections, 5 transitions each
            return sum(f" {port} " in l for l in lines) >= 15
        return any(f" {port} " in l and "LISTEN" in l and l.split()[-2] == "CLOSE" for l in lines)
    ours, theirs, *_ = side_by_side("tcpstates", args, work, closed, settle=0.5)
    time.sleep(0.3)
    sel = lambda ls: [l for l in ls if f" {port} " in l]  # noqa: E731
    a, b = ours[:1] + sel(ours), theirs[:1] + sel(theirs)
    if "-T" in args:
        close_clocks(a[1:], b[1:])
        a, b = blank(a, r"^\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"^\d\d:\d\d:\d\d")
    # MS (time in the old state) is measured by each tool's own clock reads: its format only
    ms = r"\d+\.\d{3}$"
    a, b = blank(a, ms, ms), blank(b, ms)
    if "-L" in args:   # the listener's own transitions and the server sides
        assert len(a) >= 1 + 3
    elif "-D" in args:
        assert len(a) >= 1 + 3
    else:
        assert len(a) >= 1 + 3 * 9
    same_lines(f"tcpstates {case}", a, b, ordered=False)
    assert a[0] == b[0]


EXIT_CASES = {"default": [], "-t": ["-t"], "-x": ["-x"], "-T": ["-T"]}


def _exits(sh: Path) -> None:
    subprocess.run([str(sh), "-c", "exit 0"], check=False)
    subprocess.run([str(sh), "-c", "exit 3"], check=False)
    subprocess.run([str(sh), "-c", "kill -9 $$"], check=False)
    subprocess.run([str(sh), "-c", "kill -USR1 $$"], check=False)


@pytest.mark.parametrize("case", list(EXIT_CASES))
def test_exitsnoop_option_output_is_the_c_tools(case: str, tmp_path: Path) -> None:
    sh = unique_binary(tmp_path, "/bin/sh", "pbs")
    args = EXIT_CASES[case]
    n = 3 if "-x" in args else 4
    mine = lambda lines: [l for l in lines if l.split()[:1] == [sh.name] or f" {sh.name} " in l]  # noqa: E731
    ours, theirs, *_ = side_by_side("exitsnoop", args, lambda: _exits(sh), lambda lines: len(mine(lines)) >= n)
    a, b = ours[:1] + mine(ours), theirs[:1] + mine(theirs)
    assert len(a) == n + 1
    # AGE(s): exit time minus start time, each tool reading its own clock at the exit: the format
    age = r"(?<= )\d+\.\d\d (?= *(0|code|signal))"
    a, b = blank(a, age, r"\d+\.\d\d "), blank(b, age)
    if "-t" in args:
        close_clocks(a[1:], b[1:])
        a, b = blank(a, r"^\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"^\d\d:\d\d:\d\d")
    same_lines(f"exitsnoop {case}", a, b, ordered=False)
    assert any(l.endswith("signal 9 (Killed)") for l in a) and any(l.endswith("code 3") for l in a)


def test_exitsnoop_pid_and_cgroup(tmp_path: Path, cgroup: str) -> None:
    sh = unique_binary(tmp_path, "/bin/sh", "pbs")
    mine = lambda lines: [l for l in lines if l.split()[:1] == [sh.name]]  # noqa: E731

    def inside() -> None:
        for code in (0, 4, 5):
            subprocess.run(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$0" -c "exit {code}"', str(sh)])
            subprocess.run([str(sh), "-c", "exit 7"])   # outside: filtered
    ours, theirs, *_ = side_by_side("exitsnoop", ["-c", cgroup], inside, lambda lines: len(mine(lines)) >= 3)
    a, b = ours[:1] + mine(ours), theirs[:1] + mine(theirs)
    assert sorted(l.split()[-1] for l in a[1:]) == ["0", "4", "5"]
    age = r"(?<= )\d+\.\d\d (?= *(0|code|signal))"
    same_lines("exitsnoop -c", blank(a, age, r"\d+\.\d\d "), blank(b, age), ordered=False)

    work = _workload("os._exit(9)\n")
    try:
        ours, theirs, *_ = side_by_side("exitsnoop", ["-p", str(work.pid)], lambda: _go(work),
                                        lambda lines: any(l.endswith("code 9") for l in lines))
    finally:
        _finish(work)
    a = [l for l in ours[1:] if l.endswith("code 9")]
    b = [l for l in theirs[1:] if l.endswith("code 9")]
    assert len(a) == 1 and a[0].split()[1] == str(work.pid) and len(ours) == 2
    same_lines("exitsnoop -p", blank(ours[:1] + a, age, r"\d+\.\d\d "), blank(theirs[:1] + b, age))


SIG_CASES = {"default": [], "-n": ["-n"], "-k": ["-k"], "-k -x": ["-k", "-x"], "-s 10": ["-s", "10"],
             "-n -s 10,12": ["-n", "-s", "10,12"]}


@pytest.mark.parametrize("case", list(SIG_CASES))
def test_sigsnoop_option_output_is_the_c_tools(case: str, tmp_path: Path) -> None:
    args = SIG_CASES[case]
    if "10,12" in args and c_tool("sigsnoop") and not _c_takes_signal_lists():
        args = ["-n", "-s", "12"]   # libbpf-tools 0.26 takes one signal
    target = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                               "for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT): signal.signal(s, lambda *a: None)\n"
                               "print('ready', flush=True)\ntime.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    code = ("import os, signal, sys, time\n"
            f"t = {target.pid}\n"
            "for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT, signal.SIGUSR1):\n"
            "    os.kill(t, s); time.sleep(0.02)\n"
            f"try: os.kill({gone.pid}, signal.SIGUSR1)\nexcept ProcessLookupError: pass\n")
    sender = unique_binary(tmp_path, sys.executable, "pbk")
    try:
        # its handlers are set (a SIGUSR1 before that would kill it, and the sender's next kill fail)
        assert target.stdout is not None and target.stdout.readline() == "ready\n"
        mine = lambda lines: [l for l in lines if f" {sender.name} " in l]  # noqa: E731
        # signal_generate also sees the SIGCHLD of the sender's own exit; -k sees the failed kill too
        want = {"default": 5, "-n": 5, "-k": 5, "-k -x": 1, "-s 10": 2}.get(case, 3 if args[-1:] == ["10,12"] else 1)
        ours, theirs, *_ = side_by_side("sigsnoop", args, lambda: subprocess.run([str(sender), "-c", code], check=True),
                                        lambda lines: len(mine(lines)) >= want, settle=0.5)
    finally:
        target.kill()
        target.wait()
        assert target.stdout is not None
        target.stdout.close()
    a, b = ours[:1] + mine(ours), theirs[:1] + mine(theirs)
    assert len(a) == want + 1, a
    close_clocks(a[1:], b[1:])
    a, b = blank(a, r"^\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"^\d\d:\d\d:\d\d")
    same_lines(f"sigsnoop {' '.join(args) or 'default'}", a, b, ordered=False)
    if "-k" in args:
        assert any(l.split()[-1] == str(-errno.ESRCH) for l in a)


def _c_takes_signal_lists() -> bool:
    help_text = subprocess.run(c_tool("sigsnoop") + ["--help"], capture_output=True, text=True).stdout
    return "1,9,15" in help_text


CPUDIST_CASES = {"default": [], "-O": ["-O"], "-m": ["-m"], "-P": ["-P"], "-L": ["-L"], "-T": ["-T"],
                 "-O -P": ["-O", "-P"]}


@pytest.mark.parametrize("case", list(CPUDIST_CASES))
def test_cpudist_option_output_is_the_c_tools(case: str) -> None:
    """Slice lengths differ between any two runs: counts blanked, labels and layout compared.
    The workload spins and sleeps. Both tools count an on-CPU slice only when it ends in preemption
    (prev still TASK_RUNNING), and a lone spinner on a quiet machine may keep its CPU for all of its
    0.6 s: it shares one CPU with a second spinner, so the scheduler preempts it every few ms."""
    with _one_busy_cpu(1) as pin:
        work = _workload(pin + "t = time.time()\nwhile time.time() - t < 0.6: pass\n"
                         "for _ in range(100): time.sleep(0.001)\n")
        try:
            args = CPUDIST_CASES[case] + ["-p", str(work.pid)]
            ours, theirs, *_ = side_by_side("cpudist", args, lambda: _go(work), lambda lines: True)
        finally:
            _finish(work)
    a, b = _hist_shape(ours), _hist_shape(theirs)
    if "-T" in args:
        close_clocks(a, b)
        a, b = blank(a, r"^\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"^\d\d:\d\d:\d\d")
    assert a[0] == b[0] == f"Tracing {'off' if '-O' in args else 'on'}-CPU time... Hit Ctrl-C to end."
    labels = lambda ls: [l for l in ls if re.match(r"(pid|tid) = ", l)]  # noqa: E731
    if "-P" in args or "-L" in args:
        assert labels(a) and set(labels(a)) == set(labels(b))
    rows = lambda ls: [l for l in ls if " -> " in l]  # noqa: E731
    n = min(len(rows(a)), len(rows(b)))
    assert n >= 1
    non_rows = lambda ls: [l for l in ls if " -> " not in l]  # noqa: E731
    same_lines(f"cpudist {case}", non_rows(a) + rows(a)[:n], non_rows(b) + rows(b)[:n], ordered=False)


@pytest.fixture
def loop_disk(tmp_path: Path):  # noqa: ANN201
    """A loop device over a file in a temp dir: (device path, name); detached afterwards."""
    if shutil.which("losetup") is None:
        pytest.skip("needs losetup (util-linux)")
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(16 << 20)
    made = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(backing)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        from tests.conftest import needs_kernel
        needs_kernel(f"cannot make a loop device: {made.stderr.strip()}")
    dev = made.stdout.strip()
    try:
        yield dev, os.path.basename(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _disk_io(dev: str) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={dev}", "bs=4096", "count=64", "oflag=direct"],
                   check=True, capture_output=True)
    subprocess.run(["dd", f"if={dev}", "of=/dev/null", "bs=4096", "count=48", "iflag=direct"],
                   check=True, capture_output=True)
    time.sleep(0.3)


BIO_CASES = {"-d": [], "-D": ["-D"], "-F": ["-F"], "-Q": ["-Q"], "-m": ["-m"], "-T": ["-T"], "-D -F": ["-D", "-F"]}


@pytest.mark.parametrize("case", list(BIO_CASES))
def test_biolatency_option_output_is_the_c_tools(case: str, loop_disk: tuple[str, str]) -> None:
    """On a loop device the test makes, both tools filtered to it (-d): the same requests,
    so the same totals per histogram; labels (disk, flags) and layout byte for byte."""
    dev, name = loop_disk
    args = BIO_CASES[case] + ["-d", name]
    ours, theirs, *_ = side_by_side("biolatency", args, lambda: _disk_io(dev), lambda lines: True, settle=0.5)

    def totals(lines: list[str]) -> list[int]:
        out, cur = [], None
        for l in lines:
            m = re.match(r"\s*\d+ -> \d+\s*: (\d+)", l)
            if m:
                cur = (cur or 0) + int(m.group(1))
            elif cur is not None:
                out.append(cur)
                cur = None
        return out + ([cur] if cur is not None else [])
    assert sum(totals(ours)) == sum(totals(theirs)) >= 64 + 48 // 8   # dd's requests (merges aside)
    a, b = _hist_shape(ours), _hist_shape(theirs)
    if "-T" in args:
        close_clocks(a, b)
        a, b = blank(a, r"^\d\d:\d\d:\d\d", r"\d\d:\d\d:\d\d"), blank(b, r"^\d\d:\d\d:\d\d")
    assert a[0] == b[0] == "Tracing block device I/O... Hit Ctrl-C to end."
    labels = lambda ls: [l for l in ls if l.startswith(("disk = ", "flags = "))]  # noqa: E731
    assert sorted(labels(a)) == sorted(labels(b))
    if "-D" in args:
        assert f"disk = {name}\t" in labels(a) or any(l.startswith(f"disk = {name}\t") for l in labels(a))
    if "-F" in args:
        assert any("Write" in l for l in labels(a)) and any("Read" in l for l in labels(a))
    rows = lambda ls: [l for l in ls if " -> " in l]  # noqa: E731
    non_rows = lambda ls: [l for l in ls if " -> " not in l]  # noqa: E731
    if "-F" not in args:   # one histogram: bounds compared up to the shorter one
        n = min(len(rows(a)), len(rows(b)))
        same_lines(f"biolatency {case}", non_rows(a) + rows(a)[:n], non_rows(b) + rows(b)[:n])
    else:
        same_lines(f"biolatency {case}", non_rows(a), non_rows(b), ordered=False)


def _c_formats(tool: str, marker: str) -> list[str]:
    """The printf formats compiled into the C twin (its .rodata strings) that contain ``marker``."""
    path = c_tool(tool)[-1]
    data = Path(path).read_bytes()
    return [s.decode() for s in re.findall(rb"[\x20-\x7e]{4,}", data) if marker.encode() in s]


def _c_refuses(tool: str) -> tuple[bool, str]:
    """Start the C twin: (True, its error text) when it exits failing to load or attach here,
    (False, "") once it prints its header (it runs). No timer: a loaded machine may take
    seconds to load the object, and a refusal must not pass for a tool that is still loading."""
    proc = Proc(c_tool(tool))
    try:
        proc.wait_for(lambda: bool(proc.out) or proc.p.poll() is not None, timeout=120,
                      what=f"C {tool} to run or fail")
    finally:
        rc = proc.stop()
    if proc.out:
        return False, ""
    stderr = "\n".join(proc.err)
    assert rc != 0 and "failed to" in stderr, (rc, stderr)
    return True, stderr


def _kprobe_refusal(stderr: str, tool: str) -> None:
    """What the C tools say on a kernel without kprobes (DESIGN.md: kprobes are not built in):
    tcpconnect loads, then cannot create its kprobe; bindsnoop's kretprobe program is refused
    at load by Debian 12's libbpf-tools, loads and cannot attach with Debian 13's."""
    if tool == "tcpconnect":
        assert "failed to create kprobe 'tcp_v4_connect+0x0' perf event" in stderr, stderr
        assert "failed to attach BPF programs" in stderr, stderr
    elif "BPF program load failed" in stderr:  # Debian 12's libbpf-tools 0.26: refused at load
        assert "prog 'ipv4_bind_exit': BPF program load failed" in stderr, stderr
        assert "failed to load BPF object" in stderr, stderr
    else:  # Debian 13's: loaded, then no kprobe to attach to
        assert "prog 'ipv4_bind_entry': failed to create kprobe 'inet_bind+0x0' perf event" in stderr, stderr
        assert "failed to attach BPF programs" in stderr, stderr


TCPCONNECT_CASES = {"default": [], "-s": ["-s"], "-U": ["-U"], "-t": ["-t"], "-P": ["-P", "{port}"]}


@pytest.mark.parametrize("case", list(TCPCONNECT_CASES))
def test_tcpconnect_against_the_c_tools_format_and_tcpstates(case: str, netns: str, tmp_path: Path) -> None:
    """The C tcpconnect kprobes tcp_v4_connect: where that is refused (this kernel) the test
    checks the refusal, then each of our lines against the C binary's own printf formats
    filled with what the C tcpstates saw of the same connects (pid, addresses, ports)."""
    refused, why = _c_refuses("tcpconnect")
    port = random.randint(20000, 60000)
    args = [a.format(port=port) for a in TCPCONNECT_CASES[case]]
    client = unique_binary(tmp_path, sys.executable, "pbt")
    code = ("import socket, time\n"
            f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port}))\n"
            "s.listen()\n"
            "for _ in range(3):\n"
            f"    c = socket.create_connection(('127.0.0.1', {port})); a, _ = s.accept(); c.close(); a.close()\n"
            f"c = socket.socket(); c.connect_ex(('127.0.0.1', {port + 1 if port < 60000 else port - 1}))\n"
            "s.close()\n")
    mine = lambda lines: [l for l in lines if f" {client.name[:12]} " in l or f" {client.name} " in l]  # noqa: E731
    want = 3 if "-P" in args else 4

    def work() -> None:
        subprocess.run(["ip", "netns", "exec", netns, str(client), "-c", code], check=True)

    def connects(lines: list[str]) -> tuple[list[list[object]], dict[str, int]]:
        """The C tcpstates' view of the same connects: the connecting pid and, once it left
        SYN_SENT, the port (a socket address is reused by the next connect: taken in order);
        with the connects still in SYN_SENT."""
        rows: list[list[object]] = []
        opened: dict[str, int] = {}
        for parts in (l.split() for l in lines[1:]):
            if len(parts) < 11 or not parts[6].isdigit():
                continue
            change = parts[-4:-1]
            if change == ["CLOSE", "->", "SYN_SENT"]:
                dport = int(parts[6])
                if dport in (port, port + 1, port - 1) and ("-P" not in args or dport == port):
                    opened[parts[0]] = len(rows)
                    rows.append([int(parts[1]), parts[3], parts[5], 0, dport])
            elif change[:2] == ["SYN_SENT", "->"] and parts[0] in opened:
                rows[opened.pop(parts[0])][3] = int(parts[4])   # the port, once bound
        return rows, opened

    tool = "tcpstates" if refused else "tcpconnect"
    theirs = Proc(c_tool(tool) + ([] if refused else args))
    ours = Proc(pybpf_cmd("tool", "tcpconnect", *args))
    try:
        theirs.wait_for(lambda: bool(theirs.out))
        ours.wait_for(lambda: any("Tracing" in l for l in ours.err))
        work()
        ours.wait_for(lambda: len(mine(ours.out)) >= want, timeout=60, what="our connect lines")
        if refused:   # every connect out of SYN_SENT in the C tcpstates too (it prints on its own time)
            def all_seen() -> bool:
                rows, pending = connects(theirs.out)
                return len(rows) >= want and not pending
            theirs.wait_for(all_seen, timeout=60, what="the C tcpstates' lines of the connects")
        else:
            theirs.wait_for(lambda: len(mine(theirs.out)) >= want, timeout=60, what="the C tcpconnect's lines")
    finally:
        ours.stop()
        theirs.stop()
    a = ours.out[:1] + mine(ours.out)
    assert len(a) == want + 1
    if not refused:   # a kernel with kprobes: the C tool itself, line for line
        b = theirs.out[:1] + mine(theirs.out)
        if "-t" in args:
            a, b = blank(a, r"^\d+\.\d{3} *", r"\d+\.\d{3} *"), blank(b, r"^\d+\.\d{3} *")
        same_lines(f"tcpconnect {case}", a, b, ordered=False)
        return
    _kprobe_refusal(why, "tcpconnect")
    head_fmt = next(f for f in _c_formats("tcpconnect", "%-6s %-1") if "%-2s" in f)
    row_fmt = next(f for f in _c_formats("tcpconnect", "%-6d %-1") if "%-2d" in f)
    comm_w = int(re.search(r"%-(\d+)s", head_fmt[5:]).group(1))     # type: ignore[union-attr]
    head = ("%-9s" % "TIME(s)" if "-t" in args else "") + ("%-6s" % "UID" if "-U" in args else "")
    head += head_fmt % ("PID", "COMM", "IP", "SADDR", "DADDR") + (" %-5s" % "SPORT" if "-s" in args else "")
    expected = [head + " %-5s" % "DPORT"]
    rows, _ = connects(theirs.out)
    for pid, saddr, daddr, sport, dport in rows:
        row = "%-6d" % 0 if "-U" in args else ""
        row += row_fmt % (pid, client.name, 4, saddr, daddr)
        if "-s" in args:
            row += " %-5d" % sport
        expected.append(row + " %-5d" % dport)
    if "-t" in args:
        a = blank(a, r"^\d+\.\d{3} *", r"\d+\.\d{3} *")
        expected = [expected[0]] + ["#" * 9 + e for e in expected[1:]]
    assert int(comm_w) in (12, 16)
    same_lines(f"tcpconnect {case} (C formats + C tcpstates)", a, expected, ordered=False)


def test_tcpconnect_count_mode(netns: str) -> None:
    port = random.randint(20000, 60000)
    code = ("import socket\n"
            f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port}))\n"
            "s.listen(10)\n"
            "for _ in range(5):\n"
            f"    c = socket.create_connection(('127.0.0.1', {port})); a, _ = s.accept(); c.close(); a.close()\n")
    ours = Proc(pybpf_cmd("tool", "tcpconnect", "-c", "-P", str(port)))
    try:
        ours.wait_for(lambda: any("Tracing" in l for l in ours.err))
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], check=True)
        time.sleep(0.3)
    finally:
        ours.stop()
    head_fmt = "\n%-25s %-25s" % ("LADDR", "RADDR") + " %-20s" % "RPORT" + " %-10s" % "CONNECTS"
    assert ours.out[:2] == head_fmt.split("\n")
    assert ours.out[2] == "%-25s %-25s" % ("127.0.0.1", "127.0.0.1") + " %-20d" % port + " %-10d" % 5
    refused, why = _c_refuses("tcpconnect")
    if refused:
        _kprobe_refusal(why, "tcpconnect")
        assert any("%-25s %-25s" in f for f in _c_formats("tcpconnect", "%-25s"))


def test_bindsnoop_against_the_c_tools_format(tmp_path: Path) -> None:
    """The C bindsnoop kprobes inet_bind: where refused (this kernel), its refusal is checked and
    our lines against its compiled printf formats, filled with the binds the workload made."""
    refused, why = _c_refuses("bindsnoop")
    binder = unique_binary(tmp_path, sys.executable, "pbb")
    port = random.randint(20000, 60000)
    code = ("import socket\n"
            f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n"
            f"s.bind(('127.0.0.1', {port}))\n"
            "u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.setsockopt(socket.SOL_IP, 15, 1)\n"
            f"u.bind(('::1', {port}))\n"
            "try: socket.socket().bind(('192.0.2.1', 80))\nexcept OSError: pass\n")
    mine = lambda lines: [l for l in lines if f" {binder.name} " in l]  # noqa: E731
    if not refused:
        ours, theirs, *_ = side_by_side("bindsnoop", ["-x"], lambda: subprocess.run([str(binder), "-c", code]),
                                        lambda lines: len(mine(lines)) >= 3)
        same_lines("bindsnoop -x", ours[:1] + mine(ours), theirs[:1] + mine(theirs), ordered=False)
        return
    _kprobe_refusal(why, "bindsnoop")
    proc = Proc(pybpf_cmd("tool", "bindsnoop", "-x"))
    try:
        proc.wait_for(lambda: any("Tracing" in l for l in proc.err))
        subprocess.run([str(binder), "-c", code], check=True)
        proc.wait_for(lambda: len(mine(proc.out)) >= 3, timeout=20)
    finally:
        proc.stop()
    head_fmt = next(f for f in _c_formats("bindsnoop", "%-7s %-16s"))
    row_fmt = next(f for f in _c_formats("bindsnoop", "%-7d %-16s"))
    pid = int(mine(proc.out)[0].split()[0])
    expected = [head_fmt % ("PID", "COMM", "RET", "PROTO", "OPTS", "IF", "PORT", "ADDR"),
                row_fmt % (pid, binder.name, 0, "TCP", "...Rr", 0, port, "127.0.0.1"),
                row_fmt % (pid, binder.name, 0, "UDP", "F....", 0, port, "::1"),
                row_fmt % (pid, binder.name, -99, "TCP", ".....", 0, 0, "0.0.0.0")]
    same_lines("bindsnoop -x (C formats)", proc.out[:1] + mine(proc.out), [e.rstrip("\n") for e in expected])


def _open_flood(target: Path, n: int) -> subprocess.Popen[str]:
    return _workload(f"p = {str(target)!r}\nfor _ in range({n}): os.close(os.open(p, os.O_RDONLY))\n")


def test_opensnoop_flood_loses_nothing_silently(tmp_path: Path) -> None:
    """A flood of opens faster than the tool prints: every open is a line or counted in a
    'Lost N events on CPU #C!' line (stderr, as libbpf-tools), and in --json a lost_events
    record; the ring holds a burst that overflows the C twin's perf buffer."""
    target = tmp_path / "flood"
    target.write_text("x")
    n = 200_000
    work = _open_flood(target, n)
    try:
        ours = Proc(pybpf_cmd("tool", "opensnoop", "-p", str(work.pid), "--json"))
        try:
            ours.wait_for(lambda: any("Tracing" in l for l in ours.err))
            _go(work)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                seen = sum('"path"' in l for l in ours.out)
                lost = sum(json.loads(l)["lost_events"] for l in ours.out if '"lost_events"' in l)
                if seen + lost >= n:
                    break
                time.sleep(0.2)
        finally:
            ours.stop()
    finally:
        _finish(work)
    seen = sum(1 for l in ours.out if '"path"' in l and str(target) in l)
    lost_json = sum(json.loads(l)["lost_events"] for l in ours.out if '"lost_events"' in l)
    lost_err = sum(int(m.group(1)) for l in ours.err for m in [re.match(r"Lost (\d+) events on CPU #\d+!$", l)] if m)
    assert lost_json == lost_err
    assert seen + lost_json == n, (seen, lost_json)
    if os.environ.get("PYBPF_COMPARE_LOG"):
        with open(os.environ["PYBPF_COMPARE_LOG"], "a") as f:
            f.write(json.dumps({"case": "opensnoop flood", "opens": n, "lines": seen, "lost": lost_json}) + "\n")

    # The ring holds a burst the C twin's perf buffer holds, and more. Measured with both readers
    # stopped (SIGSTOP) during the burst, so that what is held depends on the buffers alone, not on
    # how fast each reader runs on a loaded machine: 2,000 opens on one CPU overflow the C twin's
    # 64-page buffer of that CPU (it reports the loss, and lines + lost = the burst), and fill the
    # ring to two thirds of its 1 MiB, without a loss.
    burst = 2000
    marker = tmp_path / "after-the-burst"
    marker.write_text("x")
    work = subprocess.Popen([sys.executable, "-c", (
        "import os, sys\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one CPU: one of the C twin's buffers\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        f"    for _ in range({burst} if line == 'burst\\n' else 1):\n"
        f"        os.close(os.open({str(target)!r} if line == 'burst\\n' else {str(marker)!r}, os.O_RDONLY))\n"
        "    print('done', flush=True)\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(what: str) -> None:
        assert work.stdin is not None and work.stdout is not None
        work.stdin.write(what + "\n")
        work.stdin.flush()
        assert work.stdout.readline() == "done\n"

    def lost(p: Proc) -> int:
        return sum(int(m.group(1)) for l in p.err for m in [re.match(r"Lost (\d+) events on CPU #\d+!$", l)] if m)

    def lines(p: Proc) -> int:
        return sum(l.endswith(str(target)) for l in p.out)
    try:
        assert work.stdout is not None and work.stdout.readline() == "ready\n"
        theirs = Proc(c_tool("opensnoop") + ["-p", str(work.pid)])
        ours = Proc(pybpf_cmd("tool", "opensnoop", "-p", str(work.pid)))
        try:
            theirs.wait_for(lambda: bool(theirs.out))
            ours.wait_for(lambda: bool(ours.out) and any("Tracing" in l for l in ours.err))
            for p in (theirs, ours):
                p.p.send_signal(signal.SIGSTOP)
            ask("burst")
            for p in (theirs, ours):
                p.p.send_signal(signal.SIGCONT)
            ours.wait_for(lambda: lines(ours) + lost(ours) >= burst, timeout=120, what="our burst")
            # perf writes a buffer's loss record in front of the next event that fits: one more
            # open on that CPU (repeated until it is seen) brings the C twin's count of what it lost
            deadline = time.monotonic() + 120
            while lines(theirs) + lost(theirs) < burst and time.monotonic() < deadline:
                ask("marker")
                theirs.wait_for(lambda: any(l.endswith(str(marker)) for l in theirs.out), what="a marker")
                time.sleep(0.2)
        finally:
            ours.stop()
            theirs.stop()
    finally:
        if work.poll() is None:
            work.kill()
            work.wait()
        for stream in (work.stdin, work.stdout):
            if stream is not None:
                stream.close()
    assert lost(ours) == 0 and lines(ours) == burst, (lines(ours), ours.err[-5:])
    assert lost(theirs) > 0, "the burst fitted the C twin's buffer: it shows nothing about the ring's size"
    assert lines(theirs) + lost(theirs) == burst, (lines(theirs), lost(theirs))
    if os.environ.get("PYBPF_COMPARE_LOG"):
        with open(os.environ["PYBPF_COMPARE_LOG"], "a") as f:
            f.write(json.dumps({"case": "opensnoop burst, readers stopped", "opens": burst, "lines": lines(ours),
                                "c_lines": lines(theirs), "c_lost": lost(theirs)}) + "\n")
