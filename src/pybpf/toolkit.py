"""What a tool author writes by hand around a BPF program: decoding, printing, filtering.

Owns the small user-space helpers that every tracing tool needs and that have
nothing to do with loading BPF: C strings out of ``char[]`` fields (ring buffer
records are not zeroed, so the bytes after the first NUL are garbage), the
log2 histogram print of libbpf-tools (``print_log2_hist``), log2/linear bucket
bounds, monotonic <-> wall clock conversion, comm/pid filters, and the value
decoders shared with :mod:`pybpf.metrics` (syscall number, kernel symbol,
IPv4/IPv6 address, cgroup id, errno, TCP state).

Everything here is plain Python over numpy values: no libbpf, no syscalls
beyond reading ``/proc`` and ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import bisect
import errno as _errno
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

import numpy as np

from pybpf.kernel.syscalls import syscall_name

__all__ = [
    "TCP_STATES",
    "CgroupPaths",
    "Kallsyms",
    "cgroup_path",
    "comm_matches",
    "cstr",
    "cstr_list",
    "errno_name",
    "ip_address",
    "ksym",
    "linear_bounds",
    "log2_bounds",
    "log2_buckets",
    "log2_hist_lines",
    "monotonic_to_wall",
    "print_log2_hist",
    "strftime_hms",
    "syscall_name",
    "tcp_state",
]


# ---- strings -----------------------------------------------------------------------------

def cstr(value: Any, encoding: str = "utf-8") -> str:
    """A C string out of a ``char[N]`` value: the bytes up to the first NUL, decoded.

    Accepts bytes, ``numpy.bytes_`` (what a BTF ``char[N]`` field reads as), a
    numpy int8/uint8 array, or a memoryview. Undecodable bytes become U+FFFD.
    """
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    raw = bytes(value)
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    return raw.decode(encoding, "replace")


def cstr_list(raw: Any, count: int | None = None) -> list[str]:
    """NUL-separated C strings (an exec's ``args`` buffer) as a list, at most ``count``."""
    data = bytes(raw.tobytes() if isinstance(raw, np.ndarray) else raw)
    parts = data.split(b"\0")
    if count is not None:
        parts = parts[:count]
    return [p.decode("utf-8", "replace") for p in parts]


# ---- histograms --------------------------------------------------------------------------

def log2_bounds(n_slots: int) -> list[tuple[int, int]]:
    """``(low, high)`` of each slot of a libbpf-tools log2 histogram (both inclusive).

    Slot ``i`` holds integer values ``v`` with ``floor(log2(v)) == i`` (0 and 1
    both land in slot 0): ``[2**i, 2**(i+1) - 1]``, printed as libbpf-tools does
    (``0 -> 1``, ``2 -> 3``, ``4 -> 7`` ...).
    """
    out = []
    for i in range(n_slots):
        low = (1 << (i + 1)) >> 1
        high = (1 << (i + 1)) - 1
        if low == high:
            low -= 1
        out.append((low, high))
    return out


def log2_buckets(counts: Sequence[int] | np.ndarray) -> list[dict[str, int]]:
    """The slots of a log2 histogram as JSON-able buckets: ``{"low", "high", "count"}`` each
    (bounds as :func:`log2_bounds`), every slot included."""
    vals = [int(v) for v in counts]
    return [{"low": low, "high": high, "count": val} for (low, high), val in zip(log2_bounds(len(vals)), vals)]


def linear_bounds(n_slots: int, step: int, start: int = 0) -> list[tuple[int, int]]:
    """``(low, high)`` of each slot of a linear histogram: slot ``i`` is ``[start+i*step, start+(i+1)*step-1]``."""
    return [(start + i * step, start + (i + 1) * step - 1) for i in range(n_slots)]


def _stars(val: int, val_max: int, width: int) -> str:
    n = min(val, val_max) * width // val_max if val_max else 0
    return "*" * n + " " * (width - n) + ("+" if val > val_max else "")


def log2_hist_lines(counts: Sequence[int] | np.ndarray, val_type: str) -> list[str]:
    """The lines libbpf-tools' ``print_log2_hist`` prints for these slot counts (none if all zero)."""
    vals = [int(v) for v in counts]
    idx_max = max((i for i, v in enumerate(vals) if v > 0), default=-1)
    if idx_max < 0:
        return []
    val_max = max(vals)
    narrow = idx_max <= 32
    stars = 40 if narrow else 20
    width = 10 if narrow else 20
    lines = [f"{'':{5 if narrow else 15}}{val_type:<{19 if narrow else 29}} : count    distribution"]
    for (low, high), val in zip(log2_bounds(idx_max + 1), vals):
        lines.append(f"{low:>{width}} -> {high:<{width}} : {val:<8} |{_stars(val, val_max, stars)}|")
    return lines


def print_log2_hist(counts: Sequence[int] | np.ndarray, val_type: str, file: IO[str] | None = None) -> None:
    """Print a log2 histogram exactly as libbpf-tools' ``print_log2_hist`` does."""
    out = file or sys.stdout
    for line in log2_hist_lines(counts, val_type):
        print(line, file=out)


# ---- time --------------------------------------------------------------------------------

def monotonic_to_wall(ns: int | np.integer) -> float:
    """A ``bpf_ktime_get_ns()`` timestamp (CLOCK_MONOTONIC) as Unix time in seconds."""
    return time.time() - (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - int(ns)) / 1e9


def strftime_hms(when: float | None = None) -> str:
    """``HH:MM:SS`` local time, the ``-T`` column of libbpf-tools."""
    return time.strftime("%H:%M:%S", time.localtime(when))


# ---- filters -----------------------------------------------------------------------------

def comm_matches(comm: str, names: Iterable[str] | str | None, *, substring: bool = True) -> bool:
    """Whether ``comm`` passes a ``-n NAME`` filter (substring, as libbpf-tools; None passes all)."""
    if names is None:
        return True
    if isinstance(names, str):
        names = [names]
    return any((n in comm) if substring else (n == comm) for n in names)


# ---- decoders (shared with pybpf.metrics) -----------------------------------------------

def errno_name(value: int) -> str:
    """``2`` or ``-2`` -> ``"ENOENT"``; ``0`` -> ``"OK"``; unknown numbers as decimal text."""
    v = abs(int(value))
    if v == 0:
        return "OK"
    return _errno.errorcode.get(v, str(v))


def ip_address(raw: Any, family: int | None = None) -> str:
    """An IPv4 or IPv6 address as text from 4 or 16 bytes in network order (or a u32).

    With a 16-byte buffer and ``family == AF_INET`` (2) only the first 4 bytes count,
    the way tracepoints such as ``inet_sock_set_state`` store v4 addresses.
    """
    import ipaddress  # the network tools' only: not on every tool's start (imported once)

    if isinstance(raw, (bytes, bytearray, memoryview)):  # bytes first: a plain record touches no numpy
        data = bytes(raw)
    elif isinstance(raw, (int, np.integer)):
        return str(ipaddress.IPv4Address(int(raw).to_bytes(4, "little")))
    else:
        data = bytes(raw.tobytes() if isinstance(raw, np.ndarray) else raw)
    if family == 2 or len(data) == 4:
        return str(ipaddress.IPv4Address(data[:4]))
    return str(ipaddress.IPv6Address(data[:16]))


TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "NEW_SYN_RECV", 13: "BOUND_INACTIVE",
}


def tcp_state(value: int) -> str:
    """Kernel TCP state number -> name (``include/net/tcp_states.h``)."""
    return TCP_STATES.get(int(value), f"UNKNOWN({int(value)})")


class Kallsyms:
    """Kernel address -> symbol from ``/proc/kallsyms`` (read once; root sees real addresses)."""

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        addrs: list[int] = []
        names: list[str] = []
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] in ("a", "A", "U"):
                    continue
                addr = int(parts[0], 16)
                if addr == 0:
                    continue
                addrs.append(addr)
                names.append(parts[2])
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self._addrs = [addrs[i] for i in order]
        self._names = [names[i] for i in order]

    def __len__(self) -> int:
        return len(self._addrs)

    def lookup(self, addr: int, *, offset: bool = False) -> str:
        """The symbol containing ``addr`` (``name+0x10`` with ``offset=True``); hex if none."""
        addr = int(addr)
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return f"0x{addr:x}"
        name = self._names[i]
        return f"{name}+0x{addr - self._addrs[i]:x}" if offset else name

    def address(self, name: str) -> int | None:
        """The address of a symbol by exact name, or None."""
        try:
            return self._addrs[self._names.index(name)]
        except ValueError:
            return None


_KALLSYMS: Kallsyms | None = None


def ksym(addr: int) -> str:
    """Kernel address -> symbol name, from one shared ``/proc/kallsyms`` table."""
    global _KALLSYMS
    if _KALLSYMS is None:
        _KALLSYMS = Kallsyms()
    return _KALLSYMS.lookup(addr)


class CgroupPaths:
    """cgroup v2 id (``bpf_get_current_cgroup_id()``, the directory's inode) -> path.

    Walks the cgroup2 mount once, and again when an id is not found (cgroups come and go).
    """

    def __init__(self, root: str | None = None) -> None:
        self.root = root or _cgroup2_root()
        self._paths: dict[int, str] = {}
        self._scan()

    def _scan(self) -> None:
        paths: dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(self.root):
            try:
                paths[os.stat(dirpath).st_ino] = "/" + os.path.relpath(dirpath, self.root).removeprefix(".")
            except OSError:
                continue
        self._paths = paths

    def lookup(self, cgroup_id: int) -> str:
        """The path relative to the cgroup2 root (``/`` for the root), or the id as text."""
        cid = int(cgroup_id)
        if cid not in self._paths:
            self._scan()
        return self._paths.get(cid, str(cid))


def _cgroup2_root() -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return "/sys/fs/cgroup"


_CGROUPS: CgroupPaths | None = None


def cgroup_path(cgroup_id: int) -> str:
    """cgroup v2 id -> path, from one shared :class:`CgroupPaths`."""
    global _CGROUPS
    if _CGROUPS is None:
        _CGROUPS = CgroupPaths()
    return _CGROUPS.lookup(cgroup_id)
