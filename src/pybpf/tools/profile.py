"""profile: sample stacks on every CPU at a frequency, as libbpf-tools' profile (+ --svg).

    pybpf tool profile [-p PID] [-L TID] [-U | -K] [-F FREQ] [-f] [-d] [-I] [-C CPU] [-v]
                       [--stack-storage-size N] [--perf-max-stack-depth N]
                       [--svg FILE] [--json] [-V] [duration]

Output is the C tool's (0.31): the ``Sampling at ...`` line, then one block per stack
(kernel frames, user frames, ``-  COMM (PID)`` and the count), or with ``-f`` one folded
line per stack; ``--json`` gives one object per stack instead and ``--svg`` also draws a
flame graph. Stacks the stack map could not hold are counted in the C tool's WARNING line.

BPF side: ``bpf_src/profile.bpf.c``, a ``perf_event`` program on a software CPU clock per
CPU (opened by :mod:`pybpf.perf`); user space names the frames with :mod:`pybpf.symbolize`.
``pybpf export profile`` serves the same samples as a counter per command and stack.
"""

from __future__ import annotations

from typing import Optional

import typer

from pybpf import perf
from pybpf.flame.stacks import fold, name_stacks
from pybpf.symbolize import Symbolizer
from pybpf.text import visible
from pybpf.tools._common import Stop, fail, ready_line, tool_app, version_option
from pybpf.tools._stacks import (libbpf_debug, lost_warnings, parse_ids, print_blocks, print_folded, print_json,
                                 stack_object, track_pids, write_svg)

__all__ = ["app"]

app = tool_app()


@app.command()
def profile(
    duration: Optional[int] = typer.Argument(None, help="seconds to profile (none: until Ctrl-C)"),
    pid: Optional[str] = typer.Option(None, "-p", "--pid", help="profile processes with these comma-separated PIDs only"),
    tid: Optional[str] = typer.Option(None, "-L", "--tid", help="profile threads with these comma-separated TIDs only"),
    user_only: bool = typer.Option(False, "-U", "--user-stacks-only", help="user stacks only (no kernel stacks)"),
    kernel_only: bool = typer.Option(False, "-K", "--kernel-stacks-only", help="kernel stacks only (no user stacks)"),
    frequency: int = typer.Option(49, "-F", "--frequency", help="sample frequency, Hertz"),
    delimited: bool = typer.Option(False, "-d", "--delimited", help="insert delimiter between kernel/user stacks"),
    include_idle: bool = typer.Option(False, "-I", "--include-idle", help="include CPU idle stacks"),
    folded: bool = typer.Option(False, "-f", "--folded", help="output folded format, one line per stack"),
    cpu: Optional[int] = typer.Option(None, "-C", "--cpu", help="cpu number to run profile on"),
    storage: int = typer.Option(1024, "--stack-storage-size", help="number of unique stacks stored"),
    depth: int = typer.Option(127, "--perf-max-stack-depth", help="limit for kernel and user stacks"),
    svg: Optional[str] = typer.Option(None, "--svg", help="also write an SVG flame graph to FILE"),
    title: str = typer.Option("CPU flame graph", "--title", help="title of the flame graph"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="verbose debug output (libbpf's)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per stack"),
    version: bool = version_option("profile"),
) -> None:
    """Profile CPU usage by sampling stack traces at a timed interval."""
    if user_only and kernel_only:
        fail("user_stacks_only and kernel_stacks_only cannot be used together.")
    if duration is not None and duration <= 0:
        fail(f"Invalid duration (in s): {duration}")
    pids, tids = parse_ids(pid, "pid"), parse_ids(tid, "tid")
    rodata = {"user_stacks_only": user_only, "kernel_stacks_only": kernel_only, "include_idle": include_idle,
              "filter_by_pid": bool(pids), "filter_by_tid": bool(tids) and not pids}
    if verbose:
        libbpf_debug()
    sym = Symbolizer()
    with stack_object("profile", rodata, depth=depth, storage=storage, pids=pids, tids=tids) as obj:
        for p in pids:
            sym.remember(p)
        try:
            events = perf.open_events("cpu-clock", frequency=frequency, cpus=None if cpu is None else [cpu])
        except (ValueError, OSError) as exc:
            fail(f"failed to init perf sampling: {exc}")
        # the duration runs from the first sample on, as the C tool's sleep() after attaching
        with events, Stop(duration) as stop:
            events.attach(obj.programs["do_perf_event"])
            sym.kernel_symbols()   # read now: the program's own symbol leaves with it
            if not folded:
                who = (f" PID [{', '.join(map(str, pids))}]" if pids else
                       f" TID [{', '.join(map(str, tids))}]" if tids else " all threads")
                how = " by user" if user_only else " by kernel" if kernel_only else " by user + kernel"
                where = f" on CPU#{cpu}" if cpu is not None else ""
                when = f" for {duration} secs." if duration else "... Hit Ctrl-C to end."
                ready_line(f"Sampling at {frequency} Hertz of{who}{how}{where}{when}", as_json)
            counts = obj.maps["counts"]
            track_pids(stop, lambda: counts.lookup_batch()[0]["pid"], sym)
            events.disable()
        keys, values = counts.lookup_batch()
        stacks = obj.maps["stackmap"].stacks()
        dropped = int(obj.bss["dropped"])
    named = name_stacks(keys, values, stacks, sym, user_id=None if kernel_only else "user_stack_id",
                        kernel_id=None if user_only else "kern_stack_id")
    result = fold(named, delimiter="-" if delimited else None)
    if as_json:
        print_json([{"pid": r.pid, "comm": r.comm, "kernel_stack": list(reversed(r.kernel)),
                     "user_stack": list(reversed(r.user)), "samples": r.value}
                    for r in sorted(named, key=lambda r: -r.value)])
    elif folded:
        print_folded(result)
    else:
        print_blocks(named, delimiter=delimited,
                     tail=lambda r: f"    {'-':<16} {visible(r.comm)} ({r.pid})\n        {r.value}\n\n")
    lost_warnings(None if user_only else keys["kern_stack_id"], None if kernel_only else keys["user_stack_id"],
                  dropped, "samples")
    if svg:
        write_svg(svg, result, title, "samples", subtitle=f"{frequency} Hz, {result.total} samples")
