"""syscount: system call counts and latencies (the options and output of libbpf-tools' syscount).

    pybpf tool syscount [-p PID] [-i INTERVAL] [-d DURATION] [-T TOP] [-x] [-e ERRNO]
                        [-L] [-m] [-P] [-l] [-c CGROUP_PATH] [--json] [-V]

Output is the C tool's, byte for byte: ``[HH:MM:SS]`` then the table (its printf
formats), nothing for an interval without calls; ``-l`` lists the C tool's syscall
table (``  0: read``), from ``ausyscall --dump`` when that is installed, as the C tool does.

BPF side: ``bpf_src/syscount_lat.bpf.c``: a per-CPU hash map of (count, total ns)
per syscall number (or per process with ``-P``), summed over CPUs here.
"""

from __future__ import annotations

import errno as errno_mod
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from typing import Optional

from pybpf.kernel.syscalls import SYSCALLS
from pybpf.toolkit import cstr
from pybpf.text import visible
from pybpf.tools._options import Option
from pybpf.tools._common import (CGROUP_OPTION, Stop, ready_line, emit_json, fail, loaded, out, tool_app, version_option,
                                 wall_hms)

__all__ = ["app", "c_syscall_names", "read_stats"]

app = tool_app()


@lru_cache(maxsize=1)
def c_syscall_names() -> dict[int, str]:
    """The syscall names libbpf-tools' syscount knows: ``ausyscall --dump`` if installed, else
    its built-in x86-64 table (syscall_helpers.c: numbers 0..438 as the kernel's, without 436)."""
    if shutil.which("ausyscall"):
        try:
            dump = subprocess.run(["ausyscall", "--dump"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            dump = ""
        names = {}
        for line in dump.splitlines():
            nr, sep, name = line.partition("\t")
            if sep and nr.isdigit():
                names[int(nr)] = name
        if names:
            return names
    return {nr: name for nr, name in SYSCALLS.items() if nr <= 438 and nr != 436}


def _name(nr: int) -> str:
    return c_syscall_names().get(nr, f"[unknown: {nr}]")[:31]


def read_stats(m, *, clear: bool) -> list[dict]:  # type: ignore[no-untyped-def]
    """The ``data`` map as rows {key, count, total_ns, comm}, summed over CPUs (one batch call)."""
    keys, values = m.lookup_and_delete_batch() if clear else m.lookup_batch()
    counts = values["count"].sum(axis=1) if values.ndim == 2 else values["count"]
    totals = values["total_ns"].sum(axis=1) if values.ndim == 2 else values["total_ns"]
    comms = [max(row) for row in values["comm"].tolist()] if values.ndim == 2 else values["comm"].tolist()
    return [{"key": int(k), "count": int(c), "total_ns": int(t), "comm": cstr(n)}
            for k, c, t, n in zip(keys.tolist(), counts.tolist(), totals.tolist(), comms)]


def _errno_value(text: str) -> int:
    if text.isdigit():
        return int(text)
    value = getattr(errno_mod, text.upper(), None)
    if not isinstance(value, int):
        fail(f"unknown errno {text!r} (a number or a name such as ENOENT)")
    return int(value)  # type: ignore[arg-type]


@app.command()
def syscount(
    pid: Optional[int] = Option(None, "-p", "--pid", help="process PID to trace"),
    interval: int = Option(0, "-i", "--interval", help="print summary at this interval (seconds)"),
    duration: Optional[float] = Option(None, "-d", "--duration", help="total duration of trace (seconds)"),
    top: int = Option(10, "-T", "--top", help="print only the top syscalls (default 10)"),
    failures: bool = Option(False, "-x", "--failures", help="trace only failed syscalls"),
    errno: Optional[str] = Option(None, "-e", "--errno", help="trace only syscalls that return this error "
                                                                "(numeric or EPERM, etc.)"),
    latency: bool = Option(False, "-L", "--latency", help="collect syscall latency"),
    milliseconds: bool = Option(False, "-m", "--milliseconds", help="display latency in milliseconds "
                                                                      "(default: microseconds)"),
    process: bool = Option(False, "-P", "--process", help="count by process and not by syscall"),
    list_syscalls: bool = Option(False, "-l", "--list", help="print list of recognized syscalls and exit"),
    cgroup: Optional[str] = CGROUP_OPTION,
    as_json: bool = Option(False, "--json", help="one JSON object per summary"),
    version: bool = version_option("syscount"),
) -> None:
    """Summarize syscall counts and latencies."""
    if list_syscalls:
        out("".join("%3d: %s\n" % (nr, name) for nr, name in sorted(c_syscall_names().items())))
        sys.stdout.flush()
        return
    rodata: dict[str, object] = {"measure_latency": latency, "count_by_process": process,
                                 "filter_failed": failures}
    if pid is not None:
        rodata["filter_pid"] = pid
    if errno is not None:
        rodata["filter_errno"] = _errno_value(errno)
    div = 1000000.0 if milliseconds else 1000.0

    def report(rows: list[dict]) -> None:
        if not rows:
            return
        rows.sort(key=lambda r: (r["total_ns"] if latency else r["count"]), reverse=True)
        rows = rows[:top]
        if as_json:
            emit_json({"time": time.time(), "by": "process" if process else "syscall", "rows": [
                {("pid" if process else "syscall"): (r["key"] if process else _name(r["key"])),
                 **({"comm": r["comm"]} if process else {}), "count": r["count"],
                 **({"total_ns": r["total_ns"]} if latency else {})} for r in rows]})
            return
        text = "[%s]\n" % wall_hms()
        agg = "PID    COMM" if process else "SYSCALL"
        unit = "TIME (ms)" if milliseconds else "TIME (us)"
        text += ("%-22s %8s %16s\n" % (agg, "COUNT", unit)) if latency else ("%-22s %8s\n" % (agg, "COUNT"))
        for r in rows:
            col = ("%-6u %-15s" % (r["key"], visible(r["comm"])))[:31] if process else _name(r["key"])
            if latency:
                text += "%-22s %8d %16.3f\n" % (col, r["count"], r["total_ns"] / div)
            else:
                text += "%-22s %8d\n" % (col, r["count"])
        out(text + "\n")
        sys.stdout.flush()

    with Stop(duration) as stop, loaded("syscount_lat", rodata, cgroup=cgroup) as obj:
        data = obj.maps["data"]
        ready_line(f"Tracing syscalls, printing top {top}... Ctrl+C to quit.", as_json)
        while not stop.wait(interval if interval > 0 else 3600.0):
            report(read_stats(data, clear=True))
        report(read_stats(data, clear=True))
