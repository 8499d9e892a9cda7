"""Links: one attachment of a program to a hook, one file per attach kind.

Each kind file defines ``attach(prog, ...)`` (and its own ``Link`` subclass where the
attachment is not a libbpf ``bpf_link``) and declares itself as ``KIND``, an
:class:`~pybpf.link.base.AttachKind`.  ``KINDS`` below is the registry: a new attach kind is
a new file plus one line here and one verb line in :class:`pybpf.Program`.
"""

from __future__ import annotations

from pybpf.kinds import AttachType, ProgType
from pybpf.link import (
    cgroup,
    iterator,
    kprobe,
    lsm,
    netns,
    perf_event,
    raw_tracepoint,
    sockfilter,
    tc,
    tcx,
    trace,
    tracepoint,
    uprobe,
    uprobe_multi,
    usdt,
    xdp,
)
from pybpf.link.base import AttachKind, Link, section_matches

__all__ = ["KINDS", "AttachKind", "Link", "explicit_usage", "section_types"]

KINDS: tuple[AttachKind, ...] = (
    tracepoint.KIND,
    raw_tracepoint.KIND,
    trace.KIND,
    lsm.KIND,
    kprobe.KIND,
    uprobe_multi.KIND,
    uprobe.KIND,
    usdt.KIND,
    iterator.KIND,
    xdp.KIND,
    tcx.KIND,
    tc.KIND,
    cgroup.KIND,
    sockfilter.KIND,
    perf_event.KIND,
    netns.KIND,
)


def explicit_usage(prog_type: ProgType, section: str) -> str | None:
    """The explicit attach call a program needs, or None when its ``SEC()`` is enough."""
    for kind in KINDS:
        if kind.needs_verb(prog_type, section):
            return kind.usage
    return None


def section_types(section: str) -> tuple[ProgType, AttachType] | None:
    """The program type and expected attach type of a ``SEC()`` name newer than libbpf 1.1
    (``uprobe.multi/...``, ``tcx/ingress``), or None when no attach kind declares it."""
    for kind in KINDS:
        for prefix, prog_type, attach_type in kind.sections:
            if section_matches(prefix, section):
                return prog_type, attach_type
    return None
