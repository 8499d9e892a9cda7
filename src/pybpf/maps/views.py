"""Python-owned mmaps of BPF maps and the numpy views over them.

The mapping is made by Python's ``mmap`` on the map fd (never on memory libbpf
owns), so: a view keeps its mapping alive; the mapping keeps the kernel map
alive after the map, or the whole object, is closed; and closing a mapping
that views still use raises ``BufferError`` instead of leaving a dangling
pointer. Elements of a mmapped array map sit ``value_size`` rounded up to 8
bytes apart (the kernel's element stride), so a view is strided when the
value size is not a multiple of 8.

What a read sees while a BPF program writes the same memory (no lock is
shared between the two sides):

* one aligned element of 1, 2, 4 or 8 bytes (an integer counter, a field of
  a record) is read with one load: it is a value the program wrote whole,
  never half of one; a program's ``__sync_fetch_and_add`` is seen atomically;
* a record wider than 8 bytes, or several elements, may be torn: fields
  from before and after a concurrent update can be mixed, and a whole-array
  copy (``view.copy()``) is not a snapshot of one instant;
* for a consistent snapshot: copy, then copy again and compare, repeating
  until two copies agree (fine when writes are rare); or have the program
  bump a sequence counter before and after each update (odd = in progress)
  and retry the copy while it is odd or changed. A syscall or batch lookup
  is no stronger for an array map (the kernel memcpys the live element);
  for a hash map it sees each element whole only when the program replaces
  elements with ``bpf_map_update_elem`` rather than writing in place through
  the pointer ``bpf_map_lookup_elem`` returned; a value holding a
  ``bpf_spin_lock`` is copied under it only with ``BPF_F_LOCK``.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from pybpf.errors import BpfError, BpfPermissionError

__all__ = ["MappedMap", "array_stride"]

PAGE_SIZE = mmap.PAGESIZE


def array_stride(value_size: int) -> int:
    """Bytes between elements of a mmapped array map (the kernel rounds to 8)."""
    return (value_size + 7) & ~7


def _round_page(size: int) -> int:
    return (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


class MappedMap:
    """One shared mapping of an array map's values (``BPF_F_MMAPABLE``)."""

    def __init__(self, fd: int, value_size: int, max_entries: int, *, writable: bool, what: str) -> None:
        self.stride = array_stride(value_size)
        self.value_size = value_size
        self.max_entries = max_entries
        self.length = _round_page(self.stride * max_entries)
        self.writable = writable
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        try:
            self._mmap = mmap.mmap(fd, self.length, flags=mmap.MAP_SHARED, prot=prot)
        except PermissionError as exc:
            raise BpfPermissionError(
                f"cannot mmap {what} {'read-write' if writable else 'read-only'}: "
                f"{'the map is frozen or read-only to user space' if writable else exc.strerror}",
                exc.errno, capability="CAP_BPF") from None
        except OSError as exc:
            raise BpfError(f"cannot mmap {what}: {exc.strerror}", exc.errno) from None

    @property
    def closed(self) -> bool:
        """True once the mapping is released."""
        return self._mmap.closed

    def _exported(self) -> np.ndarray:
        # np.ndarray(buffer=mmap) releases the buffer export and keeps only a
        # reference, so mmap.close() would then succeed and leave the view
        # dangling (a segfault on the next read). np.frombuffer keeps the export
        # alive for as long as the array (and every view built on it) lives.
        return np.frombuffer(self._mmap, dtype=np.uint8)

    def array(self, dtype: np.dtype, *, shape: tuple[int, ...] | None = None, offset: int = 0) -> np.ndarray:
        """A view of ``max_entries`` elements (or ``shape``) of ``dtype`` at ``offset``."""
        if shape is None:
            count = self.max_entries
            strides: tuple[int, ...] | None = (self.stride,)
            shape = (count,)
        else:
            strides = None
        view = np.ndarray(shape, dtype=dtype, buffer=self._exported(), offset=offset, strides=strides)
        if not self.writable:
            view.flags.writeable = False
        return view

    def cells(self, fmt: str, shape: list[int]) -> memoryview:
        """A typed memoryview (``struct`` format ``fmt``) of every element; elements must be
        packed (value size a multiple of 8). Like a numpy view it holds a buffer export, so
        the mapping stays until the memoryview is released."""
        whole = memoryview(self._mmap)[: self.stride * self.max_entries]
        if not self.writable:
            whole = whole.toreadonly()
        return whole.cast(fmt, shape)  # type: ignore[call-overload]  # fmt is one of the typed formats

    def scalar(self, dtype: np.dtype, offset: int) -> np.ndarray:
        """A 0-d view (a live scalar or record) of one value at ``offset``."""
        view = np.ndarray((), dtype=dtype, buffer=self._exported(), offset=offset)
        if not self.writable:
            view.flags.writeable = False
        return view

    def raw(self) -> Any:
        """The Python ``mmap`` behind the views."""
        return self._mmap

    def close(self) -> None:
        """Unmap; raises BufferError while numpy views still use the mapping."""
        self._mmap.close()

    def try_close(self) -> bool:
        """Unmap if no view is alive; otherwise leave it to the last view."""
        try:
            self._mmap.close()
            return True
        except BufferError:
            return False
