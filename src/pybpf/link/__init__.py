"""Links: one attachment of a program to a hook, one file per attach kind.

Each kind file defines ``attach(prog, ...)`` (and its own ``Link`` subclass where the
attachment is not a libbpf ``bpf_link``). ``KINDS`` below is the registry: every kind
declared as data, an :class:`~pybpf.link.base.AttachKind` (its ``Program`` verb, when a
``SEC()`` alone does not say where to attach, the ``SEC()`` names newer than libbpf 1.1, the
file that attaches it), and what pybpf itself reads from a ``SEC()`` name (iterators, USDT,
``uprobe.multi``). Opening an object and attaching it by its ``SEC()`` names therefore
imports no kind file: a kind's file is imported by the first call of its verb
(``Program.attach_kprobe``), so a tool pays for the kinds it uses (``link/symbols.py`` alone
brings ``subprocess``, ``sockfilter.py`` brings ``socket``). Each kind file still says
``KIND = declared("<file>")``. A new attach kind is a new file, one declaration here and one
verb line in :class:`pybpf.Program`.
"""

from __future__ import annotations

import errno
import importlib
from types import ModuleType

from pybpf.errors import BpfError
from pybpf.kinds import AttachType, ProgType
from pybpf.link.base import AttachKind, Link, section_matches

__all__ = ["KINDS", "AttachKind", "Link", "declared", "explicit_usage", "is_iterator_section", "kind_module",
           "parse_uprobe_multi_section", "parse_usdt_section", "section_types"]

UPROBE_MULTI_SECTIONS = ("uprobe.multi", "uretprobe.multi")


def _binary_and_function(target: str) -> bool:
    # libbpf auto-attaches only SEC("uprobe/BINARY:FUNCTION[+OFFSET]"): "uprobe/readline" names no binary
    binary, colon, function = target.partition(":")
    return bool(binary and colon and function)


def _usdt_target(target: str) -> bool:
    return target.count(":") >= 2 and all(target.rsplit(":", 2))


def _never(target: str) -> bool:
    return False  # "tcx/ingress" names a direction, never the interface


# In the order explicit_usage() asks them.
KINDS: tuple[AttachKind, ...] = (
    AttachKind("attach_tracepoint", "attach_tracepoint(category, name)", module="tracepoint",
               bare_sections=frozenset({"tracepoint", "tp"})),
    AttachKind("attach_raw_tracepoint", "attach_raw_tracepoint(name)", module="raw_tracepoint",
               bare_sections=frozenset({"raw_tracepoint", "raw_tp"})),
    AttachKind("attach_trace", "attach_trace()", module="trace"),
    AttachKind("attach_lsm", "attach_lsm()", module="lsm"),
    AttachKind("attach_kprobe", "attach_kprobe(function)", module="kprobe",
               bare_sections=frozenset({"kprobe", "kretprobe"})),
    AttachKind("attach_uprobe_multi", "attach_uprobe_multi(binary, pattern_or_functions[, retprobe=True])",
               module="uprobe_multi", bare_sections=frozenset(UPROBE_MULTI_SECTIONS),
               names_target=_binary_and_function,
               sections=(("uprobe.multi", ProgType.KPROBE, AttachType.TRACE_UPROBE_MULTI),
                         ("uretprobe.multi", ProgType.KPROBE, AttachType.TRACE_UPROBE_MULTI))),
    AttachKind("attach_uprobe", "attach_uprobe(binary, function[, retprobe=True])", module="uprobe",
               bare_sections=frozenset({"uprobe", "uretprobe"}), names_target=_binary_and_function),
    AttachKind("attach_usdt", "attach_usdt(binary_or_pid, provider, name)", module="usdt",
               bare_sections=frozenset({"usdt"}), names_target=_usdt_target),
    AttachKind("attach_iter", "attach_iter()", module="iterator"),
    AttachKind("attach_xdp", "attach_xdp(interface)", module="xdp", prog_types=frozenset({ProgType.XDP})),
    AttachKind("attach_tcx", "attach_tcx(interface, 'ingress'|'egress')", module="tcx",
               bare_sections=frozenset({"tcx"}), names_target=_never,
               sections=(("tcx/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS),
                         ("tcx/egress", ProgType.SCHED_CLS, AttachType.TCX_EGRESS),
                         ("tc/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS),
                         ("tc/egress", ProgType.SCHED_CLS, AttachType.TCX_EGRESS))),
    AttachKind("attach_tc", "attach_tc(interface, 'ingress'|'egress')", module="tc",
               prog_types=frozenset({ProgType.SCHED_CLS})),
    AttachKind("attach_cgroup", "attach_cgroup(path)", module="cgroup",
               prog_types=frozenset(t for t in ProgType if t.cgroup)),
    AttachKind("attach_socket", "attach_socket(sock)", module="sockfilter",
               prog_types=frozenset({ProgType.SOCKET_FILTER})),
    AttachKind("attach_perf_event", "attach_perf_event(perf_fd)", module="perf_event",
               prog_types=frozenset({ProgType.PERF_EVENT})),
    AttachKind("attach_netns", "attach_netns(netns_path_or_fd)", module="netns",
               prog_types=frozenset({ProgType.SK_LOOKUP, ProgType.FLOW_DISSECTOR})),
)
_BY_MODULE = {kind.module: kind for kind in KINDS}


def declared(module: str) -> AttachKind:
    """The declaration of the kind ``pybpf.link.<module>`` attaches (that file's ``KIND``)."""
    return _BY_MODULE[module]


def kind_module(module: str) -> ModuleType:
    """The file of a declared kind (``"kprobe"`` -> ``pybpf.link.kprobe``), imported on first use."""
    return importlib.import_module(f"pybpf.link.{declared(module).module}")


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


# What pybpf's own attach() reads from a SEC() name (libbpf 1.1 does not auto-attach these).

def is_iterator_section(prog_type: ProgType, section: str) -> bool:
    """Whether a program is an iterator (``SEC("iter/...")``), which ``attach()`` attaches itself."""
    return prog_type is ProgType.TRACING and section.startswith("iter")


def parse_usdt_section(section: str) -> tuple[str, str, str] | None:
    """``SEC("usdt/BINARY:PROVIDER:NAME")`` -> (binary, provider, name); None if bare."""
    prefix, _, target = section.partition("/")
    if prefix != "usdt" or not target:
        return None
    parts = target.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise BpfError(f"SEC({section!r}): a USDT section is usdt/BINARY:PROVIDER:NAME", errno.EINVAL)
    return parts[0], parts[1], parts[2]


def parse_uprobe_multi_section(section: str) -> tuple[str, str, bool] | None:
    """(binary, pattern, retprobe) of ``SEC("uprobe.multi/BINARY:PATTERN")``, else None."""
    prefix, slash, target = section.partition("/")
    if prefix not in UPROBE_MULTI_SECTIONS or not slash:
        return None
    binary, colon, pattern = target.partition(":")
    if not (binary and colon and pattern):
        return None
    return binary, pattern, prefix.startswith("uretprobe")
