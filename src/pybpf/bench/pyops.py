"""The Python paths being timed, each a ``() -> Sample`` closure over its set-up.

Set-up (key lists, destination buffers, index arrays) happens when the
closure is made; only the loop over the map is timed. Results are kept and
checksummed after the clock stops, so checking them costs the timing nothing.

Per-key and batch paths are pybpf's public ``Map`` methods; while ``Map``
has no ``lookup_batch``/``update_batch`` yet, the batch paths fall back to
``bpf_map_*_batch`` through ``_libbpf`` (``batch_path()`` says which ran).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.maps.map import Map
from pybpf.bench.cbuild import Sample
from pybpf.bench.subjects import KEY_SIZE, checksum, key_objects, pattern, value_objects

__all__ = ["batch", "batch_path", "cells", "copy", "gather", "lookup", "lookup_cffi_floor", "lookup_keys", "loop",
           "scalar", "update", "update_batch"]

Run = Callable[[], Sample]
_ENOENT = 2
clock = time.perf_counter_ns


def batch_path() -> str:
    """Which batch path this kernel gives (kernel batch or per-key fallback)."""
    return ("Map.lookup_batch / Map.update_batch" if hasattr(Map, "lookup_batch")
            else "bpf_map_lookup_batch / bpf_map_update_batch via _libbpf (Map has no batch methods yet)")


def _objects_checksum(values: list) -> int:
    return checksum(b"".join(np.asarray(v).tobytes() for v in values))


def lookup(m: Map, entries: int) -> Run:
    """One ``m[k]`` per key (``Map.__getitem__``: the compiled per-key path)."""
    keys = key_objects(m, entries)

    def run() -> Sample:
        t0 = clock()
        out = [m[k] for k in keys]
        ns = clock() - t0
        return Sample(ns, _objects_checksum(out), len(out))
    return run


def lookup_keys(m: Map, entries: int) -> Run:
    """``Map.lookup(keys)`` with every key in one numpy array: one C loop, one syscall per key."""
    keys = np.arange(entries, dtype=np.uint32)

    def run() -> Sample:
        t0 = clock()
        values, found = m.lookup(keys)
        ns = clock() - t0
        ok = bool(found.all())
        return Sample(ns, checksum(np.ascontiguousarray(values)) if ok else -1, len(values))
    return run


def loop(reads: int) -> Run:
    """The bare Python loop of the per-element read cases (the part that is not the read)."""
    indices = list(range(reads))

    def run() -> Sample:
        t0 = clock()
        out = [i for i in indices]  # noqa: C416 (the same comprehension as the reads, minus the read)
        ns = clock() - t0
        return Sample(ns, len(out), len(out))
    return run


def cells(source: memoryview, entries: int, reads: int) -> Run:
    """``cells[i]`` (``Map.cells()``, a typed memoryview) one element at a time."""
    indices = [i % entries for i in range(reads)]

    def run() -> Sample:
        t0 = clock()
        out = [source[i] for i in indices]
        ns = clock() - t0
        return Sample(ns, checksum(np.array(out, dtype=np.uint64)), len(out))
    return run


def lookup_cffi_floor(m: Map, entries: int, value_size: int) -> Run:
    """The floor of any cffi binding: a bare ``bpf_map_lookup_elem`` loop, no pybpf code.

    Timed next to ``Map.lookup`` and C so every run shows how much of the per-key
    cost is Python and cffi themselves rather than pybpf."""
    fd = m.fd
    key = ffi.new(f"uint{8 * KEY_SIZE}_t *")
    value = ffi.new("char[]", value_size)
    call = lib.bpf_map_lookup_elem
    out = np.empty((entries, value_size), dtype=np.uint8)
    view = np.frombuffer(ffi.buffer(value), dtype=np.uint8)

    def run() -> Sample:
        t0 = clock()
        for k in range(entries):
            key[0] = k
            call(fd, key, value)
        ns = clock() - t0
        for k in range(entries):  # results checked outside the clock
            key[0] = k
            call(fd, key, value)
            out[k] = view
        return Sample(ns, checksum(out), entries)
    return run


def update(m: Map, entries: int, value_size: int) -> Run:
    """One ``m[k] = v`` per key (``Map.__setitem__``), writing the pattern."""
    keys = key_objects(m, entries)
    values = value_objects(m, entries, value_size)
    written = checksum(pattern(entries, value_size))

    def run() -> Sample:
        t0 = clock()
        for k, v in zip(keys, values):
            m[k] = v
        return Sample(clock() - t0, written, entries)
    return run


def _lookup_batch_lowlevel(m: Map, entries: int, value_size: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    # Mirrors c/map_batch.c: stop at max_entries or ENOENT; numpy buffers go straight to the kernel.
    fd = m.fd
    keys = np.empty(entries, dtype="<u4")
    values = np.empty((entries, value_size), dtype=np.uint8)
    kp, vp = ffi.from_buffer(keys), ffi.from_buffer(values)
    tokens = ffi.new("__u64[2]")
    count = ffi.new("__u32 *")
    opts = _libbpf.new_opts("struct bpf_map_batch_opts")
    got, first = 0, True
    while got < entries:
        count[0] = min(chunk, entries - got)
        ret = lib.bpf_map_lookup_batch(fd, ffi.NULL if first else tokens, tokens + 1, kp + got * KEY_SIZE,
                                       vp + got * value_size, count, opts)
        got += count[0]
        if ret == -_ENOENT:
            break
        _libbpf.check(ret, f"batch lookup in map {m.name}")
        tokens[0] = tokens[1]
        first = False
    return keys[:got], values[:got]


def batch(m: Map, entries: int, value_size: int, chunk: int) -> Run:
    """The whole map through BPF_MAP_LOOKUP_BATCH, ``chunk`` elements per syscall."""
    if hasattr(m, "lookup_batch"):
        def read() -> tuple[np.ndarray, np.ndarray]:
            return m.lookup_batch(chunk=chunk)
    else:
        def read() -> tuple[np.ndarray, np.ndarray]:
            return _lookup_batch_lowlevel(m, entries, value_size, chunk)

    def run() -> Sample:
        t0 = clock()
        keys, values = read()
        ns = clock() - t0
        return Sample(ns, checksum(np.ascontiguousarray(values)), len(keys))
    return run


def update_batch(m: Map, entries: int, value_size: int) -> Run:
    """The whole pattern written with one BPF_MAP_UPDATE_BATCH."""
    keys = np.arange(entries, dtype="<u4")
    values = np.ascontiguousarray(pattern(entries, value_size))
    written = checksum(values)
    if hasattr(m, "update_batch"):
        typed = values.reshape(-1) if value_size == 8 else values
        raw = np.frombuffer(values.tobytes(), dtype=m.value_dtype) if m.value_dtype.kind == "V" else typed

        def write() -> None:
            m.update_batch(keys, raw)
    else:
        opts = _libbpf.new_opts("struct bpf_map_batch_opts")
        count = ffi.new("__u32 *")

        def write() -> None:
            count[0] = entries
            _libbpf.check(lib.bpf_map_update_batch(m.fd, ffi.from_buffer(keys), ffi.from_buffer(values),
                                                   count, opts), f"batch update of map {m.name}")

    def run() -> Sample:
        t0 = clock()
        write()
        return Sample(clock() - t0, written, entries)
    return run


def copy(source: np.ndarray, inner: int) -> Run:
    """``np.copyto`` of the whole array, ``inner`` times per pass (mmap view or plain array)."""
    dst = np.empty_like(source)

    def run() -> Sample:
        t0 = clock()
        for _ in range(inner):
            np.copyto(dst, source)
        ns = clock() - t0
        return Sample(ns, checksum(dst), len(source) * inner)
    return run


def scalar(source: np.ndarray, reads: int) -> Run:
    """``source[i]`` one element at a time, cycling through the indices."""
    indices = [i % len(source) for i in range(reads)]

    def run() -> Sample:
        t0 = clock()
        out = [source[i] for i in indices]
        ns = clock() - t0
        return Sample(ns, _objects_checksum(out), len(out))
    return run


def gather(source: np.ndarray, indices: np.ndarray, inner: int) -> Run:
    """``source[indices]`` (numpy fancy indexing) for random indices, ``inner`` times."""
    def run() -> Sample:
        out = indices
        t0 = clock()
        for _ in range(inner):
            out = source[indices]
        ns = clock() - t0
        return Sample(ns, checksum(np.ascontiguousarray(out)), len(indices) * inner)
    return run
