"""pygc: CPython garbage collections per generation and a histogram of their pauses (USDT).

    pybpf tool pygc [--pid PID | --binary PYTHON] [--interval S] [--duration S] [--json]

Counts every collection the interpreter runs (``gc.collect()`` and the automatic
ones) per generation, the objects each collected, and the pause from ``gc__start``
to ``gc__done`` as a log2 histogram in microseconds. The counters are BPF globals
read through a zero-copy view. With ``--pid`` the tool ends when the process does.
BPF side: ``bpf_src/pygc.bpf.c`` on USDT ``python:gc__start`` / ``python:gc__done``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import typer

import pybpf
from pybpf.tools._pyusdt import BINARY_HELP, Stop, Target, attached, ready

__all__ = ["app", "snapshot"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})

_FIELDS = ("collections", "started", "collected", "pause_ns", "max_pause_ns", "hist")


def snapshot(obj: pybpf.Object) -> dict[str, np.ndarray]:
    """A copy of the kernel-side counters (per generation; ``hist`` is 3 x 32)."""
    return {name: np.array(obj.bss[name]) for name in _FIELDS}


def _report(now: dict[str, np.ndarray], before: dict[str, np.ndarray] | None, pid: int | None) -> dict[str, Any]:
    d = {k: now[k] - before[k] if before is not None and k != "max_pause_ns" else now[k] for k in _FIELDS}
    gens = []
    for g in range(3):
        n = int(d["collections"][g])
        hist = d["hist"][g]
        last = int(np.nonzero(hist)[0].max()) + 1 if hist.any() else 0
        gens.append({
            "generation": g, "collections": n, "collected": int(d["collected"][g]),
            "pause_total_us": int(d["pause_ns"][g]) / 1000, "pause_avg_us": (int(d["pause_ns"][g]) / n / 1000) if n else 0.0,
            "pause_max_us": int(d["max_pause_ns"][g]) / 1000,
            "histogram_us": [{"low": 0 if i == 0 else 1 << i, "high": (1 << (i + 1)) - 1, "count": int(hist[i])}
                             for i in range(last)],
        })
    return {"time": time.time(), "pid": pid, "collections": int(d["collections"].sum()), "generations": gens}


def _print(report: dict[str, Any]) -> None:
    print(f"{'GEN':>3} {'COLLECTIONS':>12} {'COLLECTED':>10} {'AVG us':>10} {'MAX us':>10} {'TOTAL us':>12}")
    for g in report["generations"]:
        print(f"{g['generation']:>3} {g['collections']:>12} {g['collected']:>10} {g['pause_avg_us']:>10.1f} "
              f"{g['pause_max_us']:>10.1f} {g['pause_total_us']:>12.1f}")
    for g in report["generations"]:
        if not g["histogram_us"]:
            continue
        print(f"\ngeneration {g['generation']} pauses")
        top = max(b["count"] for b in g["histogram_us"])
        print(f"{'usecs':>22} : count")
        for b in g["histogram_us"]:
            stars = "*" * (round(40 * b["count"] / top) if top else 0)
            print(f"{b['low']:>10} -> {b['high']:<10}: {b['count']:<8} |{stars:<40}|")
    print(flush=True)


@app.command()
def pygc(
    pid: int | None = typer.Option(None, "-p", "--pid", help="trace this Python process only"),
    binary: str | None = typer.Option(None, "--binary", help="trace every process running this "
                                         "interpreter " + BINARY_HELP),
    interval: float | None = typer.Option(None, "-i", "--interval", help="print every S seconds (what happened since)"),
    duration: float | None = typer.Option(None, "-d", "--duration", help="stop after S seconds"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per report"),
) -> None:
    """Garbage collections of CPython per generation, with a pause histogram."""
    target = Target(pid, binary)
    with Stop(duration, pid) as stop, \
            attached("pygc", target, {"on_gc_start": "gc__start", "on_gc_done": "gc__done"}) as obj:
        ready(f"Tracing Python garbage collections of {target.describe()}... Hit Ctrl-C to end.")
        before = None
        while not stop.stopped:
            stop.wait(interval if interval else 3600.0)
            if interval and not stop.stopped:
                now = snapshot(obj)
                report = _report(now, before, pid)
                before = now
                print(json.dumps(report), flush=True) if as_json else _print(report)
        report = _report(snapshot(obj), before, pid)
        print(json.dumps(report), flush=True) if as_json else _print(report)
