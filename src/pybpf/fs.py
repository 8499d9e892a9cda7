"""The pseudo file systems BPF depends on: tracefs, bpffs and cgroup v2.

libbpf attaches tracepoints through tracefs and pins objects on bpffs; on
machines where neither is mounted by default, pybpf mounts them on demand
(as root) rather than failing with a bare ENOENT.
"""

from __future__ import annotations

import errno
import os

from . import _libbpf
from .errors import BpfError

__all__ = ["TRACEFS", "BPFFS_MAGIC", "ensure_tracefs", "ensure_bpffs", "is_bpffs", "cgroup2_root",
           "mount", "umount"]

TRACEFS = "/sys/kernel/tracing"
BPFFS_MAGIC = 0xCAFE4A11

def _fs_magic(path: str) -> int | None:
    return _libbpf.fs_magic(path)


mount = _libbpf.mount
umount = _libbpf.umount


def ensure_tracefs() -> str:
    """Make sure tracefs is mounted where libbpf looks for it; returns its path."""
    for path in (TRACEFS, "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(path, "events")):
            return path
    mount("tracefs", TRACEFS, "tracefs")
    return TRACEFS


def is_bpffs(path: str) -> bool:
    return _fs_magic(path) == BPFFS_MAGIC


def ensure_bpffs(path: str = "/sys/fs/bpf") -> str:
    """Mount a bpffs at ``path`` (created if needed) unless one is already there."""
    os.makedirs(path, exist_ok=True)
    if not is_bpffs(path):
        mount("bpf", path, "bpf")
    return path


def cgroup2_root() -> str:
    """Where the cgroup v2 hierarchy is mounted."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    raise BpfError("no cgroup v2 hierarchy is mounted", errno.ENOENT)
