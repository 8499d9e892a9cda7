"""What this kernel and this libbpf can do, detected once and cached.

Tests and error messages ask here ("does this kernel attach kprobes?",
"does this process have CAP_BPF?") instead of guessing from versions.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

from pybpf.btf.model import KERNEL_BTF_PATH
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib

__all__ = [
    "CAPABILITIES",
    "Features",
    "capabilities",
    "detect",
    "has_capability",
    "kprobes_available",
    "libbpf_version",
    "prog_type_supported",
    "map_type_supported",
]

# Linux capability numbers (include/uapi/linux/capability.h)
CAPABILITIES = {
    "CAP_NET_ADMIN": 12,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}

KERNEL_BTF = KERNEL_BTF_PATH


def _effective_mask() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def capabilities() -> frozenset[str]:
    """Names of the BPF-relevant capabilities this process holds now (not cached:
    they can change, e.g. in a child that dropped them)."""
    mask = _effective_mask()
    return frozenset(name for name, bit in CAPABILITIES.items() if mask >> bit & 1)


def has_capability(name: str) -> bool:
    """Whether this process has the capability ``name`` (``CAP_BPF``)."""
    return name in capabilities()


def libbpf_version() -> tuple[int, int]:
    """The system libbpf's (major, minor) version."""
    return _libbpf.VERSION


@functools.cache
def prog_type_supported(prog_type: int) -> bool:
    """libbpf's probe: can this kernel load a trivial program of this type?"""
    return lib.libbpf_probe_bpf_prog_type(prog_type, ffi.NULL) == 1


@functools.cache
def map_type_supported(map_type: int) -> bool:
    """Whether this kernel creates maps of type ``map_type``."""
    return lib.libbpf_probe_bpf_map_type(map_type, ffi.NULL) == 1


@functools.cache
def kprobes_available() -> bool:
    """Kprobes need the kprobe PMU or tracefs kprobe_events (CONFIG_KPROBES)."""
    return (os.path.exists("/sys/bus/event_source/devices/kprobe")
            or os.path.exists("/sys/kernel/tracing/kprobe_events")
            or os.path.exists("/sys/kernel/debug/tracing/kprobe_events"))


@dataclass(frozen=True)
class Features:
    """A snapshot of what this machine offers, for reports and skip decisions."""

    kernel: str
    libbpf: str
    kernel_btf: bool
    capabilities: frozenset[str]
    kprobes: bool
    ring_buffer_consume_n: bool
    bpf_prog_get_info_by_fd: bool

    @property
    def privileged(self) -> bool:
        """Enough capabilities to load and attach programs and create maps."""
        return {"CAP_BPF", "CAP_PERFMON"} <= self.capabilities or "CAP_SYS_ADMIN" in self.capabilities


def detect() -> Features:
    """What this kernel and libbpf can do, detected once per process."""
    return Features(
        kernel=platform.release(),
        libbpf=_libbpf.VERSION_STRING,
        kernel_btf=os.path.exists(KERNEL_BTF),
        capabilities=capabilities(),
        kprobes=kprobes_available(),
        ring_buffer_consume_n=_libbpf.has_symbol("ring_buffer__consume_n"),
        bpf_prog_get_info_by_fd=_libbpf.has_symbol("bpf_prog_get_info_by_fd"),
    )
