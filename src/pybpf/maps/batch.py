"""Batch map operations: one syscall per chunk of elements, into numpy arrays.

``lookup`` hands the kernel pointers into numpy arrays (``ffi.from_buffer``)
so it writes keys and values straight into the arrays that are returned; no
Python code runs per element. The kernel walks a hash map bucket by bucket:
a call returns whole buckets only, ``ENOSPC`` when the next bucket alone is
larger than the room left (the chunk is doubled and the call retried), and
``ENOENT`` together with the last elements at the end. The opaque resume
token (``in_batch``/``out_batch``) is a bucket index for hash maps and the
last key for array maps; a buffer of ``max(key_size, 8)`` holds either.

Map types without a kernel batch (``ENOTSUPP``, e.g. LPM tries) get the same
results from one syscall per key; ``supported(map, op)`` (and
``Map.batch_supported``) says which path a map takes, and the fallback logs
one debug line per map and operation on the ``pybpf.maps.map`` logger.

A failed ``update``/``delete`` batch raises with ``processed`` set to the
number of elements applied before the failing one (the kernel applies them
in order and stops at the first error). The kernel's batch update accepts no
``noexist``/``exist`` flag (EINVAL), so updates with those flags loop per
key, with the same results.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pybpf.logs import active
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, InvalidArgumentError, KeyNotFoundError, NotSupportedError
from pybpf._sys.fd import FdRef, holding_fd
from pybpf.maps.layout import Layout
from pybpf.maps.checks import UNSUPPORTED, UPDATE_ERRORS, IndexOutOfRangeError

if TYPE_CHECKING:
    import threading

    from pybpf.kinds import MapType

__all__ = ["DEFAULT_CHUNK", "BatchTarget", "count", "delete", "lookup", "supported", "update"]


class BatchTarget(Protocol):
    """What batch operations need of a map (``pybpf.Map`` is one): its fd, its kind, its
    key/value codecs, the lock around its shared buffers, and a cache of which batch
    operations the kernel has for it."""

    name: str

    @property
    def fd(self) -> int:
        """The map's fd."""

    @property
    def type(self) -> str:
        """libbpf's name of the map type."""

    @property
    def map_type(self) -> MapType:
        """The map's kind."""

    @property
    def max_entries(self) -> int:
        """The map's max_entries."""

    @property
    def element_lock(self) -> threading.Lock:
        """The lock around the shared key/value buffers."""

    @property
    def batch_support(self) -> dict[str, bool]:
        """Which batch operations the kernel has for this map."""

    def layouts(self) -> tuple[Layout, Layout]:
        """The key and value codecs."""

    def key_snapshot(self) -> list[Any]:
        """Every key, read once."""

    def fd_ref(self) -> FdRef:
        """The owner of the map's fd."""


DEFAULT_CHUNK = 4096  # hash maps; array maps are read in one call
_OPS = ("lookup", "lookup_and_delete", "update", "delete")


def _ptr(array: np.ndarray, offset: int = 0) -> Any:
    # The array keeps the memory alive; the pointer is only used during the call.
    return ffi.cast("char *", ffi.from_buffer(array)) + offset


@holding_fd
def supported(m: BatchTarget, op: str) -> bool:
    """Whether the kernel has a batch ``op`` for this map (probed once, with count 0)."""
    found = m.batch_support.get(op)
    if found is None:
        fd = m.fd
        count = ffi.new("__u32 *", 0)
        token = ffi.new("char[]", 8)
        if op == "lookup":
            ret = lib.bpf_map_lookup_batch(fd, ffi.NULL, token, ffi.NULL, ffi.NULL, count, ffi.NULL)
        elif op == "lookup_and_delete":
            ret = lib.bpf_map_lookup_and_delete_batch(fd, ffi.NULL, token, ffi.NULL, ffi.NULL, count, ffi.NULL)
        elif op == "update":
            ret = lib.bpf_map_update_batch(fd, ffi.NULL, ffi.NULL, count, ffi.NULL)
        elif op == "delete":
            ret = lib.bpf_map_delete_batch(fd, ffi.NULL, count, ffi.NULL)
        else:
            raise ValueError(f"unknown batch operation {op!r}; known: {_OPS}")
        found = -ret not in UNSUPPORTED
        if not found:
            log = active("pybpf.maps.map")
            if log is not None:
                log.debug("map %s (%s): the kernel has no batch %s; looping one syscall per key",
                          m.name, m.type, op)
        m.batch_support[op] = found
    return found


def _opts(elem_flags: int = 0) -> Any:
    return _libbpf.new_opts("struct bpf_map_batch_opts", elem_flags=elem_flags)


def _require_keys(m: BatchTarget, op: str) -> None:
    if m.map_type.keyless:
        raise NotSupportedError(f"{op} of {m.type} map {m.name}: it has no keys; use pop()", errno.EINVAL,
                                feature=f"{op} of {m.type} maps")


class _Growing:
    """Raw storage for keys and values that doubles when full."""

    def __init__(self, keys: Layout, values: Layout, capacity: int) -> None:
        self.keys_layout, self.values_layout = keys, values
        self.capacity = max(capacity, 1)
        self.keys, _ = keys.empty(self.capacity)
        self.values, _ = values.empty(self.capacity)

    def reserve(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, self.capacity * 2)
        keys, _ = self.keys_layout.empty(capacity)
        values, _ = self.values_layout.empty(capacity)
        keys[: self.keys.size] = self.keys
        values[: self.values.size] = self.values
        self.keys, self.values, self.capacity = keys, values, capacity

    def result(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Typed (keys, values) of the first ``n`` elements; compacted if mostly empty."""
        k_layout, v_layout = self.keys_layout, self.values_layout
        keys, values = self.keys, self.values
        if self.capacity > 2 * n + 1024:
            keys = keys[: n * k_layout.elem_size].copy()
            values = values[: n * v_layout.elem_size].copy()
        return k_layout._typed(keys, n) if n else _empty(k_layout), \
            v_layout._typed(values, n) if n else _empty(v_layout)


def _empty(layout: Layout) -> np.ndarray:
    return np.zeros((0,) + layout.shape, dtype=layout.dtype)


@holding_fd
def lookup(m: BatchTarget, chunk: int | None = None, *, delete: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of every element, optionally deleting them as they are read."""
    op = "lookup_and_delete" if delete else "lookup"
    fd = m.fd
    _require_keys(m, f"{op}_batch")
    if delete and m.map_type.array_like:
        raise NotSupportedError(f"lookup_and_delete_batch of {m.type} map {m.name}: array elements cannot "
                                f"be deleted", errno.EINVAL, feature=f"deleting from {m.type} maps")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                              or not 0 < int(chunk) <= 0xFFFF_FFFF):
        raise InvalidArgumentError(f"chunk must be a number of elements in 1..4294967295 (the kernel's "
                                   f"u32), got {chunk!r}")
    keys, values = m.layouts()
    max_entries = m.max_entries
    if chunk is not None:  # a batch never returns more than the map holds: no bigger buffers
        chunk = min(int(chunk), max(max_entries, 1))
    if not supported(m, op):
        return _lookup_per_key(m, keys, values, delete)
    if m.map_type.array_like:
        chunk = chunk or max_entries
        store = _Growing(keys, values, max_entries)
    else:
        chunk = chunk or min(DEFAULT_CHUNK, max_entries)
        store = _Growing(keys, values, min(max_entries, max(chunk, 256)))
    call = lib.bpf_map_lookup_and_delete_batch if delete else lib.bpf_map_lookup_batch
    token_size = max(keys.size, 8)
    in_token, out_token = ffi.new("char[]", token_size), ffi.new("char[]", token_size)
    in_batch: Any = ffi.NULL
    count = ffi.new("__u32 *")
    opts = _opts()
    n = 0
    while True:
        store.reserve(n + chunk)
        count[0] = chunk
        ret = call(fd, in_batch, out_token, _ptr(store.keys, n * keys.elem_size),
                   _ptr(store.values, n * values.elem_size), count, opts)
        n += count[0]
        if ret == -errno.ENOENT:
            break
        if ret == -errno.ENOSPC and count[0] == 0:
            chunk *= 2  # one hash bucket holds more than a chunk: retry from the same place
            continue
        if ret < 0:
            raise _libbpf.make_error(-ret, f"{op}_batch of map {m.name} (after {n} elements)")
        ffi.memmove(in_token, out_token, token_size)
        in_batch = in_token
    return store.result(n)


@holding_fd
def _lookup_per_key(m: BatchTarget, keys: Layout, values: Layout, delete: bool) -> tuple[np.ndarray, np.ndarray]:
    fd = m.fd
    found = m.key_snapshot()
    store = _Growing(keys, values, len(found))
    call = lib.bpf_map_lookup_and_delete_elem if delete else lib.bpf_map_lookup_elem
    n = 0
    with m.element_lock:
        for key in found:
            keys.encode(key)
            ret = call(fd, keys.ptr, values.ptr)
            if ret == -errno.ENOENT:
                continue  # deleted since the snapshot
            _libbpf.check(ret, f"{'lookup_and_delete' if delete else 'lookup'} in map {m.name}")
            store.keys[n * keys.elem_size:(n + 1) * keys.elem_size] = keys.buf[: keys.elem_size]
            store.values[n * values.elem_size:(n + 1) * values.elem_size] = values.buf[: values.elem_size]
            n += 1
    return store.result(n)


@holding_fd
def count(m: BatchTarget) -> int:
    """The number of elements now: chunked batch lookups into reused buffers, or per key."""
    fd = m.fd
    keys, values = m.layouts()
    if not supported(m, "lookup"):
        return len(m.key_snapshot())
    chunk = min(DEFAULT_CHUNK, m.max_entries)
    store = _Growing(keys, values, chunk)
    token_size = max(keys.size, 8)
    in_token, out_token = ffi.new("char[]", token_size), ffi.new("char[]", token_size)
    in_batch: Any = ffi.NULL
    counter = ffi.new("__u32 *")
    total = 0
    while True:
        store.reserve(chunk)
        counter[0] = chunk
        ret = lib.bpf_map_lookup_batch(fd, in_batch, out_token, _ptr(store.keys), _ptr(store.values),
                                       counter, ffi.NULL)
        total += counter[0]
        if ret == -errno.ENOENT:
            return total
        if ret == -errno.ENOSPC and counter[0] == 0:
            chunk *= 2
            continue
        _libbpf.check(ret, f"counting map {m.name}")
        ffi.memmove(in_token, out_token, token_size)
        in_batch = in_token


def _partial(error: BpfError, processed: int) -> BpfError:
    error.processed = processed  # type: ignore[attr-defined]
    return error


def _check_indices(m: BatchTarget, keys: Layout, raw: np.ndarray, n: int) -> None:
    if m.map_type.array_like and keys.is_int and n:
        indices = keys._typed(raw, n)
        worst = int(indices.max())
        if worst >= m.max_entries:
            position = int(np.argmax(indices >= m.max_entries))
            raise IndexOutOfRangeError(f"keys[{position}] = {worst} is out of range for {m.type} map {m.name} "
                                       f"(max_entries {m.max_entries}); nothing was written")


@holding_fd
def update(m: BatchTarget, keys: Any, values: Any, flag: int) -> None:
    """Write every (key, value) in order; on failure ``.processed`` of them were applied."""
    fd = m.fd
    _require_keys(m, "update_batch")
    k_layout, v_layout = m.layouts()
    key_raw = k_layout.encode_many(keys)
    n = key_raw.size // k_layout.elem_size if k_layout.elem_size else 0
    if m.map_type.map_in_map:
        values = [v.fd if hasattr(v, "fd") else v for v in values]
    value_raw = v_layout.encode_many(values, n)
    if value_raw.size // max(v_layout.elem_size, 1) != n and not (n == 0 and value_raw.size <= 1):
        raise ValueError(f"update_batch of map {m.name}: {value_raw.size // v_layout.elem_size} values "
                         f"for {n} keys")
    _check_indices(m, k_layout, key_raw, n)
    if n == 0:
        return
    what = f"update_batch of map {m.name}"
    if supported(m, "update") and flag == 0:  # the kernel's batch update takes no noexist/exist
        counter = ffi.new("__u32 *", n)
        ret = lib.bpf_map_update_batch(fd, _ptr(key_raw), _ptr(value_raw), counter, _opts(flag))
        if ret < 0:
            done = int(counter[0]) if counter[0] < n else 0  # an early refusal leaves count as given
            raise _partial(_libbpf.make_error(-ret, f"{what}: element {done} of {n} failed "
                                              f"({done} before it were applied)", overrides=UPDATE_ERRORS), done)
        return
    for index in range(n):
        ret = lib.bpf_map_update_elem(fd, _ptr(key_raw, index * k_layout.elem_size),
                                      _ptr(value_raw, index * v_layout.elem_size), flag)
        if ret < 0:
            raise _partial(_libbpf.make_error(-ret, f"{what}: element {index} of {n} failed "
                                              f"({index} before it were applied)", overrides=UPDATE_ERRORS), index)


@holding_fd
def delete(m: BatchTarget, keys: Any) -> None:
    """Delete every key in order; a missing key stops it (``.processed`` were deleted)."""
    fd = m.fd
    _require_keys(m, "delete_batch")
    k_layout, _ = m.layouts()
    key_raw = k_layout.encode_many(keys)
    n = key_raw.size // k_layout.elem_size if k_layout.elem_size else 0
    if n == 0:
        return
    what = f"delete_batch of map {m.name}"

    def failed(err: int, done: int) -> BpfError:
        return _partial(_libbpf.make_error(err, f"{what}: element {done} of {n} failed ({done} before it "
                                           f"were deleted)", overrides={
                                               errno.ENOENT: lambda w, e, l: KeyNotFoundError(
                                                   f"{w}: no such key", e)}), done)

    if supported(m, "delete"):
        counter = ffi.new("__u32 *", n)
        ret = lib.bpf_map_delete_batch(fd, _ptr(key_raw), counter, _opts())
        if ret < 0:
            raise failed(-ret, int(counter[0]) if counter[0] < n else 0)
        return
    for index in range(n):
        ret = lib.bpf_map_delete_elem(fd, _ptr(key_raw, index * k_layout.elem_size))
        if ret < 0:
            raise failed(-ret, index)
