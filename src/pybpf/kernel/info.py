"""What the kernel says about loaded programs, maps and BTF objects.

``prog_info``/``map_info`` read ``BPF_OBJ_GET_INFO_BY_FD``; ``program_ids``/
``map_ids`` walk every id the kernel holds (like ``bpftool prog/map list``);
``enable_stats`` keeps ``BPF_STATS_RUN_TIME`` on while its handle is open.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pybpf._sys.resource import Resource
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, ClosedError
from pybpf.kinds import LinkType, MapFlag, MapType, ProgType

__all__ = ["ProgramInfo", "MapInfo", "LinkInfo", "link_info", "StatsHandle", "prog_info", "map_info", "enable_stats",
           "program_ids", "map_ids", "btf_ids", "open_prog_by_id", "open_map_by_id", "open_pinned",
           "map_flag_names"]

def map_flag_names(flags: int) -> list[str]:
    """The ``BPF_F_*`` names of a map's flags (see :class:`pybpf.kinds.MapFlag`)."""
    return MapFlag.names(flags)


def _boot_time_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class ProgramInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says of a loaded program."""
    id: int
    type: str
    name: str
    tag: str
    loaded_at: float            # seconds since the epoch
    uid: int
    run_cnt: int
    run_time_ns: int
    recursion_misses: int
    xlated_len: int
    jited_len: int
    verified_insns: int
    btf_id: int
    gpl_compatible: bool
    map_ids: tuple[int, ...] = field(default=())
    memlock: int = 0            # bytes charged, from /proc/self/fdinfo
    attach_btf_obj_id: int = 0  # fentry/fexit/tp_btf/freplace: id of the BTF object of the target (vmlinux or a module)
    attach_btf_id: int = 0      # ... and the target's type id in it


@dataclass(frozen=True)
class MapInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says of a map."""
    id: int
    type: str
    type_id: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    map_extra: int
    memlock: int = 0            # bytes charged, from /proc/self/fdinfo

    @property
    def flag_names(self) -> list[str]:
        """The ``BPF_F_*`` names of the map's flags."""
        return map_flag_names(self.flags)


def _memlock(fd: int) -> int:
    """The kernel's memlock charge for a BPF fd (its fdinfo has no other source)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fdinfo:
            for line in fdinfo:
                if line.startswith("memlock:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def prog_info(fd: int) -> ProgramInfo:
    """The kernel's facts about the program behind ``fd``."""
    info = ffi.new("struct bpf_prog_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
    _libbpf.check(lib.bpf_obj_get_info_by_fd(fd, info, size), "BPF_OBJ_GET_INFO_BY_FD (program)")
    map_ids: tuple[int, ...] = ()
    if info.nr_map_ids:
        ids = ffi.new("__u32[]", info.nr_map_ids)
        second = ffi.new("struct bpf_prog_info *")
        second.nr_map_ids = info.nr_map_ids
        second.map_ids = int(ffi.cast("uintptr_t", ids))
        size[0] = ffi.sizeof("struct bpf_prog_info")
        if lib.bpf_obj_get_info_by_fd(fd, second, size) == 0:
            map_ids = tuple(ids[i] for i in range(min(second.nr_map_ids, info.nr_map_ids)))
    return ProgramInfo(
        id=info.id, type=ProgType.name_of(info.type), name=ffi.string(info.name).decode(),
        tag=bytes(info.tag).hex(), loaded_at=(_boot_time_ns() + info.load_time) / 1e9,
        uid=info.created_by_uid, run_cnt=info.run_cnt, run_time_ns=info.run_time_ns,
        recursion_misses=info.recursion_misses, xlated_len=info.xlated_prog_len,
        jited_len=info.jited_prog_len, verified_insns=info.verified_insns, btf_id=info.btf_id,
        gpl_compatible=bool(info.gpl_compatible_bits & 1), map_ids=map_ids, memlock=_memlock(fd),
        attach_btf_obj_id=info.attach_btf_obj_id, attach_btf_id=info.attach_btf_id)


def map_info(fd: int) -> MapInfo:
    """The kernel's facts about the map behind ``fd``."""
    info = ffi.new("struct bpf_map_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
    _libbpf.check(lib.bpf_obj_get_info_by_fd(fd, info, size), "BPF_OBJ_GET_INFO_BY_FD (map)")
    return MapInfo(
        id=info.id, type=MapType.name_of(info.type), type_id=info.type,
        name=ffi.string(info.name).decode(), key_size=info.key_size, value_size=info.value_size,
        max_entries=info.max_entries, flags=info.map_flags, btf_id=info.btf_id,
        btf_key_type_id=info.btf_key_type_id, btf_value_type_id=info.btf_value_type_id,
        map_extra=info.map_extra, memlock=_memlock(fd))


@dataclass(frozen=True)
class LinkInfo:
    """The common head of ``struct bpf_link_info``: what kind of link, which program."""

    id: int
    type: str        # libbpf's name of the link type: "xdp", "cgroup", "perf_event", ...
    prog_id: int


def link_info(fd: int) -> LinkInfo:
    """BPF_OBJ_GET_INFO_BY_FD of a link fd: its id, type and program id."""
    # Only the head (type, id, prog_id) is read: the per-kind union differs between kernels.
    buf = ffi.new("__u32[]", 64)  # zeroed, larger than any bpf_link_info so far
    size = ffi.new("__u32 *", ffi.sizeof(buf))
    _libbpf.check(lib.bpf_obj_get_info_by_fd(fd, buf, size), "BPF_OBJ_GET_INFO_BY_FD (link)")
    return LinkInfo(id=int(buf[1]), type=LinkType.name_of(int(buf[0])), prog_id=int(buf[2]))


def _ids(next_id: object, what: str) -> Iterator[int]:
    current = ffi.new("__u32 *", 0)
    while True:
        ret = next_id(current[0], current)  # type: ignore[operator]
        if ret == -errno.ENOENT:
            return
        _libbpf.check(ret, f"listing {what} ids", capability="CAP_SYS_ADMIN")
        yield int(current[0])


def program_ids() -> Iterator[int]:
    """Every program id loaded in the kernel (needs CAP_SYS_ADMIN)."""
    return _ids(lib.bpf_prog_get_next_id, "program")


def map_ids() -> Iterator[int]:
    """The id of every map the kernel holds."""
    return _ids(lib.bpf_map_get_next_id, "map")


def btf_ids() -> Iterator[int]:
    """The id of every BTF object the kernel holds."""
    return _ids(lib.bpf_btf_get_next_id, "BTF")


def open_prog_by_id(prog_id: int) -> int:
    """A new fd (caller closes it) for program ``prog_id``."""
    return _libbpf.check(lib.bpf_prog_get_fd_by_id(prog_id), f"opening program id {prog_id}",
                         capability="CAP_SYS_ADMIN")


def open_map_by_id(map_id: int) -> int:
    """A new fd of the map with id ``map_id`` (the caller closes it)."""
    return _libbpf.check(lib.bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}",
                         capability="CAP_SYS_ADMIN")


_FD_KINDS = {"anon_inode:bpf-prog": "program", "anon_inode:bpf-map": "map", "anon_inode:bpf_link": "link",
             "anon_inode:btf": "BTF"}


def open_pinned(path: str, kind: str | None = None) -> int:
    """A new fd (caller closes it) for the BPF object pinned at ``path`` in a bpffs; with ``kind``
    ("program", "map", "link") a pin of another kind is refused."""
    fd = _libbpf.check(lib.bpf_obj_get(os.fsencode(path)), f"opening pinned {kind or 'object'} {path}",
                       overrides={errno.ENOENT: lambda w, e, l: BpfError(f"{w}: no such pin", e)})
    if kind is not None:
        try:
            found = _FD_KINDS.get(os.readlink(f"/proc/self/fd/{fd}"), "other")
        except OSError:
            found = kind  # no /proc: the kernel's own checks are all we have
        if found != kind:
            os.close(fd)
            raise BpfError(f"{path} is a pinned {found}, not a {kind}")
    return fd


class StatsHandle(Resource):
    """Keeps kernel run-time statistics (run_cnt, run_time_ns) on until closed."""

    _fd = -1  # a failed __init__ (no CAP_SYS_ADMIN) leaves nothing for __del__ to close

    def __init__(self) -> None:
        self._fd = _libbpf.check(lib.bpf_enable_stats(0), "BPF_ENABLE_STATS(BPF_STATS_RUN_TIME)",
                                 capability="CAP_SYS_ADMIN")


    def close(self) -> None:
        """Turn the statistics off again (unless another handle keeps them on)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._fd < 0

    def fileno(self) -> int:
        """The BPF_ENABLE_STATS fd."""
        if self._fd < 0:
            raise ClosedError("stats handle")
        return self._fd



def enable_stats() -> StatsHandle:
    """Turn on BPF run-time stats for as long as the returned handle stays open."""
    return StatsHandle()



