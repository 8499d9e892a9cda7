"""Helpers of the ``Map`` constructors (``create``/``from_fd``/``from_pin``/``from_id``).

Checking that an fd is a map before asking the kernel about it, and loading a map's BTF
from the kernel by id.
"""

from __future__ import annotations

import os

from pybpf._sys.libbpf import ffi, lib
from pybpf.btf.types import Btf
from pybpf.errors import WrongMapTypeError

__all__ = ["load_kernel_btf", "require_map_fd"]

_FD_KINDS = {"anon_inode:bpf-prog": "a BPF program", "anon_inode:bpf_link": "a BPF link",
             "anon_inode:btf": "a BTF object"}


def require_map_fd(fd: int, shown: int) -> None:
    """BPF_OBJ_GET_INFO_BY_FD fills whatever the fd is: check it is a map first."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return  # no /proc: the kernel's own checks are all we have
    if target != "anon_inode:bpf-map":
        what = _FD_KINDS.get(target, target)
        raise WrongMapTypeError(f"fd {shown} is {what}, not a BPF map")


def load_kernel_btf(btf_id: int) -> Btf | None:
    """The map's BTF as the kernel holds it (by id), parsed; None if it is gone."""
    ptr = lib.btf__load_from_kernel_by_id(btf_id)
    if ptr == ffi.NULL:
        return None
    try:
        size = ffi.new("__u32 *")
        raw = lib.btf__raw_data(ptr, size)
        return Btf.from_bytes(bytes(ffi.buffer(raw, size[0])))
    finally:
        lib.btf__free(ptr)
