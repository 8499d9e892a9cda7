"""struct_ops: registering a map of BPF-implemented kernel ops (a TCP congestion control,
sched_ext, HID) with the kernel, and updating it in place.

A map from ``SEC(".struct_ops.link")`` (created with ``BPF_F_LINK``) is registered by a
bpf_link: closing the link unregisters it, and ``link.update(new_map)`` swaps in another
map of the same ops type atomically (for a TCP congestion control: the new ops take the
name's place; connections made before keep the ops they started with). libbpf 1.2 and later
do both (``bpf_map__attach_struct_ops``, ``bpf_link__update_map``); with libbpf 1.1 pybpf
fills the map through libbpf and makes the link (``BPF_LINK_CREATE``) and its update
(``BPF_LINK_UPDATE``) itself. A map from ``SEC(".struct_ops")`` is registered the older way,
by writing its value (closing unregisters it); it cannot be updated.

The map is seen through :class:`StructOpsTarget` (``pybpf.Map`` is one), never imported.
"""

from __future__ import annotations

import errno
from typing import Any, Protocol

from pybpf._sys import bpfsys
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import capture, ffi, has_symbol, lib
from pybpf.errors import BpfError, NotSupportedError
from pybpf.kinds import MapFlag
from pybpf.link.base import FdLink, LibbpfLink, Link

__all__ = ["StructOpsFdLink", "StructOpsLibbpfLink", "StructOpsRegistration", "StructOpsTarget", "attach",
           "uses_libbpf"]


class StructOpsTarget(Protocol):
    """What registering needs of a struct_ops map (``pybpf.Map`` of an Object is one)."""

    name: str

    @property
    def fd(self) -> int:
        """The map's fd."""

    @property
    def flags(self) -> int:
        """The map's ``map_flags``."""

    def libbpf_map(self) -> Any:
        """libbpf's ``struct bpf_map *``."""


def uses_libbpf() -> bool:
    """Whether the system libbpf makes struct_ops links and updates them (1.2 and later)."""
    return has_symbol("bpf_link__update_map")


def _error(err: int, what: str, log: str) -> BpfError:
    lines = [line.removeprefix("libbpf: ").strip() for line in log.strip().splitlines() if line.strip()]
    reason = f": {lines[-1]}" if lines else ""
    return _libbpf.make_error(err, what + reason, capability="CAP_BPF+CAP_NET_ADMIN", log=log)


def _fill(target: StructOpsTarget, what: str) -> Any:
    """libbpf writes the map's value (its programs' fds and data): ``bpf_map__attach_struct_ops``.
    For a BPF_F_LINK map the kernel only marks it ready; for another map this registers it."""
    with capture() as log:
        ptr = lib.bpf_map__attach_struct_ops(target.libbpf_map())
    if ptr == ffi.NULL:
        err = ffi.errno or errno.EINVAL
        if err != errno.EBUSY:  # EBUSY: the value was written before (the map is ready already)
            raise _error(err, what, log.text)
    return ptr


def _fill_only(target: StructOpsTarget, what: str) -> None:
    """Make a BPF_F_LINK map ready for a link without registering it (libbpf 1.1)."""
    ptr = _fill(target, what)
    if ptr != ffi.NULL:  # libbpf 1.1's handle would delete the value on destroy: drop it without that
        lib.bpf_link__disconnect(ptr)
        lib.bpf_link__destroy(ptr)


class _UpdatesMap:
    """``update(new_map)`` of a struct_ops link: the link registers ``new_map`` from now on."""

    description: str
    fd: int

    def _swap(self, target: StructOpsTarget, what: str) -> None:
        raise NotImplementedError

    def update(self, program: Any, *, replace: Any = None) -> None:
        """Register ``program`` (a struct_ops map of the same ops type, loaded) in place of
        the map the link registers now, atomically (BPF_LINK_UPDATE)."""
        if replace is not None:
            raise NotSupportedError("a struct_ops link update takes no replace=", feature="struct_ops_update")
        target: StructOpsTarget = program
        if not target.flags & MapFlag.LINK:
            raise NotSupportedError(f"struct_ops map {target.name!r} is not a link map: declare it in "
                                    f"SEC(\".struct_ops.link\") to update a link to it", feature="struct_ops_update")
        self._swap(target, f"updating struct_ops link {self.description} to map {target.name!r}")

    def map_id(self) -> int:
        """The id of the struct_ops map the link registers now."""
        return _registered_map_id(self.fd)


def _registered_map_id(link_fd: int) -> int:
    buf = ffi.new("__u32[]", 64)  # struct bpf_link_info: type, id, prog_id, then struct_ops.map_id at 16
    size = ffi.new("__u32 *", ffi.sizeof(buf))
    _libbpf.check(lib.bpf_obj_get_info_by_fd(link_fd, buf, size), "BPF_OBJ_GET_INFO_BY_FD (struct_ops link)")
    return int(buf[4])


class StructOpsLibbpfLink(_UpdatesMap, LibbpfLink):
    """A struct_ops bpf_link made by libbpf (1.2 and later)."""

    def _swap(self, target: StructOpsTarget, what: str) -> None:
        with self.held() as ptr, capture() as log:
            ret = lib.bpf_link__update_map(ptr, target.libbpf_map())
        if ret < 0:
            raise _error(-ret, what, log.text)


class StructOpsFdLink(_UpdatesMap, FdLink):
    """A struct_ops bpf_link made by pybpf's own BPF_LINK_CREATE (libbpf 1.1)."""

    def _swap(self, target: StructOpsTarget, what: str) -> None:
        _fill_only(target, what)
        ret = bpfsys.link_update_map(self.fd, target.fd)
        if ret < 0:
            raise _error(-ret, what, "")


class StructOpsRegistration(Link):
    """A ``SEC(".struct_ops")`` map registered by writing its value; close unregisters it."""

    def __init__(self, ptr: Any, description: str) -> None:
        super().__init__(description)
        self._ptr = ptr

    def _detach(self) -> None:
        ptr, self._ptr = self._ptr, ffi.NULL
        lib.bpf_link__destroy(ptr)  # deletes the map's value: the kernel unregisters the ops

    def update(self, program: Any, *, replace: Any = None) -> None:
        """Not possible: only ``SEC(".struct_ops.link")`` maps are registered through a link."""
        self._check()
        raise NotSupportedError(f"struct_ops {self.description} was registered without a link (SEC(\".struct_ops\")): "
                                f"declare the map in SEC(\".struct_ops.link\") to update it in place",
                                feature="struct_ops_update")


def attach(target: StructOpsTarget) -> Link:
    """Register the ops of a loaded struct_ops map; the returned link unregisters them on close."""
    what = f"registering struct_ops map {target.name!r}"
    description = f"struct_ops {target.name}"
    if not target.flags & MapFlag.LINK:
        ptr = _fill(target, what)
        if ptr == ffi.NULL:
            raise BpfError(f"{what}: its value was written before (it is registered already)", errno.EBUSY)
        return StructOpsRegistration(ptr, description)
    if uses_libbpf():
        with capture() as log:
            ptr = lib.bpf_map__attach_struct_ops(target.libbpf_map())
        if ptr == ffi.NULL:
            raise _error(ffi.errno or errno.EINVAL, what, log.text)
        return StructOpsLibbpfLink(ptr, description)
    _fill_only(target, what)
    fd = bpfsys.link_create_struct_ops(target.fd)
    if fd < 0:
        raise _error(-fd, what, "")
    return StructOpsFdLink(fd, description)
