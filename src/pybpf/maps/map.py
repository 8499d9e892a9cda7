"""``Map``: a BPF map, typed from BTF, used like a dict or read as numpy arrays.

A Map either belongs to an ``Object`` (libbpf owns the fd; the Map borrows it
and is closed with the object) or owns an fd of its own (``Map.create``,
``from_pin``, ``from_id``, ``from_fd``, in ``pybpf.maps.create``). Keys and values are numpy scalars,
records or arrays whose dtypes come from the map's BTF (raw ``V<n>`` bytes
without BTF, or the dtypes given to ``create``/``from_*``).

Three ways in, by cost:

* per key (``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``, ``get``,
  ``update``, ``lookup_and_delete``): one ``bpf()`` syscall each, through
  key/value buffers preallocated per Map (a lock serializes their use, so a
  Map may be shared between threads);
* per batch (``lookup_batch``, ``update_batch``, ``delete_batch``,
  ``lookup_and_delete_batch``, in ``pybpf.maps.batch``): one syscall per chunk,
  the kernel writing straight into numpy arrays;
* no syscall at all: ``view()`` of a ``BPF_F_MMAPABLE`` array map, a numpy
  array over a Python-owned mmap (``pybpf.maps.views``, which documents what a
  read guarantees while a program writes).

Per map type: array-like maps have every index ``0..max_entries-1`` (an
index past it raises ``IndexOutOfRangeError``; elements cannot be deleted;
``len()`` is ``max_entries``). Hash-like maps: ``len()`` counts the entries
(one batch lookup pass where the kernel supports it, else one syscall per
key); iteration walks a snapshot of the keys taken when it starts, so
deleting while iterating is safe. Per-CPU maps: see ``pybpf.maps.layout``.
Queue/stack: ``push``/``pop``/``peek``. Map-in-map: ``set_inner``/``inner``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ContextManager, Protocol

import numpy as np

from pybpf._sys.resource import Resource
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.forksafe import fresh_locks
from pybpf.maps import batch, keyarrays
from pybpf.kernel import fs
from pybpf._sys.libbpf import ffi, lib
from pybpf.btf.types import Btf, raw_dtype
from pybpf.errors import BpfError, ClosedError, InvalidArgumentError, KeyNotFoundError, NotSupportedError, WrongMapTypeError
from pybpf.maps.fastpath import FastPath
from pybpf._sys.fd import FdRef, holding_fd
from pybpf.maps.layout import Layout
from pybpf.maps.memory import MapMemory
from pybpf.maps.create import load_kernel_btf, require_map_fd
from pybpf.kinds import MapFlag, MapType, ObjectState
from pybpf.maps.checks import (
    check_map_name,
    element_size,
    parse_flags,
    LOOKUP_ERRORS,
    UPDATE_ERRORS,
    IndexOutOfRangeError,
    update_flag,
)
from pybpf.maps.views import MappedMap

if TYPE_CHECKING:  # stack and arena maps import their modules when used; kernel.info on the first info read
    from pybpf.kernel.info import MapInfo
    from pybpf.maps.arena import Arena
    from pybpf.maps.stacks import StackTable


class MapOwner(Protocol):
    """What a map that belongs to an object needs of it (``pybpf.Object`` is one)."""

    @property
    def closed(self) -> bool:
        """True once the object is closed."""

    @property
    def state(self) -> ObjectState: ...

    @property
    def btf(self) -> Btf | None: ...

    def check_open(self) -> None: ...

    def require_state(self, wanted: ObjectState, doing: str) -> None: ...

    def _guard(self, wanted: ObjectState | None = None, doing: str = "") -> ContextManager[Any]: ...

    def _attach_map(self, map_: Any) -> Any:
        """Register a struct_ops map of this object (the object owns the link it returns)."""

DTypeLike = Any  # anything np.dtype() accepts

__all__ = [
    "IndexOutOfRangeError",
    "Map",
]


def _u32(value: Any, what: str) -> int:
    """An int the kernel's __u32 can hold, or InvalidArgumentError."""
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise InvalidArgumentError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= int(value) <= 0xFFFF_FFFF:
        raise InvalidArgumentError(f"{what} must be in 0..4294967295 (the kernel's u32), not {int(value)}")
    return int(value)


class Map(Resource):
    """A BPF map. Index it like a dict; ``lookup_batch()`` for numpy arrays; ``view()`` for zero copy."""

    def __init__(self, *, name: str, obj: MapOwner | None = None, ptr: Any = None, fd: int = -1,
                 btf: Btf | None = None, key_type_id: int = 0, value_type_id: int = 0,
                 key_dtype: DTypeLike = None, value_dtype: DTypeLike = None,
                 info: MapInfo | None = None) -> None:
        self.name = name
        self._obj = obj
        self._ptr = ptr
        self._own_fd = fd            # >= 0 only for maps this handle owns itself
        self._info = info            # static facts of an owned map (never change after creation)
        self._btf = btf
        self._key_type_id = key_type_id
        self._value_type_id = value_type_id
        self._closed = False
        self._ref: FdRef | None = None  # this handle's own fd, once the map exists (see fdref.py)
        self._mapping: MappedMap | None = None
        self._key_dtype: np.dtype | None = np.dtype(key_dtype) if key_dtype is not None else None
        self._value_dtype: np.dtype | None = np.dtype(value_dtype) if value_dtype is not None else None
        self._keys: Layout | None = None
        self._values: Layout | None = None
        # _lock guards the shared per-key buffers around a syscall, _setup_lock one-time set-up
        # (fd copy, layouts); a fork()ed child gets new ones (pybpf._sys.forksafe)
        self._lock: threading.Lock
        self._setup_lock: threading.RLock
        # (fd copy, layouts), _mapping_lock (taken last, nothing under it) the mmap of view()
        self._mapping_lock: threading.Lock
        fresh_locks(self, _lock=threading.Lock, _setup_lock=threading.RLock, _mapping_lock=threading.Lock)
        self._fast: FastPath | None = None  # set once the map exists and its types qualify
        self._batch_support: dict[str, bool] = {}
        # facts cached by _layouts() for the per-key path
        self._type_name: str | None = None
        self._kind: MapType | None = None
        self._keyless = False
        self._outer = False
        self._index_limit = 0        # > 0: integer keys must stay below it (array maps)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"type={self.type}"
        return f"<Map {self.name} {state}>"

    # ---- state -------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"map {self.name}")
        if self._obj is not None:
            self._obj.check_open()

    @property
    def closed(self) -> bool:
        """True once this handle (or its object) is closed."""
        return self._closed or (self._obj is not None and self._obj.closed)

    @property
    def loaded(self) -> bool:
        """Whether the map exists in the kernel (its object is loaded, or it is owned)."""
        return self._obj is None or self._obj.state is ObjectState.LOADED

    @property
    def fd(self) -> int:
        """This handle's fd (valid until ``close()``; do not close it yourself)."""
        ref = self._ref
        if ref is not None and not self._closed:
            return ref.fd
        return self._fd_ref().fd

    # ---- what pybpf.maps.batch uses (its BatchTarget protocol) -----------

    @property
    def element_lock(self) -> threading.Lock:
        """The lock around this handle's shared key/value buffers."""
        return self._lock

    @property
    def batch_support(self) -> dict[str, bool]:
        """Which batch operations the kernel was found to have for this map."""
        return self._batch_support

    def layouts(self) -> tuple[Layout, Layout]:
        """The key and value codecs (made on first use)."""
        return self._layouts()

    def key_snapshot(self) -> list[Any]:
        """Every key, read once (unique, bounded by max_entries)."""
        return self._key_snapshot()

    def fd_ref(self) -> FdRef:
        """The owner of this handle's fd (calls hold it while they use the fd)."""
        return self._fd_ref()

    def _fd_ref(self) -> FdRef:
        ref = self._ref
        if ref is not None and not self._closed:
            return ref
        self._check()
        if self._obj is None:
            with self._setup_lock:
                if self._ref is None:
                    fd, self._own_fd = self._own_fd, -1
                    self._ref = FdRef(fd, f"map {self.name}")
                return self._ref
        # Our own copy: libbpf closes its fd with the object, maybe while a call runs. Copied
        # with the object held (lock order: object, then this map's set-up lock), so no close()
        # can give the number back between reading it and copying it.
        with self._obj._guard(ObjectState.LOADED, f"the fd of map {self.name}"), self._setup_lock:
            if self._ref is None:
                libbpf_fd = lib.bpf_map__fd(self._ptr)
                if libbpf_fd < 0:
                    raise BpfError(f"map {self.name} was not created")
                self._ref = FdRef.copy_of(libbpf_fd, f"map {self.name}")
            if self._closed:
                raise ClosedError(f"map {self.name}")
            return self._ref

    def close(self) -> None:
        """Release this handle. Views made by ``view()`` stay valid."""
        if self._closed:
            return
        self._closed = True
        if self._fast is not None:
            self._fast.close()  # the C per-key calls stop using the fd before it goes
        self._fast = None
        for name in ("_getitem", "_setitem", "_delitem", "_contains", "lookup"):
            self.__dict__.pop(name, None)  # back to the general methods, which raise ClosedError
        arena = getattr(self, "_arena", None)
        if arena is not None:
            arena.close()  # views still using the arena keep it mapped
        with self._mapping_lock:  # a view() being made in another thread exports first, or sees closed
            if self._mapping is not None:
                self._mapping.try_close()  # if views still use it, the last one unmaps
                self._mapping = None
        if self._ref is not None:
            self._ref.close()  # now, or when the last call in another thread returns
        if self._own_fd >= 0:
            os.close(self._own_fd)
            self._own_fd = -1

    # ---- description -------------------------------------------------

    def _attr(self, getter: str) -> int:
        self._check()
        if self._ptr is not None:
            assert self._obj is not None
            with self._obj._guard():  # libbpf's map lives until the object closes
                return int(getattr(lib, f"bpf_map__{getter}")(self._ptr))
        return int(getattr(self._static_info, getter))

    def _memory_spec(self) -> MapMemory:
        """What Object.load() needs to estimate this map's kernel memory."""
        assert self._ptr is not None
        reused = lib.bpf_map__fd(self._ptr) >= 0  # reuse() gave it an existing map's fd
        kind = MapType.of(int(lib.bpf_map__type(self._ptr)), MapType.UNSPEC)
        type_name = kind.c_name
        return MapMemory(self.name, type_name, int(lib.bpf_map__key_size(self._ptr)),
                         int(lib.bpf_map__value_size(self._ptr)), int(lib.bpf_map__max_entries(self._ptr)),
                         int(lib.bpf_map__map_flags(self._ptr)),
                         _libbpf.num_possible_cpus() if kind.per_cpu else 1, created=not reused)

    @property
    def _static_info(self) -> MapInfo:
        if self._info is None:
            self._info = self.info
        return self._info

    @property
    def type_id(self) -> int:
        """The map type's number (``BPF_MAP_TYPE_*``)."""
        return self._attr("type") if self._ptr is not None else self._static_info.type_id

    @property
    def type(self) -> str:
        """libbpf's name of the map type (``hash``, ``array``...)."""
        if self._type_name is not None and not self._closed:
            return self._type_name
        name = MapType.name_of(self.type_id)
        if self._ref is not None:
            self._type_name = name  # fixed once the map exists
        return name

    @property
    def map_type(self) -> MapType:
        """The map's kind, with its traits (``m.map_type.per_cpu``...); ``UNSPEC``, which has
        no traits, for a type newer than pybpf's table."""
        if self._kind is not None and not self._closed:
            return self._kind
        kind = MapType.of(self.type_id, MapType.UNSPEC)
        if self._ref is not None:
            self._kind = kind  # fixed once the map exists, as the type name
        return kind

    @property
    def key_size(self) -> int:
        """Bytes per key; settable before load (``bpf_map__set_key_size``)."""
        return self._attr("key_size")

    @key_size.setter
    def key_size(self, value: int) -> None:
        self._check_settable("key_size")
        _libbpf.check(lib.bpf_map__set_key_size(self._ptr, int(value)), f"key_size of {self.name}")
        self._key_dtype = None  # re-derived from BTF, or raw bytes when the BTF type no longer fits

    @property
    def value_size(self) -> int:
        """Bytes per value; settable before load (``bpf_map__set_value_size``), as tools do for a
        stack trace map (``value_size = depth * 8``)."""
        return self._attr("value_size")

    @value_size.setter
    def value_size(self, value: int) -> None:
        self._check_settable("value_size")
        _libbpf.check(lib.bpf_map__set_value_size(self._ptr, int(value)), f"value_size of {self.name}")
        self._value_dtype = None

    @property
    def max_entries(self) -> int:
        """The map's capacity (bytes of the ring for ring buffers)."""
        return self._attr("max_entries")

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        value = _u32(value, f"max_entries of map {self.name}")
        with self._settable("max_entries"):
            _libbpf.check(lib.bpf_map__set_max_entries(self._ptr, value), f"max_entries of {self.name}")

    @property
    def flags(self) -> int:
        """The map's ``BPF_F_*`` flags."""
        return self._attr("map_flags") if self._ptr is not None else self._static_info.flags

    @property
    def flag_names(self) -> list[str]:
        """The names of the map's flags."""
        from pybpf.kernel.info import map_flag_names

        return map_flag_names(self.flags)

    # ---- arena -------------------------------------------------------

    def _prepare_arena(self) -> None:
        """For Object.load(): an arena map is created and mapped by pybpf, then given to libbpf."""
        if self._ptr is None or lib.bpf_map__type(self._ptr) != MapType.ARENA or lib.bpf_map__fd(self._ptr) >= 0:
            return
        from pybpf.maps.arena import create_arena  # arena maps only

        fd, arena = create_arena(self.name, int(lib.bpf_map__max_entries(self._ptr)),
                                 int(lib.bpf_map__map_flags(self._ptr)), int(lib.bpf_map__map_extra(self._ptr)))
        try:
            _libbpf.check(lib.bpf_map__reuse_fd(self._ptr, fd), f"giving arena map {self.name} to libbpf")
        except BaseException:
            arena.close()
            raise
        finally:
            os.close(fd)  # libbpf holds its own copy now
        self._arena = arena

    def arena(self) -> Arena:
        """The user mapping of this arena map (``BPF_MAP_TYPE_ARENA``): ``.view()`` is the whole
        arena as numpy, ``.at(pointer, dtype)`` a record at a pointer a BPF program stored,
        ``.base`` the address those pointers start at. Views outlive the map and its object."""
        self._check()
        arena = getattr(self, "_arena", None)
        if arena is None:
            if self.map_type is not MapType.ARENA:
                raise WrongMapTypeError(f"map {self.name} is a {self.type} map, not an arena")
            raise BpfError(f"arena map {self.name} is mapped when its object loads; load it first")
        return arena

    # ---- struct_ops --------------------------------------------------

    def libbpf_map(self) -> Any:
        """libbpf's ``struct bpf_map *`` of a map that belongs to an object (for :mod:`pybpf.link`)."""
        self._check()
        if self._ptr is None:
            raise BpfError(f"map {self.name} is not part of an object: libbpf has no bpf_map for it")
        return self._ptr

    def attach_struct_ops(self) -> Any:
        """Register a loaded struct_ops map's ops with the kernel (a TCP congestion control,
        sched_ext...): a Link that unregisters them on close. A ``SEC(".struct_ops.link")`` map's
        link is a bpf_link, and ``link.update(other_map)`` swaps in another version in place."""
        self._check()
        if self.map_type is not MapType.STRUCT_OPS:
            raise WrongMapTypeError(f"map {self.name} is a {self.type} map, not a struct_ops map")
        if self._obj is None:
            raise BpfError(f"struct_ops map {self.name}: only a map of a loaded Object can be registered")
        return self._obj._attach_map(self)

    @property
    def info(self) -> MapInfo:
        """Kernel-side facts (id, type, name, sizes, max_entries, flags, BTF ids)."""
        with self._fd_ref() as fd:  # the number stays this map's until the call returns
            from pybpf.kernel.info import map_info

            return map_info(fd)

    @property
    def id(self) -> int:
        """The map's kernel id."""
        return self.info.id

    @property
    def n_cpus(self) -> int:
        """Value slots per element: the number of possible CPUs for per-CPU maps, else 0."""
        return _libbpf.num_possible_cpus() if self.map_type.per_cpu else 0

    def _check_settable(self, what: str) -> None:
        self._check()
        if self._obj is None:
            raise BpfError(f"{what} of map {self.name} can only be set before its object is loaded")
        self._obj.require_state(ObjectState.OPEN, f"setting {what} of map {self.name}")

    def _settable(self, what: str) -> Any:
        """Hold the (open) object for a setter: no close() frees libbpf's map meanwhile."""
        self._check_settable(what)
        assert self._obj is not None
        return self._obj._guard(ObjectState.OPEN, f"setting {what} of map {self.name}")

    @property
    def key_dtype(self) -> np.dtype:
        """The dtype of one key (from BTF, or raw bytes without it)."""
        if self._key_dtype is None:
            self._key_dtype = self._dtype(self._key_type_id, self.key_size)
        return self._key_dtype

    @property
    def value_dtype(self) -> np.dtype:
        """The dtype of one value (of one CPU's value, for per-CPU maps)."""
        if self._value_dtype is None:
            if self.map_type.map_in_map and self.value_size == 4:
                self._value_dtype = np.dtype(np.uint32)  # an inner map's fd going in, its id coming out
            else:
                self._value_dtype = self._dtype(self._value_type_id, self.value_size)
        return self._value_dtype

    @property
    def btf(self) -> Btf | None:
        """The BTF this map's types and its object's structs come from, if any."""
        return self._obj.btf if self._obj is not None else self._btf

    @property
    def key_type_name(self) -> str | None:
        """The key's C type from BTF (``struct pair``, ``__u32``), or None without BTF."""
        return self._btf.c_name(self._key_type_id) if self._btf is not None and self._key_type_id else None

    @property
    def value_type_name(self) -> str | None:
        """The value's C type from BTF, or None without BTF."""
        return self._btf.c_name(self._value_type_id) if self._btf is not None and self._value_type_id else None

    def ring_buffer(self, dtype: Any = None, **options: Any) -> Any:
        """A ``pybpf.RingBuffer`` over this ``BPF_MAP_TYPE_RINGBUF`` map."""
        # events builds on maps, not the other way round: the reader registers itself
        reader = _STREAM_READERS.get(MapType.RINGBUF)
        if reader is None or self.map_type is not MapType.RINGBUF:
            raise WrongMapTypeError(f"ring_buffer() needs a ringbuf map, but map {self.name!r} is a "
                                    f"{self.type} map")
        return reader.factory(self, dtype, **options)

    def _dtype(self, type_id: int, size: int) -> np.dtype:
        if self._btf is not None and type_id:
            dtype = self._btf.dtype(type_id)
            if dtype.itemsize == size:
                return dtype
        return raw_dtype(size) if size else np.dtype("V0")

    def _layouts(self) -> tuple[Layout, Layout]:
        """Key and value layouts with their reusable buffers (built once the map exists)."""
        keys, values = self._keys, self._values
        if keys is not None and values is not None:
            return keys, values
        # what needs the object's lock is read first: the lock order is object, then set-up lock
        ref = self._fd_ref()  # sizes are final once the map exists
        key_dtype, value_dtype = self.key_dtype, self.value_dtype
        key_size, value_size, n_cpus = self.key_size, self.value_size, self.n_cpus
        kind, max_entries = self.map_type, self.max_entries
        with self._setup_lock:  # several threads may make their first call at once
            if self._keys is not None and self._values is not None:
                return self._keys, self._values
            for dtype, size, what in ((key_dtype, key_size, "key"), (value_dtype, value_size, "value")):
                if dtype.itemsize != size:
                    raise BpfError(f"map {self.name}: {what} dtype {dtype} has {dtype.itemsize} bytes but "
                                   f"the map's {what} size is {size}")
            keys = Layout(key_dtype, key_size, f"key of map {self.name}")
            values = Layout(value_dtype, value_size, f"value of map {self.name}", n_cpus)
            for layout in (keys, values):
                layout.ptr = ffi.from_buffer(layout.buf)  # one cdata for the Map's lifetime
                if layout.is_int and not layout.ncpus and layout.dtype.byteorder in "=|":
                    layout.cptr = ffi.cast(f"{'u' if layout.dtype.kind == 'u' else ''}int{8 * layout.size}_t *",
                                           layout.ptr)
            self._keyless = kind.keyless
            self._outer = kind.map_in_map
            self._index_limit = max_entries if kind.array_like and keys.is_int else 0
            if not (self._keyless or self._outer or values.ncpus):
                self._fast = FastPath.build(ref, key_dtype, value_dtype, self._index_limit, _fallbacks(self),
                                            in_c=kind in (MapType.HASH, MapType.ARRAY, MapType.LRU_HASH))
                if self._fast is not None:
                    self.__dict__.update(self._fast.dunders)
            # published last: other threads read these without the lock
            self._keys, self._values = keys, values
            return keys, values

    # ---- pinning and reuse -------------------------------------------

    def pin(self, path: str) -> None:
        """Pin in a bpffs at ``path`` so the map outlives this process."""
        self._check()
        what = f"pinning map {self.name} at {path}"
        if self._ptr is not None:
            previous = lib.bpf_map__pin_path(self._ptr)
            previous = ffi.string(previous) if previous != ffi.NULL else None
            ret = lib.bpf_map__pin(self._ptr, os.fsencode(path))
            if ret < 0:  # libbpf keeps the failed path and would refuse any other one later
                lib.bpf_map__set_pin_path(self._ptr, previous if previous is not None else ffi.NULL)
            fs.check_pin(ret, what, path)
        else:
            with self._fd_ref() as fd:
                fs.check_pin(lib.bpf_obj_pin(fd, os.fsencode(path)), what, path)

    def unpin(self, path: str | None = None) -> None:
        """Remove the pin (``path`` is needed for maps not opened from an object)."""
        self._check()
        if self._ptr is not None:
            c_path = os.fsencode(path) if path else ffi.NULL
            _libbpf.check(lib.bpf_map__unpin(self._ptr, c_path), f"unpinning map {self.name}")
        elif path:
            os.unlink(path)
        else:
            raise ValueError("unpin of a map opened by fd needs the pin path")

    def set_pin_path(self, path: str) -> None:
        """Before load: pin here on load, or reuse the map already pinned here."""
        with self._settable("the pin path"):
            _libbpf.check(lib.bpf_map__set_pin_path(self._ptr, os.fsencode(path)), f"pin path of {self.name}")

    def reuse(self, other: Map | int) -> None:
        """Before load: use an existing map (another Map or an fd) instead of creating one."""
        fd = other.fd if isinstance(other, Map) else int(other)
        with self._settable("reuse"):
            _libbpf.check(lib.bpf_map__reuse_fd(self._ptr, fd), f"reusing fd {fd} for map {self.name}")

    @holding_fd
    def freeze(self) -> None:
        """Make the map read-only to user space for good (programs can still write)."""
        fd = self.fd
        if self._mapping is not None and self._mapping.writable and self._mapping.try_close():
            self._mapping = None  # our own cached writable mapping would make the kernel refuse
        ret = lib.bpf_map_freeze(fd)
        if ret == -errno.EBUSY:
            raise BpfError(f"freezing map {self.name}: a writable view or mmap of it is still alive; "
                           f"drop it (del the array) first", errno.EBUSY)
        _libbpf.check(ret, f"freezing map {self.name}")

    # ---- element access (one syscall per call) ---------------------------

    def _encode_key(self, keys: Layout, key: Any) -> None:
        if self._keyless:
            raise NotSupportedError(f"map {self.name} ({self.type}) has no keys: use push/pop/peek",
                                    errno.EINVAL, feature=f"keys of {self.type} maps")
        keys.encode(key)
        limit = self._index_limit
        if limit and not 0 <= (key if type(key) is int else int(keys.one[0])) < limit:
            raise IndexOutOfRangeError(f"index {int(keys.one[0])} is out of range for {self.type} map "
                                       f"{self.name} (max_entries {limit}: valid 0..{limit - 1})")

    def lookup(self, key: Any) -> Any:
        """The value at ``key`` (KeyNotFoundError if absent); a copy, typed from BTF.

        ``key`` may also be a numpy array of keys (one more dimension than one key,
        see ``pybpf.maps.keyarrays``): then ``(values, found)``, one C loop over the
        keys, zero values and False where a key is absent."""
        fast = self._fast
        if fast is not None:
            found = fast.lookup(key)
            if found is not None:
                return found
        return self._lookup_general(key)

    def _lookup_general(self, key: Any) -> Any:
        if type(key) is np.ndarray and keyarrays.is_key_array(self, key):
            return keyarrays.lookup(self, key)
        return self._lookup(key)

    @holding_fd
    def _lookup(self, key: Any) -> Any:
        fd = self.fd
        keys, values = self._layouts()
        with self._lock:
            self._encode_key(keys, key)
            ret = lib.bpf_map_lookup_elem(fd, keys.ptr, values.ptr)
            if ret < 0:
                raise _libbpf.make_error(-ret, f"lookup in map {self.name}", overrides=LOOKUP_ERRORS)
            return values.decode()

    @holding_fd
    def lookup_raw(self, key: bytes) -> bytes:
        """The value at ``key`` as the kernel writes it (a per-CPU map: every possible CPU's
        value, each padded to 8 bytes), ``key`` given as its exact bytes.

        No decoding, so no numpy: for readers that decode the bytes themselves (a tool's lost
        event counters, read before numpy is wanted). KeyNotFoundError if absent."""
        fd = self.fd
        raw = bytes(key)
        if self.map_type.keyless:
            raise NotSupportedError(f"map {self.name} ({self.type}) has no keys: use push/pop/peek",
                                    errno.EINVAL, feature=f"keys of {self.type} maps")
        if len(raw) != self.key_size:
            raise InvalidArgumentError(f"a key of map {self.name} has {self.key_size} bytes, not {len(raw)}")
        n_cpus = self.n_cpus
        size = ((self.value_size + 7) & ~7) * n_cpus if n_cpus else self.value_size
        value = ffi.new("char[]", max(size, 1))
        ret = lib.bpf_map_lookup_elem(fd, ffi.from_buffer(raw), value)
        if ret < 0:
            raise _libbpf.make_error(-ret, f"lookup in map {self.name}", overrides=LOOKUP_ERRORS)
        return ffi.buffer(value, size)[:]

    def update(self, key: Any, value: Any, flags: str | int = "any") -> None:
        """Set ``key`` to ``value``; ``flags``: ``"any"``, ``"noexist"`` (create only), ``"exist"``.

        With a numpy array of keys, ``value`` holds one value per key (an array or
        sequence): one C loop, in order (``pybpf.maps.keyarrays``)."""
        fast = self._fast
        if fast is not None and type(flags) is str:
            fast_flag = update_flag(flags) if flags in ("any", "noexist", "exist") else None
            if fast_flag is not None and fast.update(key, value, fast_flag):
                return
        self._update_general(key, value, flags)

    def _update_general(self, key: Any, value: Any, flags: str | int) -> None:
        if type(key) is np.ndarray and keyarrays.is_key_array(self, key):
            keyarrays.update(self, key, value, update_flag(flags))
            return
        self._update(key, value, flags)

    @holding_fd
    def _update(self, key: Any, value: Any, flags: str | int) -> None:
        fd = self.fd
        flag = update_flag(flags)
        keys, values = self._layouts()
        if self._outer:
            value = _map_fd(value)
        with self._lock:
            self._encode_key(keys, key)
            values.encode(value)
            ret = lib.bpf_map_update_elem(fd, keys.ptr, values.ptr, flag)
            if ret < 0:
                raise _libbpf.make_error(-ret, f"update of map {self.name}", overrides=UPDATE_ERRORS)

    def delete(self, key: Any) -> Any:
        """Remove ``key`` (KeyNotFoundError if absent). Array maps cannot delete.

        With a numpy array of keys: one C loop; returns a bool array, False where
        a key was absent (no error for those)."""
        fast = self._fast
        if fast is not None and fast.delete is not None and fast.delete(key):
            return None
        if type(key) is np.ndarray and keyarrays.is_key_array(self, key):
            return keyarrays.delete(self, key)
        self._delete(key)
        return None

    @holding_fd
    def _delete(self, key: Any) -> None:
        fd = self.fd
        keys, _ = self._layouts()
        self._refuse_array_delete()
        with self._lock:
            self._encode_key(keys, key)
            ret = lib.bpf_map_delete_elem(fd, keys.ptr)
            if ret < 0:
                raise _libbpf.make_error(-ret, f"delete in map {self.name}", overrides=LOOKUP_ERRORS)

    @holding_fd
    def lookup_and_delete(self, key: Any) -> Any:
        """Remove ``key`` and return the value it had, in one syscall."""
        fd = self.fd
        keys, values = self._layouts()
        self._refuse_array_delete()
        with self._lock:
            self._encode_key(keys, key)
            ret = lib.bpf_map_lookup_and_delete_elem(fd, keys.ptr, values.ptr)
            if ret < 0:
                raise _libbpf.make_error(-ret, f"lookup_and_delete in map {self.name}", overrides=LOOKUP_ERRORS)
            return values.decode()

    def _refuse_array_delete(self) -> None:
        kind = self.map_type
        if kind.array_like and not kind.map_in_map and kind is not MapType.PROG_ARRAY:
            raise NotSupportedError(f"elements of {self.type} map {self.name} always exist and cannot be "
                                    f"deleted; write a zero value instead", errno.EINVAL,
                                    feature=f"delete in {self.type} maps")

    # m[k], m[k] = v, del m[k], k in m: a class-level property hands back this map's own callable
    # (CPython calls what a slot's descriptor returns with the arguments, minus self): the general
    # methods below at first, the compiled fast path's closures once the map exists (_layouts),
    # which save the Python frame of a method between the user's call and the syscall.
    if TYPE_CHECKING:
        def __getitem__(self, key: Any) -> Any: ...
        def __setitem__(self, key: Any, value: Any) -> None: ...
        def __delitem__(self, key: Any) -> None: ...
        def __contains__(self, key: Any) -> bool: ...
    else:
        __getitem__ = property(attrgetter("_getitem"))
        __setitem__ = property(attrgetter("_setitem"))
        __delitem__ = property(attrgetter("_delitem"))
        __contains__ = property(attrgetter("_contains"))

    def _getitem(self, key: Any) -> Any:
        return self.lookup(key)

    def _setitem(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def _delitem(self, key: Any) -> None:
        fast = self._fast
        if fast is not None and fast.delete is not None and fast.delete(key):
            return
        self._delete(key)

    def _contains(self, key: Any) -> bool:
        fast = self._fast
        if fast is not None:
            if fast.contains is not None:
                found = fast.contains(key)
                if found is not None:
                    return found
            elif fast.lookup(key) is not None:
                return True
        return self._contains_general(key)

    def _contains_general(self, key: Any) -> bool:
        if self.map_type is MapType.BLOOM_FILTER:
            return self.might_contain(key)
        try:
            self._lookup(key)
            return True
        except KeyNotFoundError:  # IndexOutOfRangeError included
            return False
        except OverflowError:  # a key the key type cannot hold is not in the map
            return False

    def get(self, key: Any, default: Any = None) -> Any:
        """The value at ``key``, or ``default`` when it has none."""
        try:
            return self.lookup(key)
        except KeyNotFoundError:
            return default

    # ---- iteration and size ------------------------------------------------

    @holding_fd
    def _key_snapshot(self) -> list[Any]:
        # The kernel walk restarts from the first key when the previous one was deleted
        # meanwhile (by a program, LRU eviction, another thread): keep each key once and
        # bound the walk so constant churn cannot make it endless.
        fd = self.fd
        keys, _ = self._layouts()
        if self.map_type.keyless:
            raise NotSupportedError(f"{self.type} map {self.name} has no keys to iterate: use pop()",
                                    errno.EINVAL, feature=f"iterating {self.type} maps")
        size = max(keys.size, 1)
        current = ffi.new("char[]", size)
        following = ffi.new("char[]", size)
        previous: Any = ffi.NULL
        found: list[Any] = []
        seen: set[bytes] = set()
        for _step in range(4 * self.max_entries + 16):
            ret = lib.bpf_map_get_next_key(fd, previous, following)
            if ret == -errno.ENOENT:
                break
            _libbpf.check(ret, f"iterating map {self.name}")
            raw = bytes(ffi.buffer(following, keys.size))
            if raw not in seen:
                seen.add(raw)
                array = np.frombuffer(raw, dtype=keys.dtype)
                found.append(array[0] if not keys.dtype.shape else array.reshape(keys.dtype.shape))
            ffi.memmove(current, following, size)
            previous = current
        return found

    def stacks(self, ids: Iterable[int] | np.ndarray | None = None) -> StackTable:
        """A stack trace map as a :class:`~pybpf.maps.stacks.StackTable`: all stacks, or ``ids``."""
        self._check()
        from pybpf.maps.stacks import read_stacks  # stack trace maps only

        return read_stacks(self, ids)

    def keys(self) -> Iterator[Any]:
        """The keys present when iteration starts (one syscall per key)."""
        return iter(self._key_snapshot())

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs, read with one batch pass where the kernel supports it."""
        keys, values = self.lookup_batch()
        return zip(list(keys), list(values))

    def values(self) -> Iterator[Any]:
        """Every value, in the kernel's key order."""
        _, values = self.lookup_batch()
        return iter(list(values))

    def __len__(self) -> int:
        """max_entries for array maps; otherwise the number of entries now (O(n), see module doc)."""
        if self.map_type.array_like:
            return self.max_entries
        if self.map_type.keyless:
            raise TypeError(f"len() of {self.type} map {self.name} is not known to user space")
        reader = _STREAM_READERS.get(self.map_type)
        if reader is not None:
            raise TypeError(f"{self.type} map {self.name} has no elements to count: read it with "
                            f"{reader.name}")
        with self._fd_ref():
            return batch.count(self)

    def __bool__(self) -> bool:
        return True  # a handle is truthy; counting entries would cost syscalls

    # ---- batches (pybpf.maps.batch) ----------------------------------------------

    @property
    def batch_supported(self) -> bool:
        """Whether the kernel batches lookups of this map (else the batch calls loop per key)."""
        return batch.supported(self, "lookup")

    @holding_fd
    def lookup_batch(self, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every (keys, values) as two numpy arrays; ``chunk`` elements per syscall."""
        return batch.lookup(self, chunk)

    @holding_fd
    def lookup_and_delete_batch(self, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like ``lookup_batch`` but empties the map as it reads."""
        return batch.lookup(self, chunk, delete=True)

    @holding_fd
    def update_batch(self, keys: Any, values: Any, flags: str | int = "any") -> None:
        """Set many keys at once (in order: a later duplicate wins)."""
        batch.update(self, keys, values, update_flag(flags))

    @holding_fd
    def delete_batch(self, keys: Any) -> None:
        """Delete many keys at once; a missing key stops the batch with KeyNotFoundError."""
        self._refuse_array_delete()
        batch.delete(self, keys)

    # ---- zero-copy view --------------------------------------------------

    def view(self) -> np.ndarray:
        """A numpy array over a Python-owned mmap of this BPF_F_MMAPABLE array map.

        Shape ``(max_entries,)``, dtype from BTF, stride the value size rounded
        up to 8; read-only when the map is frozen or read-only to user space.
        The view stays valid after the map and its object are closed.
        """
        if self.map_type is MapType.ARENA:
            return self.arena().view()
        dtype = self.value_dtype
        return self._with_mapping(lambda mapping: mapping.array(dtype))

    def cells(self) -> memoryview:
        """The fastest per-element reads: a typed ``memoryview`` over the same mmap as ``view()``.

        ``cells[i]`` is element ``i`` as a Python int or float (``cells[i, j]`` for
        array values), read live from the map's memory, with no numpy scalar made
        per read (about a third of a ``view()[i]`` read's cost); writable unless the map
        is read-only. For values of plain integer/float types (or arrays of them)
        whose size is a multiple of 8 bytes: the kernel lays elements 8-byte
        aligned, and a memoryview cannot skip padding (use ``view()`` for the rest).
        Like ``view()``, it keeps the mapping alive after the map is closed; release
        it (``del``, or ``with m.cells() as c:``) to let the mapping go.
        """
        self._check_mmapable()
        dtype = self.value_dtype
        base = dtype.base if dtype.shape else dtype
        fmt = _CELL_FORMATS.get((base.kind, base.itemsize)) if base.byteorder in "=|<" else None
        if fmt is None or self.value_size % 8:
            raise NotSupportedError(
                f"map {self.name}: cells() needs values of plain integer or float types whose size is a "
                f"multiple of 8 bytes (elements sit 8 bytes apart in the mapping); this map's value is "
                f"{dtype} ({self.value_size} B): use view()", errno.EINVAL, feature="cells()")
        shape = [self.max_entries, *dtype.shape]
        return self._with_mapping(lambda mapping: mapping.cells(fmt, shape))

    def _check_mmapable(self) -> None:
        self._check()
        if self.map_type is not MapType.ARRAY or not self.flags & MapFlag.MMAPABLE:
            raise NotSupportedError(
                f"map {self.name} ({self.type}) cannot be viewed: only array maps created with "
                f"BPF_F_MMAPABLE can be mmapped; read it with lookup_batch() instead",
                errno.EINVAL, feature="BPF_F_MMAPABLE")

    def _with_mapping(self, make: Callable[[MappedMap], Any]) -> Any:
        """``make(mapping)`` with the fd held and the mapping lock taken (what view()/cells() export)."""
        self._check_mmapable()
        # read before the mapping lock (they may take the object's), then the fd held for the mmap
        sizes, flags = (self.value_size, self.max_entries), self.flags
        with self._fd_ref() as fd:
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                # mmap(MAP_SHARED) of a read-only fd loses VM_SHARED, which bpf maps require
                raise NotSupportedError(
                    f"map {self.name} was opened read-only (BPF_F_RDONLY): the kernel cannot mmap a "
                    f"read-only map fd; read it with lookup_batch() instead", errno.EINVAL,
                    feature="mmap of a read-only map fd")
            with self._mapping_lock:  # close() releases the mapping under it: export first, or refuse
                if self._closed:
                    raise ClosedError(f"map {self.name}")
                return make(self._mapped(fd, *sizes, flags))

    def _mapped(self, fd: int, value_size: int, max_entries: int, flags: int) -> MappedMap:
        """This map's mapping, made on first use (the fd and ``_mapping_lock`` held)."""
        if self._mapping is None or self._mapping.closed:
            what = f"map {self.name}"
            args = (fd, value_size, max_entries)
            if flags & MapFlag.RDONLY:
                self._mapping = MappedMap(*args, writable=False, what=what)
            else:
                try:
                    self._mapping = MappedMap(*args, writable=True, what=what)
                except BpfError:  # frozen: the kernel refuses a writable mapping
                    self._mapping = MappedMap(*args, writable=False, what=what)
        return self._mapping

    # ---- constructors of maps this handle owns ---------------------------

    @classmethod
    def create(cls, map_type: str | int, *,
               key_dtype: DTypeLike = None, key_size: int | None = None,
               value_dtype: DTypeLike = None, value_size: int | None = None, max_entries: int,
               flags: int | str | Iterable[str] = 0, name: str = "",
               inner_map: Map | int | None = None, map_extra: int = 0) -> Map:
        """A new map made with ``bpf_map_create`` (no BTF: give dtypes to get typed values).

        ``map_type`` is a name (``"hash"``, ``"array"``...) or number; ``flags``
        an int or names (``"mmapable"``, ``"no_prealloc"``...); ``inner_map`` is
        the template of an ``array_of_maps``/``hash_of_maps``. An ``lpm_trie``
        gets ``BPF_F_NO_PREALLOC``, which the kernel requires.
        """
        type_num = MapType.parse(map_type)
        k_size = element_size(key_dtype, key_size, "key")
        v_size = element_size(value_dtype, value_size, "value")
        flag = parse_flags(flags)
        if type_num is MapType.LPM_TRIE:
            flag |= MapFlag.NO_PREALLOC
        check_map_name(name)
        if max_entries <= 0 and not type_num.sized_in_bytes:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        inner_fd = inner_map.fd if isinstance(inner_map, Map) else int(inner_map or 0)
        opts = _libbpf.new_opts("struct bpf_map_create_opts", map_flags=flag, map_extra=map_extra,
                                inner_map_fd=inner_fd)
        type_label = type_num.c_name
        from pybpf.kernel.info import map_flag_names  # kernel.info: on a map's first info read

        fd = _libbpf.check(lib.bpf_map_create(type_num, name.encode() or ffi.NULL, k_size, v_size,
                                              max_entries, opts),
                           f"creating {type_label} map {name!r} (key {k_size} B, value {v_size} B, "
                           f"max_entries {max_entries}, flags {map_flag_names(flag)})")
        try:
            return cls.from_fd(fd, dup=False, key_dtype=key_dtype, value_dtype=value_dtype)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_fd(cls, fd: int, *, dup: bool = True,
                key_dtype: DTypeLike = None,
                value_dtype: DTypeLike = None) -> Map:
        """Wrap a map fd; with ``dup`` (the default) the caller keeps its own fd."""
        try:
            own = os.dup(fd) if dup else fd
        except OSError as exc:
            raise BpfError(f"fd {fd} is not open", exc.errno) from None
        try:
            from pybpf.kernel.info import map_info

            require_map_fd(own, fd)
            info = map_info(own)
            btf = load_kernel_btf(info.btf_id) if info.btf_id else None
            return cls(name=info.name or f"id:{info.id}", fd=own, btf=btf, key_type_id=info.btf_key_type_id,
                       value_type_id=info.btf_value_type_id, key_dtype=key_dtype,
                       value_dtype=value_dtype, info=info)
        except BaseException:
            os.close(own)
            raise

    @classmethod
    def from_pin(cls, path: str, *,
                 key_dtype: DTypeLike = None, value_dtype: DTypeLike = None) -> Map:
        """Open the map pinned at ``path`` in a bpffs."""
        fd = lib.bpf_obj_get(os.fsencode(path))
        if fd < 0:  # the pin's mode, a missing pin, or libbpf's reason
            raise fs.pin_open_error(path, -fd, f"opening pinned map {path}")
        return cls.from_fd(fd, dup=False, key_dtype=key_dtype, value_dtype=value_dtype)

    @classmethod
    def from_id(cls, map_id: int, *,
                key_dtype: DTypeLike = None, value_dtype: DTypeLike = None) -> Map:
        """Open the map with kernel id ``map_id`` (needs CAP_SYS_ADMIN)."""
        fd = _libbpf.check(lib.bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}",
                           capability="CAP_SYS_ADMIN",
                           overrides={errno.ENOENT: lambda w, e, l: BpfError(f"{w}: no such map", e)})
        return cls.from_fd(fd, dup=False, key_dtype=key_dtype, value_dtype=value_dtype)

    # ---- queue / stack -------------------------------------------------

    def _require_keyless(self, op: str, kinds: tuple[str, ...] = ("queue", "stack")) -> None:
        if self.type not in kinds:
            raise NotSupportedError(f"{op}() is for {' and '.join(kinds)} maps; map {self.name} is a "
                                    f"{self.type}", errno.EINVAL, feature=op)

    @holding_fd
    def push(self, value: Any, *, overwrite: bool = False) -> None:
        """Add ``value``; when full raise MapFullError, or with ``overwrite`` drop the oldest."""
        fd = self.fd
        self._require_keyless("push", ("queue", "stack", "bloom_filter"))
        _, values = self._layouts()
        with self._lock:
            values.encode(value)
            ret = lib.bpf_map_update_elem(fd, ffi.NULL, values.ptr, 2 if overwrite else 0)
            if ret < 0:
                raise _libbpf.make_error(-ret, f"push to {self.type} map {self.name}", overrides=UPDATE_ERRORS)

    @holding_fd
    def _take(self, op: str, remove: bool) -> Any:
        fd = self.fd
        self._require_keyless(op)
        _, values = self._layouts()
        call = lib.bpf_map_lookup_and_delete_elem if remove else lib.bpf_map_lookup_elem
        with self._lock:
            ret = call(fd, ffi.NULL, values.ptr)
            if ret < 0:
                raise _libbpf.make_error(-ret, f"{op} from {self.type} map {self.name}", overrides={
                    errno.ENOENT: lambda w, e, l: KeyNotFoundError(f"{w}: the {self.type} is empty", e)})
            return values.decode()

    def pop(self) -> Any:
        """Remove and return the next value (oldest for a queue, newest for a stack)."""
        return self._take("pop", True)

    def peek(self) -> Any:
        """The value ``pop()`` would return, left in place."""
        return self._take("peek", False)

    @holding_fd
    def might_contain(self, value: Any) -> bool:
        """Bloom filter: False if ``value`` was certainly never pushed, True if it may have been."""
        fd = self.fd
        self._require_keyless("might_contain", ("bloom_filter",))
        _, values = self._layouts()
        with self._lock:
            values.encode(value)
            ret = lib.bpf_map_lookup_elem(fd, ffi.NULL, values.ptr)
        if ret == -errno.ENOENT:
            return False
        _libbpf.check(ret, f"bloom filter lookup in map {self.name}")
        return True

    # ---- map-in-map ----------------------------------------------------

    def _require_outer(self, op: str) -> None:
        if not self.map_type.map_in_map:
            raise NotSupportedError(f"{op}() is for array_of_maps/hash_of_maps; map {self.name} is a "
                                    f"{self.type}", errno.EINVAL, feature=op)

    def set_inner(self, key: Any, inner: Map | int) -> None:
        """Store map ``inner`` (a Map or a map fd) at ``key`` of this map-in-map."""
        self._require_outer("set_inner")
        self.update(key, inner)

    def inner_id(self, key: Any) -> int:
        """The kernel id of the inner map at ``key``."""
        self._require_outer("inner_id")
        return int(self.lookup(key))

    def inner(self, key: Any, **dtypes: Any) -> Map:
        """A new handle (close it) on the inner map at ``key``."""
        return type(self).from_id(self.inner_id(key), **dtypes)

@dataclass(frozen=True)
class StreamReader:
    """The reader class of a stream map type (registered by :mod:`pybpf.events`)."""

    name: str                       # as users spell it: "pybpf.RingBuffer"
    factory: Callable[..., Any]


_STREAM_READERS: dict[MapType, StreamReader] = {}


def register_stream_reader(map_type: MapType, name: str, factory: Callable[..., Any]) -> None:
    """Called by each event reader module for the map type it reads."""
    _STREAM_READERS[map_type] = StreamReader(name, factory)


_CELL_FORMATS = {("u", 1): "B", ("i", 1): "b", ("u", 2): "H", ("i", 2): "h", ("u", 4): "I", ("i", 4): "i",
                 ("u", 8): "Q", ("i", 8): "q", ("f", 4): "f", ("f", 8): "d", ("b", 1): "?"}


def _fallbacks(m: Map) -> dict[str, Any]:
    """The general per-key paths, for the fast path's closures (a weak reference: no cycle)."""
    owner = weakref.ref(m)

    def getitem(key: Any) -> Any:
        return _alive(owner)._lookup_general(key)
    getitem.__doc__ = Map.lookup.__doc__

    def setitem(key: Any, value: Any) -> None:
        _alive(owner)._update_general(key, value, "any")

    def delitem(key: Any) -> None:
        _alive(owner)._delete(key)

    def contains(key: Any) -> bool:
        return _alive(owner)._contains_general(key)

    return {"getitem": getitem, "setitem": setitem, "delitem": delitem, "contains": contains}


def _alive(owner: weakref.ref[Map]) -> Map:
    m = owner()
    if m is None:  # pragma: no cover - a closure outliving its map is only reachable through the map
        raise ClosedError("map")
    return m


def _map_fd(value: Any) -> Any:
    """A map-in-map value: the inner map's fd, from a Map or an int fd."""
    if isinstance(value, Map):
        return value.fd
    return value

