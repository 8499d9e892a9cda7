"""Kinds as data: BPF map types, map flags, program types, attach types and link types.

Each kind is an ``IntEnum``/``IntFlag`` member whose value is the kernel's number (uapi
``linux/bpf.h``), and whose traits answer the questions the rest of pybpf asks ("does this
map have one value per CPU?", "can this program type be test-run with ``repeat``?").  These
are the only tables of such facts: adding a map type is one member here, plus a trait line
when it behaves like no existing group.

Names are libbpf's lower-case names (``MapType.PERCPU_ARRAY.c_name == "percpu_array"``), as
``libbpf_bpf_map_type_str`` and ``bpftool`` print them.  Pure: no libbpf, no kernel.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TypeVar

__all__ = ["AttachType", "LinkType", "MapFlag", "MapType", "ObjectState", "ProgType", "UpdateFlag"]


_E = TypeVar("_E", bound="_Named")


class _Named(enum.IntEnum):
    """An IntEnum whose members parse from libbpf names, ``BPF_*`` constants or numbers."""

    @property
    def c_name(self) -> str:
        """libbpf's lower-case name (``hash``, ``sched_cls``)."""
        return self.name.lower()

    @classmethod
    def _prefix(cls) -> str:
        raise NotImplementedError

    @classmethod
    def _label(cls) -> str:
        """How messages name the kind ("map type"): the class name split into words."""
        words = "".join(" " + c.lower() if c.isupper() else c for c in cls.__name__).split()
        return " ".join("program" if w == "prog" else w for w in words)

    @classmethod
    def parse(cls: type[_E], value: str | int) -> _E:
        """A member from a number, a libbpf name (``"percpu_hash"``) or a uapi constant name
        (``"BPF_MAP_TYPE_PERCPU_HASH"``); ``ValueError`` listing the known names otherwise."""
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(f"unknown {cls._label()} number {value}") from None
        key = value.upper().removeprefix(cls._prefix())
        try:
            return cls[key]
        except KeyError:
            known = ", ".join(m.c_name for m in cls)
            raise ValueError(f"unknown {cls._label()} {value!r}; known: {known}") from None

    @classmethod
    def of(cls: type[_E], number: int, default: _E) -> _E:
        """The member for a kernel number, or ``default`` for one newer than this table."""
        try:
            return cls(number)
        except ValueError:
            return default

    @classmethod
    def name_of(cls, number: int) -> str:
        """libbpf's name for a number, or ``unknown(N)`` for one newer than this table."""
        try:
            return cls(number).c_name
        except ValueError:
            return f"unknown({number})"


class MapType(_Named):
    """``enum bpf_map_type``."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33

    @classmethod
    def _prefix(cls) -> str:
        return "BPF_MAP_TYPE_"

    @property
    def per_cpu(self) -> bool:
        """One value slot per possible CPU in every lookup and update."""
        return self in _PER_CPU

    @property
    def array_like(self) -> bool:
        """Keys are the indices 0..max_entries-1; every index exists and none can be deleted."""
        return self in _ARRAY_LIKE

    @property
    def hash_like(self) -> bool:
        """Keys come and go; iteration order is the kernel's."""
        return self in _HASH_LIKE

    @property
    def keyless(self) -> bool:
        """No keys at all: push/pop/peek (queue, stack) or add/test (bloom filter)."""
        return self in _KEYLESS

    @property
    def map_in_map(self) -> bool:
        """Values are map fds going in and map ids coming out."""
        return self in _MAP_IN_MAP

    @property
    def stream(self) -> bool:
        """Read through an event reader (ring buffer, perf buffer), not by key."""
        return self in _STREAM

    @property
    def sized_in_bytes(self) -> bool:
        """``max_entries`` is a byte size of the ring, not an element count."""
        return self in (MapType.RINGBUF, MapType.USER_RINGBUF)

    @property
    def storage(self) -> bool:
        """Local storage owned by another kernel object (task, inode, socket, cgroup)."""
        return self in _STORAGE


_PER_CPU = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
                      MapType.PERCPU_CGROUP_STORAGE})
_ARRAY_LIKE = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
                         MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS})
_HASH_LIKE = frozenset({MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH,
                        MapType.HASH_OF_MAPS})
_KEYLESS = frozenset({MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER})
_MAP_IN_MAP = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
_STREAM = frozenset({MapType.RINGBUF, MapType.USER_RINGBUF, MapType.PERF_EVENT_ARRAY})
_STORAGE = frozenset({MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE, MapType.CGRP_STORAGE,
                      MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE})


class MapFlag(enum.IntFlag):
    """``BPF_F_*`` flags of map creation (``map_flags``)."""

    NO_PREALLOC = 1 << 0
    NO_COMMON_LRU = 1 << 1
    NUMA_NODE = 1 << 2
    RDONLY = 1 << 3
    WRONLY = 1 << 4
    STACK_BUILD_ID = 1 << 5
    ZERO_SEED = 1 << 6
    RDONLY_PROG = 1 << 7
    WRONLY_PROG = 1 << 8
    CLONE = 1 << 9
    MMAPABLE = 1 << 10
    PRESERVE_ELEMS = 1 << 11
    INNER_MAP = 1 << 12
    LINK = 1 << 13
    PATH_FD = 1 << 14
    VTYPE_BTF_OBJ_FD = 1 << 15
    TOKEN_FD = 1 << 16
    SEGV_ON_FAULT = 1 << 17
    NO_USER_CONV = 1 << 18

    @classmethod
    def parse(cls, flags: int | str | Iterable[str]) -> int:
        """``flags=`` as an int, a name (``"mmapable"``, ``"BPF_F_MMAPABLE"``) or several names."""
        if isinstance(flags, int):
            return flags
        names = [flags] if isinstance(flags, str) else list(flags)
        value = 0
        for name in names:
            key = name.upper().removeprefix("BPF_F_")
            try:
                value |= cls[key]
            except KeyError:
                known = ", ".join(m.name.lower() for m in cls if m.name)
                raise ValueError(f"unknown map flag {name!r}; known: {known}") from None
        return value

    @classmethod
    def names(cls, flags: int) -> list[str]:
        """The upper-case names of the bits set, plus the hex of bits newer than this table."""
        names = [m.name for m in cls if m.name and flags & m.value]
        unknown = flags & ~sum(m.value for m in cls)
        if unknown:
            names.append(hex(unknown))
        return names


class UpdateFlag(_Named):
    """The flags of an element update (``BPF_ANY``, ``BPF_NOEXIST``, ``BPF_EXIST``; ``BPF_F_LOCK``)."""

    ANY = 0
    NOEXIST = 1
    EXIST = 2
    F_LOCK = 4

    @classmethod
    def _prefix(cls) -> str:
        return "BPF_"


class ProgType(_Named):
    """``enum bpf_prog_type``."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32

    @classmethod
    def _prefix(cls) -> str:
        return "BPF_PROG_TYPE_"

    @property
    def networking(self) -> bool:
        """Attaching it needs CAP_NET_ADMIN (the others need CAP_PERFMON)."""
        return self in _NETWORKING

    @property
    def cgroup(self) -> bool:
        """Attached to a cgroup v2 directory."""
        return self in _CGROUP

    @property
    def test_run_without_repeat(self) -> bool:
        """BPF_PROG_TEST_RUN takes only ``ctx_in``: ``repeat`` must be 0, no data, no ``ctx_out``."""
        return self in _NO_REPEAT

    @property
    def test_runnable(self) -> bool:
        """The kernel has a BPF_PROG_TEST_RUN for this type (6.x; others get ENOTSUPP)."""
        return self in _TEST_RUNNABLE

    @property
    def btf_attached(self) -> bool:
        """Attached to a kernel function or hook found through BTF at load time."""
        return self in (ProgType.TRACING, ProgType.LSM, ProgType.EXT)


_NETWORKING = frozenset({ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.CGROUP_SKB,
                         ProgType.SOCKET_FILTER, ProgType.SK_SKB, ProgType.SK_MSG, ProgType.FLOW_DISSECTOR,
                         ProgType.LWT_IN, ProgType.LWT_OUT, ProgType.LWT_XMIT, ProgType.SK_LOOKUP,
                         ProgType.NETFILTER})
_CGROUP = frozenset({ProgType.CGROUP_SKB, ProgType.CGROUP_SOCK, ProgType.CGROUP_SOCK_ADDR,
                     ProgType.CGROUP_SYSCTL, ProgType.CGROUP_DEVICE, ProgType.CGROUP_SOCKOPT})
_NO_REPEAT = frozenset({ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE, ProgType.TRACING,
                        ProgType.SYSCALL})
_TEST_RUNNABLE = frozenset({ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.XDP,
                            ProgType.CGROUP_SKB, ProgType.LWT_IN, ProgType.LWT_OUT, ProgType.LWT_XMIT,
                            ProgType.LWT_SEG6LOCAL, ProgType.FLOW_DISSECTOR, ProgType.SK_LOOKUP,
                            ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE, ProgType.TRACING,
                            ProgType.SYSCALL, ProgType.NETFILTER, ProgType.STRUCT_OPS})


class AttachType(_Named):
    """``enum bpf_attach_type`` (a program's expected attach type)."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48

    @classmethod
    def _prefix(cls) -> str:
        return "BPF_"


class LinkType(_Named):
    """``enum bpf_link_type`` (what ``BPF_OBJ_GET_INFO_BY_FD`` says a link is)."""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14

    @classmethod
    def _prefix(cls) -> str:
        return "BPF_LINK_TYPE_"


class ObjectState(str, enum.Enum):
    """Where an ``Object`` is in its life: open -> (edit) -> loaded (or failed) -> closed.

    A ``str`` enum, so ``obj.state == "loaded"`` keeps working for callers."""

    OPEN = "open"
    LOADED = "loaded"
    FAILED = "failed"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value
