"""Operations that only some map types have, mixed into ``Map``.

Queue and stack maps have no keys: ``push`` is an update with a NULL key
(``overwrite`` = ``BPF_EXIST``, which drops the oldest element when full),
``pop`` a lookup-and-delete with a NULL key, ``peek`` a lookup with a NULL
key; an empty one raises ``KeyNotFoundError``. Bloom filters take ``push``
and answer ``might_contain(value)`` (also ``value in m``). Map-in-map maps take an inner
map's fd on update and give its kernel id on lookup: ``set_inner`` accepts a
``Map`` or an fd, ``inner_id``/``inner`` read it back.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import KeyNotFoundError, NotSupportedError
from pybpf._sys.fd import holding_fd
from pybpf.maps.checks import UPDATE_ERRORS

if TYPE_CHECKING:
    import threading

    from pybpf.maps.layout import Layout
    from pybpf.maps.map import Map

__all__ = ["KindOps"]


class KindOps:
    """push/pop/peek (queue, stack) and set_inner/inner (map-in-map) for ``Map``."""

    if TYPE_CHECKING:  # what the mixin uses of Map
        name: str
        _lock: threading.Lock

        @property
        def fd(self) -> int: ...
        @property
        def type(self) -> str: ...
        def _layouts(self) -> tuple[Layout, Layout]: ...
        def lookup(self, key: Any) -> Any: ...
        def update(self, key: Any, value: Any, flags: str | int = "any") -> None: ...
        @classmethod
        def from_id(cls, map_id: int, *, key_dtype: Any = None, value_dtype: Any = None) -> Map: ...

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
