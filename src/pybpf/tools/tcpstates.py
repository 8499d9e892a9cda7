"""tcpstates: TCP state changes and the time spent in each state (as libbpf-tools' tcpstates).

    pybpf tool tcpstates [-4] [-6] [-T] [-L LPORTS] [-D DPORTS] [-w] [--duration S] [--json] [-V]

Columns are the C tool's printf formats: ``-T`` the wall clock ``HH:MM:SS``, ``-w`` the
``IP`` column and address columns as wide as the installed C twin's (26 in libbpf-tools
0.26, 39 from 0.31; see :func:`pybpf.tools._common.c_release`), state 13 ``UNKNOWN``.

BPF side: ``bpf_src/tcpstates.bpf.c`` on the ``sock:inet_sock_set_state`` tracepoint;
a ``transitions`` counter map and ``lost_events`` for ``pybpf export tcpstates``.
"""

from __future__ import annotations

from typing import Optional

import pybpf
from pybpf.toolkit import ip_address
from pybpf.text import visible
from pybpf.btf.plain import Record
from pybpf.tools._options import Option
from pybpf.tools._common import (EventTool, Stop, c_release, ctext, emit_json, fail, loaded, out, ring_bytes,
                                 tool_app, version_option, wall_hms)

__all__ = ["app"]

AF_INET, AF_INET6 = 2, 10
C_PAGES = 16
# libbpf-tools' table: 13 is "UNKNOWN" there (the kernel's TCP_BOUND_INACTIVE came later)
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
              13: "UNKNOWN"}

app = tool_app()


def _ports(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        ports = [int(p) for p in text.split(",") if p]
    except ValueError:
        fail(f"invalid {what} port list {text!r} (comma-separated numbers)")
    if any(not 0 < p < 65536 for p in ports):
        fail(f"invalid {what} port in {text!r} (1-65535)")
    return ports


def _state(value: int) -> str:
    return TCP_STATES.get(value, "(null)")


@app.command()
def tcpstates(
    ipv4: bool = Option(False, "-4", "--ipv4", help="trace IPv4 family only"),
    ipv6: bool = Option(False, "-6", "--ipv6", help="trace IPv6 family only"),
    remoteport: Optional[str] = Option(None, "-D", "--remoteport", help="comma-separated remote ports"),
    localport: Optional[str] = Option(None, "-L", "--localport", help="comma-separated local ports"),
    timestamp: bool = Option(False, "-T", "--timestamp", help="include timestamp on output"),
    wide: bool = Option(False, "-w", "--wide", help="wide column output (fits IPv6 addresses)"),
    duration: Optional[float] = Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = Option(False, "--json", help="one JSON object per event"),
    version: bool = version_option("tcpstates"),
) -> None:
    """Trace TCP session state changes and durations."""
    if ipv4 and ipv6:
        fail("-4 and -6 exclude each other")
    sports, dports = _ports(localport, "local"), _ports(remoteport, "remote")
    rodata: dict[str, object] = {"filter_by_sport": bool(sports), "filter_by_dport": bool(dports),
                                 "target_family": AF_INET if ipv4 else AF_INET6 if ipv6 else 0}

    def fill(obj: pybpf.Object) -> None:
        for p in sports:
            obj.maps["sports"][p] = p
        for p in dports:
            obj.maps["dports"][p] = p

    addr_w = 39 if c_release() >= (0, 31) else 26
    if wide:
        fmt = f"%-16x %-7d %-16s %-2d %-{addr_w}s %-5d %-{addr_w}s %-5d %-11s -> %-11s %.3f\n"
        head = (f"%-16s %-7s %-16s %-2s %-{addr_w}s %-5s %-{addr_w}s %-5s %-11s -> %-11s %s\n"
                % ("SKADDR", "PID", "COMM", "IP", "LADDR", "LPORT", "RADDR", "RPORT", "OLDSTATE", "NEWSTATE", "MS"))
    else:
        fmt = "%-16x %-7d %-10.10s %-15s %-5d %-15s %-5d %-11s -> %-11s %.3f\n"
        head = ("%-16s %-7s %-10s %-15s %-5s %-15s %-5s %-11s -> %-11s %s\n"
                % ("SKADDR", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "OLDSTATE", "NEWSTATE", "MS"))

    def show(batch: list[Record]) -> None:
        for e in batch:
            family = int(e["family"])
            saddr, daddr = ip_address(e["saddr"], family), ip_address(e["daddr"], family)
            old, new = _state(int(e["oldstate"])), _state(int(e["newstate"]))
            comm = ctext(e["comm"])
            if as_json:
                emit_json({"skaddr": f"{int(e['skaddr']):x}", "ts_us": int(e["ts_us"]), "pid": int(e["pid"]),
                           "comm": comm, "family": family, "laddr": saddr, "lport": int(e["sport"]),
                           "raddr": daddr, "rport": int(e["dport"]), "oldstate": old, "newstate": new,
                           "ms": int(e["delta_us"]) / 1000.0})
                continue
            row = "%8s " % wall_hms(int(e["ts_us"]) * 1000) if timestamp else ""
            values: tuple[object, ...] = (int(e["skaddr"]), int(e["pid"]), visible(comm))
            if wide:
                values += (4 if family == AF_INET else 6,)
            values += (saddr, int(e["sport"]), daddr, int(e["dport"]), old, new, int(e["delta_us"]) / 1000)
            out(row + fmt % values)

    with Stop(duration) as stop, loaded("tcpstates", rodata, before_attach=fill,
                                        max_entries={"events": ring_bytes(C_PAGES, 96)}) as obj:
        tool = EventTool(obj, "tcp_event", as_json=as_json)
        if not as_json:
            out(("%-8s " % "TIME(s)" if timestamp else "") + head)
        tool.run(show, stop, "Tracing TCP state changes... Ctrl-C to end.")
