"""offcputime: time spent off CPU, by kernel and user stack, as libbpf-tools' offcputime.

    pybpf tool offcputime [-p PID] [-t TID] [-u | -k] [-m MIN] [-M MAX] [--state S] [-v]
                          [--stack-storage-size N] [--perf-max-stack-depth N]
                          [-f] [-d] [--svg FILE] [--json] [-V] [duration]

Output is the installed C tool's: 0.31 prints ``Tracing off-CPU time (us)...`` first
(0.26 prints nothing), then one block per stack (kernel frames innermost first, user
frames, ``-  COMM (TID)`` and the microseconds; ``-v``: each frame numbered, with its address,
offset and, for user frames, file and address in the file). ``-f`` prints folded stacks
(``comm;user...;kernel... US``, as BCC's offcputime -f), ``--json`` one object per stack,
and ``--svg`` draws an off-CPU flame graph.

BPF side: ``bpf_src/offcputime.bpf.c`` (``tp_btf/sched_switch``, as the C tool).
``pybpf export offcputime`` serves off-CPU seconds per command and stack.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np
import typer

from pybpf.flame.stacks import NamedStack, fold, name_stacks
from pybpf.maps.stacks import StackTable
from pybpf.symbolize import UNKNOWN, Symbolizer
from pybpf.text import visible
from pybpf.tools._common import Stop, c_release, ctext, fail, out, ready_line, tool_app, version_option
from pybpf.tools._stacks import (libbpf_debug, lost_warnings, parse_ids, print_blocks, print_folded, print_json,
                                 stack_object, track_pids, write_svg)

__all__ = ["app"]

app = tool_app()


def _verbose_blocks(keys: np.ndarray, values: np.ndarray, stacks: StackTable, sym: Symbolizer) -> str:
    """The C tool's ``-v`` blocks: ``#N 0xADDR NAME+0xOFF`` per kernel frame, ``#N 0xADDR NAME+0xOFF
    (FILE+0xVADDR)`` per user frame (numbered on from the kernel's), then ``-  COMM (TID)`` and the
    microseconds. A stack the map could not hold is said on stderr, as there."""
    def addrs_of(stack_id: int) -> list[int]:
        return stacks.get(stack_id).tolist() if stack_id >= 0 and stack_id in stacks else []

    kids, uids, tgids = (keys[f].astype(np.int64).tolist() for f in ("kern_stack_id", "user_stack_id", "tgid"))
    kaddrs = sorted({a for k in kids for a in addrs_of(k)})
    kf = sym.kernel(kaddrs)
    kernel = dict(zip(kaddrs, zip(kf.names.tolist(), kf.offsets.tolist())))
    user: dict[tuple[int, int], tuple[str, int, str, int]] = {}
    readable: set[int] = set()
    for tgid in sorted(set(tgids)):
        uaddrs = sorted({a for u, t in zip(uids, tgids) if t == tgid for a in addrs_of(u)})
        if not uaddrs:
            continue
        if sym.remember(tgid) is not None:
            readable.add(tgid)
        uf = sym.user(tgid, uaddrs)
        vaddrs = uf.file_addrs if uf.file_addrs is not None else np.zeros(len(uaddrs), np.uint64)
        for a, name, off, module, vaddr in zip(uaddrs, uf.names.tolist(), uf.offsets.tolist(), uf.modules.tolist(),
                                              vaddrs.tolist()):
            user[(tgid, a)] = (name, off, module, vaddr)
    lines: list[str] = []
    order = np.argsort(-values["delta"].astype(np.int64), kind="stable").tolist()
    for i in order:
        idx = 0
        if kids[i] < 0 or kids[i] not in stacks:
            print("    [Missed Kernel Stack]", file=sys.stderr)
        for a in addrs_of(kids[i]):
            name, off = kernel[a]
            lines.append(f"    #{idx:<2d} 0x{a:x} [unknown]\n" if name == UNKNOWN else
                         f"    #{idx:<2d} 0x{a:x} {visible(name)}+0x{off:x}\n")
            idx += 1
        if uids[i] not in (-1, -14):
            if uids[i] < 0 or uids[i] not in stacks:
                print("    [Missed User Stack]", file=sys.stderr)
            for a in addrs_of(uids[i]):
                name, off, module, vaddr = user[(tgids[i], a)]
                # as the C tool: [unknown] for a process whose mappings could not be read, else the
                # symbol where there is one and the file where the address is in one
                line = f"    #{idx:<2d} 0x{a:016x}"
                if tgids[i] not in readable:
                    line += " [unknown]"
                else:
                    if name != UNKNOWN:
                        line += f" {visible(name)}+0x{off:x}"
                    if module not in (UNKNOWN, "[anon]", "[perf-map]"):
                        line += f" ({visible(module)}+0x{vaddr:x})"
                lines.append(line + "\n")
                idx += 1
        lines.append(f"    {'-':<16} {visible(ctext(values['comm'][i]))} ({int(keys['pid'][i])})\n"
                     f"        {int(values['delta'][i])}\n\n")
    return "".join(lines)


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
    verbose: bool = typer.Option(False, "-v", "--verbose",
                                 help="frames with addresses and offsets, and libbpf's debug output"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per stack"),
    version: bool = version_option("offcputime"),
) -> None:
    """Summarize off-CPU time by stack trace."""
    if user_threads and kernel_threads:
        fail("user_threads_only and kernel_threads_only cannot be used together.")
    if min_block >= max_block:
        fail("min_block_time should be smaller than max_block_time")
    if duration is not None and duration <= 0:
        fail(f"Invalid duration (in s): {duration}")
    if not 0 <= min_block < 1 << 64 or not 0 <= max_block < 1 << 64:
        fail("block times are microseconds, 0..2^64-1")
    pids, tids = parse_ids(pid, "pid"), parse_ids(tid, "tid")
    rodata = {"user_threads_only": user_threads, "kernel_threads_only": kernel_threads,
              "min_block_us": min_block, "max_block_us": max_block, "state": state,
              "filter_by_tgid": bool(pids), "filter_by_pid": bool(tids)}
    if verbose:
        libbpf_debug()
    sym = Symbolizer()
    # the duration runs from the moment the program is attached, as the C tool's sleep()
    with stack_object("offcputime", rodata, depth=depth, storage=storage, pids=pids, tids=tids) as obj, \
            Stop(duration) as stop:
        sym.kernel_symbols()   # read now: the program's own symbol leaves with it
        for p in pids:
            sym.remember(p)
        if not folded and c_release() >= (0, 31):   # 0.26 prints no header
            ready_line("Tracing off-CPU time (us)" + (f" for {duration} secs." if duration else
                                                      "... Hit Ctrl-C to end."), as_json)
        info = obj.maps["info"]
        track_pids(stop, lambda: info.lookup_batch()[0]["tgid"], sym)
        keys, values = info.lookup_batch()
        stacks = obj.maps["stackmap"].stacks()
        dropped = int(obj.bss["dropped"])
    keep = values["delta"] > 0   # as the C tool: stacks stamped but never back on a CPU are not shown
    keys, values = keys[keep], values[keep]
    named = name_stacks(keys, values["delta"], stacks, sym, comm=None, user_pid="tgid")
    named = [NamedStack(n.pid, ctext(c), n.user, n.kernel, n.value) for n, c in zip(named, values["comm"])]
    result = fold(named, delimiter="-" if delimited else None)
    if as_json:
        tgids = dict(zip(range(len(keys)), keys["tgid"].tolist()))
        order = np.argsort(-values["delta"].astype(np.int64), kind="stable").tolist()
        print_json([{"tid": named[i].pid, "pid": tgids[i], "comm": named[i].comm,
                     "kernel_stack": list(reversed(named[i].kernel)), "user_stack": list(reversed(named[i].user)),
                     "us": named[i].value} for i in order])
    elif folded:
        print_folded(result)
    elif verbose:
        out(_verbose_blocks(keys, values, stacks, sym))
        sys.stdout.flush()
    else:
        print_blocks(named, delimiter=delimited, kernel_unknown="unknown",
                     tail=lambda r: f"    {'-':<16} {visible(r.comm)} ({r.pid})\n        {r.value}\n\n")
    lost_warnings(keys["kern_stack_id"], keys["user_stack_id"], dropped, "off-CPU stacks")
    if svg:
        write_svg(svg, result, title, "us", subtitle=f"{int(np.sum(values['delta'])):,} us off CPU")
