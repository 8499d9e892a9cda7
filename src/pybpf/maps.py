"""``Map``: a BPF map, typed from BTF.

A Map either belongs to an ``Object`` (libbpf owns the fd; the Map only
borrows it and is closed with the object) or owns an fd of its own
(``Map.from_pin``, ``from_id``, ``from_fd``).  Keys and values are numpy
scalars/records whose dtypes come from the map's BTF.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _libbpf
from ._libbpf import ffi, lib
from .btf import Btf, raw_dtype
from .errors import BpfError, ClosedError, KeyNotFoundError, MapFullError, NotSupportedError
from .info import MapInfo, map_flag_names, map_info
from .memory import MappedMap
from .values import to_bytes

if TYPE_CHECKING:
    from .object import Object

__all__ = ["Map", "BPF_F_MMAPABLE", "BPF_F_RDONLY_PROG", "MAP_TYPES"]

BPF_F_MMAPABLE = 1 << 10
BPF_F_RDONLY_PROG = 1 << 7
UPDATE_FLAGS = {"any": 0, "noexist": 1, "exist": 2}

MAP_TYPES = {
    "hash": 1, "array": 2, "prog_array": 3, "perf_event_array": 4, "percpu_hash": 5, "percpu_array": 6,
    "stack_trace": 7, "cgroup_array": 8, "lru_hash": 9, "lru_percpu_hash": 10, "lpm_trie": 11,
    "array_of_maps": 12, "hash_of_maps": 13, "devmap": 14, "sockmap": 15, "cpumap": 16, "xskmap": 17,
    "sockhash": 18, "cgroup_storage": 19, "reuseport_sockarray": 20, "percpu_cgroup_storage": 21,
    "queue": 22, "stack": 23, "sk_storage": 24, "devmap_hash": 25, "struct_ops": 26, "ringbuf": 27,
    "inode_storage": 28, "task_storage": 29, "bloom_filter": 30, "user_ringbuf": 31, "cgrp_storage": 32,
}


def _not_found(what: str, err: int, log: str) -> BpfError:
    return KeyNotFoundError(f"{what}: no such key", err)


def _full(what: str, err: int, log: str) -> BpfError:
    return MapFullError(f"{what}: the map is full (max_entries reached)", err)


class Map:
    """A BPF map. Index it like a dict; ``view()`` for zero-copy array access."""

    def __init__(self, *, name: str, obj: Object | None = None, ptr: Any = None, fd: int = -1,
                 btf: Btf | None = None, key_type_id: int = 0, value_type_id: int = 0) -> None:
        self.name = name
        self._obj = obj
        self._ptr = ptr
        self._own_fd = fd            # >= 0 only for maps this object owns itself
        self._btf = btf
        self._key_type_id = key_type_id
        self._value_type_id = value_type_id
        self._closed = False
        self._mapping: MappedMap | None = None
        self._key_dtype: np.dtype | None = None
        self._value_dtype: np.dtype | None = None

    def __repr__(self) -> str:
        return f"<Map {self.name} type={self.type}>"

    # ---- construction of owned maps ----------------------------------

    @classmethod
    def from_fd(cls, fd: int, *, dup: bool = True) -> Map:
        """Wrap a map fd; with ``dup`` (the default) the caller keeps its fd."""
        own = os.dup(fd) if dup else fd
        try:
            info = map_info(own)
        except BaseException:
            os.close(own)
            raise
        btf = _load_kernel_btf(info.btf_id) if info.btf_id else None
        return cls(name=info.name, fd=own, btf=btf, key_type_id=info.btf_key_type_id,
                   value_type_id=info.btf_value_type_id)

    @classmethod
    def from_pin(cls, path: str) -> Map:
        fd = _libbpf.check(lib.bpf_obj_get(path.encode()), f"opening pinned map {path}",
                           overrides={errno.ENOENT: lambda w, e, l: BpfError(f"{w}: no such pin", e)})
        return cls.from_fd(fd, dup=False)

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        fd = _libbpf.check(lib.bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}",
                           capability="CAP_SYS_ADMIN")
        return cls.from_fd(fd, dup=False)

    # ---- state -------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"map {self.name}")
        if self._obj is not None:
            self._obj._check_open()

    @property
    def closed(self) -> bool:
        return self._closed or (self._obj is not None and self._obj.closed)

    @property
    def loaded(self) -> bool:
        return self._obj is None or self._obj.state == "loaded"

    @property
    def fd(self) -> int:
        self._check()
        if self._obj is None:
            return self._own_fd
        self._obj._check_state("loaded", f"the fd of map {self.name}")
        fd = lib.bpf_map__fd(self._ptr)
        if fd < 0:
            raise BpfError(f"map {self.name} was not created", errno.ENOENT)
        return int(fd)

    def close(self) -> None:
        """Release this handle. Views made by ``view()`` stay valid."""
        if self._closed:
            return
        self._closed = True
        if self._mapping is not None:
            self._mapping.try_close()  # if views still use it, the last one unmaps
            self._mapping = None
        if self._own_fd >= 0:
            os.close(self._own_fd)
            self._own_fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- description -------------------------------------------------

    def _attr(self, getter: str) -> int:
        self._check()
        if self._ptr is not None:
            return int(getattr(lib, f"bpf_map__{getter}")(self._ptr))
        return int(getattr(self.info, getter))

    @property
    def type_id(self) -> int:
        self._check()
        return int(lib.bpf_map__type(self._ptr)) if self._ptr is not None else self.info.type_id

    @property
    def type(self) -> str:
        return _libbpf.type_name("map", self.type_id)

    @property
    def key_size(self) -> int:
        return self._attr("key_size")

    @property
    def value_size(self) -> int:
        return self._attr("value_size")

    @property
    def max_entries(self) -> int:
        return self._attr("max_entries")

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        self._check_settable("max_entries")
        _libbpf.check(lib.bpf_map__set_max_entries(self._ptr, int(value)), f"max_entries of {self.name}")

    @property
    def flags(self) -> int:
        self._check()
        return int(lib.bpf_map__map_flags(self._ptr)) if self._ptr is not None else self.info.flags

    @property
    def flag_names(self) -> list[str]:
        return map_flag_names(self.flags)

    @property
    def info(self) -> MapInfo:
        """Kernel-side facts (id, type, sizes, flags, BTF ids)."""
        return map_info(self.fd)

    @property
    def id(self) -> int:
        return self.info.id

    def _check_settable(self, what: str) -> None:
        self._check()
        if self._obj is None:
            raise BpfError(f"{what} of map {self.name} can only be set before its object is loaded",
                           errno.EINVAL)
        self._obj._check_state("open", f"setting {what} of map {self.name}")

    @property
    def key_dtype(self) -> np.dtype:
        if self._key_dtype is None:
            self._key_dtype = self._dtype(self._key_type_id, self.key_size)
        return self._key_dtype

    @property
    def value_dtype(self) -> np.dtype:
        if self._value_dtype is None:
            self._value_dtype = self._dtype(self._value_type_id, self.value_size)
        return self._value_dtype

    def _dtype(self, type_id: int, size: int) -> np.dtype:
        if self._btf is not None and type_id:
            dtype = self._btf.dtype(type_id)
            if dtype.itemsize == size:
                return dtype
        return raw_dtype(size) if size else np.dtype("V0")

    # ---- pinning and reuse -------------------------------------------

    def pin(self, path: str) -> None:
        self._check()
        if self._ptr is not None:
            _libbpf.check(lib.bpf_map__pin(self._ptr, path.encode()), f"pinning map {self.name} at {path}",
                          capability="CAP_SYS_ADMIN")
        else:
            _libbpf.check(lib.bpf_obj_pin(self.fd, path.encode()), f"pinning map {self.name} at {path}",
                          capability="CAP_SYS_ADMIN")

    def unpin(self, path: str | None = None) -> None:
        self._check()
        if self._ptr is not None:
            c_path = path.encode() if path else ffi.NULL
            _libbpf.check(lib.bpf_map__unpin(self._ptr, c_path), f"unpinning map {self.name}")
        elif path:
            os.unlink(path)
        else:
            raise ValueError("unpin of a map opened by fd needs the pin path")

    def set_pin_path(self, path: str) -> None:
        """Before load: pin here on load, or reuse the map already pinned here."""
        self._check_settable("the pin path")
        _libbpf.check(lib.bpf_map__set_pin_path(self._ptr, path.encode()), f"pin path of {self.name}")

    def reuse(self, other: Map | int) -> None:
        """Before load: use an existing map (another Map or an fd) instead of creating one."""
        self._check_settable("reuse")
        fd = other.fd if isinstance(other, Map) else int(other)
        _libbpf.check(lib.bpf_map__reuse_fd(self._ptr, fd), f"reusing fd {fd} for map {self.name}")

    # ---- element access (syscall per call) ----------------------------

    def _key_bytes(self, key: Any) -> bytes:
        return to_bytes(key, self.key_dtype, f"key of map {self.name}")

    def _value_bytes(self, value: Any) -> bytes:
        return to_bytes(value, self.value_dtype, f"value of map {self.name}")

    def _decode(self, raw: Any, dtype: np.dtype) -> Any:
        array = np.frombuffer(bytes(raw), dtype=dtype)
        return array[0] if array.shape == (1,) else array.reshape(dtype.shape or ())

    def lookup(self, key: Any) -> Any:
        fd = self.fd
        key_buf = self._key_bytes(key)
        value = ffi.new("char[]", max(self.value_size, 1))
        _libbpf.check(lib.bpf_map_lookup_elem(fd, key_buf, value), f"lookup in map {self.name}",
                      overrides={errno.ENOENT: _not_found})
        return self._decode(ffi.buffer(value, self.value_size), self.value_dtype)

    def update(self, key: Any, value: Any, flags: str | int = "any") -> None:
        fd = self.fd
        flag = UPDATE_FLAGS[flags] if isinstance(flags, str) else int(flags)
        _libbpf.check(lib.bpf_map_update_elem(fd, self._key_bytes(key), self._value_bytes(value), flag),
                      f"update of map {self.name}",
                      overrides={errno.E2BIG: _full, errno.ENOENT: _not_found})

    def delete(self, key: Any) -> None:
        _libbpf.check(lib.bpf_map_delete_elem(self.fd, self._key_bytes(key)), f"delete in map {self.name}",
                      overrides={errno.ENOENT: _not_found})

    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        try:
            self.lookup(key)
            return True
        except KeyNotFoundError:
            return False

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self.lookup(key)
        except KeyNotFoundError:
            return default

    def keys(self) -> Iterator[Any]:
        fd = self.fd
        size = max(self.key_size, 1)
        current = ffi.new("char[]", size)
        following = ffi.new("char[]", size)
        previous: Any = ffi.NULL
        while True:
            ret = lib.bpf_map_get_next_key(fd, previous, following)
            if ret == -errno.ENOENT:
                return
            _libbpf.check(ret, f"iterating map {self.name}")
            yield self._decode(ffi.buffer(following, self.key_size), self.key_dtype)
            ffi.memmove(current, following, size)
            previous = current

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key in self.keys():
            try:
                yield key, self.lookup(key)
            except KeyNotFoundError:
                continue  # deleted while iterating

    def values(self) -> Iterator[Any]:
        for _key, value in self.items():
            yield value

    # ---- zero-copy view --------------------------------------------------

    def view(self) -> np.ndarray:
        """A numpy array over a Python-owned mmap of this BPF_F_MMAPABLE array map.

        Shape ``(max_entries,)``, dtype from BTF; read-only when the map is
        frozen or read-only to user space. The view stays valid after close.
        """
        self._check()
        if self.type != "array" or not self.flags & BPF_F_MMAPABLE:
            raise NotSupportedError(
                f"map {self.name} ({self.type}) cannot be viewed: only array maps created with "
                f"BPF_F_MMAPABLE can be mmapped", errno.EINVAL, feature="BPF_F_MMAPABLE")
        return self._mapped().array(self.value_dtype)

    def _mapped(self, writable: bool | None = None) -> MappedMap:
        if self._mapping is None or self._mapping.closed:
            if writable is None:
                writable = not self.flags & (1 << 3)  # BPF_F_RDONLY (user space read-only)
            try:
                self._mapping = MappedMap(self.fd, self.value_size, self.max_entries, writable=writable,
                                          what=f"map {self.name}")
            except BpfError:
                if not writable:
                    raise
                self._mapping = MappedMap(self.fd, self.value_size, self.max_entries, writable=False,
                                          what=f"map {self.name}")
        return self._mapping


def _load_kernel_btf(btf_id: int) -> Btf | None:
    ptr = lib.btf__load_from_kernel_by_id(btf_id)
    if ptr == ffi.NULL:
        return None
    try:
        size = ffi.new("__u32 *")
        raw = lib.btf__raw_data(ptr, size)
        return Btf.from_bytes(bytes(ffi.buffer(raw, size[0])))
    finally:
        lib.btf__free(ptr)


