"""Plumbing shared by the stack tools (profile, offcputime, wakeuptime).

Owns what the three do alike on top of :mod:`pybpf.tools._common`: the bundled object
loaded with its stack map sized from the command line (``--perf-max-stack-depth``,
``--stack-storage-size``) and its pid/tid filter maps filled before attaching, the
processes that show up while tracing remembered (so that their stacks still resolve if
they exit before the end: bpftrace#1006; the counts are looked at four times a second), the
result printed as libbpf-tools print it (one block per stack, or folded lines), as JSON
lines (``--json``), or drawn as an SVG flame graph (``--svg``), and ``-v``'s libbpf debug lines. What a profile lost is said on stderr, as the C tools say it:
stacks the stack map could not hold, and counts a full counts map could not take.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

import pybpf
from pybpf.logs import logger
from pybpf.flame import Folded, render_svg
from pybpf.flame.stacks import NamedStack
from pybpf.symbolize import Symbolizer
from pybpf.text import visible
from pybpf.tools._common import Stop, emit_json, fail, loaded, out

__all__ = ["libbpf_debug", "lost_warnings", "parse_ids", "print_blocks", "print_folded", "print_json", "stack_object",
           "track_pids", "write_svg"]

EFAULT = 14
EEXIST = 17


def libbpf_debug() -> None:
    """``-v`` as the C tools have it: libbpf's debug lines too, on stderr, as libbpf prints them."""
    log = logger("pybpf.libbpf")
    if not any(getattr(h, "_pybpf_tool", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._pybpf_tool = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)


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
    """The bundled object ``name`` loaded (``_common.loaded``) with its stack map sized as the C
    tools size it (``depth * 8`` bytes a stack, ``storage`` stacks) and its filters filled, then
    attached (a ``perf_event`` program is left for the caller: it needs perf events)."""
    if not 1 <= depth <= 127:
        fail(f"--perf-max-stack-depth must be 1..127, not {depth}")
    if not 1 <= storage <= 1 << 20:
        fail(f"--stack-storage-size must be 1..{1 << 20}, not {storage}")

    def fill(obj: pybpf.Object) -> None:
        for pid in pids:
            obj.maps["pids"][pid] = 1
        for tid in tids:
            obj.maps["tids"][tid] = 1

    # the exporter's map (an LRU hash: preallocated) is of no use to the tool
    exporter_map = {"profile": "stack_samples", "offcputime": "offcpu_ns", "wakeuptime": "blocked_ns"}[name]
    with loaded(name, rodata, before_attach=fill, max_entries={"stackmap": storage, exporter_map: 1},
                value_sizes={"stackmap": depth * 8}) as obj:
        yield obj


def track_pids(stop: Stop, keys_of: Callable[[], np.ndarray], symbolizer: Symbolizer, every: float = 0.25) -> None:
    """Until ``stop``: every ``every`` seconds, snapshot the mappings of processes new in the
    counts (``keys_of()`` gives their pids), so that one that lives a quarter of a second or more
    still resolves at the end (one read of the counts' keys a time; a snapshot once per process)."""
    while not stop.wait(every):
        for pid in np.unique(keys_of()).tolist():
            if pid > 0:
                symbolizer.remember(int(pid))   # taken once (again if the pid exec'd since)


def print_blocks(named: Sequence[NamedStack], *, delimiter: bool = False, tail: Callable[[NamedStack], str],
                 kernel_unknown: str = "[unknown]") -> None:
    """libbpf-tools' multi-line form: kernel frames innermost first, ``--`` (with ``-d``),
    user frames innermost first, then the tool's own ``tail`` lines. ``kernel_unknown`` is what
    the C tool prints for a kernel address without a symbol."""
    lines: list[str] = []
    for row in sorted(named, key=lambda r: -r.value):
        for frame in reversed(row.kernel):
            lines.append(f"    {kernel_unknown if frame == '[unknown]' else visible(frame)}\n")
        if delimiter and row.kernel and row.user:
            lines.append("    --\n")
        for frame in reversed(row.user):
            lines.append(f"    {visible(frame)}\n")  # symbols of a traced binary: its author's text
        lines.append(tail(row))
    out("".join(lines))
    sys.stdout.flush()


def print_folded(folded: Folded) -> None:
    """One ``a;b;c COUNT`` line per stack, the largest first (as libbpf-tools' profile -f)."""
    out("".join(f"{visible(';'.join(frames))} {count}\n" for frames, count in sorted(folded, key=lambda fc: -fc[1])))
    sys.stdout.flush()


def print_json(docs: Sequence[dict[str, Any]]) -> None:
    """One JSON object per stack (``--json``), the largest first; frames innermost first, as the
    block output lists them."""
    for doc in docs:
        emit_json(doc)


def lost_warnings(kernel_ids: np.ndarray | None, user_ids: np.ndarray | None, dropped: int, what: str) -> None:
    """What the profile is missing, on stderr: stack ids the kernel could not store (libbpf-tools'
    profile: ``WARNING: N stack traces could not be displayed.``, with its advice when the map
    was too small: a hash collision, -EEXIST), and counts lost to a full counts map."""
    missing, collision = 0, False
    for ids in (kernel_ids, user_ids):
        if ids is None or not len(ids):
            continue
        ids = ids.astype(np.int64)
        missing += int(np.sum((ids < 0) & (ids != -EFAULT)))
        collision = collision or bool(np.any(ids == -EEXIST))
    if missing:
        print(f"WARNING: {missing} stack traces could not be displayed."
              + (" Consider increasing --stack-storage-size." if collision else ""), file=sys.stderr)
    if dropped:
        print(f"WARNING: {dropped} {what} not counted: the counts map was full.", file=sys.stderr)


def write_svg(path: str, folded: Folded, title: str, unit: str, subtitle: str = "") -> None:
    """The flame graph of ``folded`` into ``path`` (a note on stderr says where)."""
    try:
        with open(path, "w") as f:
            f.write(render_svg(folded, title=title, unit=unit, subtitle=subtitle))
    except OSError as exc:
        fail(f"writing {path}: {exc.strerror}")
    print(f"flame graph: {path} ({folded.total} {unit}, {len(folded)} stacks)", file=sys.stderr)
