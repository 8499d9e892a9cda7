"""execsnoop: trace exec() syscalls (the options and columns of libbpf-tools' execsnoop).

    pybpf tool execsnoop [-T] [-t] [-x] [-u UID] [-q] [-n NAME] [-l LINE] [-U]
                         [--max-args N] [--duration S] [--json]

BPF side: ``bpf_src/execsnoop.bpf.c`` (ring buffer of exec records; a per-(comm,
errno) counter map and ``execs_total`` for ``pybpf export execsnoop``).
"""

from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np
import typer

import pybpf
from pybpf.toolkit import comm_matches, cstr, cstr_list, monotonic_to_wall, strftime_hms
from pybpf.tools._common import Stop, emit_json, loaded, ready_message, run_events

__all__ = ["app"]

TOTAL_MAX_ARGS = 20

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})


@app.command()
def execsnoop(
    time_col: bool = typer.Option(False, "-T", "--time", help="include time column (HH:MM:SS)"),
    timestamp: bool = typer.Option(False, "-t", "--timestamp", help="include timestamp (seconds since start)"),
    fails: bool = typer.Option(False, "-x", "--fails", help="include failed exec()s"),
    uid: Optional[int] = typer.Option(None, "-u", "--uid", help="trace this UID only"),
    quote: bool = typer.Option(False, "-q", "--quote", help='add "quotemarks" around arguments'),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="only print commands whose name contains this"),
    line: Optional[str] = typer.Option(None, "-l", "--line", help="only print commands whose arguments contain this"),
    print_uid: bool = typer.Option(False, "-U", "--print-uid", help="print UID column"),
    max_args: int = typer.Option(TOTAL_MAX_ARGS, "--max-args", min=1, max=TOTAL_MAX_ARGS,
                                 help="maximum number of arguments shown"),
    duration: Optional[float] = typer.Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per event"),
) -> None:
    """Trace exec() syscalls."""
    rodata = {"ignore_failed": not fails, "max_args": max_args}
    if uid is not None:
        rodata["targ_uid"] = uid
    start_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def show(batch: np.ndarray) -> None:
        for e in batch:
            comm = cstr(e["comm"])
            count = int(e["args_count"])
            truncated = count > max_args
            args = cstr_list(e["args"].tobytes()[: int(e["args_size"])], min(count, max_args))
            text = " ".join(f'"{a}"' if quote else a for a in args) + (" ..." if truncated else "")
            if not comm_matches(comm, name) or (line is not None and line not in text):
                continue
            if as_json:
                emit_json({"time": monotonic_to_wall(e["ts_ns"]), "pcomm": comm, "pid": int(e["pid"]),
                           "ppid": int(e["ppid"]), "uid": int(e["uid"]), "ret": int(e["retval"]),
                           "args": args, "truncated": truncated})
                continue
            cols = []
            if time_col:
                cols.append(f"{strftime_hms(monotonic_to_wall(e['ts_ns'])):<8}")
            if timestamp:
                cols.append(f"{(int(e['ts_ns']) - start_ns) / 1e9:<8.3f}")
            if print_uid:
                cols.append(f"{int(e['uid']):<6}")
            cols.append(f"{comm:<16} {int(e['pid']):<6} {int(e['ppid']):<6} {int(e['retval']):>3} {text}")
            print(" ".join(cols), flush=True)

    with Stop(duration) as stop, loaded("execsnoop", rodata) as obj, \
            pybpf.RingBuffer(obj.maps["events"], dtype="exec_event") as rb:
        if not as_json:
            head = []
            if time_col:
                head.append(f"{'TIME':<8}")
            if timestamp:
                head.append(f"{'TIME(s)':<8}")
            if print_uid:
                head.append(f"{'UID':<6}")
            head.append(f"{'PCOMM':<16} {'PID':<6} {'PPID':<6} {'RET':>3} ARGS")
            print(" ".join(head), flush=True)
        run_events(rb, show, stop, lambda: ready_message(f"Tracing exec()s (pid {os.getpid()})... Ctrl-C to end."))
