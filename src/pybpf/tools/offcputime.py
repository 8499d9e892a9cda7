"""offcputime: time spent off CPU, by kernel and user stack, as libbpf-tools' offcputime.

    pybpf tool offcputime [-p PID] [-t TID] [-u | -k] [-m MIN] [-M MAX] [--state S]
                          [-f] [-d] [--svg FILE] [duration]

BPF side: ``bpf_src/offcputime.bpf.c`` (``tp_btf/sched_switch``, as the C tool). Times are
microseconds. ``-f`` prints folded stacks (``comm;user...;kernel... US``, as BCC's
offcputime -f) and ``--svg`` draws an off-CPU flame graph.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import typer

from pybpf.text import visible
from pybpf.flame.stacks import fold, name_stacks
from pybpf.symbolize import Symbolizer
from pybpf.tools._common import Stop, fail
from pybpf.tools._stacks import parse_ids, print_blocks, print_folded, stack_object, track_pids, write_svg

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command()
def offcputime(
    duration: Optional[int] = typer.Argument(None, help="seconds to trace (none: until Ctrl-C)"),
    pid: Optional[str] = typer.Option(None, "-p", "--pid", help="trace these comma-separated PIDs only"),
    tid: Optional[str] = typer.Option(None, "-t", "--tid", help="trace these comma-separated TIDs only"),
    user_threads: bool = typer.Option(False, "-u", "--user-threads-only", help="user threads only"),
    kernel_threads: bool = typer.Option(False, "-k", "--kernel-threads-only", help="kernel threads only"),
    min_block: int = typer.Option(1, "-m", "--min-block-time", help="microseconds over which we store traces"),
    max_block: int = typer.Option((1 << 64) - 1, "-M", "--max-block-time",
                                  help="microseconds under which we store traces"),
    state: int = typer.Option(-1, "--state", help="filter on this thread state bitmask (2 = TASK_UNINTERRUPTIBLE)"),
    folded: bool = typer.Option(False, "-f", "--folded", help="output folded format, one line per stack"),
    delimited: bool = typer.Option(False, "-d", "--delimited", help="insert delimiter between kernel/user stacks"),
    storage: int = typer.Option(1024, "--stack-storage-size", help="number of unique stacks stored"),
    depth: int = typer.Option(127, "--perf-max-stack-depth", help="limit for kernel and user stacks"),
    svg: Optional[str] = typer.Option(None, "--svg", help="also write an SVG flame graph to FILE"),
    title: str = typer.Option("Off-CPU time flame graph", "--title", help="title of the flame graph"),
) -> None:
    """Summarize off-CPU time by stack trace."""
    if user_threads and kernel_threads:
        fail("user_threads_only and kernel_threads_only cannot be used together.")
    if min_block > max_block:
        fail("min_block_time should be smaller than max_block_time")
    if duration is not None and duration <= 0:
        fail(f"Invalid duration (in s): {duration}")
    pids, tids = parse_ids(pid, "pid"), parse_ids(tid, "tid")
    rodata = {"user_threads_only": user_threads, "kernel_threads_only": kernel_threads,
              "min_block_us": min_block, "max_block_us": max_block, "state": state,
              "filter_by_tgid": bool(pids), "filter_by_pid": bool(tids)}
    sym = Symbolizer()
    with Stop(duration) as stop, \
            stack_object("offcputime", rodata, depth=depth, storage=storage, pids=pids, tids=tids) as obj:
        obj.attach()
        sym.kernel_symbols()   # read now: the program's own symbol leaves with it
        for p in pids:
            sym.remember(p)
        if not folded:
            print("Tracing off-CPU time (us) of " + (f"PID [{', '.join(map(str, pids))}]" if pids else "all threads")
                  + (f" for {duration} secs." if duration else "... Hit Ctrl-C to end."), flush=True)
        info = obj.maps["info"]
        track_pids(stop, lambda: info.lookup_batch()[0]["tgid"], sym)
        keys, values = info.lookup_batch()
        stacks = obj.maps["stackmap"].stacks()
    keep = values["delta"] > 0
    keys, values = keys[keep], values[keep]
    named = name_stacks(keys, values["delta"], stacks, sym, comm=None, user_pid="tgid")
    comms = [bytes(c).split(b"\0", 1)[0].decode("utf-8", "replace") for c in values["comm"].tolist()]
    named = [type(n)(n.pid, c, n.user, n.kernel, n.value) for n, c in zip(named, comms)]
    result = fold(named, delimiter="-" if delimited else None)
    if folded:
        print_folded(result)
    else:
        print_blocks(named, delimiter=delimited,
                     tail=lambda r: f"    {'-':<16} {visible(r.comm)} ({r.pid})\n        {r.value}\n\n")
    if svg:
        write_svg(svg, result, title, "us", subtitle=f"{int(np.sum(values['delta'])):,} us off CPU")
