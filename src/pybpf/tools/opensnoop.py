"""opensnoop: trace open()/openat() (the options and columns of libbpf-tools' opensnoop).

    pybpf tool opensnoop [-T] [-U] [-x] [-p PID] [-t TID] [-u UID] [-d DURATION]
                         [-n NAME] [-e] [--json]

BPF side: ``bpf_src/opensnoop.bpf.c`` (ring buffer of open records; a per-(comm,
errno) counter map and ``opens_total`` for ``pybpf export opensnoop``).
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import typer

import pybpf
from pybpf.toolkit import comm_matches, cstr, monotonic_to_wall
from pybpf.tools._common import Stop, emit_json, loaded, ready_message, run_events

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})


@app.command()
def opensnoop(
    timestamp: bool = typer.Option(False, "-T", "--timestamp", help="print timestamp"),
    print_uid: bool = typer.Option(False, "-U", "--print-uid", help="print UID"),
    failed: bool = typer.Option(False, "-x", "--failed", help="failed opens only"),
    pid: Optional[int] = typer.Option(None, "-p", "--pid", help="process ID to trace"),
    tid: Optional[int] = typer.Option(None, "-t", "--tid", help="thread ID to trace"),
    uid: Optional[int] = typer.Option(None, "-u", "--uid", help="user ID to trace"),
    duration: Optional[float] = typer.Option(None, "-d", "--duration", help="duration to trace (seconds)"),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="trace process names containing this"),
    extended: bool = typer.Option(False, "-e", "--extended-fields", help="print extended fields (flags)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per event"),
) -> None:
    """Trace open family syscalls."""
    rodata: dict[str, object] = {"targ_failed": failed}
    if pid is not None:
        rodata["targ_tgid"] = pid
    if tid is not None:
        rodata["targ_pid"] = tid
    if uid is not None:
        rodata["targ_uid"] = uid
    start_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def show(batch: np.ndarray) -> None:
        for e in batch:
            comm = cstr(e["comm"])
            if not comm_matches(comm, name):
                continue
            ret = int(e["ret"])
            fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
            path = cstr(e["fname"])
            if as_json:
                emit_json({"time": monotonic_to_wall(e["ts_ns"]), "pid": int(e["pid"]), "tid": int(e["tid"]),
                           "uid": int(e["uid"]), "comm": comm, "fd": fd, "err": err,
                           "flags": int(e["flags"]), "path": path})
                continue
            cols = []
            if timestamp:
                cols.append(f"{(int(e['ts_ns']) - start_ns) / 1e9:<8.3f}")
            if print_uid:
                cols.append(f"{int(e['uid']):<7}")
            cols.append(f"{int(e['pid']):<6} {comm:<16} {fd:>3} {err:>3}")
            if extended:
                cols.append(f"{int(e['flags']) & 0xFFFFFFFF:08o}")
            cols.append(path)
            print(" ".join(cols), flush=True)

    with Stop(duration) as stop, loaded("opensnoop", rodata) as obj, \
            pybpf.RingBuffer(obj.maps["events"], dtype="open_event") as rb:
        if not as_json:
            head = []
            if timestamp:
                head.append(f"{'TIME(s)':<8}")
            if print_uid:
                head.append(f"{'UID':<7}")
            head.append(f"{'PID':<6} {'COMM':<16} {'FD':>3} {'ERR':>3}")
            if extended:
                head.append(f"{'FLAGS':<8}")
            head.append("PATH")
            print(" ".join(head), flush=True)
        run_events(rb, show, stop, lambda: ready_message("Tracing open()s... Ctrl-C to end."))
