"""Key arrays: ``m.lookup(keys)``, ``m.update(keys, values)``, ``m.delete(keys)`` with numpy keys.

Batch operations walk the whole map; a caller who holds a sparse set of keys
(pids, flows) wants exactly those. These take the keys as one numpy array
and run one C loop over them (``pybpf._sys.fast``): one ``bpf()`` syscall per
key and no Python per key, with the compiled helpers (an ABI-mode Python loop
without them, same results).

What counts as a key array: an ``np.ndarray`` with one more dimension than
one key (``ndim == 1 + len(key_dtype.shape)``: a 1-d array for integer or
struct keys). A 0-d array, or a ``(4,)`` array for a ``char[4]`` key, is still
one key. Integer arrays of another width are converted (a value out of the
key type's range raises OverflowError before any syscall).

* ``lookup(keys) -> (values, found)``: ``values`` holds ``len(keys)`` values
  (``(n, n_cpus)`` for per-CPU maps), zero where ``found`` (a bool array) is
  False. An index past an array map's end is not found.
* ``update(keys, values, flags)``: in order, a later duplicate wins; the first
  failure raises the per-key error naming the key, with ``processed`` set to
  the number of keys written before it.
* ``delete(keys) -> deleted``: a bool array, False where the key was absent
  (no error for those). Array maps cannot delete, as with one key.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from pybpf._sys import fast
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.fd import holding_fd
from pybpf.errors import NotSupportedError
from pybpf.maps.checks import LOOKUP_ERRORS, UPDATE_ERRORS


class Map(Protocol):
    """What the key-array calls use of a ``pybpf.Map`` (kept a protocol: no maps.map import cycle)."""

    name: str
    _outer: bool

    @property
    def fd(self) -> int: ...
    @property
    def map_type(self) -> Any: ...
    @property
    def key_dtype(self) -> np.dtype: ...
    def _fd_ref(self) -> Any: ...
    def _layouts(self) -> tuple[Any, Any]: ...
    def _refuse_array_delete(self) -> None: ...

__all__ = ["delete", "is_key_array", "lookup", "update"]


def is_key_array(m: Map, key: Any) -> bool:
    """Whether ``key`` is an array of keys of ``m`` rather than one key."""
    return type(key) is np.ndarray and key.ndim == 1 + len(m.key_dtype.shape)


def _keys(m: Map, keys: np.ndarray) -> tuple[Any, np.ndarray, int]:
    if m.map_type.keyless:
        raise NotSupportedError(f"map {m.name} ({m.map_type}) has no keys: use push/pop/peek",
                                feature=f"keys of {m.map_type} maps")
    key_layout, value_layout = m._layouts()
    n = int(keys.shape[0])
    raw = key_layout.encode_many(keys, n)
    return (key_layout, value_layout), raw, n


def _error(m: Map, ret: int, index: int, keys: np.ndarray, verb: str, overrides: Any) -> Exception:
    err = _libbpf.make_error(-ret, f"{verb} of keys[{index}] ({keys[index]!r}) in map {m.name}",
                             overrides=overrides)
    err.processed = index  # type: ignore[attr-defined]
    return err


@holding_fd
def lookup(m: Map, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, found)`` for every key of ``keys``: one C loop, one syscall per key."""
    (key_layout, value_layout), raw, n = _keys(m, keys)
    storage, values = value_layout.empty(n)
    found = np.zeros(n, dtype=np.bool_)
    if n:
        ret, index = fast.lookup_keys(m.fd, raw, storage, found.view(np.uint8), n=n, key_size=key_layout.size,
                                      value_size=value_layout.elem_size)
        if ret < 0:
            raise _error(m, ret, index, keys, "lookup", LOOKUP_ERRORS)
    return values, found


@holding_fd
def update(m: Map, keys: np.ndarray, values: Any, flag: int) -> None:
    """Write value ``i`` at key ``i``, in order; the first failure raises (``processed`` set)."""
    (key_layout, value_layout), raw, n = _keys(m, keys)
    if m._outer:
        raise NotSupportedError(f"map {m.name} ({m.map_type}): set inner maps one key at a time",
                                feature="key arrays of map-in-map maps")
    raw_values = value_layout.encode_many(values, n)
    if len(raw_values) < n * value_layout.elem_size:
        raise ValueError(f"map {m.name}: {len(raw_values) // max(value_layout.elem_size, 1)} values "
                         f"for {n} keys")
    if n:
        ret, index = fast.update_keys(m.fd, raw, raw_values, flag, n=n, key_size=key_layout.size,
                                      value_size=value_layout.elem_size)
        if ret < 0:
            raise _error(m, ret, index, keys, "update", UPDATE_ERRORS)


@holding_fd
def delete(m: Map, keys: np.ndarray) -> np.ndarray:
    """Delete every key; the returned bool array is False where a key was absent."""
    (key_layout, _), raw, n = _keys(m, keys)
    m._refuse_array_delete()
    deleted = np.zeros(n, dtype=np.bool_)
    if n:
        ret, index = fast.delete_keys(m.fd, raw, deleted.view(np.uint8), n=n, key_size=key_layout.size)
        if ret < 0:
            raise _error(m, ret, index, keys, "delete", LOOKUP_ERRORS)
    return deleted
