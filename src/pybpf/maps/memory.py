"""How much kernel memory a map will take, and the check ``Object.load()`` makes with it.

The kernel allocates a preallocated map whole when it is created: a mutated
object asking for 1,962,934,276 hash entries made this machine's kernel
allocate until the global OOM killer fired. So before ``bpf_object__load``
pybpf adds up what the object's maps would need and refuses, with
:class:`pybpf.errors.MapMemoryError`, a load that needs more than the
machine's ``MemAvailable``. The estimate follows the kernel's allocators
closely enough for that (element = key and value rounded to 8 bytes plus
the element header; per-CPU values once per possible CPU; maps created with
``BPF_F_NO_PREALLOC`` and the kinds that allocate per element count only
their fixed part). Override: ``obj.load(allow_large_maps=True)`` or
``PYBPF_ALLOW_LARGE_MAPS=1``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from pybpf.errors import MapMemoryError

__all__ = ["MapMemory", "estimate_map_bytes", "check_map_memory", "mem_available"]

_F_NO_PREALLOC = 1 << 0
_F_MMAPABLE = 1 << 10
_PAGE = 4096
_HTAB_ELEM = 48      # struct htab_elem header (hash node, hash, lru node): ~48 bytes on x86-64
_BUCKET = 16         # struct bucket
_PERCPU_PTR = 8


@dataclass(frozen=True, slots=True)
class MapMemory:
    """What the estimate needs to know of one map."""

    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    n_cpus: int  # possible CPUs (used by per-CPU kinds)
    created: bool = True  # False: an existing map is reused, nothing is allocated


def _round8(n: int) -> int:
    return (n + 7) & ~7


def estimate_map_bytes(m: MapMemory) -> int:
    """Bytes the kernel allocates when it creates ``m`` (an estimate, from below)."""
    if not m.created:
        return 0
    n, key, value = max(m.max_entries, 0), _round8(m.key_size), _round8(m.value_size)
    t = m.type
    if t in ("array", "prog_array", "perf_event_array", "cgroup_array", "array_of_maps"):
        size = n * value
        return (size + _PAGE - 1) // _PAGE * _PAGE if m.flags & _F_MMAPABLE else size
    if t == "percpu_array":
        return n * (_PERCPU_PTR + value * m.n_cpus)
    if t in ("hash", "lru_hash", "hash_of_maps", "percpu_hash", "lru_percpu_hash", "sockhash", "devmap_hash"):
        buckets = _BUCKET * (1 << max(n - 1, 0).bit_length())
        if m.flags & _F_NO_PREALLOC and not t.startswith("lru"):
            return buckets
        if t.endswith("percpu_hash"):
            return buckets + n * (_HTAB_ELEM + key + _PERCPU_PTR + value * m.n_cpus)
        return buckets + n * (_HTAB_ELEM + key + value)
    if t in ("queue", "stack"):
        return (n + 1) * value
    if t in ("ringbuf", "user_ringbuf"):
        return n  # max_entries is the data size in bytes
    if t == "bloom_filter":
        return n * max(value, 1)  # a few bits per hash function per entry: bounded by this
    if t in ("devmap", "cpumap", "xskmap", "sockmap", "reuseport_sockarray"):
        return n * 8
    return 0  # per-element allocation (lpm_trie, storage maps, struct_ops...)


def mem_available() -> int | None:
    """The kernel's MemAvailable in bytes (None if /proc/meminfo says nothing)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_map_memory(obj_name: str, maps: list[MapMemory], available: int | None = None) -> int:
    """The estimated total; MapMemoryError if it exceeds ``available`` (MemAvailable)."""
    sizes = [(estimate_map_bytes(m), m) for m in maps]
    total = sum(size for size, _m in sizes)
    if available is None:
        available = mem_available()
    if available is not None and total > available:
        worst = sorted(sizes, key=lambda x: -x[0])[:3]
        detail = ", ".join(f"{m.name} ({m.type}, max_entries {m.max_entries}: ~{_human(size)})"
                           for size, m in worst if size)
        raise MapMemoryError(
            f"loading object {obj_name}: its maps would need ~{_human(total)} of kernel memory, more "
            f"than this machine has available ({_human(available)}): {detail}. Lower max_entries, or "
            f"pass load(allow_large_maps=True) / set PYBPF_ALLOW_LARGE_MAPS=1 to try anyway",
            errno.ENOMEM, needed=total, available=available)
    return total


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
