"""The per-key fast path: integer keys and plain scalar values, one syscall, no lock.

A Map's general path encodes keys and values through numpy layouts into one
buffer pair guarded by a lock (cffi releases the GIL during the syscall, so a
shared buffer needs one). For the common case, an integer key and an integer
or float value, each call here is as short as Python allows:

* with the compiled helpers (``pybpf._sys.fast``, cffi API mode): the key goes
  *by value* into ``pb_lookup_<K>(fd, key, value*)`` (cffi converts and
  range-checks a Python int or numpy integer scalar in C), the value comes
  back through a per-thread numpy buffer as a numpy scalar; an update passes
  the value by value too (``pb_update_<K>_<V>``): no buffer write from Python;
* without them (ABI mode): the key is stored through a per-thread typed C
  pointer, then ``bpf_map_lookup_elem`` through libffi.

Calls hold ``ref`` (``FdRef``) while they use its fd, so a close in another
thread waits for them. Anything unusual (a key or value of another type, out
of range, any error) returns None/False and the general path redoes the call,
raising the same typed errors as always (an array map's index past the end,
for one, comes back ENOENT here and IndexOutOfRangeError there).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from pybpf._sys import fast
from pybpf._sys.fd import FdRef
from pybpf._sys.libbpf import ffi, lib

__all__ = ["FastPath"]

_ENOENT = errno.ENOENT
_C_INTS = {1: "int8_t", 2: "int16_t", 4: "int32_t", 8: "int64_t"}


def _c_type(dtype: np.dtype) -> str | None:
    if dtype.shape or dtype.byteorder not in "=|<":
        return None
    if dtype.kind in "iu" and dtype.itemsize in _C_INTS:
        return ("u" if dtype.kind == "u" else "") + _C_INTS[dtype.itemsize]
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return "float" if dtype.itemsize == 4 else "double"
    return None


class _Buffers:
    """One thread's key and value buffers."""

    __slots__ = ("key", "value", "value_ptr")

    def __init__(self, key_ctype: str | None, value_dtype: np.dtype) -> None:
        self.key: Any = ffi.new(f"{key_ctype} *") if key_ctype else None
        self.value = np.zeros(1, dtype=value_dtype)   # value[0] is a numpy scalar (a copy)
        self.value_ptr = ffi.from_buffer(self.value)


class FastPath:
    """``lookup(key) -> value | None``, ``update(key, value, flag) -> bool``,
    ``delete(key) -> bool`` and ``contains(key) -> bool | None`` (None: ask the
    general path) for one map; ``delete`` and ``contains`` are None in ABI mode."""

    __slots__ = ("compiled", "contains", "delete", "dunders", "keyops", "lookup", "update")

    def __init__(self, lookup: Callable[[Any], Any], update: Callable[[Any, Any, int], bool],
                 delete: Callable[[Any], bool] | None, contains: Callable[[Any], bool | None] | None,
                 compiled: bool) -> None:
        self.lookup = lookup
        self.update = update
        self.delete = delete
        self.contains = contains
        self.compiled = compiled
        # m[k], m[k] = v, del m[k], k in m as single callables (compiled mode; see Map.__getitem__)
        self.dunders: dict[str, Callable[..., Any]] = {}
        self.keyops: Any = None  # the C per-key state behind the dunders, when they are C

    def close(self) -> None:
        """Before the map's fd goes: the C dunders send every later call to the general path."""
        if self.keyops is not None:
            self.keyops.close()

    @classmethod
    def build(cls, ref: FdRef, key_dtype: np.dtype, value_dtype: np.dtype, limit: int,
              fallbacks: dict[str, Callable[..., Any]] | None = None, *, in_c: bool = False) -> FastPath | None:
        """``limit`` > 0 for array maps (valid keys 0..limit-1); None when the types don't qualify.
        ``fallbacks`` (``getitem``, ``setitem``, ``delitem``, ``contains``: the general paths) make
        the ``dunders``: each one callable from the user's call to the syscall, falling back to the
        general path for anything but a plain success. ``in_c``: the map is an array or hash map,
        whose calls never sleep: the dunders may be the C type (``_keyops.c``), which holds the GIL
        through the syscall."""
        key_ctype = _c_type(key_dtype)
        if key_ctype is None or key_dtype.kind not in "iu" or _c_type(value_dtype) is None:
            return None
        key_code, value_code = fast.type_code(key_dtype), fast.type_code(value_dtype)
        if key_code is not None and value_code is not None and fast.EXTENSION:
            path = cls._compiled(ref, key_code, value_code, value_dtype)
            if fallbacks is not None:
                path.keyops = cls._keyops(ref, key_dtype, value_dtype, fallbacks) if in_c else None
                if path.keyops is not None:
                    ops = path.keyops
                    path.dunders = {"_getitem": ops.op("getitem"), "_setitem": ops.op("setitem"),
                                    "_delitem": ops.op("delitem"), "_contains": ops.op("contains"),
                                    "lookup": ops.op("getitem")}
                else:
                    path.dunders = cls._dunders(ref, key_code, value_code, value_dtype, fallbacks)
            return path
        return cls._abi(ref, key_ctype, value_dtype, limit)

    @staticmethod
    def _keyops(ref: FdRef, key_dtype: np.dtype, value_dtype: np.dtype,
                fallbacks: dict[str, Callable[..., Any]]) -> Any:
        """The C per-key state of this map, or None (not built, or a numpy whose scalars it cannot make)."""
        if fast.KeyOps is None:
            return None
        probe = np.array([-2.5 if value_dtype.kind == "f" else 0x5A], dtype=value_dtype)
        try:
            ops = fast.KeyOps(ref.fd, key_dtype.itemsize, key_dtype.kind == "i", value_dtype.kind,
                              value_dtype.itemsize, type(probe[0]), fallbacks["getitem"], fallbacks["setitem"],
                              fallbacks["delitem"], fallbacks["contains"])
            made = ops.scalar(probe.tobytes())
        except (TypeError, ValueError):  # a scalar type it cannot make (another numpy): the cffi path
            return None
        if type(made) is not type(probe[0]) or made != probe[0]:  # numpy's scalar layout, checked
            return None
        return ops

    @staticmethod
    def _dunders(ref: FdRef, key_code: str, value_code: str, value_dtype: np.dtype,
                 fallbacks: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
        """The per-key dunders, each as little Python as a call can be: buffers, fd hold, C call."""
        lookup_c = fast.typed("lookup", key_code)
        update_c = fast.typed("update", key_code, value_code)
        delete_c = fast.typed("delete", key_code)
        assert lookup_c is not None and update_c is not None and delete_c is not None
        local = threading.local()
        users = ref.users
        finish = ref.finish
        slow_get, slow_set = fallbacks["getitem"], fallbacks["setitem"]
        slow_del, slow_has = fallbacks["delitem"], fallbacks["contains"]

        def buffers() -> _Buffers:
            local.buffers = _Buffers(None, value_dtype)
            return local.buffers  # type: ignore[no-any-return]

        def getitem(key: Any) -> Any:
            try:
                b = local.buffers
            except AttributeError:
                b = buffers()
            users.append(None)
            try:
                ret = 1 if ref.closing else lookup_c(ref.fd, key, b.value_ptr)
            except (TypeError, OverflowError):  # not an integer, or out of the key type's range
                ret = 1
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()
            if ret == 0:
                return b.value[0]
            return slow_get(key)

        def setitem(key: Any, value: Any) -> None:
            users.append(None)
            try:
                ret = 1 if ref.closing else update_c(ref.fd, key, value, 0)
            except (TypeError, OverflowError):
                ret = 1
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()
            if ret != 0:
                slow_set(key, value)

        def delitem(key: Any) -> None:
            users.append(None)
            try:
                ret = 1 if ref.closing else delete_c(ref.fd, key)
            except (TypeError, OverflowError):
                ret = 1
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()
            if ret != 0:
                slow_del(key)

        def contains(key: Any) -> bool:
            try:
                b = local.buffers
            except AttributeError:
                b = buffers()
            users.append(None)
            try:
                ret = 1 if ref.closing else lookup_c(ref.fd, key, b.value_ptr)
            except (TypeError, OverflowError):
                ret = 1
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()
            if ret == 0:
                return True
            if ret == -_ENOENT:
                return False
            return slow_has(key)  # type: ignore[no-any-return]

        # m.lookup(k) too: an instance attribute shadows the method (functions are non-data descriptors)
        getitem.__doc__ = fallbacks["getitem"].__doc__
        return {"_getitem": getitem, "_setitem": setitem, "_delitem": delitem, "_contains": contains,
                "lookup": getitem}

    @classmethod
    def _compiled(cls, ref: FdRef, key_code: str, value_code: str, value_dtype: np.dtype) -> FastPath:
        lookup_c = fast.typed("lookup", key_code)
        update_c = fast.typed("update", key_code, value_code)
        delete_c = fast.typed("delete", key_code)
        assert lookup_c is not None and update_c is not None and delete_c is not None
        local = threading.local()
        users = ref.users  # registering in it keeps the fd open while the call runs (fd.py)
        finish = ref.finish

        def buffers() -> _Buffers:
            local.buffers = _Buffers(None, value_dtype)
            return local.buffers  # type: ignore[no-any-return]

        def lookup(key: Any) -> Any:
            try:
                b = local.buffers
            except AttributeError:
                b = buffers()
            users.append(None)
            try:
                if ref.closing or lookup_c(ref.fd, key, b.value_ptr):
                    return None
            except (TypeError, OverflowError):  # not an integer, or out of the key type's range
                return None
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()
            return b.value[0]

        def update(key: Any, value: Any, flag: int) -> bool:
            users.append(None)
            try:
                return not ref.closing and update_c(ref.fd, key, value, flag) == 0
            except (TypeError, OverflowError):  # the general path explains the refusal
                return False
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()

        def delete(key: Any) -> bool:
            users.append(None)
            try:
                return not ref.closing and delete_c(ref.fd, key) == 0
            except (TypeError, OverflowError):
                return False
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()

        def contains(key: Any) -> bool | None:
            try:
                b = local.buffers
            except AttributeError:
                b = buffers()
            users.append(None)
            try:
                if ref.closing:
                    return None
                ret = lookup_c(ref.fd, key, b.value_ptr)
            except (TypeError, OverflowError):
                return None
            finally:
                users.pop()
                if ref.closing and not users:
                    finish()
            return True if ret == 0 else False if ret == -_ENOENT else None

        return cls(lookup, update, delete, contains, compiled=True)

    @classmethod
    def _abi(cls, ref: FdRef, key_ctype: str, value_dtype: np.dtype, limit: int) -> FastPath:
        local = threading.local()
        users = ref.users
        lookup_elem, update_elem = lib.bpf_map_lookup_elem, lib.bpf_map_update_elem
        int_range = None
        if value_dtype.kind in "iu":
            info = np.iinfo(value_dtype)
            int_range = (int(info.min), int(info.max))

        def buffers() -> _Buffers:
            try:
                return local.buffers  # type: ignore[no-any-return]
            except AttributeError:
                local.buffers = _Buffers(key_ctype, value_dtype)
                return local.buffers  # type: ignore[no-any-return]

        def lookup(key: Any) -> Any:
            if type(key) is not int or (limit and not 0 <= key < limit):
                return None
            try:
                b = local.buffers  # inlined buffers(): this is the hot path
            except AttributeError:
                b = buffers()
            try:
                b.key[0] = key
            except OverflowError:
                return None
            users.append(None)
            try:
                if ref.closing or lookup_elem(ref.fd, b.key, b.value_ptr):
                    return None
            finally:
                users.pop()
                if ref.closing and not users:
                    ref.finish()
            return b.value[0]

        def update(key: Any, value: Any, flag: int) -> bool:
            if type(key) is not int or (limit and not 0 <= key < limit):
                return False
            kind = type(value)
            if int_range is not None:
                # floats and out-of-range ints go to the general path, which explains the refusal
                if kind is not int or not int_range[0] <= value <= int_range[1]:
                    return False
            elif kind is not int and kind is not float:
                return False
            b = buffers()
            try:
                b.key[0] = key
            except OverflowError:
                return False
            b.value[0] = value
            users.append(None)
            try:
                return not ref.closing and update_elem(ref.fd, b.key, b.value_ptr, flag) == 0
            finally:
                users.pop()
                if ref.closing and not users:
                    ref.finish()

        return cls(lookup, update, None, None, compiled=False)
