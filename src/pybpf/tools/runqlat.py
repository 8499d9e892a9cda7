"""runqlat: run queue (scheduler) latency as a log2 histogram (as libbpf-tools' runqlat).

    pybpf tool runqlat [-T] [-m] [-p PID] [--json] [interval] [count]

BPF side: ``bpf_src/runqlat.bpf.c``; the histogram is a ``BPF_F_MMAPABLE`` array read
here through a zero-copy numpy view (no syscall per read).
"""

from __future__ import annotations

import time
from typing import Optional

import typer

from pybpf.toolkit import log2_bounds, print_log2_hist, strftime_hms
from pybpf.tools._common import Stop, emit_json, loaded, ready_message

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command()
def runqlat(
    interval: Optional[float] = typer.Argument(None, help="print every INTERVAL seconds (none: at Ctrl-C)"),
    count: Optional[int] = typer.Argument(None, help="number of outputs"),
    timestamp: bool = typer.Option(False, "-T", "--timestamp", help="include timestamp on output"),
    milliseconds: bool = typer.Option(False, "-m", "--milliseconds", help="millisecond histogram"),
    pid: Optional[int] = typer.Option(None, "-p", "--pid", help="trace this PID only"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per histogram"),
) -> None:
    """Summarize run queue latency as a histogram."""
    rodata: dict[str, object] = {"targ_ms": milliseconds}
    if pid is not None:
        rodata["targ_tgid"] = pid
    unit = "msecs" if milliseconds else "usecs"
    with Stop() as stop, loaded("runqlat", rodata) as obj:
        slots = obj.maps["hist"].view()          # live, zero-copy
        ready_message("Tracing run queue latency... Hit Ctrl-C to end.")
        printed = 0
        while True:
            stopping = stop.wait(interval if interval else 3600.0)
            snap = slots.copy()
            slots[:] -= snap                     # keep what arrived since the copy
            if as_json:
                emit_json({"time": time.time(), "unit": unit, "total": int(snap.sum()),
                           "buckets": [{"low": lo, "high": hi, "count": int(c)}
                                       for (lo, hi), c in zip(log2_bounds(len(snap)), snap.tolist())]})
            else:
                print()
                if timestamp:
                    print(f"{strftime_hms():<8}")
                print_log2_hist(snap, unit)
                print(flush=True)
            printed += 1
            if stopping or (count is not None and printed >= count):
                break
