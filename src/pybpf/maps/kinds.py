"""Facts about BPF map types that decide how pybpf talks to a map.

Owns the map type and flag numbers (uapi ``enum bpf_map_type``, ``BPF_F_*``),
the groups of types that behave alike (array-like: every index exists and
cannot be deleted; per-CPU: one value slot per possible CPU; keyless:
queue/stack/bloom filter; map-in-map: values are map fds in, ids out), the
parsing of ``flags=`` arguments, and ``IndexOutOfRangeError``.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from pybpf._sys.libbpf import ErrorFactory
from pybpf.errors import (BpfError, BpfPermissionError, IndexOutOfRangeError, InvalidArgumentError, KeyNotFoundError,
                          MapFullError)

__all__ = [
    "ARRAY_LIKE",
    "HASH_LIKE",
    "KEYLESS",
    "LOOKUP_ERRORS",
    "MAP_FLAGS",
    "MAP_IN_MAP",
    "MAP_TYPES",
    "PER_CPU",
    "UPDATE_ERRORS",
    "UPDATE_FLAGS",
    "IndexOutOfRangeError",
    "check_map_name",
    "element_size",
    "map_type_number",
    "parse_flags",
    "update_flag",
]

MAP_TYPES = {
    "hash": 1, "array": 2, "prog_array": 3, "perf_event_array": 4, "percpu_hash": 5, "percpu_array": 6,
    "stack_trace": 7, "cgroup_array": 8, "lru_hash": 9, "lru_percpu_hash": 10, "lpm_trie": 11,
    "array_of_maps": 12, "hash_of_maps": 13, "devmap": 14, "sockmap": 15, "cpumap": 16, "xskmap": 17,
    "sockhash": 18, "cgroup_storage": 19, "reuseport_sockarray": 20, "percpu_cgroup_storage": 21,
    "queue": 22, "stack": 23, "sk_storage": 24, "devmap_hash": 25, "struct_ops": 26, "ringbuf": 27,
    "inode_storage": 28, "task_storage": 29, "bloom_filter": 30, "user_ringbuf": 31, "cgrp_storage": 32,
}

MAP_FLAGS = {
    "no_prealloc": 1 << 0, "no_common_lru": 1 << 1, "numa_node": 1 << 2, "rdonly": 1 << 3,
    "wronly": 1 << 4, "stack_build_id": 1 << 5, "zero_seed": 1 << 6, "rdonly_prog": 1 << 7,
    "wronly_prog": 1 << 8, "clone": 1 << 9, "mmapable": 1 << 10, "preserve_elems": 1 << 11,
    "inner_map": 1 << 12,
}
BPF_F_NO_PREALLOC = MAP_FLAGS["no_prealloc"]
BPF_F_RDONLY = MAP_FLAGS["rdonly"]
BPF_F_RDONLY_PROG = MAP_FLAGS["rdonly_prog"]
BPF_F_MMAPABLE = MAP_FLAGS["mmapable"]

UPDATE_FLAGS = {"any": 0, "noexist": 1, "exist": 2}

ARRAY_LIKE = frozenset({"array", "percpu_array", "prog_array", "perf_event_array", "cgroup_array",
                        "array_of_maps"})
PER_CPU = frozenset({"percpu_hash", "percpu_array", "lru_percpu_hash", "percpu_cgroup_storage"})
KEYLESS = frozenset({"queue", "stack", "bloom_filter"})
MAP_IN_MAP = frozenset({"array_of_maps", "hash_of_maps"})
HASH_LIKE = frozenset({"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "hash_of_maps"})

_NAME = re.compile(r"[A-Za-z0-9_.]{0,15}")


def map_type_number(map_type: str | int) -> int:
    if isinstance(map_type, int):
        return map_type
    try:
        return MAP_TYPES[map_type.lower().removeprefix("bpf_map_type_")]
    except KeyError:
        raise ValueError(f"unknown map type {map_type!r}; known: {', '.join(MAP_TYPES)}") from None


def parse_flags(flags: int | str | Iterable[str]) -> int:
    """``flags=`` as an int, a name (``"mmapable"``, ``"BPF_F_MMAPABLE"``) or several names."""
    if isinstance(flags, int):
        return flags
    names = [flags] if isinstance(flags, str) else list(flags)
    value = 0
    for name in names:
        key = name.lower().removeprefix("bpf_f_")
        if key not in MAP_FLAGS:
            raise ValueError(f"unknown map flag {name!r}; known: {', '.join(MAP_FLAGS)}")
        value |= MAP_FLAGS[key]
    return value


def update_flag(flags: str | int) -> int:
    """``"any"``/``"noexist"``/``"exist"`` (or the BPF_* number) for an update."""
    if isinstance(flags, (int, np.integer)) and not isinstance(flags, bool):
        if not 0 <= int(flags) < 1 << 64:
            raise InvalidArgumentError(f"update flags must be one of {list(UPDATE_FLAGS)} or a BPF_* "
                                       f"number in 0..2**64-1 (the kernel's u64), got {int(flags)}")
        return int(flags)
    try:
        if not isinstance(flags, str):
            raise TypeError(flags)
        return UPDATE_FLAGS[flags]
    except (KeyError, TypeError):
        raise InvalidArgumentError(f"update flags must be one of {list(UPDATE_FLAGS)}, got {flags!r}") from None


def check_map_name(name: str) -> None:
    """The kernel takes at most 15 characters of [A-Za-z0-9_.] (else EINVAL without a word)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"map name {name!r} is invalid: the kernel allows at most 15 characters "
                         f"from A-Z a-z 0-9 _ .")


def element_size(dtype: Any, size: int | None, what: str) -> int:
    """The key/value size from a dtype or an explicit size (which must agree if both are given)."""
    if dtype is not None:
        itemsize = np.dtype(dtype).itemsize
        if size is not None and size != itemsize:
            raise ValueError(f"{what}_size {size} does not match {what}_dtype {np.dtype(dtype)} "
                             f"({itemsize} bytes)")
        return itemsize
    if size is None:
        raise ValueError(f"give {what}_dtype or {what}_size")
    if size < 0:
        raise ValueError(f"{what}_size must be >= 0, got {size}")
    return int(size)


ENOTSUPP = 524  # what the kernel returns for a map type without the operation
UNSUPPORTED = (ENOTSUPP, errno.EOPNOTSUPP)


def _not_found(what: str, err: int, log: str) -> BpfError:
    return KeyNotFoundError(f"{what}: no such key", err)


def _full(what: str, err: int, log: str) -> BpfError:
    return MapFullError(f"{what}: the map is full (max_entries reached)", err)


def _exists(what: str, err: int, log: str) -> BpfError:
    return BpfError(f"{what}: the key already exists (flags='noexist')", err)


def _refused(what: str, err: int, log: str) -> BpfError:
    return BpfPermissionError(f"{what}: refused: the map is frozen or read-only to user space "
                              f"(BPF_F_RDONLY), or this process lacks CAP_BPF", err, capability="CAP_BPF")


# make_error overrides for element operations
UPDATE_ERRORS: dict[int, ErrorFactory] = {errno.E2BIG: _full, errno.ENOENT: _not_found, errno.EEXIST: _exists,
                                          errno.EPERM: _refused}
def _unreadable(what: str, err: int, log: str) -> BpfError:
    return BpfPermissionError(f"{what}: refused: the map is write-only to user space (BPF_F_WRONLY), "
                              f"or this process lacks CAP_BPF", err, capability="CAP_BPF")


LOOKUP_ERRORS: dict[int, ErrorFactory] = {errno.ENOENT: _not_found, errno.EPERM: _unreadable}
