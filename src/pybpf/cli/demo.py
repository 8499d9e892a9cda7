"""``pybpf demo``: every system call on the machine, counted live by a bundled BPF program.

The bundled ``syscount`` object counts ``raw_syscalls:sys_enter`` per syscall
number into a ``BPF_F_MMAPABLE`` array. This command reads it through
``obj.maps["counts"].view()``: a numpy array over mmapped map memory, so a
refresh of the whole table is a memory copy and costs no system call at all.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import typer
from rich.live import Live

import pybpf
from pybpf.kernel.syscalls import syscall_name

from pybpf.cli.render import JSON_FLAG, console, ctrl_c_stops, guarded, json_wanted, print_json, table

__all__ = ["demo_command", "snapshot"]

_REFRESH_S = 0.5


def snapshot(counts: np.ndarray) -> list[dict[str, Any]]:
    """Nonzero counters as ``{"nr", "name", "count"}``, largest first."""
    copy = counts.copy()  # one consistent read of the live counters (a memcpy, no syscall)
    order = np.argsort(copy, kind="stable")[::-1]
    return [{"nr": int(nr), "name": syscall_name(int(nr)), "count": int(copy[nr])}
            for nr in order if copy[nr]]


def _render(rows: list[dict[str, Any]], previous: dict[int, int], elapsed: float, interval: float,
            total: int, top: int) -> Any:
    counted = sum(r["count"] for r in rows) or 1
    body = []
    for rank, r in enumerate(rows[:top], 1):
        rate = (r["count"] - previous.get(r["nr"], 0)) / interval if interval > 0 else 0.0
        body.append((rank, r["nr"], r["name"], f"{r['count']:,}", f"{100 * r['count'] / counted:.1f}%",
                     f"{rate:,.0f}"))
    return table(
        f"system calls on this machine, {elapsed:.1f} s (top {min(top, len(rows))} of {len(rows)})",
        ["#", "nr", "syscall", "count", "share", "per s"], body,
        caption=f"{total:,} syscalls counted in the kernel by BPF. Reading all 512 counters: "
                f"1 memory copy from a zero-copy numpy view of BPF_F_MMAPABLE map 'counts', "
                f"0 syscalls per refresh.", min_width=72)


@guarded
def demo_command(
    duration: float = typer.Option(10.0, "--duration", "-d", min=0.0, help="seconds to run"),
    top: int = typer.Option(15, "--top", "-n", min=1, help="rows in the table"),
    as_json: bool = JSON_FLAG(help="print the final counts as JSON instead"),
    include_self: bool = typer.Option(False, "--include-self",
                                      help="also count this process's own syscalls"),
) -> None:
    """Count every system call live with a bundled BPF program; the table reads it without syscalls."""
    as_json = json_wanted(as_json)
    out = console()
    with pybpf.open(pybpf.bundled("syscount")) as obj:
        if not include_self:
            obj.rodata["skip_tgid"] = os.getpid()
        obj.load()
        obj.attach()
        counts = obj.maps["counts"].view()
        total, out_of_range = obj.bss["total"], obj.bss["out_of_range"]  # live 0-d views
        ctrl_c_stops()
        start = last = time.monotonic()
        # Scripts and tests wait for this line: from here on, syscalls are counted.
        print(f"counting system calls for {duration:g} s (Ctrl-C stops)", file=sys.stderr, flush=True)
        previous: dict[int, int] = {}
        try:
            if out.is_terminal and not as_json:
                with Live(console=out, auto_refresh=False) as live:
                    while True:  # the last frame is drawn at the end of the duration
                        now = time.monotonic()
                        rows = snapshot(counts)
                        live.update(_render(rows, previous, now - start, now - last, int(total), top),
                                    refresh=True)
                        if now - start >= duration:
                            break
                        previous, last = {r["nr"]: r["count"] for r in rows}, now
                        time.sleep(min(_REFRESH_S, duration - (now - start)))
            else:
                while time.monotonic() - start < duration:
                    time.sleep(min(_REFRESH_S, max(duration - (time.monotonic() - start), 0.0)))
        except KeyboardInterrupt:
            pass  # Ctrl-C ends the demo early; still show what was counted
        elapsed = time.monotonic() - start
        rows = snapshot(counts)
        if as_json:
            print_json({"duration": round(elapsed, 3), "total": int(total),
                        "out_of_range": int(out_of_range), "read_syscalls": 0,
                        "include_self": include_self, "syscalls": rows})
        elif not out.is_terminal:
            out.print(_render(rows, {}, elapsed, elapsed, int(total), top))  # per s = average
        del counts, total, out_of_range  # release the views before the object closes
