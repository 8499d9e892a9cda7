"""The maps under test: created fresh for each case and filled with a known pattern.

Every value is a function of its key (word ``j`` of key ``k`` is
``(k + 1) * PATTERN_MUL + j`` mod 2**64, the same formula as ``c/map_common.h``),
so each path's result can be checked against a checksum computed here from
the pattern alone: the wrapping sum of every 64-bit word read.

Maps are made with ``Map.create`` when pybpf has it, otherwise with
``bpf_map_create`` and wrapped by ``Map.from_fd``; both give a public ``Map``.
"""

from __future__ import annotations

import numpy as np

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.kinds import MapType
from pybpf.maps.map import Map

__all__ = [
    "KEY_SIZE",
    "PATTERN_MUL",
    "checksum",
    "create_map",
    "created_with",
    "fill",
    "key_objects",
    "pattern",
    "read_all",
    "value_objects",
]

PATTERN_MUL = 0x9E3779B97F4A7C15
KEY_SIZE = 4
BPF_F_MMAPABLE = 1 << 10


def pattern(entries: int, value_size: int) -> np.ndarray:
    """The values of keys ``0..entries-1``: a ``(entries, value_size // 8)`` uint64 array."""
    keys = np.arange(1, entries + 1, dtype=np.uint64)[:, None]
    words = np.arange(value_size // 8, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        return keys * np.uint64(PATTERN_MUL) + words


def checksum(data: object) -> int:
    """Wrapping sum of the 64-bit words of ``data`` (anything with the buffer protocol)."""
    words = np.frombuffer(memoryview(data).cast("B"), dtype="<u8")  # type: ignore[arg-type]
    return int(words.sum(dtype=np.uint64))


def created_with() -> str:
    """How benchmark maps are made: ``Map.create`` or the low-level fallback."""
    return "Map.create" if hasattr(Map, "create") else "bpf_map_create + Map.from_fd"


def create_map(map_type: str, entries: int, value_size: int, name: str) -> Map:
    """A new empty map with u32 keys; arrays are BPF_F_MMAPABLE so they can be viewed."""
    flags = BPF_F_MMAPABLE if map_type == "array" else 0
    if hasattr(Map, "create"):
        value = np.dtype("<u8") if value_size == 8 else np.dtype(("<u8", (value_size // 8,)))
        return Map.create(map_type, key_dtype=np.dtype("<u4"), value_dtype=value, max_entries=entries,
                          flags=flags, name=name)
    opts = _libbpf.new_opts("struct bpf_map_create_opts", map_flags=flags)
    fd = _libbpf.check(lib.bpf_map_create(MapType.parse(map_type), name.encode(), KEY_SIZE, value_size,
                                          entries, opts), f"creating {map_type} map {name}")
    return Map.from_fd(fd, dup=False)


def _batch_opts() -> object:
    return _libbpf.new_opts("struct bpf_map_batch_opts")


def fill(m: Map, entries: int, value_size: int, *, zero: bool = False) -> None:
    """Store the pattern (or zeros) under keys ``0..entries-1`` (one batch call: set-up, not timed)."""
    keys = np.arange(entries, dtype="<u4")
    values = np.zeros((entries, value_size // 8), np.uint64) if zero else np.ascontiguousarray(pattern(entries, value_size))
    count = ffi.new("__u32 *", entries)
    _libbpf.check(lib.bpf_map_update_batch(m.fd, ffi.from_buffer(keys), ffi.from_buffer(values), count,
                                           _batch_opts()), f"filling map {m.name}")


def read_all(m: Map, entries: int, value_size: int) -> np.ndarray:
    """Every value of the map as raw bytes in key order (to check what a writer left)."""
    keys = np.empty(entries, dtype="<u4")
    values = np.zeros((entries, value_size), dtype=np.uint8)
    token = ffi.new("__u64[2]")
    count = ffi.new("__u32 *")
    kp, vp = ffi.from_buffer(keys), ffi.from_buffer(values)
    got, first = 0, True
    while got < entries:
        count[0] = entries - got
        ret = lib.bpf_map_lookup_batch(m.fd, ffi.NULL if first else token, token + 1, kp + got * KEY_SIZE,
                                       vp + got * value_size, count, _batch_opts())
        got += count[0]
        if ret == -2:  # ENOENT: the end of the map
            break
        _libbpf.check(ret, f"reading map {m.name}")
        token[0] = token[1]
        first = False
    order = np.argsort(keys[:got], kind="stable")
    return values[:got][order]


def key_objects(m: Map, entries: int) -> list:
    """Keys as the per-key API takes them: ints for a typed key, else raw bytes."""
    if m.key_dtype.kind in "iu":
        return list(range(entries))
    return [k.to_bytes(KEY_SIZE, "little") for k in range(entries)]


def value_objects(m: Map, entries: int, value_size: int) -> list:
    """Pattern values as the per-key API takes them (ints, uint64 rows, or raw bytes)."""
    values = pattern(entries, value_size)
    dtype = m.value_dtype
    if dtype.kind in "iu":
        return [int(v) for v in values[:, 0]]
    if dtype.subdtype is not None:
        return list(values)
    return [row.tobytes() for row in values]
