"""tcpconnect: active TCP connections (connect()), one line each or counted (as libbpf-tools' tcpconnect).

    pybpf tool tcpconnect [-t] [-c] [-U] [-p PID] [-u UID] [-s] [-P PORTS] [--duration S] [--json] [-V]

Columns and counts are the C tool's printf formats (``PID COMM IP SADDR DADDR DPORT``;
COMM is 12 wide in libbpf-tools 0.26, 16 from 0.31, as the installed twin). The C tool
kprobes ``tcp_v4_connect``/``tcp_v6_connect``, which kernels without kprobes refuse;
this one sees the same connects on tracepoints (``sock:inet_sock_set_state`` CLOSE ->
SYN_SENT, then the ``connect()`` syscall's exit), so in-kernel connects that do not
come from ``connect(2)`` are not seen.

BPF side: ``bpf_src/tcpconnect.bpf.c``; ``connects`` by (destination, port) and
``lost_events`` for ``pybpf export tcpconnect``.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np

import pybpf
from pybpf.toolkit import ip_address
from pybpf.text import visible
from pybpf.btf.plain import Record
from pybpf.tools._options import Option
from pybpf.tools._common import (EventTool, Stop, c_release, ctext, emit_json, fail, loaded, out, ring_bytes,
                                 tool_app, version_option)

__all__ = ["app"]

AF_INET = 2
C_PAGES = 16
MAX_PORTS = 64
app = tool_app()


def _ports(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        ports = [int(p) for p in text.split(",")]
    except ValueError:
        fail(f"invalid PORT_LIST: {text}")
    if len(ports) > MAX_PORTS or any(not 1 <= p <= 65535 for p in ports):
        fail(f"invalid PORT_LIST: {text}")
    return ports


@app.command()
def tcpconnect(
    timestamp: bool = Option(False, "-t", "--timestamp", help="include timestamp on output"),
    count: bool = Option(False, "-c", "--count", help="count connects per src ip and dst ip/port"),
    print_uid: bool = Option(False, "-U", "--print-uid", help="include UID on output"),
    pid: Optional[int] = Option(None, "-p", "--pid", help="process PID to trace"),
    uid: Optional[int] = Option(None, "-u", "--uid", help="process UID to trace"),
    source_port: bool = Option(False, "-s", "--source-port", help="consider source port when counting"),
    ports: Optional[str] = Option(None, "-P", "--port", metavar="PORTS",
                                  help="comma-separated list of destination ports to trace"),
    duration: Optional[float] = Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = Option(False, "--json", help="one JSON object per connect (or the counts)"),
    version: bool = version_option("tcpconnect"),
) -> None:
    """Count/trace active TCP connections."""
    wanted = _ports(ports)
    rodata: dict[str, object] = {"do_count": count, "source_port": source_port, "filter_ports_len": len(wanted)}
    if pid is not None:
        rodata["filter_pid"] = pid
    if uid is not None:
        rodata["filter_uid"] = uid
    if wanted:
        rodata["filter_ports"] = np.array(wanted + [0] * (MAX_PORTS - len(wanted)), np.uint16)
    comm_w = 16 if c_release() >= (0, 31) else 12
    start: list[int] = []

    def show(batch: list[Record]) -> None:
        for e in batch:
            af = int(e["af"])
            saddr, daddr = ip_address(e["saddr"], af), ip_address(e["daddr"], af)
            if as_json:
                emit_json({"ts_us": int(e["ts_us"]), "pid": int(e["pid"]), "uid": int(e["uid"]),
                           "comm": ctext(e["task"]), "ip": 4 if af == AF_INET else 6, "saddr": saddr,
                           "daddr": daddr, "sport": int(e["sport"]), "dport": int(e["dport"])})
                continue
            row = ""
            if timestamp:
                if not start:
                    start.append(int(e["ts_us"]))
                row += "%-9.3f" % ((int(e["ts_us"]) - start[0]) / 1000000.0)
            if print_uid:
                row += "%-6d" % int(e["uid"])
            row += f"%-6d %-{comm_w}.{comm_w}s %-2d %-16s %-16s" % (
                int(e["pid"]), visible(ctext(e["task"])), 4 if af == AF_INET else 6, saddr, daddr)
            if source_port:
                row += " %-5d" % int(e["sport"])
            out(row + " %-5d\n" % int(e["dport"]))

    def report_counts(obj: pybpf.Object) -> None:
        keys, values = obj.maps["flows"].lookup_batch()
        rows = [(ip_address(k["saddr"], int(k["af"])), ip_address(k["daddr"], int(k["af"])), int(k["sport"]),
                 int(k["dport"]), int(v), int(k["af"])) for k, v in zip(keys, values)]
        rows.sort(key=lambda r: r[5] != AF_INET)      # the C tool: IPv4 table first, then IPv6
        if as_json:
            emit_json({"connects": [{"saddr": s, "daddr": d, **({"sport": sp} if source_port else {}),
                                     "dport": dp, "count": n} for s, d, sp, dp, n, _af in rows]})
            return
        text = "\n%-25s %-25s" % ("LADDR", "RADDR") + (" %-20s" % "LPORT" if source_port else "")
        text += " %-20s" % "RPORT" + " %-10s" % "CONNECTS" + "\n"
        for s, d, sp, dp, n, _af in rows:
            text += "%-25s %-25s" % (s, d) + (" %-20d" % sp if source_port else "") + " %-20d" % dp
            text += " %-10d" % n + "\n"
        out(text)
        sys.stdout.flush()

    with Stop(duration) as stop, loaded("tcpconnect", rodata,
                                        max_entries={"events": ring_bytes(C_PAGES, 80)}) as obj:
        if count:
            print("Tracing connects ... Hit Ctrl-C to end", file=sys.stderr, flush=True)
            while not stop.wait(3600.0):
                pass
            report_counts(obj)
            return
        tool = EventTool(obj, "connect_event", as_json=as_json)
        if not as_json:
            head = ("%-9s" % "TIME(s)" if timestamp else "") + ("%-6s" % "UID" if print_uid else "")
            head += f"%-6s %-{comm_w}s %-2s %-16s %-16s" % ("PID", "COMM", "IP", "SADDR", "DADDR")
            out(head + (" %-5s" % "SPORT" if source_port else "") + " %-5s\n" % "DPORT")
        tool.run(show, stop, "Tracing connects ... Hit Ctrl-C to end")
