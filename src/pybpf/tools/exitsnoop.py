"""exitsnoop: trace process (or thread) exits, with age and exit status (as libbpf-tools' exitsnoop).

    pybpf tool exitsnoop [-t] [-x] [-p PID] [-T] [-c CGROUP_PATH] [--duration S] [--json] [-V]

Columns are the C tool's printf formats (``PCOMM PID PPID TID AGE(s) EXIT_CODE``; ``-t``
adds the wall clock); an exit by signal reads ``signal 9 (Killed)`` (``strsignal``).

BPF side: ``bpf_src/exitsnoop.bpf.c`` on ``sched:sched_process_exit``; ``exits`` by
(comm, signal, code) and ``lost_events`` for ``pybpf export exitsnoop``.
"""

from __future__ import annotations

import signal
from typing import Optional

from pybpf.text import visible
from pybpf.btf.plain import Record
from pybpf.tools._options import Option
from pybpf.tools._common import (CGROUP_OPTION, EventTool, Stop, ctext, emit_json, loaded, out, ring_bytes,
                                 tool_app, version_option, wall_hms)

__all__ = ["app", "exit_status"]

C_PAGES = 16
app = tool_app()


def exit_status(sig: int, code: int) -> str:
    """The C tool's EXIT_CODE column: ``0``, ``code N``, ``signal N (NAME)[, core dumped]``."""
    if not sig:
        return "0" if not code else f"code {code}"
    text = ""
    if sig & 0x7F:
        text = f"signal {sig & 0x7F} ({signal.strsignal(sig & 0x7F) or 'Unknown signal'})"
    if sig & 0x80:
        text += ", core dumped"
    return text


@app.command()
def exitsnoop(
    timestamp: bool = Option(False, "-t", "--timestamp", help="include timestamp on output"),
    failed: bool = Option(False, "-x", "--failed", help="trace error exits only."),
    pid: Optional[int] = Option(None, "-p", "--pid", help="process ID to trace"),
    threaded: bool = Option(False, "-T", "--threaded", help="trace by thread."),
    cgroup: Optional[str] = CGROUP_OPTION,
    duration: Optional[float] = Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = Option(False, "--json", help="one JSON object per exit"),
    version: bool = version_option("exitsnoop"),
) -> None:
    """Trace process termination."""
    rodata: dict[str, object] = {"trace_failed_only": failed, "trace_by_process": not threaded}
    if pid is not None:
        rodata["target_pid"] = pid

    def show(batch: list[Record]) -> None:
        for e in batch:
            comm = ctext(e["comm"])
            age = (int(e["exit_time"]) - int(e["start_time"])) / 1e9
            sig, code = int(e["sig"]), int(e["exit_code"])
            if as_json:
                emit_json({"comm": comm, "pid": int(e["pid"]), "ppid": int(e["ppid"]), "tid": int(e["tid"]),
                           "age": age, "exit_code": code, "signal": sig & 0x7F, "core_dumped": bool(sig & 0x80)})
                continue
            row = "%8s " % wall_hms(int(e["exit_time"])) if timestamp else ""
            row += "%-16s %-7d %-7d %-7d %-7.2f " % (visible(comm), int(e["pid"]), int(e["ppid"]), int(e["tid"]), age)
            out(row + exit_status(sig, code) + "\n")

    with Stop(duration) as stop, loaded("exitsnoop", rodata, cgroup=cgroup,
                                        max_entries={"events": ring_bytes(C_PAGES, 64)}) as obj:
        tool = EventTool(obj, "exit_event", as_json=as_json)
        if not as_json:
            out(("%-8s " % "TIME(s)" if timestamp else "")
                + "%-16s %-7s %-7s %-7s %-7s %-s\n" % ("PCOMM", "PID", "PPID", "TID", "AGE(s)", "EXIT_CODE"))
        tool.run(show, stop, "Tracing process exits... Ctrl-C to end.")
