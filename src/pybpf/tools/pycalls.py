"""pycalls: calls and time per Python function (``file:function``), top N every interval (USDT).

    pybpf tool pycalls [--pid PID | --binary PYTHON] [--top N] [--interval S] [--duration S] [--json]

Counts calls and the time from entry to return (callees included) per function,
from USDT ``python:function__entry`` / ``function__return``. CPython 3.11 fires
these only while the thread has a trace or profile function (``sys.setprofile``,
``sys.settrace``, a debugger, coverage): without one, the tool says so plainly
instead of printing an empty table. With ``--pid`` it ends when the process does.
BPF side: ``bpf_src/pycalls.bpf.c``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer

import pybpf
from pybpf.errors import BpfError, NotSupportedError
from pybpf.text import visible
from pybpf.tools._pyusdt import BINARY_HELP, Stop, Target, attached, cpu_seconds, ready

__all__ = ["NO_PROBES", "app", "read_stats"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})

NO_PROBES = ("no python:function__entry probe fired in {who}{cpu}: CPython 3.11 fires its function "
             "probes only while a trace or profile function is set (sys.setprofile, sys.settrace, "
             "a debugger or coverage); set one in the traced program to see its calls")


def _require_function_probes(target: Target) -> None:
    """Refuse, saying why, an interpreter built without ``python:function__entry``.

    Debian 12's python3.11 has the probe; Debian 13's python3.13 has only ``audit``, ``gc__start``,
    ``gc__done`` and ``import__find__load__start``/``done`` (no function probes at all), so this
    tool cannot count its calls."""
    from pybpf.spec.usdt import describe_probes, process_probes, read_probes

    try:
        probes = process_probes(target.pid) if target.pid is not None else read_probes(str(target.binary))
    except (OSError, BpfError):
        return  # attaching says what is wrong with the target
    if any(p.provider == "python" and p.name == "function__entry" for p in probes):
        return
    where = f"pid {target.pid}" if target.pid is not None else str(target.binary)
    raise NotSupportedError(f"{where} has no python:function__entry probe, which pycalls counts calls with "
                            f"(Debian 12's python3.11 has it; Debian 13's python3.13 has no function probes); "
                            f"it has: {describe_probes(probes)}", feature="python:function__entry")


def _cstr(raw: Any) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def read_stats(obj: pybpf.Object, clear: bool = False) -> list[dict[str, Any]]:
    """Per-function stats so far: file, function, calls, total_ns, avg_ns (most time first).

    ``clear`` deletes what was read, so that the next read covers what came after."""
    stats = obj.maps["stats"]
    keys, values = stats.lookup_and_delete_batch() if clear else stats.lookup_batch()
    rows: list[dict[str, Any]] = []
    for key, value in zip(keys, values):
        calls, total, returns = int(value["calls"]), int(value["total_ns"]), int(value["returns"])
        rows.append({"file": _cstr(key["file"]), "function": _cstr(key["func"]), "calls": calls,
                     "total_ns": total, "avg_ns": total // returns if returns else 0})
    rows.sort(key=lambda r: (-r["total_ns"], -r["calls"], r["file"], r["function"]))
    return rows


def _print(rows: list[dict[str, Any]], top: int) -> None:
    print(f"{'FUNCTION':<60} {'CALLS':>10} {'TOTAL ms':>12} {'AVG us':>10}")
    for r in rows[:top]:
        name = visible(f"{r['file']}:{r['function']}")
        print(f"{name[-60:]:<60} {r['calls']:>10} {r['total_ns'] / 1e6:>12.3f} {r['avg_ns'] / 1e3:>10.2f}")
    print(flush=True)


@app.command()
def pycalls(
    pid: int | None = typer.Option(None, "-p", "--pid", help="trace this Python process only"),
    binary: str | None = typer.Option(None, "--binary", help="trace every process running this "
                                         "interpreter " + BINARY_HELP),
    top: int = typer.Option(20, "-n", "--top", help="show the N functions with the most time"),
    interval: float | None = typer.Option(None, "-i", "--interval", help="print the top N every S seconds"),
    duration: float | None = typer.Option(None, "-d", "--duration", help="stop after S seconds"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per report"),
) -> None:
    """Calls and time per Python function of CPython processes."""
    target = Target(pid, binary)
    _require_function_probes(target)
    who = f"pid {pid}" if pid is not None else f"processes running {target.binary}"
    cpu_before = cpu_seconds(pid) if pid is not None else None
    with Stop(duration, pid) as stop, \
            attached("pycalls", target, {"on_entry": "function__entry", "on_return": "function__return"}) as obj:
        ready(f"Tracing Python function calls of {target.describe()}... Hit Ctrl-C to end.")
        last_cpu = cpu_before
        while True:
            stop.wait(interval if interval else 3600.0)
            final = stop.stopped
            if not interval and not final:
                continue
            rows = read_stats(obj, clear=bool(interval))
            entries = int(obj.bss["entries"])
            if entries == 0:
                now_cpu = cpu_seconds(pid) if pid is not None else None
                cpu = ""
                if last_cpu is not None and now_cpu is not None:
                    cpu = f" while it used {1000 * (now_cpu - last_cpu):.0f} ms of CPU"
                message = NO_PROBES.format(who=who, cpu=cpu)
                if as_json:
                    print(json.dumps({"time": time.time(), "pid": pid, "functions": [], "message": message}),
                          flush=True)
                else:
                    typer.echo(f"pycalls: {message}", err=True)
            elif as_json:
                print(json.dumps({"time": time.time(), "pid": pid, "functions": rows[:top]}), flush=True)
            else:
                _print(rows, top)
            if final:
                break
