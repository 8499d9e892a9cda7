"""What every kernel -> user event reader shares: ``EventSource`` and record-type checks.

``EventSource`` is an epoll set plus an eventfd that ``close()`` signals, so a
``poll()`` waiting in another thread (or an ``async for``) ends cleanly, and a
count of running calls, so the resources are released by whichever of
``close()`` or the last running call comes last: ``close()`` never frees
memory under a running call.  ``RingBuffer``, ``RingBufferSet`` and
``PerfBuffer`` are EventSources; they provide ``_take()`` (what ``read()``
returns, without waiting), ``_queue()`` and ``_free()``.

``poll(timeout)`` has libbpf's meaning (``ring_buffer__poll``,
``perf_buffer__poll``): wait, then deliver what arrived -- to the callback,
or, without one, into the reader's queue, which the next ``drain()`` or
``read()`` returns first -- and return how many records were delivered.  So
``rb.poll(0.2); batch = rb.drain()`` loses nothing.  ``read(timeout)`` waits
the same way and returns the records themselves.

Also here: ``check_map`` and ``record_dtype`` (the map-type and record-type
checks the readers and ``UserRingBuffer`` share) and ``map_ring`` (a Python
mmap of a map fd, with typed errors).
"""

from __future__ import annotations

import mmap
import os
import select
import threading
import time
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from pybpf._sys.forksafe import on_fork_child
from pybpf._sys.resource import Resource
from pybpf.errors import BpfError, BpfPermissionError, ClosedError, RecordFormatError, WrongMapTypeError
from pybpf.maps.map import Map

if TYPE_CHECKING:
    import asyncio

__all__ = ["EventSource", "check_map", "limit", "map_ring", "record_dtype"]

NAP = 0.01  # seconds between looks at a source whose fd cannot tell news (see EventSource._nap)


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
        btf = map.btf
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



def limit(max_records: int | None) -> int:
    """``max_records`` as a count (None: no limit); negative counts are refused."""
    if max_records is None:
        return 1 << 62
    if max_records < 0:
        raise ValueError(f"max_records must be >= 0, not {max_records}")
    return int(max_records)


def map_ring(fd: int, length: int, offset: int, writable: bool, what: str) -> mmap.mmap:
    """A shared Python mmap of ``length`` bytes of map ``fd`` at ``offset`` (typed errors)."""
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        return mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=offset)
    except PermissionError as exc:
        raise BpfPermissionError(f"cannot mmap {what}: {exc.strerror}", exc.errno,
                                 capability="CAP_BPF") from None
    except OSError as exc:
        raise BpfError(f"cannot mmap {what}: {exc.strerror}", exc.errno) from None


class EventSource(Resource):
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
        on_fork_child(self, EventSource._after_fork)
        self._closed = True       # the subclass opens it once fully built
        self._released = False
        self._epoll = select.epoll()
        try:
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            self._epoll.close()
            raise
        self._epoll.register(self._wake, select.EPOLLIN)

    @staticmethod
    def _after_fork(source: EventSource) -> None:
        """In a fork()ed child: the calls in flight were other threads' (see pybpf._sys.forksafe)."""
        source._lock = threading.Lock()
        source._active = 0

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
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
        if self._nap():
            # The fd is readable without news: nap on the eventfd alone (close() ends it).
            select.select([self._wake], [], [], NAP if timeout is None else min(max(timeout, 0.0), NAP))
            return None if self._closed else []
        events = self._epoll.poll(-1 if timeout is None else max(float(timeout), 0.0))
        if self._closed:
            return None
        return [fd for fd, _ in events if fd != self._wake]

    def _nap(self) -> bool:
        """True while the fd may poll readable with nothing to take (then waits are short naps)."""
        return False

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

    @abstractmethod
    def _take(self, fresh: bool = False) -> Any:
        """What ``read`` returns, without waiting (``fresh``: leave the queue alone)."""

    @abstractmethod
    def _empty(self) -> Any:
        """An empty result of the type ``read`` returns."""

    def _queue(self, found: Any) -> None:
        """Keep ``found`` (a non-empty ``_take()`` result) for the next ``drain()``/``read()``."""
        raise NotImplementedError

    def read(self, timeout: float | None = None) -> Any:
        """Wait up to ``timeout`` seconds (None: forever) for events, then return them.

        Returns what is available right away, if anything; an empty result on
        timeout or when ``close()`` ends the wait.  In callback mode the
        records go to the callback and the count is returned.
        """
        return self._wait_take(timeout, fresh=False)

    def _wait_take(self, timeout: float | None, fresh: bool) -> Any:
        self._enter()
        try:
            deadline = None if timeout is None else time.monotonic() + max(float(timeout), 0.0)
            while True:
                found = self._take(fresh) if fresh else self._take()
                if len(found) if not isinstance(found, int) else found:
                    return found
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self._empty()
                # A wake-up with nothing to take (a busy record, a napping source) waits again.
                if self._wait(left) is None:
                    return self._empty()
        finally:
            self._leave()

    def poll(self, timeout: float | None = None) -> int:
        """libbpf's poll: wait up to ``timeout`` s, deliver the records, return how many.

        Records go to the callback (``on_event``/``callback=``) or, without
        one, into this reader's queue: ``drain()`` and ``read()`` return the
        queued records first.  Nothing is dropped; a caller that only ever
        polls keeps every record in memory until it drains.
        """
        found = self._wait_take(timeout, fresh=True)  # waits for new records, queued ones aside
        if isinstance(found, int):
            return found
        count = len(found)
        if count:
            self._queue(found)
        return count

    def __aiter__(self) -> EventSource:
        return self

    async def __anext__(self) -> Any:
        """``async for batch in source``: each non-empty batch, until close()."""
        import asyncio  # only for `async for`: most readers never pay for its import

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
                if self._nap():
                    await asyncio.sleep(NAP)
                    continue
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



def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
