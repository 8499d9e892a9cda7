"""tcpstates: TCP state changes and the time spent in each state (as libbpf-tools' tcpstates).

    pybpf tool tcpstates [-4] [-6] [-T] [-L LPORTS] [-D DPORTS] [-w] [--duration S] [--json]

BPF side: ``bpf_src/tcpstates.bpf.c`` on the ``sock:inet_sock_set_state`` tracepoint;
a ``transitions`` counter map for ``pybpf export tcpstates``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import typer

import pybpf
from pybpf.toolkit import cstr, ip_address, tcp_state
from pybpf.tools._common import Stop, emit_json, fail, loaded, ready_message, run_events

__all__ = ["app"]

AF_INET, AF_INET6 = 2, 10

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


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


@app.command()
def tcpstates(
    ipv4: bool = typer.Option(False, "-4", "--ipv4", help="trace IPv4 family only"),
    ipv6: bool = typer.Option(False, "-6", "--ipv6", help="trace IPv6 family only"),
    remoteport: Optional[str] = typer.Option(None, "-D", "--remoteport", help="comma-separated remote ports"),
    localport: Optional[str] = typer.Option(None, "-L", "--localport", help="comma-separated local ports"),
    timestamp: bool = typer.Option(False, "-T", "--timestamp", help="include timestamp on output"),
    wide: bool = typer.Option(False, "-w", "--wide", help="wide column output (fits IPv6 addresses)"),
    duration: Optional[float] = typer.Option(None, "--duration", help="stop after this many seconds"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per event"),
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

    width = 39 if wide else 15
    first_ts: list[int] = []

    def show(batch: np.ndarray) -> None:
        for e in batch:
            family = int(e["family"])
            saddr = ip_address(e["saddr"], family)
            daddr = ip_address(e["daddr"], family)
            old, new = tcp_state(e["oldstate"]), tcp_state(e["newstate"])
            if as_json:
                emit_json({"skaddr": f"{int(e['skaddr']):x}", "ts_us": int(e["ts_us"]), "pid": int(e["pid"]),
                           "comm": cstr(e["comm"]), "family": family, "laddr": saddr, "lport": int(e["sport"]),
                           "raddr": daddr, "rport": int(e["dport"]), "oldstate": old, "newstate": new,
                           "ms": int(e["delta_us"]) / 1000.0})
                continue
            cols = []
            if timestamp:
                if not first_ts:
                    first_ts.append(int(e["ts_us"]))
                cols.append(f"{(int(e['ts_us']) - first_ts[0]) / 1e6:<8.6f}")
            cols.append(f"{int(e['skaddr']):<16x} {int(e['pid']):<7} {cstr(e['comm'])[:10]:<10} "
                        f"{saddr:<{width}} {int(e['sport']):<5} {daddr:<{width}} {int(e['dport']):<5} "
                        f"{old:<11} -> {new:<11} {int(e['delta_us']) / 1000.0:.3f}")
            print(" ".join(cols), flush=True)

    with Stop(duration) as stop, loaded("tcpstates", rodata, before_attach=fill) as obj, \
            pybpf.RingBuffer(obj.maps["events"], dtype="tcp_event") as rb:
        if not as_json:
            head = [f"{'TIME(s)':<8}"] if timestamp else []
            head.append(f"{'SKADDR':<16} {'PID':<7} {'COMM':<10} {'LADDR':<{width}} {'LPORT':<5} "
                        f"{'RADDR':<{width}} {'RPORT':<5} {'OLDSTATE':<11} -> {'NEWSTATE':<11} MS")
            print(" ".join(head), flush=True)
        run_events(rb, show, stop, lambda: ready_message("Tracing TCP state changes... Ctrl-C to end."))
