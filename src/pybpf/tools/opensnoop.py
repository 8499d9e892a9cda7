"""opensnoop: trace open()/openat() (the options, columns and bytes of libbpf-tools' opensnoop).

    pybpf tool opensnoop [-T] [-U] [-x] [-p PID] [-t TID] [-u UID] [-d DURATION]
                         [-n NAME] [-e] [--json] [-V]

``-T`` is the C tool's ``TIME`` column (wall clock ``HH:MM:SS``).

BPF side: ``bpf_src/opensnoop.bpf.c`` (ring buffer of open records; a per-(comm,
errno) counter map, ``opens_total`` and ``lost_events`` for ``pybpf export opensnoop``).
"""

from __future__ import annotations

import time
from typing import Optional

from pybpf.text import visible
from pybpf.btf.plain import Record
from pybpf.tools._options import Option
from pybpf.tools._common import (EventTool, Stop, ctext, emit_json, loaded, out, ring_bytes, tool_app,
                                 version_option, wall_hms)

__all__ = ["app"]

C_PAGES = 64                     # the C twin's perf buffer: 64 pages per CPU

app = tool_app()


@app.command()
def opensnoop(
    timestamp: bool = Option(False, "-T", "--timestamp", help="print timestamp"),
    print_uid: bool = Option(False, "-U", "--print-uid", help="print UID"),
    failed: bool = Option(False, "-x", "--failed", help="failed opens only"),
    pid: Optional[int] = Option(None, "-p", "--pid", help="process ID to trace"),
    tid: Optional[int] = Option(None, "-t", "--tid", help="thread ID to trace"),
    uid: Optional[int] = Option(None, "-u", "--uid", help="user ID to trace"),
    duration: Optional[float] = Option(None, "-d", "--duration", help="duration to trace"),
    name: Optional[str] = Option(None, "-n", "--name", help="trace process names containing this"),
    extended: bool = Option(False, "-e", "--extended-fields", help="print extended fields"),
    as_json: bool = Option(False, "--json", help="one JSON object per event"),
    version: bool = version_option("opensnoop"),
) -> None:
    """Trace open family syscalls."""
    rodata: dict[str, object] = {"targ_failed": failed}
    if pid is not None:
        rodata["targ_tgid"] = pid
    if tid is not None:
        rodata["targ_pid"] = tid
    if uid is not None:
        rodata["targ_uid"] = uid

    def show(batch: list[Record]) -> None:
        for e in batch:
            comm = ctext(e["comm"])
            if name is not None and name not in comm:
                continue
            ret = int(e["ret"])
            fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
            path = ctext(e["fname"])
            if as_json:
                emit_json({"time": time.time() - (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - int(e["ts_ns"])) / 1e9,
                           "pid": int(e["pid"]), "tid": int(e["tid"]), "uid": int(e["uid"]), "comm": comm,
                           "fd": fd, "err": err, "flags": int(e["flags"]), "path": path})
                continue
            row = ""
            if timestamp:
                row += "%-8s " % wall_hms(int(e["ts_ns"]))
            if print_uid:
                row += "%-7d " % int(e["uid"])
            row += "%-6d %-16s %3d %3d " % (int(e["pid"]), visible(comm), fd, err)
            if extended:
                row += "%08o " % (int(e["flags"]) & 0xFFFFFFFF)
            out(row + visible(path) + "\n")

    with Stop(duration) as stop, loaded("opensnoop", rodata,
                                        max_entries={"events": ring_bytes(C_PAGES, 320)}) as obj:
        tool = EventTool(obj, "open_event", as_json=as_json)
        if not as_json:
            head = ""
            if timestamp:
                head += "%-8s " % "TIME"
            if print_uid:
                head += "%-7s " % "UID"
            head += "%-6s %-16s %3s %3s " % ("PID", "COMM", "FD", "ERR")
            if extended:
                head += "%-8s " % "FLAGS"
            out(head + "PATH\n")
        tool.run(show, stop, "Tracing open()s... Ctrl-C to end.")
