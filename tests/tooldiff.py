"""Running a pybpf tool and its C twin on one workload, and comparing their text.

``side_by_side`` starts both (the C tool line-buffered through stdbuf), waits until
each is ready, runs the workload, waits for what each should print, stops both
with SIGINT, and returns their stdout lines. ``same_lines`` compares the chosen
lines byte for byte after blanking the columns that are not deterministic (wall
clock, seconds since start: checked for their format first), and records the
counts (lines compared, lines identical) in ``$PYBPF_COMPARE_LOG`` when set; the
closing note of issue 24 quotes them."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence

from tests.procs import Proc, c_tool, pybpf_cmd

HMS = re.compile(r"\d\d:\d\d:\d\d")


def side_by_side(tool: str, args: Sequence[str], workload: Callable[[], None],
                 done: Callable[[list[str]], bool], *, c_args: Sequence[str] | None = None,
                 ready: Callable[[Proc], bool] | None = None, settle: float = 0.3,
                 timeout: float = 30.0) -> tuple[list[str], list[str], Proc, Proc]:
    """Both tools over ``workload``; ``done(lines)`` says when a tool has printed enough."""
    theirs = Proc(c_tool(tool) + list(c_args if c_args is not None else args))
    try:
        ours = Proc(pybpf_cmd("tool", tool, *args))
    except BaseException:
        theirs.kill()
        raise
    try:
        started = ready or (lambda p: bool(p.out) or any("Tracing" in line for line in p.err))
        theirs.wait_for(lambda: started(theirs), what=f"C {tool} ready")
        ours.wait_for(lambda: started(ours), what=f"pybpf {tool} ready")
        time.sleep(settle)  # both attached: the C tool prints its header after attaching
        workload()
        theirs.wait_for(lambda: done(theirs.out), timeout=timeout, what=f"the workload in C {tool} {args}")
        ours.wait_for(lambda: done(ours.out), timeout=timeout, what=f"the workload in pybpf {tool} {args}")
    finally:
        ours.stop()
        theirs.stop()
    return ours.out, theirs.out, ours, theirs


def blank(lines: list[str], pattern: str | re.Pattern[str], check: str | re.Pattern[str] | None = None) -> list[str]:
    """Replace the first match of ``pattern`` in each line by as many ``#``; every match must
    also match ``check`` (the column's format) when given."""
    pat = re.compile(pattern)
    fmt = re.compile(check) if check is not None else None
    result = []
    for line in lines:
        m = pat.search(line)
        if m is None:
            result.append(line)
            continue
        if fmt is not None:
            assert fmt.fullmatch(m.group(0)), f"column {m.group(0)!r} is not in the C format {fmt.pattern!r}: {line!r}"
        result.append(line[:m.start()] + "#" * (m.end() - m.start()) + line[m.end():])
    return result


def close_clocks(ours: list[str], theirs: list[str], slack: int = 2) -> None:
    """The HH:MM:SS columns of both tools agree within ``slack`` seconds."""
    def secs(line: str) -> int | None:
        m = HMS.search(line)
        if m is None:
            return None
        h, mi, s = map(int, m.group(0).split(":"))
        return h * 3600 + mi * 60 + s
    a = [s for s in map(secs, ours) if s is not None]
    b = [s for s in map(secs, theirs) if s is not None]
    assert a and b
    assert abs(min(a) - min(b)) <= slack or abs(min(a) - min(b)) >= 86400 - slack, (a, b)


def same_lines(label: str, ours: list[str], theirs: list[str], *, ordered: bool = True) -> int:
    """Assert the two line lists are identical (as multisets when not ``ordered``); log counts."""
    a, b = (ours, theirs) if ordered else (sorted(ours), sorted(theirs))
    identical = sum(x == y for x, y in zip(a, b))
    log = os.environ.get("PYBPF_COMPARE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"case": label, "compared": max(len(a), len(b)), "identical": identical}) + "\n")
    assert a == b, f"{label}: ours != C\n" + "\n".join(f"  ours: {x!r}\n  C:    {y!r}" for x, y in zip(a, b) if x != y)[:4000] \
        + (f"\n  lengths {len(a)} vs {len(b)}" if len(a) != len(b) else "")
    return identical
