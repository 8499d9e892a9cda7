"""``UserRingBuffer``: user space -> BPF samples over a ``BPF_MAP_TYPE_USER_RINGBUF`` map.

A UserRingBuffer owns one libbpf ``user_ring_buffer`` (its own mmaps of the
map) and is the single producer libbpf requires: submissions are serialised
by a lock.  BPF programs consume the samples with ``bpf_user_ringbuf_drain``.
Needs libbpf >= 1.1 and kernel >= 6.1; otherwise ``NotSupportedError``.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import numpy as np

from pybpf._sys.forksafe import fresh_locks
from pybpf._sys.resource import Resource
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BufferFullError, ClosedError, NotSupportedError, RecordFormatError
from pybpf.events.base import check_map, record_dtype
from pybpf.kinds import MapType
from pybpf.maps.map import Map, register_stream_reader
from pybpf.maps.codec import to_bytes

__all__ = ["UserRingBuffer"]

_WAIT_SLICE_MS = 50  # how long a waiting submit() stays in C at a time


class UserRingBuffer(Resource):
    """Producer side of a user ring buffer.

    ``submit(value)`` writes one sample: bytes, or (with a ``dtype``) anything
    numpy turns into one record of it. ``submit_many(records)`` writes each
    record of an array. ``timeout`` (seconds) waits for room; without it a full
    ring raises ``BufferFullError`` at once.
    """

    def __init__(self, map: Map, dtype: Any = None) -> None:
        self._ptr: Any = ffi.NULL
        self._closing = False
        if not _libbpf.has_symbol("user_ring_buffer__new"):
            raise NotSupportedError(f"user ring buffers need libbpf >= 1.1; this is {_libbpf.VERSION_STRING}",
                                    feature="user_ring_buffer")
        check_map(map, "user_ringbuf", "UserRingBuffer")
        self.name = map.name
        self._what = f"user ring buffer {map.name}"
        self.dtype = record_dtype(map, dtype, "UserRingBuffer")
        self._lock: threading.Lock
        fresh_locks(self, _lock=threading.Lock)
        with _libbpf.capture() as log:
            ptr = lib.user_ring_buffer__new(map.fd, ffi.NULL)
        if ptr == ffi.NULL:
            raise _libbpf.make_error(ffi.errno or errno.EINVAL, f"user_ring_buffer__new for {self._what}",
                                     log=log.text)
        self._ptr = ptr

    def __repr__(self) -> str:
        return f"<UserRingBuffer {self.name} dtype={self.dtype}{' closed' if self.closed else ''}>"

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._ptr == ffi.NULL

    def _encode(self, value: Any) -> bytes:
        if self.dtype is None:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"{self._what} has no dtype: submit bytes, not {type(value).__name__}")
            return bytes(value)
        if isinstance(value, np.ndarray) and value.size != 1:
            raise RecordFormatError(f"{self._what}: submit() takes one record, got {value.size}; "
                                    f"use submit_many()")
        try:
            return to_bytes(value, self.dtype, f"sample for {self._what}")
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise RecordFormatError(str(exc).strip("'\"")) from None

    def submit(self, value: Any, *, timeout: float | None = None) -> None:
        """Send one record to the BPF side (wait up to ``timeout`` seconds for room)."""
        self._put(self._encode(value), timeout)

    def submit_many(self, records: Any, *, timeout: float | None = None) -> int:
        """Submit every record of ``records`` (array of ``dtype``, or a list of bytes); returns how many."""
        if self.dtype is not None:
            array = np.ascontiguousarray(records, dtype=self.dtype).reshape(-1)
            raw = array.tobytes()
            size = self.dtype.itemsize
            items = [raw[i:i + size] for i in range(0, len(raw), size)]
        else:
            items = [self._encode(r) for r in records]
        for item in items:
            self._put(item, timeout)
        return len(items)

    def _put(self, data: bytes, timeout: float | None) -> None:
        if not data:
            raise RecordFormatError(f"{self._what}: a sample cannot be empty")
        with self._lock:
            if self.closed:
                raise ClosedError(self._what)
            if timeout is None:
                sample = lib.user_ring_buffer__reserve(self._ptr, len(data))
                err = ffi.errno if sample == ffi.NULL else 0
            else:
                sample, err = self._reserve_waiting(len(data), timeout)
            if sample == ffi.NULL:
                err = err or errno.ENOSPC
                if err in (errno.ENOSPC, errno.ETIMEDOUT, errno.ENODATA):
                    raise BufferFullError(f"{self._what} has no room for a {len(data)}-byte sample"
                                          f"{'' if timeout is None else f' after {timeout} s'}")
                raise _libbpf.make_error(err, f"reserving {len(data)} bytes in {self._what}")
            ffi.memmove(sample, data, len(data))
            lib.user_ring_buffer__submit(self._ptr, sample)

    def _reserve_waiting(self, size: int, timeout: float) -> tuple[Any, int]:
        """Wait up to ``timeout`` s for room, in short slices: between them Ctrl-C (a signal
        handler runs only between C calls) and a close() from another thread get through."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            left = deadline - time.monotonic()
            slice_ms = max(0, min(int(left * 1000), _WAIT_SLICE_MS))
            sample = lib.user_ring_buffer__reserve_blocking(self._ptr, size, slice_ms)
            if sample != ffi.NULL:
                return sample, 0
            err = ffi.errno
            if err not in (errno.ENOSPC, errno.ETIMEDOUT, errno.ENODATA, errno.EINTR, errno.EAGAIN):
                return sample, err
            if self._closing:
                raise ClosedError(self._what)
            if left <= 0:
                return sample, err

    def close(self) -> None:
        """Free the ring; a submit() waiting for room in another thread raises ClosedError."""
        self._closing = True  # a waiting submit sees this within one slice, then lets go of the lock
        with self._lock:
            ptr, self._ptr = self._ptr, ffi.NULL
        if ptr != ffi.NULL:
            lib.user_ring_buffer__free(ptr)



register_stream_reader(MapType.USER_RINGBUF, "pybpf.UserRingBuffer", UserRingBuffer)
