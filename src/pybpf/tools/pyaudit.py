"""pyaudit: the audit events of Python processes (CPython's own security log, via USDT).

    pybpf tool pyaudit [--pid PID | --binary PYTHON] [--event PATTERN ...] [--counts]
                       [--interval S] [--duration S] [--json]

Every ``sys.audit`` event (``open``, ``subprocess.Popen``, ``socket.connect``,
``import``, ``exec``, ...) with its name and its simple arguments decoded (int, bool,
float, str, bytes, None; others by type name). ``--event`` filters by name (shell
patterns, ``socket.*``); ``--counts`` prints counts per event instead, exact even when
events come faster than they are printed (they are counted in the kernel). With
``--pid`` the tool ends when the process does.
BPF side: ``bpf_src/pyaudit.bpf.c`` on USDT ``python:audit``.
"""

from __future__ import annotations

import fnmatch
import json
import time
from typing import Any

import numpy as np
import typer

import pybpf
from pybpf.text import visible
from pybpf.tools._pyusdt import BINARY_HELP, Stop, Target, attached, decode_object, python_version, ready

__all__ = ["app", "decode_event", "read_counts"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _cstr(raw: Any) -> str:
    data = bytes(raw)
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode_event(record: Any, version: tuple[int, int]) -> dict[str, Any]:
    """One ring buffer record as {pid, tid, event, nargs, args}."""
    nargs = int(record["nargs"])
    args: list[Any] = []
    for i in range(min(max(nargs, 0), len(record["args"]))):
        arg = record["args"][i]
        type_name = _cstr(arg["type"])
        value = decode_object(type_name, bytes(arg["raw"])[:int(arg["read"])], version) \
            if int(arg["read"]) or type_name == "NoneType" else None
        if value is None and type_name != "NoneType":
            value = f"<{type_name or '?'}>"
        args.append(value)
    return {"ts": int(record["ts"]), "pid": int(record["pid"]), "tid": int(record["tid"]),
            "event": _cstr(record["name"]), "nargs": nargs, "args": args}


def read_counts(obj: pybpf.Object) -> dict[str, int]:
    """Counts per event name so far (from the kernel's hash map)."""
    keys, values = obj.maps["counts"].lookup_batch()
    return {_cstr(key["name"]): int(value) for key, value in zip(keys, values)}


def _matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _json_arg(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def _text(event: dict[str, Any]) -> str:
    args = ", ".join(repr(a) if not (isinstance(a, str) and a.startswith("<")) else a
                     for a in event["args"])
    more = ", ..." if event["nargs"] > len(event["args"]) else ""
    return visible(f"{event['pid']:<7} {event['event']:<28} ({args}{more})")  # the traced process's text


def _print_counts(counts: dict[str, int], patterns: list[str], as_json: bool, pid: int | None) -> None:
    shown = {k: v for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if _matches(k, patterns)}
    if as_json:
        print(json.dumps({"time": time.time(), "pid": pid, "total": sum(shown.values()), "counts": shown}),
              flush=True)
        return
    print(f"{'EVENT':<40} {'COUNT':>10}")
    for name, count in shown.items():
        print(f"{visible(name):<40} {count:>10}")
    print(flush=True)


@app.command()
def pyaudit(
    pid: int | None = typer.Option(None, "-p", "--pid", help="trace this Python process only"),
    binary: str | None = typer.Option(None, "--binary",
                                         help="trace every process running this interpreter "
                                              + BINARY_HELP),
    event: list[str] = typer.Option([], "-e", "--event", help="only events matching this pattern (repeatable)"),
    counts: bool = typer.Option(False, "-c", "--counts", help="print counts per event, not each event"),
    interval: float | None = typer.Option(None, "-i", "--interval", help="with --counts: print every S seconds"),
    duration: float | None = typer.Option(None, "-d", "--duration", help="stop after S seconds"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """Trace CPython audit events (sys.audit, and the interpreter's own)."""
    target = Target(pid, binary)
    version = python_version(pid, target.binary)
    with Stop(duration, pid) as stop, \
            attached("pyaudit", target, {"on_audit": "audit"}, {"emit_events": not counts}) as obj:
        ready(f"Tracing Python audit events of {target.describe()}... Hit Ctrl-C to end.")
        if counts:
            while not stop.stopped:
                stop.wait(interval if interval else 3600.0)
                if interval and not stop.stopped:
                    _print_counts(read_counts(obj), event, as_json, pid)
            _print_counts(read_counts(obj), event, as_json, pid)
            return
        rb = pybpf.RingBuffer(obj.maps["events"], dtype="audit_event")
        if not as_json:
            print(f"{'PID':<7} {'EVENT':<28} ARGS", flush=True)

        def show(batch: np.ndarray) -> None:
            for record in batch:
                decoded = decode_event(record, version)
                if not _matches(decoded["event"], event):
                    continue
                if as_json:
                    decoded["args"] = [_json_arg(a) for a in decoded["args"]]
                    print(json.dumps(decoded), flush=False)
                else:
                    print(_text(decoded), flush=False)

        while not stop.stopped:
            stop.wait(1.0, (rb.fileno(),))
            show(rb.drain())
        show(rb.drain())
        lost = int(obj.bss["dropped"])
        if lost:
            typer.echo(f"pyaudit: {lost} events dropped (ring buffer full); --counts counts them all",
                       err=True)
        print(end="", flush=True)
