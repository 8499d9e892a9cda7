"""cpudist: on-CPU (or off-CPU) time per scheduling slice, as log2 histograms (as libbpf-tools' cpudist).

    pybpf tool cpudist [-O] [-T] [-m] [-P | -L] [-p PID] [-c CGROUP_PATH] [--json] [-V] [interval] [count]

Output is the C tool's: ``Tracing on-CPU time... Hit Ctrl-C to end.``, then per
interval an empty line, the time with ``-T``, and one histogram (per process with
``-P``, per thread with ``-L``: ``pid = N COMM``).

BPF side: ``bpf_src/cpudist.bpf.c`` on ``tp_btf/sched_switch``; histograms in a hash map
read with one batch call per interval; ``pybpf export cpudist`` serves them.
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
def cpudist(
    interval: Optional[float] = Argument(None, help="output interval, in seconds (none: at Ctrl-C)"),
    count: Optional[int] = Argument(None, help="number of outputs"),
    offcpu: bool = Option(False, "-O", "--offcpu", help="measure off-CPU time"),
    timestamp: bool = Option(False, "-T", "--timestamp", help="include timestamp on output"),
    milliseconds: bool = Option(False, "-m", "--milliseconds", help="millisecond histogram"),
    per_process: bool = Option(False, "-P", "--pids", help="print a histogram per process ID"),
    per_thread: bool = Option(False, "-L", "--tids", help="print a histogram per thread ID"),
    pid: Optional[int] = Option(None, "-p", "--pid", help="trace this PID only"),
    cgroup: Optional[str] = CGROUP_OPTION,
    as_json: bool = Option(False, "--json", help="one JSON object per histogram"),
    version: bool = version_option("cpudist"),
) -> None:
    """Summarize on-CPU time per task as a histogram."""
    if per_process and per_thread:
        fail("pids and tids cann't be used together.")
    rodata: dict[str, object] = {"targ_ms": milliseconds, "targ_offcpu": offcpu,
                                 "targ_per_process": per_process, "targ_per_thread": per_thread}
    if pid is not None:
        rodata["targ_tgid"] = pid
    unit = "msecs" if milliseconds else "usecs"
    label = "pid" if per_process else "tid" if per_thread else None
    with Stop() as stop, loaded("cpudist", rodata, cgroup=cgroup) as obj:
        hists = obj.maps["hists"]
        ready_line(f"Tracing {'off' if offcpu else 'on'}-CPU time... Hit Ctrl-C to end.", as_json)
        for _ in intervals(stop, interval, count):
            keys, values = hists.lookup_and_delete_batch()
            groups = [(int(k), ctext(v["comm"]), np.asarray(v["slots"], np.uint64))
                      for k, v in zip(keys.tolist(), values)]
            if as_json:
                for key, comm, slots in groups:
                    doc = {"time": time.time(), "unit": unit, "offcpu": offcpu, "total": int(slots.sum()),
                           "buckets": log2_buckets(slots)}
                    emit_json({label: key, "comm": comm, **doc} if label else doc)
            else:
                out(hist_report([("\n%s = %d %s\n" % (label, key, visible(comm)) if label else "", slots)
                                 for key, comm, slots in groups], unit, timestamp))
                sys.stdout.flush()
