"""pyprofile: sample the Python stacks of a running CPython from BPF, without touching it.

    pybpf tool pyprofile -p PID [-F FREQ] [-f] [--svg FILE] [--native] [--threads]
                         [--max-depth N] [--offsets FILE] [--json] [duration]

A perf-event program on every CPU (``bpf_src/pyprofile.bpf.c``) reads the Python frame
chain of the thread on CPU at ``FREQ`` Hz; user space names each code object once as
``qualname (file:line)`` (the function's first line). Output: the top functions
(default), folded stacks (``-f``, for flamegraph.pl/speedscope), an SVG flame graph
(``--svg``), or JSON. Works on CPython 3.11, 3.12 and 3.13 with the GIL; anything else
is refused saying why (``pybpf.pyframes``). ``--dump-offsets`` prints the offsets found
for the process (the format ``--offsets FILE`` reads).
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from pybpf.errors import BpfError, ObjectFormatError
from pybpf.pyframes import PythonProcess, UnreadablePythonError, load_offsets_file
from pybpf.text import visible
from pybpf.tools._common import Stop, emit_json, fail, ready_message, tool_app, version_option
from pybpf.tools._pystacks import MAX_DEPTH, PySampler, function_stats, process_alive
from pybpf.tools._stacks import write_svg

__all__ = ["app"]

app = tool_app()


@app.command()
def pyprofile(
    duration: Optional[float] = typer.Argument(None, help="seconds to profile (none: until Ctrl-C or the process ends)"),
    pid: int = typer.Option(..., "-p", "--pid", help="the CPython process to profile"),
    frequency: int = typer.Option(99, "-F", "--frequency", help="samples per second per CPU"),
    folded: bool = typer.Option(False, "-f", "--folded", help="folded stacks, one line per stack"),
    svg: Optional[str] = typer.Option(None, "--svg", help="also write an SVG flame graph to FILE"),
    native: bool = typer.Option(False, "--native", help="add the C frames above the Python ones (see README)"),
    threads: bool = typer.Option(False, "--threads", help="a root frame per thread (tid N)"),
    max_depth: int = typer.Option(128, "--max-depth", help=f"Python frames per stack, 1..{MAX_DEPTH}"),
    top: int = typer.Option(20, "-n", "--top", help="functions in the default report"),
    offsets: Optional[str] = typer.Option(None, "--offsets", help="read CPython's offsets from FILE (JSON)"),
    dump_offsets: bool = typer.Option(False, "--dump-offsets", help="print the offsets found and exit"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document: stacks and functions"),
    title: str = typer.Option("Python CPU flame graph", "--title", help="title of the flame graph"),
    version: bool = version_option("pyprofile"),
) -> None:
    """Sample the Python stacks of a running CPython (3.11-3.13) from BPF."""
    if duration is not None and duration <= 0:
        fail(f"Invalid duration (in s): {duration}")
    if not 1 <= frequency <= 100_000:
        fail(f"invalid frequency {frequency}: 1..100000 Hz")
    if not 1 <= max_depth <= MAX_DEPTH:
        fail(f"--max-depth must be 1..{MAX_DEPTH}, not {max_depth}")
    try:
        given = load_offsets_file(offsets) if offsets else None
        if dump_offsets:
            with PythonProcess(pid, offsets=given) as proc:
                sys.stdout.write(proc.offsets.to_json())
            return
        with PySampler([pid], frequency=frequency, max_depth=max_depth, native=native, offsets=given) as sampler, \
                Stop(duration) as stop:   # the duration starts once sampling does
            proc = sampler.procs[pid]
            ready_message(f"Sampling the Python stacks of pid {pid} ({visible(proc.comm)}, CPython "
                          f"{proc.describe()['version']}) at {frequency} Hz"
                          + (f" for {duration:g} s." if duration else "... Hit Ctrl-C to end."))
            while not stop.wait(1.0):
                sampler.refresh()
                if not process_alive(pid):
                    break
            sampler.stop()
            sampler.refresh()
            stacks = sampler.stacks()
            counters = sampler.counters()
    except (UnreadablePythonError, ObjectFormatError) as exc:
        fail(str(exc))
    except BpfError as exc:
        fail(str(exc))
    result = sampler.folded(stacks, threads=threads)
    funcs = function_stats(stacks)
    total = result.total
    if as_json:
        emit_json({"pid": pid, "frequency": frequency, "samples": total, "counters": counters,
                   "stacks": [{"tid": s.tid, "frames": list(s.frames), "count": s.count} for s in stacks],
                   "functions": [f.to_dict(total) for f in funcs]})
    elif folded:
        for frames, count in sorted(result, key=lambda fc: -fc[1]):
            sys.stdout.write(visible(";".join(frames)) + f" {count}\n")
    else:
        print(f"{'OWN%':>6} {'TOTAL%':>7} {'OWN':>7} {'TOTAL':>7}  FUNCTION")
        for f in funcs[:top]:
            print(f"{100 * f.own / max(total, 1):6.2f} {100 * f.total / max(total, 1):7.2f} {f.own:7d} "
                  f"{f.total:7d}  {visible(f.name)}")
    sys.stdout.flush()
    if counters["truncated"]:
        print(f"{counters['truncated']} stacks deeper than --max-depth {max_depth} were cut (marked [truncated])",
              file=sys.stderr)
    if counters["dropped"]:
        print(f"WARNING: {counters['dropped']} samples lost: the counts map was full", file=sys.stderr)
    if svg:
        write_svg(svg, result, title, "samples", subtitle=f"pid {pid}, {frequency} Hz, {total} samples")
