"""profile: sample stacks on every CPU at a frequency, as libbpf-tools' profile (+ --svg).

    pybpf tool profile [-p PID] [-L TID] [-U | -K] [-F FREQ] [-f] [-d] [-I] [-C CPU]
                       [--svg FILE] [duration]

BPF side: ``bpf_src/profile.bpf.c``, a ``perf_event`` program on a software CPU clock per
CPU (opened by :mod:`pybpf.perf`); user space names the frames with
:mod:`pybpf.symbolize` and prints libbpf-tools' output, folded stacks (``-f``), or an
SVG flame graph (``--svg``).
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np
import typer

from pybpf import perf
from pybpf.text import visible
from pybpf.flame.stacks import fold, name_stacks
from pybpf.symbolize import Symbolizer
from pybpf.tools._common import Stop, fail
from pybpf.tools._stacks import parse_ids, print_blocks, print_folded, stack_object, track_pids, write_svg

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


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
) -> None:
    """Profile CPU usage by sampling stack traces at a timed interval."""
    if user_only and kernel_only:
        fail("user_stacks_only and kernel_stacks_only cannot be used together.")
    if duration is not None and duration <= 0:
        fail(f"Invalid duration (in s): {duration}")
    pids, tids = parse_ids(pid, "pid"), parse_ids(tid, "tid")
    rodata = {"user_stacks_only": user_only, "kernel_stacks_only": kernel_only, "include_idle": include_idle,
              "filter_by_pid": bool(pids), "filter_by_tid": bool(tids) and not pids}
    sym = Symbolizer()
    with Stop(duration) as stop, \
            stack_object("profile", rodata, depth=depth, storage=storage, pids=pids, tids=tids) as obj:
        for p in pids:
            sym.remember(p)
        try:
            events = perf.open_events("cpu-clock", frequency=frequency, cpus=None if cpu is None else [cpu])
        except (ValueError, OSError) as exc:
            fail(f"failed to init perf sampling: {exc}")
        with events:
            events.attach(obj.programs["do_perf_event"])
            sym.kernel_symbols()   # read now: the program's own symbol leaves with it
            if not folded:
                who = (f" PID [{', '.join(map(str, pids))}]" if pids else
                       f" TID [{', '.join(map(str, tids))}]" if tids else " all threads")
                how = " by user" if user_only else " by kernel" if kernel_only else " by user + kernel"
                where = f" on CPU#{cpu}" if cpu is not None else ""
                when = f" for {duration} secs." if duration else "... Hit Ctrl-C to end."
                print(f"Sampling at {frequency} Hertz of{who}{how}{where}{when}", flush=True)
            counts = obj.maps["counts"]
            track_pids(stop, lambda: counts.lookup_batch()[0]["pid"], sym)
            events.disable()
        keys, values = counts.lookup_batch()
        stacks = obj.maps["stackmap"].stacks()
    named = name_stacks(keys, values, stacks, sym, user_id=None if kernel_only else "user_stack_id",
                        kernel_id=None if user_only else "kern_stack_id")
    missing = int(np.sum(((keys["user_stack_id"] < 0) & (keys["user_stack_id"] != -14) & (not kernel_only))
                         | ((keys["kern_stack_id"] < 0) & (keys["kern_stack_id"] != -14) & (not user_only))))
    result = fold(named, delimiter="-" if delimited else None)
    if folded:
        print_folded(result)
    else:
        print_blocks(named, delimiter=delimited,
                     tail=lambda r: f"    {'-':<16} {visible(r.comm)} ({r.pid})\n        {r.value}\n\n")
    if missing:
        print(f"WARNING: {missing} stack traces could not be displayed. Consider increasing "
              f"--stack-storage-size.", file=sys.stderr)
    if svg:
        write_svg(svg, result, title, "samples", subtitle=f"{frequency} Hz, {result.total} samples")
