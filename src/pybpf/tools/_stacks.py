"""Plumbing shared by the stack tools (profile, offcputime, wakeuptime).

Owns what the three do alike: open a bundled object with its stack map sized from the
command line (``--perf-max-stack-depth``, ``--stack-storage-size``) and its pid/tid
filter maps filled, remember the processes that show up while tracing (so that their
stacks still resolve if they exit before the end: bpftrace#1006), and print the result
as libbpf-tools do (one block per stack, or folded lines) or as an SVG flame graph.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

import pybpf
from pybpf.text import visible
from pybpf.flame import Folded, render_svg
from pybpf.flame.stacks import NamedStack
from pybpf.symbolize import Symbolizer
from pybpf.tools._common import Stop, fail

__all__ = ["parse_ids", "print_blocks", "print_folded", "stack_object", "track_pids", "write_svg"]


def parse_ids(text: str | None, what: str) -> list[int]:
    """``"12,34"`` -> [12, 34] (libbpf-tools' comma-separated PID/TID lists)."""
    if not text:
        return []
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(f"invalid {what} list: {text!r}")
    if any(i <= 0 for i in ids):
        fail(f"invalid {what} list: {text!r}")
    if len(ids) > 30:
        fail(f"at most 30 {what}s")
    return ids


@contextmanager
def stack_object(name: str, rodata: Mapping[str, Any], *, depth: int, storage: int,
                 pids: Sequence[int] = (), tids: Sequence[int] = ()) -> Iterator[pybpf.Object]:
    """The bundled object ``name``, loaded with its stack map sized and filters filled."""
    if not 1 <= depth <= 127:
        fail(f"--perf-max-stack-depth must be 1..127, not {depth}")
    if not 1 <= storage <= 1 << 20:
        fail(f"--stack-storage-size must be 1..{1 << 20}, not {storage}")
    obj = pybpf.open(pybpf.bundled(name))
    try:
        for key, value in rodata.items():
            obj.rodata[key] = value
        stackmap = obj.maps["stackmap"]
        stackmap.value_size = depth * 8
        stackmap.max_entries = storage
        obj.load()
        for pid in pids:
            obj.maps["pids"][pid] = 1
        for tid in tids:
            obj.maps["tids"][tid] = 1
        yield obj
    finally:
        obj.close()


def track_pids(stop: Stop, keys_of: Callable[[], np.ndarray], symbolizer: Symbolizer, every: float = 1.0) -> None:
    """Until ``stop``: every ``every`` seconds, snapshot the mappings of processes new in the
    counts (``keys_of()`` gives their pids), so short-lived ones still resolve at the end."""
    while not stop.wait(every):
        for pid in np.unique(keys_of()).tolist():
            if pid > 0:
                symbolizer.remember(int(pid))


def print_blocks(named: Sequence[NamedStack], *, delimiter: bool = False, tail: Callable[[NamedStack], str]) -> None:
    """libbpf-tools' multi-line form: kernel frames innermost first, ``--`` (with ``-d``),
    user frames innermost first, then the tool's own ``tail`` lines."""
    out = sys.stdout
    for row in sorted(named, key=lambda r: -r.value):
        for frame in reversed(row.kernel):
            out.write(f"    {visible(frame)}\n")
        if delimiter and row.kernel and row.user:
            out.write("    --\n")
        for frame in reversed(row.user):
            out.write(f"    {visible(frame)}\n")  # symbols of a traced binary: its author's text
        out.write(tail(row))
    out.flush()


def print_folded(folded: Folded) -> None:
    """One ``a;b;c COUNT`` line per stack, the largest first (as libbpf-tools' profile -f)."""
    for frames, count in sorted(folded, key=lambda fc: -fc[1]):
        sys.stdout.write(f"{visible(';'.join(frames))} {count}\n")
    sys.stdout.flush()


def write_svg(path: str, folded: Folded, title: str, unit: str, subtitle: str = "") -> None:
    """The flame graph of ``folded`` into ``path`` (a note on stderr says where)."""
    try:
        with open(path, "w") as f:
            f.write(render_svg(folded, title=title, unit=unit, subtitle=subtitle))
    except OSError as exc:
        fail(f"writing {path}: {exc.strerror}")
    print(f"flame graph: {path} ({folded.total} {unit}, {len(folded)} stacks)", file=sys.stderr)
