"""Arena maps (``BPF_MAP_TYPE_ARENA``, kernel 6.9): memory BPF programs and Python share, pointers
and all.

An arena is ``max_entries`` pages that a program allocates (``bpf_arena_alloc_pages``) and
fills with ``__arena`` pointers (clang 19). Each pointer is the address the page has in the
*user* mapping of the arena, so Python follows it as it is: ``arena.at(pointer, dtype)`` is a
live numpy record at that address. The kernel fixes the arena's user address at its first
mmap, so pybpf creates the arena map itself before the object loads (``bpf_map__reuse_fd``),
maps it with Python's ``mmap`` at once, and every view is built on that Python-owned mapping:
it outlives the map and the object, like the views of :mod:`pybpf.maps.views`. (libbpf 1.4
and later would map it themselves and unmap it at close, under any view still using it.)
"""

from __future__ import annotations

import errno
import mmap
from typing import Any

import numpy as np

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import lib
from pybpf.errors import BpfError, InvalidArgumentError, NotSupportedError
from pybpf.kinds import MapFlag, MapType

__all__ = ["Arena", "create_arena"]

PAGE_SIZE = mmap.PAGESIZE


class Arena:
    """The user mapping of an arena map: ``base`` is the address BPF pointers into it carry."""

    def __init__(self, fd: int, pages: int, what: str) -> None:
        self.pages = pages
        self.size = pages * PAGE_SIZE
        self.what = what
        try:
            self._mmap = mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise BpfError(f"cannot mmap arena {what}: {exc.strerror}", exc.errno) from None
        whole = np.frombuffer(self._mmap, dtype=np.uint8)
        self.base: int = int(whole.__array_interface__["data"][0])  # the kernel's user_vm_start from now on
        del whole

    def __repr__(self) -> str:
        return f"<Arena {self.what}: {self.pages} pages at {self.base:#x}>"

    @property
    def closed(self) -> bool:
        """True once the mapping is released."""
        return self._mmap.closed

    def view(self, dtype: Any = "u1") -> np.ndarray:
        """The whole arena as a numpy array of ``dtype`` (bytes by default), live and writable.
        Pages no program has allocated read as zeros (touching one allocates it)."""
        dtype = np.dtype(dtype)
        return np.frombuffer(self._mmap, dtype=np.uint8)[: self.size // dtype.itemsize * dtype.itemsize].view(dtype)

    def offset(self, address: int, size: int = 1) -> int:
        """Where the pointer ``address`` (as a BPF program stored it) falls in :meth:`view`."""
        address = int(address)
        if not self.base <= address <= self.base + self.size - size:
            raise InvalidArgumentError(f"address {address:#x} (+{size} B) is outside arena {self.what} "
                                       f"({self.base:#x}..{self.base + self.size:#x})")
        return address - self.base

    def at(self, address: int, dtype: Any) -> np.ndarray:
        """A live 0-d record of ``dtype`` at the arena pointer ``address`` (follow ``next``
        fields with another ``at``)."""
        dtype = np.dtype(dtype)
        start = self.offset(address, dtype.itemsize)
        return np.ndarray((), dtype=dtype, buffer=np.frombuffer(self._mmap, dtype=np.uint8), offset=start)

    def close(self) -> None:
        """Unmap, or leave it to the last view (a view keeps the arena mapped)."""
        try:
            self._mmap.close()
        except BufferError:
            pass


def create_arena(name: str, pages: int, flags: int, map_extra: int) -> tuple[int, Arena]:
    """Create an arena map (an fd the caller owns) and map it: its user address is now fixed."""
    if map_extra:
        raise NotSupportedError(f"arena map {name!r} asks for user address {map_extra:#x} (map_extra): pybpf maps "
                                f"an arena where the kernel places it (Python's mmap takes no address); "
                                f"drop map_extra", feature="arena_map_extra")
    if not flags & MapFlag.MMAPABLE:
        raise InvalidArgumentError(f"arena map {name!r} needs map_flags BPF_F_MMAPABLE")
    opts = _libbpf.new_opts("struct bpf_map_create_opts", map_flags=flags)
    fd = lib.bpf_map_create(int(MapType.ARENA), name.encode()[:15], 0, 0, pages, opts)
    if fd < 0:
        err = -fd
        from pybpf.kernel.features import capabilities  # only to explain a refusal

        if err == errno.EPERM and {"CAP_BPF", "CAP_SYS_ADMIN"} <= capabilities():
            raise NotSupportedError(f"creating arena map {name!r}: the kernel refused it with EPERM although this "
                                    f"process has CAP_BPF and CAP_SYS_ADMIN: this kernel does not allow BPF arena "
                                    f"maps", err, feature="arena")
        if err in (errno.EINVAL, errno.EOPNOTSUPP, _libbpf.ENOTSUPP):
            raise NotSupportedError(f"creating arena map {name!r}: this kernel has no BPF arena (Linux >= 6.9) "
                                    f"or refuses {pages} pages", err, feature="arena")
        raise _libbpf.make_error(err, f"creating arena map {name!r}")
    try:
        return fd, Arena(fd, pages, repr(name))
    except BaseException:
        _libbpf.close_fd(fd)
        raise
