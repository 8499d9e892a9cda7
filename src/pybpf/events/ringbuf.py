"""``RingBuffer``: events from a ``BPF_MAP_TYPE_RINGBUF`` map, in numpy batches.

Three ways to read fixed-size records, from safest to fastest:

- ``drain()`` copies the available records out (one memcpy per chunk) and
  returns a record array that owns its memory;
- ``borrow()`` yields a read-only record view straight over the ring's mmapped
  data area, with no copy (see its docstring for the one rule it adds);
- ``on_event(fn)`` / ``callback=`` calls ``fn`` once per record.

``drain_bytes()`` reads variable-size records.  ``poll()`` (libbpf's meaning:
wait, then deliver to the callback or into the queue that ``drain()`` returns
first), ``read()`` (wait, then return the records), ``fileno()`` and
``async for`` come from ``EventSource`` (base.py); the reading itself from
``RingReader`` (ringreader.py) on x86-64, whose total store order makes plain
loads and stores the acquire/release pair the kernel expects.  Elsewhere
(``reader="libbpf"``, or any other architecture) libbpf's
``ring_buffer__consume`` reads, with its barriers, and records are copied from
its callback.  ``RingBufferSet`` waits on several ring buffers at once.
"""

from __future__ import annotations

import errno
import os
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from pybpf._sys.forksafe import fresh_locks
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import (
    BpfError,
    BufferFullError,
    ClosedError,
    InvalidArgumentError,
    RecordFormatError,
    WrongMapTypeError,
)
from pybpf.events.base import EventSource, check_map, limit, record_dtype
from pybpf.kinds import MapType
from pybpf.maps.map import Map, register_stream_reader
from pybpf.events.ringreader import HDR_SIZE, TSO, RingReader

__all__ = [
    "BorrowActiveError",
    "BufferFullError",
    "EventSource",
    "RecordFormatError",
    "RingBuffer",
    "RingBufferSet",
    "WrongMapTypeError",
    "record_dtype",
]


class BorrowActiveError(BpfError, RuntimeError):
    """``borrow()`` was called while another ``borrow()`` block of the same ring buffer is open."""

    def __init__(self, message: str) -> None:
        super().__init__(message, errno.EBUSY)


class Borrow:
    """What ``RingBuffer.borrow()`` returns: ``with`` it to get the records view."""

    __slots__ = ("_limit", "_open", "_rb")

    def __init__(self, rb: RingBuffer, max_records: int) -> None:
        self._rb = rb
        self._limit = max_records
        self._open = False

    def __enter__(self) -> np.ndarray:
        if self._open:
            raise BorrowActiveError(f"this borrow() of {self._rb._what} is already open")
        batch = self._rb._open_borrow(self._limit)
        self._open = True
        return batch  # no reference kept here: the pin's weakref must be able to die

    def __exit__(self, *exc: object) -> None:
        if self._open:
            self._open = False
            self._rb._close_borrow()


class RingBuffer(EventSource):
    """Reader of a BPF ring buffer map.

    ``dtype`` (a numpy dtype, or the name of a BTF struct of the map's object)
    makes ``drain()``/``read()`` return numpy record arrays; without it they
    return lists of ``bytes`` (variable-size records). ``poll(timeout)`` waits
    and then queues the records for ``drain()`` (libbpf's ``ring_buffer__poll``
    with a queue for a callback) and returns their count. ``callback`` (or
    ``on_event``) switches ``poll()``/``read()`` to calling it once per record.
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
                           f"this is {os.uname().machine}: use reader='libbpf'")
        self.name = map.name
        self._what = f"ring buffer {map.name}"
        self.dtype = record_dtype(map, dtype, "RingBuffer")
        self.size = int(map.max_entries)
        if self.dtype is not None and self.dtype.itemsize + HDR_SIZE > self.size:
            raise RecordFormatError(f"RingBuffer of map {map.name!r}: a {self.dtype.itemsize}-byte record "
                                    f"cannot fit in a {self.size}-byte ring")
        self._use_libbpf = reader == "libbpf" or not TSO
        self._callback = callback
        self._unseen: Any = None                  # queued by poll(), or left by a callback that raised
        self._error: BaseException | None = None
        self._pending: deque[bytes] = deque()     # libbpf reader: records beyond max_records
        self._budget: int | None = None           # libbpf reader, consume_n without libbpf's: records left
        self._budget_hit = False
        self._rb: Any = ffi.NULL                  # libbpf ring_buffer (callback mode / libbpf reader)
        self._cb_handle: Any = None
        self._read_lock: threading.Lock
        fresh_locks(self, _read_lock=threading.Lock)
        self._borrowing = False                   # a borrow() block is open
        self._fd = os.dup(map.fd)
        try:
            super().__init__()
            self._epoll.register(self._fd, select.EPOLLIN)
            self._reader = RingReader(self._fd, self.size, self.dtype, self._what)
        except BaseException:
            self._free_partial()
            raise
        self._closed = False

    def __repr__(self) -> str:
        try:
            state = "closed" if self._closed else f"{self.available_bytes} bytes pending"
        except Exception:  # a half-closed reader (at exit, or mid-close in another thread)
            state = "closing"
        return f"<RingBuffer {self.name} size={self.size} dtype={self.dtype} {state}>"

    # ---- state ---------------------------------------------------------

    @property
    def available_bytes(self) -> int:
        """Bytes committed or reserved but not yet read (headers included)."""
        self._enter()  # a close() in another thread waits to unmap until this read is done
        try:
            return self._reader.unread()
        finally:
            self._leave()

    @property
    def pinned_bytes(self) -> int:
        """Bytes already read but still held from producers by borrowed views that may be alive."""
        self._enter()
        try:
            return self._reader.pinned()
        finally:
            self._leave()

    def _free_partial(self) -> None:
        if hasattr(self, "_wake"):
            self._release()  # the epoll, the eventfd and (through _free) the fd
        else:  # EventSource.__init__ failed and cleaned up after itself
            os.close(self._fd)

    def _free(self) -> None:
        if self._rb != ffi.NULL:
            lib.ring_buffer__free(self._rb)
            self._rb = ffi.NULL
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()
        os.close(self._fd)

    # ---- batch reading -----------------------------------------------------

    def _need_dtype(self, call: str) -> None:
        if self.dtype is None:
            raise RecordFormatError(f"{self._what} was opened without a dtype: use drain_bytes(), "
                                    f"or give RingBuffer(map, dtype=...) to use {call}")

    def drain(self, max_records: int | None = None, *, into: np.ndarray | None = None) -> np.ndarray:
        """Every committed record (up to ``max_records``) as a numpy record array.

        The result owns its memory: one private copy of the records, back to
        back (copied in one C pass with the compiled helpers; without them, a
        strided view over one copy of the ring's bytes).  A record whose size
        differs from the dtype's itemsize raises ``RecordFormatError`` and stays
        in the ring (records before it are returned first, and the error comes
        on the next call).

        ``into``: a preallocated, writable, C-contiguous 1-d array of the ring's
        dtype.  Up to ``len(into)`` records (and ``max_records``) are copied into
        it, back to back, with no allocation and no call per record (one C pass
        with the compiled helpers); the result is ``into[:n]``.  Reusing one
        array keeps a busy reader from paging in fresh memory on every batch.
        """
        self._need_dtype("drain()")
        lim = limit(max_records)
        if into is not None:
            self._check_into(into)
            lim = min(lim, len(into))
        return self._drain(lim, fresh=False, into=into)

    def _queued(self, lim: int) -> Any:
        """Up to ``lim`` records queued by ``poll()`` (or left by a callback), or None."""
        batch = self._unseen
        if batch is None or not len(batch):
            self._unseen = None
            return None
        if len(batch) > lim:
            batch, self._unseen = batch[:lim], batch[lim:]
        else:
            self._unseen = None
        return batch

    def _queue(self, found: Any) -> None:
        with self._read_lock:
            if self._unseen is None or not len(self._unseen):
                self._unseen = found
            elif isinstance(found, list):
                self._unseen = list(self._unseen) + found
            else:
                self._unseen = np.concatenate([self._unseen, found])

    def _drain(self, lim: int, fresh: bool, into: np.ndarray | None = None) -> np.ndarray:
        self._enter()
        try:
            with self._read_lock:
                if not fresh:
                    queued = self._queued(lim)
                    if queued is not None:
                        return queued if into is None else self._copy_out(queued, into)
                if self._use_libbpf:
                    batch = self._drain_libbpf(lim)
                    return batch if into is None else self._copy_out(batch, into)
                self._reader.settle()
                if into is not None:
                    return into[:self._reader.copy_into(into, lim)]
                return self._reader.drain_fixed(lim)
        finally:
            self._leave()

    def _check_into(self, into: Any) -> None:
        if not isinstance(into, np.ndarray):
            raise InvalidArgumentError(f"drain(into=...) of {self._what} takes a numpy array, "
                                       f"not {type(into).__name__}")
        assert self.dtype is not None
        # np.empty(n, dtype) of a subarray dtype ("24u1") has the subarray's shape as trailing axes
        if into.dtype != self.dtype.base or into.shape[1:] != self.dtype.shape or into.ndim < 1:
            raise InvalidArgumentError(f"drain(into=...) of {self._what} needs a 1-d array of the ring's "
                                       f"dtype {self.dtype} (np.empty(n, rb.dtype)), not a {into.ndim}-d "
                                       f"array of {into.dtype}")
        if not (into.flags.c_contiguous and into.flags.writeable):
            raise InvalidArgumentError(f"drain(into=...) of {self._what} needs a writable C-contiguous "
                                       f"array (np.empty(n, rb.dtype))")

    @staticmethod
    def _copy_out(batch: np.ndarray, into: np.ndarray) -> np.ndarray:
        into[:len(batch)] = batch
        return into[:len(batch)]

    def borrow(self, max_records: int | None = None) -> Borrow:
        """``with rb.borrow() as batch:`` -- the available records, zero-copy, read-only.

        ``batch`` is a read-only record array over the ring's own memory: no
        copy, and the records stay in the ring (producers cannot reuse their
        space) for as long as ``batch`` or anything derived from it (slices,
        fields, ``np.void`` records, ``np.asarray``) is alive.  The batch is a
        run of whole, committed records of the dtype, in order, from the read
        position: it ends before the first busy, discarded or differently
        sized record (discarded records at its start are skipped), so a batch
        may hold fewer records than are available; borrow again for the rest.
        A differently sized first record raises ``RecordFormatError`` and
        stays in the ring.

        When the block ends, the ring space is given back to producers at once
        if no view of the batch is left; otherwise it stays pinned and is
        given back by the first ``drain()``/``borrow()``/``poll()``/
        ``release_pending()`` after the last view dies.  Note that the
        ``as`` name itself is such a view: ``del batch`` at the end of the
        block (or let it be rebound) to free the space early.  Escaped views
        make the ring look fuller to producers (they drop records sooner),
        keep ``fileno()`` readable, and turn ``poll()`` waits into 10 ms naps.

        Only one borrow block per ring buffer may be open at a time
        (``BorrowActiveError``); ``drain()`` and ``poll()`` inside it read the
        records after the batch.  With the libbpf reader (not x86-64, or
        ``reader="libbpf"``) the batch is a read-only copy.
        """
        self._check()
        self._need_dtype("borrow()")
        return Borrow(self, limit(max_records))

    def _open_borrow(self, lim: int) -> np.ndarray:
        self._enter()
        try:
            with self._read_lock:
                if self._borrowing:
                    raise BorrowActiveError(f"{self._what} already has an open borrow() block: leave it "
                                            f"before borrowing again")
                if self._unseen is not None or self._use_libbpf:  # copies: made read-only alike
                    batch, self._unseen = self._unseen, None
                    if batch is None:
                        batch = self._drain_libbpf(lim)
                    batch.flags.writeable = False
                else:  # read-only already: the data area is mapped PROT_READ
                    self._reader.settle()
                    batch = self._reader.borrow(*self._reader.span(lim))
                self._borrowing = True
                return batch
        finally:
            self._leave()

    def _close_borrow(self) -> None:
        with self._read_lock:
            self._borrowing = False
            if not self._closed:
                self._reader.settle()

    def release_pending(self) -> int:
        """Give producers back the ring space of borrowed views that have died.

        Returns the bytes still pinned by live views (0: nothing held back).
        """
        self._enter()
        try:
            with self._read_lock:
                return self._reader.settle()
        finally:
            self._leave()

    def drain_bytes(self, max_records: int | None = None) -> list[bytes]:
        """Every committed record (up to ``max_records``) as bytes, whatever its size."""
        return self._drain_bytes(limit(max_records), fresh=False)

    def _drain_bytes(self, lim: int, fresh: bool) -> list[bytes]:
        self._enter()
        try:
            with self._read_lock:
                if not fresh:
                    queued = self._queued(lim)
                    if queued is not None:
                        return list(queued)
                if self._use_libbpf:
                    return self._consume_libbpf(lim)
                self._reader.settle()
                return self._reader.drain_var(lim)
        finally:
            self._leave()

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
            if self._budget is not None:  # pybpf's own consume_n bound (libbpf < 1.5)
                if self._budget <= 0:
                    # libbpf reads past a record whose callback fails: keep it for the next call
                    self._pending.append(raw)
                    self._budget_hit = True
                    return -errno.ECANCELED
                self._budget -= 1
            self._call_back(raw)
            return 0
        except BaseException as exc:  # never unwind into C; re-raised after the consume
            self._error = exc
            return -1

    def _call_back(self, raw: bytes) -> None:
        if self.dtype is not None:
            if len(raw) != self.dtype.itemsize:
                raise RecordFormatError(f"{self._what}: a {len(raw)}-byte record does not match dtype "
                                        f"{self.dtype} ({self.dtype.itemsize} bytes)")
            self._callback(np.frombuffer(raw, self.dtype)[0])  # type: ignore[misc]
        else:
            self._callback(raw)  # type: ignore[misc]

    def _run_libbpf(self, limit: int | None = None) -> int:
        done = 0
        while self._callback is not None and self._pending and (limit is None or done < limit):
            # records a bounded consume read past
            done += 1
            self._call_back(self._pending.popleft())  # a callback that raises has had its record
        if limit is not None and done >= limit:
            return done
        rb = self._libbpf_ring()
        if limit is None:
            count = lib.ring_buffer__consume(rb)
        elif _libbpf.has_symbol("ring_buffer__consume_n"):  # libbpf >= 1.5
            count = lib.ring_buffer__consume_n(rb, limit - done)
        else:
            self._budget, self._budget_hit = limit - done, False
            try:
                count = lib.ring_buffer__consume(rb)
            finally:
                if self._budget_hit and self._error is None:
                    count = limit - done
                self._budget = None
        error, self._error = self._error, None
        if error is not None:
            raise error
        return done + int(_libbpf.check(count, f"consuming {self._what}"))

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
        self._enter()  # a closed buffer says so before anything else
        if self._callback is None:
            self._leave()
            raise BpfError(f"{self._what} has no callback: use drain(), or on_event(fn) first")
        try:
            with self._read_lock:
                if self._use_libbpf:
                    return self._run_libbpf()
                return self._dispatch()
        finally:
            self._leave()

    def consume_n(self, n: int) -> int:
        """Callback mode: call the callback for at most ``n`` committed records now; returns how many.

        libbpf's ``ring_buffer__consume_n`` (libbpf >= 1.5) with the libbpf reader where the
        system libbpf has it; pybpf's own bound otherwise (the numpy reader, or an older
        libbpf: the record after the ``n``-th is kept for the next call, never lost). For
        batches without a callback, ``drain(n)`` or ``drain(into=array)``.
        """
        lim = limit(n)
        self._enter()
        if self._callback is None:
            self._leave()
            raise BpfError(f"{self._what} has no callback: use drain(n) or drain(into=...), or on_event(fn) first")
        try:
            with self._read_lock:
                if self._use_libbpf:
                    return self._run_libbpf(lim)
                return self._dispatch(lim)
        finally:
            self._leave()

    def _dispatch(self, lim: int = 1 << 62) -> int:
        # Same batch reader, then one Python call per record: no C -> Python callback per event.
        batch = self._unseen
        self._unseen = None
        if batch is not None and len(batch) > lim:
            batch, self._unseen = batch[:lim], batch[lim:]
        elif batch is None or len(batch) < lim:
            self._reader.settle()
            more = lim - (len(batch) if batch is not None else 0)
            fresh = self._reader.drain_fixed(more) if self.dtype is not None else self._reader.drain_var(more)
            if batch is None:
                batch = fresh
            elif len(fresh):
                batch = np.concatenate([batch, fresh]) if self.dtype is not None else list(batch) + fresh
        fn = self._callback
        done = 0
        try:
            for record in batch:
                done += 1
                fn(record)  # type: ignore[misc]
        except BaseException:
            if done < len(batch):  # keep the rest for the next consume(); the failing one is done
                rest = batch[done:]
                if self._unseen is not None:
                    rest = (np.concatenate([rest, self._unseen]) if self.dtype is not None
                            else list(rest) + list(self._unseen))
                self._unseen = rest
            raise
        return done

    # ---- EventSource hooks ---------------------------------------------------------

    def _nap(self) -> bool:
        # Pinned space keeps the map fd readable, and the kernel's adaptive wake-up
        # (only when the consumer has caught up) stops waking a consumer held back.
        try:
            self._enter()
        except ClosedError:
            return False
        try:
            return not self._use_libbpf and self._reader.pinned() > 0
        finally:
            self._leave()

    def _take(self, fresh: bool = False) -> Any:
        if self._callback is not None:
            return self.consume()
        if self.dtype is not None:
            return self._drain(1 << 62, fresh)
        return self._drain_bytes(1 << 62, fresh)

    def _empty(self) -> Any:
        if self._callback is not None:
            return 0
        return np.empty(0, self.dtype) if self.dtype is not None else []


class RingBufferSet(EventSource):
    """Several RingBuffers waited on together (one epoll over theirs).

    ``read()`` returns ``[(ring_buffer, batch), ...]`` for those with events;
    ``poll()`` queues each member's records in that member (``drain()`` them)
    or hands them to its callback, and returns how many there were.
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
        """Poll ``rb`` with the others."""
        self._check()
        fd = rb.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._members[fd] = rb

    @property
    def members(self) -> list[RingBuffer]:
        """The ring buffers of the set."""
        return [rb for rb in self._members.values() if not rb.closed]

    def _queue(self, found: list[tuple[RingBuffer, Any]]) -> None:
        for rb, batch in found:
            if not isinstance(batch, int):
                try:
                    rb._queue(batch)
                except ClosedError:
                    pass  # closed meanwhile: its records went with it

    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` s; queue each member's records in it (or call its callback); how many."""
        found = self._wait_take(timeout, fresh=True)
        self._queue(found)
        return sum(b if isinstance(b, int) else len(b) for _rb, b in found)

    def _take(self, fresh: bool = False) -> list[tuple[RingBuffer, Any]]:
        found = []
        for fd, rb in list(self._members.items()):
            if rb.closed:
                self._drop(fd)
                continue
            try:
                batch = rb._take(fresh)
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

    def _nap(self) -> bool:
        return any(rb._nap() for rb in self.members)


register_stream_reader(MapType.RINGBUF, "pybpf.RingBuffer", RingBuffer)
