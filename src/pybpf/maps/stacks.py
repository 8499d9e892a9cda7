"""Stack traces as data: a ``BPF_MAP_TYPE_STACK_TRACE`` map read into one numpy array.

Owns reading a stack map (``bpf_get_stackid()``'s store: key = stack id, value =
``depth`` u64 instruction pointers, zero-padded) into a :class:`StackTable`: ids sorted,
frames as an ``(N, depth)`` uint64 array, the depth of each stack. The same table holds
stacks that came another way, e.g. ``bpf_get_stack()`` output copied into ring buffer
records (:meth:`StackTable.from_frames`). A stack map has no batch operations in the
kernel, so the read is one lookup per id, written straight into the array.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import InvalidArgumentError, RecordFormatError, WrongMapTypeError
from pybpf._sys.fd import FdRef
from pybpf.kinds import MapType

__all__ = ["StackTable", "read_stacks", "stack_depths"]


def stack_depths(frames: np.ndarray) -> np.ndarray:
    """Frames before the first 0 of each row of an ``(N, depth)`` array."""
    f = np.asarray(frames)
    if f.ndim != 2:
        raise InvalidArgumentError(f"stack frames must be a 2-d (stacks, depth) array, not shape {f.shape}")
    zero = f == 0
    return np.where(zero.any(axis=1), zero.argmax(axis=1), f.shape[1]).astype(np.int64)


@dataclass(frozen=True)
class StackTable:
    """Stacks by id: ``frames[i, :depths[i]]`` is stack ``ids[i]``, innermost frame first."""

    ids: np.ndarray       # uint32, sorted
    frames: np.ndarray    # (N, depth) uint64
    depths: np.ndarray    # int64

    @classmethod
    def from_frames(cls, frames: np.ndarray, ids: Iterable[int] | np.ndarray | None = None) -> StackTable:
        """A table of stacks given as rows (e.g. ``u64 stack[127]`` fields of ring buffer
        records); ids default to the row numbers."""
        f = np.ascontiguousarray(frames, dtype=np.uint64)
        depths = stack_depths(f)
        idx = np.arange(len(f), dtype=np.uint32) if ids is None else np.asarray(list(ids) if not
                                                                              isinstance(ids, np.ndarray) else ids)
        if len(idx) != len(f):
            raise InvalidArgumentError(f"{len(idx)} ids for {len(f)} stacks")
        order = np.argsort(idx, kind="stable")
        return cls(idx.astype(np.uint32)[order], f[order], depths[order])

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, stack_id: object) -> bool:
        return isinstance(stack_id, (int, np.integer)) and bool(self.rows([int(stack_id)])[0] >= 0)

    def rows(self, stack_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Row of each id in ``frames``; -1 for ids not in the table (negative ids: errors
        ``bpf_get_stackid`` returned, such as -EFAULT for no user stack)."""
        want = np.asarray(stack_ids if isinstance(stack_ids, np.ndarray) else list(stack_ids), np.int64)
        if len(self.ids) == 0:
            return np.full(len(want), -1, np.int64)
        pos = np.clip(np.searchsorted(self.ids.astype(np.int64), want), 0, len(self.ids) - 1)
        return np.where(self.ids[pos].astype(np.int64) == want, pos, -1)

    def get(self, stack_id: int) -> np.ndarray:
        """The frames of one stack, innermost first (KeyError when absent)."""
        row = int(self.rows([stack_id])[0])
        if row < 0:
            raise KeyError(stack_id)
        return self.frames[row, :self.depths[row]]

    def addresses(self) -> np.ndarray:
        """Every distinct frame address of every stack (what a symbolizer is handed)."""
        live = self.frames[np.arange(self.frames.shape[1]) < self.depths[:, None]]
        return np.unique(live)


class StackSource(Protocol):
    """What reading stacks needs of a map (``pybpf.Map`` is one)."""

    name: str

    @property
    def type(self) -> str:
        """libbpf's name of the map type."""

    @property
    def map_type(self) -> MapType:
        """The map's kind."""

    @property
    def value_size(self) -> int:
        """Bytes per value."""

    @property
    def max_entries(self) -> int:
        """Capacity."""

    def fd_ref(self) -> FdRef:
        """The map's fd holder."""


def read_stacks(m: StackSource, ids: Iterable[int] | np.ndarray | None = None) -> StackTable:
    """Read a stack trace map: all of it, or only ``ids`` (ids not there are left out)."""
    if m.map_type is not MapType.STACK_TRACE:
        raise WrongMapTypeError(f"map {m.name} is a {m.type} map, not a stack_trace map")
    value_size = m.value_size
    if value_size % 8:
        raise RecordFormatError(f"stack map {m.name}: value size {value_size} is not a multiple of 8 "
                                f"(a map made with BPF_F_STACK_BUILD_ID holds build-id records: not read here)")
    depth = value_size // 8
    fd_ref = m.fd_ref()
    fd = fd_ref.enter()
    try:
        if ids is None:
            wanted = _all_ids(fd, m)
        else:
            raw = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), np.int64)
            wanted = np.unique(raw[(raw >= 0) & (raw < 1 << 32)]).astype(np.uint32)
        frames = np.zeros((len(wanted), depth), np.uint64)
        found = np.zeros(len(wanted), bool)
        if len(wanted):
            base = ffi.cast("char *", ffi.from_buffer(frames))
            key = ffi.new("uint32_t *")
            for i, stack_id in enumerate(wanted.tolist()):
                key[0] = stack_id
                ret = lib.bpf_map_lookup_elem(fd, key, base + i * value_size)
                if ret == -errno.ENOENT:
                    continue
                _libbpf.check(ret, f"reading stack {stack_id} of map {m.name}")
                found[i] = True
    finally:
        fd_ref.leave()
    frames = frames[found]
    return StackTable(wanted[found], frames, stack_depths(frames))


def _all_ids(fd: int, m: StackSource) -> np.ndarray:
    out: list[int] = []
    prev: Any = ffi.NULL
    cur = ffi.new("uint32_t *")
    nxt = ffi.new("uint32_t *")
    seen: set[int] = set()
    for _ in range(2 * m.max_entries + 16):   # bounded: ids deleted meanwhile restart the walk
        ret = lib.bpf_map_get_next_key(fd, prev, nxt)
        if ret == -errno.ENOENT:
            break
        _libbpf.check(ret, f"iterating stack map {m.name}")
        if nxt[0] not in seen:
            seen.add(nxt[0])
            out.append(nxt[0])
        cur[0] = nxt[0]
        prev = cur
    return np.array(sorted(out), np.uint32)
