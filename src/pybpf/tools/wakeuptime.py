"""wakeuptime: time blocked, by the waker's kernel stack, as libbpf-tools' wakeuptime.

    pybpf tool wakeuptime [-p PID] [-u] [-m MIN] [-M MAX] [-f] [--svg FILE] [duration]

BPF side: ``bpf_src/wakeuptime.bpf.c`` (``tp_btf/sched_switch`` and ``tp_btf/sched_wakeup``,
as the C tool). Times are microseconds. ``-f`` prints folded stacks
(``target;waker stack...;waker US``, as BCC's wakeuptime -f) and ``--svg`` draws them.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from pybpf.text import visible
from pybpf.flame import Folded
from pybpf.flame.stacks import name_stacks
from pybpf.symbolize import Symbolizer
from pybpf.tools._common import Stop, fail
from pybpf.tools._stacks import print_folded, stack_object, write_svg

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _text(raw: bytes) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


@app.command()
def wakeuptime(
    duration: Optional[int] = typer.Argument(None, help="seconds to trace (none: until Ctrl-C)"),
    pid: Optional[int] = typer.Option(None, "-p", "--pid", help="trace this PID only"),
    user_threads: bool = typer.Option(False, "-u", "--user-threads-only", help="user threads only"),
    min_block: int = typer.Option(1, "-m", "--min-block-time", help="microseconds over which we store traces"),
    max_block: int = typer.Option((1 << 64) - 1, "-M", "--max-block-time",
                                  help="microseconds under which we store traces"),
    folded: bool = typer.Option(False, "-f", "--folded", help="output folded format, one line per stack"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="show raw addresses"),
    storage: int = typer.Option(1024, "--stack-storage-size", help="number of unique stacks stored"),
    depth: int = typer.Option(127, "--perf-max-stack-depth", help="limit for kernel stacks"),
    svg: Optional[str] = typer.Option(None, "--svg", help="also write an SVG flame graph to FILE"),
    title: str = typer.Option("Wakeup time flame graph", "--title", help="title of the flame graph"),
) -> None:
    """Summarize sleep to wakeup time by waker kernel stack."""
    if min_block > max_block:
        fail("min_block_time should be smaller than max_block_time")
    if pid is not None and pid <= 0:
        fail(f"Invalid PID: {pid}")
    if duration is not None and duration <= 0:
        fail(f"Invalid duration (in s): {duration}")
    rodata = {"targ_pid": pid or 0, "user_threads_only": user_threads,
              "min_block_ns": min_block * 1000, "max_block_ns": min(max_block * 1000, (1 << 64) - 1)}
    sym = Symbolizer()
    with Stop(duration) as stop, stack_object("wakeuptime", rodata, depth=depth, storage=storage) as obj:
        obj.attach()
        sym.kernel_symbols()   # read now: the program's own symbol leaves with it
        if not folded:
            print("Tracing blocked time (us) by kernel stack" +
                  (f" for {duration} secs." if duration else "... Hit Ctrl-C to end."), flush=True)
        while not stop.wait(3600.0):
            pass
        keys, values = obj.maps["counts"].lookup_batch()
        stacks = obj.maps["stackmap"].stacks()
    named = name_stacks(keys, values, stacks, sym, pid=None, comm="waker", kernel_id="w_k_stack_id", user_id=None)
    targets = [_text(t) for t in keys["target"].tolist()]
    result = Folded()
    rows = sorted(zip(named, targets, keys["w_k_stack_id"].tolist()), key=lambda r: -r[0].value)
    for row, target, _ in rows:
        result.add((target, *row.kernel, row.comm), row.value // 1000 or 1)
    if folded:
        print_folded(result)
    else:
        out = sys.stdout
        for row, target, stack_id in rows:
            out.write(f"\n\t{'target:':<16} {visible(target)}\n")
            addrs = stacks.get(stack_id).tolist() if stack_id >= 0 and stack_id in stacks else []
            frames = sym.kernel(addrs).names.tolist() if addrs else []
            for addr, name in zip(addrs, frames):
                out.write(f"\t{addr:<16x} {name}\n")   # as the C tool: address and name, -v or not
            out.write(f"\t{'waker:':>16} {visible(row.comm)}\n\t{row.value // 1000}\n")
        out.flush()
    if svg:
        write_svg(svg, result, title, "us")
