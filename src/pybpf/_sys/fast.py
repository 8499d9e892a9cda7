"""The hot-path C calls: compiled helpers when the extension is built, ABI-mode cffi otherwise.

``pybpf._sys._fast`` (built from ``_build_fast.py``; see there) is an API-mode
cffi module: its functions are direct C calls, not libffi calls, and take keys
and values by value. When it is absent (no compiler when pybpf was installed)
or disabled with ``PYBPF_NO_EXTENSION=1``, every function here does the same
work through the ABI-mode binding in ``pybpf._sys.libbpf``: same results, same
errors, only slower. ``EXTENSION`` says which one runs.

What is here:

* ``typed(op, key_code[, value_code])``: the compiled typed per-key helper
  (``pb_lookup_u32``...) or None (ABI mode or an unsupported type);
* ``KeyOps``: ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m`` in C (``_keyops.c``), or None;
* ``ring_copy``: the compiled copying reader of a ring buffer's records (None in ABI mode:
  ``pybpf.events.ringreader`` then copies with numpy);
* ``lookup_keys``/``update_keys``/``delete_keys``: one syscall per key of a
  numpy key array, in one C loop (one Python loop in ABI mode); they return
  ``(ret, failed_index)`` with ``ret`` < 0 the ``-errno`` of the first key that
  failed for a reason other than ENOENT.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable
from typing import Any

import numpy as np

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib

__all__ = ["EXTENSION", "MODE", "KeyOps", "delete_keys", "lookup_keys", "ring_copy", "type_code", "typed", "update_keys"]

# the compiled module when pybpf._sys.libbpf binds through it (see there), else the ABI paths below
_xlib: Any = _libbpf._native.lib if _libbpf._native is not None else None

EXTENSION: bool = _xlib is not None
MODE: str = "api" if EXTENSION else "abi"  # cffi's names: compiled (API) or libffi (ABI) calls

# The per-key operations as a CPython type (pybpf._sys._keyops, built with the compiled module;
# see pybpf.maps.fastpath), or None.
KeyOps: Any = None
if _xlib is not None:
    try:
        from pybpf._sys import _keyops  # type: ignore[attr-defined]
        KeyOps = _keyops.KeyOps
    except ImportError:  # not built: the cffi per-key helpers
        KeyOps = None

# pb_ring_copy(data, mask, producer*, pos, size, out, limit, end*, stop_header*) -> records copied
ring_copy: Callable[..., int] | None = getattr(_xlib, "pb_ring_copy", None)

_INT_CODES = {("u", 1): "u8", ("u", 2): "u16", ("u", 4): "u32", ("u", 8): "u64",
              ("i", 1): "i8", ("i", 2): "i16", ("i", 4): "i32", ("i", 8): "i64",
              ("f", 4): "f32", ("f", 8): "f64"}


def type_code(dtype: np.dtype) -> str | None:
    """``u32``, ``i64``, ``f64``... for a native-order scalar dtype the helpers take by value."""
    if dtype.shape or dtype.fields is not None or dtype.byteorder not in "=|<":
        return None
    return _INT_CODES.get((dtype.kind, dtype.itemsize))


def typed(op: str, key_code: str, value_code: str | None = None) -> Callable[..., int] | None:
    """The compiled ``pb_<op>_<key>[_<value>]`` helper, or None (ABI mode, or no such helper).

    ``lookup``: ``(fd, key, value_ptr)``; ``delete``: ``(fd, key)``; ``update``:
    ``(fd, key, value_ptr, flags)``, or ``(fd, key, value, flags)`` with a value code.
    Keys (and typed values) are Python ints/floats or numpy scalars; one the C
    type cannot hold raises OverflowError, one of another type TypeError."""
    if _xlib is None or key_code[0] == "f":
        return None
    name = f"pb_{op}_{key_code}" + (f"_{value_code}" if value_code else "")
    return getattr(_xlib, name, None)


def _sizes(keys: np.ndarray, values: np.ndarray | None, n: int | None,
           key_size: int | None, value_size: int | None) -> tuple[int, int, int]:
    if n is None:
        n = len(keys)
    if key_size is None:
        key_size = keys.nbytes // n if n else 0
    if value_size is None:
        value_size = values.nbytes // n if (n and values is not None) else 0
    if keys.nbytes < n * key_size or (values is not None and values.nbytes < n * value_size):
        raise ValueError(f"buffers too small for {n} keys of {key_size} B / values of {value_size} B")
    return n, key_size, value_size


def _pointers(keys: np.ndarray, values: np.ndarray | None) -> tuple[Any, Any]:
    return ffi.from_buffer(keys), (ffi.from_buffer(values) if values is not None else ffi.NULL)


def lookup_keys(fd: int, keys: np.ndarray, values: np.ndarray, found: np.ndarray, *, n: int | None = None,
                key_size: int | None = None, value_size: int | None = None) -> tuple[int, int]:
    """Look up ``n`` keys (C-contiguous, ``key_size`` bytes each; default: ``len(keys)`` and
    the arrays' bytes per element) into ``values`` (zeroed where absent); ``found[i]`` 1/0.
    Returns ``(keys found, -1)`` or ``(-errno, index)``."""
    n, key_size, value_size = _sizes(keys, values, n, key_size, value_size)
    if found.nbytes < n:
        raise ValueError(f"found mask too small for {n} keys")
    kp, vp = _pointers(keys, values)
    fp = ffi.from_buffer(found)
    failed = ffi.new("size_t *")
    if _xlib is not None:
        ret = int(_xlib.pb_lookup_keys(fd, kp, key_size, n, vp, value_size, fp, failed))
        return (ret, int(failed[0])) if ret < 0 else (ret, -1)
    call, hits = lib.bpf_map_lookup_elem, 0
    for i in range(n):
        ret = call(fd, kp + i * key_size, vp + i * value_size)
        if ret == 0:
            fp[i] = b"\x01"
            hits += 1
        elif ret == -_errno.ENOENT:
            fp[i] = b"\x00"
            ffi.memmove(vp + i * value_size, b"\0" * value_size, value_size)
        else:
            return ret, i
    return hits, -1


def update_keys(fd: int, keys: np.ndarray, values: np.ndarray, flags: int, *, n: int | None = None,
                key_size: int | None = None, value_size: int | None = None) -> tuple[int, int]:
    """Write value ``i`` at key ``i``, in order. Returns ``(n, -1)`` or ``(-errno, index)``."""
    n, key_size, value_size = _sizes(keys, values, n, key_size, value_size)
    kp, vp = _pointers(keys, values)
    failed = ffi.new("size_t *")
    if _xlib is not None:
        ret = int(_xlib.pb_update_keys(fd, kp, key_size, n, vp, value_size, flags, failed))
        return (ret, int(failed[0])) if ret < 0 else (ret, -1)
    call = lib.bpf_map_update_elem
    for i in range(n):
        ret = call(fd, kp + i * key_size, vp + i * value_size, flags)
        if ret < 0:
            return ret, i
    return n, -1


def delete_keys(fd: int, keys: np.ndarray, deleted: np.ndarray, *, n: int | None = None,
                key_size: int | None = None) -> tuple[int, int]:
    """Delete every key; ``deleted[i]`` 1/0 (0: it was absent). Returns
    ``(keys deleted, -1)`` or ``(-errno, index)``."""
    n, key_size, _ = _sizes(keys, None, n, key_size, 0)
    if deleted.nbytes < n:
        raise ValueError(f"deleted mask too small for {n} keys")
    kp, _ = _pointers(keys, None)
    dp = ffi.from_buffer(deleted)
    failed = ffi.new("size_t *")
    if _xlib is not None:
        ret = int(_xlib.pb_delete_keys(fd, kp, key_size, n, dp, failed))
        return (ret, int(failed[0])) if ret < 0 else (ret, -1)
    call, hits = lib.bpf_map_delete_elem, 0
    for i in range(n):
        ret = call(fd, kp + i * key_size)
        if ret == 0:
            dp[i] = b"\x01"
            hits += 1
        elif ret == -_errno.ENOENT:
            dp[i] = b"\x00"
        else:
            return ret, i
    return hits, -1
