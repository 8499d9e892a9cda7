"""bindsnoop: bind() of IPv4/IPv6 sockets, with port, address, protocol and options (as libbpf-tools' bindsnoop).

    pybpf tool bindsnoop [-t] [-x] [-p PID] [-P PORTS] [-c CGROUP_PATH] [--duration S] [--json] [-V]

Columns are the C tool's printf formats (``PID COMM RET PROTO OPTS IF PORT ADDR``; OPTS
``FTNRr``: freebind, transparent, bind-address-no-port, reuseaddr, reuseport, ``.`` when
unset). The C tool kprobes ``inet_bind``/``inet6_bind``, which kernels without kprobes
refuse; this one reads the same facts at the ``bind()`` syscall's exit tracepoint,
from the socket behind the fd.

BPF side: ``bpf_src/bindsnoop.bpf.c``; ``binds`` by (protocol, port) and ``lost_events``
for ``pybpf export bindsnoop``.
"""

from __future__ import annotations

from typing import Optional

import pybpf
from pybpf.toolkit import ip_address
from pybpf.text import visible
from pybpf.btf.plain import Record
from pybpf.tools._options import Option
from pybpf.tools._common import (CGROUP_OPTION, EventTool, Stop, ctext, emit_json, fail, loaded, out, ring_bytes,
                                 tool_app, version_option, wall_hms)

__all__ = ["app", "options_text"]

C_PAGES = 16
IPPROTO_TCP, IPPROTO_UDP = 6, 17
app = tool_app()


def options_text(opts: int) -> str:
    """The C tool's OPTS column: ``FTNRr``, each letter ``.`` when its option is unset."""
    return "".join(c if opts & (1 << i) else "." for i, c in enumerate("FTNRr"))


def _ports(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        ports = [int(p) for p in text.split(",")]
    except ValueError:
        fail(f"invalid port list: {text}")
    if any(not 0 < p < 65536 for p in ports):
        fail(f"invalid port list: {text}")
    return ports


@app.command()
def bindsnoop(
    timestamp: bool = Option(False, "-t", "--timestamp", help="include timestamp on output"),
    failed: bool = Option(False, "-x", "--failed", help="include errors on output."),
    pid: Optional[int] = Option(None, "-p", "--pid", help="process ID to trace"),
    ports: Optional[str] = Option(None, "-P", "--ports", help="comma-separated list of ports to trace."),
    cgroup: Optional[str] = CGROUP_OPTION,
    duration: Optional[float] = Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = Option(False, "--json", help="one JSON object per bind"),
    version: bool = version_option("bindsnoop"),
) -> None:
    """Trace bind syscalls."""
    wanted = _ports(ports)
    rodata: dict[str, object] = {"ignore_errors": not failed, "filter_by_port": bool(wanted)}
    if pid is not None:
        rodata["target_pid"] = pid

    def fill(obj: pybpf.Object) -> None:
        for p in wanted:
            obj.maps["ports"][p] = p

    def show(batch: list[Record]) -> None:
        for e in batch:
            proto = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP"}.get(int(e["proto"]), "UNK")
            addr = ip_address(e["addr"], 2 if int(e["ver"]) == 4 else 10)
            if as_json:
                emit_json({"pid": int(e["pid"]), "comm": ctext(e["task"]), "ret": int(e["ret"]), "proto": proto,
                           "opts": options_text(int(e["opts"])), "if": int(e["bound_dev_if"]),
                           "port": int(e["port"]), "addr": addr})
                continue
            row = "%8s " % wall_hms(int(e["ts_us"]) * 1000) if timestamp else ""
            out(row + "%-7d %-16s %-3d %-5s %-5s %-4d %-5d %-48s\n" % (
                int(e["pid"]), visible(ctext(e["task"])), int(e["ret"]), proto, options_text(int(e["opts"])),
                int(e["bound_dev_if"]), int(e["port"]), addr))

    with Stop(duration) as stop, loaded("bindsnoop", rodata, before_attach=fill, cgroup=cgroup,
                                        max_entries={"events": ring_bytes(C_PAGES, 64)}) as obj:
        tool = EventTool(obj, "bind_event", as_json=as_json)
        if not as_json:
            out(("%-8s " % "TIME(s)" if timestamp else "") + "%-7s %-16s %-3s %-5s %-5s %-4s %-5s %-48s\n" % (
                "PID", "COMM", "RET", "PROTO", "OPTS", "IF", "PORT", "ADDR"))
        tool.run(show, stop, "Tracing binds ... Hit Ctrl-C to end")
