"""``RingBuffer``: events from a ``BPF_MAP_TYPE_RINGBUF`` map, drained into numpy in batches.

A RingBuffer owns a dup of the map fd, two Python mmaps of the ring (the
consumer page read-write; the producer page and the data area, which the
kernel maps twice in a row so that no record ever wraps, read-only), an epoll
set and an eventfd that ``close()`` uses to wake any waiter.  ``drain()``
crosses into Python once per batch: it checks the record headers of a chunk
with one vectorised numpy comparison, copies the chunk out with one memcpy and
only then advances the consumer position.

Memory ordering: the numpy reader relies on x86-64's total store order, where
plain loads and stores already have the acquire/release semantics the kernel's
``smp_store_release``/``smp_load_acquire`` pair expects (headers are read
before the payload, in program order; the consumer position is stored after
the copy).  On any other architecture ``reader="auto"`` uses libbpf's consumer
(``ring_buffer__consume``), which has the barriers, and copies from its callback.

Also here: ``RingBufferSet`` (several ring buffers behind one epoll),
``EventSource`` (the epoll/eventfd/close machinery ``PerfBuffer`` shares) and
the errors of event reading.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import platform
import select
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _libbpf
from ._libbpf import ffi, lib
from .errors import BpfError, BpfPermissionError, ClosedError
from .maps import Map

__all__ = [
    "BufferFullError",
    "EventSource",
    "RecordFormatError",
    "RingBuffer",
    "RingBufferSet",
    "WrongMapTypeError",
    "record_dtype",
]

PAGE_SIZE = mmap.PAGESIZE
HDR_SIZE = 8                 # u32 len (with the two flag bits) + u32 page offset
BUSY_BIT = 1 << 31           # reserved, not yet committed
DISCARD_BIT = 1 << 30        # committed as discarded: skip it
LEN_MASK = DISCARD_BIT - 1
TSO = platform.machine().lower() in {"x86_64", "amd64"}
_CHUNK_BYTES = 256 * 1024    # header check and copy of one chunk stay in L2
_MAX_SPARE_BYTES = 64 << 20  # batch buffers up to this size are recycled (two per ring)


class RecordFormatError(BpfError, ValueError):
    """Records do not match the dtype (wrong size), or no usable record type was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message, errno.EINVAL)


class WrongMapTypeError(BpfError, TypeError):
    """The map given is not of the type this reader needs."""

    def __init__(self, message: str) -> None:
        super().__init__(message, errno.EINVAL)


class BufferFullError(BpfError):
    """No room in a user ring buffer for the record."""

    def __init__(self, message: str) -> None:
        super().__init__(message, errno.ENOSPC)


def check_map(map: Map, wanted: str, reader: str) -> None:
    """Raise a clear error unless ``map`` is a pybpf Map of type ``wanted``."""
    if not isinstance(map, Map):
        raise TypeError(f"{reader} needs a pybpf.Map, got {type(map).__name__}")
    if map.type != wanted:
        raise WrongMapTypeError(f"{reader} needs a {wanted} map, but map {map.name!r} is a {map.type} map")


def record_dtype(map: Map, dtype: Any, reader: str) -> np.dtype | None:
    """``dtype`` as a numpy dtype: a dtype-like, or the name of a BTF struct of the map's object."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and not _is_numpy_name(dtype):
        btf = map._obj.btf if map._obj is not None else map._btf
        if btf is None:
            raise RecordFormatError(f"{reader} of map {map.name!r}: cannot resolve struct {dtype!r}: "
                                    f"the map's object has no BTF; give a numpy dtype")
        try:
            resolved = btf.dtype(btf.find(dtype, "struct"))
        except KeyError:
            raise RecordFormatError(f"{reader} of map {map.name!r}: the object's BTF has no struct "
                                    f"{dtype!r}") from None
    else:
        try:
            resolved = np.dtype(dtype)
        except TypeError as exc:
            raise RecordFormatError(f"{reader} of map {map.name!r}: {dtype!r} is not a dtype ({exc})") from None
    if resolved.itemsize == 0 or resolved.hasobject:
        raise RecordFormatError(f"{reader} of map {map.name!r}: dtype {resolved} cannot hold a record "
                                f"(it must be a fixed-size, non-object dtype)")
    return resolved


def _is_numpy_name(text: str) -> bool:
    try:
        np.dtype(text)
        return True
    except TypeError:
        return False


def _round8(n: int) -> int:
    return (n + 7) & ~7


class EventSource:
    """An epoll set plus an eventfd, and a count of the calls using them.

    ``close()`` never blocks and never frees memory under a running call: it
    marks the source closed and signals the eventfd (which stays readable, so
    every present and future wait returns at once); whichever of ``close()``
    or the last running call comes last releases the resources.
    """

    _what = "event source"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._closed = True       # the subclass opens it once fully built
        self._released = False
        self._epoll = select.epoll()
        try:
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            self._epoll.close()
            raise
        self._epoll.register(self._wake, select.EPOLLIN)

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """An fd that polls readable when there is something to read (or after close)."""
        self._check()
        return self._epoll.fileno()

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(self._what)

    def _enter(self) -> None:
        with self._lock:
            if self._closed:
                raise ClosedError(self._what)
            self._active += 1

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1
            release = self._closed and self._active == 0 and not self._released
            if release:
                self._released = True
        if release:
            self._release()

    def _wait(self, timeout: float | None) -> list[int] | None:
        """Ready fds (other than the eventfd) within ``timeout`` s; None once closed."""
        events = self._epoll.poll(-1 if timeout is None else max(float(timeout), 0.0))
        if self._closed:
            return None
        return [fd for fd, _ in events if fd != self._wake]

    def close(self) -> None:
        """Stop: wake every waiter, then release fds and mappings. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.eventfd_write(self._wake, 1)
            release = self._active == 0 and not self._released
            if release:
                self._released = True
        if release:
            self._release()

    def _release(self) -> None:
        try:
            self._free()
        finally:
            self._epoll.close()
            os.close(self._wake)

    def _free(self) -> None:
        """Release what the subclass owns (called once, with no call running)."""

    def _take(self) -> Any:
        """What ``poll`` returns, without waiting."""
        raise NotImplementedError

    def _empty(self) -> Any:
        raise NotImplementedError

    def poll(self, timeout: float | None = None) -> Any:
        """Wait up to ``timeout`` seconds (None: forever) for events, then take them.

        Returns what is available right away, if anything; an empty result on
        timeout or when ``close()`` ends the wait.
        """
        self._enter()
        try:
            found = self._take()
            if len(found) if not isinstance(found, int) else found:
                return found
            if self._wait(timeout) is None:
                return self._empty()
            return self._take()
        finally:
            self._leave()

    def __aiter__(self) -> EventSource:
        return self

    async def __anext__(self) -> Any:
        """``async for batch in source``: each non-empty batch, until close()."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                self._enter()
            except ClosedError:
                raise StopAsyncIteration from None
            try:
                found = self._take()
                if len(found) if not isinstance(found, int) else found:
                    return found
                ready: asyncio.Future[None] = loop.create_future()
                fd = self._epoll.fileno()
                loop.add_reader(fd, _resolve, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)
                if self._closed:
                    raise StopAsyncIteration
            finally:
                self._leave()

    def __enter__(self) -> EventSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"{self._what} was never closed; closing it now", ResourceWarning, stacklevel=2)
            try:
                self.close()
            except Exception:
                pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RingBuffer(EventSource):
    """Reader of a BPF ring buffer map.

    ``dtype`` (a numpy dtype, or the name of a BTF struct of the map's object)
    makes ``drain()``/``poll()`` return numpy record arrays; without it they
    return lists of ``bytes`` (variable-size records). ``callback`` (or
    ``on_event``) switches ``poll()`` to calling it once per record.
    ``reader``: ``"numpy"`` (x86-64 only), ``"libbpf"``, or ``"auto"``.
    """

    def __init__(self, map: Map, dtype: Any = None, *, callback: Callable[[Any], Any] | None = None,
                 reader: str = "auto") -> None:
        self._closed = True  # until fully built (keeps __del__ quiet on failure)
        check_map(map, "ringbuf", "RingBuffer")
        if reader not in ("auto", "numpy", "libbpf"):
            raise ValueError(f"reader must be 'auto', 'numpy' or 'libbpf', not {reader!r}")
        if reader == "numpy" and not TSO:
            raise BpfError(f"the numpy ring buffer reader needs x86-64 memory ordering; "
                           f"this is {platform.machine()}: use reader='libbpf'", errno.EINVAL)
        self.name = map.name
        self._what = f"ring buffer {map.name}"
        self.dtype = record_dtype(map, dtype, "RingBuffer")
        self.size = int(map.max_entries)
        if self.dtype is not None and self.dtype.itemsize + HDR_SIZE > self.size:
            raise RecordFormatError(f"RingBuffer of map {map.name!r}: a {self.dtype.itemsize}-byte record "
                                    f"cannot fit in a {self.size}-byte ring")
        self._use_libbpf = reader == "libbpf" or not TSO
        self._mask = self.size - 1
        self._stride = _round8(HDR_SIZE + self.dtype.itemsize) if self.dtype is not None else 0
        self._callback = callback
        self._unseen: Any = None                  # callback mode: rest of a batch after fn raised
        self._error: BaseException | None = None
        self._pending: deque[bytes] = deque()     # libbpf reader: records beyond max_records
        self._rb: Any = ffi.NULL                  # libbpf ring_buffer (callback mode / libbpf reader)
        self._cb_handle: Any = None
        self._read_lock = threading.Lock()
        self._spares: list[np.ndarray] = []
        self._fd = os.dup(map.fd)
        try:
            super().__init__()
            self._epoll.register(self._fd, select.EPOLLIN)
            self._cons_map = _map_ring(self._fd, PAGE_SIZE, 0, True, self._what)
            self._data_map = _map_ring(self._fd, PAGE_SIZE + 2 * self.size, PAGE_SIZE, False, self._what)
        except BaseException:
            self._closed = True
            self._free_partial()
            raise
        self._cons = np.frombuffer(self._cons_map, np.uint64, count=1)
        self._prod = np.frombuffer(self._data_map, np.uint64, count=1)
        self._data = np.frombuffer(self._data_map, np.uint8, count=2 * self.size, offset=PAGE_SIZE)
        self._words = self._data.view(np.uint32)
        self._data_addr: int = self._data.__array_interface__["data"][0]
        chunk = max(_CHUNK_BYTES // max(self._stride, HDR_SIZE), 1)
        self._snap = np.empty(chunk, np.uint32)     # header snapshot of one chunk
        # What a chunk of committed, kept records of this dtype has as headers.
        self._all_good = np.full(chunk, self.dtype.itemsize if self.dtype else 0, np.uint32).tobytes()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.available_bytes} bytes pending"
        return f"<RingBuffer {self.name} size={self.size} dtype={self.dtype} {state}>"

    # ---- state ---------------------------------------------------------

    @property
    def available_bytes(self) -> int:
        """Bytes committed or reserved but not yet consumed (headers included)."""
        self._check()
        return int(self._prod[0]) - int(self._cons[0])

    def _free_partial(self) -> None:
        for name in ("_cons_map", "_data_map"):
            m = getattr(self, name, None)
            if m is not None:
                m.close()
        if getattr(self, "_epoll", None) is not None:
            self._epoll.close()
        if getattr(self, "_wake", None) is not None:
            os.close(self._wake)
        os.close(self._fd)

    def _free(self) -> None:
        if self._rb != ffi.NULL:
            lib.ring_buffer__free(self._rb)
            self._rb = ffi.NULL
        self._cons = self._prod = self._data = self._words = None  # type: ignore[assignment]
        self._spares = []
        for m in (self._cons_map, self._data_map):
            try:
                m.close()
            except BufferError:  # a view leaked through a traceback: the last reference unmaps
                pass
        os.close(self._fd)

    # ---- batch reading -----------------------------------------------------

    def drain(self, max_records: int | None = None) -> np.ndarray:
        """Every committed record (up to ``max_records``) as a numpy record array.

        The result owns its memory: a strided view (one record every
        ``8 + itemsize`` rounded to 8 bytes) over one private copy of the
        ring's bytes.  A record whose size differs from the dtype's itemsize
        raises ``RecordFormatError`` and stays in the ring (records before it
        are returned first, and the error comes on the next call).
        """
        if self.dtype is None:
            raise RecordFormatError(f"{self._what} was opened without a dtype: use drain_bytes(), "
                                    f"or give RingBuffer(map, dtype=...)")
        limit = _limit(max_records)
        self._enter()
        try:
            with self._read_lock:
                if self._unseen is not None:  # left by a callback that raised
                    batch, self._unseen = self._unseen, None
                    return batch
                if self._use_libbpf:
                    return self._drain_libbpf(limit)
                return self._drain_fixed(limit)
        finally:
            self._leave()

    def _drain_fixed(self, limit: int) -> np.ndarray:
        assert self.dtype is not None
        size, stride, mask = self.dtype.itemsize, self._stride, self._mask
        data, words = self._data, self._words
        cons = int(self._cons[0])
        prod = int(self._prod[0])  # load before the headers: TSO keeps loads in order
        if prod == cons or limit == 0:
            return np.empty(0, self.dtype)
        room = (prod - cons) // stride    # at most this many slots can follow
        capacity = max(min(room, limit), 1)
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
                pos += _round8(HDR_SIZE + length)
                continue
            if length != size:
                problem = (f"{self._what}: a {length}-byte record does not match dtype {self.dtype} "
                           f"({size} bytes); it was left in the ring (use drain_bytes() for it)")
            break
        if pos != cons:
            self._cons[0] = pos  # store after the copy: TSO keeps it after the loads
        records = np.ndarray((used,), self.dtype, buffer=out, offset=HDR_SIZE, strides=(stride,))
        if keep is not None:
            records = records[np.concatenate(keep)]
        if problem is not None and used == 0:
            raise RecordFormatError(problem)
        return records

    def drain_bytes(self, max_records: int | None = None) -> list[bytes]:
        """Every committed record (up to ``max_records``) as bytes, whatever its size."""
        limit = _limit(max_records)
        self._enter()
        try:
            with self._read_lock:
                if self._use_libbpf:
                    return self._consume_libbpf(limit)
                return self._drain_var(limit)
        finally:
            self._leave()

    def _drain_var(self, limit: int) -> list[bytes]:
        mask, words, raw = self._mask, self._words, self._data_map
        cons = int(self._cons[0])
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
            pos += _round8(HDR_SIZE + length)
        if pos != cons:
            self._cons[0] = pos
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
        raw = None
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

    # ---- libbpf's consumer: other architectures, and callback mode -----------

    def _libbpf_ring(self) -> Any:
        if self._rb == ffi.NULL:
            self._cb_handle = ffi.callback("int(void *, void *, size_t)", self._on_sample)
            self._rb = _libbpf.check_ptr(lib.ring_buffer__new(self._fd, self._cb_handle, ffi.NULL, ffi.NULL),
                                         f"ring_buffer__new for {self._what}")
        return self._rb

    def _on_sample(self, ctx: Any, data: Any, size: int) -> int:
        try:
            raw = ffi.buffer(data, size)[:]
            if self._callback is None:
                self._pending.append(raw)
                return 0
            if self.dtype is not None:
                if size != self.dtype.itemsize:
                    raise RecordFormatError(f"{self._what}: a {size}-byte record does not match dtype "
                                            f"{self.dtype} ({self.dtype.itemsize} bytes)")
                self._callback(np.frombuffer(raw, self.dtype)[0])
            else:
                self._callback(raw)
            return 0
        except BaseException as exc:  # never unwind into C; re-raised after the consume
            self._error = exc
            return -1

    def _run_libbpf(self) -> int:
        count = lib.ring_buffer__consume(self._libbpf_ring())
        error, self._error = self._error, None
        if error is not None:
            raise error
        return int(_libbpf.check(count, f"consuming {self._what}"))

    def _consume_libbpf(self, limit: int) -> list[bytes]:
        if len(self._pending) < limit:
            callback, self._callback = self._callback, None
            try:
                self._run_libbpf()
            finally:
                self._callback = callback
        return [self._pending.popleft() for _ in range(min(limit, len(self._pending)))]

    def _drain_libbpf(self, limit: int) -> np.ndarray:
        assert self.dtype is not None
        size = self.dtype.itemsize
        records = self._consume_libbpf(limit)
        wrong = next((r for r in records if len(r) != size), None)
        if wrong is not None:  # keep them for drain_bytes(): nothing is lost
            self._pending.extendleft(reversed(records))
            raise RecordFormatError(f"{self._what}: a {len(wrong)}-byte record does not match dtype "
                                    f"{self.dtype} ({size} bytes); the batch was left unread (use drain_bytes())")
        return np.frombuffer(b"".join(records), self.dtype)

    def on_event(self, fn: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
        """Call ``fn(record)`` once per record in ``poll()``/``consume()`` (None: back to batches).

        ``record`` is a numpy record (with a dtype) or bytes. Usable as a decorator.
        """
        self._check()
        self._callback = fn
        return fn

    def consume(self) -> int:
        """Callback mode: call the callback for every committed record now; returns how many."""
        if self._callback is None:
            raise BpfError(f"{self._what} has no callback: use drain(), or on_event(fn) first", errno.EINVAL)
        self._enter()
        try:
            with self._read_lock:
                if self._use_libbpf:
                    return self._run_libbpf()
                return self._dispatch()
        finally:
            self._leave()

    def _dispatch(self) -> int:
        # Same batch reader, then one Python call per record: no C -> Python callback per event.
        batch = self._unseen
        self._unseen = None
        if batch is None:
            batch = self._drain_fixed(1 << 62) if self.dtype is not None else self._drain_var(1 << 62)
        fn = self._callback
        done = 0
        try:
            for record in batch:
                done += 1
                fn(record)  # type: ignore[misc]
        except BaseException:
            if done < len(batch):  # keep the rest for the next consume(); the failing one is done
                self._unseen = batch[done:]
            raise
        return done

    # ---- EventSource hooks ---------------------------------------------------------

    def _take(self) -> Any:
        if self._callback is not None:
            return self.consume()
        return self.drain() if self.dtype is not None else self.drain_bytes()

    def _empty(self) -> Any:
        if self._callback is not None:
            return 0
        return np.empty(0, self.dtype) if self.dtype is not None else []


class RingBufferSet(EventSource):
    """Several RingBuffers waited on together (one epoll over theirs).

    ``poll()`` returns ``[(ring_buffer, batch), ...]`` for those with events.
    The set does not own its members: close them yourself; a closed member
    simply drops out of the set.
    """

    _what = "ring buffer set"

    def __init__(self, *members: RingBuffer) -> None:
        self._closed = True
        for rb in members:
            if not isinstance(rb, RingBuffer):
                raise TypeError(f"RingBufferSet holds RingBuffers, got {type(rb).__name__}")
            rb._check()
        super().__init__()
        self._members: dict[int, RingBuffer] = {}
        self._closed = False
        for rb in members:
            self.add(rb)

    def add(self, rb: RingBuffer) -> None:
        self._check()
        fd = rb.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._members[fd] = rb

    @property
    def members(self) -> list[RingBuffer]:
        return [rb for rb in self._members.values() if not rb.closed]

    def _take(self) -> list[tuple[RingBuffer, Any]]:
        found = []
        for fd, rb in list(self._members.items()):
            if rb.closed:
                self._drop(fd)
                continue
            try:
                batch = rb._take()
            except ClosedError:
                self._drop(fd)
                continue
            if len(batch) if not isinstance(batch, int) else batch:
                found.append((rb, batch))
        return found

    def _drop(self, fd: int) -> None:
        self._members.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # already gone with the member's epoll fd

    def _empty(self) -> list[tuple[RingBuffer, Any]]:
        return []


def _limit(max_records: int | None) -> int:
    if max_records is None:
        return 1 << 62
    if max_records < 0:
        raise ValueError(f"max_records must be >= 0, not {max_records}")
    return int(max_records)


def _map_ring(fd: int, length: int, offset: int, writable: bool, what: str) -> mmap.mmap:
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        return mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=offset)
    except PermissionError as exc:
        raise BpfPermissionError(f"cannot mmap {what}: {exc.strerror}", exc.errno,
                                 capability="CAP_BPF") from None
    except OSError as exc:
        raise BpfError(f"cannot mmap {what}: {exc.strerror}", exc.errno) from None
