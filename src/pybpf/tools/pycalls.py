"""pycalls: CPU time per Python function (sampled), or exact calls and time with ``--exact`` (USDT).

    pybpf tool pycalls -p PID [-F FREQ] [--top N] [--interval S] [--duration S] [--json]
    pybpf tool pycalls --exact [--pid PID | --binary PYTHON] [--top N] [--interval S] [--duration S] [--json]

By default, statistical and free for the program: the Python stacks of ``PID`` are
sampled from BPF at ``FREQ`` Hz (as ``pyprofile`` does, nothing set in the process) and
each function gets its samples with it innermost (own) and anywhere on the stack (total),
and the CPU time they stand for (samples / FREQ). Call counts are not estimated: a
sample sees where a thread is, not how often it got there.

``--exact`` counts every call and the time from entry to return (callees included) per
function, from USDT ``python:function__entry`` / ``function__return``. It costs: CPython
fires these probes only while the thread has a trace or profile function
(``sys.setprofile``, ``sys.settrace``, a debugger, coverage), which slows every call, and
each probe is a uprobe (a trap into the kernel per call and per return). Without a
profile function the tool says so plainly; a CPython built without these probes (Debian
13's 3.13) is refused naming the sampling mode. With ``--pid`` it ends when the process
does. BPF side: ``bpf_src/pycalls.bpf.c`` (exact), ``bpf_src/pyprofile.bpf.c`` (sampled).
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

__all__ = ["EXACT_COST", "NO_PROBES", "app", "read_stats"]

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
                            f"it has: {describe_probes(probes)}; drop --exact to sample the stacks instead "
                            f"(pybpf tool pycalls -p PID)", feature="python:function__entry")


EXACT_COST = ("--exact: every call and return of a traced thread hits a uprobe, and CPython fires them "
              "only while a profile or trace function is set, which slows every call too; see README, pycalls")


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
    pid: int | None = typer.Option(None, "-p", "--pid", help="the Python process (sampling: required)"),
    binary: str | None = typer.Option(None, "--binary", help="--exact: trace every process running this "
                                         "interpreter " + BINARY_HELP),
    exact: bool = typer.Option(False, "--exact", help="count every call through USDT probes (needs a profile "
                                                       "function set in the process; costs a uprobe per call)"),
    frequency: int = typer.Option(99, "-F", "--frequency", help="sampling: samples per second per CPU"),
    top: int = typer.Option(20, "-n", "--top", help="show the N functions with the most time"),
    interval: float | None = typer.Option(None, "-i", "--interval", help="print the top N every S seconds"),
    duration: float | None = typer.Option(None, "-d", "--duration", help="stop after S seconds"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per report"),
) -> None:
    """CPU time per Python function (sampled), or calls and time (--exact, USDT)."""
    if not exact:
        if binary is not None or pid is None:
            typer.echo("pycalls: the sampling mode reads one process: give -p PID (--binary goes with --exact)",
                       err=True)
            raise typer.Exit(2)
        _sampled(pid, frequency, top, interval, duration, as_json)
        return
    target = Target(pid, binary)
    _require_function_probes(target)
    who = f"pid {pid}" if pid is not None else f"processes running {target.binary}"
    cpu_before = cpu_seconds(pid) if pid is not None else None
    with Stop(duration, pid) as stop, \
            attached("pycalls", target, {"on_entry": "function__entry", "on_return": "function__return"}) as obj:
        ready(f"Tracing Python function calls of {target.describe()} ({EXACT_COST})... Hit Ctrl-C to end.")
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


def _sampled(pid: int, frequency: int, top: int, interval: float | None, duration: float | None,
             as_json: bool) -> None:
    from pybpf.errors import BpfError
    from pybpf.pyframes import UnreadablePythonError
    from pybpf.tools._pystacks import PySampler, function_stats, process_alive
    if not 1 <= frequency <= 100_000:
        typer.echo(f"pycalls: invalid frequency {frequency}: 1..100000 Hz", err=True)
        raise typer.Exit(2)
    try:
        with PySampler([pid], frequency=frequency) as sampler, Stop(duration, pid) as stop:
            ready(f"Sampling the Python functions of pid {pid} at {frequency} Hz... Hit Ctrl-C to end.")
            seen: dict[str, tuple[int, int]] = {}
            while True:
                waited = 0.0
                while not stop.stopped and waited < (interval or 3600.0):
                    stop.wait(1.0)
                    waited += 1.0
                    sampler.refresh()
                    if not process_alive(pid):
                        stop.event.set()
                final = stop.stopped
                if not interval and not final:
                    continue
                if final:
                    sampler.stop()
                sampler.refresh()
                stats = function_stats(sampler.stacks())
                if interval:   # per interval: what came since the last report
                    now = {f.name: (f.own, f.total) for f in stats}
                    for f in stats:
                        own, total = seen.get(f.name, (0, 0))
                        f.own, f.total = f.own - own, f.total - total
                    seen = now
                    stats = sorted((f for f in stats if f.total), key=lambda f: (-f.own, -f.total, f.name))
                _print_sampled(pid, stats, top, frequency, as_json)
                if final:
                    break
    except (UnreadablePythonError, BpfError) as exc:
        typer.echo(f"pycalls: {exc}", err=True)
        raise typer.Exit(1) from None


def _print_sampled(pid: int, stats: list[Any], top: int, frequency: int, as_json: bool) -> None:
    samples = sum(f.own for f in stats)
    if as_json:
        print(json.dumps({"time": time.time(), "pid": pid, "mode": "sampled", "frequency": frequency,
                          "samples": samples, "functions": [f.to_dict(samples, frequency) for f in stats[:top]]}),
              flush=True)
        return
    print(f"{'FUNCTION':<60} {'OWN%':>6} {'TOTAL%':>7} {'OWN ms':>9} {'TOTAL ms':>9}")
    for f in stats[:top]:
        name = visible(f.name)
        print(f"{name[-60:]:<60} {100 * f.own / max(samples, 1):6.2f} {100 * f.total / max(samples, 1):7.2f} "
              f"{1000 * f.own / frequency:9.1f} {1000 * f.total / frequency:9.1f}")
    print(flush=True)
