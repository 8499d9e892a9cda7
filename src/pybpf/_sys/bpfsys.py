"""bpf(2) itself, for what the system libbpf may lack (libbpf 1.1: tcx, uprobe_multi and
struct_ops links, BPF tokens), spoken to the kernel directly as cilium/ebpf does.

Each function packs its command's part of ``union bpf_attr`` (include/uapi/linux/bpf.h)
into a zeroed buffer of exactly that part's size (the kernel zero-fills the rest) and
returns what the kernel returned: a new fd the caller owns, 0, or ``-errno``, as libbpf's
int-returning calls do, so callers raise through :func:`pybpf._sys.libbpf.check`.
Pointers stored into an attr point at buffers that stay referenced until the call returns.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

from pybpf._sys.libbpf import ffi, libc

__all__ = ["BPF_F_AFTER", "BPF_F_BEFORE", "BPF_F_ID", "BPF_F_LINK", "BPF_F_REPLACE", "BPF_F_TOKEN_FD",
           "BPF_F_UPROBE_MULTI_RETURN", "bpf", "link_create", "link_create_struct_ops", "link_create_tcx",
           "link_create_uprobe_multi", "link_update_map", "token_create"]

# __NR_bpf per machine (asm/unistd.h)
_NR_BPF = {"x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280, "s390x": 351, "ppc64le": 361,
           "riscv64": 280, "loongarch64": 280}.get(os.uname().machine.lower(), 321)  # platform.machine()

# enum bpf_cmd
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_TOKEN_CREATE = 36

# flags (uapi linux/bpf.h)
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_LINK = 1 << 13          # as a map flag: a struct_ops map registered through a bpf_link; as a
                              # link_create/attach flag: relative_fd is a link
BPF_F_TOKEN_FD = 1 << 16
BPF_F_UPROBE_MULTI_RETURN = 1

# enum bpf_attach_type values used here
BPF_STRUCT_OPS = 44
BPF_TRACE_UPROBE_MULTI = 48

_LINK_CREATE_HEAD = struct.Struct("<IIII")        # prog_fd|map_fd, target_fd|ifindex, attach_type, flags
_TCX = struct.Struct("<I4xQ")                      # relative_fd|id, expected_revision
_UPROBE_MULTI = struct.Struct("<QQQQIII4x")        # path, offsets, ref_ctr_offsets, cookies, cnt, flags, pid
_LINK_UPDATE = struct.Struct("<IIII")              # link_fd, new_prog_fd|new_map_fd, flags, old_*_fd
_TOKEN_CREATE = struct.Struct("<II")               # flags, bpffs_fd


def bpf(cmd: int, attr: bytes | bytearray) -> int:
    """One bpf(2) call on a copy of ``attr``: its result (>= 0) or ``-errno``."""
    buf = ffi.new("char[]", bytes(attr))
    ret = libc.syscall(ffi.cast("long", _NR_BPF), ffi.cast("int", cmd), buf, ffi.cast("unsigned int", len(attr)))
    if ret < 0:
        return -(ffi.errno or 22)
    return int(ret)


def _address(cdata: Any) -> int:
    return 0 if cdata is None else int(ffi.cast("uintptr_t", cdata))


def link_create(fd: int, target: int, attach_type: int, flags: int = 0, tail: bytes = b"") -> int:
    """BPF_LINK_CREATE of program (or struct_ops map) ``fd`` on ``target``; ``tail`` is the
    attach kind's own part of the union that follows the common head."""
    return bpf(BPF_LINK_CREATE, _LINK_CREATE_HEAD.pack(fd, target, attach_type, flags) + tail)


def link_create_tcx(prog_fd: int, ifindex: int, attach_type: int, flags: int = 0, relative: int = 0,
                    expected_revision: int = 0) -> int:
    """A tcx link (BPF_TCX_INGRESS/EGRESS) of ``prog_fd`` on ``ifindex``; ``flags`` places it
    (BPF_F_BEFORE/AFTER, with BPF_F_LINK or BPF_F_ID saying what ``relative`` is)."""
    return link_create(prog_fd, ifindex, attach_type, flags, _TCX.pack(relative, expected_revision))


def link_create_uprobe_multi(prog_fd: int, path: str | bytes, offsets: Sequence[int], *,
                             cookies: Sequence[int] | None = None, ref_ctr_offsets: Sequence[int] | None = None,
                             pid: int = 0, retprobe: bool = False) -> int:
    """One uprobe_multi link of ``prog_fd`` on the file ``offsets`` of ``path``."""
    count = len(offsets)
    c_path = ffi.new("char[]", path if isinstance(path, bytes) else path.encode())
    c_offsets = ffi.new("unsigned long[]", list(offsets))
    c_cookies = ffi.new("__u64[]", list(cookies)) if cookies is not None else None
    c_refs = ffi.new("unsigned long[]", list(ref_ctr_offsets)) if ref_ctr_offsets is not None else None
    flags = BPF_F_UPROBE_MULTI_RETURN if retprobe else 0
    tail = _UPROBE_MULTI.pack(_address(c_path), _address(c_offsets), _address(c_refs), _address(c_cookies),
                              count, flags, max(pid, 0))
    # the buffers above stay referenced (locals) until bpf() returns
    return link_create(prog_fd, 0, BPF_TRACE_UPROBE_MULTI, 0, tail)


def link_create_struct_ops(map_fd: int) -> int:
    """Register a loaded, filled-in struct_ops map made with BPF_F_LINK: the link owns the registration."""
    return link_create(map_fd, 0, BPF_STRUCT_OPS)


def link_update_map(link_fd: int, new_map_fd: int, old_map_fd: int | None = None) -> int:
    """Swap the struct_ops map a link registers (BPF_LINK_UPDATE with new_map_fd); with
    ``old_map_fd`` only if the link still registers that map (BPF_F_REPLACE)."""
    flags = BPF_F_REPLACE if old_map_fd is not None else 0
    return bpf(BPF_LINK_UPDATE, _LINK_UPDATE.pack(link_fd, new_map_fd, flags, old_map_fd or 0))


def token_create(bpffs_fd: int, flags: int = 0) -> int:
    """BPF_TOKEN_CREATE from an open bpffs mount (its root directory, or an fsmount fd)."""
    return bpf(BPF_TOKEN_CREATE, _TOKEN_CREATE.pack(flags, bpffs_fd & 0xFFFFFFFF))
