"""wakeuptime: time blocked, by the waker's kernel stack, as libbpf-tools' wakeuptime.

    pybpf tool wakeuptime [-p PID] [-u] [-m MIN] [-M MAX] [-v]
                          [--stack-storage-size N] [--perf-max-stack-depth N]
                          [-f] [--svg FILE] [--json] [-V] [duration]

Output is the installed C tool's: ``Tracing blocked time (us) by kernel stack``, then per
(target, waker, waker's stack) a block: ``target:``, the waker's kernel frames as
``ADDRESS NAME`` (0.31: ``NAME+0xOFFSET``), ``waker:`` and the microseconds. ``-f``
prints folded stacks (``target;waker stack...;waker US``, as BCC's wakeuptime -f),
``--json`` one object per stack, and ``--svg`` draws them.

BPF side: ``bpf_src/wakeuptime.bpf.c`` (``tp_btf/sched_switch`` and ``tp_btf/sched_wakeup``,
as the C tool). ``pybpf export wakeuptime`` serves blocked seconds per waker stack.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from pybpf.flame import Folded
from pybpf.flame.stacks import name_stacks
from pybpf.symbolize import UNKNOWN, Symbolizer
from pybpf.text import visible
from pybpf.tools._common import Stop, c_release, ctext, fail, out, ready_line, tool_app, version_option
from pybpf.tools._stacks import libbpf_debug, lost_warnings, print_folded, print_json, stack_object, write_svg

__all__ = ["app"]

app = tool_app()


@app.command()
def wakeuptime(
    duration: Optional[int] = typer.Argument(None, help="seconds to trace (none: until Ctrl-C)"),
    pid: Optional[int] = typer.Option(None, "-p", "--pid", help="trace this PID only"),
    user_threads: bool = typer.Option(False, "-u", "--user-threads-only", help="user threads only"),
    min_block: int = typer.Option(1, "-m", "--min-block-time", help="microseconds over which we store traces"),
    max_block: int = typer.Option((1 << 64) - 1, "-M", "--max-block-time",
                                  help="microseconds under which we store traces"),
    folded: bool = typer.Option(False, "-f", "--folded", help="output folded format, one line per stack"),
    verbose: bool = typer.Option(False, "-v", "--verbose",
                                 help="show raw addresses (always shown, as in C) and libbpf's debug output"),
    storage: int = typer.Option(1024, "--stack-storage-size", help="number of unique stacks stored"),
    depth: int = typer.Option(127, "--perf-max-stack-depth", help="limit for kernel stacks"),
    svg: Optional[str] = typer.Option(None, "--svg", help="also write an SVG flame graph to FILE"),
    title: str = typer.Option("Wakeup time flame graph", "--title", help="title of the flame graph"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per stack"),
    version: bool = version_option("wakeuptime"),
) -> None:
    """Summarize sleep to wakeup time by waker kernel stack."""
    if min_block >= max_block:
        fail("min_block_time should be smaller than max_block_time")
    if pid is not None and pid <= 0:
        fail(f"Invalid PID: {pid}")
    if duration is not None and duration <= 0:
        fail(f"Invalid duration (in s): {duration}")
    if not 0 <= min_block < 1 << 64 or not 0 <= max_block < 1 << 64:
        fail("block times are microseconds, 0..2^64-1")
    if user_threads and pid:
        print("use either -u or -p", file=sys.stderr)   # as the C tool: a note, and it goes on
    rodata = {"targ_pid": pid or 0, "user_threads_only": user_threads,
              "min_block_ns": min_block * 1000, "max_block_ns": min(max_block * 1000, (1 << 64) - 1)}
    if verbose:
        libbpf_debug()
    sym = Symbolizer()
    # the duration runs from the moment the programs are attached, as the C tool's sleep()
    with stack_object("wakeuptime", rodata, depth=depth, storage=storage) as obj, Stop(duration) as stop:
        sym.kernel_symbols()   # read now: the program's own symbol leaves with it
        if not folded:
            ready_line("Tracing blocked time (us) by kernel stack", as_json)
        while not stop.wait(3600.0):
            pass
        keys, values = obj.maps["counts"].lookup_batch()
        stacks = obj.maps["stackmap"].stacks()
        dropped = int(obj.bss["dropped"])
    named = name_stacks(keys, values, stacks, sym, pid=None, comm="waker", kernel_id="w_k_stack_id", user_id=None)
    targets = [ctext(t) for t in keys["target"].tolist()]
    result = Folded()
    rows = sorted(zip(named, targets, keys["w_k_stack_id"].tolist()), key=lambda r: -r[0].value)
    for row, target, _ in rows:
        result.add((target, *row.kernel, row.comm), row.value // 1000 or 1)
    if as_json:
        print_json([{"target": target, "waker": row.comm, "kernel_stack": list(reversed(row.kernel)),
                     "us": row.value // 1000} for row, target, _ in rows])
    elif folded:
        print_folded(result)
    else:
        with_offset = c_release() >= (0, 31)
        text = []
        for row, target, stack_id in rows:
            text.append(f"\n\t{'target:':<16} {visible(target)}\n")
            if stack_id < 0 or stack_id not in stacks:
                print("missed kernel stack: -2", file=sys.stderr)   # the C tool's lookup: -ENOENT
                addrs: list[int] = []
            else:
                addrs = stacks.get(stack_id).tolist()
            frames = sym.kernel(addrs) if addrs else None
            for i, addr in enumerate(addrs):   # as the C tool: address and name, -v or not
                assert frames is not None
                name = str(frames.names[i])
                if name == UNKNOWN:
                    text.append(f"\t{addr:<16x} Unknown\n")
                elif with_offset:
                    text.append(f"\t{addr:<16x} {name}+0x{int(frames.offsets[i]):x}\n")
                else:
                    text.append(f"\t{addr:<16x} {name}\n")
            text.append(f"\t{'waker:':>16} {visible(row.comm)}\n\t{row.value // 1000}\n")
        out("".join(text))
        sys.stdout.flush()
    lost_warnings(keys["w_k_stack_id"], None, dropped, "wakeups")
    if svg:
        write_svg(svg, result, title, "us")
