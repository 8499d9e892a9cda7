"""runqlat: run queue (scheduler) latency as a log2 histogram (as libbpf-tools' runqlat).

    pybpf tool runqlat [-T] [-m] [-p PID] [-P | -L | --pidnss] [-c CGROUP_PATH]
                       [--json] [-V] [interval] [count]

Output is the C tool's: the ready line, then per interval an empty line, the time
with ``-T``, and the histogram (``print_log2_hist``); with ``-P``/``-L``/``--pidnss``
one ``pid = N COMM`` / ``tid = ...`` / ``pidns = ...`` histogram per key.

BPF side: ``bpf_src/runqlat.bpf.c``; the histogram is a ``BPF_F_MMAPABLE`` array read
here through a zero-copy numpy view (no syscall per read); the per-key histograms a
hash map read with one batch call per interval.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np

from pybpf.text import visible
from pybpf.toolkit import log2_buckets
from pybpf.tools._common import (CGROUP_OPTION, Stop, ctext, emit_json, fail, hist_report, intervals, loaded, out,
                                 ready_line, tool_app, version_option)
from pybpf.tools._options import Argument, Option

__all__ = ["app"]

app = tool_app()


@app.command()
def runqlat(
    interval: Optional[float] = Argument(None, help="print every INTERVAL seconds (none: at Ctrl-C)"),
    count: Optional[int] = Argument(None, help="number of outputs"),
    timestamp: bool = Option(False, "-T", "--timestamp", help="include timestamp on output"),
    milliseconds: bool = Option(False, "-m", "--milliseconds", help="millisecond histogram"),
    pid: Optional[int] = Option(None, "-p", "--pid", help="trace this PID only"),
    per_process: bool = Option(False, "-P", "--pids", help="print a histogram per process ID"),
    per_thread: bool = Option(False, "-L", "--tids", help="print a histogram per thread ID"),
    per_pidns: bool = Option(False, "--pidnss", help="print a histogram per PID namespace"),
    cgroup: Optional[str] = CGROUP_OPTION,
    as_json: bool = Option(False, "--json", help="one JSON object per histogram"),
    version: bool = version_option("runqlat"),
) -> None:
    """Summarize run queue latency as a histogram."""
    if per_process + per_thread + per_pidns > 1:
        fail("pidnss, pids, tids cann't be used together.")
    rodata: dict[str, object] = {"targ_ms": milliseconds, "targ_per_process": per_process,
                                 "targ_per_thread": per_thread, "targ_per_pidns": per_pidns}
    if pid is not None:
        rodata["targ_tgid"] = pid
    unit = "msecs" if milliseconds else "usecs"
    label = "pid" if per_process else "tid" if per_thread else "pidns" if per_pidns else None
    with Stop() as stop, loaded("runqlat", rodata, cgroup=cgroup) as obj:
        slots = obj.maps["hist"].view()          # live, zero-copy
        hists = obj.maps["hists"]
        ready_line("Tracing run queue latency... Hit Ctrl-C to end.", as_json)
        for _ in intervals(stop, interval, count):
            groups: list[tuple[int, str, np.ndarray]]
            if label is None:
                snap = slots.copy()
                slots[:] -= snap                     # keep what arrived since the copy
                groups = [(-1, "", snap)]
            else:
                keys, values = hists.lookup_and_delete_batch()
                groups = [(int(k), ctext(v["comm"]), np.asarray(v["slots"], np.uint64))
                          for k, v in zip(keys.tolist(), values)]
            if as_json:
                for key, comm, snap in groups:
                    doc = {"time": time.time(), "unit": unit, "total": int(snap.sum()), "buckets": log2_buckets(snap)}
                    if label is not None:
                        doc = {label: key, "comm": comm, **doc}
                    emit_json(doc)
            else:
                out(hist_report([("\n%s = %d %s\n" % (label, key, visible(comm)) if label else "", snap)
                                 for key, comm, snap in groups], unit, timestamp))
                sys.stdout.flush()
