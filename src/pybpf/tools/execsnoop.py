"""execsnoop: trace exec() syscalls (the options, columns and bytes of libbpf-tools' execsnoop).

    pybpf tool execsnoop [-T] [-t] [-x] [-u UID] [-q] [-n NAME] [-l LINE] [-U]
                         [-c CGROUP_PATH] [--max-args N] [--duration S] [--json] [-V]

Columns and quoting are the C tool's printf formats; as there, ``-l`` matches the
command name (libbpf-tools' execsnoop compares LINE with the comm, not the arguments),
arguments are printed each followed by a space, and ``...`` ends an argument list
longer than ``--max-args``. ``--json`` keeps every argument (empty ones too) and says
``"truncated"`` when the list or an argument was cut.

BPF side: ``bpf_src/execsnoop.bpf.c`` (variable-size ring records, as the C twin
sends; a per-(comm, errno) counter map, ``execs_total`` and ``lost_events`` for
``pybpf export execsnoop``).
"""

from __future__ import annotations

import os
import time
from typing import Optional

from pybpf.text import visible
from pybpf.btf.plain import Record
from pybpf.tools._options import Option
from pybpf.tools._common import (CGROUP_OPTION, EventTool, Stop, c_release, ctext, emit_json, loaded, out,
                                 ring_bytes, tool_app, version_option, wall_hms)

__all__ = ["app", "format_args"]

TOTAL_MAX_ARGS = 20
ARGSIZE = 128
LAST_ARG = TOTAL_MAX_ARGS * ARGSIZE - ARGSIZE
C_PAGES = 64                     # the C twin's perf buffer: 64 pages per CPU

app = tool_app()

_ESCAPES = {ord('"'): '\\"', ord("\t"): "\\t", ord("\n"): "\\n"}


def format_args(buf: bytes, count: int, quote: bool, max_args: int) -> str:
    """The C tool's ``print_args``: each argument then a space (quoted: ``"arg" "``), ``...``
    when the BPF side saw more than ``max_args``; bytes kept (surrogate-escaped)."""
    text = buf.decode("utf-8", "surrogateescape")
    pieces = text.split("\0")
    parts = ['"'] if quote else []
    done = 0
    for k, piece in enumerate(pieces):
        if done >= count:
            break
        parts.append(visible(piece.translate(_ESCAPES) if quote else piece))  # no ESC/newline reaches the tty
        if k == len(pieces) - 1:       # no NUL after it within args_size
            break
        done += 1
        if quote:
            parts.append('" "' if done < count else '" ')
        else:
            parts.append(" ")
    if count == max_args + 1:
        parts.append(" ...")
    return "".join(parts)


def _arg_list(buf: bytes, count: int) -> list[str]:
    return [a.decode("utf-8", "surrogateescape") for a in buf.split(b"\0")[:count]]


@app.command()
def execsnoop(
    time_col: bool = Option(False, "-T", "--time", help="include time column on output (HH:MM:SS)"),
    timestamp: bool = Option(False, "-t", "--timestamp", help="include timestamp on output"),
    fails: bool = Option(False, "-x", "--fails", help="include failed exec()s"),
    uid: Optional[int] = Option(None, "-u", "--uid", min=0, help="trace this UID only"),
    quote: bool = Option(False, "-q", "--quote", help='add quotemarks (") around arguments'),
    name: Optional[str] = Option(None, "-n", "--name", help="only print commands matching this name, any arg"),
    line: Optional[str] = Option(None, "-l", "--line",
                                 help="only print commands where arg contains this line "
                                      "(as the C tool: matched against the command name)"),
    print_uid: bool = Option(False, "-U", "--print-uid", help="print UID column"),
    max_args: int = Option(TOTAL_MAX_ARGS, "--max-args", min=1, max=TOTAL_MAX_ARGS,
                           help="maximum number of arguments parsed and displayed, defaults to 20"),
    cgroup: Optional[str] = CGROUP_OPTION,
    duration: Optional[float] = Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = Option(False, "--json", help="one JSON object per event"),
    version: bool = version_option("execsnoop"),
) -> None:
    """Trace exec() syscalls."""
    rodata: dict[str, object] = {"ignore_failed": not fails, "max_args": max_args}
    if uid is not None:
        rodata["targ_uid"] = uid
    start_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    # libbpf-tools 0.31's BPF side counts one more argument whenever argv has max_args entries
    # or more (it reads the NULL slot after them), so " ..." also ends an argv of exactly
    # max_args; 0.26 only when there are more. The installed twin decides (--json says the fact).
    exact_dots = c_release() >= (0, 31)

    def dots_count(count: int) -> int:
        return max_args + 1 if exact_dots and count == max_args else count

    def show(batch: list[Record]) -> None:
        args_at = tool.layout.offsets["args"]  # read from the raw record: a char[] field stops at a NUL
        for e in batch:
            comm = ctext(e["comm"])
            if name is not None and name not in comm:
                continue
            if line is not None and line not in comm:
                continue
            count, size = int(e["args_count"]), int(e["args_size"])
            buf = e.raw[args_at:args_at + size]
            if as_json:
                args = _arg_list(buf, count)
                cut = count > max_args or size > LAST_ARG or any(len(a) >= ARGSIZE - 1 for a in buf.split(b"\0"))
                emit_json({"time": time.time() - (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - int(e["ts_ns"])) / 1e9,
                           "pcomm": comm, "pid": int(e["pid"]), "ppid": int(e["ppid"]), "uid": int(e["uid"]),
                           "ret": int(e["retval"]), "args": args[:max_args], "truncated": bool(cut)})
                continue
            row = ""
            if time_col:
                row += "%-8s " % wall_hms(int(e["ts_ns"]))
            if timestamp:
                row += "%-8.3f" % ((int(e["ts_ns"]) - start_ns) / 1e9)
            if print_uid:
                row += "%-6d" % int(e["uid"])
            row += "%-16s %-6d %-6d %3d " % (visible(comm), int(e["pid"]), int(e["ppid"]), int(e["retval"]))
            out(row + format_args(buf, dots_count(count), quote, max_args) + "\n")

    with Stop(duration) as stop, loaded("execsnoop", rodata, cgroup=cgroup,
                                        max_entries={"events": ring_bytes(C_PAGES, 200)}) as obj:
        tool = EventTool(obj, "exec_event", as_json=as_json)
        if not as_json:
            head = ""
            if time_col:
                head += "%-9s" % "TIME"
            if timestamp:
                head += "%-8s " % "TIME(s)"
            if print_uid:
                head += "%-6s " % "UID"
            out(head + "%-16s %-6s %-6s %3s %s\n" % ("PCOMM", "PID", "PPID", "RET", "ARGS"))
        tool.run(show, stop, f"Tracing exec()s (pid {os.getpid()})... Ctrl-C to end.")
