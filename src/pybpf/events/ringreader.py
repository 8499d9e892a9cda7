"""``RingReader``: the numpy reader of a BPF ring buffer's memory (x86-64 only).

The kernel exposes a ring buffer map as a consumer page (read-write: the
consumer position), a producer page (read-only: the producer position) and the
data area, mapped twice back to back so that a record, or a run of records,
that wraps past the end is still contiguous.  Each record is an 8-byte header
(``u32 len`` with a busy and a discard bit, ``u32`` page offset) plus the
payload, rounded up to 8 bytes.

The reader keeps two positions.  ``read_pos`` is where the next read starts:
everything before it has been handed out.  The kernel's consumer position is
what producers may overwrite up to; it trails ``read_pos`` while a borrowed
view of the ring still lives ("pins"), and ``settle()`` moves it up to the
oldest live pin, or to ``read_pos`` when none is left.  That is the whole
zero-copy invariant: a byte a live view shows is never behind the kernel's
consumer position, so no producer can reuse it.

Memory ordering: plain loads and stores suffice on x86-64 (total store order):
the producer position is loaded before the headers, the headers before the
payload, and the consumer position is stored after the copy.  Callers check
``TSO`` and use libbpf's consumer elsewhere.  Not thread-safe: the owner
serialises calls.
"""

from __future__ import annotations

import os
import sys
import weakref
from typing import Any

import numpy as np

from pybpf._sys import fast
from pybpf._sys.libbpf import ffi
from pybpf.maps.views import PAGE_SIZE
from pybpf.errors import RecordFormatError
from pybpf.events.base import map_ring

__all__ = ["HDR_SIZE", "PAGE_SIZE", "TSO", "RingReader"]

HDR_SIZE = 8                 # u32 len (with the two flag bits) + u32 page offset
BUSY_BIT = 1 << 31           # reserved, not yet committed
DISCARD_BIT = 1 << 30        # committed as discarded: skip it
LEN_MASK = DISCARD_BIT - 1
TSO = os.uname().machine.lower() in {"x86_64", "amd64"}  # platform.machine(), without its import
_CHUNK_BYTES = 256 * 1024    # header check and copy of one chunk stay in L2
_MAX_SPARE_BYTES = 64 << 20  # batch buffers up to this size are recycled (two per ring)


def round8(n: int) -> int:
    return (n + 7) & ~7


class RingReader:
    """Python mmaps of one ring buffer map, and the reads ``RingBuffer`` builds on.

    ``dtype`` (or None for variable-size records only) fixes the record size
    the fixed-size paths expect.  ``close()`` unmaps, unless a view still
    exports the memory: then the last view unmaps it, and the ring stays valid
    under it until then.
    """

    def __init__(self, fd: int, size: int, dtype: np.dtype | None, what: str) -> None:
        self.size = size
        self.dtype = dtype
        self.what = what
        self._mask = size - 1
        self.stride = round8(HDR_SIZE + dtype.itemsize) if dtype is not None else 0
        self._cons_map = map_ring(fd, PAGE_SIZE, 0, True, what)
        try:
            self._data_map = map_ring(fd, PAGE_SIZE + 2 * size, PAGE_SIZE, False, what)
        except BaseException:
            self._cons_map.close()
            raise
        # Positions and headers are read through memoryviews (plain 8- and 4-byte loads, as
        # numpy's): variable-size records need no numpy at all (a tool's first event).
        self._cons = memoryview(self._cons_map).cast("Q")           # [0]: the consumer position
        data = memoryview(self._data_map)
        self._prod = data.cast("Q")                                  # [0]: the producer position
        self._words = data[PAGE_SIZE:].cast("I")                     # the data area in u32 words
        self._spares: list[np.ndarray] = []
        self.read_pos = int(self._cons[0])
        # Borrowed views that may still be alive, oldest first: (position of the first header, view).
        self._pins: list[tuple[int, weakref.ref[np.ndarray]]] = []
        if dtype is not None:
            self._fixed_size_views()

    def _fixed_size_views(self) -> None:
        """What the fixed-size paths (a dtype) use: numpy over the data area, the C copier's pointers."""
        assert self.dtype is not None
        self._data = np.frombuffer(self._data_map, np.uint8, count=2 * self.size, offset=PAGE_SIZE)
        self._data_addr: int = self._data.__array_interface__["data"][0]
        # the compiled copying reader's pointers (copy_into): the data area and the producer position
        self._c_data = ffi.cast("void *", self._data_addr)
        self._c_prod = ffi.cast("uint64_t *", self._data_addr - PAGE_SIZE)
        self._c_end = ffi.new("uint64_t *")
        self._c_stop = ffi.new("uint32_t *")
        chunk = max(_CHUNK_BYTES // max(self.stride, HDR_SIZE), 1)
        self._snap = np.empty(chunk, np.uint32)     # header snapshot of one chunk
        # What a chunk of committed, kept records of this dtype has as headers.
        self._all_good = np.full(chunk, self.dtype.itemsize, np.uint32).tobytes()

    def close(self) -> None:
        """Unmap the ring (once no view of it is alive)."""
        self._cons = self._prod = self._words = None  # type: ignore[assignment]
        self._data = self._c_data = self._c_prod = None  # type: ignore[assignment]
        self._spares = []
        self._pins = []
        for m in (self._cons_map, self._data_map):
            try:
                m.close()
            except BufferError:  # a view still exports it: the last view unmaps (and closes its fd)
                pass
        self._cons_map = self._data_map = None  # type: ignore[assignment]

    # ---- positions ---------------------------------------------------------------

    @property
    def consumer(self) -> int:
        """The kernel's consumer position."""
        return int(self._cons[0])

    @property
    def producer(self) -> int:
        """The kernel's producer position."""
        return int(self._prod[0])

    def unread(self) -> int:
        """Bytes committed or reserved but not yet read (headers included)."""
        return int(self._prod[0]) - max(self.read_pos, int(self._cons[0]))

    def pinned(self) -> int:
        """Bytes read but held from producers: all from the oldest possibly live borrowed view on."""
        return max(self.read_pos - int(self._cons[0]), 0)

    def settle(self) -> int:
        """Give producers back what no live view shows; returns the bytes still pinned."""
        cons = int(self._cons[0])
        if cons > self.read_pos:  # another consumer of the map (libbpf's, say) read ahead of us
            self.read_pos = cons
        if self._pins:
            self._pins = [pin for pin in self._pins if pin[1]() is not None]
        target = self._pins[0][0] if self._pins else self.read_pos
        if target > cons:
            self._cons[0] = target  # a store after every load of what it frees (TSO)
        return self.read_pos - target

    def _advance(self, pos: int) -> None:
        self.read_pos = pos
        self.settle()

    # ---- zero-copy: borrowed views ------------------------------------------------

    def span(self, limit: int) -> tuple[int, int]:
        """(start, count): the run of whole, kept records of the dtype at the read position.

        Discarded records before the run are skipped (read past); the run ends
        before the first busy, discarded or differently sized record, or after
        ``limit`` records.  A differently sized first record raises
        ``RecordFormatError`` and stays in the ring.
        """
        assert self.dtype is not None
        size, stride, mask, words = self.dtype.itemsize, self.stride, self._mask, self._words
        prod = int(self._prod[0])  # load before the headers: TSO keeps loads in order
        pos = self.read_pos
        while pos < prod:  # skip leading discards: no view will show them
            hdr = int(words[(pos & mask) >> 2])
            if hdr & BUSY_BIT or not hdr & DISCARD_BIT:
                break
            pos += round8(HDR_SIZE + (hdr & LEN_MASK))
        if pos != self.read_pos:
            self._advance(pos)
        start, count, chunk = pos, 0, len(self._snap)
        while pos < prod and count < limit:
            n = min((prod - pos) // stride, limit - count, chunk)
            k = self._whole_prefix(pos, n) if n else 0
            count += k
            pos += k * stride
            if k < n or n == 0:
                break
        if count == 0 and start < prod and limit:
            hdr = int(words[(start & mask) >> 2])
            if not hdr & (BUSY_BIT | DISCARD_BIT) and hdr & LEN_MASK != size:
                raise RecordFormatError(f"{self.what}: a {hdr & LEN_MASK}-byte record does not match dtype "
                                        f"{self.dtype} ({size} bytes); it was left in the ring "
                                        f"(use drain_bytes() for it)")
        return start, count

    def _whole_prefix(self, pos: int, n: int) -> int:
        """How many of the ``n`` slots from ``pos`` are committed, kept records of the dtype."""
        snap = self._snap[:n]
        np.copyto(snap, np.ndarray((n,), np.uint32, buffer=self._data, offset=pos & self._mask,
                                   strides=(self.stride,)))
        if snap.tobytes() == (self._all_good if n == len(self._snap) else self._all_good[:4 * n]):
            return n
        return int(np.argmax(snap != self.dtype.itemsize))  # type: ignore[union-attr]

    def borrow(self, start: int, count: int) -> np.ndarray:
        """A read-only record view of ``count`` records from ``start``, pinned until it dies.

        Pinned is the view's root: a uint8 array from ``np.frombuffer``,
        whose base is a memoryview (a buffer export, so the mmap cannot be
        unmapped under it).  numpy collapses the base of every view derived
        from the batch (slices, fields, ``np.void`` records, ``np.asarray``)
        to that root, as its base is no ndarray: the root's weakref dies only
        with the last view.  (``np.ndarray(buffer=mmap)`` would keep no
        export, and ``close()`` would unmap memory under it.)
        """
        assert self.dtype is not None
        if not count:
            empty = np.empty(0, self.dtype)
            empty.flags.writeable = False
            return empty
        nbytes = count * self.stride
        root = np.frombuffer(self._data_map, np.uint8, count=nbytes, offset=PAGE_SIZE + (start & self._mask))
        view = np.ndarray((count,), self.dtype, buffer=root, offset=HDR_SIZE, strides=(self.stride,))
        self._pins.append((start, weakref.ref(root)))
        self.read_pos = start + nbytes
        return view

    # ---- copies ---------------------------------------------------------------------

    def drain_fixed(self, limit: int) -> np.ndarray:
        """Copy out every committed record of the dtype (up to ``limit``), then read past them.

        Discarded records are skipped; a differently sized record ends the
        batch and raises ``RecordFormatError`` if it is the first.
        """
        assert self.dtype is not None
        size, stride, mask = self.dtype.itemsize, self.stride, self._mask
        data, words = self._data, self._words
        cons = self.read_pos
        prod = int(self._prod[0])  # load before the headers: TSO keeps loads in order
        if prod <= cons or limit == 0:
            return np.empty(0, self.dtype)
        room = (prod - cons) // stride    # at most this many slots can follow
        capacity = max(min(room, limit), 1)
        if fast.ring_copy is not None:  # the compiled reader: records back to back, one C pass
            packed = np.ndarray((capacity,), self.dtype,
                                buffer=self._copy_target(capacity * size, self._data_addr + (cons & mask)))
            return packed[:self.copy_into(packed, capacity)]
        out = self._copy_target(capacity * stride, self._data_addr + (cons & mask))
        used = 0                          # slots copied into out
        taken = 0                         # records among them (not discarded)
        keep: list[np.ndarray] | None = None
        pos = cons
        chunk = len(self._snap)
        problem: str | None = None
        while pos < prod and taken < limit:
            n = min((prod - pos) // stride, limit - taken, chunk)
            if used + n > capacity:  # discards made room for more records than first sized
                capacity = min(room, max(2 * capacity, used + n))
                out = np.concatenate([out[:used * stride], np.empty((capacity - used) * stride, np.uint8)])
            if n:
                off = pos & mask
                # One read of each header into a contiguous snapshot, then a SIMD compare.
                snap = self._snap[:n]
                np.copyto(snap, np.ndarray((n,), np.uint32, buffer=data, offset=off, strides=(stride,)))
                all_good = self._all_good if n == chunk else self._all_good[:4 * n]
                if snap.tobytes() != all_good:  # a memcmp: cheaper than a ufunc and a reduction
                    # Slow chunk: the same snapshot decides both the prefix and the discards.
                    whole = (snap | DISCARD_BIT) == (size | DISCARD_BIT)
                    k = n if whole.all() else int(whole.argmin())
                    kept = snap[:k] == size
                else:
                    k, kept = n, None
                if k:
                    out[used * stride:(used + k) * stride] = data[off:off + k * stride]
                    if kept is not None or keep is not None:
                        keep = keep if keep is not None else [np.ones(used, bool)]
                        keep.append(kept if kept is not None else np.ones(k, bool))
                    used += k
                    taken += k if kept is None else int(kept.sum())
                    pos += k * stride
                if k == n:
                    continue
            # One header the fast path could not take: busy, discarded with another size, or foreign.
            hdr = int(words[(pos & mask) >> 2])
            if hdr & BUSY_BIT:
                break
            length = hdr & LEN_MASK
            if hdr & DISCARD_BIT:
                pos += round8(HDR_SIZE + length)
                continue
            if length != size:
                problem = (f"{self.what}: a {length}-byte record does not match dtype {self.dtype} "
                           f"({size} bytes); it was left in the ring (use drain_bytes() for it)")
            break
        if pos != cons:
            self._advance(pos)  # after the copy: TSO keeps the store after the loads
        records = np.ndarray((used,), self.dtype, buffer=out, offset=HDR_SIZE, strides=(stride,))
        if keep is not None:
            records = records[np.concatenate(keep)]
        if problem is not None and used == 0:
            raise RecordFormatError(problem)
        return records

    def copy_into(self, out: np.ndarray, limit: int) -> int:
        """Copy up to ``limit`` committed records of the dtype into ``out`` (C-contiguous, of
        the dtype, ``limit`` <= ``len(out)``), back to back, and read past them; returns how many.

        The callback-free copying read: no Python per record and no C->Python call per record.
        With the compiled helpers one C pass walks the headers and copies each record (the
        header is read before its payload); without them numpy copies one strided pass per
        run of whole records.  Discarded records are skipped; a busy record ends the read; a
        differently sized record ends it too, and raises ``RecordFormatError`` if nothing
        came before it (it stays in the ring).
        """
        assert self.dtype is not None
        size = self.dtype.itemsize
        if limit <= 0:
            return 0
        if fast.ring_copy is not None:
            start = self.read_pos
            count = int(fast.ring_copy(self._c_data, self._mask, self._c_prod, start, size,
                                       ffi.from_buffer(out), limit, self._c_end, self._c_stop))
            end, stop = int(self._c_end[0]), int(self._c_stop[0])
        else:
            start = self.read_pos
            count, end, stop = self._copy_runs(out, limit)
        if end != start:
            self._advance(end)  # after the copy: the consumer position is stored last
        if count == 0 and stop:
            raise RecordFormatError(f"{self.what}: a {stop & LEN_MASK}-byte record does not match dtype "
                                    f"{self.dtype} ({size} bytes); it was left in the ring "
                                    f"(use drain_bytes() for it)")
        return count

    def _copy_runs(self, out: np.ndarray, limit: int) -> tuple[int, int, int]:
        """``copy_into`` with numpy: (records copied, end position, header that stopped it or 0)."""
        assert self.dtype is not None
        size, stride, mask = self.dtype.itemsize, self.stride, self._mask
        data, words = self._data, self._words
        pos = self.read_pos
        prod = int(self._prod[0])  # load before the headers: TSO keeps loads in order
        taken, chunk = 0, len(self._snap)
        raw = np.dtype(f"V{size}")   # copied as opaque bytes: numpy copies a record dtype field by field
        dest = np.ndarray((len(out),), raw, buffer=out)
        while pos < prod and taken < limit:
            n = min((prod - pos) // stride, limit - taken, chunk)
            if n:
                off = pos & mask
                snap = self._snap[:n]
                np.copyto(snap, np.ndarray((n,), np.uint32, buffer=data, offset=off, strides=(stride,)))
                if snap.tobytes() == (self._all_good if n == chunk else self._all_good[:4 * n]):
                    k, kept = n, None
                else:
                    whole = (snap | DISCARD_BIT) == (size | DISCARD_BIT)
                    k = n if whole.all() else int(whole.argmin())
                    kept = snap[:k] == size
                if k:
                    run = np.ndarray((k,), raw, buffer=data, offset=off + HDR_SIZE, strides=(stride,))
                    if kept is None:
                        dest[taken:taken + k] = run  # one strided pass over the run
                        taken += k
                    else:
                        m = int(kept.sum())
                        dest[taken:taken + m] = run[kept]
                        taken += m
                    pos += k * stride
                if k == n:
                    continue
            # a header the run could not take: busy, discarded with another size, or foreign
            hdr = int(words[(pos & mask) >> 2])
            if hdr & BUSY_BIT:
                break
            length = hdr & LEN_MASK
            if hdr & DISCARD_BIT:
                pos += round8(HDR_SIZE + length)
                continue
            if length != size:
                return taken, pos, hdr
            break
        return taken, pos, 0

    def drain_var(self, limit: int) -> list[bytes]:
        """Every committed record (up to ``limit``) as bytes, whatever its size."""
        mask, words, raw = self._mask, self._words, self._data_map
        cons = self.read_pos
        prod = int(self._prod[0])
        pos = cons
        found: list[bytes] = []
        while pos < prod and len(found) < limit:
            off = pos & mask
            hdr = int(words[off >> 2])
            if hdr & BUSY_BIT:
                break
            length = hdr & LEN_MASK
            if not hdr & DISCARD_BIT:
                start = PAGE_SIZE + off + HDR_SIZE
                found.append(raw[start:start + length])
            pos += round8(HDR_SIZE + length)
        if pos != cons:
            self._advance(pos)
        return found

    def _copy_target(self, nbytes: int, source_addr: int) -> np.ndarray:
        """Where a batch is copied: a recycled buffer no batch uses any more, else a new one.

        Recycling spares the page faults of fresh memory (they cost more than
        the copy).  It is safe because a buffer is reused only when nothing
        but this pool refers to it.  The buffer is placed half a page away
        from ``source_addr`` modulo 4 KiB: ``rep movsb`` (glibc's memcpy for
        mid-sized copies) runs ~5x slower on AMD Zen when the destination sits
        less than 64 bytes after the source modulo 4 KiB, which is exactly
        where malloc (page + 16) puts it relative to the page-aligned ring.
        """
        need = nbytes + 4096
        raw: Any = None
        for spare in self._spares:
            # references: the pool's list, `spare`, getrefcount's argument
            if spare.nbytes >= need and sys.getrefcount(spare) <= 3:
                raw = spare
                break
        if raw is None:
            raw = np.empty(need, np.uint8)
            if need <= _MAX_SPARE_BYTES:
                self._spares = [raw, *self._spares][:2]
        shift = (2048 - (raw.__array_interface__["data"][0] - source_addr)) % 4096
        return raw[shift:shift + nbytes]
