"""syscount: system call counts and latencies (the options and output of libbpf-tools' syscount).

    pybpf tool syscount [-p PID] [-i INTERVAL] [-d DURATION] [-T TOP] [-x] [-e ERRNO]
                        [-L] [-m] [-P] [-l] [--json]

BPF side: ``bpf_src/syscount_lat.bpf.c``: a per-CPU hash map of (count, total ns)
per syscall number (or per process with ``-P``), summed over CPUs here.
"""

from __future__ import annotations

import errno as errno_mod
import time
from typing import Optional

import typer

from pybpf.kernel.syscalls import SYSCALLS, syscall_name
from pybpf.toolkit import cstr, strftime_hms
from pybpf.tools._common import Stop, emit_json, fail, loaded, ready_message

__all__ = ["app", "read_stats"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


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
    pid: Optional[int] = typer.Option(None, "-p", "--pid", help="process PID to trace"),
    interval: int = typer.Option(0, "-i", "--interval", help="print summary every N seconds (0: at the end)"),
    duration: Optional[float] = typer.Option(None, "-d", "--duration", help="total tracing duration (seconds)"),
    top: int = typer.Option(10, "-T", "--top", help="print only the top N syscalls"),
    failures: bool = typer.Option(False, "-x", "--failures", help="trace only failed syscalls"),
    errno: Optional[str] = typer.Option(None, "-e", "--errno", help="trace only syscalls failing with this errno"),
    latency: bool = typer.Option(False, "-L", "--latency", help="collect syscall latency"),
    milliseconds: bool = typer.Option(False, "-m", "--milliseconds", help="latency in milliseconds"),
    process: bool = typer.Option(False, "-P", "--process", help="count by process, not by syscall"),
    list_syscalls: bool = typer.Option(False, "-l", "--list", help="print the known syscalls and exit"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per summary"),
) -> None:
    """Summarize syscall counts and latencies."""
    if list_syscalls:
        for nr in sorted(SYSCALLS):
            print(SYSCALLS[nr])
        return
    rodata: dict[str, object] = {"measure_latency": latency, "count_by_process": process,
                                 "filter_failed": failures}
    if pid is not None:
        rodata["filter_pid"] = pid
    if errno is not None:
        rodata["filter_errno"] = _errno_value(errno)
    div = 1e6 if milliseconds else 1e3
    unit = "TIME (ms)" if milliseconds else "TIME (us)"

    def report(rows: list[dict]) -> None:
        rows.sort(key=lambda r: (r["total_ns"] if latency else r["count"]), reverse=True)
        rows = rows[:top]
        if as_json:
            emit_json({"time": time.time(), "by": "process" if process else "syscall", "rows": [
                {("pid" if process else "syscall"): (r["key"] if process else syscall_name(r["key"])),
                 **({"comm": r["comm"]} if process else {}), "count": r["count"],
                 **({"total_ns": r["total_ns"]} if latency else {})} for r in rows]})
            return
        print(f"[{strftime_hms()}]")
        head = f"{'PID':<6} {'COMM':<15}" if process else f"{'SYSCALL':<22}"
        print(head + f" {'COUNT':>8}" + (f" {unit:>16}" if latency else ""))
        for r in rows:
            first = f"{r['key']:<6} {r['comm'][:15]:<15}" if process else f"{_name(r['key'])[:22]:<22}"
            print(first + f" {r['count']:>8}" + (f" {r['total_ns'] / div:>16.3f}" if latency else ""))
        print(flush=True)

    with Stop(duration) as stop, loaded("syscount_lat", rodata) as obj:
        data = obj.maps["data"]
        ready_message(f"Tracing syscalls, printing top {top}... Ctrl+C to quit.")
        while not stop.wait(interval if interval > 0 else 3600.0):
            report(read_stats(data, clear=True))
        report(read_stats(data, clear=True))


def _name(nr: int) -> str:
    return SYSCALLS.get(nr, f"[{nr}]")
